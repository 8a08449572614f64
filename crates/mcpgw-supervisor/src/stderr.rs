//! A server's stderr: each line goes to the gateway's log, tagged with the
//! server's name, and the last [`StderrTail::CAPACITY`] bytes are kept so an
//! error report can show what the server said before it failed.
//!
//! A server that floods stderr cannot flood the gateway's log: at most
//! [`LOG_LINES_PER_SECOND`] lines a second are logged, and the number skipped
//! is logged once the flood subsides. The tail keeps everything.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How many stderr lines per server and second reach the log.
pub(crate) const LOG_LINES_PER_SECOND: u32 = 50;

/// The shared tail of one server's stderr. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StderrTail {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    server: String,
    tail: VecDeque<u8>,
    /// A line not yet ended by a newline; frames do not align with lines.
    partial: Vec<u8>,
    window_start: Instant,
    logged: u32,
    skipped: u64,
}

impl StderrTail {
    /// How many bytes of stderr are kept.
    pub const CAPACITY: usize = 64 * 1024;
    /// Longest line logged as one event; longer ones are cut.
    const MAX_LINE: usize = 4096;

    /// A tail for `server`'s stderr, logged under its name.
    pub fn new(server: String) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                server,
                tail: VecDeque::with_capacity(1024),
                partial: Vec::new(),
                window_start: Instant::now(),
                logged: 0,
                skipped: 0,
            })),
        }
    }

    /// Logs and keeps what the server wrote to stderr.
    pub fn push(&self, bytes: &[u8]) {
        let mut inner = self.inner.lock();
        inner.tail.extend(bytes);
        let excess = inner.tail.len().saturating_sub(Self::CAPACITY);
        inner.tail.drain(..excess);
        let mut rest = bytes;
        loop {
            let end = memchr::memchr(b'\n', rest);
            let piece = &rest[..end.unwrap_or(rest.len())];
            let room = Self::MAX_LINE.saturating_sub(inner.partial.len());
            inner
                .partial
                .extend_from_slice(&piece[..piece.len().min(room)]);
            let Some(end) = end else {
                break;
            };
            let line = std::mem::take(&mut inner.partial);
            inner.log(&line);
            rest = &rest[end + 1..];
        }
    }

    /// The last `max` bytes of stderr, as text, starting at a line boundary
    /// where one is near.
    pub fn tail(&self, max: usize) -> String {
        let inner = self.inner.lock();
        let skip = inner.tail.len().saturating_sub(max);
        let bytes: Vec<u8> = inner.tail.iter().skip(skip).copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        // A full buffer was cut mid-line at its start, like a skipped one.
        let text = if skip > 0 || inner.tail.len() >= Self::CAPACITY {
            text.split_once('\n').map_or(&*text, |(_, rest)| rest)
        } else {
            &text
        };
        text.trim_end().to_string()
    }
}

impl Inner {
    fn log(&mut self, line: &[u8]) {
        if self.window_start.elapsed() >= Duration::from_secs(1) {
            if self.skipped > 0 {
                tracing::warn!(
                    target: "mcpgw::backend_stderr",
                    server = %self.server,
                    skipped = self.skipped,
                    "stderr flood: lines were kept in the tail but not logged"
                );
            }
            self.window_start = Instant::now();
            self.logged = 0;
            self.skipped = 0;
        }
        if self.logged < LOG_LINES_PER_SECOND {
            self.logged += 1;
            log_line(&self.server, line);
        } else {
            self.skipped += 1;
        }
    }

    /// How many lines the current window skipped.
    #[cfg(test)]
    fn skipped(&self) -> u64 {
        self.skipped
    }
}

fn log_line(server: &str, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches('\r');
    tracing::info!(target: "mcpgw::backend_stderr", server, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_64_kib_and_limits_logging() {
        let tail = StderrTail::new("t".to_string());
        for n in 0..10_000 {
            tail.push(format!("line {n} of a flood\n").as_bytes());
        }
        let kept = tail.tail(StderrTail::CAPACITY);
        assert!(kept.len() <= StderrTail::CAPACITY);
        assert!(
            kept.ends_with("line 9999 of a flood"),
            "{}",
            &kept[kept.len() - 40..]
        );
        assert!(kept.starts_with("line "), "starts at a line boundary");
        let inner = tail.inner.lock();
        assert_eq!(u64::from(inner.logged) + inner.skipped(), 10_000);
        assert_eq!(inner.logged, LOG_LINES_PER_SECOND);
    }

    #[test]
    fn frames_split_mid_line_are_joined() {
        let tail = StderrTail::new("t".to_string());
        tail.push(b"hel");
        tail.push(b"lo\nwor");
        tail.push(b"ld\n");
        assert_eq!(tail.tail(100), "hello\nworld");
    }
}
