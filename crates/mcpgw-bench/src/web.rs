//! A minimal Streamable HTTP client: one keep-alive connection, one
//! handshake-era session, requests one at a time. Answers may come as JSON
//! or as a short SSE stream.

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use serde_json::{Value, json};

use crate::rpc::{call_params, check_call, initialize_params, result_of};

/// One MCP session over HTTP.
#[derive(Debug)]
pub(crate) struct HttpClient {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
    path: String,
    session: Option<String>,
    next: u64,
}

impl HttpClient {
    /// Connects to `url` (`http://host:port/path`) and opens a session.
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("only http:// URLs are supported, not {url}"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("cannot connect to {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut client = Self {
            sender,
            authority: authority.to_string(),
            path: format!("/{path}"),
            session: None,
            next: 1,
        };
        client.request("initialize", initialize_params()).await?;
        client
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(client)
    }

    /// Sends request `method` and returns its result.
    pub(crate) async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next;
        self.next += 1;
        let body = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
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

    async fn post(&mut self, message: Value) -> anyhow::Result<Bytes> {
        let mut request = hyper::Request::post(&self.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "application/json, text/event-stream");
        if let Some(session) = &self.session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        let request = request.body(Full::new(Bytes::from(serde_json::to_vec(&message)?)))?;
        self.sender.ready().await?;
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
