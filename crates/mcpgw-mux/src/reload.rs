//! Reloads: a new catalog applied to the running mux as a diff.
//!
//! The mux's side is [`Slots::reload`]: the slots of removed servers are
//! retired (their calls in flight end with the reason), a replaced server
//! gets a new slot and its old one is retired, an added one gets a new
//! slot, and every server kept has its gateway-side settings put in force
//! in place (`Slot::update`), as do the catalog-wide [`Settings`]. The
//! runtime then starts and stops what [`Reload`] lists, and
//! [`Slots::reloaded`] tells clients once what changed, after the new
//! servers have come up or failed. Which servers changed, and how, is the
//! catalog's pure `diff`; this module only applies it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mcpgw_catalog::{Catalog, Diff, Profile, ToolView};

use crate::changes::ListChange;
use crate::router::RoutingTable;
use crate::slots::{Slot, SlotState};
use crate::{Slots, cache, limits};

/// The catalog-wide settings of the mux, replaced whole by a reload.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Client views, by profile name.
    pub(crate) profiles: BTreeMap<String, Profile>,
    /// How clients see the tools unless their profile says.
    pub(crate) tool_view: ToolView,
    /// The catalog's rate limits, when it declares any.
    pub(crate) limits: Option<Arc<limits::Limits>>,
    /// The results of the tools the catalog caches, when it caches any.
    pub(crate) results: Option<cache::Results>,
    /// What `limits` were built from, so that a reload that leaves them
    /// as they were keeps their buckets (and clients' budgets).
    limits_source: String,
}

impl Settings {
    /// `catalog`'s settings, its server `i` at slot `at[i]`; the rate
    /// limits of `was` are kept when they would be built the same. The
    /// result cache always starts empty: a reload may give a tool name to
    /// another server.
    pub(crate) fn new(catalog: &Catalog, at: &[usize], was: Option<&Self>) -> Self {
        let limits_source = format!(
            "{:?} {:?} {:?}",
            catalog.gateway.limits,
            catalog
                .profiles
                .values()
                .map(|p| (&p.name, &p.limits))
                .collect::<Vec<_>>(),
            at.iter()
                .zip(&catalog.servers)
                .map(|(slot, s)| (slot, &s.limits))
                .collect::<Vec<_>>(),
        );
        let limits = match was {
            Some(was) if was.limits_source == limits_source => was.limits.clone(),
            _ => limits::Limits::placed(catalog, at).map(Arc::new),
        };
        Self {
            profiles: catalog.profiles.clone(),
            tool_view: catalog.gateway.tool_view.clone(),
            limits,
            results: cache::Results::placed(catalog, at),
            limits_source,
        }
    }
}

/// What a reload leaves to the runtime once the mux has applied its side.
#[derive(Debug)]
pub struct Reload {
    /// The slots to start, each with the index of its server in the new
    /// catalog.
    pub start: Vec<(usize, usize)>,
    /// The slots retired: their servers are to be stopped and their
    /// containers removed.
    pub stop: Vec<usize>,
    /// The slot of each server of the new catalog, in its order.
    pub at: Vec<usize>,
    /// The routing table and settings before the reload, to tell clients
    /// what changed.
    before: (Arc<RoutingTable>, Arc<Settings>),
}

impl Slots {
    /// Applies `diff` (from `old`, the catalog in force, to `new`) to the
    /// mux, and says what the runtime must start and stop. Until
    /// [`Self::reloaded`], list changes are gathered rather than sent.
    pub fn reload(&self, old: &Catalog, new: &Catalog, diff: &Diff) -> Reload {
        let shared = &self.shared;
        shared.reloading.store(true, Ordering::Release);
        let before = (shared.table.read().clone(), shared.settings());
        let mut stop = Vec::new();
        let retire = |old_index: usize, why: &str, stop: &mut Vec<usize>| {
            let name = old.servers[old_index].name.as_str();
            if let Some(index) = self.live(name) {
                let reason = format!("server `{name}` {why}");
                self.retire(index, &reason);
                stop.push(index);
            }
        };
        for &o in &diff.removed {
            retire(o, "was removed from the catalog by a reload", &mut stop);
            shared.metrics.forget_server(old.servers[o].name.as_str());
        }
        for &(o, _) in &diff.replaced {
            retire(
                o,
                "is being replaced: a catalog reload changed its container's settings; call again",
                &mut stop,
            );
        }
        let mut at = vec![usize::MAX; new.servers.len()];
        for &(_, n) in diff.updated.iter().chain(&diff.unchanged) {
            let spec = &new.servers[n];
            if let Some(index) = self.live(spec.name.as_str()) {
                shared.slots[index].update(spec, &new.gateway);
                at[n] = index;
            }
        }
        let mut start = Vec::new();
        for n in diff
            .added
            .iter()
            .copied()
            .chain(diff.replaced.iter().map(|&(_, n)| n))
        {
            let index = shared.slots.push(Slot::new(&new.servers[n], &new.gateway));
            at[n] = index;
            start.push((index, n));
        }
        // A server the diff missed would have no slot: start it, so that
        // nothing in the new catalog goes unserved.
        for (n, slot) in at.iter_mut().enumerate() {
            if *slot == usize::MAX {
                *slot = shared.slots.push(Slot::new(&new.servers[n], &new.gateway));
                start.push((*slot, n));
            }
        }
        let was = shared.settings.read().clone();
        *shared.settings.write() = Arc::new(Settings::new(new, &at, Some(was.as_ref())));
        self.publish();
        Reload {
            start,
            stop,
            at,
            before,
        }
    }

    /// Waits until the servers `reload` started have come up or failed
    /// (bounded by the catalog's start-up timeout), then tells clients
    /// once what changed: a `list_changed` notification or a change on
    /// their listen streams, when their lists did.
    pub async fn reloaded(&self, reload: &Reload) {
        let shared = &self.shared;
        let started = async {
            for &(index, _) in &reload.start {
                let mut state = shared.slots[index].state.subscribe();
                let _ = state.wait_for(|s| !matches!(s, SlotState::Starting)).await;
            }
        };
        if tokio::time::timeout(shared.settle_timeout, started)
            .await
            .is_err()
        {
            tracing::warn!(
                "some servers the reload added are still starting; telling clients about those that are up"
            );
        }
        // Clearing the flag under the table's lock: a change published
        // after it is sent by itself, one before it is in this notice.
        let table = shared.table.write();
        shared.reloading.store(false, Ordering::Release);
        let (was, settings) = &reload.before;
        let change = ListChange::between((was, settings), (&*table, &shared.settings()));
        drop(table);
        if change.any() {
            let _ = shared.changes.send(change);
        }
    }

    /// Counts a reload that put `catalog` in force (served over `front`),
    /// and records it in the audit trail with what it changed.
    pub fn reload_applied(&self, catalog: &Catalog, front: &str, change: &str) {
        self.shared.metrics.reloaded("applied");
        self.shared.audit_config(catalog, front, Some(change));
    }

    /// Counts a reload of `path` refused for `error` (nothing changed),
    /// and records it in the audit trail.
    pub fn reload_refused(&self, path: &std::path::Path, error: &str) {
        self.shared.metrics.reloaded("refused");
        self.shared.audit_config_refused(path, error);
    }

    /// The slot of the server named `name` that no reload retired.
    fn live(&self, name: &str) -> Option<usize> {
        self.shared
            .slots
            .iter()
            .find(|(_, slot)| slot.name.as_str() == name && !slot.is_retired())
            .map(|(index, _)| index)
    }

    /// Takes slot `index` out for `reason`: it lists nothing from now on,
    /// its calls in flight end with `reason` once the runtime stops it,
    /// and the client sessions' own instances of it are closed.
    fn retire(&self, index: usize, reason: &str) {
        tracing::info!(server = %self.shared.slots[index].name, "{reason}");
        // Under the table's lock, as every state change: a state its loop
        // reports meanwhile cannot overwrite this one.
        let table = self.shared.table.write();
        self.shared.slots[index]
            .state
            .send_replace(SlotState::Retired {
                reason: Arc::from(reason),
            });
        drop(table);
        for session in self.shared.sessions.all() {
            session.close_instance(index);
        }
    }
}

#[cfg(test)]
mod tests;
