//! The OS keyring, through the `keyring-core` family of stores.
//!
//! Every call runs on a thread of its own and is awaited with a deadline:
//! keyring APIs block, a locked Secret Service may wait for a password
//! prompt, and a missing D-Bus session may stall. A detached thread, unlike
//! `spawn_blocking`, cannot hold up the process's exit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keyring_core::{CredentialStore, Entry, Error as KeyringError};
use secrecy::{ExposeSecret, SecretString};

use crate::{KEYRING_SERVICE, SecretsError};

/// How long one keyring call may take.
pub const KEYRING_TIMEOUT: Duration = Duration::from_secs(10);

/// Which keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The platform's own: Secret Service (D-Bus) on Linux and the BSDs,
    /// Keychain on macOS, Credential Manager on Windows.
    Native,
    /// The Linux kernel's keyutils store; it does not survive a reboot.
    Keyutils,
}

impl StoreKind {
    /// How errors name the store.
    pub fn label(self) -> &'static str {
        match self {
            Self::Native if cfg!(target_os = "macos") => "macOS Keychain",
            Self::Native if cfg!(windows) => "Windows Credential Manager",
            Self::Native => "OS keyring (Secret Service)",
            Self::Keyutils => "kernel keyutils store",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            Self::Native if cfg!(any(target_os = "macos", windows)) => {
                "check that the keyring is unlocked, or use `--secrets env` or `--secrets file:DIR`"
            }
            Self::Native => {
                "run inside a desktop session with a Secret Service daemon (such as gnome-keyring) on D-Bus, or use `--secrets env` or `--secrets file:DIR`"
            }
            Self::Keyutils => {
                "check that the kernel allows keyutils (containers often forbid it), or use `--secrets env` or `--secrets file:DIR`"
            }
        }
    }
}

/// An open keyring.
#[derive(Clone)]
pub struct Keyring {
    kind: StoreKind,
    store: Arc<CredentialStore>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("kind", &self.kind).finish()
    }
}

impl Keyring {
    /// Connects to the keyring.
    ///
    /// # Errors
    ///
    /// When the keyring is unreachable or does not answer in time.
    pub async fn open(kind: StoreKind) -> Result<Self, SecretsError> {
        let store = off_thread(kind, move || open_store(kind)).await?;
        Ok(Self { kind, store })
    }

    /// Which keyring this is.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// The value stored under `name`, if any.
    ///
    /// # Errors
    ///
    /// When the keyring fails or the value is not UTF-8.
    pub async fn get(&self, name: &str) -> Result<Option<SecretString>, SecretsError> {
        let entry = self.entry(name)?;
        let owned = name.to_string();
        off_thread(self.kind, move || match entry.get_password() {
            Ok(value) => Ok(Some(SecretString::from(value))),
            Err(KeyringError::NoEntry) => Ok(None),
            Err(err) => Err(err),
        })
        .await
        .map_err(|err| named(err, &owned))
    }

    /// Stores `value` under `name`, replacing any earlier value.
    ///
    /// # Errors
    ///
    /// When the keyring fails.
    pub async fn set(&self, name: &str, value: SecretString) -> Result<(), SecretsError> {
        let entry = self.entry(name)?;
        off_thread(self.kind, move || entry.set_password(value.expose_secret())).await
    }

    /// Deletes `name`; returns whether it existed.
    ///
    /// # Errors
    ///
    /// When the keyring fails.
    pub async fn delete(&self, name: &str) -> Result<bool, SecretsError> {
        let entry = self.entry(name)?;
        off_thread(self.kind, move || match entry.delete_credential() {
            Ok(()) => Ok(true),
            Err(KeyringError::NoEntry) => Ok(false),
            Err(err) => Err(err),
        })
        .await
    }

    /// The names of mcpgw's entries, sorted.
    ///
    /// # Errors
    ///
    /// When the keyring fails, or cannot list (keyutils cannot).
    pub async fn list(&self) -> Result<Vec<String>, SecretsError> {
        if self.kind == StoreKind::Keyutils {
            return Err(SecretsError::CannotList(self.kind.label()));
        }
        let store = self.store.clone();
        let mut names = off_thread(self.kind, move || {
            let spec = HashMap::from([("service", KEYRING_SERVICE)]);
            let entries = Entry::search_in_store(&store, &spec)?;
            Ok(entries
                .iter()
                .filter_map(Entry::get_specifiers)
                .filter(|(service, _)| service == KEYRING_SERVICE)
                .map(|(_, user)| user)
                .collect::<Vec<_>>())
        })
        .await?;
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn entry(&self, name: &str) -> Result<Entry, SecretsError> {
        Entry::new_in_store(&self.store, KEYRING_SERVICE, name)
            .map_err(|err| unavailable(self.kind, &err))
    }
}

fn open_store(kind: StoreKind) -> Result<Arc<CredentialStore>, KeyringError> {
    match kind {
        StoreKind::Native => native_store(),
        StoreKind::Keyutils => keyutils_store(),
    }
}

#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
fn native_store() -> Result<Arc<CredentialStore>, KeyringError> {
    Ok(zbus_secret_service_keyring_store::Store::new()?)
}

#[cfg(target_os = "macos")]
fn native_store() -> Result<Arc<CredentialStore>, KeyringError> {
    Ok(apple_native_keyring_store::keychain::Store::new()?)
}

#[cfg(windows)]
fn native_store() -> Result<Arc<CredentialStore>, KeyringError> {
    Ok(windows_native_keyring_store::Store::new()?)
}

#[cfg(not(any(unix, windows)))]
fn native_store() -> Result<Arc<CredentialStore>, KeyringError> {
    Err(KeyringError::NotSupportedByStore(
        "this platform has no supported keyring".to_string(),
    ))
}

#[cfg(target_os = "linux")]
fn keyutils_store() -> Result<Arc<CredentialStore>, KeyringError> {
    Ok(linux_keyutils_keyring_store::Store::new()?)
}

#[cfg(not(target_os = "linux"))]
fn keyutils_store() -> Result<Arc<CredentialStore>, KeyringError> {
    Err(KeyringError::NotSupportedByStore(
        "keyutils exists only on Linux".to_string(),
    ))
}

/// Runs `call` on a thread of its own and waits at most [`KEYRING_TIMEOUT`].
async fn off_thread<T: Send + 'static>(
    kind: StoreKind,
    call: impl FnOnce() -> Result<T, KeyringError> + Send + 'static,
) -> Result<T, SecretsError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("mcpgw-keyring".to_string())
        .spawn(move || {
            let _ = tx.send(call());
        })
        .map_err(|err| SecretsError::Unavailable {
            store: kind.label(),
            reason: format!("could not start a thread: {err}"),
            fix: "retry",
        })?;
    match tokio::time::timeout(KEYRING_TIMEOUT, rx).await {
        Ok(Ok(result)) => result.map_err(|err| unavailable(kind, &err)),
        Ok(Err(_)) => Err(SecretsError::Unavailable {
            store: kind.label(),
            reason: "the keyring call panicked".to_string(),
            fix: kind.fix(),
        }),
        Err(_) => Err(SecretsError::Timeout {
            store: kind.label(),
            limit: KEYRING_TIMEOUT,
        }),
    }
}

/// Describes a keyring error without ever formatting the variants that
/// carry stored bytes.
fn unavailable(kind: StoreKind, err: &KeyringError) -> SecretsError {
    let reason = match err {
        KeyringError::BadEncoding(_) | KeyringError::BadDataFormat(..) => {
            "a stored value is not valid UTF-8".to_string()
        }
        KeyringError::Ambiguous(entries) => {
            format!("{} entries match one name", entries.len())
        }
        other => other.to_string(),
    };
    SecretsError::Unavailable {
        store: kind.label(),
        reason,
        fix: kind.fix(),
    }
}

fn named(err: SecretsError, name: &str) -> SecretsError {
    match err {
        SecretsError::Unavailable { reason, .. } if reason.contains("UTF-8") => {
            SecretsError::BadValue {
                name: name.to_string(),
                reason: "its stored value is not valid UTF-8",
            }
        }
        other => other,
    }
}
