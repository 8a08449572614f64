//! The `mcpgw-testserver` binary: serves [`mcpgw_testserver::TestServer`]
//! over stdio, after applying any start-up faults from the environment.

#![allow(clippy::print_stderr)]

use std::io::Write;

use mcpgw_testserver::{StartupFaults, TestServer};
use rmcp::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::var_os("MCPGW_TEST_SLEEP_FOREVER").is_some() {
        // A fork bomb's child: hold a process slot and do nothing.
        std::thread::sleep(std::time::Duration::MAX);
    }
    let faults = StartupFaults::from_env();
    if let Some(code) = faults.exit_at_start {
        eprintln!("testserver: exiting at start with code {code}");
        std::process::exit(code);
    }
    if let Some(delay) = faults.slow_start {
        eprintln!("testserver: slow start, sleeping {delay:?}");
        tokio::time::sleep(delay).await;
    }
    if faults.garbage_at_start {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "garbage before the session starts");
        let _ = out.flush();
    }
    if faults.never_initialize {
        eprintln!("testserver: never answering initialize");
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut sink).await;
        return;
    }
    eprintln!("testserver: serving on stdio");
    let server = TestServer::new(faults.generated_tools)
        .legacy(faults.legacy)
        .poisoned(faults.poisoned);
    match server.serve(rmcp::transport::stdio_pipes()).await {
        Ok(running) => {
            let _ = running.waiting().await;
        }
        Err(err) => {
            eprintln!("testserver: failed to start: {err}");
            std::process::exit(1);
        }
    }
}
