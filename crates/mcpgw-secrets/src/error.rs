//! Errors from secret sources: they name secrets and stores, never values.

use std::time::Duration;

/// What can go wrong reading or writing secrets. Messages name secrets and
/// stores, never values.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// `--secrets` could not be parsed.
    #[error(
        "secret source `{0}` is not known; fix: use a comma-separated list of `keyring`, `keyutils`, `env` and `file:DIR`"
    )]
    UnknownSource(String),
    /// `--secrets` names no source.
    #[error(
        "no secret source given; fix: use a comma-separated list of `keyring`, `keyutils`, `env` and `file:DIR`"
    )]
    NoSources,
    /// The keyring could not be reached or refused the operation.
    #[error("the {store} is unavailable: {reason}; fix: {fix}")]
    Unavailable {
        /// Which store.
        store: &'static str,
        /// What it said, without any value.
        reason: String,
        /// What the user can do.
        fix: &'static str,
    },
    /// The keyring did not answer in time.
    #[error(
        "the {store} did not answer within {limit:?} (is it locked, or waiting for a password prompt nobody can see?); fix: unlock it, or use `--secrets env` or `--secrets file:DIR`"
    )]
    Timeout {
        /// Which store.
        store: &'static str,
        /// How long we waited.
        limit: Duration,
    },
    /// The store cannot list its entries.
    #[error("the {0} cannot list its entries")]
    CannotList(&'static str),
    /// A value is not usable.
    #[error("secret `{name}` is not usable: {reason}")]
    BadValue {
        /// The secret's name.
        name: String,
        /// Why, without the value.
        reason: &'static str,
    },
}
