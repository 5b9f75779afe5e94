//! Listening, connection limits, TLS and graceful shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::TryStreamExt;
use pgwire::tokio::tokio_rustls::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::engine::Engine;
use crate::error::ServerError;
use crate::pgwire::Handlers;
use crate::pgwire::connection::{self, Admission, Endpoint};
use crate::sql::limits::STACK_BYTES;

/// Connections past `--max-connections` being answered with 53300 at once.
/// Beyond this many (a flood), further ones are closed without an answer,
/// so refusing cannot itself use up memory or descriptors.
const MAX_REFUSING: usize = 64;

/// The runtime the server runs on: multi-threaded, with [`STACK_BYTES`]
/// stacks. Tokio's default of 2 MiB overflows on a statement such as
/// `SELECT 1+1+...+1` with 1,800 terms, and an overflow aborts the process.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(STACK_BYTES).build()
}

/// A future that completes when the server should shut down.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Binds `config.listen` and serves until `shutdown` completes.
///
/// Takes and returns boxed futures so that no caller's crate monomorphises
/// the server: an `async fn` is compiled where it is first polled, and the
/// `weir` binary polling `run` compiled the whole server a second time
/// (77 s of a first release build, and ~30 MB of binary).
pub fn run(config: Config, shutdown: Shutdown) -> Pin<Box<dyn Future<Output = Result<(), ServerError>> + Send>> {
    install_crypto_provider();
    Box::pin(async move {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| ServerError::Listen(config.listen.to_string(), e.to_string()))?;
        serve(listener, config, shutdown).await
    })
}

/// Serves connections from `listener` until `shutdown` completes. Each
/// connection runs in its own task: a failing or vanished client affects
/// nothing but itself, and dropping its task cancels its query.
async fn serve(listener: TcpListener, config: Config, mut shutdown: Shutdown) -> Result<(), ServerError> {
    let tls = load_tls(&config)?;
    let tls_required = config.tls_required;
    let max_connections = config.max_connections;
    let authentication_timeout = config.authentication_timeout;
    let idle_session_timeout = config.idle_session_timeout;
    let sasl = config.password.is_some();
    let data_dir = config.data_dir.clone();
    let flight_listen = config.flight_listen;
    let flight_tls = flight_tls(&config)?;
    let engine = Arc::new(Engine::open(config).await?);
    // Continuous queries resume before any client can see their tables.
    engine.streams.restore(&engine.parser).await.map_err(|e| ServerError::Engine(e.message()))?;
    // Flight SQL is up (and logged) before the PostgreSQL endpoint says it is
    // listening, so "listening on" means the whole server is ready.
    let (flight_stop, flight_task) = match flight_listen {
        Some(addr) => {
            let (stop, task) = start_flight(addr, engine.clone(), flight_tls).await?;
            (Some(stop), Some(task))
        }
        None => (None, None),
    };
    let endpoint = Arc::new(Endpoint {
        handlers: Arc::new(Handlers::new(engine.clone())),
        tls,
        tls_required,
        sasl,
        authentication_timeout,
        idle_session_timeout,
        throttle: Default::default(),
    });
    let addr = listener.local_addr().map_err(|e| ServerError::Listen("socket".into(), e.to_string()))?;
    tracing::info!(
        "weir listening on {addr}; connect with: psql -h {} -p {} -U weir (data dir {})",
        addr.ip(),
        addr.port(),
        data_dir.display()
    );

    // Bounds concurrent sessions; the permit travels with the task. A client
    // past the bound is accepted and refused at once (waiting in the accept
    // queue, it would hang until some session ends).
    let sessions = Arc::new(Semaphore::new(max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (permit, admission) = match sessions.clone().try_acquire_owned() {
            Ok(permit) => (permit, Admission::Admitted),
            Err(_) => match refusing.clone().try_acquire_owned() {
                Ok(permit) => (permit, Admission::TooManyClients),
                Err(_) => {
                    tracing::debug!(%peer, "too many clients, and too many being refused: closed unanswered");
                    continue;
                }
            },
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection::serve(socket, peer, endpoint, admission).await;
        });
    }
    tracing::info!("weir shutting down");
    // Runners abandon their epoch in flight; what they committed stays.
    engine.streams.shutdown().await;
    if let (Some(stop), Some(task)) = (flight_stop, flight_task) {
        let _ = stop.send(());
        let _ = task.await;
    }
    Ok(())
}

/// Binds and spawns the Flight SQL endpoint; the sender stops it.
async fn start_flight(
    addr: std::net::SocketAddr,
    engine: Arc<Engine>,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> Result<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>), ServerError> {
    use arrow_flight::flight_service_server::FlightServiceServer;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Listen(format!("{addr} (flight sql; --no-flight turns it off)"), e.to_string()))?;
    let local = listener.local_addr().map_err(|e| ServerError::Listen("flight socket".into(), e.to_string()))?;
    tracing::info!("weir flight sql listening at {local}{}", if tls.is_some() { " (TLS)" } else { "" });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = FlightServiceServer::new(crate::flight::FlightSql::new(engine));
    // Nagle's algorithm is off: CoalescingStream batches the writes itself,
    // and would otherwise have its last small frame wait for an ACK.
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map_ok(crate::flight::coalescing_writer::CoalescingStream::new);
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = match builder.tls_config(tls) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("flight sql TLS set-up failed: {e}");
                    return;
                }
            };
        }
        if let Err(e) = builder.add_service(service).serve_with_incoming_shutdown(incoming, shutdown).await {
            tracing::error!("flight sql endpoint stopped: {e}");
        }
    });
    Ok((stop, task))
}

/// Makes ring the process's TLS crypto provider. The build links two (ring,
/// which pgwire and tonic use, and aws-lc-rs, which the Delta kernel's HTTP
/// client enables in rustls), and with two rustls picks neither: every TLS
/// configuration built from the default would panic. Installing an already
/// installed provider is a no-op.
fn install_crypto_provider() {
    let _ = pgwire::tokio::tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// The same certificate and key as the PostgreSQL endpoint, for Flight SQL
/// (`grpc+tls://`): one `--tls-cert` / `--tls-key` secures both.
fn flight_tls(config: &Config) -> Result<Option<tonic::transport::ServerTlsConfig>, ServerError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else { return Ok(None) };
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| ServerError::Tls(format!("{}: {e}", p.display())));
    let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
    Ok(Some(tonic::transport::ServerTlsConfig::new().identity(identity)))
}

fn load_tls(config: &Config) -> Result<Option<TlsAcceptor>, ServerError> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) if config.tls_required => {
            return Err(ServerError::Tls("--tls-required needs --tls-cert and --tls-key".into()));
        }
        (None, None) => return Ok(None),
        _ => return Err(ServerError::Tls("both --tls-cert and --tls-key are needed".into())),
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
    let server_config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    Ok(Some(TlsAcceptor::from(Arc::new(server_config))))
}
