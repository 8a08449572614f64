//! Secret sources (OS keyring, environment, files), `secrecy` types and the
//! redaction of known secret values.
//!
//! Empty for now: secret injection is a separate piece of work, and until it
//! lands the gateway refuses to start a server that declares `secrets`
//! rather than start it without them.
