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
