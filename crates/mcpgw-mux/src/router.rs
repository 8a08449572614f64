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
//!   and one that does not match the lockfile ([`crate::pin`]);
//! - a tool the catalog rewrites (`rename`, `describe`, `hide_params`,
//!   [`overrides`]) is listed, scanned and pinned as rewritten; a renamed
//!   tool is exposed as `<server><separator><new name>` and takes its name
//!   before the server's other tools, so a tool of the server that already
//!   had that name gets the hash suffix, and a [`Notice`] says so; an
//!   override that names no tool of the server is a [`Notice`] too.

pub mod overrides;

use std::borrow::Cow;
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
    /// The parameters the catalog hides (`hide_params`): stripped from a
    /// call's arguments before it is forwarded.
    pub hidden_params: Arc<[String]>,
}

/// Something about the catalog's overrides that the servers' lists make
/// worth saying, once, at start-up or when a list changes: an override
/// that names no tool, or a rename that takes another tool's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The server it concerns.
    pub server: String,
    /// What happened and the fix, in words.
    pub message: String,
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
    /// What the catalog's overrides met in the lists.
    notices: Vec<Notice>,
    prompts: Vec<Prompt>,
    prompt_routes: HashMap<String, Route>,
    resources: Vec<Resource>,
    resource_routes: HashMap<String, usize>,
    /// Each template with its server and its matcher, compiled once.
    templates: Vec<(ResourceTemplate, usize, Option<Regex>)>,
    /// The search mode's index of `tools`, built by the first search.
    search: std::sync::OnceLock<Arc<crate::search::Index>>,
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
            let shown: Vec<Cow<'_, Tool>> = inventory
                .tools
                .iter()
                .map(|t| overrides::shown(entry.filter, t))
                .collect();
            let names = tool_names(entry, separator, inventory, &shown, &mut taken_tools);
            table.notices.extend(names.notices);
            for ((tool, shown), exposed) in inventory.tools.iter().zip(&shown).zip(names.exposed) {
                if !entry.filter.permits(&tool.name) {
                    table.hidden_tools.insert(exposed, index);
                    continue;
                }
                if let Some(at) = verdict.blocked(index, ItemKind::Tool, &shown.name) {
                    table.blocked_tools.insert(exposed, (index, at));
                    continue;
                }
                if let Some(at) = pinned.withheld(index, ItemKind::Tool, &tool.name) {
                    table.unpinned_tools.insert(exposed, (index, at));
                    continue;
                }
                let mut listed = shown.as_ref().clone();
                listed.name = exposed.clone().into();
                table.tools.push(listed);
                table.tool_routes.insert(
                    exposed.clone(),
                    Route {
                        server: index,
                        name: exposed.into(),
                        upstream: tool.name.as_ref().into(),
                        hidden_params: entry.filter.hidden_params(&tool.name).into(),
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
                        hidden_params: Arc::new([]),
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

    /// What the catalog's overrides met in the servers' lists.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
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

    /// The listed tools that best match `query` (BM25, [`crate::search`]),
    /// best first, at most `limit`, among those for which `keep` holds.
    /// The index is built on the first search of this table.
    pub fn find(
        &self,
        query: &str,
        limit: usize,
        mut keep: impl FnMut(&Tool, &Route) -> bool,
    ) -> Vec<&Tool> {
        let index = self
            .search
            .get_or_init(|| Arc::new(crate::search::Index::build(&self.tools)));
        let keep = |i: usize| {
            let tool = &self.tools[i];
            self.tool_routes
                .get(tool.name.as_ref())
                .is_some_and(|route| keep(tool, route))
        };
        index
            .search(query, limit, keep)
            .into_iter()
            .map(|(i, _)| &self.tools[i])
            .collect()
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

/// One server's exposed tool names, in upstream order, and what the
/// overrides met on the way.
struct Names {
    exposed: Vec<String>,
    notices: Vec<Notice>,
}

/// The exposed names of `entry`'s tools (`shown` as the catalog rewrites
/// them): renamed tools first, so that a rename the catalog asks for is
/// the name clients get, then the others in upstream order.
fn tool_names(
    entry: &ServerEntry<'_>,
    separator: &str,
    inventory: &Inventory,
    shown: &[Cow<'_, Tool>],
    taken: &mut HashSet<String>,
) -> Names {
    let mut notices = Vec::new();
    let mut exposed = vec![String::new(); shown.len()];
    let renamed = |i: &usize| entry.filter.rename(&inventory.tools[*i].name).is_some();
    let (first, rest): (Vec<usize>, Vec<usize>) = (0..shown.len()).partition(renamed);
    let mut by_rename: HashMap<String, usize> = HashMap::new();
    for i in first {
        exposed[i] = expose(entry.name, separator, &shown[i].name, taken);
        by_rename.insert(exposed[i].clone(), i);
    }
    for i in rest {
        let name = &shown[i].name;
        let collides = by_rename.get(&clean(entry.name, separator, name)).copied();
        exposed[i] = expose(entry.name, separator, name, taken);
        if let Some(by) = collides {
            let original = &inventory.tools[by].name;
            if entry.filter.permits(name) && entry.filter.permits(original) {
                notices.push(Notice {
                    server: entry.name.to_string(),
                    message: format!(
                        "`tools.rename` gives `{original}` the name `{name}`, which the server's own tool `{name}` has: that tool is exposed as `{}` instead; fix: rename `{original}` to another name, or rename or deny `{name}`",
                        exposed[i]
                    ),
                });
            }
        }
    }
    for (key, name) in entry.filter.overridden() {
        if !inventory.tools.iter().any(|t| t.name == name) {
            notices.push(Notice {
                server: entry.name.to_string(),
                message: format!(
                    "`tools.{key}` names `{name}`, which the server does not list, so it does nothing; fix: correct the name (the server lists {}), or remove it",
                    listed(inventory)
                ),
            });
        }
    }
    Names { exposed, notices }
}

/// A few of the names `inventory` lists, for a message.
fn listed(inventory: &Inventory) -> String {
    let names: Vec<String> = inventory
        .tools
        .iter()
        .take(8)
        .map(|t| format!("`{}`", t.name))
        .collect();
    match (names.len(), inventory.tools.len()) {
        (0, _) => "no tools".to_string(),
        (n, all) if n < all => format!("{}, …", names.join(", ")),
        _ => names.join(", "),
    }
}

/// `<server><separator><upstream>` with the characters clients refuse made
/// `_`, before any shortening.
fn clean(server: &str, separator: &str, upstream: &str) -> String {
    format!("{server}{separator}{upstream}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The exposed name for `upstream` on `server`, unique within `taken`.
pub fn expose(
    server: &str,
    separator: &str,
    upstream: &str,
    taken: &mut HashSet<String>,
) -> String {
    let clean = clean(server, separator, upstream);
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
