//! Secret sources (OS keyring, environment, files), `secrecy` types and the
//! redaction of known secret values.
//!
//! A value is read into a [`SecretString`] and stays one until the
//! supervisor hands it to the engine at container creation. Nothing here
//! implements `Debug`, `Display` or `Serialize` in a way that shows a value,
//! and errors name secrets, never values.
//!
//! - [`Sources`]: where values come from, tried in order (`keyring,env` by
//!   default; `--secrets` on the command line).
//! - [`store::Keyring`]: the OS keyring, called off the async threads with a
//!   deadline so a locked keyring or a missing D-Bus session is an error,
//!   never a hang.
//! - [`Redactor`]: finds known values, raw and encoded, in text bound for a
//!   client or a log, and replaces them with `[REDACTED:<name>]`; its
//!   `_decoded` methods also see values behind JSON escapes.

mod error;
mod panic;
mod redact;
mod source;
pub mod store;
mod unescape;

use std::collections::BTreeMap;

pub use error::SecretsError;
pub use panic::install_panic_hook;
pub use redact::{LiveRedactor, MIN_SECRET_BYTES, Redactor, global, set_global};
pub use secrecy::{ExposeSecret, SecretString};
pub use source::{DEFAULT_SOURCES, Missing, Resolution, Source, Sources, env_var_for};

/// The service name mcpgw's entries carry in the OS keyring.
pub const KEYRING_SERVICE: &str = "mcpgw";

/// What one server receives: for a container, environment variables
/// holding values, and files (by name, under `/run/secrets/`) holding
/// values; for a remote server, the values its credentials are built from.
#[derive(Default)]
pub struct Injection {
    /// `(variable, value)` pairs.
    pub env: Vec<(String, SecretString)>,
    /// `(file name, value)` pairs.
    pub files: Vec<(String, SecretString)>,
    /// `(secret name, value)` pairs, for a remote server's headers and
    /// OAuth client secret; never reach a container.
    pub named: Vec<(String, SecretString)>,
}

impl std::fmt::Debug for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |pairs: &[(String, SecretString)]| -> Vec<String> {
            pairs.iter().map(|(k, _)| k.clone()).collect()
        };
        f.debug_struct("Injection")
            .field("env", &names(&self.env))
            .field("files", &names(&self.files))
            .field("named", &names(&self.named))
            .finish()
    }
}

/// Secret values by name, as resolved from the sources.
pub type Values = BTreeMap<String, SecretString>;
