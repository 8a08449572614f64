//! What flows from a backend to client sessions besides answers:
//! server-to-client requests (sampling, elicitation, roots), log messages,
//! resource updates and progress reports.
//!
//! Who receives what (see the README's "Notifications"): progress goes to
//! the request it reports on; a resource update to the sessions subscribed
//! to its URI; a log message to the sessions with a request in flight at
//! the server, or, when there is none, to the sessions whose view includes
//! the server; never to a session outside it. A server-to-client request
//! goes to the one call it can belong to: the stdio client's, a `scope:
//! session` instance's session, or, over HTTP, the one call in flight at
//! the server (`rounds.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mcpgw_backend::Relay;
use mcpgw_catalog::ServerName;
use rmcp::ErrorData;
use rmcp::model::{
    ClientCapabilities, CreateMessageRequest, CreateMessageRequestParams, CreateMessageResult,
    ElicitRequest, ElicitRequestParams, ElicitResult, GetExtensions as _, InputRequest,
    ListRootsRequest, ListRootsResult, LoggingLevel, LoggingMessageNotificationParam,
    ProgressNotificationParam, ProgressToken, RequestId, ResourceUpdatedNotificationParam,
    ServerRequest,
};
use rmcp::service::{Peer, RoleServer, ServiceError};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::Shared;
use crate::session::Session;

/// Relays one server's requests and notifications to client sessions.
#[derive(Debug)]
pub(crate) struct ClientRelay {
    pub(crate) shared: std::sync::Weak<Shared>,
    pub(crate) server: ServerName,
    pub(crate) index: usize,
    /// The one session a `scope: session` instance serves.
    pub(crate) session: Option<std::sync::Weak<Session>>,
}

impl ClientRelay {
    /// Sends `request` to the client it belongs to and returns its answer
    /// as `T`.
    async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        supports: fn(&ClientCapabilities) -> bool,
        request: InputRequest,
    ) -> Result<T, ErrorData> {
        let server = &self.server;
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| ErrorData::internal_error("the gateway is shutting down", None))?;
        let rounds = shared.rounds.clone();
        // Over HTTP, a shared server's request belongs to the one call in
        // flight there, whichever its era; the rounds know the calls.
        let client = match &self.session {
            Some(session) => session.upgrade().and_then(|s| s.peer()),
            None if shared.is_many_sessions() => None,
            None => shared.sessions.all().first().and_then(|s| s.peer()),
        };
        drop(shared);
        let what = format!("{what} from server `{server}`");
        let answer = match client {
            Some(client) if is_handshake(&client) => {
                ask_client(&client, None, &what, supports, request).await?
            }
            None if self.session.is_some() => {
                return Err(ErrorData::internal_error(
                    format!("{what}: no client session yet"),
                    None,
                ));
            }
            _ => rounds.ask(self.index, &what, supports, request).await?,
        };
        if let Some(shared) = self.shared.upgrade() {
            let slot = &shared.slots[self.index];
            let answering = format!("the client's answer to {what}");
            shared.refuse_foreign_secrets(slot, &answering, &answer)?;
        }
        serde_json::from_value(answer).map_err(|e| {
            ErrorData::invalid_params(
                format!("the client's answer to {what} is malformed: {e}"),
                None,
            )
        })
    }

    /// The sessions a message from this server that answers nothing goes
    /// to: a `scope: session` instance's own session; else those with a
    /// request in flight at the server; else those that can see it.
    fn audience(&self, shared: &Shared) -> Vec<Arc<Session>> {
        if let Some(session) = &self.session {
            return session.upgrade().into_iter().collect();
        }
        let all = shared.sessions.all();
        let busy: Vec<Arc<Session>> = all
            .iter()
            .filter(|s| s.is_busy_at(self.index))
            .cloned()
            .collect();
        if !busy.is_empty() {
            return busy;
        }
        all.into_iter()
            .filter(|s| shared.sees_server(s, self.index))
            .collect()
    }
}

/// Whether `client` opened its session with `initialize` (and so takes
/// server-to-client requests).
pub(crate) fn is_handshake(client: &Peer<RoleServer>) -> bool {
    client
        .peer_info()
        .is_some_and(|info| info.protocol_version.has_initialize())
}

/// How long the gateway waits for a client to answer a request for input.
pub(crate) const ASK_TIMEOUT: Duration = Duration::from_secs(300);

/// Asks a handshake-era client for the input `request` wants, if it
/// declared the capability; its result as JSON. `origin` is the client's
/// request it is asked during, when that is not the task's own (over HTTP
/// the question then rides that request's stream).
pub(crate) async fn ask_client(
    client: &Peer<RoleServer>,
    origin: Option<RequestId>,
    what: &str,
    supports: fn(&ClientCapabilities) -> bool,
    request: InputRequest,
) -> Result<Value, ErrorData> {
    if !client
        .peer_info()
        .is_some_and(|info| supports(&info.capabilities))
    {
        return Err(ErrorData::invalid_request(
            format!("{what}: the client did not declare the capability"),
            None,
        ));
    }
    let request = match request {
        InputRequest::CreateMessage(r) => ServerRequest::CreateMessageRequest(r),
        InputRequest::Elicitation(r) => ServerRequest::ElicitRequest(r),
        InputRequest::ListRoots(r) => ServerRequest::ListRootsRequest(r),
        other => {
            return Err(ErrorData::invalid_request(
                format!("{what}: a kind of input request the gateway cannot relay: {other:?}"),
                None,
            ));
        }
    };
    let mut request = request;
    if let Some(origin) = origin {
        request
            .extensions_mut()
            .insert(rmcp::service::OriginatingRequestId(origin));
    }
    let answer = tokio::time::timeout(ASK_TIMEOUT, client.send_request(request))
        .await
        .map_err(|_| {
            ErrorData::internal_error(
                format!("{what}: the client did not answer within {ASK_TIMEOUT:?}"),
                None,
            )
        })?
        .map_err(|err| match err {
            ServiceError::McpError(e) => e,
            other => ErrorData::internal_error(
                format!("{what}: the client did not answer: {other}"),
                None,
            ),
        })?;
    serde_json::to_value(answer)
        .map_err(|e| ErrorData::internal_error(format!("{what}: the client's answer: {e}"), None))
}

/// What kind of input a request asks for, and the capability it needs.
pub(crate) fn needs(request: &InputRequest) -> (&'static str, fn(&ClientCapabilities) -> bool) {
    match request {
        InputRequest::CreateMessage(_) => ("sampling", |c| c.sampling.is_some()),
        InputRequest::Elicitation(_) => ("elicitation", |c| c.elicitation.is_some()),
        _ => ("roots/list", |c| c.roots.is_some()),
    }
}

/// How long the delivery of a notification waits for one session to take
/// it. Deliveries hold up the reading of their server's stdout (that is the
/// backpressure), so a session that stops reading would hold up every other
/// client of the server. Past this, the session is marked as not reading:
/// it is no longer waited for (what it is sent stays queued for it) until
/// it takes a message at once again.
const PATIENCE: Duration = Duration::from_secs(10);

/// Sends a notification to `session`'s client, waiting for it at most
/// [`PATIENCE`], and not at all while it is not reading.
async fn tell(session: &Session, what: &str, send: impl Future<Output = Result<(), ServiceError>>) {
    let patience = if session.is_stuck() {
        Duration::ZERO
    } else {
        PATIENCE
    };
    // `timeout` polls the send before the clock: one that completes at
    // once always gets through.
    match tokio::time::timeout(patience, send).await {
        Ok(_) => {
            session.set_stuck(false);
        }
        Err(_) => {
            if !session.set_stuck(true) {
                tracing::warn!(
                    session = session.id,
                    "a client took no {what} for {PATIENCE:?}; the gateway no longer waits for it, so that the server's other clients are not held up"
                );
            }
        }
    }
}

/// Log levels in increasing severity, as syslog orders them.
pub(crate) fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl Relay for ClientRelay {
    fn resource_updated(&self, uri: String) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let Some(shared) = self.shared.upgrade() else {
                return;
            };
            let _ = shared.updates.send(uri.clone());
            let subscribers: Vec<Arc<Session>> = shared
                .sessions
                .all()
                .into_iter()
                .filter(|s| s.subscribed.lock().contains(&uri))
                .collect();
            drop(shared);
            for session in subscribers {
                let Some(client) = session.peer() else {
                    continue;
                };
                let update = ResourceUpdatedNotificationParam::new(uri.clone());
                tell(
                    &session,
                    "resource update",
                    client.notify_resource_updated(update),
                )
                .await;
            }
        })
    }

    fn create_message(
        &self,
        params: CreateMessageRequestParams,
    ) -> Pin<Box<dyn Future<Output = Result<CreateMessageResult, ErrorData>> + Send + '_>> {
        Box::pin(async move {
            let request = InputRequest::CreateMessage(CreateMessageRequest::new(params));
            self.ask("sampling", |c| c.sampling.is_some(), request)
                .await
        })
    }

    fn create_elicitation(
        &self,
        params: ElicitRequestParams,
    ) -> Pin<Box<dyn Future<Output = Result<ElicitResult, ErrorData>> + Send + '_>> {
        Box::pin(async move {
            let request = InputRequest::Elicitation(ElicitRequest::new(params));
            self.ask("elicitation", |c| c.elicitation.is_some(), request)
                .await
        })
    }

    fn log(
        &self,
        mut params: LoggingMessageNotificationParam,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let Some(shared) = self.shared.upgrade() else {
                return;
            };
            let audience: Vec<Arc<Session>> = self
                .audience(&shared)
                .into_iter()
                .filter(|s| {
                    // A session that never asked for logs gets none.
                    s.log_level
                        .lock()
                        .is_some_and(|wanted| severity(params.level) >= severity(wanted))
                })
                .collect();
            drop(shared);
            // Name the server, so the client can tell whose message it is.
            params.logger = Some(match params.logger.take() {
                Some(logger) => format!("{}/{logger}", self.server),
                None => self.server.to_string(),
            });
            for session in audience {
                let Some(client) = session.peer() else {
                    continue;
                };
                let message = client.notify_logging_message(params.clone());
                tell(&session, "log message", message).await;
            }
        })
    }

    fn list_roots(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<ListRootsResult, ErrorData>> + Send + '_>> {
        Box::pin(async move {
            let request = InputRequest::ListRoots(ListRootsRequest::default());
            self.ask("roots/list", |c| c.roots.is_some(), request).await
        })
    }
}

/// Relays a backend's progress for one request to the client, under the
/// client's own token, in the order the backend sent it. A report whose
/// progress does not increase breaks the protocol's rule and is not
/// relayed (reports cannot overtake one another on the way here).
pub(crate) struct ProgressRelay {
    client: Peer<RoleServer>,
    token: ProgressToken,
    session: Arc<Session>,
    sender: mpsc::Sender<ProgressNotificationParam>,
    reports: mpsc::Receiver<ProgressNotificationParam>,
    last: f64,
}

impl ProgressRelay {
    pub(crate) fn new(
        client: Peer<RoleServer>,
        token: ProgressToken,
        session: Arc<Session>,
    ) -> Self {
        // Bounded: a client that does not take reports pushes back on the
        // backend's stdout (`mcpgw-backend`'s guard), nothing is dropped.
        let (sender, reports) = mpsc::channel(32);
        Self {
            client,
            token,
            session,
            sender,
            reports,
            last: f64::NEG_INFINITY,
        }
    }

    /// Where the backend puts its reports.
    pub(crate) fn sender(&self) -> mpsc::Sender<ProgressNotificationParam> {
        self.sender.clone()
    }

    /// Sends one report on to the client.
    pub(crate) async fn send(&mut self, mut report: ProgressNotificationParam) {
        if report.progress <= self.last {
            tracing::debug!(
                "a server's progress went from {} to {}; not relayed",
                self.last,
                report.progress
            );
            return;
        }
        self.last = report.progress;
        report.progress_token = self.token.clone();
        report.meta = None;
        let send = self.client.notify_progress(report);
        tell(&self.session, "progress report", send).await;
    }

    /// Sends what arrived before the answer, so it precedes the answer.
    pub(crate) async fn drain(&mut self) {
        while let Ok(report) = self.reports.try_recv() {
            self.send(report).await;
        }
    }
}

/// The next report, or never when there is no relay.
pub(crate) async fn next_report(
    relay: Option<&mut ProgressRelay>,
) -> Option<ProgressNotificationParam> {
    match relay {
        Some(relay) => relay.reports.recv().await,
        None => std::future::pending().await,
    }
}
