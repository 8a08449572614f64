//! Bytes read, cut into whole lines, and the lines kept handed on: the
//! buffer of the readers that sort a stream line by line (the guard on a
//! backend's stdout, the stdio front on the client's input).

use tokio::io::ReadBuf;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Lines {
    /// Bytes read from the start of a line not yet complete.
    incoming: Vec<u8>,
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

    /// Adds `bytes`, and passes each line they complete (its `\n`
    /// included) to `keep`, which says whether to hand it on.
    pub fn push(&mut self, bytes: &[u8], mut keep: impl FnMut(&[u8]) -> bool) {
        self.incoming.extend_from_slice(bytes);
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(end) = memchr::memchr(b'\n', &self.incoming[from..]) {
            let end = from + end + 1;
            let line = &self.incoming[start..end];
            if keep(line) {
                self.ready.extend_from_slice(line);
            }
            start = end;
            from = end;
        }
        self.incoming.drain(..start);
        self.scanned = self.incoming.len();
    }

    /// The length of the line not yet complete.
    #[must_use]
    pub fn partial(&self) -> usize {
        self.incoming.len()
    }

    /// Drops the line not yet complete.
    pub fn discard_partial(&mut self) {
        self.incoming = Vec::new();
        self.scanned = 0;
    }

    /// Hands on the line not yet complete as it is (at the end of input).
    pub fn release_partial(&mut self) {
        self.ready.append(&mut self.incoming);
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
