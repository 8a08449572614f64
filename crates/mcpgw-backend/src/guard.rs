//! A guard on a backend's stdout, between the container and the MCP
//! client: it hands rmcp whole lines, logs lines that are not JSON
//! (rate-limited; rmcp skips them), hands progress reports to the request
//! they belong to, and ends the stream with an error when a line grows past
//! the cap, so a backend that floods one endless line is killed instead of
//! filling memory.
//!
//! Progress reports and log messages are delivered from here, not by
//! rmcp, because rmcp handles each notification on a task of its own: they
//! could overtake one another and the answer. Here each is delivered in the
//! order it arrived, before the line that follows it reaches rmcp (so a
//! log message is attributed while its request is still in flight, and a
//! report reaches its request before the answer does), and rmcp does not
//! see it. A delivery that cannot complete at once (the request's reports
//! are not being taken, the client is slow) pushes back: nothing more is
//! read from the backend until it completes. How long one consumer may
//! hold a backend up is bounded where the consumer is known (the mux's
//! `relay.rs`, and [`PATIENCE`] for a request's reports).
//!
//! It looks at each line's first byte and length; it parses only lines that
//! name `notifications/progress` (while a request waits for progress) or
//! `notifications/message`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use mcpgw_wire::lines::{Lines, Sort};
use parking_lot::Mutex;
use rmcp::model::{LoggingMessageNotificationParam, ProgressNotificationParam};
use tokio::io::{AsyncRead, ReadBuf};

use crate::{PATIENCE, ProgressRoutes, Relay};

/// Handing one notification on.
type Delivery = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The longest line (one JSON-RPC message) a backend may send: 16 MiB.
pub(crate) const MAX_LINE: usize = 16 * 1024 * 1024;

/// At most this many non-JSON lines are logged per window, per backend.
const LOG_BURST: u32 = 5;
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// See the module documentation.
pub(crate) struct LineGuard<R> {
    inner: R,
    server: String,
    max_line: usize,
    lines: Lines,
    eof: bool,
    progress: ProgressRoutes,
    relay: Arc<OnceLock<Arc<dyn Relay>>>,
    /// A delivery that could not complete at once; nothing after it is
    /// sorted (or read) until it has.
    waiting: Option<Delivery>,
    garbage: GarbageLog,
    verdict: Arc<Mutex<Option<String>>>,
}

impl<R> std::fmt::Debug for LineGuard<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineGuard")
            .field("server", &self.server)
            .field("lines", &self.lines)
            .field("eof", &self.eof)
            .field("waiting", &self.waiting.is_some())
            .finish_non_exhaustive()
    }
}

/// Rate-limited warnings about non-JSON lines.
#[derive(Debug)]
struct GarbageLog {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl GarbageLog {
    fn note(&mut self, server: &str, line: &[u8]) {
        self.warn(
            server,
            line,
            "skipped a non-JSON line on stdout (stdout is for MCP messages only)",
        );
    }

    fn invalid_utf8(&mut self, server: &str, line: &[u8]) {
        self.warn(
            server,
            line,
            "a line on stdout is not valid UTF-8; its bad bytes were replaced with U+FFFD",
        );
    }

    fn warn(&mut self, server: &str, line: &[u8], what: &str) {
        if self.window_start.elapsed() >= LOG_WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(
                    server,
                    suppressed = self.suppressed,
                    "more lines on stdout were not MCP messages (warned about above)"
                );
            }
            self.window_start = Instant::now();
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < LOG_BURST {
            self.logged += 1;
            let sample = String::from_utf8_lossy(&line[..line.len().min(120)]);
            tracing::warn!(server, line = %sample.trim_end(), "{what}");
        } else {
            self.suppressed += 1;
        }
    }
}

impl<R> LineGuard<R> {
    /// Guards `inner`, the stdout of `server`, with lines capped at
    /// `max_line`; progress reports go to their `progress` routes, log
    /// messages to the `relay`.
    pub(crate) fn new(
        inner: R,
        server: &str,
        max_line: usize,
        verdict: Arc<Mutex<Option<String>>>,
        progress: ProgressRoutes,
        relay: Arc<OnceLock<Arc<dyn Relay>>>,
    ) -> Self {
        Self {
            inner,
            server: server.to_string(),
            max_line,
            lines: Lines::default(),
            eof: false,
            progress,
            relay,
            waiting: None,
            garbage: GarbageLog {
                window_start: Instant::now(),
                logged: 0,
                suppressed: 0,
            },
            verdict,
        }
    }

    /// Sorts the lines read: rmcp's, logged garbage (handed on all the
    /// same), progress reports and log messages (delivered here); `false`
    /// if a line is longer than the cap. Stops after a delivery that must
    /// wait.
    fn sort(&mut self, cx: &mut Context<'_>) -> bool {
        let mut fits = true;
        let Self {
            lines,
            max_line,
            server,
            garbage,
            progress,
            relay,
            waiting,
            ..
        } = self;
        let paused = lines.sort(|line| {
            if line.len() > *max_line + 1 {
                fits = false;
                return Sort::Skip;
            }
            let first = line.iter().find(|b| !b.is_ascii_whitespace());
            if !matches!(first, None | Some(b'{' | b'[')) {
                garbage.note(server, line);
                return Sort::Hand;
            }
            if std::str::from_utf8(line).is_err() {
                // Never relayed as it is; the request it answers still
                // gets its answer, with U+FFFD where the bytes were bad.
                garbage.invalid_utf8(server, line);
                return Sort::HandLossy;
            }
            let Some(mut delivery) = delivery(progress, relay, line) else {
                return Sort::Hand;
            };
            if delivery.as_mut().poll(cx).is_ready() {
                return Sort::Skip;
            }
            *waiting = Some(delivery);
            Sort::SkipAndPause
        });
        fits && (paused || self.lines.partial() <= self.max_line)
    }

    fn too_long(&self) -> std::io::Error {
        let message = format!(
            "server `{}` sent a line longer than {} bytes on stdout",
            self.server, self.max_line
        );
        *self.verdict.lock() = Some(format!(
            "it sent a line longer than {} bytes on stdout",
            self.max_line
        ));
        std::io::Error::new(std::io::ErrorKind::InvalidData, message)
    }

    fn end(&mut self) {
        self.eof = true;
    }
}

/// How `line` is handed on, if it is a progress report a request waits
/// for or a log message.
fn delivery(
    routes: &ProgressRoutes,
    relay: &OnceLock<Arc<dyn Relay>>,
    line: &[u8],
) -> Option<Delivery> {
    #[derive(serde::Deserialize)]
    struct Notification<P> {
        method: String,
        params: P,
    }
    if memchr::memmem::find(line, b"\"notifications/message\"").is_some() {
        let relay = relay.get()?.clone();
        let log = serde_json::from_slice::<Notification<LoggingMessageNotificationParam>>(line)
            .ok()
            .filter(|n| n.method == "notifications/message")?;
        return Some(Box::pin(async move { relay.log(log.params).await }));
    }
    memchr::memmem::find(line, b"\"notifications/progress\"")?;
    let (route, report) = {
        let routes = routes.lock();
        if routes.is_empty() {
            return None;
        }
        let report = serde_json::from_slice::<Notification<ProgressNotificationParam>>(line)
            .ok()
            .filter(|n| n.method == "notifications/progress")?;
        let route = routes.get(&report.params.progress_token)?.clone();
        (route, report.params)
    };
    route.progressed.notify_one();
    let reports = route.reports?;
    if route.stuck.load(std::sync::atomic::Ordering::Acquire) {
        // Its client took nothing for a while: it gets what fits, and
        // holds the backend up no more.
        if reports.try_send(report).is_err() {
            tracing::debug!("a progress report for a client that is not reading was not relayed");
        }
        return None;
    }
    Some(Box::pin(async move {
        // A request that has ended takes no more reports; one whose client
        // takes none for `PATIENCE` is given what fits from then on.
        match tokio::time::timeout(PATIENCE, reports.send(report)).await {
            Ok(_) => route.progressed.notify_one(),
            Err(_) => {
                route
                    .stuck
                    .store(true, std::sync::atomic::Ordering::Release);
                tracing::warn!(
                    "a client took no progress report for {PATIENCE:?}; its further reports are relayed only as they fit, so that the server's other calls are not held up"
                );
            }
        }
    }))
}

impl<R: AsyncRead + Unpin> AsyncRead for LineGuard<R> {
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
            if let Some(delivery) = &mut this.waiting {
                // Lines before it went on; the rest wait for it.
                ready!(delivery.as_mut().poll(cx));
                this.waiting = None;
            } else {
                let read = match ready!(this.lines.poll_read_from(Pin::new(&mut this.inner), cx)) {
                    Ok(read) => read,
                    Err(err) => {
                        this.end();
                        return Poll::Ready(Err(err));
                    }
                };
                if read == 0 {
                    // An unfinished last line goes to rmcp as it is.
                    this.lines.release_partial();
                    this.end();
                    continue;
                }
            }
            if !this.sort(cx) {
                this.lines.discard_partial();
                this.end();
                return Poll::Ready(Err(this.too_long()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// A guard on `input`, with lines capped at `cap`.
    fn guarded(input: &[u8], cap: usize) -> LineGuard<&[u8]> {
        LineGuard::new(
            input,
            "t",
            cap,
            Arc::default(),
            ProgressRoutes::default(),
            Arc::default(),
        )
    }

    #[tokio::test]
    async fn a_line_that_is_not_utf8_is_handed_on_as_text() {
        let input =
            b"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"t\":\"a\xff\xfeb\"}}\n{\"a\":1}\n"
                .to_vec();
        let mut guard = guarded(&input, 256);
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8(out).expect("what is handed on is UTF-8");
        assert_eq!(
            text,
            "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"t\":\"a\u{fffd}\u{fffd}b\"}}\n{\"a\":1}\n"
        );
        let answer: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(answer["id"], 7, "the request still gets its answer");
        assert_eq!(guard.garbage.logged, 1);
    }

    #[tokio::test]
    async fn passes_bytes_through_unchanged() {
        let input = b"garbage\n{\"a\":1}\n  not json\n[1]\n".to_vec();
        let mut guard = guarded(&input, 64);
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, input);
        assert_eq!(guard.garbage.logged, 2, "two non-JSON lines were seen");
    }

    #[tokio::test]
    async fn an_endless_line_ends_the_stream_with_an_error() {
        let input = vec![b'x'; 1000];
        let mut guard = guarded(&input, 100);
        let mut out = Vec::new();
        let err = guard.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "server `t` sent a line longer than 100 bytes on stdout"
        );
    }

    #[tokio::test]
    async fn a_long_line_within_the_cap_is_fine() {
        let mut input = vec![b'{'; 100];
        input.push(b'\n');
        let mut guard = guarded(&input, 100);
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len(), 101);
    }
}
