//! `weir`: parses the command line into a [`Config`] and runs the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use weir::config::Config;

#[derive(Parser)]
#[command(name = "weir", version, about = "SQL-first streaming query server speaking the PostgreSQL protocol")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Write stdin to a Kafka topic, one record per line (for demos and tests).
    Produce(ProduceArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address of the PostgreSQL endpoint.
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:5433")]
    listen: SocketAddr,
    /// Directory for the catalog and weir-managed data; relative LOCATIONs resolve here.
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "weir-data")]
    data_dir: PathBuf,
    /// Directory, or s3://bucket/prefix, of weir-owned tables [default: <data-dir>/warehouse].
    #[arg(long, env = "WEIR_WAREHOUSE")]
    warehouse: Option<String>,
    /// User name clients log in as when a password is set.
    #[arg(long, env = "WEIR_USER", default_value = "weir")]
    user: String,
    /// Require this password (SCRAM-SHA-256); without it, every client is trusted.
    #[arg(long, env = "WEIR_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// PEM certificate chain for TLS (with --tls-key).
    #[arg(long, env = "WEIR_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, env = "WEIR_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Refuse clients that do not use TLS (like `hostssl` in pg_hba.conf); needs --tls-cert and --tls-key.
    #[arg(long, env = "WEIR_TLS_REQUIRED")]
    tls_required: bool,
    /// Address of the Arrow Flight SQL endpoint.
    #[arg(long, env = "WEIR_FLIGHT_LISTEN", default_value = "127.0.0.1:50051")]
    flight_listen: SocketAddr,
    /// Do not start the Arrow Flight SQL endpoint.
    #[arg(long, env = "WEIR_NO_FLIGHT")]
    no_flight: bool,
    /// Maximum concurrent client sessions; more are refused with 53300.
    #[arg(long, env = "WEIR_MAX_CONNECTIONS", default_value_t = Config::default().max_connections)]
    max_connections: usize,
    /// Seconds a client has to connect and log in before it is disconnected.
    #[arg(long, env = "WEIR_AUTHENTICATION_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    authentication_timeout: u64,
    /// Seconds a logged-in session may sit idle between queries before it is
    /// closed; 0 never closes it (sessions may `SET idle_session_timeout`).
    #[arg(long, env = "WEIR_IDLE_SESSION_TIMEOUT", default_value_t = 0)]
    idle_session_timeout: u64,
    /// Another directory clients may read and write (repeatable; the data
    /// directory and the warehouse always are). In WEIR_ALLOW_PATH, separate
    /// directories with ':'.
    #[arg(long = "allow-path", value_name = "DIR", env = "WEIR_ALLOW_PATH", value_delimiter = ':')]
    allow_paths: Vec<PathBuf>,
    /// Another host socket streams and Kafka clients may connect to
    /// (repeatable; loopback always may; '*' allows any). In WEIR_ALLOW_HOST,
    /// separate hosts with ','.
    #[arg(long = "allow-host", value_name = "HOST", env = "WEIR_ALLOW_HOST", value_delimiter = ',')]
    allow_hosts: Vec<String>,
}

impl From<ServeArgs> for Config {
    fn from(a: ServeArgs) -> Config {
        Config {
            listen: a.listen,
            warehouse: match &a.warehouse {
                Some(dir) if !weir::storage::s3::is_s3(dir) => PathBuf::from(dir),
                _ => a.data_dir.join("warehouse"),
            },
            warehouse_bucket: a.warehouse.filter(|w| weir::storage::s3::is_s3(w)),
            data_dir: a.data_dir,
            user: a.user,
            password: a.password,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
            tls_required: a.tls_required,
            max_connections: a.max_connections,
            authentication_timeout: Duration::from_secs(a.authentication_timeout),
            idle_session_timeout: (a.idle_session_timeout > 0).then(|| Duration::from_secs(a.idle_session_timeout)),
            flight_listen: (!a.no_flight).then_some(a.flight_listen),
            allowed_paths: a.allow_paths,
            allowed_hosts: a.allow_hosts,
        }
    }
}

#[derive(clap::Args)]
struct ProduceArgs {
    /// Kafka brokers to connect to (host:port, comma-separated).
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_servers: String,
    /// Topic to write to; it must exist.
    #[arg(long)]
    topic: String,
    /// Write every record to this partition [default: the partitioner picks].
    #[arg(long)]
    partition: Option<i32>,
    /// Seconds to wait for the broker to answer and to acknowledge each record.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

impl From<ProduceArgs> for weir::produce::ProduceOptions {
    fn from(a: ProduceArgs) -> weir::produce::ProduceOptions {
        weir::produce::ProduceOptions {
            bootstrap_servers: a.bootstrap_servers,
            topic: a.topic,
            partition: a.partition,
            timeout: std::time::Duration::from_secs(a.timeout_secs),
        }
    }
}

/// `RUST_LOG` (default `info`), with the Delta kernel's per-scan and
/// per-snapshot events at `warn` unless `RUST_LOG` names it: at `info` it
/// logs several lines for every query of a Delta table.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let quiet = if spec.contains("buoyant_kernel") { String::new() } else { ",buoyant_kernel=warn".into() };
    tracing_subscriber::EnvFilter::try_new(format!("{spec}{quiet}")).unwrap_or_else(|_| "info".into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let use_color = std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(log_filter()).with_ansi(use_color).with_writer(std::io::stderr).init();

    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Produce(args) => return produce(args.into()),
    };
    let config: Config = (*args).into();
    warn_if_exposed(&config);
    let runtime = match weir::server::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The server's own future (accepting, restoring the catalog, which plans
    // stored statements) runs on a thread with the same sized stack as the
    // runtime's workers, not on the main thread's.
    let served = std::thread::Builder::new()
        .name("weir-server".into())
        .stack_size(weir::sql::limits::STACK_BYTES)
        .spawn(move || runtime.block_on(weir::server::run(config, Box::pin(shutdown_signal()))).map_err(|e| e.to_string()))
        .map_err(|e| format!("cannot start the server thread: {e}"))
        .and_then(|thread| thread.join().unwrap_or_else(|_| Err("the server thread failed".into())));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("weir: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `weir produce` over stdin and reports the outcome on stderr.
fn produce(options: weir::produce::ProduceOptions) -> ExitCode {
    match weir::produce::run(&options, std::io::stdin().lock()) {
        Ok(n) => {
            eprintln!("weir: produced {n} record(s) to topic '{}'", options.topic);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weir: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Warns when any client that can reach the listener gets in without a
/// password, and louder when the server runs as root: the sandbox bounds
/// what a client can touch, but a root process has the most to lose.
fn warn_if_exposed(config: &Config) {
    if config.password.is_some() {
        return;
    }
    let exposed: Vec<String> = [Some(config.listen), config.flight_listen]
        .into_iter()
        .flatten()
        .filter(|addr| !addr.ip().is_loopback())
        .map(|addr| addr.to_string())
        .collect();
    if exposed.is_empty() {
        return;
    }
    tracing::warn!("listening on {} without --password: every client that can reach it is trusted", exposed.join(" and "));
    if running_as_root() {
        tracing::warn!(
            "RUNNING AS ROOT on a non-loopback address without a password: any client on the network can make weir read and write files under {} as root; set --password, listen on 127.0.0.1, or run as an unprivileged user",
            std::iter::once(&config.data_dir)
                .chain(&config.allowed_paths)
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// Whether the real or effective user id is 0, from `/proc/self/status`
/// (no libc needed); false where that file does not exist.
fn running_as_root() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .is_some_and(|ids| ids.split_whitespace().take(2).any(|id| id == "0"))
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
