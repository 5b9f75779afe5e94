//! Listening, connection limits, TLS and graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use pgwire::tokio::process_socket;
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

/// Binds `config.listen` and serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::Listen(config.listen.to_string(), e.to_string()))?;
    serve(listener, config, shutdown).await
}

/// Serves connections from `listener` until `shutdown` completes. Each
/// connection runs in its own task: a failing or vanished client affects
/// nothing but itself, and dropping its task cancels its query.
pub async fn serve(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let tls = load_tls(&config)?;
    let max_connections = config.max_connections;
    let data_dir = config.data_dir.clone();
    let engine = Arc::new(Engine::open(config).await?);
    let handlers = Arc::new(Handlers::new(engine));
    let addr = listener.local_addr().map_err(|e| ServerError::Listen("socket".into(), e.to_string()))?;
    tracing::info!(
        "weir listening on {addr}; connect with: psql -h {} -p {} -U weir (data dir {})",
        addr.ip(),
        addr.port(),
        data_dir.display()
    );

    // Bounds concurrent connections; the permit travels with the task.
    let limit = Arc::new(Semaphore::new(max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
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
        let handlers = handlers.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = process_socket(socket, tls, handlers).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    tracing::info!("weir shutting down");
    Ok(())
}

fn load_tls(config: &Config) -> Result<Option<TlsAcceptor>, ServerError> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => (c, k),
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
