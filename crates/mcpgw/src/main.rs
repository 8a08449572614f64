//! `mcpgw`: the command-line entry point. Parses arguments, runs one
//! command (which sets up logging, `telemetry.rs`) and maps its outcome to an exit code
//! (0 success, 2 usage or catalog error, 1 anything else).
//!
//! Business logic lives in the library crates; this binary wires them.
//! In stdio mode stdout carries the protocol and nothing else: only the
//! protocol writer and the one-shot commands' result printers touch it.

mod audit;
mod cli;
mod clients;
mod commands;
mod egress;
mod front;
mod http;
mod lock;
mod oauth;
mod redaction;
mod reload;
mod scan;
mod secrets;
mod telemetry;
mod tokens;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    mcpgw_secrets::install_panic_hook();
    install_tls_provider();
    let runtime = match runtime_for(&cli.command).enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            report(&format_args!("cannot start the async runtime: {err}"));
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(commands::run(cli.command, cli.runtime.engine()));
    // A pending read of stdin cannot be cancelled; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::from(err.exit_code())
        }
    }
}

/// reqwest (the OAuth issuer's metadata and keys, the OTLP exporter) is
/// built without a TLS provider of its own choosing: ring's, installed once
/// for the process before any client is built (a second install is
/// refused, harmlessly).
pub(crate) fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The async runtime a command runs on.
///
/// Over stdio the gateway relays one client's messages: a single thread
/// does that with no cross-thread wake-ups, which is most of what a
/// multi-threaded runtime would add to each call (measured in
/// `BENCHMARKS.md`). Over HTTP it serves many clients: worker threads on
/// half the cores, leaving the rest to the engine and the servers, which
/// do most of the work of each call.
fn runtime_for(command: &cli::Command) -> tokio::runtime::Builder {
    let http = matches!(
        command,
        cli::Command::Run {
            transport: cli::Transport::Http,
            ..
        }
    );
    if !http {
        return tokio::runtime::Builder::new_current_thread();
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads((cores / 2).max(1));
    builder
}

/// Prints the error a command ended with as cargo and ripgrep do:
/// `error: ` and the message on stderr, without the log's timestamp, in
/// colour only on a terminal. It passes the same redaction as the logs.
fn report(err: &impl std::fmt::Display) {
    use std::io::{IsTerminal as _, Write as _};
    let label = if std::io::stderr().is_terminal() {
        "\x1b[1;31merror\x1b[0m"
    } else {
        "error"
    };
    let _ = writeln!(redaction::RedactingStderr, "{label}: {err:#}");
}
