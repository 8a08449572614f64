//! A guard on a backend's stdout, between the container and the MCP
//! client: it lets bytes through unchanged, logs lines that are not JSON
//! (rate-limited; rmcp skips them), and ends the stream with an error when a
//! line grows past the cap, so a backend that floods one endless line is
//! killed instead of filling memory.
//!
//! It only looks at each line's first byte and length, never parses.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};

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
    line_len: usize,
    first: Option<u8>,
    sample: Vec<u8>,
    window_start: Instant,
    logged: u32,
    suppressed: u64,
    verdict: Arc<Mutex<Option<String>>>,
}

impl<R> LineGuard<R> {
    /// Guards `inner`, the stdout of `server`, with lines capped at `max_line`.
    pub(crate) fn new(
        inner: R,
        server: &str,
        max_line: usize,
        verdict: Arc<Mutex<Option<String>>>,
    ) -> Self {
        Self {
            inner,
            server: server.to_string(),
            max_line,
            line_len: 0,
            first: None,
            sample: Vec::new(),
            window_start: Instant::now(),
            logged: 0,
            suppressed: 0,
            verdict,
        }
    }

    fn end_of_line(&mut self) {
        let is_json = matches!(self.first, None | Some(b'{' | b'['));
        if !is_json {
            self.log_garbage();
        }
        self.line_len = 0;
        self.first = None;
        self.sample.clear();
    }

    fn log_garbage(&mut self) {
        if self.window_start.elapsed() >= LOG_WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(server = %self.server, suppressed = self.suppressed, "more non-JSON lines on stdout were skipped");
            }
            self.window_start = Instant::now();
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < LOG_BURST {
            self.logged += 1;
            let sample = String::from_utf8_lossy(&self.sample);
            tracing::warn!(server = %self.server, line = %sample.trim_end(), "skipped a non-JSON line on stdout (stdout is for MCP messages only)");
        } else {
            self.suppressed += 1;
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LineGuard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        for &byte in &buf.filled()[before..] {
            if byte == b'\n' {
                this.end_of_line();
                continue;
            }
            this.line_len += 1;
            if this.first.is_none() && !byte.is_ascii_whitespace() {
                this.first = Some(byte);
            }
            if this.sample.len() < 120 {
                this.sample.push(byte);
            }
        }
        if this.line_len > this.max_line {
            // An error read must hand over no bytes.
            buf.set_filled(before);
            let message = format!(
                "server `{}` sent a line longer than {} bytes on stdout",
                this.server, this.max_line
            );
            *this
                .verdict
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(format!(
                "it sent a line longer than {} bytes on stdout",
                this.max_line
            ));
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                message,
            )));
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn passes_bytes_through_unchanged() {
        let input = b"garbage\n{\"a\":1}\n  not json\n[1]\n".to_vec();
        let mut guard = LineGuard::new(&input[..], "t", 64, Arc::default());
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, input);
        assert_eq!(guard.logged, 2, "two non-JSON lines were seen");
    }

    #[tokio::test]
    async fn an_endless_line_ends_the_stream_with_an_error() {
        let input = vec![b'x'; 1000];
        let mut guard = LineGuard::new(&input[..], "t", 100, Arc::default());
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
        let mut guard = LineGuard::new(&input[..], "t", 100, Arc::default());
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len(), 101);
    }
}
