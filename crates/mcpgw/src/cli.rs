//! The command line, as clap sees it. Flags only; no behaviour.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// mcpgw: one MCP endpoint in front of many MCP servers, each in its own
/// hardened Docker container.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub(crate) struct Cli {
    /// The container engine: Docker, or Podman's Docker-compatible service
    /// (`podman system service`).
    #[arg(long, global = true, value_enum, env = "MCPGW_RUNTIME", default_value_t = Runtime::Docker)]
    pub(crate) runtime: Runtime,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Runtime {
    /// Docker: `DOCKER_HOST`, else its default socket.
    Docker,
    /// Podman: `CONTAINER_HOST` or `DOCKER_HOST`, else its rootless or
    /// system socket.
    Podman,
}

impl Runtime {
    pub(crate) fn engine(self) -> mcpgw_docker::Engine {
        match self {
            Self::Docker => mcpgw_docker::Engine::Docker,
            Self::Podman => mcpgw_docker::Engine::Podman,
        }
    }
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
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Serve as a server's egress proxy: HTTP CONNECT and absolute-URI
    /// requests to the allowed hosts only. The gateway runs it in a
    /// container for each server with `network: { egress: [...] }`; it is
    /// not usually run by hand.
    EgressProxy {
        /// The catalog server it serves, for its log lines.
        #[arg(long)]
        server: String,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:3128")]
        listen: std::net::SocketAddr,
        /// Serve only clients from this network (`ADDRESS/PREFIX`): the
        /// server's egress network, so that nothing on the uplink can use
        /// the server's allowlist. Absent: any client.
        #[arg(long)]
        peers: Option<String>,
        /// An allowlist entry, `HOST[:PORT]` as the catalog writes it;
        /// repeat for each.
        #[arg(long = "allow", required = true)]
        allow: Vec<String>,
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
    /// Start the servers, scan what they list for tool poisoning, print
    /// the findings and stop them; exit 1 when one is at or above
    /// `--fail-on`.
    Scan {
        /// The catalog YAML.
        #[arg(long, short)]
        catalog: PathBuf,
        /// How to print the findings.
        #[arg(long, value_enum, default_value_t = crate::scan::Format::Table)]
        format: crate::scan::Format,
        /// The lowest severity that fails the run: info, low, medium,
        /// high or critical.
        #[arg(long, default_value = "high")]
        fail_on: mcpgw_scan::Severity,
        #[command(flatten)]
        secrets: SecretsArg,
    },
    /// Start the servers and pin what they are: write the lockfile
    /// (`CATALOG.lock`) with each image's digest and the SHA-256 of each
    /// definition they list. `mcpgw run` then serves only what matches.
    Lock {
        /// The catalog YAML.
        #[arg(long, short)]
        catalog: PathBuf,
        /// Write nothing; exit 1 when the servers differ from the
        /// lockfile, printing how (for CI).
        #[arg(long, conflicts_with = "update")]
        check: bool,
        /// Re-pin: write the lockfile anew, printing what changed.
        #[arg(long)]
        update: bool,
        #[command(flatten)]
        secrets: SecretsArg,
    },
    /// Manage the bearer tokens HTTP clients present.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Manage the secrets servers receive, in the OS keyring.
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
    /// Add mcpgw to a desktop client's MCP configuration, or take it out.
    Client {
        #[command(subcommand)]
        action: ClientAction,
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

/// Options of the HTTP front.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct HttpArgs {
    /// `token`: every request needs a bearer token from the token store;
    /// `oauth`: an OAuth access token from the issuer in the catalog's
    /// `gateway.auth.oauth`; `token,oauth`: either. One of them is
    /// required to listen beyond loopback; `none`: loopback only.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "none")]
    pub(crate) auth: Vec<Auth>,
    #[command(flatten)]
    pub(crate) tokens: TokensArg,
    /// A further `Host` the gateway answers to (loopback names and the
    /// listen address always are). Repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub(crate) allow_hosts: Vec<String>,
    /// A browser `Origin` allowed to call, such as `https://app.example:443`.
    /// Repeatable; without any, a request carrying `Origin` is refused.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub(crate) allow_origins: Vec<String>,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub(crate) max_body: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Auth {
    /// No authentication; refused beyond loopback.
    None,
    /// Bearer tokens from the token store.
    Token,
    /// OAuth 2.1 access tokens (JWTs) from the catalog's issuer.
    Oauth,
}

/// Where bearer tokens are stored.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TokensArg {
    /// The token store (default `~/.config/mcpgw/tokens.json`).
    #[arg(long = "tokens", env = "MCPGW_TOKENS", value_name = "FILE")]
    pub(crate) path: Option<PathBuf>,
}

impl TokensArg {
    pub(crate) fn path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(crate::tokens::default_path)
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenAction {
    /// Create a token and print it, once.
    Create {
        /// A name for the token, to list and revoke it by.
        name: String,
        /// The catalog profile the token is bound to.
        #[arg(long)]
        profile: Option<String>,
        #[command(flatten)]
        tokens: TokensArg,
    },
    /// List tokens by name and profile.
    Ls {
        #[command(flatten)]
        tokens: TokensArg,
    },
    /// Revoke a token.
    Revoke {
        /// The token's name.
        name: String,
        #[command(flatten)]
        tokens: TokensArg,
    },
}

/// The client names `mcpgw client` accepts, from the table in `clients.rs`.
fn client_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(crate::clients::ids())
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClientAction {
    /// Write mcpgw into CLIENT's MCP configuration as a stdio server that
    /// runs this binary with CATALOG (both as absolute paths). Every other
    /// key, server and comment in the file is kept; the previous file is
    /// kept as `FILE.bak`.
    Connect {
        /// The client.
        #[arg(value_parser = client_names())]
        client: String,
        /// The catalog YAML the client's mcpgw serves.
        #[arg(long, short)]
        catalog: PathBuf,
        #[command(flatten)]
        target: ClientTarget,
        /// Print the file as it would be written, and write nothing.
        #[arg(long)]
        print: bool,
    },
    /// Remove mcpgw from CLIENT's MCP configuration, keeping the rest.
    Disconnect {
        /// The client.
        #[arg(value_parser = client_names())]
        client: String,
        #[command(flatten)]
        target: ClientTarget,
        /// Print the file as it would be written, and write nothing.
        #[arg(long)]
        print: bool,
    },
    /// Show each client's configuration files, whether each exists, and
    /// whether mcpgw is in it.
    Ls {
        /// The server name to look for.
        #[arg(long, default_value = "mcpgw")]
        name: String,
    },
}

/// Which entry of which of a client's files `mcpgw client` edits.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClientTarget {
    /// The server's name in the client's configuration.
    #[arg(long, default_value = "mcpgw")]
    pub(crate) name: String,
    /// `user`: the client's own file in your home directory; `project`:
    /// the file in the current directory (Claude Code, Cursor, VS Code).
    #[arg(long, value_enum, default_value_t = Scope::User)]
    pub(crate) scope: Scope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scope {
    /// The client's file for every project.
    User,
    /// The file in the current directory, for this project.
    Project,
}
