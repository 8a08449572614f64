//! What flows from a backend to the client session besides answers:
//! server-to-client requests (sampling, elicitation, roots), log messages
//! and progress reports.
//!
//! With one client session (stdio) the target is unambiguous. A
//! `2026-07-28` client takes no server-to-client requests; turning them into
//! input-required results is not done here yet.

use std::future::Future;
use std::pin::Pin;

use mcpgw_backend::Relay;
use mcpgw_catalog::ServerName;
use rmcp::ErrorData;
use rmcp::model::{
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    ListRootsResult, LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam,
    ProgressToken, ResourceUpdatedNotificationParam,
};
use rmcp::service::{Peer, RoleServer, ServiceError};
use tokio::sync::mpsc;

use crate::{Shared, lock, read};

/// Relays one server's requests to the client session. With one client (stdio)
/// the session is unambiguous.
#[derive(Debug)]
pub(crate) struct ClientRelay {
    pub(crate) shared: std::sync::Weak<Shared>,
    pub(crate) server: ServerName,
}

impl ClientRelay {
    /// The client session to relay `what` to, if it can take it.
    fn client(
        &self,
        what: &str,
        supports: fn(&rmcp::model::ClientCapabilities) -> bool,
    ) -> Result<Peer<RoleServer>, ErrorData> {
        let server = &self.server;
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| ErrorData::internal_error("the gateway is shutting down", None))?;
        let client = read(&shared.clients).first().cloned().ok_or_else(|| {
            ErrorData::internal_error(
                format!("{what} from server `{server}`: no client session yet"),
                None,
            )
        })?;
        match client.peer_info() {
            Some(info) if info.protocol_version.has_initialize() => {
                if supports(&info.capabilities) {
                    Ok(client)
                } else {
                    Err(ErrorData::invalid_request(
                        format!("{what} from server `{server}`: the client does not support it"),
                        None,
                    ))
                }
            }
            _ => Err(ErrorData::invalid_request(
                format!(
                    "{what} from server `{server}`: the client speaks the 2026-07-28 protocol, which has no server-to-client requests, and the gateway does not yet turn them into input-required results"
                ),
                None,
            )),
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
            let client = self.client("sampling", |c| c.sampling.is_some())?;
            relayed(client.create_message(params).await)
        })
    }

    fn create_elicitation(
        &self,
        params: ElicitRequestParams,
    ) -> Pin<Box<dyn Future<Output = Result<ElicitResult, ErrorData>> + Send + '_>> {
        Box::pin(async move {
            let client = self.client("elicitation", |c| c.elicitation.is_some())?;
            relayed(client.create_elicitation(params).await)
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
            let Some(client) = read(&shared.clients).first().cloned() else {
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
            let client = self.client("roots/list", |c| c.roots.is_some())?;
            relayed(client.list_roots().await)
        })
    }
}

/// Relays a backend's progress for one request to the client, under the
/// client's own token. Reports whose progress does not increase are dropped:
/// the protocol requires increasing values, and notifications can overtake
/// one another inside the gateway.
pub(crate) fn forward_progress(
    client: Peer<RoleServer>,
    token: ProgressToken,
) -> mpsc::Sender<ProgressNotificationParam> {
    let (sender, mut reports) = mpsc::channel::<ProgressNotificationParam>(32);
    tokio::spawn(async move {
        let mut last = f64::NEG_INFINITY;
        while let Some(mut report) = reports.recv().await {
            if report.progress <= last {
                continue;
            }
            last = report.progress;
            report.progress_token = token.clone();
            report.meta = None;
            if client.notify_progress(report).await.is_err() {
                return;
            }
        }
    });
    sender
}
