//! A server's egress allowlist (`network: { egress: [...] }`): which
//! `host:port` destinations its egress proxy may connect it to, and the
//! decision itself, pure, so that the proxy and its tests share one
//! implementation.
//!
//! An entry is `HOST[:PORT]` (port 443 when left out) where `HOST` is a
//! DNS name (`api.github.com`), a wildcard (`*.example.com`: its
//! subdomains at any depth, never `example.com` itself), or an address or
//! network (`10.1.2.3`, `172.30.0.0/16`, `[fd00::5]`). A request names a
//! host; it is permitted when a name entry matches it on that port (or, for
//! an address written as the host, an address entry contains it). Every
//! address the name resolves to must then be public, or be contained in an
//! address entry on that port: a listed name that resolves into a LAN, a
//! Docker network, loopback or a metadata service is refused unless that
//! address is listed too. The proxy connects to the address it checked,
//! never resolving again. Nothing here resolves names or opens sockets.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::de::deserialize_checked;
use crate::error::invalid;
use crate::ip::{AddressClass, classify};

/// The port an entry without one allows.
pub const DEFAULT_PORT: u16 = 443;

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    host: HostPattern,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this name, lowercased, without a trailing dot.
    Name(String),
    /// Any name ending in `.` + this suffix.
    Subdomains(String),
    /// Addresses in this network.
    Net(ipnet::IpNet),
}

impl EgressRule {
    /// The port the entry allows.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for EgressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Name(name) => write!(f, "{name}:{}", self.port),
            HostPattern::Subdomains(suffix) => write!(f, "*.{suffix}:{}", self.port),
            HostPattern::Net(net) if net.prefix_len() == net.max_prefix_len() => match net.addr() {
                IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
                IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
            },
            HostPattern::Net(ipnet::IpNet::V4(net)) => write!(f, "{net}:{}", self.port),
            HostPattern::Net(ipnet::IpNet::V6(net)) => write!(f, "[{net}]:{}", self.port),
        }
    }
}

/// A DNS name as a request or an entry writes it, normalised: lowercase,
/// no trailing dot; `None` when it is not a name.
fn normalise_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (!name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)).then_some(name)
}

/// Parses an address or a network (`10.0.0.1`, `10.0.0.0/8`, `fd00::1`).
fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(addr.into());
    }
    text.parse::<ipnet::IpNet>().ok().map(|n| n.trunc())
}

impl TryFrom<String> for EgressRule {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let fix = "write `HOST[:PORT]`: a name (`api.github.com`), a wildcard (`*.example.com`), an address or network (`10.0.0.5`, `172.30.0.0/16`, `[fd00::5]:8443`); the port defaults to 443";
        let bad = |what: String| invalid(what, fix);
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some((inside, after)) = rest.split_once(']') else {
                return Err(bad(format!(
                    "egress entry `{text}` opens `[` without closing it"
                )));
            };
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| {
                    bad(format!("egress entry `{text}` has `{p}` after its `]`"))
                })?),
            };
            (inside, port)
        } else {
            match text.rsplit_once(':') {
                Some((_, _)) if text.matches(':').count() > 1 => {
                    return Err(bad(format!(
                        "egress entry `{text}` is an IPv6 address without brackets"
                    )));
                }
                Some((host, port)) => (host, Some(port)),
                None => (text.as_str(), None),
            }
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(bad(format!("egress entry `{text}`: `{p}` is not a port"))),
            },
        };
        let host = if let Some(net) = parse_net(host) {
            HostPattern::Net(net)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            match normalise_name(suffix) {
                Some(suffix) if suffix.contains('.') => HostPattern::Subdomains(suffix),
                Some(_) => {
                    return Err(invalid(
                        format_args!(
                            "egress entry `{text}` allows every name under a top-level domain"
                        ),
                        "name the domain whose subdomains the server needs (`*.example.com`)",
                    ));
                }
                None => {
                    return Err(bad(format!(
                        "egress entry `{text}`: `{suffix}` is not a domain name"
                    )));
                }
            }
        } else if host.contains('*') {
            return Err(invalid(
                format_args!(
                    "egress entry `{text}`: `*` may only open a wildcard (`*.example.com`)"
                ),
                "list the hosts the server needs, or use `network: bridge` to allow everything",
            ));
        } else {
            match normalise_name(host) {
                Some(name) => HostPattern::Name(name),
                None => {
                    return Err(bad(format!(
                        "egress entry `{text}`: `{host}` is not a host name"
                    )));
                }
            }
        };
        Ok(Self { host, port })
    }
}
deserialize_checked!(EgressRule, str);

/// Why the proxy refuses a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No entry allows this host on this port.
    NotListed,
    /// The name resolved to no address.
    Unresolved,
    /// Every address it resolved to is not public and not listed.
    NotPublic {
        /// The first such address.
        addr: IpAddr,
        /// Its class.
        class: AddressClass,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotListed => f.write_str("not in the server's egress allowlist"),
            Self::Unresolved => f.write_str("the name resolves to no address"),
            Self::NotPublic { addr, class } => write!(
                f,
                "it resolves to {addr}, {}, which the allowlist does not list",
                class.describe()
            ),
        }
    }
}

/// One decision of an egress proxy, as it reports it to its gateway (a
/// JSON line on its stdout) and as the gateway's audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EgressDecision {
    /// The catalog server whose proxy decided.
    pub server: String,
    /// `CONNECT`, or the method of a plain-HTTP request.
    pub method: String,
    /// The host as the client named it.
    pub host: String,
    /// The port.
    pub port: u16,
    /// `allowed`, `refused`, or `failed` (allowed, but unreachable).
    pub verdict: String,
    /// Why it was refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The address it was connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
}

/// A server's egress allowlist: at least one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    rules: Vec<EgressRule>,
}

impl Egress {
    /// An allowlist of `rules`; `None` when there are none.
    pub fn new(rules: Vec<EgressRule>) -> Option<Self> {
        (!rules.is_empty()).then_some(Self { rules })
    }

    /// The entries, in catalog order.
    pub fn rules(&self) -> &[EgressRule] {
        &self.rules
    }

    /// Whether a request for `host` (a name or an address, as the client
    /// wrote it) on `port` is allowed before resolution.
    pub fn permits_host(&self, host: &str, port: u16) -> bool {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(addr) = host.parse::<IpAddr>() {
            return self.lists_address(addr, port);
        }
        let Some(name) = normalise_name(host) else {
            return false;
        };
        self.rules
            .iter()
            .filter(|r| r.port == port)
            .any(|r| match &r.host {
                HostPattern::Name(n) => *n == name,
                HostPattern::Subdomains(suffix) => name
                    .strip_suffix(suffix.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                HostPattern::Net(_) => false,
            })
    }

    /// Whether an address entry contains `addr` on `port`.
    pub fn lists_address(&self, addr: IpAddr, port: u16) -> bool {
        let addr = canonical(addr);
        self.rules
            .iter()
            .filter(|r| r.port == port)
            .any(|r| match &r.host {
                HostPattern::Net(net) => net.contains(&addr),
                _ => false,
            })
    }

    /// Whether an entry names exactly `addr` (a single address, not a
    /// network) on `port`.
    fn lists_exactly(&self, addr: IpAddr, port: u16) -> bool {
        let addr = canonical(addr);
        self.rules.iter().filter(|r| r.port == port).any(|r| {
            matches!(&r.host, HostPattern::Net(net)
                if net.prefix_len() == net.max_prefix_len() && net.addr() == addr)
        })
    }

    /// The whole decision for `host:port` once resolved to `addrs`: where
    /// to connect, or why not. Every address must pass, so that a name
    /// holding one public and one private address cannot be used to reach
    /// the private one by whichever the proxy picks.
    ///
    /// # Errors
    ///
    /// The [`Refusal`], for the client's `403` and the log.
    pub fn decide(&self, host: &str, port: u16, addrs: &[IpAddr]) -> Result<SocketAddr, Refusal> {
        if !self.permits_host(host, port) {
            return Err(Refusal::NotListed);
        }
        let first = addrs.first().ok_or(Refusal::Unresolved)?;
        for &addr in addrs {
            let class = classify(addr);
            // A metadata endpoint hands out the host's credentials: only
            // an entry naming that very address admits it, never a network
            // that happens to contain it.
            let listed = if class == AddressClass::Metadata {
                self.lists_exactly(addr, port)
            } else {
                self.lists_address(addr, port)
            };
            if !class.is_public() && !listed {
                return Err(Refusal::NotPublic { addr, class });
            }
        }
        Ok(SocketAddr::new(*first, port))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Egress {
        Egress::new(
            entries
                .iter()
                .map(|e| EgressRule::try_from((*e).to_string()).unwrap())
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn entries_parse_and_print_normalised() {
        for (written, shown) in [
            ("api.github.com", "api.github.com:443"),
            ("API.GitHub.com.:8443", "api.github.com:8443"),
            ("*.example.com", "*.example.com:443"),
            ("10.0.0.5:80", "10.0.0.5:80"),
            ("172.30.1.2/16:8080", "172.30.0.0/16:8080"),
            ("[fd00::5]", "[fd00::5]:443"),
            ("[fd00::/8]:80", "[fd00::/8]:80"),
            ("internet", "internet:443"),
        ] {
            let rule = EgressRule::try_from(written.to_string()).unwrap();
            assert_eq!(rule.to_string(), shown, "{written}");
        }
    }

    #[test]
    fn bad_entries_say_why() {
        for (written, says) in [
            ("", "is not a host name"),
            ("*", "`*` may only open a wildcard"),
            ("*.com", "top-level domain"),
            ("a.*.example.com", "`*` may only open a wildcard"),
            ("api.github.com:0", "is not a port"),
            ("api.github.com:https", "is not a port"),
            ("api.github.com:70000", "is not a port"),
            ("fd00::5", "without brackets"),
            ("[fd00::5", "without closing"),
            ("[fd00::5]x", "after its `]`"),
            ("exa mple.com", "is not a host name"),
            ("-bad.example.com", "is not a host name"),
        ] {
            let err = EgressRule::try_from(written.to_string()).unwrap_err();
            assert!(err.contains(says), "{written}: {err}");
            assert!(err.contains("fix:"), "{written}: {err}");
        }
    }

    #[test]
    fn names_match_exactly_on_their_port() {
        let l = list(&["api.github.com", "uploads.github.com:8443"]);
        assert!(l.permits_host("api.github.com", 443));
        assert!(l.permits_host("API.GITHUB.COM.", 443));
        assert!(!l.permits_host("api.github.com", 80));
        assert!(!l.permits_host("github.com", 443));
        assert!(!l.permits_host("evil-api.github.com", 443));
        assert!(!l.permits_host("api.github.com.evil.com", 443));
        assert!(l.permits_host("uploads.github.com", 8443));
        assert!(!l.permits_host("uploads.github.com", 443));
    }

    #[test]
    fn a_wildcard_matches_subdomains_only() {
        let l = list(&["*.example.com"]);
        assert!(l.permits_host("a.example.com", 443));
        assert!(l.permits_host("a.b.example.com", 443));
        assert!(!l.permits_host("example.com", 443));
        assert!(!l.permits_host("badexample.com", 443));
        assert!(!l.permits_host(".example.com", 443));
        assert!(!l.permits_host("a.example.com.evil.org", 443));
        assert!(!l.permits_host("a.example.com", 80));
    }

    #[test]
    fn addresses_written_as_the_host_need_an_address_entry() {
        let l = list(&["api.github.com", "10.0.0.0/8:80", "[fd00::5]:80"]);
        assert!(l.permits_host("10.1.2.3", 80));
        assert!(!l.permits_host("10.1.2.3", 443));
        assert!(
            !l.permits_host("140.82.112.6", 443),
            "a public address not listed"
        );
        assert!(l.permits_host("[fd00::5]", 80));
        assert!(l.permits_host("fd00::5", 80));
        assert!(l.lists_address("::ffff:10.9.9.9".parse().unwrap(), 80));
    }

    #[track_caller]
    fn decide(l: &Egress, host: &str, port: u16, addrs: &[&str]) -> Result<SocketAddr, Refusal> {
        let addrs: Vec<IpAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        l.decide(host, port, &addrs)
    }

    #[test]
    fn a_listed_name_resolving_to_a_private_address_is_refused_unless_listed() {
        let l = list(&["internet:8080", "api.github.com"]);
        assert_eq!(
            decide(&l, "api.github.com", 443, &["140.82.112.6"]),
            Ok("140.82.112.6:443".parse().unwrap())
        );
        for (addr, class) in [
            ("172.30.0.2", AddressClass::Private),
            ("127.0.0.1", AddressClass::Loopback),
            ("169.254.169.254", AddressClass::Metadata),
            ("100.64.1.1", AddressClass::SharedCgnat),
            ("fd12::1", AddressClass::UniqueLocal),
        ] {
            assert_eq!(
                decide(&l, "internet", 8080, &[addr]),
                Err(Refusal::NotPublic {
                    addr: addr.parse().unwrap(),
                    class
                }),
                "{addr}"
            );
        }
        // One private address among public ones is enough to refuse.
        assert!(matches!(
            decide(&l, "api.github.com", 443, &["140.82.112.6", "10.0.0.1"]),
            Err(Refusal::NotPublic { .. })
        ));
        let listed = list(&["internet:8080", "172.30.0.0/16:8080"]);
        assert_eq!(
            decide(&listed, "internet", 8080, &["172.30.0.2"]),
            Ok("172.30.0.2:8080".parse().unwrap())
        );
        // A metadata endpoint only by its own address, never by a network
        // that contains it.
        let wide = list(&["metadata:80", "169.254.0.0/16:80", "0.0.0.0/0:80"]);
        assert!(matches!(
            decide(&wide, "metadata", 80, &["169.254.169.254"]),
            Err(Refusal::NotPublic {
                class: AddressClass::Metadata,
                ..
            })
        ));
        assert!(decide(&wide, "metadata", 80, &["169.254.1.1"]).is_ok());
        let exact = list(&["metadata:80", "169.254.169.254:80"]);
        assert!(decide(&exact, "metadata", 80, &["169.254.169.254"]).is_ok());
        // Listed for another port only: still refused.
        let other_port = list(&["internet:8080", "172.30.0.0/16:80"]);
        assert!(decide(&other_port, "internet", 8080, &["172.30.0.2"]).is_err());
        assert_eq!(decide(&l, "internet", 8080, &[]), Err(Refusal::Unresolved));
        assert_eq!(
            decide(&l, "elsewhere", 8080, &["1.1.1.1"]),
            Err(Refusal::NotListed)
        );
    }
}
