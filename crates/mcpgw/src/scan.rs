//! `mcpgw scan`'s output: the tool-poisoning findings of a running catalog
//! as a table, JSON, or SARIF 2.1.0 for CI code scanning. The findings come
//! from the mux's routing table (`mcpgw_mux::screen`), so they are exactly
//! what `mcpgw run` withholds and warns about.

use std::path::Path;

use mcpgw_mux::screen::{Action, Screened};
use mcpgw_scan::{RULES, Severity};
use serde_json::{Value, json};

/// How findings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns, for people.
    Table,
    /// A JSON array of findings.
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
}

/// `findings` rendered in `format`; `catalog` is the file SARIF points at,
/// its `text` used to find each server's line.
pub(crate) fn render(format: Format, findings: &[Screened], catalog: &Path, text: &str) -> String {
    match format {
        Format::Table => table(findings),
        Format::Json => {
            let mut out = serde_json::to_string_pretty(findings).unwrap_or_default();
            out.push('\n');
            out
        }
        Format::Sarif => {
            let mut out =
                serde_json::to_string_pretty(&sarif(findings, catalog, text)).unwrap_or_default();
            out.push('\n');
            out
        }
    }
}

/// A table of findings, most severe first; "no findings" when clean.
pub(crate) fn table(findings: &[Screened]) -> String {
    if findings.is_empty() {
        return "no tool-poisoning findings\n".to_string();
    }
    let mut sorted: Vec<&Screened> = findings.iter().collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.finding.severity));
    let mut out = format!(
        "{:<8}  {:<7}  {:<22}  {:<12}  {:<24}  WHERE AND WHY\n",
        "SEVERITY", "ACTION", "RULE", "SERVER", "ITEM"
    );
    for s in sorted {
        let f = &s.finding;
        out.push_str(&format!(
            "{:<8}  {:<7}  {:<22}  {:<12}  {:<24}  {} {}: {}\n",
            f.severity.as_str(),
            s.action.as_str(),
            f.rule,
            f.server,
            format!("{} {}", f.kind.as_str(), f.item),
            f.path,
            f.message,
            f.excerpt
        ));
    }
    out
}

/// How many findings are at or above `fail_on`.
pub(crate) fn fails(findings: &[Screened], fail_on: Severity) -> usize {
    findings
        .iter()
        .filter(|s| s.finding.severity >= fail_on)
        .count()
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// The line of `servers.NAME` in the catalog `text` (1 when not found).
fn server_line(text: &str, server: &str) -> usize {
    let keys = [
        format!("{server}:"),
        format!("\"{server}\":"),
        format!("'{server}':"),
    ];
    text.lines()
        .position(|l| {
            let key = l.trim_start();
            l.len() > key.len() && keys.iter().any(|k| key.starts_with(k.as_str()))
        })
        .map_or(1, |i| i + 1)
}

fn sarif(findings: &[Screened], catalog: &Path, text: &str) -> Value {
    let uri = catalog.to_string_lossy().replace('\\', "/");
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "shortDescription": { "text": r.summary },
                "defaultConfiguration": { "level": level(r.severity) },
                "properties": { "severity": r.severity.as_str() },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|s| {
            let f = &s.finding;
            let rule_index = RULES.iter().position(|r| r.id == f.rule);
            let withheld = if s.action == Action::Blocked {
                " (withheld from clients)"
            } else {
                ""
            };
            let mut result = json!({
                "ruleId": f.rule,
                "level": level(f.severity),
                "message": {
                    "text": format!(
                        "{} `{}` of server `{}`: {} at {}{withheld}. Excerpt: {}",
                        f.kind.as_str(), f.item, f.server, f.message, f.path, f.excerpt
                    )
                },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri },
                        "region": { "startLine": server_line(text, &f.server) },
                    },
                    "logicalLocations": [{
                        "name": f.item,
                        "fullyQualifiedName": format!("{}/{}", f.server, f.item),
                        "kind": "function",
                    }],
                }],
                "properties": {
                    "severity": f.severity.as_str(),
                    "action": s.action.as_str(),
                    "path": f.path,
                },
            });
            if let Some(index) = rule_index {
                result["ruleIndex"] = json!(index);
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "mcpgw",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "results": results,
        }],
    })
}
