//! `mcpgw-bench`: measures mcpgw side by side with its backends, and prints
//! Markdown tables (and, with `--write FILE`, replaces the generated block
//! of that file, BENCHMARKS.md).
//!
//! By default it builds its own setups on the local Docker engine with the
//! `mcpgw/testserver:dev` image: the same server called directly over its
//! container's attached stdio and through `mcpgw run`, in one run. With
//! `--stdio CMD` or `--http URL` it measures any MCP endpoint instead, so
//! the same workload can be run against another gateway.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cpu;
mod rpc;
mod setup;
mod stats;
mod web;
mod workloads;

use std::path::PathBuf;

use anyhow::Context as _;
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
    /// The backend image.
    #[arg(long, default_value = "mcpgw/testserver:dev")]
    image: String,
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
    /// `--image`, the floor of any gateway in a process of its own.
    #[arg(long, hide = true)]
    relay: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.relay {
        // One thread, as mcpgw over stdio: the floor, not a thread hop more.
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(setup::relay(&cli.image));
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
        let bench = setup::Bench::new(cli.gateway.clone(), cli.image.clone()).await?;
        let wanted = |name: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == name);
        let mut sections: Vec<Section> = Vec::new();
        if wanted("overhead") {
            sections.extend(workloads::overhead(&bench, &scale).await?);
        }
        if wanted("throughput") {
            sections.extend(workloads::throughput(&bench, &scale, cli.profile).await?);
        }
        if wanted("startup") {
            sections.extend(workloads::startup(&bench, &scale).await?);
        }
        if wanted("listing") {
            sections.extend(workloads::listing(&bench, &scale).await?);
        }
        if wanted("sessions") {
            sections.extend(workloads::sessions(&bench, &scale).await?);
        }
        bench.close().await;
        sections
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
