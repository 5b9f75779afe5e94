//! A reader between the client's socket and pgwire's decoder that hands
//! pgwire only whole frames that passed [`frame_rules`](super::frame_rules).
//!
//! pgwire decodes a frame once all of it is in its buffer. This reader keeps
//! the bytes of each frame back until the frame is complete and checked, so
//! a malformed frame never reaches the decoder: the read fails instead, with
//! an `InvalidData` error carrying the [`FrameError`], which the connection
//! loop answers with a FATAL 08P01.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame_rules::{self, FrameError, Framing, Phase, StartupKind};

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Wraps the connection's transport (plain TCP or TLS); writes pass through.
pub struct FrameCheck<IO> {
    io: IO,
    phase: Phase,
    /// Whether the server authenticates with SCRAM, so that password-family
    /// messages follow the startup packet (in trust mode none may).
    sasl: bool,
    /// Bytes from the client: `buf[pos..checked]` passed their checks and
    /// wait for the decoder; `buf[checked..]` are not checked yet.
    buf: Vec<u8>,
    pos: usize,
    checked: usize,
    /// Body bytes of a CopyData frame still to pass through (any bytes are
    /// valid, so they are not held back).
    passthrough: usize,
    eof: bool,
    /// Once a frame is refused every later read fails the same way.
    failed: Option<FrameError>,
}

impl<IO> FrameCheck<IO> {
    /// Starts before the startup packet. `pending` holds bytes already read
    /// from the client (pgwire's TLS negotiation reads ahead); they are
    /// checked like the rest.
    pub fn new(io: IO, pending: &[u8], sasl: bool) -> Self {
        FrameCheck {
            io,
            phase: Phase::Startup,
            sasl,
            buf: pending.to_vec(),
            pos: 0,
            checked: 0,
            passthrough: 0,
            eof: false,
            failed: None,
        }
    }

    /// The server has authenticated the client: session messages follow.
    pub fn authenticated(&mut self) {
        if matches!(self.phase, Phase::SaslInitial | Phase::SaslContinue) {
            self.phase = Phase::Session;
        }
    }

    /// Checks the frame at `buf[checked..]` if it is all there; true when
    /// `checked` moved on.
    fn check_next(&mut self) -> Result<bool, FrameError> {
        let avail = &self.buf[self.checked..];
        if avail.is_empty() {
            return Ok(false);
        }
        if self.phase == Phase::Startup {
            let Some(len) = frame_rules::startup_length(avail)? else {
                return Ok(false);
            };
            let Some(frame) = avail.get(..len) else {
                return Ok(false);
            };
            self.phase = match frame_rules::check_startup(frame)? {
                StartupKind::Cancel => Phase::Closed,
                StartupKind::Startup if self.sasl => Phase::SaslInitial,
                StartupKind::Startup => Phase::Session,
            };
            self.checked += len;
            return Ok(true);
        }
        let Some(header) = avail.get(..5) else {
            // The type byte alone already tells a message that cannot come.
            frame_rules::check_header(self.phase, avail[0], 4)?;
            return Ok(false);
        };
        let tag = header[0];
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        match frame_rules::check_header(self.phase, tag, len)? {
            Framing::Stream(body) => {
                self.checked += 5;
                self.passthrough = body;
            }
            Framing::Whole(total) => {
                let Some(frame) = avail.get(..total) else {
                    return Ok(false);
                };
                frame_rules::check_body(self.phase, tag, &frame[5..])?;
                self.checked += total;
                self.phase = match (self.phase, tag) {
                    (_, b'X') => Phase::Closed,
                    (Phase::SaslInitial, b'p') => Phase::SaslContinue,
                    (phase, _) => phase,
                };
            }
        }
        Ok(true)
    }

    /// Drops the bytes the decoder has taken, so the buffer does not grow
    /// with the connection's lifetime, and gives back the room a large frame
    /// needed once it has gone.
    fn compact(&mut self) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.checked -= self.pos;
            self.pos = 0;
        }
        if self.buf.capacity() > 16 * READ_CHUNK && self.buf.len() < self.buf.capacity() / 4 {
            self.buf.shrink_to(self.buf.len().max(READ_CHUNK) * 2);
        }
    }
}

/// The error a refused frame turns into; [`violation`] finds it again.
fn refused(e: FrameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The frame error behind a failed read, if that is why it failed.
pub fn violation(e: &io::Error) -> Option<&FrameError> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<FrameError>())
}

impl<IO: AsyncRead + Unpin> AsyncRead for FrameCheck<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            // Checked bytes first: frames before a bad one are still served.
            if this.checked > this.pos {
                let n = (this.checked - this.pos).min(out.remaining());
                out.put_slice(&this.buf[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = &this.failed {
                return Poll::Ready(Err(refused(e.clone())));
            }
            if this.passthrough > 0 {
                let n = this.passthrough.min(this.buf.len() - this.checked);
                if n > 0 {
                    this.checked += n;
                    this.passthrough -= n;
                    continue;
                }
            } else {
                match this.check_next() {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        this.failed = Some(e);
                        continue;
                    }
                }
            }
            if this.eof {
                // A frame cut short by the client's hang-up is never served.
                return Poll::Ready(Ok(()));
            }
            this.compact();
            let start = this.buf.len();
            this.buf.resize(start + READ_CHUNK, 0);
            let mut chunk = ReadBuf::new(&mut this.buf[start..]);
            let polled = Pin::new(&mut this.io).poll_read(cx, &mut chunk);
            let n = chunk.filled().len();
            this.buf.truncate(start + n);
            match polled {
                Poll::Ready(Ok(())) => this.eof = n == 0,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FrameCheck<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn startup() -> Vec<u8> {
        let params = b"user\0weir\0\0";
        let mut p = ((params.len() + 8) as i32).to_be_bytes().to_vec();
        p.extend(196_608i32.to_be_bytes());
        p.extend(params);
        p
    }

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend((body.len() as i32 + 4).to_be_bytes());
        m.extend(body);
        m
    }

    /// What the decoder gets from `pending` then `wire`, and how it ends.
    async fn read_all(pending: &[u8], wire: &[u8], sasl: bool) -> (Vec<u8>, Option<FrameError>) {
        let mut reader = FrameCheck::new(wire, pending, sasl);
        let mut got = Vec::new();
        let mut chunk = [0u8; 7];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => return (got, None),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) => return (got, violation(&e).cloned()),
            }
        }
    }

    #[tokio::test]
    async fn valid_frames_pass_unchanged_across_the_pending_bytes() {
        let mut wire = startup();
        wire.extend(message(b'Q', b"SELECT 1\0"));
        wire.extend(message(b'd', &[0u8; 100]));
        wire.extend(message(b'X', b""));
        let (got, err) = read_all(&wire[..6], &wire[6..], false).await;
        assert_eq!(err, None);
        assert_eq!(got, wire);
    }

    #[tokio::test]
    async fn a_frame_larger_than_a_read_passes_whole() {
        let mut sql = b"SELECT '".to_vec();
        sql.extend(std::iter::repeat_n(b'x', 40 * READ_CHUNK));
        sql.extend(b"'\0");
        let mut wire = startup();
        wire.extend(message(b'Q', &sql));
        wire.extend(message(b'S', b""));
        let (got, err) = read_all(&[], &wire, false).await;
        assert_eq!(err, None);
        assert!(got == wire, "the frames arrive unchanged");
    }

    #[tokio::test]
    async fn a_smuggled_message_is_never_served() {
        let mut wire = startup();
        let good = message(b'Q', b"SELECT 1\0");
        wire.extend(&good);
        wire.extend(message(b'Q', b"SELECT 2\0Q\0\0\0\x0dSELECT 3\0"));
        let (got, err) = read_all(&[], &wire, false).await;
        assert!(matches!(err, Some(FrameError::Malformed { name: "Query", .. })), "{err:?}");
        assert_eq!(got.len(), startup().len() + good.len(), "only the frames before the bad one");
    }

    #[tokio::test]
    async fn authentication_messages_follow_the_phase() {
        let mut wire = startup();
        wire.extend(message(b'p', b"secret\0"));
        let (_, err) = read_all(&[], &wire, true).await;
        assert!(matches!(err, Some(FrameError::Malformed { name: "SASLInitialResponse", .. })), "{err:?}");
        // In trust mode no password message may come at all.
        let (_, err) = read_all(&[], &wire, false).await;
        assert!(matches!(err, Some(FrameError::UnknownType(_))), "{err:?}");
    }

    #[tokio::test]
    async fn a_cut_frame_ends_the_stream_without_serving_it() {
        let mut wire = startup();
        let q = message(b'Q', b"SELECT 1\0");
        wire.extend(&q[..q.len() - 1]);
        let (got, err) = read_all(&[], &wire, false).await;
        assert_eq!(err, None);
        assert_eq!(got, startup());
    }
}
