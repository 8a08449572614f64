//! A `CONNECT` tunnel's two directions, copied until either side closes or
//! no byte has moved either way for the idle timeout, so that a server
//! cannot hold its proxy's connection places with tunnels it forgot.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How long a tunnel may carry nothing before the proxy closes it; a
/// little above the 15 minutes of common proxies' read timeouts, so that
/// a client's keep-alive at that period keeps it.
pub(crate) const TUNNEL_IDLE: Duration = Duration::from_secs(16 * 60);

/// How a tunnel ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// A side closed, after these many bytes from `a` to `b` and back.
    Closed(u64, u64),
    /// Nothing moved for the idle timeout.
    Idle,
}

/// Copies between `a` and `b` both ways until either closes or nothing
/// has moved for `idle`.
pub(crate) async fn splice<A, B>(a: &mut A, b: &mut B, idle: Duration) -> io::Result<Ended>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut a = Watched {
        inner: a,
        activity: &activity,
    };
    let mut b = Watched {
        inner: b,
        activity: &activity,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        let deadline = activity.last() + idle;
        tokio::select! {
            copied = &mut copy => return copied.map(|(there, back)| Ended::Closed(there, back)),
            () = tokio::time::sleep_until(deadline) => {
                if activity.last() + idle <= Instant::now() {
                    return Ok(Ended::Idle);
                }
            }
        }
    }
}

/// When bytes last moved, on tokio's clock.
struct Activity {
    base: Instant,
    /// Milliseconds from `base`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// A stream whose reads and writes that move bytes count as activity.
struct Watched<'a, S> {
    inner: &'a mut S,
    activity: &'a Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut *self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, duplex};

    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_that_carries_nothing_ends_after_the_idle_timeout() {
        let (mut client, mut near_client) = duplex(1024);
        let (mut near_upstream, _upstream) = duplex(1024);
        let began = Instant::now();
        let ended = splice(&mut near_client, &mut near_upstream, IDLE).await;
        assert_eq!(ended.unwrap(), Ended::Idle);
        assert_eq!(began.elapsed(), IDLE);
        // The client's side sees its tunnel close.
        drop(near_client);
        assert_eq!(client.read(&mut [0; 8]).await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_either_way_keeps_a_tunnel_open_and_a_close_ends_it() {
        let (mut client, mut near_client) = duplex(1024);
        let (mut near_upstream, mut upstream) = duplex(1024);
        let tunnel =
            tokio::spawn(async move { splice(&mut near_client, &mut near_upstream, IDLE).await });
        let mut byte = [0; 1];
        for round in 0..4 {
            tokio::time::sleep(IDLE / 2).await;
            if round % 2 == 0 {
                client.write_all(b"x").await.unwrap();
                upstream.read_exact(&mut byte).await.unwrap();
            } else {
                upstream.write_all(b"y").await.unwrap();
                client.read_exact(&mut byte).await.unwrap();
            }
        }
        // Two idle timeouts have passed since it opened; it is still open.
        assert!(!tunnel.is_finished());
        drop(client);
        drop(upstream);
        assert_eq!(tunnel.await.unwrap().unwrap(), Ended::Closed(2, 2));
    }
}
