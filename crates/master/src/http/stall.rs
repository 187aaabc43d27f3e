//! [`Stall`]: an IO wrapper that fails a connection whose reads or writes
//! make no progress for too long, so a client that stops reading its
//! answers (or trickles a body) cannot hold a connection slot forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Sleep};

/// A connection with a deadline on each direction's progress.
pub struct Stall<S> {
    io: S,
    read_limit: Duration,
    write_limit: Duration,
    read_wait: Option<Pin<Box<Sleep>>>,
    write_wait: Option<Pin<Box<Sleep>>>,
}

impl<S> Stall<S> {
    /// `io`, failed once a read waits `read_limit` or a write `write_limit`.
    pub fn new(io: S, read_limit: Duration, write_limit: Duration) -> Stall<S> {
        Stall { io, read_limit, write_limit, read_wait: None, write_wait: None }
    }
}

/// `poll` as it is when it made progress (the deadline restarts), or an
/// error once the deadline of a wait that started `limit` ago fires.
fn deadline<T>(
    poll: Poll<io::Result<T>>,
    wait: &mut Option<Pin<Box<Sleep>>>,
    limit: Duration,
    cx: &mut Context<'_>,
    what: &str,
) -> Poll<io::Result<T>> {
    if poll.is_ready() {
        *wait = None;
        return poll;
    }
    let timer = wait.get_or_insert_with(|| Box::pin(sleep(limit)));
    match timer.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client stalled the connection ({what})"),
        ))),
        Poll::Pending => Poll::Pending,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stall<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        deadline(poll, &mut this.read_wait, this.read_limit, cx, "read")
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stall<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        deadline(poll, &mut this.write_wait, this.write_limit, cx, "write")
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        deadline(poll, &mut this.write_wait, this.write_limit, cx, "flush")
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_peer_that_stops_reading_fails_the_writer_and_a_reading_one_does_not() {
        let (near, mut far) = tokio::io::duplex(64);
        let limit = Duration::from_millis(100);
        let mut conn = Stall::new(near, Duration::from_secs(60), limit);
        // The far side reads nothing: the 64-byte pipe fills and the write stalls.
        let err = conn.write_all(&[7u8; 4096]).await.expect_err("a stalled write fails");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        let (near, mut far2) = tokio::io::duplex(64);
        let mut conn = Stall::new(near, Duration::from_secs(60), limit);
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 4096];
            for chunk in got.chunks_mut(64) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                far2.read_exact(chunk).await.unwrap();
            }
            got
        });
        // Slow but steady progress: each wait is far below the limit.
        conn.write_all(&[7u8; 4096]).await.expect("a slow reader is served");
        assert_eq!(reader.await.unwrap(), vec![7u8; 4096]);
        drop(far.read(&mut [0u8; 1]).await);
    }

    #[tokio::test]
    async fn a_peer_that_sends_nothing_fails_the_reader() {
        let (near, _far) = tokio::io::duplex(64);
        let mut conn = Stall::new(near, Duration::from_millis(100), Duration::from_secs(60));
        let err = conn.read(&mut [0u8; 16]).await.expect_err("a stalled read fails");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
