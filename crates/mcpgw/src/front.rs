//! The stdio front: the pipes between a client and the mux's rmcp session.
//!
//! Inbound, every line is checked to be JSON before rmcp sees it; a line
//! that is not gets a `-32700` parse error (rmcp would drop it without an
//! answer) and the session goes on. The first message tells which era the
//! client speaks (`initialize` opens a handshake-era session), so that the
//! gateway speaks the same era to its servers. Outbound, rmcp writes into
//! an [`Outbox`]: every line passes the redaction [`Filter`] and leaves
//! whole, exactly once, with the parse errors between lines; under load
//! many leave in one write. A client that does not read pushes back: rmcp's
//! writes wait for room, and so does the reading of more input after a
//! parse error.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use mcpgw_backend::{Audience, Era};
use mcpgw_wire::lines::Lines;
use mcpgw_wire::outbox::{LineSender, Outbox, outbox};
use rmcp::model::ClientCapabilities;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::redaction::Filter;

/// The longest line a client may send; longer ones are refused.
const MAX_LINE: usize = 16 << 20;

/// What rmcp reads and writes, and the task that writes to the client.
pub(crate) struct Front<R> {
    pub(crate) reader: CheckedReader<R>,
    pub(crate) writer: Outbox,
    /// Ends once rmcp's writer is closed and everything is written.
    pub(crate) drain: JoinHandle<std::io::Result<()>>,
}

/// Wraps the client's `input` and `output`; what the client's first
/// message says of it goes to `audience`.
pub(crate) fn front<R, W>(
    input: R,
    output: W,
    filter: Filter,
    audience: Option<watch::Sender<Option<Audience>>>,
) -> Front<R>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Send + 'static,
{
    let (writer, drain) = outbox(
        output,
        Some(Box::new(move |line: &[u8], out: &mut Vec<u8>| {
            out.extend_from_slice(&filter.line(line));
        })),
    );
    Front {
        reader: CheckedReader {
            inner: input,
            lines: Lines::default(),
            discarding: false,
            eof: false,
            errors: Errors {
                sender: writer.lines(),
                unpaced: false,
            },
            audience,
        },
        writer,
        drain: tokio::spawn(drain),
    }
}

/// Hands rmcp only lines that are JSON; answers the others with `-32700`.
pub(crate) struct CheckedReader<R> {
    inner: R,
    /// Bytes read but not yet checked (an incomplete line).
    lines: Lines,
    /// Skipping the rest of a line that was too long.
    discarding: bool,
    eof: bool,
    errors: Errors,
    /// Told of the client by its first message, then `None`.
    audience: Option<watch::Sender<Option<Audience>>>,
}

/// Where parse errors go: between rmcp's lines, to the client.
struct Errors {
    sender: LineSender,
    /// An error was sent since the outbox last had room.
    unpaced: bool,
}

impl Errors {
    fn refuse(&mut self, why: &str) {
        tracing::warn!("answered a malformed client message with a parse error: {why}");
        let error = json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": -32700, "message": format!("Parse error: {why}")},
        });
        self.sender.send(format!("{error}\n").as_bytes());
        self.unpaced = true;
    }

    /// Ready once the errors sent have room in the outbox: a client that
    /// sends lines that are not JSON and does not read the errors gets no
    /// more of its input read until it does. Answers wait for room in the
    /// outbox themselves; a client that only sends JSON is never held here.
    fn poll_paced(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.unpaced {
            ready!(self.sender.poll_room(cx));
            self.unpaced = false;
        }
        Poll::Ready(())
    }
}

impl<R> CheckedReader<R> {
    /// Adds `bytes` to what was read: the lines they complete go to rmcp,
    /// or are answered.
    fn check_lines(&mut self, bytes: &[u8]) {
        let Self {
            lines,
            discarding,
            errors,
            audience,
            ..
        } = self;
        lines.push(bytes, |line| {
            if std::mem::take(discarding) {
                return false;
            }
            check(line, errors, audience)
        });
        if lines.partial() > MAX_LINE {
            lines.discard_partial();
            *discarding = true;
            errors.refuse(&format!("a line longer than {} MiB", MAX_LINE >> 20));
        }
    }
}

/// Whether `line` goes to rmcp; a line that is not JSON is answered
/// through `errors`. The first message is read for its era.
fn check(
    line: &[u8],
    errors: &mut Errors,
    audience: &mut Option<watch::Sender<Option<Audience>>>,
) -> bool {
    if line.iter().all(u8::is_ascii_whitespace) {
        return false;
    }
    if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
        errors.refuse(&format!("the line is not JSON ({err})"));
        return false;
    }
    // The first request (a batch, say, is refused by rmcp and says nothing).
    if audience.is_some()
        && let Ok(first) = serde_json::from_slice::<First>(line)
        && let Some(tell) = audience.take()
    {
        tell.send_replace(Some(first.audience()));
    }
    true
}

/// What the client's first message says of it.
#[derive(serde::Deserialize)]
struct First {
    method: String,
    #[serde(default)]
    params: Option<FirstParams>,
}

#[derive(serde::Deserialize)]
struct FirstParams {
    #[serde(default)]
    /// Read leniently: capabilities the gateway cannot parse are none.
    capabilities: Option<serde_json::Value>,
}

impl First {
    /// A client that opens with `initialize` is of the handshake era, and
    /// said what it can answer; any other is of the stateless era, and
    /// says so with each request.
    fn audience(self) -> Audience {
        if self.method == "initialize" {
            Audience {
                era: Era::Handshake,
                capabilities: Some(
                    self.params
                        .and_then(|p| p.capabilities)
                        .and_then(|c| serde_json::from_value::<ClientCapabilities>(c).ok())
                        .unwrap_or_default(),
                ),
            }
        } else {
            Audience {
                era: Era::Stateless,
                capabilities: None,
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CheckedReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.lines.hand(out) || this.eof {
                return Poll::Ready(Ok(()));
            }
            ready!(this.errors.poll_paced(cx));
            let read = ready!(this.lines.poll_read_from(Pin::new(&mut this.inner), cx))?;
            if read == 0 {
                this.eof = true;
                // A last line without its line break is still a line.
                if this.lines.partial() > 0 && !this.discarding {
                    this.check_lines(b"\n");
                }
                continue;
            }
            this.check_lines(b"");
        }
    }
}

#[cfg(test)]
mod tests {
    use mcpgw_catalog::Redaction;
    use serde_json::Value;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::redaction::tests::{VALUE, filter};

    /// Writes `chunks` as rmcp would, and returns what the client got.
    async fn through(mode: Redaction, chunks: &[&[u8]]) -> String {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (mut from_gateway, to_gateway) = tokio::io::split(client);
        let (server_in, server_out) = tokio::io::split(server);
        let Front {
            reader,
            mut writer,
            drain,
        } = front(server_in, server_out, filter(mode), None);
        for chunk in chunks {
            writer.write_all(chunk).await.unwrap();
        }
        drop(writer);
        drain.await.unwrap().unwrap();
        drop((reader, to_gateway));
        let mut out = String::new();
        from_gateway.read_to_string(&mut out).await.unwrap();
        out
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

    #[tokio::test]
    async fn malformed_lines_get_parse_errors_and_good_lines_pass_whole() {
        let input: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n{this is not json\n\n[1,2]\n{\"jsonrpc\":\"2.0\",\"method\":\"x\"}";
        let (mut errors_out, errors_in) = tokio::io::duplex(1 << 16);
        let mut front = front(input, errors_in, filter(Redaction::Redact), None);
        let mut passed = String::new();
        front.reader.read_to_string(&mut passed).await.unwrap();
        assert_eq!(
            passed,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n[1,2]\n{\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n"
        );
        drop(front.reader);
        drop(front.writer);
        front.drain.await.unwrap().unwrap();
        let mut answered = String::new();
        errors_out.read_to_string(&mut answered).await.unwrap();
        let error: Value = serde_json::from_str(answered.trim()).unwrap();
        assert_eq!(error["error"]["code"], -32700, "{answered}");
        assert_eq!(error["id"], Value::Null);
    }
}
