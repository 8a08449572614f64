//! Bearer tokens for the HTTP front: `mcpgw token create|ls|revoke`, and
//! checking a presented token.
//!
//! The store is a JSON file, mode 0600, holding for each token its name,
//! its profile and the SHA-256 of its value: the value itself is shown
//! once, at creation, and kept nowhere. A presented token is hashed and
//! compared with every stored hash in constant time.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::commands::{Failure, print_stdout};

/// One stored token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) name: String,
    pub(crate) profile: Option<String>,
    /// Hex SHA-256 of the token.
    sha256: String,
}

/// The token store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Tokens {
    tokens: Vec<Stored>,
}

/// How often a running gateway looks for changes to the token store.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The token store as a running gateway sees it: reread when the file
/// changes (looked at, at most, once a second), so that a new or revoked
/// token takes effect without a restart. A store that becomes unreadable
/// accepts no token until it is fixed.
#[derive(Debug)]
pub(crate) struct LiveTokens {
    path: PathBuf,
    state: parking_lot::Mutex<LiveState>,
}

#[derive(Debug)]
struct LiveState {
    tokens: std::sync::Arc<Tokens>,
    modified: Option<std::time::SystemTime>,
    checked: std::time::Instant,
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl LiveTokens {
    pub(crate) fn new(path: PathBuf, tokens: Tokens) -> Self {
        let state = LiveState {
            tokens: std::sync::Arc::new(tokens),
            modified: modified(&path),
            checked: std::time::Instant::now(),
        };
        Self {
            path,
            state: parking_lot::Mutex::new(state),
        }
    }

    /// The store as it is now.
    pub(crate) fn current(&self) -> std::sync::Arc<Tokens> {
        let mut state = self.state.lock();
        if state.checked.elapsed() >= RECHECK {
            state.checked = std::time::Instant::now();
            let now = modified(&self.path);
            if now != state.modified {
                state.modified = now;
                state.tokens = std::sync::Arc::new(match Tokens::load(&self.path) {
                    Ok(tokens) => {
                        tracing::info!("token store {} reread", self.path.display());
                        tokens
                    }
                    Err(err) => {
                        tracing::error!(
                            "token store unusable, accepting no token until it is fixed: {err:#}"
                        );
                        Tokens::default()
                    }
                });
            }
        }
        state.tokens.clone()
    }
}

/// Where tokens are kept unless `--tokens` says otherwise.
pub(crate) fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("mcpgw").join("tokens.json")
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Reads the store; a missing file is an empty store.
    ///
    /// # Errors
    ///
    /// An unreadable or malformed file, or one others may read.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(anyhow!("cannot read {}: {err}", path.display())),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(anyhow!(
                    "{} is readable by others (mode {mode:o}); fix: chmod 600 {}",
                    path.display(),
                    path.display()
                ));
            }
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a token store", path.display()))
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// The tokens' names and profiles.
    pub(crate) fn entries(&self) -> &[Stored] {
        &self.tokens
    }

    /// Whether the store holds no token.
    pub(crate) fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The stored token `presented` matches, if any.
    pub(crate) fn check(&self, presented: &str) -> Option<&Stored> {
        let wanted = hex::encode(digest(presented));
        let mut found = None;
        // Every entry is compared, whichever matches.
        for stored in &self.tokens {
            // Equal in time that does not depend on where the digests differ.
            if bool::from(wanted.as_bytes().ct_eq(stored.sha256.as_bytes())) {
                found = Some(stored);
            }
        }
        found
    }
}

/// `mcpgw token create|ls|revoke`.
pub(crate) fn command(action: crate::cli::TokenAction) -> Result<(), Failure> {
    use crate::cli::TokenAction;
    match action {
        TokenAction::Create {
            name,
            profile,
            tokens,
        } => create(&name, profile, &tokens.path()),
        TokenAction::Ls { tokens } => ls(&tokens.path()),
        TokenAction::Revoke { name, tokens } => revoke(&name, &tokens.path()),
    }
}

fn create(name: &str, profile: Option<String>, path: &Path) -> Result<(), Failure> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(Failure::usage(anyhow!(
            "token name `{name}` is not allowed; fix: use 1 to 64 letters, digits, `-`, `_` and `.`"
        )));
    }
    let mut store = Tokens::load(path)?;
    if store.tokens.iter().any(|t| t.name == name) {
        return Err(Failure::usage(anyhow!(
            "a token named `{name}` exists; fix: revoke it first (`mcpgw token revoke {name}`) or pick another name"
        )));
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| anyhow!("no randomness for a token: {e}"))?;
    let token = format!("mcpgw_{}", hex::encode(raw));
    store.tokens.push(Stored {
        name: name.to_string(),
        profile,
        sha256: hex::encode(digest(&token)),
    });
    store.save(path)?;
    print_stdout(&format!("{token}\n"));
    tracing::info!(
        "token `{name}` created in {}; it is shown once, above, and stored only as a hash",
        path.display()
    );
    Ok(())
}

fn ls(path: &Path) -> Result<(), Failure> {
    let store = Tokens::load(path)?;
    let mut out = format!("{:<24}  PROFILE\n", "TOKEN");
    for t in &store.tokens {
        out.push_str(&format!(
            "{:<24}  {}\n",
            t.name,
            t.profile.as_deref().unwrap_or("-")
        ));
    }
    print_stdout(&out);
    Ok(())
}

fn revoke(name: &str, path: &Path) -> Result<(), Failure> {
    let mut store = Tokens::load(path)?;
    let before = store.tokens.len();
    store.tokens.retain(|t| t.name != name);
    if store.tokens.len() == before {
        return Err(anyhow!("no token named `{name}` in {}", path.display()).into());
    }
    store.save(path)?;
    print_stdout(&format!("revoked token `{name}`\n"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_as_hashes_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let mut store = Tokens::default();
        store.tokens.push(Stored {
            name: "ci".into(),
            profile: Some("ci".into()),
            sha256: hex::encode(digest("mcpgw_secret")),
        });
        store.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("mcpgw_secret"));
        let loaded = Tokens::load(&path).unwrap();
        assert_eq!(loaded.check("mcpgw_secret").unwrap().name, "ci");
        assert!(loaded.check("mcpgw_secreT").is_none());
        assert!(loaded.check("").is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = Tokens::load(&path).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
    }
}
