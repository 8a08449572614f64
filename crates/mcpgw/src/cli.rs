//! The command line, as clap sees it. Flags only; no behaviour.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// mcpgw: one MCP endpoint in front of many MCP servers, each in its own
/// hardened Docker container.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start every server in the catalog and serve them as one MCP server.
    Run {
        /// The catalog YAML.
        #[arg(long, short)]
        catalog: PathBuf,
        /// How clients connect.
        #[arg(long, value_enum, default_value_t = Transport::Stdio)]
        transport: Transport,
        /// Address to listen on with `--transport http`.
        #[arg(long, default_value = "127.0.0.1:8811")]
        listen: String,
        #[command(flatten)]
        secrets: SecretsArg,
    },
    /// Check a catalog without starting anything.
    Validate {
        /// The catalog YAML.
        #[arg(long, short)]
        catalog: PathBuf,
    },
    /// Start the servers, print the merged tool table, and stop them.
    Tools {
        /// The catalog YAML.
        #[arg(long, short)]
        catalog: PathBuf,
        #[command(flatten)]
        secrets: SecretsArg,
    },
    /// Start the server that owns tool NAME, call it once, print the result.
    Call {
        /// The catalog YAML.
        #[arg(long, short)]
        catalog: PathBuf,
        /// The exposed tool name, such as `time__get_current_time`.
        name: String,
        /// The arguments, as a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
        #[command(flatten)]
        secrets: SecretsArg,
    },
    /// Manage the secrets servers receive, in the OS keyring.
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },

    /// List the containers of mcpgw gateways on this engine, and whether
    /// each one's gateway is still running.
    Ps,
    /// Remove the containers of gateways that are gone.
    Gc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Transport {
    /// The gateway's own stdin and stdout (desktop clients).
    Stdio,
    /// Streamable HTTP at `/mcp`.
    Http,
}

/// Where secret values come from.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SecretsArg {
    /// Secret sources, tried in order: `keyring` (the OS keyring),
    /// `keyutils` (Linux kernel keyring), `env` (`MCPGW_SECRET_<NAME>`) and
    /// `file:DIR` (one file per secret).
    #[arg(long = "secrets", env = "MCPGW_SECRETS", default_value = mcpgw_secrets::DEFAULT_SOURCES)]
    pub(crate) sources: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretAction {
    /// Store a secret: the value is read from stdin when stdin is not a
    /// terminal, else from a prompt that does not echo.
    Set {
        /// The secret's name, as the catalog's `secrets` refers to it.
        name: String,
        #[command(flatten)]
        store: StoreArg,
    },
    /// List stored secrets by name, and which catalog servers use each.
    Ls {
        /// Also list which of this catalog's secrets no source has.
        #[arg(long, short)]
        catalog: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        secrets: SecretsArg,
    },
    /// Delete a stored secret.
    Rm {
        /// The secret's name.
        name: String,
        #[command(flatten)]
        store: StoreArg,
    },
}

/// Which keyring `mcpgw secret` works on.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreArg {
    /// `keyring` (the OS keyring) or `keyutils` (the Linux kernel keyring,
    /// lost at reboot).
    #[arg(long, value_enum, default_value_t = Store::Keyring)]
    pub(crate) store: Store,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Store {
    /// The OS keyring: Secret Service, Keychain or Credential Manager.
    Keyring,
    /// The Linux kernel keyutils store.
    Keyutils,
}
