//! Durations (`60s`, `500ms`, `2m`), byte sizes (`512m`, `1g`) and CPU
//! counts as a catalog writes them.

use std::time::Duration;

use crate::error::invalid;

/// A YAML scalar as written: catalogs say `memory: 512m` and `cpus: 1`, so
/// the unit types accept strings and numbers alike and interpret them.
#[derive(Debug, Clone)]
pub(crate) enum Scalar {
    Bool(bool),
    Int(u64),
    Float(f64),
    Str(String),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(n) => write!(f, "{n}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Str(s) => f.write_str(s),
        }
    }
}

/// A positive duration written with a unit: `ms`, `s`, `m` or `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CatalogDuration(pub(crate) Duration);

impl TryFrom<Scalar> for CatalogDuration {
    type Error = String;

    fn try_from(value: Scalar) -> Result<Self, String> {
        let text = value.to_string();
        let bad = || {
            invalid(
                format_args!("`{text}` is not a duration"),
                "write a number with a unit, such as `500ms`, `30s`, `2m` or `1h`",
            )
        };
        let Scalar::Str(s) = value else {
            return Err(bad());
        };
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let duration = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(bad()),
        };
        if duration.is_zero() || duration > Duration::from_secs(24 * 3600) {
            return Err(invalid(
                format_args!("duration `{s}` is out of range"),
                "use a duration above zero and at most 24h",
            ));
        }
        Ok(Self(duration))
    }
}

/// A memory size in bytes, written as a number of bytes or with a `k`, `m`
/// or `g` suffix (powers of 1024, as Docker reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub(crate) u64);

impl ByteSize {
    /// Docker refuses a memory limit under 6 MiB.
    const MIN: u64 = 6 * 1024 * 1024;
}

impl TryFrom<Scalar> for ByteSize {
    type Error = String;

    fn try_from(value: Scalar) -> Result<Self, String> {
        let text = value.to_string();
        let bytes = bytes(value, "a memory size")?;
        if bytes < Self::MIN {
            return Err(invalid(
                format_args!("memory `{text}` is below Docker's minimum of 6m"),
                "give the container at least `6m`; most servers need `128m` or more",
            ));
        }
        Ok(Self(bytes))
    }
}

/// A file size in bytes, written as [`ByteSize`] is; at least 1 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileSize(pub(crate) u64);

impl TryFrom<Scalar> for FileSize {
    type Error = String;

    fn try_from(value: Scalar) -> Result<Self, String> {
        let text = value.to_string();
        let bytes = bytes(value, "a file size")?;
        if bytes < 1024 {
            return Err(invalid(
                format_args!("file size `{text}` is below 1k"),
                "give at least `1k`; `64m` is a common bound",
            ));
        }
        Ok(Self(bytes))
    }
}

/// Bytes, or a number with `k`, `m` or `g` (powers of 1024).
fn bytes(value: Scalar, what: &str) -> Result<u64, String> {
    let text = value.to_string();
    let bad = || {
        invalid(
            format_args!("`{text}` is not {what}"),
            "write bytes or a number with `k`, `m` or `g`, such as `512m`",
        )
    };
    match value {
        Scalar::Int(n) => Ok(n),
        Scalar::Bool(_) | Scalar::Float(_) => Err(bad()),
        Scalar::Str(s) => {
            let s = s.trim().to_ascii_lowercase();
            let s = s.strip_suffix('b').unwrap_or(&s);
            let (digits, factor) = match s.as_bytes().last() {
                Some(b'k') => (&s[..s.len() - 1], 1u64 << 10),
                Some(b'm') => (&s[..s.len() - 1], 1 << 20),
                Some(b'g') => (&s[..s.len() - 1], 1 << 30),
                _ => (s, 1),
            };
            let n: u64 = digits.parse().map_err(|_| bad())?;
            n.checked_mul(factor).ok_or_else(bad)
        }
    }
}

/// A CPU count, fractional allowed (`0.5`), stored as Docker's nano-CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cpus(pub(crate) u64);

impl TryFrom<Scalar> for Cpus {
    type Error = String;

    fn try_from(value: Scalar) -> Result<Self, String> {
        let text = value.to_string();
        let cpus = match &value {
            Scalar::Int(n) => *n as f64,
            Scalar::Float(x) => *x,
            Scalar::Str(s) => s.trim().parse::<f64>().unwrap_or(f64::NAN),
            Scalar::Bool(_) => f64::NAN,
        };
        if !(0.01..=1024.0).contains(&cpus) {
            return Err(invalid(
                format_args!("`{text}` is not a CPU count"),
                "write a number of CPUs from 0.01 to 1024, such as `1` or `0.5`",
            ));
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let nano = (cpus * 1e9).round() as u64;
        Ok(Self(nano))
    }
}

crate::de::deserialize_checked!(CatalogDuration, scalar);
crate::de::deserialize_checked!(ByteSize, scalar);
crate::de::deserialize_checked!(FileSize, scalar);
crate::de::deserialize_checked!(Cpus, scalar);
