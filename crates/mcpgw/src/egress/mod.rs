//! The egress proxy (`mcpgw egress-proxy`): the one way out of a server's
//! `egress` network. It runs in a container of its own, attached to that
//! network and to an uplink, and connects the server to the `host:port`
//! destinations of its allowlist and nowhere else.
//!
//! Two forms of request, both HTTP/1.1: `CONNECT host:port` (a tunnel,
//! what every client uses for `https://` through `HTTPS_PROXY`), spliced
//! with `copy_bidirectional` once the destination is connected; and a
//! plain-HTTP request in absolute form (`GET http://host/path`, what
//! clients send through `HTTP_PROXY`), forwarded on a fresh connection
//! with its `Host` header set from its URI, its response relayed as it
//! is: a redirect goes back to the client, which asks again (and is
//! judged again). Every decision goes through the catalog's
//! [`Egress::decide`], after the proxy resolves the name itself, and is
//! logged with the server, host, port and verdict; a refusal is a `403`
//! whose body says why. The proxy never reads or alters what a tunnel
//! carries, keeps no state between requests, and has no cache.
//!
//! Each decision is also written to stdout as one JSON line (an
//! [`EgressDecision`]): the gateway follows the container's output and
//! records those in its audit trail (`mcpgw-docker`'s `egress.rs`).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mcpgw_catalog::{Egress, EgressDecision};
use tokio::net::{TcpListener, TcpStream};

mod splice;

/// How long resolving a name and connecting to it may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections the proxy serves at once, a tunnel counting as
/// its connection until the tunnel ends; beyond, new ones wait in the
/// listener's backlog (pushing back on the server).
const MAX_CONNECTIONS: usize = 256;

type Body = BoxBody<Bytes, hyper::Error>;

/// A connection's place among the [`MAX_CONNECTIONS`].
type Permit = tokio::sync::OwnedSemaphorePermit;

/// What one proxy serves: whose it is and where it may go.
#[derive(Debug)]
pub(crate) struct Proxy {
    server: String,
    allow: Egress,
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Runs the proxy on `listen` until the process is stopped, serving only
/// clients from `peers` when given (the server's egress network: the
/// proxy listens on the uplink too, where others must not borrow the
/// server's allowlist).
pub(crate) async fn serve(
    listen: SocketAddr,
    peers: Option<ipnet::IpNet>,
    server: String,
    allow: Egress,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let rules: Vec<String> = allow.rules().iter().map(ToString::to_string).collect();
    tracing::info!(%server, %listen, allow = %rules.join(", "), "egress proxy listening");
    let proxy = Arc::new(Proxy { server, allow });
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Shared by the connection and the tunnel it may become: the place
        // is given back when both are done.
        let permit = Arc::new(permits.clone().acquire_owned().await?);
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted.context("accept failed")?,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        if let Some(peers) = &peers
            && !peers.contains(&canonical_ip(peer.ip()))
        {
            tracing::warn!(server = %proxy.server, %peer, "egress: refused a client from outside the server's network");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        connections.spawn(async move {
            let held = permit.clone();
            let service = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                let held = held.clone();
                async move { Ok::<_, Infallible>(proxy.handle(req, held).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            if let Err(err) = served {
                tracing::debug!(error = %err, "proxy connection ended with an error");
            }
            drop(permit);
        });
    }
}

impl Proxy {
    async fn handle(&self, req: Request<Incoming>, held: Arc<Permit>) -> Response<Body> {
        if req.method() == Method::CONNECT {
            return self.connect(req, held).await;
        }
        match req.uri().scheme_str() {
            Some("http") => self.forward(req).await,
            Some(other) => reply(
                StatusCode::BAD_REQUEST,
                &format!(
                    "mcpgw egress proxy: `{other}://` is not proxied here; use CONNECT (HTTPS_PROXY) for TLS\n"
                ),
            ),
            None => reply(
                StatusCode::BAD_REQUEST,
                "mcpgw egress proxy: this is a proxy; send CONNECT host:port or an absolute http:// URI\n",
            ),
        }
    }

    /// Resolves `host` and decides, logging the verdict.
    async fn admit(
        &self,
        method: &Method,
        host: &str,
        port: u16,
    ) -> Result<SocketAddr, Response<Body>> {
        let addrs = if self.allow.permits_host(host, port) {
            resolve(host, port).await
        } else {
            Vec::new()
        };
        match self.allow.decide(host, port, &addrs) {
            Ok(to) => {
                tracing::info!(server = %self.server, %method, host, port, verdict = "allowed", addr = %to.ip(), "egress");
                self.report(
                    method,
                    host,
                    port,
                    "allowed",
                    None,
                    Some(to.ip().to_string()),
                );
                Ok(to)
            }
            Err(refusal) => Err(self.refuse(method, host, port, &refusal)),
        }
    }

    /// A connection to `host:port` once admitted, or the answer that says
    /// why not (refused, or unreachable).
    async fn open(
        &self,
        method: &Method,
        host: &str,
        port: u16,
    ) -> Result<TcpStream, Response<Body>> {
        let to = self.admit(method, host, port).await?;
        dial(to)
            .await
            .map_err(|err| self.unreachable(method, host, port, &err))
    }

    fn refuse(
        &self,
        method: &Method,
        host: &str,
        port: u16,
        why: &dyn std::fmt::Display,
    ) -> Response<Body> {
        tracing::warn!(server = %self.server, %method, host, port, verdict = "refused", reason = %why, "egress");
        self.report(method, host, port, "refused", Some(why.to_string()), None);
        reply(
            StatusCode::FORBIDDEN,
            &format!(
                "mcpgw egress proxy: {host}:{port} refused for server `{}`: {why}\n",
                self.server
            ),
        )
    }

    /// A tunnel to an admitted `host:port`; it keeps its connection's
    /// place (`held`) until it ends.
    async fn connect(&self, req: Request<Incoming>, held: Arc<Permit>) -> Response<Body> {
        let Some(authority) = req.uri().authority().cloned() else {
            return reply(
                StatusCode::BAD_REQUEST,
                "mcpgw egress proxy: CONNECT needs host:port\n",
            );
        };
        let host = authority.host().to_string();
        let port = authority
            .port_u16()
            .unwrap_or(mcpgw_catalog::egress::DEFAULT_PORT);
        let method = req.method().clone();
        let upstream = match self.open(&method, &host, port).await {
            Ok(stream) => stream,
            Err(refused) => return refused,
        };
        let server = self.server.clone();
        // The tunnel runs once hyper has sent the 200 and handed over the
        // connection; it ends when either side closes, or when it has
        // carried nothing for `TUNNEL_IDLE`.
        tokio::spawn(async move {
            let _held = held;
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let mut client = TokioIo::new(upgraded);
                    let mut upstream = upstream;
                    match splice::splice(&mut client, &mut upstream, splice::TUNNEL_IDLE).await {
                        Ok(splice::Ended::Closed(..)) => {}
                        Ok(splice::Ended::Idle) => {
                            let minutes = splice::TUNNEL_IDLE.as_secs() / 60;
                            tracing::info!(%server, host, port, "closed a tunnel idle for {minutes} minutes");
                        }
                        Err(err) => {
                            tracing::debug!(%server, host, port, error = %err, "tunnel ended with an error");
                        }
                    }
                }
                Err(err) => tracing::debug!(%server, host, port, error = %err, "upgrade failed"),
            }
        });
        Response::new(empty())
    }

    async fn forward(&self, mut req: Request<Incoming>) -> Response<Body> {
        let Some(authority) = req.uri().authority().cloned() else {
            return reply(
                StatusCode::BAD_REQUEST,
                "mcpgw egress proxy: the URI names no host\n",
            );
        };
        let host = authority.host().to_string();
        let port = authority.port_u16().unwrap_or(80);
        let method = req.method().clone();
        let upstream = match self.open(&method, &host, port).await {
            Ok(stream) => stream,
            Err(refused) => return refused,
        };
        // Origin form on the wire, the Host the URI names (never another
        // the client set), and no hop-by-hop headers.
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_string(), ToString::to_string);
        *req.uri_mut() = match path.parse() {
            Ok(uri) => uri,
            Err(_) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "mcpgw egress proxy: bad request path\n",
                );
            }
        };
        let headers = req.headers_mut();
        for hop in [
            "proxy-connection",
            "proxy-authorization",
            "keep-alive",
            "te",
            "trailer",
            "upgrade",
        ] {
            headers.remove(hop);
        }
        headers.remove(header::CONNECTION);
        // The host and port only: any userinfo in the URI stays out.
        let host_header = match authority.port_u16() {
            Some(port) => format!("{}:{port}", authority.host()),
            None => authority.host().to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&host_header) {
            headers.insert(header::HOST, value);
        }
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
                Ok(pair) => pair,
                Err(err) => return self.unreachable(&method, &host, port, &err),
            };
        let server = self.server.clone();
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%server, error = %err, "upstream connection ended with an error");
            }
        });
        match sender.send_request(req).await {
            Ok(response) => response.map(BodyExt::boxed),
            Err(err) => self.unreachable(&method, &host, port, &err),
        }
    }

    /// Writes the decision to stdout, for the gateway's audit trail.
    fn report(
        &self,
        method: &Method,
        host: &str,
        port: u16,
        verdict: &str,
        reason: Option<String>,
        addr: Option<String>,
    ) {
        use std::io::Write as _;
        let decision = EgressDecision {
            server: self.server.clone(),
            method: method.to_string(),
            host: host.to_string(),
            port,
            verdict: verdict.to_string(),
            reason,
            addr,
        };
        if let Ok(mut line) = serde_json::to_string(&decision) {
            line.push('\n');
            // One small write per decision: the engine keeps it one frame.
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        }
    }

    fn unreachable(
        &self,
        method: &Method,
        host: &str,
        port: u16,
        err: &dyn std::fmt::Display,
    ) -> Response<Body> {
        tracing::warn!(server = %self.server, host, port, verdict = "failed", error = %err, "egress");
        self.report(method, host, port, "failed", Some(err.to_string()), None);
        reply(
            StatusCode::BAD_GATEWAY,
            &format!("mcpgw egress proxy: cannot reach {host}:{port}: {err}\n"),
        )
    }
}

/// The addresses `host` resolves to (itself, for an address); empty when
/// it resolves to none in time.
async fn resolve(host: &str, port: u16) -> Vec<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(addr) = bare.parse::<IpAddr>() {
        return vec![addr];
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((bare, port))).await {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
        Ok(Err(err)) => {
            tracing::debug!(host, error = %err, "name did not resolve");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

async fn dial(to: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn reply(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(text.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
