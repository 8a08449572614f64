//! The memory rate limits hold for many clients: the process's RSS
//! before and after 10,000 distinct clients each make one call under a
//! `per_client` limit (one bucket each). That the sweep drops them once
//! they have refilled is a unit test (`mcpgw-mux/src/limits/tests.rs`).
//! Run with `cargo bench -p mcpgw-bench --bench limits_rss`.
//!
//! It measures the limiter alone (`mcpgw_mux::limits::Limits`, the type
//! the gateway checks every call with), not a gateway with 10,000 HTTP
//! sessions: those cost far more (BENCHMARKS.md, "Memory with idle HTTP
//! sessions").

use mcpgw_mux::limits::{Limits, Who};

const CLIENTS: usize = 10_000;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// A benchmark's report is what it prints.
#[allow(clippy::print_stdout)]
fn main() {
    let catalog = mcpgw_catalog::parse(
        "version: 1\ngateway:\n  limits: { per_client: { rate: 60/min, burst: 10 } }\nservers:\n  s:\n    image: x\n",
        std::path::Path::new("bench.yaml"),
        &std::env::temp_dir(),
    )
    .unwrap();
    let limits = Limits::new(&catalog).unwrap();
    let keys: Vec<String> = (0..CLIENTS).map(|n| format!("client-{n:05}")).collect();
    let before = rss_kib();
    for key in &keys {
        assert!(limits.check(0, Some("echo"), Who::new(key, None)).is_ok());
    }
    let after = rss_kib();
    assert_eq!(limits.buckets(), CLIENTS);
    #[allow(clippy::cast_precision_loss)]
    let per_client = (after.saturating_sub(before)) as f64 * 1024.0 / CLIENTS as f64;
    println!("| figure | value |");
    println!("|---|---:|");
    println!("| RSS before | {:.1} MiB |", before as f64 / 1024.0);
    println!(
        "| RSS with {CLIENTS} clients' buckets | {:.1} MiB |",
        after as f64 / 1024.0
    );
    println!("| added per client | {per_client:.0} B |");
}
