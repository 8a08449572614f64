//! Bytes read, cut into whole lines, and the lines kept handed on: the
//! buffer of the readers that sort a stream line by line (the guard on a
//! backend's stdout, the stdio front on the client's input).
//!
//! Input is read straight into the buffer the lines are cut from: no
//! scratch buffer to zero and copy out of on every read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

/// Room made for each read.
const READ_SIZE: usize = 16 * 1024;

/// What becomes of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Handed on.
    Hand,
    /// Handed on with each invalid UTF-8 sequence replaced by U+FFFD, so
    /// that what is handed on is always text.
    HandLossy,
    /// Dropped.
    Skip,
    /// Dropped (it was taken care of), and nothing after it sorted until
    /// the reader is ready again (its consumer pushes back).
    SkipAndPause,
}

impl From<bool> for Sort {
    fn from(hand: bool) -> Self {
        if hand { Self::Hand } else { Self::Skip }
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Lines {
    /// Bytes read from the start of a line not yet complete.
    incoming: BytesMut,
    /// How much of `incoming` is known to hold no line break: a long line
    /// is searched once, not once per read.
    scanned: usize,
    /// Lines to hand on, from `handed` on.
    ready: Vec<u8>,
    handed: usize,
}

impl Lines {
    /// Hands what is ready to `out`; `false` if nothing is.
    pub fn hand(&mut self, out: &mut ReadBuf<'_>) -> bool {
        if self.handed == self.ready.len() {
            return false;
        }
        let n = out.remaining().min(self.ready.len() - self.handed);
        out.put_slice(&self.ready[self.handed..self.handed + n]);
        self.handed += n;
        if self.handed == self.ready.len() {
            self.ready.clear();
            self.handed = 0;
        }
        true
    }

    /// Reads what `reader` has into the buffer, to be sorted by
    /// [`Self::sort`]: how many bytes, 0 at the end of input.
    ///
    /// # Errors
    ///
    /// The reader's.
    pub fn poll_read_from<R: AsyncRead>(
        &mut self,
        reader: Pin<&mut R>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if self.incoming.capacity() - self.incoming.len() < READ_SIZE {
            self.incoming.reserve(READ_SIZE);
        }
        tokio_util::io::poll_read_buf(reader, cx, &mut self.incoming)
    }

    /// Adds `bytes`, and sorts the lines they complete (see [`Self::sort`]).
    pub fn push<S: Into<Sort>>(&mut self, bytes: &[u8], keep: impl FnMut(&[u8]) -> S) {
        self.incoming.extend_from_slice(bytes);
        self.sort(keep);
    }

    /// Passes each line completed since the last sort (its `\n` included)
    /// to `keep`, which says what becomes of it; `true` when it paused,
    /// leaving the lines after that one to the next sort.
    pub fn sort<S: Into<Sort>>(&mut self, mut keep: impl FnMut(&[u8]) -> S) -> bool {
        let mut start = 0;
        let mut from = self.scanned;
        let mut paused = false;
        while let Some(end) = memchr::memchr(b'\n', &self.incoming[from..]) {
            let end = from + end + 1;
            let line = &self.incoming[start..end];
            let sort = keep(line).into();
            match sort {
                Sort::Hand => self.ready.extend_from_slice(line),
                Sort::HandLossy => self
                    .ready
                    .extend_from_slice(String::from_utf8_lossy(line).as_bytes()),
                Sort::Skip | Sort::SkipAndPause => {}
            }
            start = end;
            from = end;
            if sort == Sort::SkipAndPause {
                paused = true;
                break;
            }
        }
        bytes::Buf::advance(&mut self.incoming, start);
        // After a pause, what remains holds whole lines not yet sorted.
        self.scanned = if paused { 0 } else { self.incoming.len() };
        paused
    }

    /// The length of the line not yet complete (after a pause, of what
    /// is left to sort).
    #[must_use]
    pub fn partial(&self) -> usize {
        self.incoming.len()
    }

    /// Drops the line not yet complete.
    pub fn discard_partial(&mut self) {
        self.incoming = BytesMut::new();
        self.scanned = 0;
    }

    /// Hands on the line not yet complete as it is (at the end of input).
    pub fn release_partial(&mut self) {
        self.ready.extend_from_slice(&self.incoming);
        self.incoming.clear();
        self.scanned = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handed(lines: &mut Lines) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 4];
        loop {
            let mut buf = ReadBuf::new(&mut chunk);
            if !lines.hand(&mut buf) {
                return out;
            }
            out.extend_from_slice(buf.filled());
        }
    }

    #[test]
    fn lines_split_across_pushes_are_sorted_whole() {
        let mut lines = Lines::default();
        let mut seen = Vec::new();
        let mut keep = |line: &[u8]| {
            seen.push(String::from_utf8_lossy(line).into_owned());
            !line.starts_with(b"drop")
        };
        lines.push(b"one\ntw", &mut keep);
        lines.push(b"o\ndrop", &mut keep);
        lines.push(b" me\nlast", &mut keep);
        assert_eq!(seen, ["one\n", "two\n", "drop me\n"]);
        assert_eq!(lines.partial(), 4);
        assert_eq!(handed(&mut lines), b"one\ntwo\n");
        lines.release_partial();
        assert_eq!(handed(&mut lines), b"last");
        lines.push(b"x", |_| true);
        lines.discard_partial();
        lines.push(b"y\n", |_| true);
        assert_eq!(handed(&mut lines), b"y\n");
    }
}
