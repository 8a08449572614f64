//! A minimal Streamable HTTP client: one keep-alive connection, requests
//! one at a time, either in one handshake-era session or as a stateless
//! `2026-07-28` client (no session; every request carries its `_meta` and
//! the headers that protocol asks for). Answers may come as JSON or as a
//! short SSE stream.

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use serde_json::{Value, json};

use crate::rpc::{
    STATELESS, call_params, check_call, initialize_params, result_of, stateless_meta,
};

/// One MCP client over HTTP.
#[derive(Debug)]
pub(crate) struct HttpClient {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
    path: String,
    session: Option<String>,
    stateless: bool,
    next: u64,
}

impl HttpClient {
    /// Connects to `url` (`http://host:port/path`) and opens a session.
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Self> {
        let mut client = Self::open(url, false).await?;
        client.request("initialize", initialize_params()).await?;
        client
            .post(
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                None,
            )
            .await?;
        Ok(client)
    }

    /// Connects to `url` as a stateless `2026-07-28` client.
    pub(crate) async fn stateless(url: &str) -> anyhow::Result<Self> {
        Self::open(url, true).await
    }

    async fn open(url: &str, stateless: bool) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("only http:// URLs are supported, not {url}"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let sender = dial(authority).await?;
        Ok(Self {
            sender,
            authority: authority.to_string(),
            path: format!("/{path}"),
            session: None,
            stateless,
            next: 1,
        })
    }

    /// Sends request `method` and returns its result.
    pub(crate) async fn request(
        &mut self,
        method: &str,
        mut params: Value,
    ) -> anyhow::Result<Value> {
        let id = self.next;
        self.next += 1;
        // The stateless protocol names the method, and the tool, in headers.
        let routing = if self.stateless {
            params["_meta"] = stateless_meta();
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string);
            Some((method.to_string(), name))
        } else {
            None
        };
        let body = self
            .post(
                json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
                routing,
            )
            .await?;
        let message = answer(&body, id).with_context(|| {
            format!("{method}: no answer in {}", String::from_utf8_lossy(&body))
        })?;
        result_of(method, message)
    }

    /// Calls `tool` and checks that it did not fail.
    pub(crate) async fn call(&mut self, tool: &str, arguments: &Value) -> anyhow::Result<Value> {
        let result = self
            .request("tools/call", call_params(tool, arguments))
            .await?;
        check_call(tool, result)
    }

    /// Posts `message`; `routing` is a stateless request's method and
    /// name, for its headers.
    async fn post(
        &mut self,
        message: Value,
        routing: Option<(String, Option<String>)>,
    ) -> anyhow::Result<Bytes> {
        let mut request = hyper::Request::post(&self.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "application/json, text/event-stream");
        if let Some(session) = &self.session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        if let Some((method, name)) = routing {
            request = request
                .header("mcp-protocol-version", STATELESS)
                .header("mcp-method", method);
            if let Some(name) = name {
                request = request.header("mcp-name", name);
            }
        }
        let request = request.body(Full::new(Bytes::from(serde_json::to_vec(&message)?)))?;
        // A server may close an idle connection (mcpgw does after a while):
        // open another, as any client would, and go on in the same session.
        if self.sender.is_closed() || self.sender.ready().await.is_err() {
            self.sender = dial(&self.authority).await?;
            self.sender.ready().await?;
        }
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        if let Some(session) = response.headers().get("mcp-session-id") {
            self.session = Some(session.to_str()?.to_string());
        }
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }
}

/// A new keep-alive connection to `authority`.
async fn dial(authority: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// The JSON-RPC answer with `id` in a JSON or SSE body.
fn answer(body: &[u8], id: u64) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?;
    let is_ours = |v: &Value| v.get("id").and_then(Value::as_u64) == Some(id);
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return is_ours(&value).then_some(value);
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(is_ours)
}
