//! Where secret values come from, and in which order they are tried.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::store::{Keyring, StoreKind};
use crate::{SecretsError, Values};

/// The sources tried when `--secrets` is not given: the OS keyring, then
/// the environment.
pub const DEFAULT_SOURCES: &str = "keyring,env";

/// The largest secret file read; secrets are tokens, not documents.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// One place secret values come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An OS keyring (`keyring`) or the kernel keyutils store (`keyutils`).
    Keyring(StoreKind),
    /// Environment variables named by [`env_var_for`] (`env`).
    Env,
    /// A directory holding one file per secret, named as the secret
    /// (`file:DIR`).
    Dir(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keyring(StoreKind::Native) => f.write_str("keyring"),
            Self::Keyring(StoreKind::Keyutils) => f.write_str("keyutils"),
            Self::Env => f.write_str("env"),
            Self::Dir(dir) => write!(f, "file:{}", dir.display()),
        }
    }
}

/// The environment variable the `env` source reads for `name`:
/// `MCPGW_SECRET_` then the name in upper case with every character other
/// than a letter or digit replaced by `_` (`github.token` is read from
/// `MCPGW_SECRET_GITHUB_TOKEN`).
pub fn env_var_for(name: &str) -> String {
    let mut var = String::from("MCPGW_SECRET_");
    var.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    var
}

/// An ordered list of sources; the first that has a secret supplies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources(Vec<Source>);

impl std::str::FromStr for Sources {
    type Err = SecretsError;

    /// Parses `keyring,env,file:DIR` (any order, any subset).
    fn from_str(list: &str) -> Result<Self, SecretsError> {
        let mut sources = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let source = match item {
                "keyring" => Source::Keyring(StoreKind::Native),
                "keyutils" => Source::Keyring(StoreKind::Keyutils),
                "env" => Source::Env,
                _ => match item.strip_prefix("file:") {
                    Some(dir) if !dir.is_empty() => Source::Dir(PathBuf::from(dir)),
                    _ => return Err(SecretsError::UnknownSource(item.to_string())),
                },
            };
            if !sources.contains(&source) {
                sources.push(source);
            }
        }
        if sources.is_empty() {
            return Err(SecretsError::NoSources);
        }
        Ok(Self(sources))
    }
}

impl Default for Sources {
    fn default() -> Self {
        DEFAULT_SOURCES
            .parse()
            .unwrap_or_else(|_| Self(vec![Source::Env]))
    }
}

impl fmt::Display for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, source) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{source}")?;
        }
        Ok(())
    }
}

/// A secret no source had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The secret's name.
    pub name: String,
    /// Why each source that could not be asked was skipped.
    pub notes: Vec<String>,
}

/// The outcome of resolving a set of names.
#[derive(Debug, Default)]
pub struct Resolution {
    /// Values found, by name.
    pub values: Values,
    /// Names no source had, sorted.
    pub missing: Vec<Missing>,
}

impl Sources {
    /// The sources, in order.
    pub fn list(&self) -> &[Source] {
        &self.0
    }

    /// Looks up every name in `names`, trying sources in order. A keyring
    /// that cannot be reached is skipped, with the reason kept for names no
    /// later source has.
    pub async fn resolve(&self, names: &BTreeSet<String>) -> Resolution {
        let mut resolution = Resolution::default();
        let mut pending: BTreeSet<String> = names.clone();
        let mut notes = Notes::default();
        for source in &self.0 {
            if pending.is_empty() {
                break;
            }
            let found = match source {
                Source::Keyring(kind) => from_keyring(*kind, &pending, &mut notes).await,
                Source::Env => from_env(&pending, &mut notes),
                Source::Dir(dir) => from_dir(dir, &pending, &mut notes),
            };
            for (name, value) in found {
                pending.remove(&name);
                resolution.values.insert(name, value);
            }
        }
        resolution.missing = pending
            .into_iter()
            .map(|name| Missing {
                notes: notes.of(&name),
                name,
            })
            .collect();
        resolution
    }
}

/// Why sources could not answer: for every name, or for one.
#[derive(Default)]
struct Notes {
    all: Vec<String>,
    one: std::collections::BTreeMap<String, Vec<String>>,
}

impl Notes {
    fn all(&mut self, note: String) {
        self.all.push(note);
    }

    fn one(&mut self, name: &str, note: String) {
        self.one.entry(name.to_string()).or_default().push(note);
    }

    fn of(&self, name: &str) -> Vec<String> {
        let mut notes = self.all.clone();
        notes.extend(self.one.get(name).into_iter().flatten().cloned());
        notes
    }
}

async fn from_keyring(
    kind: StoreKind,
    names: &BTreeSet<String>,
    notes: &mut Notes,
) -> Vec<(String, SecretString)> {
    let keyring = match Keyring::open(kind).await {
        Ok(keyring) => keyring,
        Err(err) => {
            tracing::warn!("secret source skipped: {err}");
            notes.all(err.to_string());
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    for name in names {
        match keyring.get(name).await {
            Ok(Some(value)) => found.push((name.clone(), value)),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(secret = %name, "keyring lookup failed: {err}");
                if matches!(err, SecretsError::Timeout { .. }) {
                    notes.all(err.to_string());
                    break;
                }
                notes.one(name, err.to_string());
            }
        }
    }
    found
}

fn from_env(names: &BTreeSet<String>, notes: &mut Notes) -> Vec<(String, SecretString)> {
    let mut found = Vec::new();
    for name in names {
        let var = env_var_for(name);
        match std::env::var(&var) {
            Ok(value) if !value.is_empty() => found.push((name.clone(), SecretString::from(value))),
            Ok(_) => notes.one(name, format!("`{var}` is set but empty")),
            Err(std::env::VarError::NotUnicode(_)) => {
                notes.one(name, format!("`{var}` is not valid UTF-8"));
            }
            Err(std::env::VarError::NotPresent) => {}
        }
    }
    found
}

fn from_dir(
    dir: &Path,
    names: &BTreeSet<String>,
    notes: &mut Notes,
) -> Vec<(String, SecretString)> {
    let mut found = Vec::new();
    for name in names {
        let path = dir.join(name);
        match read_secret_file(&path) {
            Ok(Some(value)) => found.push((name.clone(), value)),
            Ok(None) => {}
            Err(reason) => notes.one(name, format!("{}: {reason}", path.display())),
        }
    }
    found
}

/// Reads one secret file: at most 64 KiB of UTF-8, with one trailing line
/// break removed (`echo token > file` writes one). `Ok(None)` when absent.
fn read_secret_file(path: &Path) -> Result<Option<SecretString>, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.to_string()),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| err.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err("larger than 64 KiB".to_string());
    }
    let mut text = String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err("empty".to_string());
    }
    Ok(Some(SecretString::from(text)))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn parses_source_lists_in_order() {
        let sources: Sources = "env, file:/run/x ,keyring,env".parse().unwrap();
        assert_eq!(
            sources.list(),
            [
                Source::Env,
                Source::Dir(PathBuf::from("/run/x")),
                Source::Keyring(StoreKind::Native)
            ]
        );
        assert_eq!(sources.to_string(), "env,file:/run/x,keyring");
        assert_eq!(Sources::default().to_string(), DEFAULT_SOURCES);
        assert!(matches!(
            "vault".parse::<Sources>(),
            Err(SecretsError::UnknownSource(s)) if s == "vault"
        ));
        assert!(matches!(
            "file:".parse::<Sources>(),
            Err(SecretsError::UnknownSource(_))
        ));
        assert!(matches!(
            " , ".parse::<Sources>(),
            Err(SecretsError::NoSources)
        ));
    }

    #[test]
    fn env_names_follow_the_documented_rule() {
        assert_eq!(env_var_for("github.token"), "MCPGW_SECRET_GITHUB_TOKEN");
        assert_eq!(env_var_for("a-b_c.D9"), "MCPGW_SECRET_A_B_C_D9");
    }

    #[tokio::test]
    async fn files_are_read_by_name_and_lose_one_line_break() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("one"), "first\r\n").unwrap();
        std::fs::write(dir.path().join("two"), "second\n\n").unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let sources: Sources = format!("file:{}", dir.path().display()).parse().unwrap();
        let names: BTreeSet<String> = ["one", "two", "empty", "absent"].map(String::from).into();
        let resolved = sources.resolve(&names).await;
        assert_eq!(resolved.values["one"].expose_secret(), "first");
        assert_eq!(resolved.values["two"].expose_secret(), "second\n");
        let missing: Vec<&str> = resolved.missing.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(missing, ["absent", "empty"]);
        assert!(
            resolved.missing[0].notes.is_empty(),
            "{:?}",
            resolved.missing
        );
        assert_eq!(resolved.missing[1].notes.len(), 1, "{:?}", resolved.missing);
        assert!(resolved.missing[1].notes[0].ends_with("empty: empty"));
    }

    #[tokio::test]
    async fn earlier_sources_win() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        std::fs::write(first.path().join("token"), "from-first").unwrap();
        std::fs::write(second.path().join("token"), "from-second").unwrap();
        std::fs::write(second.path().join("other"), "only-second").unwrap();
        let sources: Sources = format!(
            "file:{},file:{}",
            first.path().display(),
            second.path().display()
        )
        .parse()
        .unwrap();
        let names: BTreeSet<String> = ["token", "other"].map(String::from).into();
        let resolved = sources.resolve(&names).await;
        assert_eq!(resolved.values["token"].expose_secret(), "from-first");
        assert_eq!(resolved.values["other"].expose_secret(), "only-second");
        assert!(resolved.missing.is_empty());
    }
}
