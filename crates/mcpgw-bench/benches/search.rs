//! The search mode's numbers (BENCHMARKS.md, "Search mode"): on the tools
//! of `data/search-tools.json` (19 servers, 1,047 tools), the bytes and
//! estimated tokens of `tools/list` in `all` and in `search` mode; the hit
//! rate of `find_tools`' ranking on the queries of
//! `data/search-queries.tsv` (top 1 and top 5); the time to build the
//! index and to answer a query. Prints a Markdown report.
//! Run with `cargo bench -p mcpgw-bench --bench search`.
//!
//! Tokens are estimated as bytes / 4 (the usual rule of thumb for English
//! and JSON with OpenAI's and Anthropic's tokenizers; no tokenizer is run).

#[path = "common/search_corpus.rs"]
mod corpus;

use std::time::{Duration, Instant};

use rmcp::model::ListToolsResult;

fn bytes(tools: Vec<rmcp::model::Tool>) -> usize {
    serde_json::to_vec(&ListToolsResult::with_all_items(tools)).map_or(0, |v| v.len())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

#[allow(clippy::print_stdout)]
fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once.
    let servers = corpus::servers();
    let queries = corpus::queries();
    let table = corpus::table(&servers);
    let tools = table.tools();
    println!("## Search mode\n");
    println!(
        "{} servers, {} tools ({} of them the reference servers' and GitHub's own definitions); {} queries.\n",
        servers.len(),
        tools.len(),
        servers
            .iter()
            .take(11)
            .map(|(_, i)| i.tools.len())
            .sum::<usize>(),
        queries.len()
    );

    let all = bytes(tools.to_vec());
    let first_page = bytes(tools[..mcpgw_mux::PAGE_SIZE.min(tools.len())].to_vec());
    let search = bytes(mcpgw_mux::gateway_tools::definitions().to_vec());
    println!("| `tools/list` | bytes | tokens (bytes / 4) |\n|---|---:|---:|");
    println!(
        "| `all`: every page ({} tools) | {all} | {} |",
        tools.len(),
        all / 4
    );
    println!(
        "| `all`: the first page ({} tools) | {first_page} | {} |",
        mcpgw_mux::PAGE_SIZE,
        first_page / 4
    );
    println!(
        "| `search`: `find_tools`, `call_tool` | {search} | {} |",
        search / 4
    );
    println!();

    let (mut top1, mut top5, mut misses) = (0, 0, Vec::new());
    for (query, expect) in &queries {
        let found: Vec<String> = table
            .find(query, 5, |_, _| true)
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        if found.first() == Some(expect) {
            top1 += 1;
        }
        if found.contains(expect) {
            top5 += 1;
        }
        if found.first() != Some(expect) {
            let at = found
                .iter()
                .position(|f| f == expect)
                .map_or("not in the top 5".to_string(), |i| format!("#{}", i + 1));
            misses.push((
                query,
                expect,
                found.first().cloned().unwrap_or_default(),
                at,
            ));
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = |n: usize| 100.0 * n as f64 / queries.len() as f64;
    println!("| hit rate | queries | share |\n|---|---:|---:|");
    println!(
        "| top 1 | {top1} / {} | {:.1} % |",
        queries.len(),
        rate(top1)
    );
    println!(
        "| top 5 | {top5} / {} | {:.1} % |",
        queries.len(),
        rate(top5)
    );
    println!();
    if !misses.is_empty() {
        println!("Not first:\n");
        for (query, expect, first, at) in &misses {
            println!("- \"{query}\": wanted `{expect}` ({at}), first `{first}`");
        }
        println!();
    }

    let mut builds: Vec<Duration> = (0..10)
        .map(|_| {
            let fresh = corpus::table(&servers);
            let began = Instant::now();
            std::hint::black_box(fresh.find("warm up", 1, |_, _| true));
            began.elapsed()
        })
        .collect();
    builds.sort();
    let mut times = Vec::new();
    for _ in 0..50 {
        for (query, _) in &queries {
            let began = Instant::now();
            std::hint::black_box(table.find(query, 5, |_, _| true));
            times.push(began.elapsed());
        }
    }
    times.sort();
    println!("| time | median | p99 |\n|---|---:|---:|");
    println!(
        "| build the index (first search of a table) | {:.2?} | {:.2?} (max of 10) |",
        percentile(&builds, 0.5),
        builds[builds.len() - 1]
    );
    println!(
        "| one `find_tools` ranking, limit 5 ({} runs) | {:.1?} | {:.1?} |",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
}
