//! A pure scanner for MCP tool poisoning: definitions in, findings out.
//!
//! It reads every string a model may see in the tools, prompts, resources
//! and resource templates servers list (names, titles, descriptions, every
//! key and string of `inputSchema`, `outputSchema`, `annotations`, `_meta`
//! and any other field), and in tool results, and reports what its rules
//! (the data in [`RULES`]) match: instructions hidden from the user,
//! credential paths and exfiltration targets, invisible or deceptive
//! Unicode, look-alike names, one server's text steering another server's
//! tools, and oversized text.
//!
//! It deliberately does no I/O, no async and no MCP protocol: callers hand
//! it JSON they already hold. It does not detect rug pulls (a definition
//! changing after approval: compare definitions over time for that), does
//! not judge what a tool does when called, and cannot prove text harmless;
//! its rules are heuristics, tuned to keep the official reference servers
//! free of findings. See `README.md` for the rule table.

mod finding;
mod inventory;
mod item;
mod rules;
mod scan;
mod unicode;
mod walk;

use serde_json::Value;

pub use finding::{EXCERPT_CHARS, Finding, ParseSeverityError, Part, Severity};
pub use item::{Item, ItemKind};
pub use rules::{RULES, Reads, Rule, rule};

/// How the scanner judges; `Options::default()` suits a gateway's inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The longest string, in characters (Unicode scalar values), that is
    /// not `oversized-text`. Default 2,000: the official reference servers'
    /// longest description is under 400, and few honest descriptions pass
    /// 2,000.
    pub max_text_chars: usize,
    /// What the gateway puts between a server's name and its tool's name in
    /// exposed names (`<server><separator><tool>`), for spotting one server
    /// naming another's tool by its exposed name. Default `__`, the
    /// catalog's default.
    pub separator: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_text_chars: 2_000,
            separator: "__".to_owned(),
        }
    }
}

/// Scans a whole merged inventory (every server's items), each item also
/// against all the others for the cross-item rules.
pub fn scan_inventory(items: &[Item<'_>], options: &Options) -> Vec<Finding> {
    scan::scan(items, &[], options)
}

/// Scans `items` (say, one server's, after its `list_changed`), comparing
/// them with `rest`, the rest of the inventory, for the cross-item rules.
/// Only `items` are reported on; `rest` may include them.
pub fn scan_items(items: &[Item<'_>], rest: &[Item<'_>], options: &Options) -> Vec<Finding> {
    scan::scan(items, rest, options)
}

/// Scans the result of calling `tool` on `server` (the whole `CallToolResult`
/// JSON, or any part of it) with the injection rules only: those whose
/// [`Rule::reads`] is [`Reads::DefinitionsAndResults`].
pub fn scan_tool_result(
    server: &str,
    tool: &str,
    result: &Value,
    options: &Options,
) -> Vec<Finding> {
    let item = Item {
        server,
        kind: ItemKind::ToolResult,
        name: tool,
        definition: result,
    };
    scan::scan(&[item], &[], options)
}
