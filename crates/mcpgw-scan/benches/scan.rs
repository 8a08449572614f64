//! Criterion benchmark: scanning a merged inventory of 1,000 synthetic,
//! typical tools (20 servers of 50, each with a description and a
//! four-parameter schema, like the reference servers'). The goal is under
//! 5 ms in release mode. Run with
//! `cargo bench -p mcpgw-scan --bench scan -- --verbose`, which prints the
//! median among the other estimates. It measures the scan only, not
//! building the JSON.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcpgw_scan::{Item, ItemKind, Options, scan_inventory};
use serde_json::{Value, json};

const SERVERS: usize = 20;
const TOOLS_EACH: usize = 50;

const VERBS: [&str; 5] = ["Get", "List", "Create", "Update", "Delete"];
const NOUNS: [&str; 5] = ["issue", "branch", "file", "calendar event", "record"];

/// The definition of tool `i`, with text varied by `i` so no two are alike.
fn tool(i: usize) -> (String, Value) {
    let (verb, noun) = (
        VERBS[i % VERBS.len()],
        NOUNS[(i / VERBS.len()) % NOUNS.len()],
    );
    let name = format!("{}_{}_{i}", verb.to_lowercase(), noun.replace(' ', "_"));
    let definition = json!({
        "name": name,
        "title": format!("{verb} {noun}"),
        "description": format!(
            "{verb} a {noun} in the workspace. Returns the {noun} as JSON, with its id, \
             owner and timestamps. Fails if the {noun} does not exist or the caller may \
             not see it; the error says which. Use `limit` to bound large answers ({i})."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": format!("The {noun}'s id.")},
                "workspace": {"type": "string", "description": "The workspace to look in, by name."},
                "limit": {"type": "integer", "default": 50, "minimum": 1, "description": "At most this many results."},
                "order": {"type": "string", "enum": ["asc", "desc"], "description": "Sort order by creation time."}
            },
            "required": ["id", "workspace"]
        },
        "annotations": {"readOnlyHint": verb == "Get" || verb == "List", "openWorldHint": false}
    });
    (name, definition)
}

fn inventory() -> Vec<(String, String, Value)> {
    (0..SERVERS * TOOLS_EACH)
        .map(|i| {
            let (name, definition) = tool(i);
            (format!("server{}", i / TOOLS_EACH), name, definition)
        })
        .collect()
}

fn bench_scan(c: &mut Criterion) {
    let owned = inventory();
    let items: Vec<Item<'_>> = owned
        .iter()
        .map(|(server, name, definition)| Item {
            server,
            kind: ItemKind::Tool,
            name,
            definition,
        })
        .collect();
    let options = Options::default();
    assert!(
        scan_inventory(&items, &options).is_empty(),
        "the synthetic tools are clean"
    );
    c.bench_function("scan_inventory/1000_tools", |b| {
        b.iter(|| scan_inventory(black_box(&items), &options));
    });
}

criterion_group!(benches, bench_scan);
criterion_main!(benches);
