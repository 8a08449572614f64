//! Rate limits as a catalog writes them: a `rate` (`10/min`: a count per
//! second, minute, hour or day) and an optional `burst`, declared at the
//! gateway and on profiles (`limits.per_client`) and on servers
//! (`limits.server`, `limits.per_client`, `limits.tools.T`).
//!
//! Everything is checked while parsing, inside the visitors, so a bad rate
//! is reported at its own line and column. It does not enforce anything:
//! the mux builds its token buckets from these specs.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use crate::de::{UniqueMap, deserialize_checked};
use crate::error::invalid;
use crate::units::Scalar;

/// A rate as written: `count` requests per `unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many requests per unit.
    pub count: NonZeroU32,
    /// The unit, one of [`Rate::UNITS`].
    unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => 86_400,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "min",
            Self::Hour => "h",
            Self::Day => "d",
        }
    }
}

impl Rate {
    /// The largest count a rate may have.
    pub const MAX_COUNT: u32 = 1_000_000_000;

    /// How often one request's worth of the bucket comes back: the unit
    /// divided by the count.
    #[must_use]
    pub fn replenish_every(&self) -> Duration {
        Duration::from_nanos(self.unit.seconds() * 1_000_000_000 / u64::from(self.count.get()))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.unit.as_str())
    }
}

impl TryFrom<Scalar> for Rate {
    type Error = String;

    fn try_from(value: Scalar) -> Result<Self, String> {
        let text = value.to_string();
        let bad = || {
            invalid(
                format_args!("`{text}` is not a rate"),
                "write a count per unit, such as `2/s`, `10/min`, `5000/h` or `1000/d`",
            )
        };
        let Scalar::Str(s) = value else {
            return Err(bad());
        };
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        let unit = match unit.trim() {
            "s" | "sec" | "second" => Unit::Second,
            "m" | "min" | "minute" => Unit::Minute,
            "h" | "hour" => Unit::Hour,
            "d" | "day" => Unit::Day,
            _ => return Err(bad()),
        };
        let count = u32::try_from(count)
            .ok()
            .filter(|n| *n <= Self::MAX_COUNT)
            .and_then(NonZeroU32::new)
            .ok_or_else(|| {
                invalid(
                    format_args!("rate `{text}` is out of range"),
                    "use a count from 1 to 1000000000 per unit",
                )
            })?;
        Ok(Self { count, unit })
    }
}
deserialize_checked!(Rate, scalar);

/// A token bucket: `burst` requests at once, refilled at `rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// How fast the bucket refills.
    pub rate: Rate,
    /// How many requests it holds; by default the rate's count (`10/min`
    /// allows 10 at once, then one every 6 s).
    pub burst: NonZeroU32,
}

impl RateLimit {
    fn new(rate: Rate, burst: Option<Burst>) -> Self {
        Self {
            rate,
            burst: burst.map_or(rate.count, |b| b.0),
        }
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, burst {}", self.rate, self.burst)
    }
}

/// A burst size from 1 to 1,000,000.
#[derive(Debug, Clone, Copy)]
struct Burst(NonZeroU32);

impl TryFrom<Scalar> for Burst {
    type Error = String;
    fn try_from(value: Scalar) -> Result<Self, String> {
        let burst = match &value {
            Scalar::Int(n) if *n <= 1_000_000 => u32::try_from(*n).ok().and_then(NonZeroU32::new),
            _ => None,
        };
        burst.map(Self).ok_or_else(|| {
            invalid(
                format_args!("`{value}` is not a burst size"),
                "write a whole number of requests from 1 to 1000000",
            )
        })
    }
}
deserialize_checked!(Burst, scalar);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    rate: Rate,
    burst: Option<Burst>,
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawRateLimit::deserialize(d)?;
        Ok(Self::new(raw.rate, raw.burst))
    }
}

/// `gateway.limits` and `profiles.P.limits`: a bucket for each client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientLimits {
    /// Each client's own bucket, for every limited request it makes.
    pub per_client: Option<RateLimit>,
}

/// `servers.X.limits`: the server's buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerLimits {
    /// One bucket for every client together.
    pub server: Option<RateLimit>,
    /// A bucket for each client.
    pub per_client: Option<RateLimit>,
    /// Buckets for single tools, by upstream name, in the order written.
    pub tools: Vec<(String, ToolLimits)>,
}

impl ServerLimits {
    /// Whether it limits nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.server.is_none() && self.per_client.is_none() && self.tools.is_empty()
    }
}

/// `servers.X.limits.tools.T`: `{ rate, burst }` for every client
/// together, and `per_client` for each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolLimits {
    /// One bucket for the tool, every client together.
    pub all: Option<RateLimit>,
    /// A bucket for each client, for this tool.
    pub per_client: Option<RateLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerLimits {
    server: Option<RateLimit>,
    per_client: Option<RateLimit>,
    #[serde(default)]
    tools: UniqueMap<ToolKey, ToolLimits>,
}

impl<'de> Deserialize<'de> for ServerLimits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawServerLimits::deserialize(d)?;
        Ok(Self {
            server: raw.server,
            per_client: raw.per_client,
            tools: raw.tools.0.into_iter().map(|(k, v)| (k.0, v)).collect(),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolLimits {
    rate: Option<Rate>,
    burst: Option<Burst>,
    per_client: Option<RateLimit>,
}

impl<'de> Deserialize<'de> for ToolLimits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Checked inside the mapping's visitor, so that an error names the
        // tool's own position rather than that of `tools`.
        struct ToolVisitor;
        impl<'de> Visitor<'de> for ToolVisitor {
            type Value = ToolLimits;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping with `rate` and `burst`, or `per_client`")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ToolLimits, A::Error> {
                let raw = RawToolLimits::deserialize(de::value::MapAccessDeserializer::new(map))?;
                ToolLimits::try_from(raw).map_err(de::Error::custom)
            }
        }
        d.deserialize_map(ToolVisitor)
    }
}

impl TryFrom<RawToolLimits> for ToolLimits {
    type Error = String;
    fn try_from(raw: RawToolLimits) -> Result<Self, String> {
        let all = match (raw.rate, raw.burst) {
            (Some(rate), burst) => Some(RateLimit::new(rate, burst)),
            (None, Some(_)) => {
                return Err(invalid(
                    "a tool's `burst` has no `rate`",
                    "add `rate`, such as `rate: 10/min`",
                ));
            }
            (None, None) => None,
        };
        if all.is_none() && raw.per_client.is_none() {
            return Err(invalid(
                "a tool's limits are empty",
                "write `rate` (every client together) or `per_client: { rate: … }`, or remove the tool",
            ));
        }
        Ok(Self {
            all,
            per_client: raw.per_client,
        })
    }
}

/// A tool's upstream name as a key (of `limits.tools`, of `cache`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ToolKey(pub(crate) String);

impl fmt::Display for ToolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ToolKey {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_whitespace) {
            return Err(invalid(
                format_args!("`{name}` is not a tool name"),
                "name one of the server's tools as the server names it, such as `create_issue`",
            ));
        }
        Ok(Self(name))
    }
}
deserialize_checked!(ToolKey, str);
