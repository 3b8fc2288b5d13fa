//! A connection's reads taken in turns: after [`TURN_BYTES`] read without the socket running
//! dry, the connection's task yields once, so that the requests it has read are answered and
//! written before it reads more.
//!
//! Why: over HTTP/2 a burst of requests arrives on one connection (an API server holds one per
//! webhook endpoint). hyper's connection task reads and decodes frames for as long as the socket
//! has bytes, spawning a task per request, and on a serving thread of its own those tasks run
//! only once it yields: the first answer of a burst waited for the whole burst to be read
//! (`strace -ttt` of a serving thread: three 4 KiB reads, then five answers). nginx answers what
//! one read brought before reading again. A read that finds the socket empty ends a turn by
//! itself, so HTTP/1.1 (one request, then an empty socket) never yields here.
//!
//! What it did at 5,000 req/s over one HTTP/2 connection of 50 streams
//! (`CONNECTIONS=1 STREAMS=50 FIXED_ONLY=1 VERSUS=<without> scripts/bench-vs-nginx.sh 5`, three
//! runs of 5, 7 and 3 rounds): p50 0.19, 0.19, 0.21 ms against 0.21, 0.20, 0.26 without; p99
//! paired to nginx's 1.19x, 1.22x, 1.42x against 1.45x, 1.28x, 1.29x; the maximum rate on that
//! connection 80,995 req/s against 77,558. Over 50 connections nothing changed beyond the noise.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read in one turn before the task yields: a review or two (a 3-image Pod's is about
/// 2.4 KiB with its HTTP/2 frames). A 16 KiB turn measured no better than none on p50.
pub(super) const TURN_BYTES: usize = 4 * 1024;

/// `S` read in turns of [`TURN_BYTES`]; writes pass through.
pub(super) struct ReadTurns<S> {
    inner: S,
    /// Bytes read since a read last found nothing to read (or since the last yield).
    this_turn: usize,
}

impl<S> ReadTurns<S> {
    pub(super) fn new(inner: S) -> Self {
        ReadTurns {
            inner,
            this_turn: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadTurns<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.this_turn >= TURN_BYTES {
            self.this_turn = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) => self.this_turn += buf.filled().len() - before,
            Poll::Pending => self.this_turn = 0,
            Poll::Ready(Err(_)) => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadTurns<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    /// A stream that always has `chunk` bytes ready, or nothing when `dry`.
    struct Endless {
        chunk: usize,
        dry: bool,
    }

    impl AsyncRead for Endless {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.dry {
                return Poll::Pending;
            }
            let n = self.chunk.min(buf.remaining());
            buf.put_slice(&vec![b'x'; n]);
            Poll::Ready(Ok(()))
        }
    }

    fn poll_once(stream: &mut ReadTurns<Endless>, space: &mut [u8]) -> Poll<io::Result<usize>> {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut buf = ReadBuf::new(space);
        Pin::new(stream)
            .poll_read(&mut cx, &mut buf)
            .map_ok(|()| buf.filled().len())
    }

    /// A quarter of a turn: four reads make one.
    const CHUNK: usize = TURN_BYTES / 4;

    #[test]
    fn a_socket_that_never_runs_dry_is_read_in_turns() {
        let mut stream = ReadTurns::new(Endless {
            chunk: CHUNK,
            dry: false,
        });
        let mut space = [0u8; TURN_BYTES];
        for _ in 0..3 {
            let mut reads = 0;
            while let Poll::Ready(read) = poll_once(&mut stream, &mut space) {
                assert_eq!(read.unwrap(), CHUNK);
                reads += 1;
                assert!(reads <= 4, "no yield after {reads} reads");
            }
            assert_eq!(reads, 4, "a turn is {TURN_BYTES} bytes");
        }
    }

    #[test]
    fn a_socket_that_runs_dry_ends_the_turn() {
        let mut stream = ReadTurns::new(Endless {
            chunk: CHUNK,
            dry: false,
        });
        let mut space = [0u8; TURN_BYTES];
        for _ in 0..3 {
            // Three quarters of a turn, then the socket is empty: no yield of its own ever comes.
            for _ in 0..3 {
                assert!(matches!(
                    poll_once(&mut stream, &mut space),
                    Poll::Ready(Ok(CHUNK))
                ));
            }
            stream.inner.dry = true;
            assert!(poll_once(&mut stream, &mut space).is_pending());
            stream.inner.dry = false;
        }
    }

    #[tokio::test]
    async fn what_is_read_in_turns_is_all_there() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                tokio::io::AsyncWriteExt::write_all(&mut client, &sent)
                    .await
                    .unwrap();
            })
        };
        let mut received = Vec::new();
        ReadTurns::new(server)
            .read_to_end(&mut received)
            .await
            .unwrap();
        writer.await.unwrap();
        assert_eq!(received, sent);
    }
}
