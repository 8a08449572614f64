//! A writer that batches: what a session's tasks write in one turn of the
//! scheduler leaves together, in one write.
//!
//! rmcp writes and flushes every message on its own: a system call each,
//! and each wakes the reader at the other end (the Docker engine, the
//! client). Here a flush hands the message to the [`Drain`] task, which
//! writes everything waiting in one write when it next runs: a lone
//! message leaves at once, and under load one write carries many messages
//! (BENCHMARKS.md measures the difference).
//!
//! A flush therefore means "in order, and on its way". Once the output has
//! failed, every later write and flush returns the error. Nothing is ever
//! dropped: past a bound, writers wait for room (backpressure), and so do
//! those who add lines, through [`LineSender::poll_room`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use tokio::io::AsyncWrite;

/// Turns one complete line (its `\n` included) into the bytes to write,
/// appended to the buffer (nothing, to drop it).
pub type LineFilter = Box<dyn FnMut(&[u8], &mut Vec<u8>) + Send>;

/// Bytes waiting to be written beyond which writers wait for room.
const LIMIT: usize = 1 << 20;

/// Wraps `output`. Write through the [`Outbox`]; spawn the [`Drain`], which
/// ends once the outbox is closed (shut down or dropped) and everything in
/// it is written. With a `filter`, bytes are written line by line, each
/// line through the filter; an unfinished last line is filtered and
/// written at close.
pub fn outbox<W>(output: W, filter: Option<LineFilter>) -> (Outbox, Drain)
where
    W: AsyncWrite + Send + 'static,
{
    let shared = Arc::new(Mutex::new(State {
        output: Box::pin(output),
        filter,
        partial: Vec::new(),
        queued: Vec::new(),
        sent: 0,
        closed: false,
        failed: None,
        drain: None,
        room: Vec::new(),
    }));
    (
        Outbox {
            shared: shared.clone(),
        },
        Drain { shared },
    )
}

struct State {
    output: Pin<Box<dyn AsyncWrite + Send>>,
    filter: Option<LineFilter>,
    /// With a filter: the start of a line not yet complete.
    partial: Vec<u8>,
    /// Bytes to write, from `sent` on; whole lines when there is a filter.
    queued: Vec<u8>,
    sent: usize,
    closed: bool,
    failed: Option<(io::ErrorKind, String)>,
    drain: Option<Waker>,
    /// Who waits for room: the writer, and whoever adds lines.
    room: Vec<Waker>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("queued", &(self.queued.len() - self.sent))
            .field("partial", &self.partial.len())
            .field("closed", &self.closed)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl State {
    fn error(&self) -> Option<io::Error> {
        self.failed
            .as_ref()
            .map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    fn accept(&mut self, bytes: &[u8]) {
        let Some(filter) = &mut self.filter else {
            self.queued.extend_from_slice(bytes);
            return;
        };
        // What is left of earlier writes holds no line break: only the new
        // bytes are searched, however many writes a line takes.
        let mut from = self.partial.len();
        self.partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &self.partial[from..]) {
            let end = from + end + 1;
            filter(&self.partial[start..end], &mut self.queued);
            start = end;
            from = end;
        }
        self.partial.drain(..start);
    }

    /// Writes what is queued; ready once all of it is written (or the
    /// output failed), pending (with `cx` woken on room) otherwise.
    fn write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(err) = self.error() {
            return Poll::Ready(Err(err));
        }
        while self.sent < self.queued.len() {
            match self
                .output
                .as_mut()
                .poll_write(cx, &self.queued[self.sent..])
            {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(self.fail(io::ErrorKind::WriteZero.into())));
                }
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(self.fail(err))),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.sent = 0;
        if self.queued.capacity() > LIMIT {
            // A large message passed; do not keep its buffer.
            self.queued = Vec::new();
        } else {
            self.queued.clear();
        }
        for room in self.room.drain(..) {
            room.wake();
        }
        match self.output.as_mut().poll_flush(cx) {
            Poll::Ready(Err(err)) => Poll::Ready(Err(self.fail(err))),
            other => other,
        }
    }

    fn fail(&mut self, err: io::Error) -> io::Error {
        self.failed = Some((err.kind(), err.to_string()));
        for room in self.room.drain(..) {
            room.wake();
        }
        err
    }

    /// Drops the output once the drain is done with it: line senders may
    /// outlive the outbox, and must not keep the other end open.
    fn release(&mut self) {
        self.output = Box::pin(tokio::io::sink());
        self.closed = true;
        for room in self.room.drain(..) {
            room.wake();
        }
    }

    fn is_full(&self) -> bool {
        self.queued.len() - self.sent >= LIMIT
    }

    fn wait_for_room(&mut self, cx: &Context<'_>) {
        if !self.room.iter().any(|w| w.will_wake(cx.waker())) {
            self.room.push(cx.waker().clone());
        }
        self.wake_drain();
    }

    fn wake_drain(&mut self) {
        if let Some(drain) = self.drain.take() {
            drain.wake();
        }
    }
}

/// The writing end. Closed when shut down or dropped.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Mutex<State>>,
}

impl Outbox {
    /// A handle that adds whole lines between the writer's lines.
    #[must_use]
    pub fn lines(&self) -> LineSender {
        LineSender {
            shared: self.shared.clone(),
        }
    }

    fn close(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.wake_drain();
    }
}

impl AsyncWrite for Outbox {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut state = self.shared.lock();
        if let Some(err) = state.error() {
            return Poll::Ready(Err(err));
        }
        if state.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if state.is_full() {
            state.wait_for_room(cx);
            return Poll::Pending;
        }
        state.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.shared.lock();
        if let Some(err) = state.error() {
            return Poll::Ready(Err(err));
        }
        state.wake_drain();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.close();
    }
}

/// Adds whole lines to an [`Outbox`], between the lines of its writer,
/// through its filter.
#[derive(Debug, Clone)]
pub struct LineSender {
    shared: Arc<Mutex<State>>,
}

impl LineSender {
    /// Ready when there is room for more lines (or the outbox is closed or
    /// failed, when nothing more will be written); a sender that waits for
    /// this before adding keeps the outbox bounded.
    pub fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.shared.lock();
        if state.closed || state.failed.is_some() || !state.is_full() {
            return Poll::Ready(());
        }
        state.wait_for_room(cx);
        Poll::Pending
    }

    /// Queues `line` (its `\n` included); `false` if the outbox is closed
    /// or its output failed, when it goes nowhere.
    pub fn send(&self, line: &[u8]) -> bool {
        let mut state = self.shared.lock();
        if state.closed || state.failed.is_some() {
            return false;
        }
        let state = &mut *state;
        match &mut state.filter {
            Some(filter) => filter(line, &mut state.queued),
            None => state.queued.extend_from_slice(line),
        }
        state.wake_drain();
        true
    }
}

/// Writes everything waiting in the outbox, in one write when it can;
/// ends when the outbox is closed and empty, after shutting the output
/// down.
#[derive(Debug)]
pub struct Drain {
    shared: Arc<Mutex<State>>,
}

impl Future for Drain {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.shared.lock();
        loop {
            if let Err(err) = std::task::ready!(state.write_out(cx)) {
                state.release();
                return Poll::Ready(Err(err));
            }
            if !state.closed {
                state.drain = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if state.filter.is_some() && !state.partial.is_empty() {
                // A last line without its line break is still a line.
                let mut last = std::mem::take(&mut state.partial);
                last.push(b'\n');
                state.accept(&last);
                continue;
            }
            let shut = std::task::ready!(state.output.as_mut().poll_shutdown(cx));
            state.release();
            return Poll::Ready(shut);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn writes_in_order_and_drains_on_close() {
        let (mut reader, writer) = tokio::io::duplex(64);
        let (mut outbox, drain) = outbox(writer, None);
        let drain = tokio::spawn(drain);
        let mut expected = Vec::new();
        for i in 0..2000 {
            let message = format!("{{\"n\":{i}}}\n");
            outbox.write_all(message.as_bytes()).await.unwrap();
            outbox.flush().await.unwrap();
            expected.extend_from_slice(message.as_bytes());
        }
        drop(outbox);
        let mut got = Vec::new();
        let (read, drained) = tokio::join!(reader.read_to_end(&mut got), drain);
        read.unwrap();
        drained.unwrap().unwrap();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn filters_whole_lines_and_inserts_lines_between_them() {
        let (mut reader, writer) = tokio::io::duplex(1 << 16);
        let filter: LineFilter = Box::new(|line, out| {
            if !line.starts_with(b"drop") {
                out.extend_from_slice(&line.to_ascii_uppercase());
            }
        });
        let (mut outbox, drain) = outbox(writer, Some(filter));
        let lines = outbox.lines();
        let drain = tokio::spawn(drain);
        outbox.write_all(b"one\ntw").await.unwrap();
        outbox.flush().await.unwrap();
        assert!(lines.send(b"inserted\n"));
        assert!(lines.send(b"drop this one too\n"));
        outbox.write_all(b"o\ndrop me\nlast").await.unwrap();
        outbox.shutdown().await.unwrap();
        assert!(!lines.send(b"after the close\n"));
        drop(outbox);
        drain.await.unwrap().unwrap();
        drop(lines);
        let mut got = String::new();
        reader.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "ONE\nINSERTED\nTWO\nLAST\n");
    }

    #[tokio::test]
    async fn a_failed_output_fails_later_writes() {
        let (reader, writer) = tokio::io::duplex(8);
        drop(reader);
        let (mut outbox, drain) = outbox(writer, None);
        let drain = tokio::spawn(drain);
        // The first message is handed over; the drain finds the output gone.
        outbox.write_all(b"hello\n").await.unwrap();
        outbox.flush().await.unwrap();
        assert!(drain.await.unwrap().is_err());
        assert!(outbox.write_all(b"again\n").await.is_err());
        assert!(outbox.flush().await.is_err());
        assert!(!outbox.lines().send(b"an error\n"));
    }
}
