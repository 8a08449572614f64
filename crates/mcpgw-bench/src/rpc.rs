//! A minimal JSON-RPC client over newline-delimited stdio: requests may be
//! pipelined, and answers are matched to them by id. Kept this thin so that
//! what is measured is the endpoint, not the client.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, anyhow, bail};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::{mpsc, oneshot};

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// One MCP session over a pair of pipes. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub(crate) struct LineClient {
    next: Arc<AtomicU64>,
    pending: Pending,
    out: mpsc::UnboundedSender<Vec<u8>>,
    /// Speaks the stateless `2026-07-28` protocol (no handshake; every
    /// request carries its `_meta`).
    stateless: bool,
}

impl LineClient {
    /// Speaks JSON-RPC on `reader` and `writer`; not yet initialized.
    pub(crate) fn new(
        reader: impl AsyncRead + Send + Unpin + 'static,
        writer: impl AsyncWrite + Send + Unpin + 'static,
    ) -> Self {
        let pending: Pending = Arc::default();
        let (out, mut lines) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            let mut writer = tokio::io::BufWriter::new(writer);
            while let Some(line) = lines.recv().await {
                if writer.write_all(&line).await.is_err() {
                    return;
                }
                // Write what has queued up in one go.
                while let Ok(line) = lines.try_recv() {
                    if writer.write_all(&line).await.is_err() {
                        return;
                    }
                }
                if writer.flush().await.is_err() {
                    return;
                }
            }
        });
        let answers = pending.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(message) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let Some(id) = message.get("id").and_then(Value::as_u64) else {
                    continue; // a notification
                };
                if message.get("method").is_some() {
                    continue; // a request to the client: not used here
                }
                let waiter = answers.lock().remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(message);
                }
            }
            // The endpoint closed: waiters see their senders dropped.
            answers.lock().clear();
        });
        Self {
            next: Arc::new(AtomicU64::new(1)),
            pending,
            out,
            stateless: false,
        }
    }

    /// Speaks the stateless `2026-07-28` protocol: every request carries
    /// the protocol version, the client's info and its capabilities in
    /// `_meta`, as the official Python client sends them.
    pub(crate) fn stateless(mut self) -> Self {
        self.stateless = true;
        self
    }

    /// Sends request `method` and waits for its result.
    pub(crate) async fn request(&self, method: &str, mut params: Value) -> anyhow::Result<Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if self.stateless {
            params["_meta"] = stateless_meta();
        }
        let (sender, answer) = oneshot::channel();
        self.pending.lock().insert(id, sender);
        let mut line = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )?;
        line.push(b'\n');
        self.out
            .send(line)
            .map_err(|_| anyhow!("the endpoint's stdin is closed"))?;
        let message = answer
            .await
            .map_err(|_| anyhow!("the endpoint closed before answering {method}"))?;
        result_of(method, message)
    }

    /// Sends notification `method`.
    pub(crate) fn notify(&self, method: &str) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": method}))?;
        line.push(b'\n');
        self.out
            .send(line)
            .map_err(|_| anyhow!("the endpoint's stdin is closed"))
    }

    /// The handshake (protocol `2025-11-25`).
    pub(crate) async fn initialize(&self) -> anyhow::Result<Value> {
        let result = self.request("initialize", initialize_params()).await?;
        self.notify("notifications/initialized")?;
        Ok(result)
    }

    /// Every tool, following cursors; and how many pages that took.
    pub(crate) async fn list_tools(&self) -> anyhow::Result<(Vec<Value>, usize)> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let params = cursor.map_or_else(|| json!({}), |c| json!({ "cursor": c }));
            let page = self.request("tools/list", params).await?;
            pages += 1;
            if let Some(list) = page.get("tools").and_then(Value::as_array) {
                tools.extend(list.iter().cloned());
            }
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_string()),
                None => return Ok((tools, pages)),
            }
        }
    }

    /// Calls `tool` and checks that it did not fail.
    pub(crate) async fn call(&self, tool: &str, arguments: &Value) -> anyhow::Result<Value> {
        let result = self
            .request("tools/call", call_params(tool, arguments))
            .await?;
        check_call(tool, result)
    }
}

pub(crate) fn initialize_params() -> Value {
    json!({
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": client_info(),
    })
}

/// The `_meta` of every request of a `2026-07-28` client: the protocol
/// version, the client's info and its capabilities.
pub(crate) fn stateless_meta() -> Value {
    json!({
        "io.modelcontextprotocol/clientCapabilities": { "elicitation": {}, "roots": {} },
        "io.modelcontextprotocol/clientInfo": client_info(),
        "io.modelcontextprotocol/protocolVersion": STATELESS,
    })
}

/// The stateless protocol's version.
pub(crate) const STATELESS: &str = "2026-07-28";

fn client_info() -> Value {
    json!({ "name": "mcpgw-bench", "version": env!("CARGO_PKG_VERSION") })
}

/// The parameters of a `tools/call`.
pub(crate) fn call_params(tool: &str, arguments: &Value) -> Value {
    json!({ "name": tool, "arguments": arguments })
}

/// The result of a JSON-RPC answer, or its error.
pub(crate) fn result_of(method: &str, mut message: Value) -> anyhow::Result<Value> {
    if let Some(error) = message.get("error") {
        bail!("{method} failed: {error}");
    }
    message
        .get_mut("result")
        .map(Value::take)
        .with_context(|| format!("{method}: an answer with neither result nor error"))
}

/// A tool result that is not an error.
pub(crate) fn check_call(tool: &str, result: Value) -> anyhow::Result<Value> {
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        bail!("tool {tool} returned an error: {result}");
    }
    Ok(result)
}
