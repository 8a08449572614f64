//! The multiplexer: one MCP server, facing the client, in front of many
//! backend sessions.
//!
//! [`Mux`] implements rmcp's `ServerHandler`: it merges the lists of every
//! backend that is up, routes each call, prompt and resource read to the
//! backend that owns it (through the pure [`router`]), and refuses what the
//! catalog's filters hide before any backend sees it. [`Slots`] is the
//! runtime's side: it reports backends coming up and going down.
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

mod changes;
mod metrics;
mod paging;
mod relay;
mod rounds;
pub mod router;
mod session;

pub use paging::PAGE_SIZE;
pub use session::Instances;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use mcpgw_backend::{Backend, Deadline, Inventory, OnBehalf, Relay};
use mcpgw_catalog::{Catalog, Concurrency, Scope, ServerName, ToolFilter};
use mcpgw_secrets::Redactor;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest,
    CompleteRequest, CompleteRequestParams, CompleteResult, GetPromptRequest,
    GetPromptRequestParams, GetPromptResponse, Implementation, InputResponses, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse, Reference,
    ResourceTemplate, ServerCapabilities, ServerConfig, ServerResult,
};
use rmcp::model::{
    LoggingLevel, ResultType, SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, RoleServer, ServiceError, SubscriptionContext};
use rmcp::{ErrorData, ServerHandler};
use tokio::sync::{Notify, Semaphore, SemaphorePermit, broadcast, watch};

use crate::changes::{ListChange, next_change, notify_handshake_clients};
use crate::paging::page;
use crate::relay::{ClientRelay, ProgressRelay, next_report};
use crate::router::{RoutingTable, ServerEntry, ToolLookup};
use crate::session::{Instance, Session, Sessions};

/// The state of one catalog server, as the mux sees it. There is one per
/// catalog server, so the size of the `Ready` variant does not matter.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
enum SlotState {
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
}

impl SlotState {
    fn inventory(&self) -> Option<&Inventory> {
        match self {
            Self::Ready { inventory, .. } => Some(inventory),
            Self::Failed { last, .. } => last.as_deref(),
            Self::Idle { last } => Some(last),
            Self::PerSession { inventory } => Some(inventory),
            Self::Starting => None,
        }
    }
}

#[derive(Debug)]
struct Slot {
    name: ServerName,
    filter: ToolFilter,
    state: watch::Sender<SlotState>,
    limit: Arc<Limit>,
    /// Each client session gets its own instance (`scope: session`),
    /// bounded by a fresh copy of `limit`.
    per_session: bool,
    deadline: Deadline,
    /// When a call last finished or started here.
    last_used: parking_lot::Mutex<Instant>,
    /// Asks the runtime to start an idle server.
    wake: Notify,
    /// How long a stopped server may take to come back for a call.
    wake_timeout: Duration,
    /// The secrets the catalog gives this server, by name.
    secrets: std::collections::BTreeSet<String>,
    /// Which requests for input the catalog lets this server make.
    relays: mcpgw_backend::Relays,
}

/// Bounded admission to one backend: `in_flight` calls at once, `queue`
/// more waiting; beyond that a call is refused at once.
#[derive(Debug)]
struct Limit {
    permits: Semaphore,
    waiting: AtomicUsize,
    in_flight: usize,
    queue: usize,
}

impl Limit {
    fn new(concurrency: Concurrency) -> Self {
        Self {
            permits: Semaphore::new(concurrency.in_flight),
            waiting: AtomicUsize::new(0),
            in_flight: concurrency.in_flight,
            queue: concurrency.queue,
        }
    }

    /// A limit with the same bounds and nothing admitted.
    fn fresh(&self) -> Self {
        Self::new(Concurrency {
            in_flight: self.in_flight,
            queue: self.queue,
        })
    }

    async fn admit(&self) -> Option<SemaphorePermit<'_>> {
        if let Ok(permit) = self.permits.try_acquire() {
            return Some(permit);
        }
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        if ahead >= self.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        tracing::debug!(
            "call queued, {ahead} ahead of it, {} in flight",
            self.in_flight
        );
        let permit = self.permits.acquire().await.ok();
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit
    }
}

#[derive(Debug)]
struct Shared {
    separator: String,
    settle_timeout: Duration,
    slots: Vec<Slot>,
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
    secrets: OnceLock<Redactor>,
    /// Calls from `2026-07-28` clients that wait for their input.
    rounds: Arc<rounds::Rounds>,
    /// Call counts and latencies, for `/metrics`.
    metrics: metrics::Metrics,
    /// Starts the instances of `scope: session` servers.
    instances: OnceLock<Arc<dyn Instances>>,
    /// The number the next client session gets.
    next_session: AtomicU64,
    /// Client views, by profile name.
    profiles: std::collections::BTreeMap<String, mcpgw_catalog::Profile>,
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
enum View<'a> {
    All,
    Only(Option<&'a mcpgw_catalog::Profile>),
}

impl View<'_> {
    /// A profile is a view of tools only: prompts, resources and
    /// completions are hidden from its clients.
    fn tools_only(&self) -> bool {
        !matches!(self, Self::All)
    }

    fn permits(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(profile) => profile.is_some_and(|p| p.permits(name)),
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
        let slots = catalog
            .servers
            .iter()
            .map(|s| Slot {
                name: s.name.clone(),
                filter: s.tools.clone(),
                state: watch::channel(SlotState::Starting).0,
                limit: Arc::new(Limit::new(s.concurrency)),
                per_session: s.scope == Scope::Session,
                deadline: Deadline {
                    idle: s.call_timeout.unwrap_or(catalog.gateway.call_timeout),
                    max_total: catalog.gateway.max_call_timeout,
                },
                last_used: parking_lot::Mutex::new(Instant::now()),
                wake: Notify::new(),
                wake_timeout: catalog.gateway.init_timeout + Duration::from_secs(30),
                secrets: s.secrets.values().map(|r| r.name.to_string()).collect(),
                relays: mcpgw_backend::Relays {
                    sampling: s.relay.sampling,
                    elicitation: s.relay.elicitation,
                    roots: s.relay.roots,
                },
            })
            .collect();
        let shared = Arc::new(Shared {
            separator: catalog.gateway.separator.as_str().to_string(),
            // Image checks and container creation come before the handshake.
            settle_timeout: catalog.gateway.init_timeout + Duration::from_secs(30),
            slots,
            table: RwLock::new(Arc::new(RoutingTable::default())),
            settled: watch::channel(false).0,
            sessions: Arc::default(),
            backend_subscriptions: parking_lot::Mutex::default(),
            updates: broadcast::channel(256).0,
            log_level: RwLock::new(None),
            changes: broadcast::channel(64).0,
            diagnosis: OnceLock::new(),
            secrets: OnceLock::new(),
            rounds: Arc::new(rounds::Rounds::new()),
            many_sessions: std::sync::atomic::AtomicBool::new(false),
            profiles: catalog.profiles.clone(),
            metrics: metrics::Metrics::default(),
            instances: OnceLock::new(),
            next_session: AtomicU64::new(1),
        });
        notify_handshake_clients(&shared);
        (
            Self {
                session: Arc::new(Session::new(0, shared.slots.len(), &shared)),
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
            session: Arc::new(Session::new(id, self.shared.slots.len(), &self.shared)),
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
            .filter_map(|slot| match &*slot.state.borrow() {
                SlotState::Failed { reason, .. } => Some((slot.name.clone(), reason.to_string())),
                _ => None,
            })
            .collect()
    }

    /// The tools the client of `context` may see and call: all without a
    /// profile; with one, only what it lists (nothing, for a profile the
    /// catalog lacks).
    fn view(&self, context: &RequestContext<RoleServer>) -> View<'_> {
        match profile(&context.extensions) {
            None => View::All,
            Some(name) => View::Only(self.shared.profiles.get(name)),
        }
    }

    /// The mux's counters in the Prometheus text format: calls and their
    /// latency per server and tool, server failures, and which servers
    /// are up.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        self.shared.metrics.render(&mut out);
        out.push_str("# HELP mcpgw_server_up Whether a server is up, or idle and ready to start.\n# TYPE mcpgw_server_up gauge\n");
        for (server, state) in self.readiness() {
            let up = u8::from(state == "ready" || state == "idle");
            out.push_str(&format!("mcpgw_server_up{{server=\"{server}\"}} {up}\n"));
        }
        out
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
            .map(|slot| {
                let state = match &*slot.state.borrow() {
                    SlotState::Starting => "starting",
                    SlotState::Ready { .. } | SlotState::PerSession { .. } => "ready",
                    SlotState::Idle { .. } => "idle",
                    SlotState::Failed { .. } => "failed",
                };
                (slot.name.to_string(), state)
            })
            .collect()
    }

    fn backend(&self, index: usize) -> Result<Backend, ErrorData> {
        let slot = &self.shared.slots[index];
        match &*slot.state.borrow() {
            SlotState::Ready { backend, .. } if !backend.is_closed() => Ok(backend.clone()),
            SlotState::Ready { .. } => Err(unavailable(&slot.name, "its session has ended")),
            SlotState::Starting => Err(unavailable(&slot.name, "it is still starting")),
            SlotState::Failed { reason, .. } => Err(unavailable(&slot.name, reason)),
            SlotState::Idle { .. } => Err(unavailable(&slot.name, "it is stopped while unused")),
            SlotState::PerSession { .. } => Err(unavailable(
                &slot.name,
                "it runs one instance per client session",
            )),
        }
    }

    /// Where a request for server `index` goes: the shared backend (woken
    /// if idle), or, for `scope: session`, this session's own instance.
    async fn target(
        &self,
        index: usize,
        context: &RequestContext<RoleServer>,
    ) -> Result<Instance, ErrorData> {
        let slot = &self.shared.slots[index];
        if !slot.per_session {
            return Ok(Instance {
                backend: self.awake_backend(index).await?,
                limit: slot.limit.clone(),
            });
        }
        if !matches!(*slot.state.borrow(), SlotState::PerSession { .. }) {
            self.backend(index)?;
        }
        let stateless = !context
            .peer
            .peer_info()
            .is_some_and(|info| info.protocol_version.has_initialize());
        if stateless && self.shared.many_sessions.load(Ordering::Relaxed) {
            return Err(unavailable(
                &slot.name,
                "it has `scope: session`, a container per client session, and a `2026-07-28` request over HTTP belongs to no session; connect with a session (protocol 2025-11-25 or earlier), or use stdio",
            ));
        }
        self.session
            .instance(index, |ended| {
                // Only when this session has no instance running.
                let instances = self.shared.instances.get().cloned();
                let relay: Arc<dyn Relay> = Arc::new(ClientRelay {
                    shared: Arc::downgrade(&self.shared),
                    server: slot.name.clone(),
                    index,
                    session: Some(Arc::downgrade(&self.session)),
                });
                let session = self.session.id;
                let level = *self.session.log_level.lock();
                let limit = Arc::new(slot.limit.fresh());
                async move {
                    let instances =
                        instances.ok_or("this gateway cannot start per-session instances")?;
                    let backend = instances.start(index, session, relay, ended).await?;
                    if let Some(level) = level {
                        backend.set_level(level).await;
                    }
                    Ok(Instance { backend, limit })
                }
            })
            .await
            .map_err(|reason| {
                unavailable(
                    &slot.name,
                    &format!("its instance for this session did not start: {reason}"),
                )
            })
    }

    /// The backend of server `index`, starting it first if it is idle.
    async fn awake_backend(&self, index: usize) -> Result<Backend, ErrorData> {
        let slot = &self.shared.slots[index];
        if matches!(*slot.state.borrow(), SlotState::Idle { .. }) {
            tracing::info!(server = %slot.name, "starting an idle on-demand server for a call");
            slot.wake.notify_one();
            let mut state = slot.state.subscribe();
            let woken =
                state.wait_for(|s| matches!(s, SlotState::Ready { .. } | SlotState::Failed { .. }));
            let _ = tokio::time::timeout(slot.wake_timeout, woken).await;
        }
        self.backend(index)
    }

    /// Forwards `request` to server `index`: admitted within the server's
    /// concurrency bounds, bounded by its deadline, and, if the backend dies
    /// meanwhile, answered with why it died.
    async fn forward(
        &self,
        index: usize,
        what: &str,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let slot = &self.shared.slots[index];
        self.shared.refuse_foreign_secrets(slot, what, &request)?;
        let Instance { backend, limit } = self.target(index, context).await?;
        let _activity = Activity::begin(slot);
        let Some(_permit) = limit.admit().await else {
            return Err(busy(slot, &limit));
        };
        // What the server says meanwhile (log messages) goes to the
        // sessions whose requests are in flight there.
        let _busy = self.session.busy_at(index);
        // A request the client cancelled while it waited (for start-up, an
        // idle server or a place in the queue) is never sent.
        if context.ct.is_cancelled() {
            return Err(ErrorData::internal_error(
                format!("{what} was cancelled by the client"),
                None,
            ));
        }
        // Progress is relayed here, between the request and its answer, so
        // that reports the backend sent before answering reach the client
        // before the answer does.
        let mut progress = context
            .meta
            .get_progress_token()
            .map(|token| ProgressRelay::new(context.peer.clone(), token, self.session.clone()));
        let sender = progress.as_ref().map(ProgressRelay::sender);
        // Only a `2026-07-28` backend is told whom a request is for.
        let on_behalf = (!backend.protocol().has_initialize()).then(|| self.on_behalf(context));
        let request = backend.request(request, slot.deadline, sender, on_behalf.as_ref());
        tokio::pin!(request);
        let outcome = loop {
            tokio::select! {
                outcome = &mut request => break outcome,
                Some(report) = next_report(progress.as_mut()) => {
                    if let Some(relay) = progress.as_mut() {
                        relay.send(report).await;
                    }
                }
                // The client cancelled: dropping the request cancels it at
                // the backend too. rmcp sends the client no response.
                () = context.ct.cancelled() => {
                    return Err(ErrorData::internal_error(format!("{what} was cancelled by the client"), None));
                }
            }
        };
        if let Some(relay) = progress.as_mut() {
            relay.drain().await;
        }
        match outcome {
            Ok(result) => Ok(result),
            Err(err) => Err(self.call_failure(index, what, Some(&backend), err).await),
        }
    }

    /// What the client is told when forwarding `what` to server `index`
    /// failed with `err`. `backend` is the one that failed, needed only for
    /// a `scope: session` server's instance.
    async fn call_failure(
        &self,
        index: usize,
        what: &str,
        backend: Option<&Backend>,
        err: ServiceError,
    ) -> ErrorData {
        let slot = &self.shared.slots[index];
        match err {
            ServiceError::McpError(e) => e,
            ServiceError::Timeout { timeout } => {
                let hint = match self.shared.diagnosis.get() {
                    Some(d) => d.diagnose(index).await,
                    None => None,
                };
                let hint = hint.map_or_else(String::new, |h| format!("; its container is {h}"));
                ErrorData::internal_error(
                    format!(
                        "server `{}` did not answer {what} within {timeout:?}; the request was cancelled at the server{hint}",
                        slot.name
                    ),
                    None,
                )
            }
            ServiceError::TransportClosed | ServiceError::TransportSend(_) if slot.per_session => {
                let reason = backend
                    .and_then(Backend::end_reason)
                    .unwrap_or_else(|| "its session ended".to_string());
                ErrorData::internal_error(
                    format!(
                        "server `{}` (this session's instance) failed during {what}: {reason}; the next request starts a new one",
                        slot.name
                    ),
                    None,
                )
            }
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                self.failure_during_call(index, what).await
            }
            other => ErrorData::internal_error(
                format!("server `{}`: {what} failed: {other}", slot.name),
                None,
            ),
        }
    }

    /// Takes a `requestState` the gateway issued (and its responses) out of
    /// a request; a backend's own state stays, for the backend.
    fn ours(
        &self,
        state: &mut Option<String>,
        responses: &mut Option<InputResponses>,
    ) -> Option<(String, Option<InputResponses>)> {
        if state
            .as_deref()
            .is_some_and(|s| self.shared.rounds.is_ours(s))
        {
            Some((state.take()?, responses.take()))
        } else {
            None
        }
    }

    /// Forwards a request that may need client input (`tools/call`,
    /// `prompts/get`, `resources/read`). A handshake-era client is asked
    /// directly: during the call for a backend's request, and between
    /// rounds when a `2026-07-28` backend answers `InputRequiredResult`
    /// (`bridge`). For a `2026-07-28` client the call runs on, and a
    /// backend's request for input ends this round with an
    /// `InputRequiredResult` that `resume` (the client's `requestState`
    /// and responses) picks up.
    async fn forward_rounds(
        &self,
        index: usize,
        what: &str,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
        resume: Option<(String, Option<InputResponses>)>,
    ) -> Result<ServerResult, ErrorData> {
        let handshake = relay::is_handshake(&context.peer);
        if handshake && resume.is_none() {
            // Only a `2026-07-28` server answers with `InputRequiredResult`;
            // the request is kept for the retry only when one may.
            let retry = self.may_require_input(index).then(|| request.clone());
            let result = if self.shared.is_many_sessions() {
                // Over HTTP the call is registered with its client, so that
                // a server's request reaches the one call it can belong to.
                self.run_round(index, what, request, context, None).await
            } else {
                self.forward(index, what, request, context).await
            };
            return match retry {
                Some(request) => self.bridge(index, what, request, result, context).await,
                None => result,
            };
        }
        self.run_round(index, what, request, context, resume).await
    }

    /// Whether server `index` may answer with `InputRequiredResult`: its
    /// shared backend speaks `2026-07-28`, or its instances may.
    fn may_require_input(&self, index: usize) -> bool {
        match &*self.shared.slots[index].state.borrow() {
            SlotState::Ready { backend, .. } => !backend.protocol().has_initialize(),
            _ => true,
        }
    }

    /// Runs a call through the rounds: started (registered with the
    /// rounds, so the backend's requests find it) or resumed.
    async fn run_round(
        &self,
        index: usize,
        what: &str,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
        resume: Option<(String, Option<InputResponses>)>,
    ) -> Result<ServerResult, ErrorData> {
        let rounds = &self.shared.rounds;
        let binding = rounds::binding(index, what);
        let ttl = self.shared.slots[index].deadline.max_total;
        let call = match resume {
            Some((state, responses)) => {
                if let Some(responses) = &responses {
                    let slot = &self.shared.slots[index];
                    self.shared.refuse_foreign_secrets(slot, what, responses)?;
                }
                rounds.resume(&state, &binding, responses.as_ref())?
            }
            None => {
                let mux = self.clone();
                let mut detached = context.clone();
                // The call outlives this request; dropping it cancels it.
                detached.ct = tokio_util::sync::CancellationToken::new();
                let what = what.to_string();
                let (capabilities, client) = if relay::is_handshake(&context.peer) {
                    (
                        Default::default(),
                        Some((context.peer.clone(), context.id.clone())),
                    )
                } else {
                    (context.meta.client_capabilities().unwrap_or_default(), None)
                };
                rounds.start(index, capabilities, client, async move {
                    mux.forward(index, &what, request, &detached).await
                })
            }
        };
        tokio::select! {
            result = rounds.run(call, &binding, ttl) => result,
            () = context.ct.cancelled() => Err(ErrorData::internal_error(
                format!("{what} was cancelled by the client"),
                None,
            )),
        }
    }

    /// A handshake-era client's call that a `2026-07-28` backend answered
    /// with `InputRequiredResult`: the gateway asks the client for each
    /// input (as the catalog's `relay` allows, and the client declared),
    /// and retries the backend's request with the responses, until the
    /// backend answers for good. The client sees one ordinary call.
    async fn bridge(
        &self,
        index: usize,
        what: &str,
        request: ClientRequest,
        mut result: Result<ServerResult, ErrorData>,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let slot = &self.shared.slots[index];
        for _ in 0..MAX_BRIDGED_ROUNDS {
            let Ok(ServerResult::InputRequiredResult(input)) = &result else {
                return result;
            };
            let mut responses = InputResponses::new();
            for (key, asked) in input.input_requests.iter().flatten() {
                let (kind, supports) = relay::needs(asked);
                let allowed = match kind {
                    "sampling" => slot.relays.sampling,
                    "elicitation" => slot.relays.elicitation,
                    _ => slot.relays.roots,
                };
                if !allowed {
                    return Err(ErrorData::invalid_request(
                        format!(
                            "server `{}` asked for {kind} during {what}, which is not enabled for it: the gateway's catalog sets `relay` for it",
                            slot.name
                        ),
                        None,
                    ));
                }
                let asking = format!("{kind} from server `{}`", slot.name);
                let asked =
                    relay::ask_client(&context.peer, None, &asking, supports, asked.clone());
                let answer = tokio::select! {
                    answer = asked => answer?,
                    () = context.ct.cancelled() => return Err(ErrorData::internal_error(
                        format!("{what} was cancelled by the client"),
                        None,
                    )),
                };
                self.shared.refuse_foreign_secrets(
                    slot,
                    &format!("the client's answer to {asking}"),
                    &answer,
                )?;
                responses.insert(key.clone(), answer);
            }
            let retry = with_input(&request, input.request_state.clone(), responses)
                .ok_or_else(|| unexpected(&slot.name, what))?;
            result = self.forward(index, what, retry, context).await;
        }
        Err(ErrorData::internal_error(
            format!(
                "server `{}` asked for input more than {MAX_BRIDGED_ROUNDS} times during {what}; the gateway gave up",
                slot.name
            ),
            None,
        ))
    }

    /// The backend's session ended under a call: wait briefly for the
    /// runtime's report (exit code, OOM, stderr) and pass it on.
    async fn failure_during_call(&self, index: usize, what: &str) -> ErrorData {
        let slot = &self.shared.slots[index];
        let mut state = slot.state.subscribe();
        let reported = tokio::time::timeout(
            FAILURE_REPORT_WAIT,
            state.wait_for(|s| matches!(s, SlotState::Failed { .. })),
        )
        .await;
        let reason = match reported {
            Ok(Ok(state)) => match &*state {
                SlotState::Failed { reason, .. } => reason.to_string(),
                _ => String::new(),
            },
            _ => "its session ended".to_string(),
        };
        ErrorData::internal_error(
            format!("server `{}` failed during {what}: {reason}", slot.name),
            None,
        )
    }

    /// What server `index` answered to tools/call, as a tool call's response.
    fn tool_response(
        &self,
        index: usize,
        what: &str,
        result: ServerResult,
    ) -> Result<CallToolResponse, ErrorData> {
        match result {
            ServerResult::CallToolResult(mut result) => {
                complete(&mut result.result_type);
                Ok(CallToolResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(CallToolResponse::InputRequired(result))
            }
            ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
            // A tool result with nothing in it can arrive as an empty result.
            ServerResult::EmptyResult(_) => Ok(CallToolResponse::Complete(
                CallToolResult::success(Vec::new()),
            )),
            _ => Err(unexpected(&self.shared.slots[index].name, what)),
        }
    }

    /// Learns the session's client from a request, and the log level a
    /// `2026-07-28` request asks for (that protocol names one per request).
    fn remember_client(&self, context: &RequestContext<RoleServer>) {
        self.session
            .remember(&context.peer, profile(&context.extensions));
        if let Some(level) = context.meta.log_level() {
            *self.session.log_level.lock() = Some(level);
        }
    }

    /// Whom a request to server `index` is forwarded for, as a
    /// `2026-07-28` backend is told.
    fn on_behalf(&self, context: &RequestContext<RoleServer>) -> OnBehalf {
        let capabilities = match context.peer.peer_info() {
            Some(info) if info.protocol_version.has_initialize() => info.capabilities.clone(),
            _ => context.meta.client_capabilities().unwrap_or_default(),
        };
        OnBehalf {
            capabilities,
            log_level: *self.session.log_level.lock(),
        }
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
    /// server's credentials to another.
    fn refuse_foreign_secrets(
        &self,
        slot: &Slot,
        what: &str,
        request: &impl serde::Serialize,
    ) -> Result<(), ErrorData> {
        if !self.carries_secrets() {
            return Ok(());
        }
        let text = serde_json::to_string(request).unwrap_or_default();
        let Some(names) = self.foreign_secrets(slot, &text) else {
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

    /// Whether any secret is injected in this run (and requests must be
    /// checked for values).
    fn carries_secrets(&self) -> bool {
        self.secrets.get().is_some_and(|r| !r.is_empty())
    }

    /// The names of the secrets in `text` that `slot`'s server is not
    /// given, quoted and joined, if there are any.
    fn foreign_secrets(&self, slot: &Slot, text: &str) -> Option<String> {
        let redactor = self.secrets.get()?;
        let foreign: Vec<String> = redactor
            .found(text)
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
        let Some(profile) = self.profiles.get(name) else {
            return false;
        };
        let table = self.table.read().clone();
        table.tools().iter().any(|tool| {
            profile.permits(&tool.name)
                && matches!(table.tool(&tool.name), ToolLookup::Found(route) if route.server == index)
        })
    }
}

impl Slots {
    /// Server `index` is up, offering `inventory`.
    pub fn ready(&self, index: usize, backend: Backend, inventory: Inventory) {
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
    /// carries one to a server not given it is refused. Set once.
    pub fn set_secrets(&self, redactor: Redactor) {
        let _ = self.shared.secrets.set(redactor);
    }

    /// Server `index` is down, for `reason` (shown to clients that call it).
    pub fn failed(&self, index: usize, reason: &str) {
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
        let busy = slot.limit.permits.available_permits() < slot.limit.in_flight
            || slot.limit.waiting.load(Ordering::Acquire) > 0;
        if busy {
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
            .filter_map(|slot| match &*slot.state.borrow() {
                SlotState::Ready { backend, .. } => Some(backend.clone()),
                _ => None,
            })
            .collect()
    }

    fn set(&self, index: usize, state: SlotState) {
        // Change, rebuild and publish under the table's lock: two backends
        // reporting at once must not publish their tables out of order.
        let mut table = self.shared.table.write();
        self.shared.slots[index].state.send_replace(state);
        let rebuilt = Arc::new(self.rebuild());
        let change = ListChange::between(&table, &rebuilt);
        *table = rebuilt;
        drop(table);
        let all_settled = self
            .shared
            .slots
            .iter()
            .all(|s| !matches!(*s.state.borrow(), SlotState::Starting));
        let was_settled = *self.shared.settled.borrow();
        if all_settled && !was_settled {
            self.shared.settled.send_replace(true);
        } else if was_settled && change.any() {
            // Lists changed after clients may have read them.
            let _ = self.shared.changes.send(change);
        }
    }

    fn rebuild(&self) -> RoutingTable {
        let states: Vec<SlotState> = self
            .shared
            .slots
            .iter()
            .map(|s| s.state.borrow().clone())
            .collect();
        let entries: Vec<ServerEntry<'_>> = self
            .shared
            .slots
            .iter()
            .zip(&states)
            .map(|(slot, state)| ServerEntry {
                name: slot.name.as_str(),
                filter: &slot.filter,
                inventory: state.inventory(),
            })
            .collect();
        RoutingTable::build(&self.shared.separator, &entries)
    }
}

/// The answer to a call that finds `limit` full.
fn busy(slot: &Slot, limit: &Limit) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "server `{}` is busy: {} calls in flight and {} waiting, its limits; try again shortly",
            slot.name, limit.in_flight, limit.queue
        ),
        None,
    )
}

fn unavailable(server: &ServerName, reason: &str) -> ErrorData {
    ErrorData::internal_error(
        format!("server `{server}` is not available: {reason}"),
        None,
    )
}

/// A handshake-era backend's results carry no `resultType`; a `2026-07-28`
/// client requires one. rmcp removes it again for handshake-era clients.
fn complete(result_type: &mut Option<ResultType>) {
    result_type.get_or_insert(ResultType::COMPLETE);
}

/// How errors (and round bindings) name a call of tool `name`.
fn tool_call(name: &str) -> String {
    format!("tools/call `{name}`")
}

fn unexpected(server: &ServerName, what: &str) -> ErrorData {
    ErrorData::internal_error(
        format!("server `{server}` answered {what} with a result of the wrong kind"),
        None,
    )
}

/// Marks a slot used when a call starts and again when it ends.
struct Activity<'a>(&'a Slot);

impl<'a> Activity<'a> {
    fn begin(slot: &'a Slot) -> Self {
        *slot.last_used.lock() = Instant::now();
        Self(slot)
    }
}

impl Drop for Activity<'_> {
    fn drop(&mut self) {
        *self.0.last_used.lock() = Instant::now();
    }
}

/// How many times a handshake-era client's call may be asked for input by
/// a `2026-07-28` backend before the gateway gives up.
const MAX_BRIDGED_ROUNDS: usize = 16;

/// `request` retried with the client's input: the backend's `state` and
/// the `responses`. `None` for a request that takes no input.
fn with_input(
    request: &ClientRequest,
    state: Option<String>,
    responses: InputResponses,
) -> Option<ClientRequest> {
    let mut retry = request.clone();
    let (request_state, input_responses) = match &mut retry {
        ClientRequest::CallToolRequest(r) => {
            (&mut r.params.request_state, &mut r.params.input_responses)
        }
        ClientRequest::GetPromptRequest(r) => {
            (&mut r.params.request_state, &mut r.params.input_responses)
        }
        ClientRequest::ReadResourceRequest(r) => {
            (&mut r.params.request_state, &mut r.params.input_responses)
        }
        _ => return None,
    };
    *request_state = state;
    *input_responses = Some(responses);
    Some(retry)
}

/// How long a call whose backend died waits for the report of why.
const FAILURE_REPORT_WAIT: Duration = Duration::from_millis(1500);

impl ServerHandler for Mux {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .enable_resources_subscribe()
                .enable_completions()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("mcpgw", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "mcpgw gateway: tools and prompts are named <server>__<name>; each server runs in its own container.",
        )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.remember_client(&context);
        let table = self.table().await;
        let visible: Vec<_>;
        let tools = match self.view(&context) {
            View::All => table.tools(),
            view => {
                visible = table
                    .tools()
                    .iter()
                    .filter(|t| view.permits(&t.name))
                    .cloned()
                    .collect();
                &visible
            }
        };
        let (page, next) = page(tools, request.as_ref())?;
        let mut result = ListToolsResult::with_all_items(page);
        result.next_cursor = next;
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.remember_client(&context);
        let table = self.routing(&context).await?;
        // Outside the client's view, a tool does not exist.
        if !self.view(&context).permits(&request.name) {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        }
        let route = match table.tool(&request.name) {
            ToolLookup::Found(route) => route.clone(),
            ToolLookup::Hidden { server } => {
                let server = &self.shared.slots[server].name;
                return Err(ErrorData::invalid_params(
                    format!(
                        "tool `{}` is not allowed: the catalog's `servers.{server}.tools` hides it",
                        request.name
                    ),
                    None,
                ));
            }
            ToolLookup::Unknown => {
                // A server that never came up has no tools in the table;
                // a name in its namespace gets its reason, not "unknown".
                let separator = &self.shared.separator;
                if let Some(index) = self
                    .shared
                    .slots
                    .iter()
                    .position(|s| request.name.starts_with(&format!("{}{separator}", s.name)))
                    && !matches!(
                        *self.shared.slots[index].state.borrow(),
                        SlotState::Ready { .. }
                    )
                {
                    self.backend(index)?;
                }
                return Err(ErrorData::invalid_params(
                    format!("unknown tool `{}`", request.name),
                    None,
                ));
            }
        };
        let mut upstream = request;
        let what = tool_call(&upstream.name);
        upstream.meta = None;
        upstream.name = route.upstream.to_string().into();
        let resume = self.ours(&mut upstream.request_state, &mut upstream.input_responses);
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(upstream));
        let began = Instant::now();
        // Boxed, here and in the other handlers: rmcp moves each request's
        // handler future into a task of its own, and an unboxed forward
        // would make every one of them kilobytes to copy.
        let outcome =
            Box::pin(self.forward_rounds(route.server, &what, request, &context, resume)).await;
        let ok = match &outcome {
            Ok(ServerResult::CallToolResult(result)) => result.is_error != Some(true),
            Ok(_) => true,
            Err(_) => false,
        };
        self.shared.metrics.call(
            self.shared.slots[route.server].name.as_str(),
            &route.upstream,
            ok,
            began.elapsed(),
        );
        self.tool_response(route.server, &what, outcome?)
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.remember_client(&context);
        let table = self.table().await;
        let prompts = if self.view(&context).tools_only() {
            &[]
        } else {
            table.prompts()
        };
        let (page, next) = page(prompts, request.as_ref())?;
        let mut result = ListPromptsResult::with_all_items(page);
        result.next_cursor = next;
        Ok(result)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.remember_client(&context);
        let table = self.routing(&context).await?;
        let visible = !self.view(&context).tools_only();
        let route = table
            .prompt(&request.name)
            .filter(|_| visible)
            .cloned()
            .ok_or_else(|| {
                ErrorData::invalid_params(format!("unknown prompt `{}`", request.name), None)
            })?;
        let mut upstream = request;
        let what = format!("prompts/get `{}`", upstream.name);
        upstream.meta = None;
        upstream.name = route.upstream.to_string();
        let resume = self.ours(&mut upstream.request_state, &mut upstream.input_responses);
        let request = ClientRequest::GetPromptRequest(GetPromptRequest::new(upstream));
        match Box::pin(self.forward_rounds(route.server, &what, request, &context, resume)).await? {
            ServerResult::GetPromptResult(mut result) => {
                complete(&mut result.result_type);
                Ok(GetPromptResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(GetPromptResponse::InputRequired(result))
            }
            _ => Err(unexpected(&self.shared.slots[route.server].name, &what)),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.remember_client(&context);
        let table = self.table().await;
        let resources = if self.view(&context).tools_only() {
            &[]
        } else {
            table.resources()
        };
        let (page, next) = page(resources, request.as_ref())?;
        let mut result = ListResourcesResult::with_all_items(page);
        result.next_cursor = next;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let table = self.table().await;
        let templates: Vec<ResourceTemplate> = if self.view(&context).tools_only() {
            Vec::new()
        } else {
            table.resource_templates().cloned().collect()
        };
        let (page, next) = page(&templates, request.as_ref())?;
        let mut result = ListResourceTemplatesResult::with_all_items(page);
        result.next_cursor = next;
        Ok(result)
    }

    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        // A handshake-era client is known from here on: server-to-client
        // requests and notifications need it.
        self.session
            .remember(&context.peer, profile(&context.extensions));
    }

    /// `logging/setLevel`: remembered for the session (messages below it
    /// are not relayed to it); backends, shared by the sessions, are set
    /// to the lowest level any session asked for, now and when they come
    /// up later.
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.remember_client(&context);
        *self.session.log_level.lock() = Some(request.level);
        let lowest = self
            .shared
            .sessions
            .all()
            .iter()
            .filter_map(|s| *s.log_level.lock())
            .chain([request.level])
            .min_by_key(|level| relay::severity(*level))
            .unwrap_or(request.level);
        *self.shared.log_level.write() = Some(lowest);
        let backends: Vec<Backend> = self
            .shared
            .slots
            .iter()
            .filter_map(|slot| match &*slot.state.borrow() {
                SlotState::Ready { backend, .. } => Some(backend.clone()),
                _ => None,
            })
            .chain(self.session.running())
            .collect();
        for backend in backends {
            backend.set_level(lowest).await;
        }
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // Resources are accepted when a server routes them; the table may
        // still be settling, in which case the stream starts without them.
        let table = self.shared.table.read().clone();
        let routable = requested
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| table.resource(uri).is_some())
            .cloned()
            .collect::<Vec<_>>();
        let offered = SubscriptionFilter::builder()
            .tools_list_changed()
            .prompts_list_changed()
            .resources_list_changed()
            .resource_subscriptions(routable)
            .build();
        Some(requested.intersection(&offered))
    }

    /// `resources/subscribe` (handshake era): one backend subscription per
    /// URI however many sessions ask, updates sent to the sessions that
    /// asked. A profile, a view of tools only, has no resources.
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.remember_client(&context);
        if self.view(&context).tools_only() {
            return Err(ErrorData::resource_not_found(
                format!("no server offers resource `{}`", request.uri),
                None,
            ));
        }
        let newly = self.session.subscribed.lock().insert(request.uri.clone());
        if newly && let Err(err) = self.acquire(&request.uri, &context).await {
            self.session.subscribed.lock().remove(&request.uri);
            return Err(err);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if self.session.subscribed.lock().remove(&request.uri) {
            self.release(&request.uri).await;
        }
        Ok(())
    }

    /// A `2026-07-28` client's `subscriptions/listen` stream: list changes,
    /// debounced, for the lists it asked about.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.shared.changes.subscribe();
        let mut updates = self.shared.updates.subscribe();
        let accepted = context.accepted().clone();
        let resources: Vec<String> = accepted.resource_subscriptions.clone().unwrap_or_default();
        let mut held = Vec::new();
        for uri in &resources {
            if self.acquire(uri, context.request_context()).await.is_ok() {
                held.push(uri.clone());
            }
        }
        let outcome = self
            .stream(&context, &mut changes, &mut updates, &resources)
            .await;
        for uri in held {
            self.release(&uri).await;
        }
        outcome
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        self.remember_client(&context);
        let table = self.routing(&context).await?;
        if self.view(&context).tools_only() {
            return Err(ErrorData::invalid_params(
                "completion is not available to this client's profile, a view of tools only",
                None,
            ));
        }
        let mut upstream = request;
        upstream.meta = None;
        let (index, what) = match &upstream.r#ref {
            Reference::Prompt(prompt) => {
                let route = table.prompt(&prompt.name).cloned().ok_or_else(|| {
                    ErrorData::invalid_params(format!("unknown prompt `{}`", prompt.name), None)
                })?;
                let what = format!("completion/complete for prompt `{}`", prompt.name);
                upstream.r#ref = Reference::for_prompt(route.upstream.to_string());
                (route.server, what)
            }
            Reference::Resource(template) => {
                let index = table
                    .template(&template.uri)
                    .or_else(|| table.resource(&template.uri))
                    .ok_or_else(|| {
                        ErrorData::invalid_params(
                            format!("no server offers resource template `{}`", template.uri),
                            None,
                        )
                    })?;
                (index, format!("completion/complete for `{}`", template.uri))
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "completion/complete for an unknown kind of reference",
                    None,
                ));
            }
        };
        let request = ClientRequest::CompleteRequest(CompleteRequest::new(upstream));
        match Box::pin(self.forward(index, &what, request, &context)).await? {
            ServerResult::CompleteResult(mut result) => {
                complete(&mut result.result_type);
                Ok(result)
            }
            _ => Err(unexpected(&self.shared.slots[index].name, &what)),
        }
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.remember_client(&context);
        let table = self.routing(&context).await?;
        let visible = !self.view(&context).tools_only();
        let index = table
            .resource(&request.uri)
            .filter(|_| visible)
            .ok_or_else(|| {
                ErrorData::resource_not_found(
                    format!("no server offers resource `{}`", request.uri),
                    None,
                )
            })?;
        let mut upstream = request;
        upstream.meta = None;
        let what = format!("resources/read `{}`", upstream.uri);
        let resume = self.ours(&mut upstream.request_state, &mut upstream.input_responses);
        let request = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(upstream));
        match Box::pin(self.forward_rounds(index, &what, request, &context, resume)).await? {
            ServerResult::ReadResourceResult(mut result) => {
                complete(&mut result.result_type);
                Ok(ReadResourceResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(ReadResourceResponse::InputRequired(result))
            }
            _ => Err(unexpected(&self.shared.slots[index].name, &what)),
        }
    }
}

impl Mux {
    /// Delivers list changes and resource updates on one listen stream
    /// until it is cancelled.
    async fn stream(
        &self,
        context: &SubscriptionContext,
        changes: &mut broadcast::Receiver<ListChange>,
        updates: &mut broadcast::Receiver<String>,
        resources: &[String],
    ) -> Result<(), ErrorData> {
        let accepted = context.accepted().clone();
        loop {
            let change = tokio::select! {
                () = context.cancelled() => return Ok(()),
                change = next_change(changes) => change,
                update = updates.recv() => {
                    let updated = match update {
                        Ok(uri) if resources.contains(&uri) => vec![uri],
                        Ok(_) => Vec::new(),
                        // Missed some: every resource of the stream may
                        // have changed, and is said to have.
                        Err(broadcast::error::RecvError::Lagged(_)) => resources.to_vec(),
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                    for uri in updated {
                        let _ = context.sink().notify_resource_updated(uri).await;
                    }
                    continue;
                }
            };
            let Some(change) = change else { return Ok(()) };
            let sink = context.sink();
            if change.tools && accepted.tools_list_changed == Some(true) {
                let _ = sink.notify_tool_list_changed().await;
            }
            if change.prompts && accepted.prompts_list_changed == Some(true) {
                let _ = sink.notify_prompt_list_changed().await;
            }
            if change.resources && accepted.resources_list_changed == Some(true) {
                let _ = sink.notify_resource_list_changed().await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
