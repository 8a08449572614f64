//! The multiplexer: one MCP server, facing the client, in front of many
//! backend sessions.
//!
//! [`Mux`] implements rmcp's `ServerHandler`: it merges the lists of every
//! backend that is up, routes each call, prompt and resource read to the
//! backend that owns it (through the pure [`router`]), and refuses what the
//! catalog's filters hide before any backend sees it. [`Slots`] is the
//! runtime's side: it reports backends coming up and going down. This file
//! holds the mux and its shared state; `slots.rs`, `forward.rs` and
//! `handlers.rs` hold the servers' states and bounds, the forwarding path,
//! and the handlers.
//!
//! It does not know about transports (the binary serves it over stdio or
//! HTTP) nor about containers (the supervisor starts them).
//!
//! `initialize` and `server/discover` are answered at once, without waiting
//! for backends; list requests wait until every backend has either come up
//! or failed (bounded by the catalog's `init_timeout`), so a client that
//! lists right after connecting sees every server that could start.

// Sampling and roots are deprecated by SEP-2577, but handshake-era servers
// and clients still use them, and the gateway relays them.
#![allow(deprecated)]

mod admission;
mod audit;
mod cache;
mod changes;
mod forward;
pub mod gateway_tools;
mod handlers;
pub mod limits;
mod metrics;
mod paging;
pub mod pin;
mod relay;
mod reload;
mod rounds;
pub mod router;
pub mod screen;
pub mod search;
mod session;
mod slots;
pub mod trace;

pub use audit::{
    AUDIT_VERSION, Arguments as AuditArguments, Audit, AuditSink, ClientToken, Decision, Outcome,
};
pub use paging::PAGE_SIZE;
pub use reload::Reload;
pub use session::Instances;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mcpgw_catalog::{Catalog, ServerName};
use mcpgw_secrets::{LiveRedactor, Redactor};
use parking_lot::RwLock;
use rmcp::ErrorData;
use rmcp::model::LoggingLevel;
use rmcp::service::{RequestContext, RoleServer};
use tokio::sync::{broadcast, watch};

use crate::changes::{ListChange, notify_handshake_clients};
use crate::reload::Settings;
use crate::router::{RoutingTable, ToolLookup};
use crate::session::{Session, Sessions};
use crate::slots::{Limit, Slot, SlotState};

#[derive(Debug)]
pub(crate) struct Shared {
    separator: String,
    settle_timeout: Duration,
    /// One per catalog server, appended to by reloads, never shrunk
    /// (`slots.rs`).
    slots: boxcar::Vec<Slot>,
    /// The catalog-wide settings a reload replaces whole.
    settings: RwLock<Arc<Settings>>,
    /// Set while a reload is applied: list changes are gathered into the
    /// one notice the reload sends when it is done.
    reloading: std::sync::atomic::AtomicBool,
    table: RwLock<Arc<RoutingTable>>,
    settled: watch::Sender<bool>,
    /// The client sessions, for what servers say outside answers.
    sessions: Arc<Sessions>,
    /// Backend subscriptions: URI -> (server, how many sessions or streams).
    backend_subscriptions: parking_lot::Mutex<std::collections::HashMap<String, (usize, usize)>>,
    /// Resource updates from backends, for listen streams.
    updates: broadcast::Sender<String>,
    /// The lowest level any session asked logs from, which handshake-era
    /// backends are set to; each session filters by its own.
    log_level: RwLock<Option<LoggingLevel>>,
    /// Lists that changed after start-up, for notifications and streams.
    changes: broadcast::Sender<ListChange>,
    diagnosis: OnceLock<Arc<dyn Diagnose>>,
    /// Finds the values of injected secrets in requests.
    secrets: OnceLock<LiveRedactor>,
    /// The audit trail, when the catalog keeps one.
    audit: OnceLock<audit::Audit>,
    /// Calls from `2026-07-28` clients that wait for their input.
    rounds: Arc<rounds::Rounds>,
    /// Call counts and latencies, for `/metrics`.
    metrics: metrics::Metrics,
    /// Starts the instances of `scope: session` servers.
    instances: OnceLock<Arc<dyn Instances>>,
    /// The number the next client session gets.
    next_session: AtomicU64,
    /// Several client sessions (HTTP): a server's request cannot be tied
    /// to a handshake-era session.
    many_sessions: std::sync::atomic::AtomicBool,
}

/// What the runtime can say about a server that stopped answering: which of
/// its container's limits it is pressing against, say. The mux does not
/// know about containers; the runtime does.
pub trait Diagnose: Send + Sync + std::fmt::Debug + 'static {
    /// A short explanation for server `index`, if there is one.
    fn diagnose(&self, index: usize) -> Pin<Box<dyn Future<Output = Option<String>> + Send>>;
}

/// The client-facing MCP server, for one client session. Cheap to clone;
/// clones share state, and [`Mux::session`] makes one for another session.
#[derive(Debug, Clone)]
pub struct Mux {
    shared: Arc<Shared>,
    /// The session's own instances of `scope: session` servers, removed
    /// when the last clone is dropped.
    session: Arc<Session>,
}

/// The profile a client is bound to (its token's), which the HTTP front puts
/// in the request's extensions. Its catalog profile decides which tools the
/// client sees and may call.
#[derive(Debug, Clone)]
pub struct ClientProfile(pub String);

/// What one client may see.
enum View {
    All,
    /// The client's profile, by name, in the settings in force.
    Only(Arc<Settings>, String),
}

impl View {
    /// A profile is a view of tools only: prompts, resources and
    /// completions are hidden from its clients.
    fn tools_only(&self) -> bool {
        !matches!(self, Self::All)
    }

    /// The client's profile; `None` for a client that sees everything,
    /// and for one whose profile the catalog lacks (it sees nothing).
    fn profile(&self) -> Option<&mcpgw_catalog::Profile> {
        match self {
            Self::All => None,
            Self::Only(settings, name) => settings.profiles.get(name),
        }
    }

    fn permits(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(..) => self.profile().is_some_and(|p| p.permits(name)),
        }
    }
}

/// The runtime's handle for reporting backend state to the mux.
#[derive(Debug, Clone)]
pub struct Slots {
    shared: Arc<Shared>,
}

impl Mux {
    /// A mux for `catalog`'s servers, all starting.
    pub fn new(catalog: &Catalog) -> (Self, Slots) {
        let slots = boxcar::Vec::new();
        for spec in &catalog.servers {
            slots.push(Slot::new(spec, &catalog.gateway));
        }
        let at: Vec<usize> = (0..catalog.servers.len()).collect();
        let shared = Arc::new(Shared {
            separator: catalog.gateway.separator.as_str().to_string(),
            // Image checks and container creation come before the handshake.
            settle_timeout: catalog.gateway.init_timeout + Duration::from_secs(30),
            slots,
            settings: RwLock::new(Arc::new(Settings::new(catalog, &at, None))),
            reloading: std::sync::atomic::AtomicBool::new(false),
            table: RwLock::new(Arc::new(RoutingTable::default())),
            settled: watch::channel(false).0,
            sessions: Arc::default(),
            backend_subscriptions: parking_lot::Mutex::default(),
            updates: broadcast::channel(256).0,
            log_level: RwLock::new(None),
            changes: broadcast::channel(64).0,
            diagnosis: OnceLock::new(),
            secrets: OnceLock::new(),
            audit: OnceLock::new(),
            rounds: Arc::new(rounds::Rounds::new()),
            many_sessions: std::sync::atomic::AtomicBool::new(false),
            metrics: metrics::Metrics::default(),
            instances: OnceLock::new(),
            next_session: AtomicU64::new(1),
        });
        notify_handshake_clients(&shared);
        (
            Self {
                session: Arc::new(Session::new(0, &shared)),
                shared: shared.clone(),
            },
            Slots { shared },
        )
    }

    /// A mux for another client session: the same servers, but instances
    /// of its own of `scope: session` servers, removed when the last clone
    /// of it is dropped.
    #[must_use]
    pub fn session(&self) -> Self {
        let id = self.shared.next_session.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
            session: Arc::new(Session::new(id, &self.shared)),
        }
    }

    /// The current routing table, after start-up has settled.
    pub async fn table(&self) -> Arc<RoutingTable> {
        let mut settled = self.shared.settled.subscribe();
        let wait = settled.wait_for(|s| *s);
        if tokio::time::timeout(self.shared.settle_timeout, wait)
            .await
            .is_err()
        {
            tracing::warn!("some backends are still starting; listing those that are up");
        }
        self.shared.table.read().clone()
    }

    /// The routing table for a request, unless its client cancels it while
    /// start-up settles.
    async fn routing(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<Arc<RoutingTable>, ErrorData> {
        tokio::select! {
            table = self.table() => Ok(table),
            () = context.ct.cancelled() => Err(ErrorData::internal_error("the request was cancelled by the client", None)),
        }
    }

    /// Takes a reference on the backend subscription for `uri`,
    /// subscribing at the backend for the first one.
    async fn acquire(
        &self,
        uri: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let table = self.routing(context).await?;
        let index = table.resource(uri).ok_or_else(|| {
            ErrorData::resource_not_found(format!("no server offers resource `{uri}`"), None)
        })?;
        if self.shared.slots[index].per_session {
            return Err(ErrorData::invalid_params(
                format!(
                    "resource `{uri}` belongs to server `{}`, which has `scope: session`; subscriptions to its resources are not supported: read the resource instead",
                    self.shared.slots[index].name
                ),
                None,
            ));
        }
        let first = {
            let mut subs = self.shared.backend_subscriptions.lock();
            let entry = subs.entry(uri.to_string()).or_insert((index, 0));
            entry.1 += 1;
            entry.1 == 1
        };
        if first {
            let backend = self.awake_backend(index).await;
            let subscribed = match backend {
                Ok(backend) => backend.subscribe(uri).await.map_err(|e| {
                    ErrorData::internal_error(
                        format!(
                            "server `{}` refused to subscribe to `{uri}`: {e}",
                            self.shared.slots[index].name
                        ),
                        None,
                    )
                }),
                Err(e) => Err(e),
            };
            if let Err(err) = subscribed {
                self.shared.backend_subscriptions.lock().remove(uri);
                return Err(err);
            }
        }
        Ok(())
    }

    /// Drops a reference taken by [`Self::acquire`]; the last one
    /// unsubscribes at the backend.
    async fn release(&self, uri: &str) {
        self.shared.release(uri).await;
    }

    /// The servers that are down, with the reason each is.
    pub fn failures(&self) -> Vec<(ServerName, String)> {
        self.shared
            .slots
            .iter()
            .filter_map(|(_, slot)| match &*slot.state.borrow() {
                SlotState::Failed { reason, .. } => Some((slot.name.clone(), reason.to_string())),
                _ => None,
            })
            .collect()
    }

    /// What each server lists now, as lockfile pins (without the image),
    /// in catalog order; `None` for a server that never came up.
    pub fn current_pins(&self) -> Vec<(ServerName, Option<mcpgw_catalog::lock::ServerLock>)> {
        self.shared
            .slots
            .iter()
            .filter(|(_, slot)| !slot.is_retired())
            .map(|(_, slot)| {
                let state = slot.state.borrow();
                let pins = state
                    .inventory()
                    .map(|inventory| pin::current(&slot.policy().filter, inventory));
                (slot.name.clone(), pins)
            })
            .collect()
    }

    /// The tools the client of `context` may see and call: all without a
    /// profile; with one, only what it lists (nothing, for a profile the
    /// catalog lacks).
    fn view(&self, context: &RequestContext<RoleServer>) -> View {
        match profile(&context.extensions) {
            None => View::All,
            Some(name) => View::Only(self.shared.settings(), name.to_string()),
        }
    }

    /// How the client of `context` sees the tools: its profile's mode, else
    /// the gateway's.
    fn tool_mode(&self, context: &RequestContext<RoleServer>) -> mcpgw_catalog::ToolMode {
        let settings = self.shared.settings();
        let gateway = &settings.tool_view;
        profile(&context.extensions)
            .and_then(|name| settings.profiles.get(name))
            .map_or(gateway.mode, |p| p.mode(gateway))
    }

    /// Whether the client of `context` gets the exposed tool `name` listed
    /// directly in `search` mode: its profile's `pinned`, else the
    /// gateway's.
    fn listed_directly(&self, context: &RequestContext<RoleServer>, name: &str) -> bool {
        let settings = self.shared.settings();
        profile(&context.extensions)
            .and_then(|p| settings.profiles.get(p))
            .and_then(|p| p.pinned(name))
            .unwrap_or_else(|| settings.tool_view.pinned(name))
    }

    /// Adds the mux's metrics to `registry`: calls and their latency per
    /// server and tool, server failures, and which servers are up.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.shared.metrics.register(registry);
    }

    /// Brings the metrics that are read off the servers' states (whether
    /// each is up, its calls in flight and queued) up to date, before they
    /// are encoded.
    pub fn refresh_metrics(&self) {
        for (server, state) in self.readiness() {
            self.shared
                .metrics
                .set_up(&server, state == "ready" || state == "idle");
        }
        if let Some(results) = &self.shared.settings().results {
            self.shared.metrics.set_cache_bytes(results.bytes());
        }
        for (_, slot) in self.shared.slots.iter().filter(|(_, s)| !s.is_retired()) {
            let (in_flight, queued) = slot.policy().limit.load();
            self.shared
                .metrics
                .set_load(slot.name.as_str(), in_flight, queued);
        }
    }

    /// Declares that several client sessions share this mux (HTTP).
    pub fn serve_many_sessions(&self) {
        self.shared
            .many_sessions
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Each server's state, by name: `starting`, `ready`, `idle` (stopped
    /// while unused, started by the next call) or `failed`.
    pub fn readiness(&self) -> Vec<(String, &'static str)> {
        self.shared
            .slots
            .iter()
            .filter(|(_, slot)| !slot.is_retired())
            .map(|(_, slot)| {
                let state = match &*slot.state.borrow() {
                    SlotState::Starting | SlotState::Retired { .. } => "starting",
                    SlotState::Ready { .. } | SlotState::PerSession { .. } => "ready",
                    SlotState::Idle { .. } => "idle",
                    SlotState::Failed { .. } => "failed",
                };
                (slot.name.to_string(), state)
            })
            .collect()
    }
}

/// The profile of the client that sent a request with `extensions`
/// (HTTP, from its token), if it has one.
fn profile(extensions: &rmcp::model::Extensions) -> Option<&str> {
    extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<ClientProfile>())
        .map(|p| p.0.as_str())
}

impl Shared {
    /// The catalog-wide settings in force.
    fn settings(&self) -> Arc<Settings> {
        self.settings.read().clone()
    }

    /// The redactor in force for the run's secret values, once known.
    fn redactor(&self) -> Option<Redactor> {
        self.secrets.get().map(LiveRedactor::current)
    }

    /// Drops a reference on the backend subscription for `uri`; the last
    /// one unsubscribes at the backend.
    async fn release(&self, uri: &str) {
        let last = {
            let mut subs = self.backend_subscriptions.lock();
            match subs.get_mut(uri) {
                Some(entry) if entry.1 > 1 => {
                    entry.1 -= 1;
                    None
                }
                Some(_) => subs.remove(uri).map(|(index, _)| index),
                None => None,
            }
        };
        let backend = last.and_then(|index| match &*self.slots[index].state.borrow() {
            SlotState::Ready { backend, .. } => Some(backend.clone()),
            _ => None,
        });
        if let Some(backend) = backend {
            backend.unsubscribe(uri).await;
        }
    }

    /// Refuses a request that carries the value of a secret its server is
    /// not given: a client (or a prompt injection) must not move one
    /// server's credentials to another. Values are looked for behind JSON
    /// escapes too, and the check fails closed: a request it cannot read
    /// is refused, never forwarded unchecked.
    fn refuse_foreign_secrets(
        &self,
        slot: &Slot,
        what: &str,
        request: &impl serde::Serialize,
    ) -> Result<(), ErrorData> {
        let Some(redactor) = self.redactor() else {
            if self.slots.iter().all(|(_, s)| s.secrets.is_empty()) {
                return Ok(());
            }
            tracing::warn!(server = %slot.name, "refused {what}: the run's secret values are not known yet, so it could not be checked for them");
            return Err(ErrorData::internal_error(
                format!(
                    "{what} was refused: the gateway could not check it for secret values yet; try again"
                ),
                None,
            ));
        };
        if redactor.is_empty() {
            return Ok(());
        }
        let text = match serde_json::to_string(request) {
            Ok(text) => text,
            Err(err) => {
                tracing::warn!(server = %slot.name, "refused {what}: it could not be checked for secret values: {err}");
                return Err(ErrorData::invalid_params(
                    format!(
                        "{what} was refused: the gateway could not check it for secret values ({err}); send it as plain JSON"
                    ),
                    None,
                ));
            }
        };
        let Some(names) = Self::foreign_secrets(&redactor, slot, &text) else {
            return Ok(());
        };
        tracing::warn!(server = %slot.name, "refused {what}: it carries the value of secret {names}, which this server is not given");
        Err(ErrorData::invalid_params(
            format!(
                "{what} was refused: it carries the value of secret {names}, which server `{}` is not given",
                slot.name
            ),
            None,
        ))
    }

    /// The names of the secrets in `text` (as it reads once its JSON
    /// escapes are decoded) that `slot`'s server is not given, quoted and
    /// joined, if there are any.
    fn foreign_secrets(redactor: &Redactor, slot: &Slot, text: &str) -> Option<String> {
        let foreign: Vec<String> = redactor
            .found_decoded(text)
            .into_iter()
            .filter(|name| !slot.secrets.contains(*name))
            .map(|name| format!("`{name}`"))
            .collect();
        (!foreign.is_empty()).then(|| foreign.join(", "))
    }

    /// Whether several client sessions share this mux (HTTP).
    fn is_many_sessions(&self) -> bool {
        self.many_sessions.load(Ordering::Relaxed)
    }

    /// Whether `session`'s view includes server `index`: all of them
    /// without a profile; with one, those with a tool it lists.
    fn sees_server(&self, session: &Session, index: usize) -> bool {
        let Some(client) = session.client() else {
            return false;
        };
        let Some(name) = &client.profile else {
            return true;
        };
        let settings = self.settings();
        let Some(profile) = settings.profiles.get(name) else {
            return false;
        };
        let table = self.table.read().clone();
        table.tools().iter().any(|tool| {
            profile.permits(&tool.name)
                && matches!(table.tool(&tool.name), ToolLookup::Found(route) if route.server == index)
        })
    }
}

#[cfg(test)]
mod tests;
