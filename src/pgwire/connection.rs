//! One client connection from accept to close: TLS negotiation, the
//! authentication deadline, frame checks, the message loop, the idle-session
//! timeout, refusing clients past the connection limit, and cancelling the
//! running read when the client hangs up.
//!
//! pgwire handles each message (`process_message`) and error
//! (`process_error`); this loop replaces its `process_socket` so that every
//! frame is checked ([`FrameCheck`]) before pgwire decodes it and so that
//! the timeouts above are weir's to set.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{MaybeTls, PgWireMessageServerCodec, negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::codec::{Framed, FramedParts};

use super::Handlers;
use super::cancel::Canceller;
use super::frame_check::{self, FrameCheck};
use super::hangup::HangupWatch;
use super::login_throttle::LoginThrottle;
use crate::session;

/// What every connection of the PostgreSQL endpoint shares.
pub struct Endpoint {
    pub handlers: Arc<Handlers>,
    pub tls: Option<TlsAcceptor>,
    /// Refuse a startup packet that did not come over TLS (28000).
    pub tls_required: bool,
    /// Whether clients log in with SCRAM (a password is configured).
    pub sasl: bool,
    pub authentication_timeout: Duration,
    /// The server's default; each session may SET its own.
    pub idle_session_timeout: Option<Duration>,
    pub throttle: LoginThrottle,
}

/// Whether a connection may become a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Past `--max-connections`: a startup packet is answered with 53300; a
    /// cancel request is still served, as PostgreSQL does, so that a full
    /// server's queries can be cancelled.
    TooManyClients,
}

type Connection<S> = Framed<FrameCheck<MaybeTls>, PgWireMessageServerCodec<S>>;

/// Serves one accepted socket until the client leaves or is sent away.
pub async fn serve(socket: TcpStream, peer: SocketAddr, endpoint: Arc<Endpoint>, admission: Admission) {
    if let Err(e) = run(socket, peer, &endpoint, admission).await {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

async fn run(socket: TcpStream, peer: SocketAddr, endpoint: &Endpoint, admission: Admission) -> io::Result<()> {
    let hangup = HangupWatch::new(&socket);
    // One deadline from accept to login, across every round trip of it.
    let deadline = Instant::now() + endpoint.authentication_timeout;
    let negotiated = match timeout_at(deadline, negotiate_tls(socket, endpoint.tls.clone())).await {
        Ok(negotiated) => negotiated?,
        Err(_) => {
            tracing::debug!(%peer, "no startup packet within the authentication timeout");
            return Ok(());
        }
    };
    // None: a direct TLS handshake while TLS is off.
    let Some(negotiated) = negotiated else {
        return Ok(());
    };
    let encrypted = matches!(negotiated.get_ref(), MaybeTls::Tls(_));
    let mut conn = with_frame_check(negotiated, endpoint.sasl);

    let handlers = &endpoint.handlers;
    let startup_handler = handlers.startup_handler();
    let simple_handler = handlers.simple_query_handler();
    let extended_handler = handlers.extended_query_handler();
    let copy_handler = handlers.copy_handler();
    let cancel_handler = handlers.cancel_handler();
    let error_handler = handlers.error_handler();

    let mut canceller: Option<Arc<Canceller>> = None;
    // Whether the last thing sent was ReadyForQuery: only then is the
    // session idle in PostgreSQL's sense (not between Parse and Sync).
    let mut at_rest = false;
    loop {
        let authenticating = logging_in(&conn);
        if !authenticating && canceller.is_none() {
            conn.get_mut().authenticated();
            session::default_idle_session_timeout(conn.metadata_mut(), endpoint.idle_session_timeout);
            let pid = conn.pid_and_secret_key().0;
            conn.metadata_mut().insert(session::BACKEND_PID.to_string(), pid.to_string());
            canceller = Some(handlers.cancellers.connection(&conn));
        }
        let next = if authenticating {
            match timeout_at(deadline, conn.next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::info!(%peer, "authentication timed out");
                    if matches!(conn.state(), PgWireConnectionState::AuthenticationInProgress) {
                        send_fatal(&mut conn, "08P01", "canceling authentication due to timeout").await?;
                    }
                    return Ok(());
                }
            }
        } else if let Some(idle) = at_rest.then(|| idle_session_timeout(&conn)).flatten() {
            match timeout(idle, conn.next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::info!(%peer, "idle-session timeout");
                    return send_fatal(&mut conn, "57P05", "terminating connection due to idle-session timeout").await;
                }
            }
        } else {
            conn.next().await
        };
        let message = match next {
            None => return Ok(()),
            Some(Ok(message)) => message,
            Some(Err(e)) => return refuse(&mut conn, peer, e).await,
        };
        match message {
            // The client is leaving; some (asyncpg) wait for the server to
            // close first.
            PgWireFrontendMessage::Terminate(_) => return Ok(()),
            // As PostgreSQL's `hostssl`: only the login needs TLS; a cancel
            // request carries no session and is served either way.
            PgWireFrontendMessage::Startup(startup) if endpoint.tls_required && !encrypted => {
                let user = startup.parameters.get("user").map(String::as_str).unwrap_or_default();
                tracing::info!(%peer, user, "refused: no TLS");
                let message = format!(
                    "connection without TLS refused for host \"{}\", user \"{user}\": this server requires TLS (sslmode=require)",
                    peer.ip()
                );
                return send_fatal(&mut conn, "28000", &message).await;
            }
            PgWireFrontendMessage::Startup(_) if admission == Admission::TooManyClients => {
                tracing::info!(%peer, "refused: too many clients");
                return send_fatal(&mut conn, "53300", "sorry, too many clients already").await;
            }
            _ => {}
        }
        let is_extended = match conn.state() {
            PgWireConnectionState::CopyInProgress(is_extended) => is_extended,
            _ => message.is_extended_query(),
        };
        let is_cancel_request = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        let ends_exchange = matches!(message, PgWireFrontendMessage::Query(_) | PgWireFrontendMessage::Sync(_));
        let work = process_message(
            message,
            &mut conn,
            startup_handler.clone(),
            simple_handler.clone(),
            extended_handler.clone(),
            copy_handler.clone(),
            cancel_handler.clone(),
        );
        let result = match (&hangup, &canceller) {
            (Some(hangup), Some(canceller)) => cancel_on_hangup(work, hangup, canceller, peer).await,
            _ => work.await,
        };
        let failed = result.is_err();
        if let Err(mut e) = result {
            error_handler.on_error(&conn, &mut e);
            if authenticating && e.code().starts_with("28") {
                let delay = endpoint.throttle.failed(peer.ip());
                tracing::info!(%peer, "failed login; answering after {delay:?}");
                tokio::time::sleep(delay).await;
            }
            // A FATAL error ends the session, as in PostgreSQL.
            let is_fatal = e.is_fatal();
            process_error(&mut conn, e, is_extended).await?;
            if is_fatal {
                return Ok(());
            }
        } else if authenticating && !logging_in(&conn) && endpoint.sasl {
            endpoint.throttle.succeeded(peer.ip());
        }
        if is_cancel_request {
            return Ok(());
        }
        let logged_in_now = authenticating && !logging_in(&conn);
        at_rest = matches!(conn.state(), PgWireConnectionState::ReadyForQuery)
            && (ends_exchange || logged_in_now || (failed && !is_extended));
    }
}

/// Puts the frame checks between the socket and pgwire's decoder. The bytes
/// pgwire read ahead while negotiating TLS go through the checks too.
fn with_frame_check<S>(negotiated: Framed<MaybeTls, PgWireMessageServerCodec<S>>, sasl: bool) -> Connection<S> {
    let parts = negotiated.into_parts();
    let io = FrameCheck::new(parts.io, &parts.read_buf, sasl);
    let mut checked = FramedParts::new::<PgWireBackendMessage>(io, parts.codec);
    checked.write_buf = parts.write_buf;
    Framed::from_parts(checked)
}

fn logging_in<S>(conn: &Connection<S>) -> bool {
    matches!(conn.state(), PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress)
}

/// The session's idle-session timeout, which applies only outside a
/// transaction block (PostgreSQL has a separate setting for inside one).
fn idle_session_timeout<S>(conn: &Connection<S>) -> Option<Duration> {
    if !matches!(conn.transaction_status(), TransactionStatus::Idle) {
        return None;
    }
    session::idle_session_timeout(conn.metadata())
}

/// Runs `work`; if the client hangs up meanwhile, cancels the connection's
/// statement (a read ends with 57014; writes run to their end, see
/// `cancel.rs`) and lets `work` finish.
async fn cancel_on_hangup(
    work: impl Future<Output = PgWireResult<()>>,
    hangup: &HangupWatch,
    canceller: &Canceller,
    peer: SocketAddr,
) -> PgWireResult<()> {
    let mut work = std::pin::pin!(work);
    tokio::select! {
        biased;
        result = &mut work => result,
        () = hangup.hung_up() => {
            tracing::info!(%peer, "client hung up; cancelling its statement");
            canceller.hang_up();
            work.await
        }
    }
}

/// Answers a frame that could not be taken: the frame checks' verdict, or
/// pgwire's decoder's. A broken connection just ends.
async fn refuse<S>(conn: &mut Connection<S>, peer: SocketAddr, e: PgWireError) -> io::Result<()> {
    let message = match &e {
        PgWireError::IoError(io) => match frame_check::violation(io) {
            Some(violation) => violation.to_string(),
            None => return Ok(()),
        },
        other => other.to_string(),
    };
    tracing::info!(%peer, "protocol violation: {message}");
    send_fatal(conn, "08P01", &message).await
}

/// Sends a FATAL error and closes the connection, as PostgreSQL does when it
/// ends a session.
async fn send_fatal<S>(conn: &mut Connection<S>, code: &str, message: &str) -> io::Result<()> {
    let info = ErrorInfo::new("FATAL".to_string(), code.to_string(), message.to_string());
    conn.send(PgWireBackendMessage::ErrorResponse(info.into())).await?;
    conn.close().await
}
