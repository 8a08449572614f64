//! Deserialization helpers that keep error positions exact.
//!
//! `yaml_serde` positions an error at the event being read when the error is
//! raised, so checks run *inside* visitors: a bad scalar is reported at the
//! scalar, a duplicate key at its mapping. A plain `serde(try_from)` would
//! report at the enclosing mapping instead.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, Visitor};

use crate::units::Scalar;

/// Implements `Deserialize` for a type checked from a string
/// (`TryFrom<String, Error = String>`) or from any scalar
/// (`TryFrom<Scalar, Error = String>`).
macro_rules! deserialize_checked {
    ($ty:ty, str) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str($crate::de::StrVisitor::<$ty>::new())
            }
        }
    };
    ($ty:ty, scalar) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any($crate::de::ScalarVisitor::<$ty>::new())
            }
        }
    };
}
pub(crate) use deserialize_checked;

pub(crate) struct StrVisitor<T>(PhantomData<T>);

impl<T> StrVisitor<T> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: TryFrom<String, Error = String>> Visitor<'_> for StrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::try_from(v.to_string()).map_err(E::custom)
    }
}

pub(crate) struct ScalarVisitor<T>(PhantomData<T>);

impl<T> ScalarVisitor<T> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: TryFrom<Scalar, Error = String>> Visitor<'_> for ScalarVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a string")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        T::try_from(Scalar::Bool(v)).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(Scalar::Int(v)).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            #[allow(clippy::cast_precision_loss)]
            Err(_) => T::try_from(Scalar::Float(v as f64)).map_err(E::custom),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        T::try_from(Scalar::Float(v)).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::try_from(Scalar::Str(v.to_string())).map_err(E::custom)
    }
}

/// A mapping whose keys must be unique, in the order written. serde's own
/// map types keep the last of two equal keys without a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UniqueMap<K, V>(pub(crate) Vec<(K, V)>);

impl<K, V> Default for UniqueMap<K, V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, K, V> serde::Deserialize<'de> for UniqueMap<K, V>
where
    K: serde::Deserialize<'de> + PartialEq + fmt::Display,
    V: serde::Deserialize<'de>,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
        where
            K: serde::Deserialize<'de> + PartialEq + fmt::Display,
            V: serde::Deserialize<'de>,
        {
            type Value = UniqueMap<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                collect_unique(map).map(UniqueMap)
            }
        }
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

/// Reads a mapping's entries in order, refusing a key seen before. Called
/// from inside a visitor so the error is positioned at the mapping.
pub(crate) fn collect_unique<'de, A, K, V>(mut map: A) -> Result<Vec<(K, V)>, A::Error>
where
    A: MapAccess<'de>,
    K: serde::Deserialize<'de> + PartialEq + fmt::Display,
    V: serde::Deserialize<'de>,
{
    let mut entries: Vec<(K, V)> = Vec::new();
    while let Some(key) = map.next_key::<K>()? {
        if entries.iter().any(|(k, _)| *k == key) {
            return Err(de::Error::custom(crate::error::invalid(
                format_args!("duplicate key `{key}`"),
                "keep only one of them",
            )));
        }
        let value = map.next_value::<V>()?;
        entries.push((key, value));
    }
    Ok(entries)
}
