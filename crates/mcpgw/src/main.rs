//! `mcpgw`: the command-line entry point. Parses arguments, sets up logging
//! to stderr, runs one command and maps its outcome to an exit code
//! (0 success, 2 usage or catalog error, 1 anything else).
//!
//! Business logic lives in the library crates; this binary wires them.
//! In stdio mode stdout carries the protocol and nothing else: only the
//! protocol writer and the one-shot commands' result printers touch it.

mod cli;
mod commands;
mod front;
mod http;
mod redaction;
mod runtime;
mod secrets;
mod tokens;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    mcpgw_secrets::install_panic_hook();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!("cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(commands::run(cli.command));
    // A pending read of stdin cannot be cancelled; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::from(err.exit_code())
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("MCPGW_LOG").unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| redaction::RedactingStderr)
        .with_target(false)
        .init();
}
