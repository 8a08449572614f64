//! A guard on a backend's stdout, between the container and the MCP
//! client: it hands rmcp whole lines, logs lines that are not JSON
//! (rate-limited; rmcp skips them), diverts the lines that answer express
//! calls (see `express.rs`), and ends the stream with an error when a line
//! grows past the cap, so a backend that floods one endless line is killed
//! instead of filling memory.
//!
//! It looks at each line's first byte and length; it parses only lines that
//! may concern an express call, once one has been made.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};

use crate::express::Express;
use crate::lines::Lines;

/// The longest line (one JSON-RPC message) a backend may send: 16 MiB.
pub(crate) const MAX_LINE: usize = 16 * 1024 * 1024;

/// At most this many non-JSON lines are logged per window, per backend.
const LOG_BURST: u32 = 5;
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct LineGuard<R> {
    inner: R,
    server: String,
    max_line: usize,
    lines: Lines,
    eof: bool,
    express: Option<Arc<Express>>,
    garbage: GarbageLog,
    verdict: Arc<Mutex<Option<String>>>,
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
        if self.window_start.elapsed() >= LOG_WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(
                    server,
                    suppressed = self.suppressed,
                    "more non-JSON lines on stdout were skipped"
                );
            }
            self.window_start = Instant::now();
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < LOG_BURST {
            self.logged += 1;
            let sample = String::from_utf8_lossy(&line[..line.len().min(120)]);
            tracing::warn!(server, line = %sample.trim_end(), "skipped a non-JSON line on stdout (stdout is for MCP messages only)");
        } else {
            self.suppressed += 1;
        }
    }
}

impl<R> LineGuard<R> {
    /// Guards `inner`, the stdout of `server`, with lines capped at
    /// `max_line`; answers to `express` calls go there.
    pub(crate) fn new(
        inner: R,
        server: &str,
        max_line: usize,
        verdict: Arc<Mutex<Option<String>>>,
        express: Option<Arc<Express>>,
    ) -> Self {
        Self {
            inner,
            server: server.to_string(),
            max_line,
            lines: Lines::default(),
            eof: false,
            express,
            garbage: GarbageLog {
                window_start: Instant::now(),
                logged: 0,
                suppressed: 0,
            },
            verdict,
        }
    }

    /// Sorts the lines just read: rmcp's, logged garbage (handed on all the
    /// same), or express answers; `false` if a line is longer than the cap.
    fn sort(&mut self) -> bool {
        let mut fits = true;
        self.lines.sort(|line| {
            if line.len() > self.max_line + 1 {
                fits = false;
                return false;
            }
            let first = line.iter().find(|b| !b.is_ascii_whitespace());
            if !matches!(first, None | Some(b'{' | b'[')) {
                self.garbage.note(&self.server, line);
            }
            !self
                .express
                .as_ref()
                .is_some_and(|express| express.watching() && express.divert(line))
        });
        fits && self.lines.partial() <= self.max_line
    }

    fn too_long(&self) -> std::io::Error {
        let message = format!(
            "server `{}` sent a line longer than {} bytes on stdout",
            self.server, self.max_line
        );
        *self
            .verdict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(format!(
            "it sent a line longer than {} bytes on stdout",
            self.max_line
        ));
        std::io::Error::new(std::io::ErrorKind::InvalidData, message)
    }

    fn end(&mut self) {
        self.eof = true;
        if let Some(express) = &self.express {
            express.end();
        }
    }
}

impl<R> Drop for LineGuard<R> {
    fn drop(&mut self) {
        if let Some(express) = &self.express {
            express.end();
        }
    }
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
            if !this.sort() {
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

    #[tokio::test]
    async fn passes_bytes_through_unchanged() {
        let input = b"garbage\n{\"a\":1}\n  not json\n[1]\n".to_vec();
        let mut guard = LineGuard::new(&input[..], "t", 64, Arc::default(), None);
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, input);
        assert_eq!(guard.garbage.logged, 2, "two non-JSON lines were seen");
    }

    #[tokio::test]
    async fn an_endless_line_ends_the_stream_with_an_error() {
        let input = vec![b'x'; 1000];
        let mut guard = LineGuard::new(&input[..], "t", 100, Arc::default(), None);
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
        let mut guard = LineGuard::new(&input[..], "t", 100, Arc::default(), None);
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len(), 101);
    }
}
