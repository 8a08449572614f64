//! The Streamable HTTP front: rmcp's Streamable HTTP service at `/mcp`,
//! behind the checks a network listener needs, plus `/healthz` and
//! `/readyz`.
//!
//! Every request to `/mcp` passes, in order: no token in the query string
//! (400); the bearer token, when authentication is on (401 with
//! `WWW-Authenticate`); the body limit (413); no JSON-RPC batch (400 with
//! `-32600`). rmcp then checks `Host` (loopback names, the listen address
//! and `--allow-host`) and `Origin` (only `--allow-origin`; any other,
//! `null` included, is 403). Responses pass the redaction filter, event by
//! event for SSE.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use mcpgw_mux::Mux;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;

use crate::redaction::Filter;
use crate::tokens::LiveTokens;

type Body = BoxBody<Bytes, Infallible>;

/// How long shutdown waits for open connections to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Open connections at most; further clients wait to be accepted.
const MAX_CONNECTIONS: usize = 4096;

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the HTTP front needs to know.
#[derive(Debug)]
pub(crate) struct HttpOptions {
    pub(crate) listen: SocketAddr,
    /// `Some` when authentication is on.
    pub(crate) tokens: Option<LiveTokens>,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) max_body: usize,
}

struct Gate {
    mcp: StreamableHttpService<Mux, LocalSessionManager>,
    sessions: Arc<LocalSessionManager>,
    mux: Mux,
    /// What `/metrics` encodes: the mux's metrics and the front's.
    registry: Registry,
    open_sessions: Gauge,
    tokens: Option<LiveTokens>,
    max_body: usize,
    filter: Filter,
}

/// Serves `mux` over HTTP until `shutdown` completes, then ends every
/// session and drains connections for up to five seconds.
pub(crate) async fn serve(
    mux: Mux,
    options: HttpOptions,
    filter: Filter,
    shutdown: impl std::future::Future<Output = &'static str>,
) -> anyhow::Result<()> {
    let sessions = CancellationToken::new();
    let mut hosts = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !options.listen.ip().is_unspecified() {
        hosts.push(options.listen.ip().to_string());
    }
    hosts.extend(options.allowed_hosts.iter().cloned());
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(options.allowed_origins.clone())
        .enforce_origin_validation()
        // A `2026-07-28` request (sessionless) whose handler sends nothing
        // before its answer gets that answer as one JSON body, not an SSE
        // stream; rmcp falls back to SSE when a notification comes first.
        // Handshake-era sessions keep their SSE streams.
        .with_json_response(true)
        .with_max_request_body_bytes(options.max_body);
    config.cancellation_token = sessions.clone();
    let factory = mux.clone();
    let sessions_manager = Arc::new(LocalSessionManager::default());
    let mut registry = Registry::default();
    mux.register_metrics(&mut registry);
    let open_sessions = Gauge::default();
    registry.register(
        "mcpgw_http_sessions",
        "Open handshake-era HTTP sessions",
        open_sessions.clone(),
    );
    registry.register(
        "mcpgw_redactions",
        "Client messages in which secret values were redacted or withheld",
        filter.redactions(),
    );
    let gate = Arc::new(Gate {
        mcp: StreamableHttpService::new(
            // Each session gets its own instances of `scope: session`
            // servers, removed when rmcp drops the session's service.
            move || Ok(factory.session()),
            sessions_manager.clone(),
            config,
        ),
        sessions: sessions_manager,
        mux,
        registry,
        open_sessions,
        tokens: options.tokens,
        max_body: options.max_body,
        filter,
    });
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    tracing::info!(
        "serving MCP at http://{}/mcp (authentication {})",
        listener.local_addr()?,
        if gate.tokens.is_some() { "on" } else { "off" }
    );
    let mut connections = JoinSet::new();
    let places = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &places) => accepted,
            signal = &mut shutdown => {
                tracing::info!("{signal}; ending HTTP sessions");
                break;
            }
        };
        let Some((stream, place)) = accepted else {
            break;
        };
        let gate = gate.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let gate = gate.clone();
                async move { Ok::<_, Infallible>(gate.handle(request).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(io, service)
                .await;
            drop(place);
        });
        // Finished connections leave the set as others arrive.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    sessions.cancel();
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
    connections.abort_all();
    Ok(())
}

/// A request without a valid bearer token.
struct Unauthorized;

fn unauthorized() -> Response<Body> {
    let mut response = plain(
        StatusCode::UNAUTHORIZED,
        "a valid bearer token is required (Authorization: Bearer <token>)",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"mcpgw\""),
    );
    response
}

/// The next connection, once there is a place for it. Accept errors (out
/// of file descriptors, say) are logged and retried after a pause, not in
/// a busy loop.
async fn accept(
    listener: &tokio::net::TcpListener,
    places: &Arc<tokio::sync::Semaphore>,
) -> Option<(tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    let place = places.clone().acquire_owned().await.ok()?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Small JSON-RPC answers must not wait for Nagle's
                // algorithm and the client's delayed ACK (40 ms a call).
                let _ = stream.set_nodelay(true);
                return Some((stream, place));
            }
            Err(err) => {
                tracing::warn!("cannot accept a connection: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(format!("{text}\n"))).boxed())
        .unwrap_or_default()
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .unwrap_or_default()
}

impl Gate {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        match request.uri().path() {
            "/healthz" => plain(StatusCode::OK, "ok"),
            "/readyz" => self.ready(),
            "/metrics" => match self.authenticate(&request) {
                Ok(_) => self.metrics().await,
                Err(Unauthorized) => unauthorized(),
            },
            "/mcp" => self.mcp(request).await,
            _ => plain(StatusCode::NOT_FOUND, "not found; MCP is served at /mcp"),
        }
    }

    /// With authentication on, the name and profile of the request's valid
    /// bearer token (`None` without authentication).
    fn authenticate<B>(
        &self,
        request: &Request<B>,
    ) -> Result<Option<(String, Option<String>)>, Unauthorized> {
        let Some(tokens) = &self.tokens else {
            return Ok(None);
        };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let tokens = tokens.current();
        if let Some(stored) = presented.and_then(|t| tokens.check(t)) {
            tracing::debug!(token = %stored.name, "authenticated");
            return Ok(Some((stored.name.clone(), stored.profile.clone())));
        }
        Err(Unauthorized)
    }

    /// The mux's metrics, plus sessions and redactions, in the OpenMetrics
    /// text format.
    async fn metrics(&self) -> Response<Body> {
        self.mux.refresh_metrics();
        let sessions = self.sessions.sessions.read().await.len();
        self.open_sessions
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot encode the metrics: {err}"),
            );
        }
        let mut response = plain(StatusCode::OK, text.trim_end());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        response
    }

    /// 200 when every server is up (or idle, ready to wake), else 503.
    fn ready(&self) -> Response<Body> {
        let states = self.mux.readiness();
        let ready = states
            .iter()
            .all(|(_, state)| *state != "starting" && *state != "failed");
        let body = serde_json::json!({
            "ready": ready,
            "servers": states.iter().map(|(n, s)| (n.clone(), *s)).collect::<std::collections::BTreeMap<_, _>>(),
        });
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json(status, &body)
    }

    async fn mcp(&self, request: Request<Incoming>) -> Response<Body> {
        if request.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|kv| kv.to_ascii_lowercase().contains("token"))
        }) {
            return plain(
                StatusCode::BAD_REQUEST,
                "tokens are accepted only in the Authorization header, never in the URL",
            );
        }
        let token = match self.authenticate(&request) {
            Ok(token) => token,
            Err(Unauthorized) => return unauthorized(),
        };
        let (mut parts, body) = request.into_parts();
        if let Some((name, profile)) = token {
            parts.extensions.insert(mcpgw_mux::ClientToken(name));
            if let Some(profile) = profile {
                parts.extensions.insert(mcpgw_mux::ClientProfile(profile));
            }
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let too_large = || {
            plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is over {} bytes", self.max_body),
            )
        };
        if declared.is_some_and(|n| n > self.max_body) {
            return too_large();
        }
        let Ok(bytes) = Limited::new(body, self.max_body)
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
        else {
            return too_large();
        };
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({
                    "jsonrpc": "2.0",
                    "id": null,
                    "error": {"code": -32600, "message": "JSON-RPC batches are not accepted; send one message per request"},
                }),
            );
        }
        let request = Request::from_parts(parts, Full::new(bytes));
        let response = match self.mcp.clone().call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        self.filtered(response)
    }

    /// The response with every JSON-RPC message passed through the filter.
    fn filtered(&self, response: Response<Body>) -> Response<Body> {
        if self.filter.is_noop() {
            return response;
        }
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let sse = kind.starts_with("text/event-stream");
        if !sse && !kind.starts_with("application/json") {
            return response;
        }
        let filter = self.filter.clone();
        let (parts, body) = response.into_parts();
        let mut pending: Vec<u8> = Vec::new();
        // How far `pending` is known to hold no event's end: each byte is
        // searched once, however many frames an event spans.
        let mut searched = 0;
        let body = body.map_frame(move |frame| {
            frame.map_data(|data| {
                pending.extend_from_slice(&data);
                Bytes::from(if sse {
                    take_events(&mut pending, &mut searched, &filter)
                } else {
                    take_json(&mut pending, &filter)
                })
            })
        });
        Response::from_parts(parts, body.boxed())
    }
}

/// The complete SSE events in `pending`, their `data:` lines filtered;
/// `searched` bytes of it are already known to end no event.
///
/// Hand-made rather than `sse-stream` (which rmcp uses to read): that
/// crate's parser drops comment lines, and the keep-alive pings of an SSE
/// stream are comments.
fn take_events(pending: &mut Vec<u8>, searched: &mut usize, filter: &Filter) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut from = searched.saturating_sub(1);
    while let Some(at) = memchr::memmem::find(&pending[from..], b"\n\n") {
        let end = from + at + 2;
        for line in pending[start..end]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            match line.strip_prefix(b"data:") {
                Some(data) => {
                    let mut message = data.trim_ascii_start().to_vec();
                    message.push(b'\n');
                    let kept = filter.line(&message);
                    if !kept.is_empty() {
                        out.extend_from_slice(b"data: ");
                        out.extend_from_slice(kept.trim_ascii_end());
                        out.push(b'\n');
                    }
                }
                None => {
                    out.extend_from_slice(line);
                    out.push(b'\n');
                }
            }
        }
        out.push(b'\n');
        start = end;
        from = end;
    }
    pending.drain(..start);
    *searched = pending.len();
    out
}

/// A JSON body, once whole (it arrives as one message).
fn take_json(pending: &mut Vec<u8>, filter: &Filter) -> Vec<u8> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(pending).is_err() {
        return Vec::new();
    }
    let mut message = std::mem::take(pending);
    message.push(b'\n');
    let kept = filter.line(&message).into_owned();
    kept.trim_ascii_end().to_vec()
}

#[cfg(test)]
mod tests {
    use mcpgw_catalog::Redaction;

    use super::*;
    use crate::redaction::tests::{VALUE, filter};

    #[test]
    fn sse_events_are_filtered_whole_however_they_are_split() {
        let stream = format!(
            ": ping\n\nid: 1\ndata: {{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"t\":\"{VALUE}\"}}}}\n\ndata: {{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{{}}}}\n\n"
        );
        let filter = filter(Redaction::Redact);
        let whole = take_events(&mut stream.as_bytes().to_vec(), &mut 0, &filter);
        let (mut pending, mut searched, mut split) = (Vec::new(), 0, Vec::new());
        for byte in stream.as_bytes() {
            pending.push(*byte);
            split.extend(take_events(&mut pending, &mut searched, &filter));
        }
        assert!(pending.is_empty(), "every event was taken");
        assert_eq!(split, whole, "byte by byte as at once");
        let text = String::from_utf8(whole).unwrap();
        assert!(
            !text.contains(VALUE) && text.contains("[REDACTED:api.token]"),
            "{text}"
        );
        assert!(
            text.starts_with(": ping\n\nid: 1\ndata: "),
            "comments and ids kept: {text}"
        );
        assert!(
            text.ends_with("data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n"),
            "{text}"
        );
    }
}
