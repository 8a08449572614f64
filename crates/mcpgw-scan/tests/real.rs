//! No false positives on real servers: the tool and prompt lists of the
//! official reference servers `mcp-server-time`, `mcp-server-git` and
//! `mcp-server-fetch`, dumped by `tests/fixtures/real/dump.py`, scanned as
//! one merged inventory.

use mcpgw_scan::{Item, ItemKind, Options, Severity, scan_inventory};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/real/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_reference_servers_have_no_findings() {
    let fixtures: Vec<Value> = ["time", "git", "fetch"].into_iter().map(fixture).collect();
    let mut items = Vec::new();
    for fixture in &fixtures {
        let server = fixture["server"].as_str().unwrap();
        for (list, kind) in [("tools", ItemKind::Tool), ("prompts", ItemKind::Prompt)] {
            for definition in fixture[list].as_array().unwrap() {
                let name = definition["name"].as_str().unwrap();
                items.push(Item {
                    server,
                    kind,
                    name,
                    definition,
                });
            }
        }
    }
    assert_eq!(items.len(), 16, "2 + 12 + 1 tools and fetch's prompt");
    let findings = scan_inventory(&items, &Options::default());
    let high: Vec<_> = findings
        .iter()
        .filter(|f| f.severity >= Severity::High)
        .collect();
    assert!(high.is_empty(), "{high:#?}");
    // The README records the number of lower findings: none.
    assert_eq!(findings, []);
}
