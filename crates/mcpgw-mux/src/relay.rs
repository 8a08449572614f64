//! What flows from a backend to the client session besides answers:
//! server-to-client requests (sampling, elicitation, roots), log messages
//! and progress reports.
//!
//! With one client session (stdio) the target is unambiguous. A
//! `2026-07-28` client takes no server-to-client requests: those go to the
//! client's call in flight at the server, as an input-required result
//! (`rounds.rs`).

use std::future::Future;
use std::pin::Pin;

use mcpgw_backend::Relay;
use mcpgw_catalog::ServerName;
use rmcp::ErrorData;
use std::sync::Arc;

use rmcp::model::{
    ClientCapabilities, CreateMessageRequest, CreateMessageRequestParams, CreateMessageResult,
    ElicitRequest, ElicitRequestParams, ElicitResult, InputRequest, ListRootsRequest,
    ListRootsResult, LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam,
    ProgressToken, ResourceUpdatedNotificationParam,
};
use rmcp::service::{Peer, RoleServer, ServiceError};
use tokio::sync::mpsc;

use crate::rounds::Rounds;
use crate::session::Session;
use crate::{Shared, lock, read};

/// Relays one server's requests to the client session. With one client (stdio)
/// the session is unambiguous.
#[derive(Debug)]
pub(crate) struct ClientRelay {
    pub(crate) shared: std::sync::Weak<Shared>,
    pub(crate) server: ServerName,
    pub(crate) index: usize,
    /// The one session a `scope: session` instance serves.
    pub(crate) session: Option<std::sync::Weak<Session>>,
}

/// Where a server-to-client request goes.
enum Target {
    /// A handshake-era session: asked directly.
    Session(Peer<RoleServer>),
    /// A `2026-07-28` client: through its call in flight.
    Rounds(Arc<Rounds>),
}

impl ClientRelay {
    /// Sends `request` to the client and returns its answer as `T`.
    async fn ask<T, F>(
        &self,
        what: &str,
        supports: fn(&ClientCapabilities) -> bool,
        request: InputRequest,
        direct: impl FnOnce(Peer<RoleServer>) -> F,
    ) -> Result<T, ErrorData>
    where
        T: serde::de::DeserializeOwned,
        F: Future<Output = Result<T, ServiceError>>,
    {
        match self.target(what, supports)? {
            Target::Session(client) => relayed(direct(client).await),
            Target::Rounds(rounds) => {
                let what = format!("{what} from server `{}`", self.server);
                let answer = rounds.ask(self.index, &what, supports, request).await?;
                serde_json::from_value(answer).map_err(|e| {
                    ErrorData::invalid_params(
                        format!("the client's answer to {what} is malformed: {e}"),
                        None,
                    )
                })
            }
        }
    }

    /// Where to relay `what`, if the client can take it.
    fn target(
        &self,
        what: &str,
        supports: fn(&ClientCapabilities) -> bool,
    ) -> Result<Target, ErrorData> {
        let server = &self.server;
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| ErrorData::internal_error("the gateway is shutting down", None))?;
        // Over HTTP, which handshake-era session a shared server's request
        // belongs to is unknown: only `2026-07-28` calls (which say so) get
        // them. A session's own instance has one owner.
        if self.session.is_none()
            && shared
                .many_sessions
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(Target::Rounds(shared.rounds.clone()));
        }
        let client = self.client(&shared).ok_or_else(|| {
            ErrorData::internal_error(
                format!("{what} from server `{server}`: no client session yet"),
                None,
            )
        })?;
        match client.peer_info() {
            Some(info) if info.protocol_version.has_initialize() => {
                if supports(&info.capabilities) {
                    Ok(Target::Session(client))
                } else {
                    Err(ErrorData::invalid_request(
                        format!("{what} from server `{server}`: the client does not support it"),
                        None,
                    ))
                }
            }
            _ => Ok(Target::Rounds(shared.rounds.clone())),
        }
    }

    /// The client this server's messages go to: its session's, or the
    /// first client's.
    fn client(&self, shared: &Shared) -> Option<Peer<RoleServer>> {
        match &self.session {
            Some(session) => session.upgrade()?.peer(),
            None => read(&shared.clients).first().cloned(),
        }
    }
}

/// Log levels in increasing severity, as syslog orders them.
fn severity(level: LoggingLevel) -> u8 {
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

fn relayed<T>(result: Result<T, ServiceError>) -> Result<T, ErrorData> {
    result.map_err(|err| match err {
        ServiceError::McpError(e) => e,
        other => ErrorData::internal_error(format!("the client did not answer: {other}"), None),
    })
}

impl Relay for ClientRelay {
    fn resource_updated(&self, uri: String) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let Some(shared) = self.shared.upgrade() else {
                return;
            };
            let _ = shared.updates.send(uri.clone());
            let subscribed = lock(&shared.subscribed).contains(&uri);
            let client = read(&shared.clients).first().cloned();
            drop(shared);
            if subscribed && let Some(client) = client {
                let _ = client
                    .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                    .await;
            }
        })
    }

    fn create_message(
        &self,
        params: CreateMessageRequestParams,
    ) -> Pin<Box<dyn Future<Output = Result<CreateMessageResult, ErrorData>> + Send + '_>> {
        Box::pin(async move {
            let request = InputRequest::CreateMessage(CreateMessageRequest::new(params.clone()));
            self.ask(
                "sampling",
                |c| c.sampling.is_some(),
                request,
                |client| async move { client.create_message(params).await },
            )
            .await
        })
    }

    fn create_elicitation(
        &self,
        params: ElicitRequestParams,
    ) -> Pin<Box<dyn Future<Output = Result<ElicitResult, ErrorData>> + Send + '_>> {
        Box::pin(async move {
            let request = InputRequest::Elicitation(ElicitRequest::new(params.clone()));
            self.ask(
                "elicitation",
                |c| c.elicitation.is_some(),
                request,
                |client| async move { client.create_elicitation(params).await },
            )
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
            let Some(wanted) = *read(&shared.log_level) else {
                return; // the client never asked for logs
            };
            if severity(params.level) < severity(wanted) {
                return;
            }
            let Some(client) = self.client(&shared) else {
                return;
            };
            drop(shared);
            // Name the server, so the client can tell whose message it is.
            params.logger = Some(match params.logger.take() {
                Some(logger) => format!("{}/{logger}", self.server),
                None => self.server.to_string(),
            });
            let _ = client.notify_logging_message(params).await;
        })
    }

    fn list_roots(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<ListRootsResult, ErrorData>> + Send + '_>> {
        Box::pin(async move {
            let request = InputRequest::ListRoots(ListRootsRequest::default());
            self.ask(
                "roots/list",
                |c| c.roots.is_some(),
                request,
                |client| async move { client.list_roots().await },
            )
            .await
        })
    }
}

/// Relays a backend's progress for one request to the client, under the
/// client's own token. Reports whose progress does not increase are dropped:
/// the protocol requires increasing values, and notifications can overtake
/// one another inside rmcp.
pub(crate) struct ProgressRelay {
    client: Peer<RoleServer>,
    token: ProgressToken,
    sender: mpsc::Sender<ProgressNotificationParam>,
    reports: mpsc::Receiver<ProgressNotificationParam>,
    last: f64,
}

impl ProgressRelay {
    pub(crate) fn new(client: Peer<RoleServer>, token: ProgressToken) -> Self {
        let (sender, reports) = mpsc::channel(32);
        Self {
            client,
            token,
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
            return;
        }
        self.last = report.progress;
        report.progress_token = self.token.clone();
        report.meta = None;
        let _ = self.client.notify_progress(report).await;
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
