//! Pinning: what the servers list, held against the lockfile's pins
//! (`mcpgw_catalog::lock`). The routing table calls it once per build, next
//! to the scan ([`crate::screen`]), so a definition that drifts is withheld
//! at start-up and after a `list_changed` alike: the changed definition
//! never reaches a client.
//!
//! On a server with pins (a lockfile is in force), an item is served only
//! when its canonical definition hashes to its pin. An item that differs,
//! or that the lockfile does not list, is withheld: absent from lists and
//! refused on call, with the diff from its pinned definition logged once.
//! Servers without pins (no lockfile) are not checked. Tools the allowlist
//! hides are neither pinned nor checked: no model sees them. A tool the
//! catalog rewrites (`router::overrides`) is pinned as rewritten, with the
//! server's own definition pinned beside it (`Pin::upstream`): both must
//! match, so neither a change to the overrides nor one upstream that they
//! would hide goes unnoticed.

use std::collections::{BTreeMap, HashMap, HashSet};

use mcpgw_backend::Inventory;
use mcpgw_catalog::ToolFilter;
use mcpgw_catalog::lock::{Pin, ServerLock, pretty};
use mcpgw_scan::ItemKind;
use serde_json::Value;

use crate::screen::Listed;

/// A definition that does not match the lockfile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    /// The server that lists it.
    pub server: String,
    /// What kind of item it is.
    pub kind: ItemKind,
    /// Its key in the lockfile: the upstream name of a tool or prompt,
    /// the URI of a resource, the URI template of a template.
    pub item: String,
    /// How it differs.
    pub change: Change,
}

/// How a definition differs from the lockfile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "change")]
pub enum Change {
    /// The lockfile does not list it.
    Unpinned {
        /// Its definition now, pretty-printed.
        definition: String,
    },
    /// Its definition is not the pinned one.
    Changed {
        /// A unified diff from the pinned definition to this one.
        diff: String,
    },
    /// The lockfile lists it, and the server no longer does.
    Gone,
}

impl Drift {
    /// One line saying what drifted, for logs and errors.
    #[must_use]
    pub fn summary(&self) -> String {
        let what = match self.change {
            Change::Unpinned { .. } => "is not in the lockfile",
            Change::Changed { .. } => "differs from its pin in the lockfile",
            Change::Gone => "is pinned in the lockfile but no longer listed",
        };
        format!("{} {what}", self.item_name())
    }

    /// "KIND `ITEM` of server `SERVER`".
    #[must_use]
    pub fn item_name(&self) -> String {
        format!(
            "{} `{}` of server `{}`",
            self.kind.as_str(),
            self.item,
            self.server
        )
    }

    /// The summary, then the diff or the new definition.
    #[must_use]
    pub fn detail(&self) -> String {
        match &self.change {
            Change::Unpinned { definition } => format!("{}:\n{definition}", self.summary()),
            Change::Changed { diff } => format!("{}:\n{diff}", self.summary()),
            Change::Gone => self.summary(),
        }
    }
}

/// The verdict on a whole inventory.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Every drift, in catalog order then kind then name.
    pub(crate) drift: Vec<Drift>,
    /// Withheld items: (server index, kind, key) to their drift's index.
    withheld: HashMap<(usize, ItemKind, String), usize>,
}

impl Verdict {
    /// Which drift (its index in `drift`) withholds item `key` of `kind`
    /// on server `index`.
    pub(crate) fn withheld(&self, index: usize, kind: ItemKind, key: &str) -> Option<usize> {
        self.withheld.get(&(index, kind, key.to_string())).copied()
    }
}

/// Holds what `servers` list against their pins. Only a digest is
/// computed per item; a definition is printed only when it drifted.
pub(crate) fn check(servers: &[Listed<'_>]) -> Verdict {
    let mut verdict = Verdict::default();
    for (index, server) in servers.iter().enumerate() {
        let (Some(pins), Some(inventory)) = (server.pins, server.inventory) else {
            continue;
        };
        for (kind, pinned, listed) in definitions(server.filter, inventory, pins) {
            let mut drift = |item: &str, change| {
                let at = verdict.drift.len();
                verdict.drift.push(Drift {
                    server: server.name.to_string(),
                    kind,
                    item: item.to_string(),
                    change,
                });
                at
            };
            for (key, definition, original) in &listed {
                let change = match pinned.get(*key) {
                    Some(pin)
                        if pin.matches(definition) && pin.upstream_matches(original.as_ref()) =>
                    {
                        continue;
                    }
                    Some(pin) if pin.matches(definition) => Change::Changed {
                        diff: upstream_diff(pin, original.as_ref()),
                    },
                    Some(pin) => Change::Changed {
                        diff: diff(&pin.definition, &pretty(definition)),
                    },
                    None => Change::Unpinned {
                        definition: pretty(definition),
                    },
                };
                let at = drift(key, change);
                verdict
                    .withheld
                    .insert((index, kind, (*key).to_string()), at);
            }
            let keys: HashSet<&str> = listed.iter().map(|(k, ..)| *k).collect();
            for key in pinned.keys().filter(|k| !keys.contains(k.as_str())) {
                drift(key, Change::Gone);
            }
        }
    }
    verdict
}

/// One kind of item: its pins, and what is listed now by key, as shown
/// and, when the catalog rewrites it, as the server sent it.
type Kind<'a> = (
    ItemKind,
    &'a BTreeMap<String, Pin>,
    Vec<(&'a str, Value, Option<Value>)>,
);

/// How the server's own definition of a rewritten tool differs from its
/// pin, when the rewrite clients see has not changed.
fn upstream_diff(pin: &Pin, original: Option<&Value>) -> String {
    let pinned = pin.upstream.as_ref().map_or("", |p| p.definition.as_str());
    let now = original.map(pretty).unwrap_or_default();
    format!(
        "the server's own definition, which the catalog's overrides rewrite:\n{}",
        diff(pinned, &now)
    )
}

/// Each kind's pins and what `inventory` lists of it now, by lockfile key
/// (tools the `filter` hides left out), as definitions: tools as the
/// catalog rewrites them, with the server's own beside when it does.
fn definitions<'a>(
    filter: &ToolFilter,
    inventory: &'a Inventory,
    pins: &'a ServerLock,
) -> [Kind<'a>; 4] {
    [
        (
            ItemKind::Tool,
            &pins.tools,
            inventory
                .tools
                .iter()
                .filter(|t| filter.permits(&t.name))
                .map(|t| match crate::router::overrides::shown(filter, t) {
                    std::borrow::Cow::Borrowed(t) => (t.name.as_ref(), json(t), None),
                    std::borrow::Cow::Owned(shown) => {
                        (t.name.as_ref(), json(&shown), Some(json(t)))
                    }
                })
                .collect(),
        ),
        (
            ItemKind::Prompt,
            &pins.prompts,
            inventory
                .prompts
                .iter()
                .map(|p| (p.name.as_str(), json(p), None))
                .collect(),
        ),
        (
            ItemKind::Resource,
            &pins.resources,
            inventory
                .resources
                .iter()
                .map(|r| (r.uri.as_str(), json(r), None))
                .collect(),
        ),
        (
            ItemKind::ResourceTemplate,
            &pins.resource_templates,
            inventory
                .resource_templates
                .iter()
                .map(|t| (t.uri_template.as_str(), json(t), None))
                .collect(),
        ),
    ]
}

/// How `listed` differs from `pinned`, for items of `kind` on `server`.
#[must_use]
pub fn compare(
    server: &str,
    kind: ItemKind,
    pinned: &BTreeMap<String, Pin>,
    listed: &BTreeMap<String, Pin>,
) -> Vec<Drift> {
    let drift = |item: &str, change| Drift {
        server: server.to_string(),
        kind,
        item: item.to_string(),
        change,
    };
    let mut out = Vec::new();
    for (key, now) in listed {
        match pinned.get(key) {
            Some(pin) if pin.same(now) => {}
            Some(pin) if pin.sha256 == now.sha256 => {
                let now = now.upstream.as_ref().map_or("", |p| p.definition.as_str());
                let pinned = pin.upstream.as_ref().map_or("", |p| p.definition.as_str());
                out.push(drift(
                    key,
                    Change::Changed {
                        diff: format!(
                            "the server's own definition, which the catalog's overrides rewrite:\n{}",
                            diff(pinned, now)
                        ),
                    },
                ));
            }
            Some(pin) => out.push(drift(
                key,
                Change::Changed {
                    diff: diff(&pin.definition, &now.definition),
                },
            )),
            None => out.push(drift(
                key,
                Change::Unpinned {
                    definition: now.definition.clone(),
                },
            )),
        }
    }
    for key in pinned.keys().filter(|k| !listed.contains_key(*k)) {
        out.push(drift(key, Change::Gone));
    }
    out
}

/// A unified diff from `before` to `after`, three lines of context.
#[must_use]
pub fn diff(before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header("pinned", "listed now")
        .to_string()
}

/// The pins of what `inventory` lists now, tools the `filter` hides left
/// out: what `mcpgw lock` writes (without the image, which the engine
/// knows).
#[must_use]
pub fn current(filter: &ToolFilter, inventory: &Inventory) -> ServerLock {
    let none = ServerLock::default();
    let [tools, prompts, resources, templates] =
        definitions(filter, inventory, &none).map(|(_, _, listed)| {
            listed
                .into_iter()
                .map(|(key, definition, original)| {
                    let pin = match original {
                        Some(original) => Pin::rewritten(&definition, &original),
                        None => Pin::of(&definition),
                    };
                    (key.to_string(), pin)
                })
                .collect()
        });
    ServerLock {
        image: None,
        tools,
        prompts,
        resources,
        resource_templates: templates,
    }
}

/// An item's definition as the client would receive it.
fn json(item: &impl serde::Serialize) -> Value {
    serde_json::to_value(item).unwrap_or(Value::Null)
}
