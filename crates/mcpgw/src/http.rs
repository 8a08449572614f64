//! The Streamable HTTP front: rmcp's Streamable HTTP service at `/mcp`,
//! behind the checks a network listener needs, plus `/healthz`, `/readyz`
//! and `/metrics`, routed by axum and served by hyper.
//!
//! Every request to `/mcp` passes, in order: no token in the query string
//! (400); the bearer token, when authentication is on: one of the token
//! store's, else an OAuth access token (`oauth.rs`) (401 with
//! `WWW-Authenticate`, naming the protected resource metadata under OAuth,
//! which `/.well-known/oauth-protected-resource` serves; 403 for a token
//! lacking a scope); the body limit (413) and the body's idle timeout
//! (408), both tower-http layers; no JSON-RPC batch (400 with `-32600`).
//! rmcp then checks `Host` (loopback names, the listen address and
//! `--allow-host`) and `Origin` (only `--allow-origin`; any other, `null`
//! included, is 403). Responses pass the redaction filter, event by event
//! for SSE.
//!
//! The accept loop is its own, not `axum::serve`: that one sets no timer
//! on hyper (so no header timeout), caps nothing, and detaches its
//! connection tasks, which a drain deadline could then not end.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{self, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state, map_response_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, LengthLimitError};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use mcpgw_mux::Mux;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::{Service as _, ServiceBuilder};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutError};

use crate::oauth::{OAuth, Refusal};
use crate::redaction::Filter;
use crate::tokens::LiveTokens;

/// What rmcp's service answers with.
type McpBody = BoxBody<Bytes, Infallible>;

/// How long shutdown waits for open connections to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Open connections at most; further clients wait to be accepted.
///
/// A cap on connections, not tower's `ConcurrencyLimit` on requests: an
/// HTTP/1.1 connection carries one request at a time, so this cap bounds
/// requests in flight too, and it also bounds what a request limit cannot
/// see (idle keep-alive connections and SSE streams, whose requests are
/// done once their headers are sent), which is what costs descriptors.
const MAX_CONNECTIONS: usize = 4096;

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request body may pause between two of its frames.
const BODY_IDLE: Duration = Duration::from_secs(30);

/// What the HTTP front needs to know.
#[derive(Debug)]
pub(crate) struct HttpOptions {
    pub(crate) listen: SocketAddr,
    /// `Some` when token-store authentication is on.
    pub(crate) tokens: Option<LiveTokens>,
    /// `Some` when OAuth access tokens are accepted.
    pub(crate) oauth: Option<OAuth>,
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
    oauth: Option<OAuth>,
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
    let listen = options.listen;
    let authentication = match (&options.tokens, &options.oauth) {
        (None, None) => "off",
        (Some(_), None) => "tokens",
        (None, Some(_)) => "OAuth",
        (Some(_), Some(_)) => "tokens and OAuth",
    };
    let app = app(mux, options, filter, sessions.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        "serving MCP at http://{}/mcp (authentication {authentication})",
        listener.local_addr()?,
    );
    let graceful = GracefulShutdown::new();
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
        let connection = graceful.watch(connection(TokioIo::new(stream), app.clone()));
        connections.spawn(async move {
            let _ = connection.await;
            drop(place);
        });
        // Finished connections leave the set as others arrive.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // Ending the sessions ends their SSE streams; `graceful` then lets
    // each connection finish its request and closes it.
    sessions.cancel();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!("connections still open after {DRAIN:?}; closing them");
        }
    }
    connections.abort_all();
    Ok(())
}

/// One HTTP/1.1 connection serving `app`, its headers due within
/// [`HEADER_TIMEOUT`].
fn connection<I>(
    io: I,
    app: Router,
) -> hyper::server::conn::http1::Connection<I, TowerToHyperService<Router>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, TowerToHyperService::new(app))
}

/// The routes and their checks; `sessions` ends every handshake-era
/// session when cancelled.
fn app(mux: Mux, options: HttpOptions, filter: Filter, sessions: CancellationToken) -> Router {
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
    config.cancellation_token = sessions;
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
        oauth: options.oauth,
        max_body: options.max_body,
        filter,
    });
    // Outermost first, in the order the module's doc lists. No timeout on
    // the handler (tower-http's `TimeoutLayer`): a tool call's answer is
    // the response, and a call may rightly run for minutes.
    let mcp = any(mcp).layer(
        ServiceBuilder::new()
            .layer(from_fn(no_token_in_url))
            .layer(from_fn_with_state(gate.clone(), authenticate))
            .layer(map_response_with_state(gate.clone(), name_the_limit))
            .layer(RequestBodyLimitLayer::new(options.max_body))
            .layer(RequestBodyTimeoutLayer::new(BODY_IDLE)),
    );
    Router::new()
        .route("/healthz", any(async || plain(StatusCode::OK, "ok")))
        .route("/readyz", any(ready))
        .route(
            "/metrics",
            any(metrics).layer(from_fn_with_state(gate.clone(), authenticate)),
        )
        .route("/mcp", mcp)
        .route(
            "/.well-known/oauth-protected-resource",
            any(resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            any(resource_metadata),
        )
        .fallback(async || plain(StatusCode::NOT_FOUND, "not found; MCP is served at /mcp"))
        .with_state(gate)
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

fn plain(status: StatusCode, text: &str) -> Response {
    let kind = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    (status, kind, format!("{text}\n")).into_response()
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let kind = [(header::CONTENT_TYPE, "application/json")];
    (status, kind, value.to_string()).into_response()
}

fn too_large(max_body: usize) -> Response {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is over {max_body} bytes"),
    )
}

/// Refuses a token in the query string, where logs and proxies keep it.
async fn no_token_in_url(request: Request, next: Next) -> Response {
    if request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.to_ascii_lowercase().contains("token"))
    }) {
        return plain(
            StatusCode::BAD_REQUEST,
            "tokens are accepted only in the Authorization header, never in the URL",
        );
    }
    next.run(request).await
}

/// With authentication on, passes only a request with a valid bearer
/// token: one of the store's, carrying its name (for the audit trail) and
/// its profile (if it has one) to the mux; else, under OAuth, an access
/// token, carrying its subject and the profile its claims select.
async fn authenticate(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    if gate.tokens.is_none() && gate.oauth.is_none() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let (name, profile) = match (presented, &gate.tokens, &gate.oauth) {
        (Some(token), tokens, oauth) => {
            let stored = tokens
                .as_ref()
                .and_then(|t| t.current().check(&token).cloned());
            match (stored, oauth) {
                (Some(stored), _) => (stored.name, stored.profile),
                (None, Some(oauth)) => match oauth.check(&token).await {
                    Ok(identity) => (identity.name(), identity.profile),
                    Err(refusal) => return gate.refuse(Some(&refusal)),
                },
                (None, None) => return gate.refuse(None),
            }
        }
        (None, ..) => return gate.refuse(None),
    };
    tracing::debug!(client = %name, "authenticated");
    let extensions = request.extensions_mut();
    extensions.insert(mcpgw_mux::ClientToken(name));
    if let Some(profile) = profile {
        extensions.insert(mcpgw_mux::ClientProfile(profile));
    }
    next.run(request).await
}

/// The RFC 9728 protected resource metadata; 404 without OAuth.
async fn resource_metadata(State(gate): State<Arc<Gate>>) -> Response {
    match &gate.oauth {
        Some(oauth) => json(StatusCode::OK, oauth.metadata()),
        None => plain(
            StatusCode::NOT_FOUND,
            "not found; this gateway is not an OAuth resource server (--auth oauth)",
        ),
    }
}

/// tower-http's body limit refuses a declared length over the limit with
/// a bare "length limit exceeded"; the answer names the limit instead.
async fn name_the_limit<B>(State(gate): State<Arc<Gate>>, response: http::Response<B>) -> Response
where
    http::Response<B>: IntoResponse,
{
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(gate.max_body);
    }
    response.into_response()
}

/// The mux's metrics, plus sessions and redactions, in the OpenMetrics
/// text format.
async fn metrics(State(gate): State<Arc<Gate>>) -> Response {
    gate.mux.refresh_metrics();
    let sessions = gate.sessions.sessions.read().await.len();
    gate.open_sessions
        .set(i64::try_from(sessions).unwrap_or(i64::MAX));
    let mut text = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &gate.registry) {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the metrics: {err}"),
        );
    }
    let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let text = plain(StatusCode::OK, text.trim_end());
    ([(header::CONTENT_TYPE, kind)], text).into_response()
}

/// 200 when every server is up (or idle, ready to wake), else 503.
async fn ready(State(gate): State<Arc<Gate>>) -> Response {
    let states = gate.mux.readiness();
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

/// Whether `err` or one of its sources is an `E`.
fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(err), |e| e.source()).any(<dyn std::error::Error>::is::<E>)
}

/// The body, read whole within the layers' limits and refused if it is a
/// batch; then rmcp's answer, filtered.
async fn mcp(State(gate): State<Arc<Gate>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if caused_by::<LengthLimitError>(&err) => return too_large(gate.max_body),
        Err(err) if caused_by::<TimeoutError>(&err) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the request body paused for over {} s; send it without stalling",
                    BODY_IDLE.as_secs()
                ),
            );
        }
        Err(err) => {
            return plain(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body: {err}"),
            );
        }
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
    let response = match gate.mcp.clone().call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    gate.filtered(response).map(axum::body::Body::new)
}

impl Gate {
    /// The answer to a request without a usable token (`None`) or with
    /// one `refusal` names: 401, or 403 for a lacking scope, with the
    /// challenge that tells a client where to get a token.
    fn refuse(&self, refusal: Option<&Refusal>) -> Response {
        let (status, challenge, reason) = match (&self.oauth, refusal) {
            (None, _) => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"mcpgw\"".to_string(),
                "a valid bearer token is required (Authorization: Bearer <token>)".to_string(),
            ),
            (Some(oauth), None) => (
                StatusCode::UNAUTHORIZED,
                oauth.challenge(None),
                format!(
                    "a bearer token is required; get one from the authorization server named at {}",
                    oauth.metadata_url()
                ),
            ),
            (Some(oauth), Some(refusal @ Refusal::Invalid(reason))) => (
                StatusCode::UNAUTHORIZED,
                oauth.challenge(Some(refusal)),
                reason.clone(),
            ),
            (Some(oauth), Some(refusal @ Refusal::Insufficient { reason, .. })) => (
                StatusCode::FORBIDDEN,
                oauth.challenge(Some(refusal)),
                reason.clone(),
            ),
        };
        let challenge = header::HeaderValue::from_str(&challenge)
            .unwrap_or_else(|_| header::HeaderValue::from_static("Bearer realm=\"mcpgw\""));
        (
            [(header::WWW_AUTHENTICATE, challenge)],
            plain(status, &reason),
        )
            .into_response()
    }

    /// The response with every JSON-RPC message passed through the filter.
    fn filtered(&self, response: http::Response<McpBody>) -> http::Response<McpBody> {
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
        http::Response::from_parts(parts, body.boxed())
    }
}

/// The complete SSE events in `pending`, their `data:` lines filtered;
/// `searched` bytes of it are already known to end no event.
///
/// Hand-made rather than `sse-stream` (which rmcp uses to read and
/// write): its parser drops comment lines, and the keep-alive pings that
/// keep an idle SSE stream open through proxies are comments; it would
/// also reorder an event's fields and end the stream at a field it does
/// not know. Here only `data:` lines change, and each byte of the stream
/// is searched for an event's end once.
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

    use http_body_util::channel::{Channel, Sender};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::time::Instant;
    use tower::ServiceExt as _;

    use super::*;
    use crate::redaction::tests::{VALUE, filter};

    /// The front over a mux whose one server never starts, bodies limited
    /// to `max_body`.
    fn front(max_body: usize) -> (Router, mcpgw_mux::Slots) {
        let catalog = mcpgw_catalog::parse(
            "version: 1\nservers:\n  one: { image: mcpgw/testserver:dev, pull: never }\n",
            std::path::Path::new("t.yaml"),
            &std::env::temp_dir(),
        )
        .unwrap();
        let (mux, slots) = Mux::new(&catalog);
        let options = HttpOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens: None,
            oauth: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body,
        };
        let app = app(
            mux,
            options,
            filter(Redaction::Redact),
            CancellationToken::new(),
        );
        (app, slots)
    }

    async fn answer(app: &Router, request: Request) -> (StatusCode, String) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn post(uri: &str, body: impl Into<axum::body::Body>) -> Request {
        Request::post(uri)
            .header(header::HOST, "localhost")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(body.into())
            .unwrap()
    }

    /// A body that sends `chunks` and then, while `Sender` lives, nothing.
    async fn streamed(chunks: &[&str]) -> (axum::body::Body, Sender<Bytes, Infallible>) {
        let (mut sender, body) = Channel::new(chunks.len());
        for chunk in chunks {
            let chunk = Bytes::copy_from_slice(chunk.as_bytes());
            sender.send_data(chunk).await.unwrap();
        }
        (axum::body::Body::new(body), sender)
    }

    #[tokio::test]
    async fn each_check_answers_with_its_status_and_reason() {
        let (app, _slots) = front(64);
        let big = "x".repeat(100);
        let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let (two_halves, sender) = streamed(&[&big, &big]).await;
        drop(sender);
        let over = "the request body is over 64 bytes\n";
        let mut declared = post("/mcp", big.clone());
        declared
            .headers_mut()
            .insert(header::CONTENT_LENGTH, header::HeaderValue::from(100));
        for (request, status, reason) in [
            (declared, StatusCode::PAYLOAD_TOO_LARGE, over),
            (
                post("/mcp", big.clone()),
                StatusCode::PAYLOAD_TOO_LARGE,
                over,
            ),
            (
                post("/mcp", two_halves),
                StatusCode::PAYLOAD_TOO_LARGE,
                over,
            ),
            (
                post("/mcp?access_token=abc", ping),
                StatusCode::BAD_REQUEST,
                "tokens are accepted only in the Authorization header",
            ),
            (
                post("/mcp", format!(" [{ping}]")),
                StatusCode::BAD_REQUEST,
                r#""code":-32600"#,
            ),
            (
                Request::get("/healthz")
                    .body(axum::body::Body::empty())
                    .unwrap(),
                StatusCode::OK,
                "ok\n",
            ),
            (
                Request::get("/mcp/")
                    .body(axum::body::Body::empty())
                    .unwrap(),
                StatusCode::NOT_FOUND,
                "not found; MCP is served at /mcp",
            ),
        ] {
            let what = format!("{} {}", request.method(), request.uri());
            let (got, body) = answer(&app, request).await;
            assert_eq!(got, status, "{what}: {body}");
            assert!(body.contains(reason), "{what}: {body}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_body_that_stalls_is_refused_after_the_idle_timeout() {
        let (app, _slots) = front(64);
        let (body, _sender) = streamed(&["{\"jsonrpc\":"]).await;
        let started = Instant::now();
        let (status, text) = answer(&app, post("/mcp", body)).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{text}");
        assert!(started.elapsed() >= BODY_IDLE, "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_whose_headers_stall_is_cut_off() {
        let (app, _slots) = front(64);
        let mut answers = Vec::new();
        for request in [
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\n",
        ] {
            let (mut client, server) = tokio::io::duplex(4096);
            let serving = tokio::spawn(connection(TokioIo::new(server), app.clone()));
            client.write_all(request.as_bytes()).await.unwrap();
            let started = Instant::now();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            answers.push((
                String::from_utf8(answer).unwrap(),
                started.elapsed() >= HEADER_TIMEOUT,
                serving.await.unwrap().is_ok(),
            ));
        }
        let [
            (whole, whole_waited, whole_ok),
            (stalled, stalled_waited, stalled_ok),
        ] = &answers[..]
        else {
            unreachable!()
        };
        assert!(
            whole.starts_with("HTTP/1.1 200 OK") && !whole_waited && *whole_ok,
            "{whole}"
        );
        assert!(
            !stalled.contains("200 OK") && *stalled_waited && !stalled_ok,
            "{stalled}"
        );
    }

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
