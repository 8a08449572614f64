//! What kind of address an IP address is, for the checks that keep a
//! server's traffic off the machine it runs on and the networks around it:
//! the egress proxy refuses a destination that is not public unless the
//! catalog lists it, and a remote server's SSRF guard one that is not
//! public unless its entry says `allow_private: true`. Pure: an address
//! in, its class out; no resolution.
//!
//! Written by hand rather than taken from `std` because the `IpAddr`
//! predicates this needs (`is_global`, `is_shared`, `is_unique_local`, …)
//! are still unstable, and an address embedded in IPv6 (IPv4-mapped,
//! NAT64) must be judged by the IPv4 address it carries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kind of an address, as far as reaching it from a server matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Routable on the internet.
    Public,
    /// This machine (`127.0.0.0/8`, `::1`).
    Loopback,
    /// `0.0.0.0/8`, `::`: "this host" to most stacks.
    Unspecified,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`): a LAN, or a Docker
    /// network.
    Private,
    /// RFC 6598 carrier-grade NAT (`100.64/10`); also Alibaba's metadata.
    SharedCgnat,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// A cloud metadata service (`169.254.169.254`, `fd00:ec2::254`,
    /// `100.100.100.200`), named apart because it hands out credentials.
    Metadata,
    /// IPv6 unique local addresses (`fc00::/7`).
    UniqueLocal,
    /// Multicast and broadcast.
    Multicast,
    /// Anything else that is not routable: documentation and benchmark
    /// ranges, `240/4`, IETF protocol assignments, discard-only prefixes.
    Reserved,
}

impl AddressClass {
    /// Whether the address is routable on the internet.
    pub fn is_public(self) -> bool {
        self == Self::Public
    }

    /// The class in words, for refusals.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Public => "a public address",
            Self::Loopback => "a loopback address",
            Self::Unspecified => "an unspecified address",
            Self::Private => "a private address (RFC 1918)",
            Self::SharedCgnat => "a carrier-grade NAT address (100.64.0.0/10)",
            Self::LinkLocal => "a link-local address",
            Self::Metadata => "a cloud metadata endpoint",
            Self::UniqueLocal => "a unique-local address (fc00::/7)",
            Self::Multicast => "a multicast or broadcast address",
            Self::Reserved => "a reserved address",
        }
    }
}

/// The class of `addr`.
pub fn classify(addr: IpAddr) -> AddressClass {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(a: Ipv4Addr) -> AddressClass {
    let [o0, o1, o2, o3] = a.octets();
    match (o0, o1, o2, o3) {
        (169, 254, 169, 254) | (100, 100, 100, 200) => AddressClass::Metadata,
        (127, ..) => AddressClass::Loopback,
        (0, ..) => AddressClass::Unspecified,
        (10, ..) | (192, 168, ..) => AddressClass::Private,
        (172, b, ..) if (16..=31).contains(&b) => AddressClass::Private,
        (100, b, ..) if (64..=127).contains(&b) => AddressClass::SharedCgnat,
        (169, 254, ..) => AddressClass::LinkLocal,
        (224..=239, ..) | (255, 255, 255, 255) => AddressClass::Multicast,
        // IETF protocol assignments, TEST-NET-1/2/3, benchmarking, 240/4.
        (192, 0, 0 | 2, _)
        | (198, 51, 100, _)
        | (203, 0, 113, _)
        | (198, 18 | 19, ..)
        | (240..=255, ..) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

fn classify_v6(a: Ipv6Addr) -> AddressClass {
    if let Some(v4) = embedded_v4(a) {
        return classify_v4(v4);
    }
    let s = a.segments();
    if a == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return AddressClass::Metadata;
    }
    if a.is_loopback() {
        return AddressClass::Loopback;
    }
    if a.is_unspecified() {
        return AddressClass::Unspecified;
    }
    match s[0] {
        x if x & 0xfe00 == 0xfc00 => AddressClass::UniqueLocal,
        x if x & 0xffc0 == 0xfe80 => AddressClass::LinkLocal,
        // Site-local, deprecated but still routed by some stacks.
        x if x & 0xffc0 == 0xfec0 => AddressClass::Private,
        x if x & 0xff00 == 0xff00 => AddressClass::Multicast,
        // Documentation (2001:db8::/32), discard-only (100::/64), and the
        // IETF protocol block 2001::/23 (Teredo, ORCHID, benchmarking).
        0x2001 if s[1] == 0x0db8 || s[1] < 0x0200 => AddressClass::Reserved,
        0x0100 if s[1..4] == [0, 0, 0] => AddressClass::Reserved,
        // Documentation (RFC 9637).
        0x3fff if s[1] < 0x1000 => AddressClass::Reserved,
        // Everything that is not global unicast (2000::/3) is not public.
        x if x & 0xe000 != 0x2000 => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

/// The IPv4 address an IPv6 address carries and is delivered to:
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), the
/// well-known NAT64 prefix (`64:ff9b::/96`) and 6to4 (`2002::/16`).
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let low = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(low(hi, lo)),
        // `::` and `::1` are not IPv4-compatible addresses.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => Some(low(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(addr: &str, expect: AddressClass) {
        let ip: IpAddr = addr.parse().unwrap();
        assert_eq!(classify(ip), expect, "{addr}");
    }

    #[test]
    fn classes() {
        use AddressClass::*;
        for (addr, class) in [
            ("8.8.8.8", Public),
            ("1.1.1.1", Public),
            ("172.15.255.255", Public),
            ("172.32.0.1", Public),
            ("100.63.255.255", Public),
            ("100.128.0.0", Public),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("10.0.0.1", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.17.0.1", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedCgnat),
            ("100.127.255.255", SharedCgnat),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.254", Metadata),
            ("100.100.100.200", Metadata),
            ("224.0.0.1", Multicast),
            ("255.255.255.255", Multicast),
            ("192.0.2.2", Reserved),
            ("198.18.0.1", Reserved),
            ("240.0.0.1", Reserved),
            ("2606:4700::1111", Public),
            ("2a00:1450:4001::200e", Public),
            ("::1", Loopback),
            ("::", Unspecified),
            ("fd00::2", UniqueLocal),
            ("fc00::1", UniqueLocal),
            ("fd00:ec2::254", Metadata),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("2001:db8::1", Reserved),
            ("100::1", Reserved),
            ("3fff::1", Reserved),
            ("3fff:1000::1", Public),
            ("4000::1", Reserved),
            // IPv4 inside IPv6 is judged by the IPv4 address.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", Metadata),
            ("::ffff:8.8.8.8", Public),
            ("::10.0.0.1", Private),
            ("64:ff9b::192.168.0.1", Private),
            ("64:ff9b::1.1.1.1", Public),
            ("2002:c0a8:0101::1", Private),
            ("2002:0808:0808::1", Public),
            ("93.184.215.14", Public),
            ("127.9.9.9", Loopback),
            ("fd12:3456::1", UniqueLocal),
            ("::ffff:10.0.0.1", Private),
            ("64:ff9b::a00:1", Private),
            ("64:ff9b::5db8:d70e", Public),
        ] {
            check(addr, class);
        }
    }

    #[test]
    fn only_public_is_public() {
        assert!(classify("8.8.8.8".parse().unwrap()).is_public());
        assert!(!classify("10.1.1.1".parse().unwrap()).is_public());
    }
}
