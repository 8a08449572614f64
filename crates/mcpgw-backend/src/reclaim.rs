//! A byte stream that can be handed to one MCP transport, taken back when
//! that transport gives up, and handed to another.
//!
//! rmcp's automatic lifecycle probes with `server/discover` and falls back to
//! `initialize` only when the probe fails in certain ways; a server that
//! answers the probe listing handshake-era versions only (an rmcp server with
//! narrowed versions does) makes it give up and drop the transport. The
//! gateway then retries `initialize` over the same pipes, which it can only
//! do if dropping the first transport does not drop the pipes.
//!
//! Shutdown requests are ignored: closing happens when the last handle is
//! dropped, so a failed transport cannot half-close the server's stdin.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::{Mutex, MutexGuard};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A shared handle to one stream. Clones share it.
#[derive(Debug)]
pub(crate) struct Reclaim<T>(Arc<Mutex<T>>);

impl<T> Clone for Reclaim<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Reclaim<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self(Arc::new(Mutex::new(inner)))
    }

    fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Reclaim<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Reclaim<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Flush, but leave the stream open for the next transport; it closes
        // when the last handle is dropped.
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }
}
