//! `mcpgw-bench`: measures mcpgw side by side with its backends, and prints
//! Markdown tables (and, with `--write FILE`, replaces the generated block
//! of that file, BENCHMARKS.md).
//!
//! By default it builds its own setups on the local Docker engine, for two
//! servers: mcpgw's Rust test server (`mcpgw/testserver:dev`) and a server
//! written with the official Python SDK (in `mcpgw/python-servers:dev`).
//! Each is called directly over its container's attached stdio, through
//! `mcpgw run` over stdio and over HTTP, and through `mcp-proxy` over HTTP
//! when that is installed, by clients of both protocol eras, in one run.
//! With `--stdio CMD` or `--http URL` it measures any MCP endpoint instead,
//! so the same workload can be run against another gateway.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod compare;
mod cpu;
mod rpc;
mod setup;
mod stats;
mod web;
mod workloads;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Parser;

use crate::stats::Section;

/// Benchmarks mcpgw; see BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "mcpgw-bench")]
#[allow(clippy::struct_excessive_bools)]
struct Cli {
    /// The mcpgw binary to measure (a release build, for real numbers).
    #[arg(long, default_value = "target/release/mcpgw")]
    gateway: PathBuf,
    /// The Rust test server's image.
    #[arg(long, default_value = "mcpgw/testserver:dev")]
    image: String,
    /// The image with the Python SDK server (`/opt/sdk/server.py`).
    #[arg(long, default_value = "mcpgw/python-servers:dev")]
    python_image: String,
    /// The servers the overhead and throughput sections compare: rust,
    /// python (default: both; with --quick, rust only, as a Python server
    /// takes seconds to start).
    #[arg(long, value_delimiter = ',')]
    backends: Option<Vec<String>>,
    /// The mcp-proxy binary to compare with over HTTP (default: `mcp-proxy`
    /// on the PATH, or in ~/.cargo/bin); measured if it exists.
    #[arg(long)]
    mcp_proxy: Option<PathBuf>,
    /// Runs per figure; min, median and max are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// A tiny workload that only checks that everything runs (`make test`).
    #[arg(long)]
    quick: bool,
    /// Also replace the generated block of this Markdown file.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Only these sections (overhead, throughput, startup, listing, sessions).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Profile the gateway with `perf` during the stdio throughput run.
    #[arg(long)]
    profile: bool,
    /// Measure this stdio MCP server command instead (run by `sh -c`).
    #[arg(long, conflicts_with = "http")]
    stdio: Option<String>,
    /// Measure this Streamable HTTP MCP endpoint instead.
    #[arg(long)]
    http: Option<String>,
    /// The tool to call on an endpoint given by `--stdio` or `--http`.
    #[arg(long, default_value = "echo")]
    tool: String,
    /// Its arguments, as JSON.
    #[arg(long, default_value = r#"{"text":"hello"}"#)]
    args: String,
    /// Internal: be a bare byte relay between stdio and a new container of
    /// this catalog's first server, the floor of any gateway in a process of
    /// its own.
    #[arg(long, hide = true, value_name = "CATALOG")]
    relay: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(catalog) = &cli.relay {
        // One thread, as mcpgw over stdio: the floor, not a thread hop more.
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(setup::relay(catalog));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(cli))
}

async fn bench(cli: Cli) -> anyhow::Result<()> {
    let scale = if cli.quick {
        workloads::Scale::quick()
    } else {
        workloads::Scale::full(cli.runs)
    };
    let sections = if let Some(command) = &cli.stdio {
        let arguments = serde_json::from_str(&cli.args).context("--args is not JSON")?;
        workloads::external_stdio(command, &cli.tool, &arguments, &scale).await?
    } else if let Some(url) = &cli.http {
        let arguments = serde_json::from_str(&cli.args).context("--args is not JSON")?;
        workloads::external_http(url, &cli.tool, &arguments, &scale).await?
    } else {
        let rust = setup::Backend::rust(&cli.image);
        let mut backends = Vec::new();
        let names = cli.backends.clone().unwrap_or_else(|| {
            let all: &[&str] = if cli.quick {
                &["rust"]
            } else {
                &["rust", "python"]
            };
            all.iter().map(ToString::to_string).collect()
        });
        for name in &names {
            backends.push(match name.as_str() {
                "rust" => rust.clone(),
                "python" => setup::Backend::python(&cli.python_image),
                other => bail!("--backends: `{other}` is not one of rust, python"),
            });
        }
        let mcp_proxy = find_mcp_proxy(cli.mcp_proxy.as_deref())?;
        let wanted = |name: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == name);
        if mcp_proxy.is_none() && (wanted("overhead") || wanted("throughput")) {
            eprintln!(
                "mcpgw-bench: mcp-proxy is not installed, so it is not measured{} (install it with `cargo install mcp-proxy --version 0.6.0 --locked --no-default-features --features yaml`, or pass --mcp-proxy)",
                if cli.quick { "" } else { "; the tables say so" }
            );
        }
        let bench = setup::Bench::new(cli.gateway.clone(), rust, backends, mcp_proxy).await?;
        let measured = measure(&bench, &scale, &wanted, cli.profile).await;
        // The direct containers go whatever happened.
        bench.close().await;
        measured?
    };
    let mut report = format!("{}\n", setup::machine());
    for section in &sections {
        report.push_str(&section.markdown(scale.runs));
    }
    println!("{report}");
    if let Some(path) = &cli.write {
        setup::replace_generated(path, &report)?;
        eprintln!("mcpgw-bench: wrote {}", path.display());
    }
    Ok(())
}

/// The Docker-backed sections asked for.
async fn measure(
    bench: &setup::Bench,
    scale: &workloads::Scale,
    wanted: &impl Fn(&str) -> bool,
    profile: bool,
) -> anyhow::Result<Vec<Section>> {
    let mut sections: Vec<Section> = Vec::new();
    let (overhead, throughput) = (wanted("overhead"), wanted("throughput"));
    if overhead || throughput {
        sections.extend(compare::compare(bench, scale, overhead, throughput, profile).await?);
    }
    if wanted("startup") {
        sections.extend(workloads::startup(bench, scale).await?);
    }
    if wanted("listing") {
        sections.extend(workloads::listing(bench, scale).await?);
    }
    if wanted("sessions") {
        sections.extend(workloads::sessions(bench, scale).await?);
    }
    Ok(sections)
}

/// The mcp-proxy binary: `given` (which must exist), or else `mcp-proxy` on
/// the PATH or in Cargo's bin directory, if there is one.
fn find_mcp_proxy(given: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = given {
        if !path.is_file() {
            bail!("--mcp-proxy: no file at {}", path.display());
        }
        return Ok(Some(path.to_path_buf()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    Ok(std::env::split_paths(&path)
        .chain(cargo_home.map(|home| home.join("bin")))
        .map(|dir| dir.join("mcp-proxy"))
        .find(|candidate| candidate.is_file()))
}
