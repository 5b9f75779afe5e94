//! The shape of every frame a PostgreSQL client may send, checked byte by
//! byte before pgwire decodes it.
//!
//! pgwire 0.42 trusts declared lengths and counts: it reads a C string up to
//! the first NUL even when the frame goes on (so the rest runs as a further
//! message), and it indexes past the end of a short body (a panic). Each
//! rule here says exactly what a frame's body holds, as PostgreSQL's
//! `pq_getmsg*` calls read it, and a frame that holds anything else is a
//! protocol violation (SQLSTATE 08P01).

use std::fmt;

/// Longest startup packet (and cancel request), as PostgreSQL's
/// `MAX_STARTUP_PACKET_LENGTH`.
pub const MAX_STARTUP_PACKET: usize = 10_000;
/// Longest authentication message, as PostgreSQL's `PG_MAX_AUTH_TOKEN_LENGTH`.
pub const MAX_AUTH_MESSAGE: usize = 65_535;
/// Longest fixed-shape message (Execute, Describe, Close, CopyFail...), as
/// PostgreSQL's `PQ_SMALL_MESSAGE_LIMIT` and pgwire's own limit.
pub const MAX_SMALL_MESSAGE: usize = 10_000;
/// Longest Query, Parse, Bind or CopyData message. PostgreSQL allows 1 GiB;
/// weir holds a frame while it is checked and pgwire holds it again while it
/// decodes, so the cap is lower: 256 MiB of SQL text or bound values in one
/// message is far beyond what clients send, and COPY data arrives in many
/// small frames.
pub const MAX_MESSAGE: usize = 256 << 20;

const CANCEL_REQUEST_CODE: i32 = 80_877_102;
const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSSENC_REQUEST_CODE: i32 = 80_877_104;

/// What the next frame may be, which follows from what came before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The startup packet or a cancel request (after TLS negotiation).
    Startup,
    /// SCRAM: the first password-family message is a SASLInitialResponse.
    SaslInitial,
    /// SCRAM: later password-family messages carry raw SASL data.
    SaslContinue,
    /// Authenticated: the messages of a session.
    Session,
    /// After a cancel request or Terminate nothing more may come.
    Closed,
}

/// A message type byte, shown as PostgreSQL's documentation names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag(pub u8);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() { write!(f, "'{}'", self.0 as char) } else { write!(f, "0x{:02x}", self.0) }
    }
}

/// Why a frame was refused; every variant is a protocol violation (08P01).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid length of startup packet: {0} bytes (expected 8 to {MAX_STARTUP_PACKET})")]
    StartupLength(i64),
    #[error("unsupported frontend protocol {major}.{minor}: weir speaks protocol 3")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("SSL or GSSAPI negotiation is only allowed before the startup packet")]
    LateNegotiation,
    #[error("invalid cancel request length: {0} bytes")]
    CancelLength(usize),
    #[error("malformed startup packet: {0}")]
    MalformedStartup(&'static str),
    #[error("invalid frontend message type {0}")]
    UnknownType(Tag),
    #[error("expected a password message during authentication, got message type {0}")]
    ExpectedPassword(Tag),
    #[error("unexpected message type {0}: the connection is closing")]
    AfterEnd(Tag),
    #[error("invalid message length {len} for message type {tag}")]
    Length { tag: Tag, len: i64 },
    #[error("message type {tag} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { tag: Tag, len: usize, max: usize },
    #[error("malformed {name} message: {what}")]
    Malformed { name: &'static str, what: &'static str },
}

/// What a startup-phase frame turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupKind {
    Startup,
    Cancel,
}

/// The total length of the startup-phase frame at the head of `buf`, once
/// its length field has arrived.
pub fn startup_length(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    match usize::try_from(len) {
        Ok(n) if (8..=MAX_STARTUP_PACKET).contains(&n) => Ok(Some(n)),
        _ => Err(FrameError::StartupLength(len.into())),
    }
}

/// Checks a whole startup packet or cancel request (length included).
pub fn check_startup(frame: &[u8]) -> Result<StartupKind, FrameError> {
    let mut body = Body::new("startup", frame.get(4..).unwrap_or_default());
    let code = body.i32()?;
    match code {
        CANCEL_REQUEST_CODE => {
            // pid, then a secret key of 4 bytes (protocol 3.0) up to 256 (3.2).
            if !(16..=12 + 256).contains(&frame.len()) {
                return Err(FrameError::CancelLength(frame.len()));
            }
            Ok(StartupKind::Cancel)
        }
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => Err(FrameError::LateNegotiation),
        _ => {
            let (major, minor) = ((code >> 16) as u16, code as u16);
            if major != 3 {
                return Err(FrameError::UnsupportedProtocol { major, minor });
            }
            // name\0value\0 pairs, then one \0 that ends the packet.
            loop {
                let Some(&first) = body.rest.first() else {
                    return Err(FrameError::MalformedStartup("the parameter list must end with a NUL byte"));
                };
                if first == 0 {
                    body.rest = &body.rest[1..];
                    break;
                }
                body.cstr().map_err(|_| FrameError::MalformedStartup("a parameter name is not NUL-terminated"))?;
                body.cstr().map_err(|_| FrameError::MalformedStartup("a parameter value is not NUL-terminated"))?;
            }
            if !body.rest.is_empty() {
                return Err(FrameError::MalformedStartup("bytes follow the end of the parameter list"));
            }
            Ok(StartupKind::Startup)
        }
    }
}

/// How a typed frame's body is to be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Checked once the whole frame (`len` bytes, type byte included) is in.
    Whole(usize),
    /// CopyData: any bytes; the body's `len` bytes pass through as they come.
    Stream(usize),
}

/// Checks the type byte and length of a typed frame (its first 5 bytes).
pub fn check_header(phase: Phase, tag: u8, len: i32) -> Result<Framing, FrameError> {
    let t = Tag(tag);
    let max = match (phase, tag) {
        (Phase::Closed, _) => return Err(FrameError::AfterEnd(t)),
        (Phase::Startup, _) => return Err(FrameError::UnknownType(t)),
        (Phase::SaslInitial | Phase::SaslContinue, b'p') => MAX_AUTH_MESSAGE,
        (Phase::SaslInitial | Phase::SaslContinue, b'X') => 4,
        (Phase::SaslInitial | Phase::SaslContinue, _) => {
            return Err(FrameError::ExpectedPassword(t));
        }
        (Phase::Session, b'Q' | b'P' | b'B' | b'd') => MAX_MESSAGE,
        (Phase::Session, b'E' | b'D' | b'C' | b'f') => MAX_SMALL_MESSAGE,
        // Sync, Flush, Terminate, CopyDone: the length field and nothing else.
        (Phase::Session, b'S' | b'H' | b'X' | b'c') => 4,
        (Phase::Session, _) => return Err(FrameError::UnknownType(t)),
    };
    // The length counts itself, so below 4 is a lie (pgwire would answer
    // 0..3 as an empty query and read on into the next frame).
    let total = match usize::try_from(len) {
        Ok(n) if n >= 4 && (max != 4 || n == 4) => n,
        _ => {
            return Err(FrameError::Length { tag: t, len: len.into() });
        }
    };
    if total > max {
        return Err(FrameError::TooLarge { tag: t, len: total, max });
    }
    Ok(if tag == b'd' { Framing::Stream(total - 4) } else { Framing::Whole(total + 1) })
}

/// Checks the body of a typed frame (after its type byte and length).
pub fn check_body(phase: Phase, tag: u8, body: &[u8]) -> Result<(), FrameError> {
    let mut b = Body::new(name(phase, tag), body);
    match (phase, tag) {
        (_, b'Q') | (_, b'f') => {
            b.cstr()?;
        }
        (_, b'P') => {
            b.cstr()?;
            b.cstr()?;
            let types = b.count("a negative number of parameter types")?;
            b.skip(types * 4)?;
        }
        (_, b'B') => check_bind(&mut b)?,
        (_, b'E') => {
            b.cstr()?;
            b.i32()?;
        }
        (_, b'D') | (_, b'C') => {
            if !matches!(b.u8()?, b'S' | b'P') {
                return Err(b.malformed("the target must be 'S' (statement) or 'P' (portal)"));
            }
            b.cstr()?;
        }
        (Phase::SaslInitial, b'p') => {
            b.cstr()?; // the mechanism
            match b.i32()? {
                -1 => {}
                n if usize::try_from(n).is_ok_and(|n| n == b.rest.len()) => b.rest = &[],
                _ => {
                    return Err(b.malformed("the data length must be -1 or exactly the bytes that follow"));
                }
            }
        }
        // SASL continuation data, CopyData: any bytes. Fixed-length types
        // were checked with the header.
        _ => b.rest = &[],
    }
    b.end()
}

fn check_bind(b: &mut Body<'_>) -> Result<(), FrameError> {
    b.cstr()?; // portal
    b.cstr()?; // statement
    let formats = b.count("a negative number of parameter formats")?;
    b.skip(formats * 2)?;
    let params = b.count("a negative number of parameters")?;
    for _ in 0..params {
        match b.i32()? {
            -1 => {} // NULL
            n if n >= 0 => b.skip(n as usize)?,
            _ => return Err(b.malformed("a parameter length below -1 (only -1 means NULL)")),
        }
    }
    let results = b.count("a negative number of result formats")?;
    b.skip(results * 2)
}

fn name(phase: Phase, tag: u8) -> &'static str {
    match (phase, tag) {
        (_, b'Q') => "Query",
        (_, b'P') => "Parse",
        (_, b'B') => "Bind",
        (_, b'E') => "Execute",
        (_, b'D') => "Describe",
        (_, b'C') => "Close",
        (_, b'f') => "CopyFail",
        (_, b'd') => "CopyData",
        (Phase::SaslInitial, b'p') => "SASLInitialResponse",
        (_, b'p') => "SASLResponse",
        _ => "frontend",
    }
}

/// A cursor over a frame body that fails, never panics, when the body is short.
struct Body<'a> {
    name: &'static str,
    rest: &'a [u8],
}

impl<'a> Body<'a> {
    fn new(name: &'static str, rest: &'a [u8]) -> Self {
        Body { name, rest }
    }

    fn malformed(&self, what: &'static str) -> FrameError {
        FrameError::Malformed { name: self.name, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.rest.len() < n {
            return Err(self.malformed("it ends before the data its counts and lengths announce"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn skip(&mut self, n: usize) -> Result<(), FrameError> {
        self.take(n).map(drop)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Result<i32, FrameError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An Int16 count, which must not be negative.
    fn count(&mut self, negative: &'static str) -> Result<usize, FrameError> {
        let b = self.take(2)?;
        usize::try_from(i16::from_be_bytes([b[0], b[1]])).map_err(|_| self.malformed(negative))
    }

    fn cstr(&mut self) -> Result<&'a [u8], FrameError> {
        let Some(nul) = self.rest.iter().position(|&c| c == 0) else {
            return Err(self.malformed("a string is not NUL-terminated"));
        };
        let s = &self.rest[..nul];
        self.rest = &self.rest[nul + 1..];
        Ok(s)
    }

    fn end(&self) -> Result<(), FrameError> {
        if self.rest.is_empty() {
            Ok(())
        } else if self.name == "Query" {
            Err(self.malformed("the query string contains a NUL byte before the end of the message"))
        } else {
            Err(self.malformed("bytes follow the end of the message"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(tag: u8, body: &[u8]) -> Result<(), FrameError> {
        check_header(Phase::Session, tag, body.len() as i32 + 4)?;
        check_body(Phase::Session, tag, body)
    }

    fn bind(params: &[i32]) -> Vec<u8> {
        let mut b = b"\0\0".to_vec();
        b.extend(0i16.to_be_bytes());
        b.extend((params.len() as i16).to_be_bytes());
        for &p in params {
            b.extend(p.to_be_bytes());
            b.extend(std::iter::repeat_n(b'x', p.max(0) as usize));
        }
        b.extend(0i16.to_be_bytes());
        b
    }

    #[test]
    fn a_query_is_one_string_that_ends_the_message() {
        assert_eq!(session(b'Q', b"SELECT 1\0"), Ok(()));
        assert!(matches!(session(b'Q', b"SELECT 1\0Q\0\0\0\x05x\0"), Err(FrameError::Malformed { .. })));
        assert!(matches!(session(b'Q', b"SELECT 1"), Err(FrameError::Malformed { .. })));
        assert!(matches!(session(b'Q', b""), Err(FrameError::Malformed { .. })));
        for len in [0, 3, -1, i32::MIN] {
            assert!(matches!(check_header(Phase::Session, b'Q', len), Err(FrameError::Length { .. })), "{len}");
        }
    }

    #[test]
    fn bind_counts_and_lengths_must_match_the_body() {
        assert_eq!(session(b'B', &bind(&[3, -1, 0])), Ok(()));
        assert!(matches!(session(b'B', &bind(&[-2])), Err(FrameError::Malformed { .. })));
        let mut short = bind(&[5]);
        short.truncate(short.len() - 4);
        assert!(session(b'B', &short).is_err());
        let mut negative = bind(&[]);
        negative[4..6].copy_from_slice(&(-1i16).to_be_bytes());
        assert!(session(b'B', &negative).is_err());
        let mut trailing = bind(&[1]);
        trailing.push(0);
        assert!(session(b'B', &trailing).is_err());
    }

    #[test]
    fn parse_declares_exactly_its_parameter_types() {
        let mut p = b"s\0SELECT $1\0".to_vec();
        p.extend(1i16.to_be_bytes());
        p.extend(23i32.to_be_bytes());
        assert_eq!(session(b'P', &p), Ok(()));
        assert!(session(b'P', &p[..p.len() - 1]).is_err());
        let mut many = b"\0SELECT 1\0".to_vec();
        many.extend(1000i16.to_be_bytes());
        assert!(session(b'P', &many).is_err());
    }

    #[test]
    fn fixed_shape_messages() {
        assert_eq!(session(b'S', b""), Ok(()));
        assert!(check_header(Phase::Session, b'S', 5).is_err());
        assert_eq!(session(b'E', b"\0\0\0\0\0"), Ok(()));
        assert!(session(b'E', b"\0\0\0").is_err());
        assert_eq!(session(b'D', b"Sname\0"), Ok(()));
        assert!(session(b'D', b"Xname\0").is_err());
        assert!(session(b'C', b"").is_err());
        assert!(matches!(check_header(Phase::Session, b'F', 8), Err(FrameError::UnknownType(_))));
        assert!(matches!(check_header(Phase::Session, b'p', 8), Err(FrameError::UnknownType(_))));
        assert_eq!(check_header(Phase::Session, b'd', 104), Ok(Framing::Stream(100)));
        assert!(check_header(Phase::Session, b'Q', (MAX_MESSAGE + 1) as i32).is_err());
    }

    #[test]
    fn authentication_takes_only_password_messages() {
        let initial = |body: &[u8]| {
            check_header(Phase::SaslInitial, b'p', body.len() as i32 + 4)?;
            check_body(Phase::SaslInitial, b'p', body)
        };
        assert_eq!(initial(b"SCRAM-SHA-256\0\0\0\0\x03abc"), Ok(()));
        assert_eq!(initial(b"SCRAM-SHA-256\0\xff\xff\xff\xff"), Ok(()));
        // A cleartext password where a SASLInitialResponse belongs.
        assert!(initial(b"secret\0").is_err());
        assert!(initial(b"SCRAM-SHA-256\0\0\0\0\x09abc").is_err());
        assert!(initial(b"SCRAM-SHA-256\0\x7f\xff\xff\xffabc").is_err());
        assert_eq!(check_body(Phase::SaslContinue, b'p', b"anything\0at all"), Ok(()));
        assert!(matches!(check_header(Phase::SaslInitial, b'Q', 9), Err(FrameError::ExpectedPassword(_))));
        assert!(check_header(Phase::SaslInitial, b'p', MAX_AUTH_MESSAGE as i32 + 1).is_err());
    }

    #[test]
    fn startup_packets() {
        let packet = |code: i32, params: &[u8]| {
            let mut p = ((params.len() + 8) as i32).to_be_bytes().to_vec();
            p.extend(code.to_be_bytes());
            p.extend(params);
            p
        };
        assert_eq!(check_startup(&packet(196_608, b"user\0weir\0\0")), Ok(StartupKind::Startup));
        assert_eq!(check_startup(&packet(196_610, b"\0")), Ok(StartupKind::Startup));
        assert!(check_startup(&packet(196_608, b"user\0weir\0")).is_err());
        assert!(check_startup(&packet(196_608, b"user\0weir\0\0Q")).is_err());
        assert!(check_startup(&packet(196_608, b"user")).is_err());
        assert!(matches!(check_startup(&packet(0x0002_0000, b"\0")), Err(FrameError::UnsupportedProtocol { .. })));
        assert_eq!(check_startup(&packet(CANCEL_REQUEST_CODE, &[0; 8])), Ok(StartupKind::Cancel));
        assert!(check_startup(&packet(CANCEL_REQUEST_CODE, &[0; 2])).is_err());
        assert_eq!(check_startup(&packet(SSL_REQUEST_CODE, b"")), Err(FrameError::LateNegotiation));
        assert_eq!(startup_length(&[0, 0]), Ok(None));
        assert!(startup_length(&[0, 0, 0, 7]).is_err());
        assert!(startup_length(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(startup_length(&[0, 1, 0, 0]).is_err());
    }
}
