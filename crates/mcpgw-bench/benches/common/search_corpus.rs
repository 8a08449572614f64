//! The search benchmark's data: `data/search-tools.json` made into
//! inventories (its real servers' tools as written, its generated servers'
//! as six verbs on each resource), and `data/search-queries.tsv` into
//! queries with the exposed tool each should find. Used by
//! `benches/search.rs`; reads files, nothing else.

use std::sync::Arc;

use mcpgw_backend::Inventory;
use mcpgw_catalog::ToolFilter;
use mcpgw_mux::router::{RoutingTable, ServerEntry};
use rmcp::model::Tool;
use serde_json::{Value, json};

/// Where the data files are.
fn data(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/");
    std::fs::read_to_string(format!("{path}{name}"))
        .unwrap_or_else(|e| panic!("cannot read data/{name}: {e}"))
}

fn tool(name: String, description: String, params: &[&str]) -> Tool {
    let properties: serde_json::Map<String, Value> = params
        .iter()
        .map(|p| ((*p).to_string(), json!({"type": "string"})))
        .collect();
    let schema = json!({"type": "object", "properties": properties, "required": params.first().map(|p| vec![*p]).unwrap_or_default()});
    let Value::Object(schema) = schema else {
        unreachable!("an object")
    };
    Tool::new(name, description, Arc::new(schema))
}

/// The verbs of a generated server: name, description (`{r}` the resource,
/// `{p}` the product), parameters.
const VERBS: [(&str, &str, &[&str]); 6] = [
    ("create", "Creates a new {r} in {p}.", &["name", "fields"]),
    (
        "get",
        "Returns the {r} with the given ID from {p}, with all its fields.",
        &["id"],
    ),
    (
        "update",
        "Updates the fields of an existing {r} in {p}.",
        &["id", "fields"],
    ),
    (
        "delete",
        "Deletes a {r} from {p}. This cannot be undone.",
        &["id"],
    ),
    (
        "list",
        "Lists the {r}s in {p}, a page at a time.",
        &["page", "per_page"],
    ),
    (
        "search",
        "Searches {p} for {r}s matching a query.",
        &["query", "page"],
    ),
];

/// Every server, in file order: its name and what it lists.
pub(crate) fn servers() -> Vec<(String, Inventory)> {
    let file: Value = serde_json::from_str(&data("search-tools.json")).expect("JSON");
    let mut out = Vec::new();
    for (name, tools) in file["servers"].as_object().expect("servers") {
        let tools = tools
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| {
                let params: Vec<&str> = t[2]
                    .as_array()
                    .expect("params")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                tool(
                    t[0].as_str().expect("name").into(),
                    t[1].as_str().expect("description").into(),
                    &params,
                )
            })
            .collect();
        out.push((
            name.clone(),
            Inventory {
                tools,
                ..Inventory::default()
            },
        ));
    }
    for (name, spec) in file["generated"].as_object().expect("generated") {
        let product = spec[0].as_str().expect("product");
        let mut tools = Vec::new();
        for resource in spec[1]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(Value::as_str)
        {
            let snake = resource.replace(' ', "_");
            for (verb, description, params) in VERBS {
                let plural = matches!(verb, "list" | "search");
                let name = format!("{verb}_{snake}{}", if plural { "s" } else { "" });
                let text = description.replace("{r}", resource).replace("{p}", product);
                tools.push(tool(name, text, params));
            }
        }
        out.push((
            name.clone(),
            Inventory {
                tools,
                ..Inventory::default()
            },
        ));
    }
    out
}

/// The queries: a task in words, and the exposed tool that does it.
pub(crate) fn queries() -> Vec<(String, String)> {
    data("search-queries.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (query, expect) = l.split_once('\t').expect("query TAB tool");
            (query.to_string(), expect.to_string())
        })
        .collect()
}

/// The routing table of `servers`, unfiltered, the scan warning only (the
/// fetch server's description speaks to the model, which `block` would
/// withhold).
pub(crate) fn table(servers: &[(String, Inventory)]) -> RoutingTable {
    let filter = ToolFilter::default();
    let entries: Vec<ServerEntry<'_>> = servers
        .iter()
        .map(|(name, inventory)| ServerEntry {
            name,
            filter: &filter,
            scan: mcpgw_catalog::ScanPolicy::Warn,
            pins: None,
            inventory: Some(inventory),
        })
        .collect();
    RoutingTable::build("__", &entries)
}
