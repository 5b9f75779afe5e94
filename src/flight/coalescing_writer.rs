//! The Flight SQL socket, with its writes coalesced.
//!
//! h2 hands the socket one DATA frame per write and flushes after each, and
//! gRPC clients (grpc-go, hence ADBC) cap frames at 16 KiB. Exporting 10M
//! rows took 25,000 `writev` calls, a quarter of the server's CPU time, most
//! of it per call: TCP transmit, loopback receive, waking the reader
//! (perf, BENCHMARKS.md).
//!
//! Here the frames go into a buffer that a task of its own writes out, so
//! each `write` takes whatever h2 has produced since the last one (up to
//! `HIGH_WATER`, then h2 waits). The cost is one memory copy; the frames
//! still leave as soon as the writer task runs, so a lone small frame (a
//! reply, trailers) is not held back the way Nagle's algorithm would.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Buffered bytes at which h2 waits for the writer task. The writer holds
/// one more buffer of the same size while it writes.
const HIGH_WATER: usize = 512 * 1024;

/// Once the connection is dropped, how long the writer task may still spend
/// delivering what was buffered before it gives up on a peer that does not
/// read.
const DRAIN_AFTER_DROP: Duration = Duration::from_secs(30);

/// A TCP connection whose reads go straight to the socket and whose writes
/// are coalesced by a writer task.
pub struct CoalescingStream {
    read: OwnedReadHalf,
    shared: Arc<Shared>,
    info: TcpConnectInfo,
}

struct Shared {
    state: Mutex<State>,
    data_ready: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    /// Written by h2, not yet taken by the writer task.
    pending: Vec<u8>,
    /// No more writes: the writer delivers `pending`, then shuts the socket.
    closing: bool,
    /// The writer task ended: `Ok` after a clean shutdown, else its error.
    finished: Option<Result<(), (io::ErrorKind, String)>>,
    /// The h2 side, waiting for room in `pending` or for the shutdown.
    waiting: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock guards plain data; a panic elsewhere cannot leave it
        // half-updated, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn wake_waiting(&mut self) {
        if let Some(waker) = self.waiting.take() {
            waker.wake();
        }
    }

    /// The writer task's error, for the next write or flush to return.
    fn failure(&self) -> Option<io::Error> {
        match &self.finished {
            Some(Err((kind, message))) => Some(io::Error::new(*kind, message.clone())),
            Some(Ok(())) => Some(io::Error::new(io::ErrorKind::BrokenPipe, "connection already shut down")),
            None => None,
        }
    }
}

impl CoalescingStream {
    /// Takes over `socket` and starts its writer task (on the current tokio
    /// runtime).
    pub fn new(socket: TcpStream) -> CoalescingStream {
        let info = socket.connect_info();
        let (read, write) = socket.into_split();
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), data_ready: tokio::sync::Notify::new() });
        tokio::spawn(write_out(shared.clone(), write));
        CoalescingStream { read, shared, info }
    }
}

/// The writer task: takes everything buffered at once and writes it.
async fn write_out(shared: Arc<Shared>, mut socket: OwnedWriteHalf) {
    let mut chunk = Vec::with_capacity(HIGH_WATER);
    let result = loop {
        let closing = {
            let mut state = shared.lock();
            std::mem::swap(&mut state.pending, &mut chunk);
            state.wake_waiting();
            state.closing
        };
        if chunk.is_empty() {
            if closing {
                break socket.shutdown().await;
            }
            // A notify_one() that came after the swap left a permit, so
            // this cannot miss data.
            shared.data_ready.notified().await;
            continue;
        }
        let written = if closing {
            tokio::time::timeout(DRAIN_AFTER_DROP, socket.write_all(&chunk))
                .await
                .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading")))
        } else {
            socket.write_all(&chunk).await
        };
        if let Err(e) = written {
            break Err(e);
        }
        chunk.clear();
    };
    let mut state = shared.lock();
    state.finished = Some(result.map_err(|e| (e.kind(), e.to_string())));
    state.pending = Vec::new();
    state.wake_waiting();
}

impl AsyncRead for CoalescingStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for CoalescingStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let mut state = self.shared.lock();
        if let Some(e) = state.failure() {
            return Poll::Ready(Err(e));
        }
        if state.closing {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "write after shutdown")));
        }
        if state.pending.len() >= HIGH_WATER {
            state.waiting = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut written = 0;
        for buf in bufs {
            state.pending.extend_from_slice(buf);
            written += buf.len();
        }
        drop(state);
        if written > 0 {
            self.shared.data_ready.notify_one();
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Buffered bytes need nothing more from the caller to reach the
    /// socket: the writer task takes them as soon as it runs. Waiting here
    /// would bring back one write per frame, since h2 flushes after each.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.shared.lock().failure() {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Waits until everything buffered is written and the socket is shut.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.shared.lock();
        if let Some(result) = &state.finished {
            return Poll::Ready(result.clone().map_err(|(kind, message)| io::Error::new(kind, message)));
        }
        state.closing = true;
        state.waiting = Some(cx.waker().clone());
        drop(state);
        self.shared.data_ready.notify_one();
        Poll::Pending
    }
}

impl Drop for CoalescingStream {
    /// What is buffered still goes out (for at most `DRAIN_AFTER_DROP`), as
    /// the kernel delivers a closed socket's send buffer.
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.data_ready.notify_one();
    }
}

impl Connected for CoalescingStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A connected pair: the coalescing side (as the server holds it) and a
    /// plain socket for the peer.
    async fn pair() -> (CoalescingStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, peer) = tokio::join!(listener.accept(), peer);
        (CoalescingStream::new(accepted.unwrap().0), peer.unwrap())
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn many_small_writes_arrive_whole_and_in_order_then_eof() {
        let (mut server, mut peer) = pair().await;
        let data = pattern(3 * HIGH_WATER + 12_345);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        // Frame-sized writes, each "flushed" as h2 does, and some vectored.
        for chunk in data.chunks(16_393) {
            let (a, b) = chunk.split_at(chunk.len() / 3);
            let mut slices = [io::IoSlice::new(a), io::IoSlice::new(b)];
            let mut slices = &mut slices[..];
            while !slices.is_empty() {
                let n = server.write_vectored(slices).await.unwrap();
                io::IoSlice::advance_slices(&mut slices, n);
            }
            server.flush().await.unwrap();
        }
        server.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), data);
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_holds_writes_back_until_it_does() {
        let (mut server, mut peer) = pair().await;
        let data = pattern(64 * HIGH_WATER);
        let writer = tokio::spawn(async move {
            server.write_all(&data).await.unwrap();
            server.shutdown().await.unwrap();
            data
        });
        // The kernel buffers take a few MiB; the rest must wait in (bounded)
        // user space until the peer reads.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!writer.is_finished(), "32 MiB cannot all be written to a peer that does not read");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, writer.await.unwrap());
    }

    #[tokio::test]
    async fn what_is_buffered_at_drop_still_reaches_the_peer() {
        let (mut server, mut peer) = pair().await;
        let data = pattern(HIGH_WATER / 2);
        server.write_all(&data).await.unwrap();
        drop(server);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn writes_fail_once_the_peer_is_gone() {
        let (mut server, peer) = pair().await;
        drop(peer);
        let chunk = pattern(64 * 1024);
        let mut failed = None;
        for _ in 0..10_000 {
            if let Err(e) = server.write_all(&chunk).await.and(server.flush().await) {
                failed = Some(e);
                break;
            }
            tokio::task::yield_now().await;
        }
        let e = failed.expect("writes to a closed peer must fail, not buffer forever");
        assert!(matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset), "unexpected error: {e}");
    }

    #[tokio::test]
    async fn reads_pass_straight_through() {
        let (mut server, mut peer) = pair().await;
        peer.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        assert!(server.connect_info().remote_addr().is_some());
    }
}
