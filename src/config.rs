//! The server's typed configuration, built once by `main` and passed down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `weir serve` needs to run. No part of weir reads configuration
/// from anywhere else.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the PostgreSQL endpoint listens. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Holds the catalog (`catalog.sqlite`) and is the base of relative LOCATIONs.
    pub data_dir: PathBuf,
    /// Where weir-owned tables live (materialized views, dead-letter and
    /// late-row tables).
    pub warehouse: PathBuf,
    /// `s3://bucket/prefix`: new weir-owned tables are made there instead;
    /// `warehouse` keeps those made before.
    pub warehouse_bucket: Option<String>,
    /// The user name a password applies to.
    pub user: String,
    /// When set, clients authenticate with SCRAM-SHA-256; otherwise trust.
    pub password: Option<String>,
    /// PEM certificate and key; when both are set, clients may use TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that do not negotiate TLS (PostgreSQL's `hostssl`);
    /// needs `tls_cert` and `tls_key`. Off by default: TLS is offered, not
    /// required.
    pub tls_required: bool,
    /// Sessions beyond this are refused at once with 53300 ("sorry, too
    /// many clients already"): a bound on memory, not a policy.
    pub max_connections: usize,
    /// How long a client has from connecting to being logged in (TLS, the
    /// startup packet, the password exchange), as PostgreSQL's
    /// `authentication_timeout`: a socket that sends nothing cannot hold a
    /// connection slot longer than this.
    pub authentication_timeout: Duration,
    /// Closes a logged-in session idle this long between queries (FATAL
    /// 57P05), as PostgreSQL's `idle_session_timeout`; `None` never does.
    /// Each session may change its own with `SET idle_session_timeout`.
    pub idle_session_timeout: Option<Duration>,
    /// Where the Arrow Flight SQL endpoint listens; `None` turns it off.
    pub flight_listen: Option<SocketAddr>,
    /// Directories clients may read and write besides the data directory
    /// and the warehouse (LOCATION, COPY, file streams, Kafka certificate
    /// files). Everything else is refused with 42501.
    pub allowed_paths: Vec<PathBuf>,
    /// Hosts besides loopback that socket streams and Kafka clients may
    /// connect to; `*` allows any.
    pub allowed_hosts: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        let data_dir = PathBuf::from("weir-data");
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            warehouse: data_dir.join("warehouse"),
            warehouse_bucket: None,
            data_dir,
            user: "weir".to_string(),
            password: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            max_connections: 256,
            authentication_timeout: Duration::from_secs(10),
            idle_session_timeout: None,
            flight_listen: Some(SocketAddr::from(([127, 0, 0, 1], 50051))),
            allowed_paths: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}
