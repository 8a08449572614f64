//! Newtypes for the names a catalog declares, each checked once on the way in.

use std::fmt;

use crate::error::invalid;

/// A server's name: `[a-z0-9-]{1,32}`. It prefixes every exposed tool and
/// prompt name, labels the container and tags the server's log lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerName(String);

impl ServerName {
    /// The longest server name allowed.
    pub const MAX_LEN: usize = 32;

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Stands in while a server's body is validated, before its key is known.
    pub(crate) fn placeholder() -> Self {
        Self(String::new())
    }
}

impl TryFrom<String> for ServerName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        check_short_name("server", &name)?;
        Ok(Self(name))
    }
}

/// `[a-z0-9-]{1,32}`, the rule for server and profile names.
fn check_short_name(kind: &str, name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > ServerName::MAX_LEN || !valid_chars {
        return Err(invalid(
            format_args!("{kind} name `{name}` is not allowed"),
            "use 1 to 32 characters of lowercase letters, digits and `-`",
        ));
    }
    Ok(())
}

/// A client profile's name: `[a-z0-9-]{1,32}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ProfileName(pub(crate) String);

impl TryFrom<String> for ProfileName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        check_short_name("profile", &name)?;
        Ok(Self(name))
    }
}
crate::de::deserialize_checked!(ProfileName, str);

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What joins a server name and an upstream name in an exposed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Separator(String);

impl Separator {
    /// The separator as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Separator {
    fn default() -> Self {
        Self("__".to_string())
    }
}

impl TryFrom<String> for Separator {
    type Error = String;

    fn try_from(sep: String) -> Result<Self, String> {
        // Exposed names must match ^[A-Za-z0-9_-]{1,64}$, so the separator
        // must be made of those characters too.
        let valid = (1..=8).contains(&sep.len())
            && sep
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(invalid(
                format_args!("separator `{sep}` is not allowed"),
                "use 1 to 8 characters of letters, digits, `_` and `-` (the default is `__`)",
            ));
        }
        Ok(Self(sep))
    }
}

/// The name of a secret in the secret store: `[A-Za-z0-9._-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName(String);

impl SecretName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SecretName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        let valid = (1..=128).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(invalid(
                format_args!("secret name `{name}` is not allowed"),
                "use 1 to 128 characters of letters, digits, `.`, `_` and `-`",
            ));
        }
        Ok(Self(name))
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EnvName(pub(crate) String);

impl TryFrom<String> for EnvName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        let mut bytes = name.bytes();
        let valid = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && name.len() <= 256;
        if !valid {
            return Err(invalid(
                format_args!("environment variable name `{name}` is not allowed"),
                "use letters, digits and `_`, not starting with a digit",
            ));
        }
        Ok(Self(name))
    }
}

crate::de::deserialize_checked!(ServerName, str);
crate::de::deserialize_checked!(Separator, str);
crate::de::deserialize_checked!(SecretName, str);
crate::de::deserialize_checked!(EnvName, str);

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
