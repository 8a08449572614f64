//! Micro-benchmarks (criterion) of the gateway's per-request work that
//! involves no I/O: building the routing table from 1,000 tools (scanned,
//! and also checked against a lockfile's pins), looking a
//! call's tool up, serializing a page of the merged list, and the rate
//! limiter's check of one call (one client, and 10,000 in turn).
//! Run with `cargo bench -p mcpgw-bench --bench micro`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mcpgw_backend::Inventory;
use mcpgw_catalog::ToolFilter;
use mcpgw_catalog::lock::ServerLock;
use mcpgw_mux::limits::Who;
use mcpgw_mux::router::{RoutingTable, ServerEntry, ToolLookup};
use rmcp::model::Tool;

const SERVERS: usize = 10;
const TOOLS_EACH: usize = 100;

fn inventories() -> Vec<Inventory> {
    let schema = Arc::new(
        serde_json::json!({
            "type": "object",
            "properties": { "text": { "type": "string", "description": "what to echo" } },
            "required": ["text"]
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
    );
    (0..SERVERS)
        .map(|_| Inventory {
            tools: (0..TOOLS_EACH)
                .map(|t| {
                    Tool::new(
                        format!("tool_{t}"),
                        format!("Generated tool number {t}, which echoes its input."),
                        schema.clone(),
                    )
                })
                .collect(),
            ..Inventory::default()
        })
        .collect()
}

fn table(
    inventories: &[Inventory],
    names: &[String],
    filter: &ToolFilter,
    pins: Option<&[ServerLock]>,
) -> RoutingTable {
    let entries: Vec<ServerEntry<'_>> = names
        .iter()
        .zip(inventories)
        .enumerate()
        .map(|(i, (name, inventory))| ServerEntry {
            name,
            filter,
            scan: mcpgw_catalog::ScanPolicy::Block,
            pins: pins.map(|p| &p[i]),
            inventory: Some(inventory),
        })
        .collect();
    RoutingTable::build("__", &entries)
}

fn routing(c: &mut Criterion) {
    let inventories = inventories();
    let names: Vec<String> = (0..SERVERS).map(|s| format!("server{s}")).collect();
    let filter = ToolFilter::default();
    c.bench_function("routing table: build from 10 servers x 100 tools", |b| {
        b.iter(|| black_box(table(&inventories, &names, &filter, None)));
    });
    let pins: Vec<ServerLock> = inventories
        .iter()
        .map(|inventory| mcpgw_mux::pin::current(&filter, inventory))
        .collect();
    c.bench_function(
        "routing table: build from 10 servers x 100 tools, each checked against its pin",
        |b| b.iter(|| black_box(table(&inventories, &names, &filter, Some(&pins)))),
    );
    let built = table(&inventories, &names, &filter, None);
    c.bench_function("routing table: look up a tool among 1,000", |b| {
        b.iter(|| {
            assert!(matches!(
                built.tool(black_box("server7__tool_42")),
                ToolLookup::Found(_)
            ));
        });
    });
    c.bench_function("tools/list: serialize a page of 100 merged tools", |b| {
        b.iter(|| black_box(serde_json::to_vec(&built.tools()[300..400]).map(|v| v.len())));
    });
}

/// A catalog whose server `s` limits every client (`per_client`), itself
/// (`server`) and its tool `echo`: three buckets for a call of `echo`.
const LIMITED: &str = "version: 1
gateway:
  limits: { per_client: { rate: 1000000000/s } }
servers:
  s:
    image: x
    limits:
      server: { rate: 1000000000/s }
      tools: { echo: { rate: 1000000000/s } }
";

fn limiter(c: &mut Criterion) {
    let catalog = mcpgw_catalog::parse(
        LIMITED,
        std::path::Path::new("bench.yaml"),
        &std::env::temp_dir(),
    )
    .unwrap();
    let limits = mcpgw_mux::limits::Limits::new(&catalog).unwrap();
    let one = "alice".to_string();
    c.bench_function("rate limit: check a call of one client (3 buckets)", |b| {
        b.iter(|| {
            assert!(
                limits
                    .check(0, Some(black_box("echo")), Who::new(&one, None))
                    .is_ok()
            );
        });
    });
    let many: Vec<String> = (0..10_000).map(|n| format!("client-{n:05}")).collect();
    let mut next = many.iter().cycle();
    c.bench_function(
        "rate limit: check a call of one of 10,000 clients in turn (3 buckets)",
        |b| {
            b.iter(|| {
                let who = Who::new(next.next().unwrap(), None);
                assert!(limits.check(0, Some(black_box("echo")), who).is_ok());
            });
        },
    );
}

criterion_group!(benches, routing, limiter);
criterion_main!(benches);
