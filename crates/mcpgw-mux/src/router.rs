//! The routing table: exposed names to `(server, upstream name)` and back.
//!
//! Pure data and no I/O: built from each server's inventory and the
//! catalog's filters, rebuilt whenever a backend joins or leaves, and read by
//! every request. Deterministic: the same inputs give the same names and
//! order, so exposed names are stable across restarts.
//!
//! Naming rules:
//! - tools and prompts are exposed as `<server><separator><name>`;
//! - an exposed tool name must match `^[A-Za-z0-9_-]{1,64}$`: other
//!   characters become `_`, and a name that is too long, or that collides
//!   with one taken earlier (catalog order, then upstream order), is cut and
//!   given an 8-hex-digit suffix hashed from `(server, upstream name)`;
//! - resources keep their URIs; when two servers claim one URI, the server
//!   listed first in the catalog wins and the other's is not listed;
//! - a tool the catalog's `tools.allow`/`tools.deny` hides is absent from the
//!   list and cannot be routed; the table remembers it only to say why;
//! - so is an item the tool-poisoning scan withholds ([`crate::screen`]),
//!   and one that does not match the lockfile ([`crate::pin`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mcpgw_backend::Inventory;
use mcpgw_catalog::lock::ServerLock;
use mcpgw_catalog::{ScanPolicy, ToolFilter};
use mcpgw_scan::ItemKind;
use regex::Regex;
use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};
use sha2::{Digest, Sha256};

use crate::pin::{self, Drift};
use crate::screen::{Listed, Screened, screen};

/// The longest exposed tool name MCP clients accept.
pub const MAX_NAME_LEN: usize = 64;

/// Where a request for an exposed name goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index of the server in catalog order.
    pub server: usize,
    /// The name clients know the tool or prompt by.
    pub name: Arc<str>,
    /// The name the backend knows it by.
    pub upstream: Arc<str>,
}

/// One server's input to the table.
#[derive(Debug)]
pub struct ServerEntry<'a> {
    /// The server's name.
    pub name: &'a str,
    /// Its tool filter.
    pub filter: &'a ToolFilter,
    /// What the tool-poisoning scan does with what it lists.
    pub scan: ScanPolicy,
    /// The lockfile's pins, when one is in force.
    pub pins: Option<&'a ServerLock>,
    /// What it offers, when it is up.
    pub inventory: Option<&'a Inventory>,
}

/// How a lookup of an exposed tool name came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolLookup<'a> {
    /// Route the call here.
    Found(&'a Route),
    /// The server has this tool, but the catalog hides it.
    Hidden {
        /// The server's index.
        server: usize,
    },
    /// The server has this tool, but the scan withholds it.
    Blocked {
        /// The server's index.
        server: usize,
        /// The finding that withholds it.
        finding: &'a Screened,
    },
    /// The server has this tool, but not as the lockfile pins it.
    Unpinned {
        /// The server's index.
        server: usize,
        /// How it differs.
        drift: &'a Drift,
    },
    /// No such tool.
    Unknown,
}

/// Exposed lists and the routes behind them.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    tools: Vec<Tool>,
    tool_routes: HashMap<String, Route>,
    hidden_tools: HashMap<String, usize>,
    /// Tools the scan withholds: exposed name to (server, finding index).
    blocked_tools: HashMap<String, (usize, usize)>,
    /// What the scan found in the lists this table was built from.
    findings: Vec<Screened>,
    /// Tools the lockfile withholds: exposed name to (server, drift index).
    unpinned_tools: HashMap<String, (usize, usize)>,
    /// How the lists differ from the lockfile.
    drift: Vec<Drift>,
    prompts: Vec<Prompt>,
    prompt_routes: HashMap<String, Route>,
    resources: Vec<Resource>,
    resource_routes: HashMap<String, usize>,
    /// Each template with its server and its matcher, compiled once.
    templates: Vec<(ResourceTemplate, usize, Option<Regex>)>,
}

impl RoutingTable {
    /// Builds the table for `servers` (in catalog order).
    pub fn build(separator: &str, servers: &[ServerEntry<'_>]) -> Self {
        let mut table = Self::default();
        let listed: Vec<Listed<'_>> = servers
            .iter()
            .map(|s| Listed {
                name: s.name,
                filter: s.filter,
                policy: s.scan,
                pins: s.pins,
                inventory: s.inventory,
            })
            .collect();
        let verdict = screen(separator, &listed);
        let pinned = pin::check(&listed);
        let withheld = |index, kind, name: &str, key: &str| {
            verdict.blocked(index, kind, name).is_some()
                || pinned.withheld(index, kind, key).is_some()
        };
        let mut taken_tools = HashSet::new();
        let mut taken_prompts = HashSet::new();
        for (index, entry) in servers.iter().enumerate() {
            let Some(inventory) = entry.inventory else {
                continue;
            };
            for tool in &inventory.tools {
                let exposed = expose(entry.name, separator, &tool.name, &mut taken_tools);
                if !entry.filter.permits(&tool.name) {
                    table.hidden_tools.insert(exposed, index);
                    continue;
                }
                if let Some(at) = verdict.blocked(index, ItemKind::Tool, &tool.name) {
                    table.blocked_tools.insert(exposed, (index, at));
                    continue;
                }
                if let Some(at) = pinned.withheld(index, ItemKind::Tool, &tool.name) {
                    table.unpinned_tools.insert(exposed, (index, at));
                    continue;
                }
                let mut listed = tool.clone();
                listed.name = exposed.clone().into();
                table.tools.push(listed);
                table.tool_routes.insert(
                    exposed.clone(),
                    Route {
                        server: index,
                        name: exposed.into(),
                        upstream: tool.name.as_ref().into(),
                    },
                );
            }
            for prompt in &inventory.prompts {
                if withheld(index, ItemKind::Prompt, &prompt.name, &prompt.name) {
                    continue;
                }
                let exposed = expose(entry.name, separator, &prompt.name, &mut taken_prompts);
                let mut listed = prompt.clone();
                listed.name.clone_from(&exposed);
                table.prompts.push(listed);
                table.prompt_routes.insert(
                    exposed.clone(),
                    Route {
                        server: index,
                        name: exposed.into(),
                        upstream: prompt.name.as_str().into(),
                    },
                );
            }
            for resource in &inventory.resources {
                if withheld(index, ItemKind::Resource, &resource.name, &resource.uri) {
                    continue;
                }
                if let Some(&owner) = table.resource_routes.get(&resource.uri) {
                    tracing::warn!(
                        uri = %resource.uri,
                        winner = servers[owner].name,
                        shadowed = entry.name,
                        "two servers list the same resource URI; the one listed first in the catalog serves it"
                    );
                    continue;
                }
                table.resource_routes.insert(resource.uri.clone(), index);
                table.resources.push(resource.clone());
            }
            for template in &inventory.resource_templates {
                let (name, key) = (&template.name, &template.uri_template);
                if withheld(index, ItemKind::ResourceTemplate, name, key) {
                    continue;
                }
                let matcher = template_matcher(&template.uri_template);
                table.templates.push((template.clone(), index, matcher));
            }
        }
        table.findings = verdict.findings;
        table.drift = pinned.drift;
        table
    }

    /// How the servers' lists differ from the lockfile (empty without one).
    pub fn drift(&self) -> &[Drift] {
        &self.drift
    }

    /// What the scan found in the servers' lists, withheld or not.
    pub fn findings(&self) -> &[Screened] {
        &self.findings
    }

    /// The merged tool list, in catalog order then upstream order.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// The merged prompt list.
    pub fn prompts(&self) -> &[Prompt] {
        &self.prompts
    }

    /// The merged resource list.
    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// The merged resource templates.
    pub fn resource_templates(&self) -> impl Iterator<Item = &ResourceTemplate> {
        self.templates.iter().map(|(t, _, _)| t)
    }

    /// Where the exposed tool `name` goes.
    pub fn tool(&self, name: &str) -> ToolLookup<'_> {
        if let Some(route) = self.tool_routes.get(name) {
            ToolLookup::Found(route)
        } else if let Some(&server) = self.hidden_tools.get(name) {
            ToolLookup::Hidden { server }
        } else if let Some(&(server, at)) = self.blocked_tools.get(name) {
            ToolLookup::Blocked {
                server,
                finding: &self.findings[at],
            }
        } else if let Some(&(server, at)) = self.unpinned_tools.get(name) {
            ToolLookup::Unpinned {
                server,
                drift: &self.drift[at],
            }
        } else {
            ToolLookup::Unknown
        }
    }

    /// Where the exposed prompt `name` goes.
    pub fn prompt(&self, name: &str) -> Option<&Route> {
        self.prompt_routes.get(name)
    }

    /// Which server lists the resource template `uri_template`.
    pub fn template(&self, uri_template: &str) -> Option<usize> {
        self.templates
            .iter()
            .find(|(t, _, _)| t.uri_template == uri_template)
            .map(|&(_, server, _)| server)
    }

    /// Which server serves resource `uri`: a listed resource first, then the
    /// first template (catalog order) that matches.
    pub fn resource(&self, uri: &str) -> Option<usize> {
        self.resource_routes.get(uri).copied().or_else(|| {
            self.templates
                .iter()
                .find(|(_, _, matcher)| matcher.as_ref().is_some_and(|m| m.is_match(uri)))
                .map(|&(_, server, _)| server)
        })
    }
}

/// The exposed name for `upstream` on `server`, unique within `taken`.
pub fn expose(
    server: &str,
    separator: &str,
    upstream: &str,
    taken: &mut HashSet<String>,
) -> String {
    let joined = format!("{server}{separator}{upstream}");
    let clean: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = if clean.len() <= MAX_NAME_LEN && !taken.contains(&clean) {
        clean
    } else {
        let digest = Sha256::digest(format!("{server}\0{upstream}").as_bytes());
        let suffix: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let keep = clean.len().min(MAX_NAME_LEN - suffix.len() - 1);
        format!("{}_{suffix}", &clean[..keep])
    };
    taken.insert(name.clone());
    name
}

/// The matcher for an RFC 6570 template: each `{var}` stands for one or
/// more characters other than `/`, and `{+var}` for one or more of any.
/// A regular expression, so that matching takes time linear in the URI
/// however many variables the template has; `None` for a template that is
/// not well formed (an unclosed `{`), which matches nothing.
fn template_matcher(template: &str) -> Option<Regex> {
    let mut pattern = String::from("^");
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        pattern.push_str(&regex::escape(&rest[..open]));
        let close = open + rest[open..].find('}')?;
        let reserved = rest[open + 1..close].starts_with('+');
        pattern.push_str(if reserved { "(?s:.+)" } else { "[^/]+" });
        rest = &rest[close + 1..];
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    Regex::new(&pattern).ok()
}

#[cfg(test)]
mod tests;
