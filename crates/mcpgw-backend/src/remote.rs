//! A remote server over Streamable HTTP, opened as a byte stream so that
//! [`crate::Backend::connect`] runs the same session over it as over a
//! container's stdio: the same handshake (and fallback between eras), the
//! same deadlines, progress, logs, cancellations and `closed()` signal.
//!
//! rmcp's Streamable HTTP client transport speaks to the server; a bridge
//! task carries each JSON-RPC line the session writes to it and each
//! message it receives back as a line. The transport's HTTP client is
//! reqwest with three guards, so the SSRF policy of the catalog
//! ([`RemoteSpec::admits`]) is kept at every connection, not only at
//! start-up: a DNS resolver that hands the connector only admitted
//! addresses (the address checked is the address connected to, so a name
//! that changes to a private address is refused when it does), a redirect
//! policy that follows none, and no proxy (which would resolve names
//! itself). The credentials are the gateway's own: header values built
//! from secrets, or a client-credentials token fetched, cached until
//! shortly before it expires, and fetched again; the client's token never
//! comes here.
//!
//! It does not decide when to reconnect: a transport failure ends the
//! session, and the supervisor restarts it as it would a container.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use mcpgw_catalog::{ClientCredentials, HeaderSpec, RemoteSpec, SecretName};
use rmcp::model::{
    ClientJsonRpcMessage, ErrorData, JsonRpcMessage, RequestId, ServerJsonRpcMessage,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::Transport as _;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::io::{AsyncWriteExt as _, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LinesCodec};

/// How long a connection to a remote (or its token endpoint) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a token request may take: a token endpoint that hangs is a
/// failure of the server, never a hang of its calls.
const TOKEN_DEADLINE: Duration = Duration::from_secs(15);

/// The most of a token endpoint's answer read.
const TOKEN_BODY_LIMIT: usize = 64 * 1024;

/// How long closing the remote session (its `DELETE`) may take.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Bytes in flight between the session and the bridge, each way; a
/// writer beyond them waits.
const PIPE_BYTES: usize = 64 * 1024;

/// Messages sent and not yet handed over by the transport; past them the
/// bridge reads no further from the session (which then waits).
const MAX_SENDS: usize = 256;

/// Why a remote server could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The SSRF guard refused the URL or every address its host resolves
    /// to; nothing changes that but the catalog or the DNS.
    #[error("remote server `{server}` is refused: {reason}")]
    Refused {
        /// The catalog server.
        server: String,
        /// Which address, and why.
        reason: String,
    },
    /// A secret its credentials need was not resolved.
    #[error("remote server `{server}` needs secret `{name}`, which was not resolved")]
    MissingSecret {
        /// The catalog server.
        server: String,
        /// The secret.
        name: String,
    },
    /// A header value built from a secret is not a valid header value.
    #[error(
        "remote server `{server}`: header `{header}` is not a valid HTTP header value once its secret is in place (the value holds a line break or control character)"
    )]
    BadHeader {
        /// The catalog server.
        server: String,
        /// The header.
        header: String,
    },
    /// The HTTP client could not be built.
    #[error("remote server `{server}`: the HTTP client could not be built: {reason}")]
    Client {
        /// The catalog server.
        server: String,
        /// What reqwest said.
        reason: String,
    },
    /// The host did not resolve.
    #[error("remote server `{server}` cannot be reached: {reason}")]
    Unreachable {
        /// The catalog server.
        server: String,
        /// What failed.
        reason: String,
    },
    /// No access token could be had from the token endpoint.
    #[error("remote server `{server}` has no access token: {reason}")]
    Token {
        /// The catalog server.
        server: String,
        /// What the token endpoint said, or why it said nothing.
        reason: String,
    },
}

impl RemoteError {
    /// Whether retrying cannot help until the catalog, the secrets or the
    /// DNS change.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. }
                | Self::MissingSecret { .. }
                | Self::BadHeader { .. }
                | Self::Client { .. }
        )
    }
}

/// Why a remote session's bridge ended it, once it did.
#[derive(Debug, Clone, Default)]
pub struct Ended(Arc<parking_lot::Mutex<Option<String>>>);

impl Ended {
    /// The reason, if the bridge ended the session (rather than the
    /// session itself).
    pub fn reason(&self) -> Option<String> {
        self.0.lock().clone()
    }
}

/// An open remote session's byte stream: what [`crate::Backend::connect`]
/// reads and writes, and why the bridge behind it ended.
#[derive(Debug)]
pub struct Opened {
    /// The server's messages, one JSON line each.
    pub read: ReadHalf<DuplexStream>,
    /// The gateway's messages to it, one JSON line each.
    pub write: WriteHalf<DuplexStream>,
    /// Set when the bridge ends the session.
    pub ended: Ended,
}

/// One remote server: its guarded HTTP client and its credentials. Built
/// once per server and kept across its sessions, so that a cached token
/// outlives a reconnection.
#[derive(Clone)]
pub struct Remote {
    server: Arc<str>,
    spec: Arc<RemoteSpec>,
    http: reqwest::Client,
    headers: HashMap<HeaderName, HeaderValue>,
    tokens: Option<Arc<Tokens>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("server", &self.server)
            .field("url", &self.spec.url.as_str())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("oauth", &self.tokens.is_some())
            .finish()
    }
}

impl Remote {
    /// The remote `spec` of catalog server `server`, its secrets looked up
    /// by `secret`.
    ///
    /// # Errors
    ///
    /// A missing secret, a header value that is not one, or a client that
    /// cannot be built.
    pub fn new(
        server: &str,
        spec: &RemoteSpec,
        secret: impl Fn(&SecretName) -> Option<SecretString>,
    ) -> Result<Self, RemoteError> {
        let spec = Arc::new(spec.clone());
        let missing = |name: &SecretName| RemoteError::MissingSecret {
            server: server.to_string(),
            name: name.to_string(),
        };
        let mut headers = HashMap::new();
        for (name, value) in &spec.headers {
            let bad = || RemoteError::BadHeader {
                server: server.to_string(),
                header: name.clone(),
            };
            let header = HeaderName::try_from(name.as_str()).map_err(|_| bad())?;
            let mut value = match value {
                HeaderSpec::Plain(text) => {
                    HeaderValue::try_from(text.as_str()).map_err(|_| bad())?
                }
                HeaderSpec::Secret { name, format } => {
                    let value = secret(name).ok_or_else(|| missing(name))?;
                    let text = SecretString::from(format.replacen("{}", value.expose_secret(), 1));
                    HeaderValue::try_from(text.expose_secret()).map_err(|_| bad())?
                }
            };
            // Kept out of reqwest's and hyper's own `Debug` output.
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        let http = guarded_client(server, &spec, spec.url.scheme())?;
        let tokens = match &spec.oauth {
            None => None,
            Some(credentials) => {
                let client_secret = secret(&credentials.client_secret)
                    .ok_or_else(|| missing(&credentials.client_secret))?;
                Some(Arc::new(Tokens {
                    http: guarded_client(server, &spec, credentials.token_url.scheme())?,
                    resource: credentials
                        .resource
                        .clone()
                        .unwrap_or_else(|| spec.url.to_string()),
                    credentials: credentials.clone(),
                    client_secret,
                    cached: tokio::sync::Mutex::new(None),
                }))
            }
        };
        Ok(Self {
            server: Arc::from(server),
            spec,
            http,
            headers,
            tokens,
        })
    }

    /// The endpoint.
    pub fn url(&self) -> &url::Url {
        &self.spec.url
    }

    /// Checks the endpoint's address against the guard, gets a token when
    /// the server needs one, and opens the byte stream a session runs
    /// over; `in_flight` bounds the requests posted at once.
    ///
    /// # Errors
    ///
    /// A refused address, a name that does not resolve, or no token.
    pub async fn open(&self, in_flight: usize) -> Result<Opened, RemoteError> {
        let guard = Guard {
            spec: self.spec.clone(),
            scheme: self.spec.url.scheme().to_string(),
        };
        guard.check(&self.server, &self.spec.url).await?;
        if let Some(tokens) = &self.tokens {
            tokens
                .current()
                .await
                .map_err(|reason| RemoteError::Token {
                    server: self.server.to_string(),
                    reason,
                })?;
        }
        let client = Authed {
            http: self.http.clone(),
            tokens: self.tokens.clone(),
        };
        let config = StreamableHttpClientTransportConfig::with_uri(self.spec.url.as_str())
            .custom_headers(self.headers.clone())
            .max_concurrent_requests(in_flight.saturating_add(1));
        let transport = StreamableHttpClientTransport::with_client(client, config);
        let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
        let (read, write) = tokio::io::split(ours);
        let ended = Ended::default();
        tokio::spawn(bridge(
            self.server.clone(),
            transport,
            theirs,
            ended.clone(),
        ));
        Ok(Opened { read, write, ended })
    }
}

/// The reqwest client of one remote: its names resolved through the
/// guard, no redirect followed, no proxy.
fn guarded_client(
    server: &str,
    spec: &Arc<RemoteSpec>,
    scheme: &str,
) -> Result<reqwest::Client, RemoteError> {
    let guard = Guard {
        spec: spec.clone(),
        scheme: scheme.to_string(),
    };
    reqwest::Client::builder()
        .dns_resolver(guard)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let to = attempt.url().to_string();
            attempt.error(format!(
                "the server redirected to {to}, and the gateway follows no redirect of a remote server (it could lead to an address the SSRF guard refuses); set `url` to the endpoint it redirects to, if that is trusted"
            ))
        }))
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| RemoteError::Client {
            server: server.to_string(),
            reason: chain(&e),
        })
}

/// The SSRF guard as a DNS resolver: only the addresses the catalog's
/// policy admits reach the connector.
#[derive(Debug, Clone)]
struct Guard {
    spec: Arc<RemoteSpec>,
    /// The scheme of the URL this client reaches (plain `http` is
    /// admitted on loopback only).
    scheme: String,
}

/// Why the guard gave no address.
enum Refusal {
    /// Every address is refused by the policy.
    Policy(String),
    /// The name did not resolve.
    Lookup(String),
}

impl Guard {
    /// The admitted addresses of `host`.
    async fn admitted(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Refusal::Lookup(format!("`{host}` does not resolve: {e}")))?
            .collect();
        let mut admitted = Vec::new();
        let mut refused = Vec::new();
        for addr in found {
            match self.spec.admits(addr.ip(), &self.scheme) {
                Ok(()) => admitted.push(addr),
                Err(why) => refused.push(why),
            }
        }
        if admitted.is_empty() {
            refused.dedup();
            return Err(if refused.is_empty() {
                Refusal::Lookup(format!("`{host}` resolves to no address"))
            } else {
                Refusal::Policy(format!(
                    "`{host}` resolves only to refused addresses: {}",
                    refused.join("; ")
                ))
            });
        }
        Ok(admitted)
    }

    /// The check made before a session opens: the URL as written, then
    /// the addresses its host resolves to now.
    async fn check(&self, server: &str, url: &url::Url) -> Result<(), RemoteError> {
        let refused = |reason: String| RemoteError::Refused {
            server: server.to_string(),
            reason: format!("{url}: {reason}"),
        };
        self.spec.check_url(url).map_err(refused)?;
        let Some(url::Host::Domain(host)) = url.host() else {
            return Ok(());
        };
        match self
            .admitted(host, url.port_or_known_default().unwrap_or(0))
            .await
        {
            Ok(_) => Ok(()),
            Err(Refusal::Policy(reason)) => Err(refused(reason)),
            Err(Refusal::Lookup(reason)) => Err(RemoteError::Unreachable {
                server: server.to_string(),
                reason,
            }),
        }
    }
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            match guard.admitted(&host, 0).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs),
                Err(Refusal::Policy(why) | Refusal::Lookup(why)) => Err(why.into()),
            }
        })
    }
}

/// The OAuth client-credentials grant of one remote: its token, cached.
struct Tokens {
    http: reqwest::Client,
    credentials: ClientCredentials,
    client_secret: SecretString,
    /// The RFC 8707 resource asked for.
    resource: String,
    /// The token and when to fetch the next; the lock makes concurrent
    /// requests wait for one fetch rather than each make their own.
    cached: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    value: SecretString,
    renew_at: Instant,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
}

#[derive(serde::Deserialize)]
struct TokenRefusal {
    error: String,
    error_description: Option<String>,
}

impl Tokens {
    /// The current token: the cached one until shortly before it expires,
    /// then a fresh one.
    async fn current(&self) -> Result<SecretString, String> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = &*cached
            && Instant::now() < token.renew_at
        {
            return Ok(token.value.clone());
        }
        *cached = None;
        let token = tokio::time::timeout(TOKEN_DEADLINE, self.fetch())
            .await
            .map_err(|_| {
                format!(
                    "the token endpoint {} did not answer within {TOKEN_DEADLINE:?}",
                    self.credentials.token_url
                )
            })??;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// Forgets the cached token (the server refused it).
    async fn forget(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<Token, String> {
        let url = &self.credentials.token_url;
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if !self.credentials.scopes.is_empty() {
                form.append_pair("scope", &self.credentials.scopes.join(" "));
            }
            form.append_pair("resource", &self.resource);
            form.finish()
        };
        // RFC 6749, section 2.3.1: both parts form-encoded inside Basic.
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let started = Instant::now();
        let response = self
            .http
            .post(url.as_str())
            .basic_auth(
                encode(&self.credentials.client_id),
                Some(encode(self.client_secret.expose_secret())),
            )
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "the token endpoint {url} could not be reached: {}",
                    chain(&e)
                )
            })?;
        let status = response.status();
        let body = bounded_body(response, TOKEN_BODY_LIMIT)
            .await
            .map_err(|e| format!("the token endpoint {url} answered {status}, and then: {e}"))?;
        if !status.is_success() {
            let said = serde_json::from_slice::<TokenRefusal>(&body).map_or_else(
                |_| String::new(),
                |r| match r.error_description {
                    Some(d) => format!(": {} ({d})", r.error),
                    None => format!(": {}", r.error),
                },
            );
            return Err(format!(
                "the token endpoint {url} refused the client-credentials grant for client `{}` with {status}{said}; check the client's ID, secret and scopes there",
                self.credentials.client_id
            ));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| format!("the token endpoint {url} answered with no token: {e}"))?;
        if !parsed.token_type.eq_ignore_ascii_case("bearer") {
            return Err(format!(
                "the token endpoint {url} issued a `{}` token; only bearer tokens are supported",
                parsed.token_type
            ));
        }
        // Renewed ahead of its expiry by a fifth of its life (at most 30
        // seconds), so no request carries a token that expires on the way;
        // a token without a lifetime is kept a minute.
        let life = parsed
            .expires_in
            .map_or(Duration::from_secs(60), Duration::from_secs);
        let margin = (life / 5).min(Duration::from_secs(30));
        tracing::debug!(token_url = %url, lifetime = ?life, "fetched an access token");
        Ok(Token {
            value: SecretString::from(parsed.access_token),
            renew_at: started + life.saturating_sub(margin),
        })
    }
}

/// A response's body, at most `limit` bytes.
async fn bounded_body(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| chain(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("its answer is over {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// rmcp's reqwest client with the gateway's credentials: the current
/// access token on every request, fetched again once when the server
/// refuses it (401). Everything else is reqwest's implementation.
#[derive(Clone)]
struct Authed {
    http: reqwest::Client,
    tokens: Option<Arc<Tokens>>,
}

type HttpError = StreamableHttpError<reqwest::Error>;

impl Authed {
    async fn token(&self) -> Result<Option<String>, HttpError> {
        match &self.tokens {
            None => Ok(None),
            Some(tokens) => tokens
                .current()
                .await
                .map(|t| Some(t.expose_secret().to_string()))
                .map_err(|why| HttpError::Io(std::io::Error::other(why))),
        }
    }

    /// Runs `call` with the current token; on a 401, once more with a
    /// fresh one.
    async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, HttpError>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, HttpError>>,
    {
        let result = call(self.token().await?).await;
        match (result, &self.tokens) {
            (Err(StreamableHttpError::AuthRequired(_)), Some(tokens)) => {
                tracing::debug!("the remote refused its access token; fetching a new one");
                tokens.forget().await;
                call(self.token().await?).await
            }
            (result, _) => result,
        }
    }
}

impl StreamableHttpClient for Authed {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.with_token(|token| {
            self.http.post_message(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                token,
                headers.clone(),
            )
        })
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.with_token(|token| {
            self.http.post_message_with_max_sse_event_size(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                token,
                headers.clone(),
                max_sse_event_size,
            )
        })
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.with_token(|token| {
            self.http.post_message_with_response_limits(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                token,
                headers.clone(),
                limits,
            )
        })
        .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        self.with_token(|token| {
            self.http
                .delete_session(uri.clone(), session_id.clone(), token, headers.clone())
        })
        .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<sse_stream::Sse, sse_stream::Error>>, HttpError> {
        self.with_token(|token| {
            self.http.get_stream(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                token,
                headers.clone(),
            )
        })
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<sse_stream::Sse, sse_stream::Error>>, HttpError> {
        self.with_token(|token| {
            self.http.get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                token,
                headers.clone(),
                max_sse_event_size,
            )
        })
        .await
    }
}

/// Carries the session's lines to the transport and the transport's
/// messages back as lines, until either side ends. A send that fails
/// answers its request with the failure and, unless the server merely
/// answered with an HTTP error status, ends the session: a remote that
/// cannot be reached, or whose token cannot be had, is a failed server
/// for the supervisor to restart. Ends on its own, with the session or
/// the transport; a last `DELETE` of the session is bounded by
/// [`CLOSE_GRACE`].
async fn bridge(
    server: Arc<str>,
    mut transport: StreamableHttpClientTransport<Authed>,
    side: DuplexStream,
    ended: Ended,
) {
    let (read, mut write) = tokio::io::split(side);
    let mut lines = FramedRead::new(
        read,
        LinesCodec::new_with_max_length(crate::guard::MAX_LINE),
    );
    let mut sends: JoinSet<(Option<RequestId>, Result<(), HttpError>)> = JoinSet::new();
    let why = loop {
        tokio::select! {
            line = lines.next(), if sends.len() < MAX_SENDS => match line {
                // The session closed its end.
                None => break None,
                Some(Err(err)) => break Some(format!("the gateway's own message could not be read: {err}")),
                Some(Ok(line)) => {
                    let message: ClientJsonRpcMessage = match serde_json::from_str(&line) {
                        Ok(message) => message,
                        Err(err) => {
                            tracing::warn!(server = %server, "not sent to the remote: not a JSON-RPC message ({err})");
                            continue;
                        }
                    };
                    let id = match &message {
                        JsonRpcMessage::Request(request) => Some(request.id.clone()),
                        _ => None,
                    };
                    let send = transport.send(message);
                    sends.spawn(async move { (id, send.await) });
                }
            },
            message = transport.receive() => match message {
                // The transport gave up; the sends it failed say why.
                None => break Some(
                    failed_sends(&mut sends, &mut write)
                        .await
                        .unwrap_or_else(|| "the remote session ended".to_string()),
                ),
                Some(message) => {
                    if write_line(&mut write, &message).await.is_err() {
                        break None;
                    }
                }
            },
            Some(Ok((id, result))) = sends.join_next() => {
                let Err(err) = result else { continue };
                let reason = describe(&err);
                answer_failed(&mut write, id, &reason).await;
                if !matches!(err, StreamableHttpError::HttpStatus(_)) {
                    break Some(reason);
                }
            }
        }
    };
    if let Some(why) = &why {
        tracing::debug!(server = %server, "remote session ended: {why}");
    }
    *ended.0.lock() = why;
    // The session sees its end of the pipe close.
    drop(write);
    drop(lines);
    sends.abort_all();
    let _ = tokio::time::timeout(CLOSE_GRACE, transport.close()).await;
}

/// How long the sends still waiting are given to say why the transport
/// gave up.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// The sends still waiting once the transport gave up: each failed
/// request answered with its failure, and the first failure, which is the
/// reason.
async fn failed_sends(
    sends: &mut JoinSet<(Option<RequestId>, Result<(), HttpError>)>,
    write: &mut WriteHalf<DuplexStream>,
) -> Option<String> {
    let mut first = None;
    let drained = tokio::time::timeout(LAST_WORDS, async {
        while let Some(joined) = sends.join_next().await {
            if let Ok((id, Err(err))) = joined {
                let reason = describe(&err);
                answer_failed(write, id, &reason).await;
                first.get_or_insert(reason);
            }
        }
    });
    let _ = drained.await;
    first
}

/// Answers request `id`, which could not be sent, with why.
async fn answer_failed(write: &mut WriteHalf<DuplexStream>, id: Option<RequestId>, reason: &str) {
    if let Some(id) = id {
        let answer = ServerJsonRpcMessage::error(
            ErrorData::internal_error(
                format!("the remote server could not be reached: {reason}"),
                None,
            ),
            Some(id),
        );
        let _ = write_line(write, &answer).await;
    }
}

/// A send's failure in words: the server's refusal of the credentials
/// named as such, anything else with its causes.
fn describe(err: &HttpError) -> String {
    match err {
        StreamableHttpError::AuthRequired(challenge) => format!(
            "the server refused the gateway's credentials (HTTP 401, `WWW-Authenticate: {}`); fix: check the secrets its `headers` or `oauth` name",
            challenge.www_authenticate_header
        ),
        StreamableHttpError::InsufficientScope(challenge) => format!(
            "the server refused the gateway's credentials for want of scope (HTTP 403, `WWW-Authenticate: {}`); fix: ask for the scope in `oauth.client_credentials.scopes`",
            challenge.www_authenticate_header
        ),
        // rmcp gives reqwest's error no `source`: its causes are read here.
        StreamableHttpError::Client(reqwest) => chain(reqwest),
        // The credentials' own failures (`Authed`) say all there is.
        StreamableHttpError::Io(io) => io.to_string(),
        other => chain(other),
    }
}

async fn write_line(
    write: &mut WriteHalf<DuplexStream>,
    message: &ServerJsonRpcMessage,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.flush().await
}

/// An error and its causes, as one line: reqwest's own message names only
/// the request ("error sending request for url …"); the cause (the
/// guard's refusal, a refused connection) is in its sources.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, allow_private: bool) -> Arc<RemoteSpec> {
        Arc::new(RemoteSpec {
            url: url::Url::parse(url).unwrap(),
            headers: Vec::new(),
            oauth: None,
            allow_private,
        })
    }

    fn guard(url: &str, allow_private: bool) -> Guard {
        let spec = spec(url, allow_private);
        Guard {
            scheme: spec.url.scheme().to_string(),
            spec,
        }
    }

    #[tokio::test]
    async fn a_name_is_judged_by_the_addresses_it_resolves_to() {
        let Err(Refusal::Policy(why)) = guard("https://localhost/", false)
            .admitted("localhost", 443)
            .await
        else {
            panic!("localhost was admitted without allow_private");
        };
        assert!(
            why.starts_with("`localhost` resolves only to refused addresses: "),
            "{why}"
        );
        assert!(
            why.contains("is a loopback address; set `allow_private: true`"),
            "{why}"
        );
        let admitted = guard("http://localhost/", true)
            .admitted("localhost", 80)
            .await
            .unwrap_or_else(|_| panic!("localhost refused with allow_private"));
        assert!(!admitted.is_empty());
        assert!(admitted.iter().all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn the_check_before_a_session_refuses_for_good_and_names_the_url() {
        let err = guard("https://127.0.0.1:9/mcp", false)
            .check(
                "vendor",
                &url::Url::parse("https://127.0.0.1:9/mcp").unwrap(),
            )
            .await
            .unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(
            err.to_string(),
            "remote server `vendor` is refused: https://127.0.0.1:9/mcp: 127.0.0.1 is a loopback address; set `allow_private: true` on the server if it is meant to be reached there"
        );
        let err = guard("https://no-such-host.invalid/", false)
            .check(
                "vendor",
                &url::Url::parse("https://no-such-host.invalid/").unwrap(),
            )
            .await
            .unwrap_err();
        assert!(!err.is_permanent(), "{err}");
    }

    #[tokio::test]
    async fn the_http_client_connects_only_where_the_guard_admits() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let spec = spec("http://localhost:1/mcp", false);
        let client = guarded_client("vendor", &spec, "http").unwrap();
        let err = client
            .get("http://localhost:1/mcp")
            .send()
            .await
            .unwrap_err();
        let said = chain(&err);
        assert!(
            said.contains("`localhost` resolves only to refused addresses"),
            "{said}"
        );
    }

    #[test]
    fn credentials_need_their_secrets_and_values_that_are_header_values() {
        let mut with_header = (*spec("https://a.example/mcp", false)).clone();
        with_header.headers.push((
            "Authorization".to_string(),
            HeaderSpec::Secret {
                name: SecretName::try_from("vendor.token".to_string()).unwrap(),
                format: "Bearer {}".to_string(),
            },
        ));
        let err = Remote::new("vendor", &with_header, |_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "remote server `vendor` needs secret `vendor.token`, which was not resolved"
        );
        let err = Remote::new("vendor", &with_header, |_| {
            Some(SecretString::from("line\nbreak-value-1234".to_string()))
        })
        .unwrap_err();
        assert!(matches!(err, RemoteError::BadHeader { .. }), "{err}");
        assert!(!err.to_string().contains("break-value"), "{err}");
    }
}
