//! One MCP client session to one backend server, over any byte stream pair.
//!
//! [`Backend::connect`] runs the opening handshake (probing for the
//! stateless `2026-07-28` protocol and falling back to `initialize`) within a
//! deadline, then reads the backend's lists. The session itself is an actor:
//! rmcp's service task owns the transport and correlates requests with
//! responses; callers hold a cheap [`Backend`] handle. A watcher task owned by
//! the handle notices when the transport closes.
//!
//! This crate does not know where the bytes come from (a container, a child
//! process, an in-memory duplex): the supervisor decides that.

// Sampling and roots are deprecated by SEP-2577, but handshake-era servers
// and clients still use them, and the gateway relays them.
#![allow(deprecated)]

mod guard;
mod reclaim;
pub mod remote;
mod sent;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rmcp::model::{
    CancelledNotificationParam, ClientCapabilities, ClientConfig, ClientRequest,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    Implementation, ListRootsResult, LoggingLevel, LoggingMessageNotificationParam, PingRequest,
    ProgressNotificationParam, ProgressToken, Prompt, ProtocolVersion, RequestId,
    RequestMetaObject, Resource, ResourceTemplate, ResourceUpdatedNotificationParam,
    ServerCapabilities, ServerNotification, ServerResult, SetLevelRequest, SetLevelRequestParams,
    SubscribeRequest, SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequest,
    UnsubscribeRequestParams,
};
use rmcp::service::{
    ClientInitializeError, NotificationContext, Peer, PeerRequestOptions, RequestContext,
    RoleClient, RunningService, ServiceError,
};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::{ClientHandler, ClientLifecycleMode, ErrorData};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Why a backend session could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend did not finish the handshake in time.
    #[error("server `{server}` did not answer the MCP handshake within {timeout:?}")]
    InitTimeout {
        /// The catalog server.
        server: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// The handshake failed.
    #[error("server `{server}` failed the MCP handshake: {reason}")]
    Handshake {
        /// The catalog server.
        server: String,
        /// What went wrong, as rmcp reports it.
        reason: String,
    },
    /// A list request failed while reading the backend's tools, prompts or
    /// resources.
    #[error("server `{server}` failed to list its {what}: {source}")]
    List {
        /// The catalog server.
        server: String,
        /// Which list.
        what: &'static str,
        /// What rmcp reported.
        #[source]
        source: ServiceError,
    },
}

/// What a backend offers, read once after the handshake.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Every tool, all pages followed.
    pub tools: Vec<Tool>,
    /// Every prompt.
    pub prompts: Vec<Prompt>,
    /// Every static resource.
    pub resources: Vec<Resource>,
    /// Every resource template.
    pub resource_templates: Vec<ResourceTemplate>,
}

/// The requests in flight that a backend's progress notifications concern,
/// by the progress token the gateway put on each.
pub(crate) type ProgressRoutes = Arc<parking_lot::Mutex<HashMap<ProgressToken, Route>>>;

/// Where one request's progress goes.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// Told of every report, and again once it is delivered: it restarts
    /// the request's idle deadline.
    pub(crate) progressed: Arc<tokio::sync::Notify>,
    /// The reports themselves, for a client that asked for them.
    pub(crate) reports: Option<mpsc::Sender<ProgressNotificationParam>>,
    /// Set once the client took no report for [`PATIENCE`].
    pub(crate) stuck: Arc<std::sync::atomic::AtomicBool>,
}

/// How long one consumer of what a backend says (a request's progress
/// reports) may hold the reading of the backend's stdout up. Past it, the
/// consumer is served only as it keeps up, so that one client that stopped
/// reading does not stall the server's other clients.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// The client side the gateway presents to a backend: it relays the
/// backend's requests and resource updates through its [`Relay`]. Progress
/// reports and log messages are delivered by the stdout guard instead, in
/// the order they arrive (`guard.rs`).
#[derive(Debug, Clone)]
struct GatewayClient {
    server: Arc<str>,
    relays: Relays,
    /// What the backend is told the gateway can answer.
    capabilities: ClientCapabilities,
    relay: Arc<OnceLock<Arc<dyn Relay>>>,
    /// Bumped whenever the backend says one of its lists changed.
    lists: Arc<watch::Sender<u64>>,
}

/// Which server-to-client requests a backend may make through the gateway
/// (the catalog's `relay` settings). What is off is neither advertised to
/// the backend nor relayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relays {
    /// `sampling/createMessage`.
    pub sampling: bool,
    /// `elicitation/create`.
    pub elicitation: bool,
    /// `roots/list`.
    pub roots: bool,
}

/// The protocol era the gateway prefers to speak to a backend: that of the
/// client it serves, where there is one client (stdio), so that nothing
/// is translated that need not be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Era {
    /// The stateless `2026-07-28` protocol, falling back to `initialize`
    /// for a server of the handshake era.
    #[default]
    Stateless,
    /// `initialize`, falling back to the stateless protocol for a server
    /// that has no handshake.
    Handshake,
}

/// Whom a backend session serves: the era to prefer and, when the gateway
/// serves one client (stdio), what that client can answer, so that the
/// backend is never told the gateway can do more than its client can.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    /// The era to try first.
    pub era: Era,
    /// The one client's capabilities, if there is one client.
    pub capabilities: Option<ClientCapabilities>,
}

/// The client a request is forwarded for: a `2026-07-28` backend is told
/// its capabilities (narrowed to what the catalog lets the server ask
/// for) and the log level it wants, with the request.
#[derive(Debug, Clone, Default)]
pub struct OnBehalf {
    /// What the client can answer.
    pub capabilities: ClientCapabilities,
    /// The level the client wants log messages from, if it said.
    pub log_level: Option<LoggingLevel>,
}

impl Relays {
    /// The capabilities a backend is told of: what the catalog lets it
    /// ask for and, when `client` is given, what that client can answer.
    #[must_use]
    pub fn capabilities(self, client: Option<&ClientCapabilities>) -> ClientCapabilities {
        let mut capabilities = ClientCapabilities::default();
        let allows =
            |policy: bool, has: fn(&ClientCapabilities) -> bool| policy && client.is_none_or(has);
        if allows(self.sampling, |c| c.sampling.is_some()) {
            capabilities.sampling = Some(Default::default());
        }
        if allows(self.elicitation, |c| c.elicitation.is_some()) {
            capabilities.elicitation = client
                .and_then(|c| c.elicitation.clone())
                .or(Some(Default::default()));
        }
        if allows(self.roots, |c| c.roots.is_some()) {
            capabilities.roots = Some(Default::default());
        }
        capabilities
    }
}

/// Carries a backend's server-to-client requests to a client session. The
/// mux implements it; this crate does not know about client sessions.
pub trait Relay: Send + Sync + std::fmt::Debug + 'static {
    /// Relays `sampling/createMessage`.
    fn create_message(
        &self,
        params: CreateMessageRequestParams,
    ) -> Pin<Box<dyn Future<Output = Result<CreateMessageResult, ErrorData>> + Send + '_>>;
    /// Relays `elicitation/create`.
    fn create_elicitation(
        &self,
        params: ElicitRequestParams,
    ) -> Pin<Box<dyn Future<Output = Result<ElicitResult, ErrorData>> + Send + '_>>;
    /// Relays `roots/list`.
    fn list_roots(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<ListRootsResult, ErrorData>> + Send + '_>>;
    /// Relays a log message, if the client asked for its level.
    fn log(
        &self,
        params: LoggingMessageNotificationParam,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Relays `notifications/resources/updated` to the client's subscribers.
    fn resource_updated(&self, uri: String) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl GatewayClient {
    fn relay(&self, what: &str, allowed: bool) -> Result<Arc<dyn Relay>, ErrorData> {
        if !allowed {
            return Err(ErrorData::invalid_request(
                format!(
                    "{what} is not enabled for server `{}`: the gateway's catalog sets `relay` for it",
                    self.server
                ),
                None,
            ));
        }
        self.relay.get().cloned().ok_or_else(|| {
            ErrorData::internal_error(format!("{what}: no client session to relay to"), None)
        })
    }
}

impl ClientHandler for GatewayClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            self.capabilities.clone(),
            Implementation::new("mcpgw", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let relay = self.relay("sampling", self.relays.sampling)?;
        relay.create_message(params).await
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let relay = self.relay("elicitation", self.relays.elicitation)?;
        relay.create_elicitation(params).await
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let relay = self.relay("roots/list", self.relays.roots)?;
        relay.list_roots().await
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Some(relay) = self.relay.get() {
            relay.resource_updated(params.uri).await;
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.lists.send_modify(|n| *n += 1);
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.lists.send_modify(|n| *n += 1);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.lists.send_modify(|n| *n += 1);
    }
}

/// How long a forwarded request may take: `idle` without progress, and
/// `max_total` however much progress the backend reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// Time allowed between progress notifications (or to the answer).
    pub idle: Duration,
    /// The hard limit.
    pub max_total: Duration,
}

/// Keeps a `subscriptions/listen` stream open to a 2026-07-28 backend and
/// turns its list-change notifications into bumps of `lists`. When the
/// session is closed (`closing`), it cancels the stream and then ends the
/// session (`shutdown`), whatever became of the stream before; it ends
/// with the session.
fn listen_for_list_changes(
    peer: Peer<RoleClient>,
    filter: SubscriptionFilter,
    lists: Arc<watch::Sender<u64>>,
    closing: CancellationToken,
    shutdown: CancellationToken,
    server: &str,
) {
    let server = server.to_string();
    tokio::spawn(async move {
        follow_list_changes(&peer, filter, &lists, &closing, &shutdown, &server).await;
        tokio::select! {
            () = closing.cancelled() => shutdown.cancel(),
            () = shutdown.cancelled() => {}
        }
    });
}

async fn follow_list_changes(
    peer: &Peer<RoleClient>,
    filter: SubscriptionFilter,
    lists: &watch::Sender<u64>,
    closing: &CancellationToken,
    shutdown: &CancellationToken,
    server: &str,
) {
    let mut subscription = match closing.run_until_cancelled(peer.listen(filter)).await {
        Some(Ok(subscription)) => subscription,
        Some(Err(err)) => {
            tracing::debug!(server, error = %err, "backend refused subscriptions/listen; list changes will not be followed");
            return;
        }
        None => return,
    };
    while let Some(Ok(Some(_))) = closing.run_until_cancelled(subscription.next()).await {
        lists.send_modify(|n| *n += 1);
    }
    if closing.is_cancelled() && !shutdown.is_cancelled() {
        // A server drains its open requests before it exits at the end of
        // its stdin; an open stream would keep it running. A server that
        // does not answer the cancellation is not waited for long.
        let _ = tokio::time::timeout(Duration::from_millis(250), subscription.cancel()).await;
    }
}

/// A progress route, removed when the request ends.
struct ProgressRoute {
    routes: ProgressRoutes,
    token: ProgressToken,
}

impl ProgressRoute {
    fn new(routes: &ProgressRoutes, token: ProgressToken, route: Route) -> Self {
        routes.lock().insert(token.clone(), route);
        Self {
            routes: routes.clone(),
            token,
        }
    }
}

impl Drop for ProgressRoute {
    fn drop(&mut self) {
        self.routes.lock().remove(&self.token);
    }
}

/// Tells the backend a request was abandoned, when dropped while armed.
struct CancelOnDrop {
    peer: Option<Peer<RoleClient>>,
    id: RequestId,
    /// When the request leaves: the cancellation follows it.
    sent: Option<sent::Claim>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else {
            return;
        };
        let sent = self.sent.take();
        let param = CancelledNotificationParam::new(
            Some(self.id.clone()),
            Some("the gateway's client abandoned the request".to_string()),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // A server that stopped reading never takes either: the
                // task does not wait for ever.
                let sent = async {
                    if let Some(sent) = sent {
                        sent.sent().await;
                    }
                };
                if tokio::time::timeout(PATIENCE, sent).await.is_ok() {
                    let _ = tokio::time::timeout(PATIENCE, peer.notify_cancelled(param)).await;
                }
            });
        }
    }
}

/// A handle to one open backend session.
#[derive(Debug, Clone)]
pub struct Backend {
    server: Arc<str>,
    peer: Peer<RoleClient>,
    relays: Relays,
    protocol: ProtocolVersion,
    capabilities: ServerCapabilities,
    shutdown: CancellationToken,
    closing: CancellationToken,
    listening: bool,
    closed: watch::Receiver<bool>,
    verdict: Arc<parking_lot::Mutex<Option<String>>>,
    progress: ProgressRoutes,
    lists: Arc<watch::Sender<u64>>,
    relay: Arc<OnceLock<Arc<dyn Relay>>>,
    /// Open `subscriptions/listen` streams for resources, by URI.
    resource_streams: Arc<parking_lot::Mutex<HashMap<String, CancellationToken>>>,
    /// The requests that have left for the backend.
    sent: sent::Sent,
}

/// How long a subscribe or unsubscribe may take.
const SUBSCRIBE_DEADLINE: Deadline = Deadline {
    idle: Duration::from_secs(10),
    max_total: Duration::from_secs(10),
};

impl Backend {
    /// Whether `other` is a handle to this same session.
    #[must_use]
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.verdict, &other.verdict)
    }

    /// Opens a session over `read`/`write` and completes the handshake within
    /// `init_timeout`.
    ///
    /// # Errors
    ///
    /// [`BackendError::InitTimeout`] or [`BackendError::Handshake`].
    pub fn connect<R, W>(
        server: &str,
        read: R,
        write: W,
        init_timeout: Duration,
        relays: Relays,
        audience: Audience,
    ) -> Pin<Box<dyn Future<Output = Result<Self, BackendError>> + Send>>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        // Boxed with an explicit `Send`: awaited inside a spawned task, rmcp's
        // handshake future otherwise trips rustc's "implementation of `Send`
        // is not general enough" (the compiler cannot prove it for every
        // lifetime of the caller's borrows).
        Box::pin(Self::open(
            server.to_string(),
            read,
            write,
            init_timeout,
            relays,
            audience,
        ))
    }

    async fn open<R, W>(
        server: String,
        read: R,
        write: W,
        init_timeout: Duration,
        relays: Relays,
        audience: Audience,
    ) -> Result<Self, BackendError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let server = server.as_str();
        let shutdown = CancellationToken::new();
        // Closing comes first, so a `subscriptions/listen` stream can be
        // cancelled while the transport still carries the cancellation.
        let closing = shutdown.child_token();
        let verdict = Arc::new(parking_lot::Mutex::new(None));
        // Requests leave through an outbox: under load, many in one write.
        // Every line is noted on its way, so that a cancellation waits for
        // its request (`sent.rs`).
        let sent = sent::Sent::default();
        let (write, drain) = mcpgw_wire::outbox::outbox(write, Some(sent.filter()));
        let progress = ProgressRoutes::default();
        let relay = Arc::new(OnceLock::new());
        let read = reclaim::Reclaim::new(guard::LineGuard::new(
            read,
            server,
            guard::MAX_LINE,
            verdict.clone(),
            progress.clone(),
            relay.clone(),
        ));
        let drain_server = server.to_string();
        tokio::spawn(async move {
            if let Err(err) = drain.await {
                tracing::debug!(server = %drain_server, "writing to the server failed: {err}");
            }
        });
        let write = reclaim::Reclaim::new(write);
        let auto = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
        };
        let lists = Arc::new(watch::channel(0).0);
        let client = GatewayClient {
            server: Arc::from(server),
            relays,
            capabilities: relays.capabilities(audience.capabilities.as_ref()),
            relay: relay.clone(),
            lists: lists.clone(),
        };
        let handshake = async {
            if audience.era == Era::Handshake {
                let opened = Self::handshake(
                    client.clone(),
                    read.clone(),
                    write.clone(),
                    ClientLifecycleMode::Initialize,
                    &shutdown,
                )
                .await;
                match opened {
                    Ok(running) => return Ok(running),
                    // A server without the handshake: the stateless
                    // protocol, on the same pipes.
                    Err(err) => tracing::debug!(
                        server,
                        "initialize failed ({err}); trying the stateless protocol"
                    ),
                }
            }
            match Self::handshake(client.clone(), read.clone(), write.clone(), auto, &shutdown)
                .await
            {
                // The server answered the probe with handshake-era versions
                // only; rmcp gives up there. Fall back to `initialize` on the
                // same pipes, as the protocol's compatibility rules intend.
                Err(ClientInitializeError::NoCompatibleProtocolVersion {
                    server_supported,
                    ..
                }) if audience.era == Era::Stateless
                    && server_supported.iter().all(ProtocolVersion::has_initialize) =>
                {
                    tracing::debug!(
                        server,
                        "server lists only handshake-era versions; using initialize"
                    );
                    Self::handshake(
                        client,
                        read,
                        write,
                        ClientLifecycleMode::Initialize,
                        &shutdown,
                    )
                    .await
                }
                other => other,
            }
        };
        let running = match tokio::time::timeout(init_timeout, handshake).await {
            Ok(Ok(running)) => running,
            Ok(Err(err)) => {
                return Err(BackendError::Handshake {
                    server: server.to_string(),
                    reason: err.to_string(),
                });
            }
            Err(_) => {
                shutdown.cancel();
                return Err(BackendError::InitTimeout {
                    server: server.to_string(),
                    timeout: init_timeout,
                });
            }
        };
        let peer = running.peer().clone();
        let info = peer.peer_info();
        let protocol = info
            .as_ref()
            .map_or(ProtocolVersion::LATEST_WITH_INITIALIZE, |i| {
                i.protocol_version.clone()
            });
        let capabilities = info.map(|i| i.capabilities.clone()).unwrap_or_default();
        // A 2026-07-28 backend announces list changes only on a
        // `subscriptions/listen` stream; open one for what it advertises.
        let mut listening = false;
        if !protocol.has_initialize() {
            let wanted = SubscriptionFilter::builder()
                .tools_list_changed()
                .prompts_list_changed()
                .resources_list_changed()
                .build()
                .supported_by(&capabilities);
            if wanted != SubscriptionFilter::default() {
                listening = true;
                listen_for_list_changes(
                    peer.clone(),
                    wanted,
                    lists.clone(),
                    closing.clone(),
                    shutdown.clone(),
                    server,
                );
            }
        }
        let (closed_tx, closed) = watch::channel(false);
        let name: Arc<str> = Arc::from(server);
        let watcher_name = name.clone();
        // The watcher owns the running service; it ends when the transport
        // closes or `shutdown` is cancelled, and says so on `closed`.
        tokio::spawn(async move {
            let reason = running.waiting().await;
            tracing::debug!(server = %watcher_name, ?reason, "backend session ended");
            let _ = closed_tx.send(true);
        });
        tracing::info!(server = %name, protocol = %protocol.as_str(), "backend session open");
        Ok(Self {
            server: name,
            peer,
            relays,
            protocol,
            capabilities,
            shutdown,
            closing,
            listening,
            closed,
            verdict,
            progress,
            lists,
            relay,
            resource_streams: Arc::default(),
            sent,
        })
    }
    async fn handshake<R, W>(
        client: GatewayClient,
        read: reclaim::Reclaim<R>,
        write: reclaim::Reclaim<W>,
        lifecycle: ClientLifecycleMode,
        shutdown: &CancellationToken,
    ) -> Result<RunningService<RoleClient, GatewayClient>, ClientInitializeError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        // Our guard caps lines first; rmcp's own cap (which only discards the
        // line) sits above it.
        let transport = AsyncRwTransport::new_client(read, write)
            .with_max_line_length(guard::MAX_LINE.saturating_mul(2));
        rmcp::service::serve_client_with_lifecycle_and_ct(
            client,
            transport,
            lifecycle,
            shutdown.clone(),
        )
        .await
    }

    /// The catalog server this session talks to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The rmcp peer, for sending requests.
    pub fn peer(&self) -> &Peer<RoleClient> {
        &self.peer
    }

    /// The protocol version the backend agreed to.
    pub fn protocol(&self) -> &ProtocolVersion {
        &self.protocol
    }

    /// Which server-to-client requests the catalog lets this server make.
    pub fn relays(&self) -> Relays {
        self.relays
    }

    /// Why the gateway ended the session itself, if it did (a backend that
    /// sent an oversized line, say).
    pub fn end_reason(&self) -> Option<String> {
        self.verdict.lock().clone()
    }

    /// Asks a handshake-era backend that logs to send messages from `level`
    /// up. Others are left as they are (`2026-07-28` has no `setLevel`).
    pub async fn set_level(&self, level: LoggingLevel) {
        if !self.protocol.has_initialize() || self.capabilities.logging.is_none() {
            return;
        }
        let request =
            ClientRequest::SetLevelRequest(SetLevelRequest::new(SetLevelRequestParams::new(level)));
        let deadline = Deadline {
            idle: Duration::from_secs(10),
            max_total: Duration::from_secs(10),
        };
        if let Err(err) = self.request(request, deadline, None, None, None).await {
            tracing::debug!(server = %self.server, "logging/setLevel failed: {err}");
        }
    }

    /// Subscribes to updates of resource `uri`: `resources/subscribe` in the
    /// handshake era, a `subscriptions/listen` stream in `2026-07-28`.
    ///
    /// # Errors
    ///
    /// The backend's refusal, or a closed session.
    pub async fn subscribe(&self, uri: &str) -> Result<(), ServiceError> {
        if self.protocol.has_initialize() {
            let request = ClientRequest::SubscribeRequest(SubscribeRequest::new(
                SubscribeRequestParams::new(uri),
            ));
            return self
                .request(request, SUBSCRIBE_DEADLINE, None, None, None)
                .await
                .map(|_| ());
        }
        let filter = SubscriptionFilter::builder()
            .resource_subscription(uri)
            .build();
        let mut subscription = self.peer.listen(filter).await?;
        let stop = self.closing.child_token();
        self.resource_streams
            .lock()
            .insert(uri.to_string(), stop.clone());
        let relay = self.relay.clone();
        tokio::spawn(async move {
            while let Some(Ok(Some(notification))) =
                stop.run_until_cancelled(subscription.next()).await
            {
                if let ServerNotification::ResourceUpdatedNotification(update) = notification
                    && let Some(relay) = relay.get()
                {
                    relay.resource_updated(update.params.uri).await;
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(250), subscription.cancel()).await;
        });
        Ok(())
    }

    /// Ends a subscription made with [`Self::subscribe`].
    pub async fn unsubscribe(&self, uri: &str) {
        if self.protocol.has_initialize() {
            let request = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(
                UnsubscribeRequestParams::new(uri),
            ));
            let _ = self
                .request(request, SUBSCRIBE_DEADLINE, None, None, None)
                .await;
        } else if let Some(stop) = self.resource_streams.lock().remove(uri) {
            stop.cancel();
        }
    }

    /// Sets where this backend's server-to-client requests go; once.
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        let _ = self.relay.set(relay);
    }

    /// Changes whenever the backend says one of its lists changed.
    pub fn list_changes(&self) -> watch::Receiver<u64> {
        self.lists.subscribe()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves when the session ends, for whatever reason.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closed = self.closed.clone();
        async move {
            let _ = closed.wait_for(|c| *c).await;
        }
    }

    /// Sends `request` and waits for its result within `deadline`; its
    /// progress reports go to `progress`, in the order the backend sent
    /// them, each before the answer. A `2026-07-28` backend is told, with
    /// the request, what the client it is sent `on_behalf` of can answer
    /// (narrowed to the catalog's `relay`) and the log level it wants.
    /// `carried` is what else the request's `_meta` carries (the trace
    /// context of its span).
    ///
    /// The deadline is kept here, not by rmcp: rmcp's own answers a timed
    /// out request only once its cancellation is written, which a server
    /// that stopped reading never lets happen. Here the caller gets its
    /// timeout at the deadline, and the cancellation follows on its own
    /// (as it does when the caller drops this future first, its own client
    /// having cancelled). The session stays usable.
    ///
    /// # Errors
    ///
    /// The backend's JSON-RPC error, a timeout, or a closed session.
    pub async fn request(
        &self,
        request: ClientRequest,
        deadline: Deadline,
        progress: Option<mpsc::Sender<ProgressNotificationParam>>,
        on_behalf: Option<&OnBehalf>,
        carried: Option<RequestMetaObject>,
    ) -> Result<ServerResult, ServiceError> {
        let mut options = PeerRequestOptions::no_options();
        options.meta = carried;
        if let Some(client) = on_behalf
            && !self.protocol.has_initialize()
        {
            let meta = options.meta.get_or_insert_with(RequestMetaObject::new);
            meta.set_client_capabilities(self.relays.capabilities(Some(&client.capabilities)));
            if let Some(level) = client.log_level {
                meta.set_log_level(level);
            }
        }
        let started = tokio::time::Instant::now();
        let handle = self.peer.send_request_with_option(request, options).await?;
        // rmcp picks the request's progress token as it sends it; the route
        // is in place long before the backend can answer across its pipes.
        let progressed = Arc::new(tokio::sync::Notify::new());
        let route = ProgressRoute::new(
            &self.progress,
            handle.progress_token.clone(),
            Route {
                progressed: progressed.clone(),
                reports: progress,
                stuck: Arc::default(),
            },
        );
        let mut cancel = CancelOnDrop {
            peer: Some(self.peer.clone()),
            sent: Some(self.sent.claim(&handle.id)),
            id: handle.id.clone(),
        };
        let hard = started + deadline.max_total;
        let answer = handle.await_response();
        tokio::pin!(answer);
        let result = loop {
            let idle = tokio::time::Instant::now() + deadline.idle;
            tokio::select! {
                // An answer that is there wins over a deadline that passed.
                biased;
                result = &mut answer => break result,
                // A report restarts the idle deadline, never the hard one.
                () = progressed.notified() => {}
                () = tokio::time::sleep_until(idle.min(hard)) => {
                    let timeout = if idle < hard { deadline.idle } else { deadline.max_total };
                    // Dropping `cancel` armed tells the backend.
                    return Err(ServiceError::Timeout { timeout });
                }
            }
        };
        cancel.peer = None;
        // Every report the backend sent before its answer is in the route
        // by now: the guard hands a report over before rmcp reads the next
        // line.
        drop(route);
        result
    }

    /// Whether this backend's protocol has `ping` (the handshake era does;
    /// the stateless `2026-07-28` protocol does not).
    pub fn can_ping(&self) -> bool {
        self.protocol.has_initialize()
    }

    /// Pings the backend; `Ok` when it answered within `timeout`.
    ///
    /// # Errors
    ///
    /// A timeout, an error answer, or a closed session.
    pub async fn ping(&self, timeout: Duration) -> Result<(), ServiceError> {
        let ping = ClientRequest::PingRequest(PingRequest {
            method: Default::default(),
            extensions: Default::default(),
        });
        let deadline = Deadline {
            idle: timeout,
            max_total: timeout,
        };
        self.request(ping, deadline, None, None, None)
            .await
            .map(|_| ())
    }

    /// Ends the session: the service task stops and the transport (and so
    /// the backend's stdin) is dropped.
    pub fn close(&self) {
        self.closing.cancel();
        if !self.listening {
            self.shutdown.cancel();
        }
        // Otherwise the list-change stream is cancelled first, and its
        // task then ends the session (`listen_for_list_changes`).
    }

    /// Reads every tool, prompt and resource the backend offers, following
    /// pagination. Lists the backend did not declare are left empty.
    ///
    /// # Errors
    ///
    /// [`BackendError::List`] when a list request fails.
    pub async fn inventory(&self) -> Result<Inventory, BackendError> {
        let caps = &self.capabilities;
        let tools = if caps.tools.is_some() {
            let listed = self.peer.list_all_tools().await;
            listed.map_err(|source| self.list_error("tools", source))?
        } else {
            Vec::new()
        };
        let prompts = if caps.prompts.is_some() {
            let listed = self.peer.list_all_prompts().await;
            listed.map_err(|source| self.list_error("prompts", source))?
        } else {
            Vec::new()
        };
        let (resources, resource_templates) = if caps.resources.is_some() {
            let listed = self.peer.list_all_resources().await;
            let resources = listed.map_err(|source| self.list_error("resources", source))?;
            let listed = self.peer.list_all_resource_templates().await;
            let templates =
                listed.map_err(|source| self.list_error("resource templates", source))?;
            (resources, templates)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Inventory {
            tools,
            prompts,
            resources,
            resource_templates,
        })
    }

    fn list_error(&self, what: &'static str, source: ServiceError) -> BackendError {
        BackendError::List {
            server: self.server.to_string(),
            what,
            source,
        }
    }
}

#[cfg(test)]
mod tests;
