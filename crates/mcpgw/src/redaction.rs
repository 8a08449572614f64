//! Where redaction meets the outside: every line written to the client and
//! every line logged passes through the run's [`Redactor`].
//!
//! Client messages are redacted as they are written, one JSON-RPC line at a
//! time, after serialization: whatever the message (a result, an error, a
//! progress or log notification, a request to the client), its bytes are
//! scanned once, and a value split across writes is still found because
//! lines are reassembled first.

use std::borrow::Cow;

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use mcpgw_catalog::Redaction;
use mcpgw_secrets::Redactor;
use serde_json::{Value, json};
use tokio::io::AsyncWrite;

/// Output buffered beyond this makes writes wait for the client to read.
const HIGH_WATER: usize = 1 << 20;

/// What happens to client-bound lines.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    redactor: Redactor,
    mode: Redaction,
}

impl Filter {
    pub(crate) fn new(redactor: Redactor, mode: Redaction) -> Self {
        Self { redactor, mode }
    }

    /// One JSON-RPC line (with its line break), as the client may see it.
    pub(crate) fn line<'a>(&self, line: &'a [u8]) -> Cow<'a, [u8]> {
        let Ok(text) = std::str::from_utf8(line) else {
            return Cow::Borrowed(line);
        };
        if !self.redactor.is_match(text) {
            return Cow::Borrowed(line);
        }
        let names: Vec<&str> = self.redactor.found(text).into_iter().collect();
        let message: Option<Value> = serde_json::from_str(text).ok();
        let kind = message.as_ref().map_or("unparsable message", kind_of);
        if self.mode == Redaction::Redact {
            let redacted = self.redactor.redact(text);
            // A value that spans JSON syntax leaves no valid JSON behind;
            // withhold the message then, as blocking would.
            if serde_json::from_str::<Value>(&redacted).is_ok() {
                tracing::warn!(secrets = ?names, "redacted secret values from a {kind} to the client");
                return Cow::Owned(redacted.into_owned().into_bytes());
            }
        }
        tracing::warn!(secrets = ?names, "withheld a {kind} to the client: it carried secret values");
        match message.as_ref().and_then(|m| withheld(m, &names)) {
            Some(error) => Cow::Owned(format!("{error}\n").into_bytes()),
            None => Cow::Borrowed(b""),
        }
    }
}

fn kind_of(message: &Value) -> &'static str {
    match (message.get("id"), message.get("method")) {
        (Some(_), Some(_)) => "request",
        (None, Some(_)) => "notification",
        _ if message.get("error").is_some() => "error response",
        _ => "response",
    }
}

/// The error that replaces a withheld response; `None` for a notification
/// or a request, which are dropped.
fn withheld(message: &Value, names: &[&str]) -> Option<Value> {
    if message.get("method").is_some() {
        return None;
    }
    let id = message.get("id")?;
    let names = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32603,
            "message": format!("the gateway withheld this response: it carried the value of secret {names}"),
        },
    }))
}

/// An `AsyncWrite` that passes each complete line through a [`Filter`].
#[derive(Debug)]
pub(crate) struct FilteredWriter<W> {
    inner: W,
    filter: Filter,
    /// The incomplete line written so far.
    partial: Vec<u8>,
    /// Filtered bytes not yet accepted by `inner`.
    out: Vec<u8>,
}

impl<W> FilteredWriter<W> {
    pub(crate) fn new(inner: W, filter: Filter) -> Self {
        Self {
            inner,
            filter,
            partial: Vec::new(),
            out: Vec::new(),
        }
    }
}

impl<W: AsyncWrite + Unpin> FilteredWriter<W> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.out.drain(..n);
        }
        Poll::Ready(Ok(()))
    }

    fn take_lines(&mut self) {
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let filtered = self.filter.line(&line);
            self.out.extend_from_slice(&filtered);
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for FilteredWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() >= HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        this.partial.extend_from_slice(buf);
        this.take_lines();
        // Push what we can now; a full pipe is retried on flush.
        if let Poll::Ready(Err(err)) = this.poll_drain(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.partial.is_empty() {
            this.partial.push(b'\n');
            this.take_lines();
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The log writer: each formatted event goes to stderr through the global
/// redactor, once the run's secrets are known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let text = match mcpgw_secrets::global() {
            Some(redactor) => redactor.redact(&text),
            None => text,
        };
        std::io::stderr().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use mcpgw_secrets::SecretString;
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    const VALUE: &str = "tok-3f9a8b7c6d5e";

    fn filter(mode: Redaction) -> Filter {
        let value = SecretString::from(VALUE);
        Filter::new(Redactor::new([("api.token", &value)]), mode)
    }

    async fn through(mode: Redaction, chunks: &[&[u8]]) -> String {
        let mut out = Vec::new();
        {
            let mut writer = FilteredWriter::new(&mut out, filter(mode));
            for chunk in chunks {
                writer.write_all(chunk).await.unwrap();
            }
            writer.flush().await.unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn redacts_values_split_across_writes() {
        let line = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"x {VALUE} y\"}}]}}}}\n"
        );
        let (a, b) = line.as_bytes().split_at(line.find(VALUE).unwrap() + 5);
        let out = through(
            Redaction::Redact,
            &[a, b, b"{\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n"],
        )
        .await;
        assert!(!out.contains(VALUE), "{out}");
        let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(
            first["result"]["content"][0]["text"],
            "x [REDACTED:api.token] y"
        );
        assert_eq!(out.lines().count(), 2);
    }

    #[tokio::test]
    async fn block_mode_turns_a_response_into_an_error_and_drops_notifications() {
        let response =
            format!("{{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{{\"v\":\"{VALUE}\"}}}}\n");
        let notification = format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"data\":\"{VALUE}\"}}}}\n"
        );
        let clean = "{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\n";
        let out = through(
            Redaction::Block,
            &[
                response.as_bytes(),
                notification.as_bytes(),
                clean.as_bytes(),
            ],
        )
        .await;
        assert!(!out.contains(VALUE), "{out}");
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0]["id"], 7);
        assert_eq!(lines[0]["error"]["code"], -32603);
        assert!(
            lines[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`api.token`")
        );
        assert_eq!(lines[1]["id"], 8);
    }

    #[test]
    fn encoded_values_are_found_in_json_lines() {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("user:{VALUE}"));
        let line =
            format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"blob\":\"{encoded}\"}}}}\n");
        let f = filter(Redaction::Redact);
        let out = f.line(line.as_bytes());
        let out = std::str::from_utf8(&out).unwrap();
        assert!(out.contains("[REDACTED:api.token]"), "{out}");
    }
}
