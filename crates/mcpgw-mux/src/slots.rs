//! The mux's slots, one per catalog server: what state each server is in,
//! the bounds its calls are admitted within (`admission.rs`), and
//! [`Slots`], through which the runtime reports servers up, down or idle.
//!
//! It does not forward anything (`forward.rs` does) nor answer clients
//! (`handlers.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mcpgw_backend::{Backend, Deadline, Inventory, Relay};
use mcpgw_catalog::lock::ServerLock;
use mcpgw_catalog::{GatewaySpec, ScanPolicy, Scope, ServerName, ServerSpec, ToolFilter};
use mcpgw_secrets::LiveRedactor;
use parking_lot::RwLock;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

pub(crate) use crate::admission::Limit;
use crate::changes::ListChange;
use crate::pin::Change;
use crate::relay::ClientRelay;
use crate::router::{RoutingTable, ServerEntry};
use crate::screen::Action;
use crate::{Diagnose, Instances, Slots};

/// The state of one catalog server, as the mux sees it. There is one per
/// catalog server, so the size of the `Ready` variant does not matter.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum SlotState {
    Starting,
    Ready {
        backend: Backend,
        inventory: Arc<Inventory>,
    },
    /// Down, for this reason. The last inventory it had stays listed, so
    /// a restart does not make its tools flicker out of clients' lists.
    Failed {
        reason: Arc<str>,
        last: Option<Arc<Inventory>>,
    },
    /// Stopped while unused (`lifecycle: on-demand`); a call starts it again.
    Idle {
        last: Arc<Inventory>,
    },
    /// `scope: session`: its tools are known (from a first instance, since
    /// removed), and each client session starts an instance of its own.
    PerSession {
        inventory: Arc<Inventory>,
    },
    /// Taken out by a catalog reload (removed, or replaced by a slot of
    /// its own), for this reason; it lists nothing and serves nothing.
    Retired {
        reason: Arc<str>,
    },
}

impl SlotState {
    pub(crate) fn inventory(&self) -> Option<&Inventory> {
        match self {
            Self::Ready { inventory, .. } => Some(inventory),
            Self::Failed { last, .. } => last.as_deref(),
            Self::Idle { last } => Some(last),
            Self::PerSession { inventory } => Some(inventory),
            Self::Starting | Self::Retired { .. } => None,
        }
    }
}

/// One catalog server as the mux sees it. Slots are never removed: a
/// reload retires the slots of the servers it removes or replaces and
/// appends new ones, so a slot's index means one server for the life of
/// the gateway.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) name: ServerName,
    /// Its gateway-side settings, which a reload updates in place.
    policy: RwLock<Arc<Policy>>,
    pub(crate) state: watch::Sender<SlotState>,
    /// Each client session gets its own instance (`scope: session`),
    /// bounded by a fresh copy of the policy's `limit`.
    pub(crate) per_session: bool,
    /// When a call last finished or started here, on tokio's clock (so
    /// that idle stops run under paused time in tests).
    pub(crate) last_used: parking_lot::Mutex<Instant>,
    /// Asks the runtime to start an idle server.
    pub(crate) wake: Notify,
    /// How long a stopped server may take to come back for a call.
    pub(crate) wake_timeout: Duration,
    /// The secrets the catalog gives this server, by name.
    pub(crate) secrets: std::collections::BTreeSet<String>,
}

/// A server's gateway-side settings: what the mux does with its lists and
/// calls, none of which touches its container. A reload replaces them
/// whole, so each read sees one consistent set.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) filter: ToolFilter,
    /// What the tool-poisoning scan does with what it lists.
    pub(crate) scan: ScanPolicy,
    /// What the scan does with its tool results.
    pub(crate) scan_results: ScanPolicy,
    /// The lockfile's pins, when one is in force.
    pub(crate) pins: Option<Arc<ServerLock>>,
    pub(crate) limit: Arc<Limit>,
    pub(crate) deadline: Deadline,
    /// Which requests for input the catalog lets this server make.
    pub(crate) relays: mcpgw_backend::Relays,
}

impl Policy {
    /// `spec`'s settings under `gateway`'s defaults. The concurrency bound
    /// of `was` (the policy it replaces) is kept when it is unchanged, so
    /// that calls in flight and queued stay counted.
    fn new(spec: &ServerSpec, gateway: &GatewaySpec, was: Option<&Self>) -> Self {
        let limit = match was {
            Some(was) if was.limit.has_bounds(spec.concurrency) => was.limit.clone(),
            _ => Arc::new(Limit::new(spec.concurrency)),
        };
        Self {
            filter: spec.tools.clone(),
            scan: spec.scan.unwrap_or(gateway.scan),
            scan_results: spec.scan_results.unwrap_or(gateway.scan_results),
            pins: spec.pins.clone(),
            limit,
            deadline: Deadline {
                idle: spec.call_timeout.unwrap_or(gateway.call_timeout),
                max_total: gateway.max_call_timeout,
            },
            relays: mcpgw_backend::Relays {
                sampling: spec.relay.sampling,
                elicitation: spec.relay.elicitation,
                roots: spec.relay.roots,
            },
        }
    }
}

impl Slot {
    /// A starting slot for `spec`.
    pub(crate) fn new(spec: &ServerSpec, gateway: &GatewaySpec) -> Self {
        Self {
            name: spec.name.clone(),
            policy: RwLock::new(Arc::new(Policy::new(spec, gateway, None))),
            state: watch::channel(SlotState::Starting).0,
            per_session: spec.scope == Scope::Session,
            last_used: parking_lot::Mutex::new(Instant::now()),
            wake: Notify::new(),
            wake_timeout: gateway.init_timeout + Duration::from_secs(30),
            secrets: spec.secrets.values().map(|r| r.name.to_string()).collect(),
        }
    }

    /// Its gateway-side settings now.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        self.policy.read().clone()
    }

    /// Puts `spec`'s gateway-side settings in force (a reload).
    pub(crate) fn update(&self, spec: &ServerSpec, gateway: &GatewaySpec) {
        let mut policy = self.policy.write();
        *policy = Arc::new(Policy::new(spec, gateway, Some(&policy)));
    }

    /// Whether a reload has taken it out.
    pub(crate) fn is_retired(&self) -> bool {
        matches!(*self.state.borrow(), SlotState::Retired { .. })
    }
}

impl Slots {
    /// Server `index` is up, offering `inventory`.
    pub fn ready(&self, index: usize, backend: Backend, inventory: Inventory) {
        let again = matches!(
            &*self.shared.slots[index].state.borrow(),
            SlotState::Ready { backend: was, .. } if was.same(&backend)
        );
        if !again {
            self.shared.audit_server(index, None);
            self.check_catalog_tools(index, &inventory);
        }
        if let Some(level) = *self.shared.log_level.read() {
            let backend = backend.clone();
            tokio::spawn(async move { backend.set_level(level).await });
        }
        self.set(
            index,
            SlotState::Ready {
                backend,
                inventory: Arc::new(inventory),
            },
        );
    }

    /// Logs what the catalog says about server `index`'s tools (limits,
    /// caching) that its `inventory` belies: each time it comes up anew.
    fn check_catalog_tools(&self, index: usize, inventory: &Inventory) {
        let name = self.shared.slots[index].name.as_str();
        let settings = self.shared.settings();
        if let Some(results) = &settings.results {
            results.check(index, name, inventory);
        }
        if let Some(limits) = &settings.limits {
            limits.report_unknown_tools(index, name, inventory);
        }
    }

    /// Where server `index`'s server-to-client requests go: the client
    /// session, when it supports them.
    pub fn relay(&self, index: usize) -> Arc<dyn Relay> {
        Arc::new(ClientRelay {
            shared: Arc::downgrade(&self.shared),
            server: self.shared.slots[index].name.clone(),
            index,
            session: None,
        })
    }

    /// Server `index` has `scope: session`; its first instance offered
    /// `inventory` and is gone. Each client session starts its own.
    pub fn per_session(&self, index: usize, inventory: Inventory) {
        self.check_catalog_tools(index, &inventory);
        self.set(
            index,
            SlotState::PerSession {
                inventory: Arc::new(inventory),
            },
        );
    }

    /// Installs what starts the instances of `scope: session` servers.
    pub fn set_instances(&self, instances: Arc<dyn Instances>) {
        let _ = self.shared.instances.set(instances);
    }

    /// Installs what explains a server that stopped answering.
    pub fn set_diagnosis(&self, diagnosis: Arc<dyn Diagnose>) {
        let _ = self.shared.diagnosis.set(diagnosis);
    }

    /// Gives the mux the injected secrets' values, so that a request that
    /// carries one to a server not given it is refused. Set once; a reload
    /// replaces what the live redactor finds.
    pub fn set_secrets(&self, redactor: LiveRedactor) {
        let _ = self.shared.secrets.set(redactor);
    }

    /// Server `index` took `took` to start: container, handshake and lists
    /// (for `mcpgw_server_start_seconds`).
    pub fn started(&self, index: usize, took: Duration) {
        self.shared
            .metrics
            .started(self.shared.slots[index].name.as_str(), took);
    }

    /// Installs the audit trail, and records the configuration in force:
    /// `catalog`, served over `front` (`stdio`, `http`). Set once.
    pub fn set_audit(&self, audit: crate::Audit, catalog: &mcpgw_catalog::Catalog, front: &str) {
        let _ = self.shared.audit.set(audit);
        self.shared.audit_config(catalog, front, None);
    }

    /// Records an egress proxy's decision in the audit trail, if one is
    /// kept.
    pub fn audit_egress(&self, decision: &mcpgw_catalog::EgressDecision) {
        self.shared.audit_egress(decision);
    }

    /// Server `index` is down, for `reason` (shown to clients that call it).
    pub fn failed(&self, index: usize, reason: &str) {
        self.shared.audit_server(index, Some(reason));
        self.shared
            .metrics
            .failure(self.shared.slots[index].name.as_str());
        let last = self.shared.slots[index]
            .state
            .borrow()
            .inventory()
            .map(|i| Arc::new(i.clone()));
        self.set(
            index,
            SlotState::Failed {
                reason: Arc::from(reason),
                last,
            },
        );
    }

    /// How long server `index` has gone without calls, or `None` while a
    /// call is in flight or waiting.
    pub fn unused_for(&self, index: usize) -> Option<Duration> {
        let slot = &self.shared.slots[index];
        if slot.policy().limit.is_busy() {
            return None;
        }
        Some(slot.last_used.lock().elapsed())
    }

    /// Server `index` was stopped while unused; its tools stay listed.
    pub fn idle(&self, index: usize) {
        let last = self.shared.slots[index]
            .state
            .borrow()
            .inventory()
            .map(|i| Arc::new(i.clone()))
            .unwrap_or_default();
        self.set(index, SlotState::Idle { last });
    }

    /// Resolves when a call asks for idle server `index` to start.
    pub async fn woken(&self, index: usize) {
        self.shared.slots[index].wake.notified().await;
    }

    /// Every backend session currently open.
    pub fn backends(&self) -> Vec<Backend> {
        self.shared
            .slots
            .iter()
            .filter_map(|(_, slot)| match &*slot.state.borrow() {
                SlotState::Ready { backend, .. } => Some(backend.clone()),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn set(&self, index: usize, state: SlotState) {
        // Change, rebuild and publish under the table's lock: two backends
        // reporting at once must not publish their tables out of order.
        let table = self.shared.table.write();
        // A retired slot stays retired: its loop may report a last state
        // while it stops.
        if self.shared.slots[index].is_retired() {
            return;
        }
        self.shared.slots[index].state.send_replace(state);
        self.publish_locked(table);
    }

    /// Rebuilds the routing table from the slots and publishes it.
    pub(crate) fn publish(&self) {
        self.publish_locked(self.shared.table.write());
    }

    fn publish_locked(&self, mut table: parking_lot::RwLockWriteGuard<'_, Arc<RoutingTable>>) {
        let rebuilt = Arc::new(self.rebuild());
        report_findings(&table, &rebuilt);
        report_drift(&table, &rebuilt);
        report_notices(&table, &rebuilt);
        self.shared.metrics.set_findings(rebuilt.findings());
        let settings = self.shared.settings();
        let change = ListChange::between((&*table, &settings), (&rebuilt, &settings));
        *table = rebuilt;
        drop(table);
        let all_settled = self
            .shared
            .slots
            .iter()
            .all(|(_, s)| !matches!(*s.state.borrow(), SlotState::Starting));
        let was_settled = *self.shared.settled.borrow();
        if all_settled && !was_settled {
            self.shared.settled.send_replace(true);
        } else if was_settled && change.any() && !self.shared.reloading.load(Ordering::Acquire) {
            // Lists changed after clients may have read them.
            let _ = self.shared.changes.send(change);
        }
    }

    pub(crate) fn rebuild(&self) -> RoutingTable {
        let states: Vec<(SlotState, Arc<Policy>)> = self
            .shared
            .slots
            .iter()
            .map(|(_, s)| (s.state.borrow().clone(), s.policy()))
            .collect();
        let entries: Vec<ServerEntry<'_>> = self
            .shared
            .slots
            .iter()
            .zip(&states)
            .map(|((_, slot), (state, policy))| ServerEntry {
                name: slot.name.as_str(),
                filter: &policy.filter,
                scan: policy.scan,
                pins: policy.pins.as_deref(),
                inventory: state.inventory(),
            })
            .collect();
        RoutingTable::build(&self.shared.separator, &entries)
    }
}

/// Logs each finding in `now` that `before` did not have: once per finding,
/// not once per rebuild.
fn report_findings(before: &RoutingTable, now: &RoutingTable) {
    for screened in now.findings() {
        if before.findings().contains(screened) {
            continue;
        }
        let f = &screened.finding;
        let what = format!(
            "tool-poisoning scan: {} `{}`: {} ({}) at {}: {}; excerpt: {}",
            f.kind.as_str(),
            f.item,
            f.rule,
            f.severity,
            f.path,
            f.message,
            f.excerpt
        );
        match screened.action {
            Action::Blocked => {
                tracing::error!(server = %f.server, "{what}; withheld from clients");
            }
            Action::Warned => tracing::warn!(server = %f.server, "{what}"),
        }
    }
}

/// Logs each notice about the catalog's overrides in `now` that `before`
/// did not have.
fn report_notices(before: &RoutingTable, now: &RoutingTable) {
    for notice in now.notices() {
        if !before.notices().contains(notice) {
            tracing::warn!(server = %notice.server, "{}", notice.message);
        }
    }
}

/// Logs each drift from the lockfile in `now` that `before` did not have.
fn report_drift(before: &RoutingTable, now: &RoutingTable) {
    for drift in now.drift() {
        if before.drift().contains(drift) {
            continue;
        }
        match drift.change {
            Change::Gone => tracing::warn!(server = %drift.server, "{}", drift.summary()),
            _ => tracing::error!(
                server = %drift.server,
                "{}; withheld from clients, fix: review it, then `mcpgw lock --update`",
                drift.detail()
            ),
        }
    }
}

/// Marks a slot used when a call starts and again when it ends.
pub(crate) struct Activity<'a>(&'a Slot);

impl<'a> Activity<'a> {
    pub(crate) fn begin(slot: &'a Slot) -> Self {
        *slot.last_used.lock() = Instant::now();
        Self(slot)
    }
}

impl Drop for Activity<'_> {
    fn drop(&mut self) {
        *self.0.last_used.lock() = Instant::now();
    }
}
