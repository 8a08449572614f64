//! Screening: the tool-poisoning scan (`mcpgw-scan`) applied to what the
//! servers list, under each server's `scan` policy. The routing table calls
//! it once per build, so every list and every lookup sees its verdict, at
//! start-up and after every `list_changed` alike.
//!
//! An item with a finding of high severity or above, on a server whose
//! policy is `block`, is withheld: absent from lists and refused on call,
//! like a tool the allowlist hides. Every other finding is only reported.
//! Tools the allowlist hides are not scanned: no model sees them. A tool
//! the catalog rewrites is scanned as rewritten (`router::overrides`),
//! under its new name: that is what a model sees.
//!
//! Tool results are screened too, with the injection rules only, under
//! each server's `scan_results` policy, in the one place every call's
//! result passes (`Mux::tool_response`): a result with a finding of high
//! severity or above is replaced by an error result under `block`.

use std::collections::{HashMap, HashSet};

use mcpgw_backend::Inventory;
use mcpgw_catalog::lock::ServerLock;
use mcpgw_catalog::{ScanPolicy, ToolFilter};
use mcpgw_scan::{Finding, Item, ItemKind, Options, Severity};
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value;

/// The lowest severity a `block` policy withholds.
pub const BLOCK_AT: Severity = Severity::High;

/// What the gateway did about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The item is withheld from clients.
    Blocked,
    /// The finding is reported; the item is served.
    Warned,
}

impl Action {
    /// The word used in logs and metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Warned => "warned",
        }
    }
}

/// A finding and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Screened {
    /// What the scanner found.
    #[serde(flatten)]
    pub finding: Finding,
    /// What the gateway did.
    pub action: Action,
}

/// One server as screening sees it.
#[derive(Debug)]
pub(crate) struct Listed<'a> {
    pub(crate) name: &'a str,
    pub(crate) filter: &'a ToolFilter,
    pub(crate) policy: ScanPolicy,
    /// The lockfile's pins, when one is in force.
    pub(crate) pins: Option<&'a ServerLock>,
    pub(crate) inventory: Option<&'a Inventory>,
}

/// The verdict on a whole inventory.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Every finding, in scan order.
    pub(crate) findings: Vec<Screened>,
    /// Withheld items: (server index, kind, upstream name) to the finding
    /// that withheld each (its index in `findings`).
    blocked: HashMap<(usize, ItemKind, String), usize>,
}

impl Verdict {
    /// Which finding (its index in `findings`) withholds item `name` of
    /// `kind` on server `index`.
    pub(crate) fn blocked(&self, index: usize, kind: ItemKind, name: &str) -> Option<usize> {
        self.blocked.get(&(index, kind, name.to_string())).copied()
    }
}

/// Scans what `servers` list (catalog order), each under its policy.
pub(crate) fn screen(separator: &str, servers: &[Listed<'_>]) -> Verdict {
    let shown: Vec<(usize, std::borrow::Cow<'_, rmcp::model::Tool>)> = servers
        .iter()
        .enumerate()
        .filter_map(|(index, server)| Some((index, server, server.inventory?)))
        .flat_map(|(index, server, inventory)| {
            inventory
                .tools
                .iter()
                .filter(|t| server.filter.permits(&t.name))
                .map(move |t| (index, crate::router::overrides::shown(server.filter, t)))
        })
        .collect();
    let mut definitions: Vec<(usize, ItemKind, &str, Value)> = Vec::new();
    for (index, tool) in &shown {
        definitions.push((*index, ItemKind::Tool, tool.name.as_ref(), json(tool)));
    }
    for (index, server) in servers.iter().enumerate() {
        let Some(inventory) = server.inventory else {
            continue;
        };
        for prompt in &inventory.prompts {
            definitions.push((index, ItemKind::Prompt, prompt.name.as_str(), json(prompt)));
        }
        for resource in &inventory.resources {
            definitions.push((
                index,
                ItemKind::Resource,
                resource.name.as_str(),
                json(resource),
            ));
        }
        for template in &inventory.resource_templates {
            let name = template.name.as_str();
            definitions.push((index, ItemKind::ResourceTemplate, name, json(template)));
        }
    }
    let all: Vec<Item<'_>> = definitions
        .iter()
        .map(|(index, kind, name, definition)| Item {
            server: servers[*index].name,
            kind: *kind,
            name,
            definition,
        })
        .collect();
    let scanned: Vec<Item<'_>> = all
        .iter()
        .zip(&definitions)
        .filter(|(_, (index, ..))| servers[*index].policy != ScanPolicy::Off)
        .map(|(item, _)| *item)
        .collect();
    if scanned.is_empty() {
        return Verdict::default();
    }
    let options = Options {
        separator: separator.to_string(),
        ..Options::default()
    };
    let index_of: HashMap<&str, usize> = servers
        .iter()
        .enumerate()
        .map(|(index, s)| (s.name, index))
        .collect();
    let mut verdict = Verdict::default();
    let mut seen = HashSet::new();
    for finding in mcpgw_scan::scan_items(&scanned, &all, &options) {
        let Some(&index) = index_of.get(finding.server.as_str()) else {
            continue;
        };
        let action = if servers[index].policy == ScanPolicy::Block && finding.severity >= BLOCK_AT {
            Action::Blocked
        } else {
            Action::Warned
        };
        let key = (index, finding.kind, finding.item.clone());
        if action == Action::Blocked && seen.insert(key.clone()) {
            verdict.blocked.insert(key, verdict.findings.len());
        }
        verdict.findings.push(Screened { finding, action });
    }
    verdict
}

/// An item's definition as the client would receive it.
fn json(item: &impl serde::Serialize) -> Value {
    serde_json::to_value(item).unwrap_or(Value::Null)
}

/// Scans the result of `tool` on `server` under `policy`.
pub(crate) fn result(
    policy: ScanPolicy,
    server: &str,
    tool: &str,
    result: &CallToolResult,
) -> Vec<Screened> {
    if policy == ScanPolicy::Off {
        return Vec::new();
    }
    let findings = mcpgw_scan::scan_tool_result(server, tool, &json(result), &Options::default());
    findings
        .into_iter()
        .map(|finding| {
            let action = if policy == ScanPolicy::Block && finding.severity >= BLOCK_AT {
                Action::Blocked
            } else {
                Action::Warned
            };
            Screened { finding, action }
        })
        .collect()
}

/// Logs a result's findings; when one withholds it, the error result the
/// client gets instead, naming the rule.
pub(crate) fn report_result(found: &[Screened]) -> Option<CallToolResult> {
    for screened in found {
        let f = &screened.finding;
        tracing::warn!(
            server = %f.server,
            tool = %f.item,
            "tool-poisoning scan: the result has {} ({}) at {}: {}; excerpt: {}; {}",
            f.rule,
            f.severity,
            f.path,
            f.message,
            f.excerpt,
            if screened.action == Action::Blocked { "withheld from the client" } else { "delivered" }
        );
    }
    let blocked = found.iter().find(|s| s.action == Action::Blocked)?;
    let f = &blocked.finding;
    Some(CallToolResult::error(vec![ContentBlock::text(format!(
        "mcpgw withheld this result of `{}`: the tool-poisoning scan found {} ({} severity) at {}: {}; fix: review server `{}`, or set its `scan_results: warn`",
        f.item, f.rule, f.severity, f.path, f.message, f.server
    ))]))
}
