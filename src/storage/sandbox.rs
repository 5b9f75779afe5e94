//! What a client may make weir touch: files only under the allowed roots
//! (the data directory, the warehouse and each `--allow-path`), network
//! connections only to loopback and each `--allow-host`. Like PostgreSQL's
//! `pg_read_server_files` / `pg_write_server_files` roles and DuckDB's
//! `allowed_directories`, except that no client is trusted beyond them.
//!
//! A location is judged after it is resolved the way the operating system
//! would resolve it: relative to the data directory, every existing
//! component canonicalised (so a symlink inside a root that points outside
//! is outside), `..` applied to the real parent. Callers use the resolved
//! path from then on, never the string the client wrote.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use crate::error::AccessError;

/// The files of the catalog itself: never a location, whatever the roots.
const CATALOG_FILES: &[&str] = &["catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm", "catalog.sqlite-journal"];

/// librdkafka settings that load code or run a command on the server.
const KAFKA_CODE_PROPERTIES: &[&str] = &["plugin.library.paths", "sasl.kerberos.kinit.cmd", "ssl.engine.location"];

/// librdkafka settings that name other brokers to connect to.
const KAFKA_HOST_PROPERTIES: &[&str] = &["bootstrap.servers", "metadata.broker.list"];

/// The allow-lists, resolved once at start-up and shared by every session.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Base of relative locations (canonical).
    data_dir: PathBuf,
    /// Canonical directories under which files may be read and written.
    roots: Vec<PathBuf>,
    /// Hosts besides loopback that sockets and Kafka clients may reach;
    /// `*` allows every host.
    hosts: Vec<String>,
}

impl Sandbox {
    /// `data_dir` and `warehouse` must exist (the engine creates them);
    /// each of `allowed` must exist too, so a typo in `--allow-path` stops
    /// the server instead of allowing a directory someone creates later.
    pub fn new(data_dir: &Path, warehouse: &Path, allowed: &[PathBuf], hosts: &[String]) -> Result<Sandbox, String> {
        let canonical = |p: &Path| std::fs::canonicalize(p).map_err(|e| format!("allowed path '{}': {e}", p.display()));
        let data_dir = canonical(data_dir)?;
        let mut roots = vec![data_dir.clone(), canonical(warehouse)?];
        for path in allowed {
            let root = canonical(path)?;
            if !root.is_dir() {
                return Err(format!("allowed path '{}' is not a directory", path.display()));
            }
            roots.push(root);
        }
        roots.dedup();
        let hosts = hosts.iter().map(|h| unbracket(h.trim()).to_ascii_lowercase()).filter(|h| !h.is_empty()).collect();
        Ok(Sandbox { data_dir, roots, hosts })
    }

    /// The canonical data directory: the base of relative locations.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The allowed roots, for messages and for the object store's check.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Resolves a client-given location (a path, relative to the data
    /// directory or absolute, or a `file://` URL) and checks it lies under
    /// an allowed root. A trailing `/` (a directory, to DataFusion) is kept.
    pub fn resolve(&self, location: &str) -> Result<PathBuf, AccessError> {
        let path = self.local_path(location)?;
        let absolute = if path.is_absolute() { path } else { self.data_dir.join(path) };
        let mut resolved = resolve_like_the_os(&absolute)
            .map_err(|reason| AccessError::Unresolvable { location: location.to_string(), reason })?;
        self.check(&resolved)?;
        if location.ends_with('/') {
            resolved.push("");
        }
        Ok(resolved)
    }

    /// Checks an already resolved absolute path.
    pub fn check(&self, path: &Path) -> Result<(), AccessError> {
        if !self.roots.iter().any(|root| path.starts_with(root)) {
            return Err(AccessError::Path { path: path.display().to_string(), roots: self.roots_list() });
        }
        if path == self.data_dir || CATALOG_FILES.iter().any(|f| path == self.data_dir.join(f)) {
            return Err(AccessError::Reserved { path: path.display().to_string() });
        }
        Ok(())
    }

    /// The roots as a message lists them.
    pub fn roots_list(&self) -> String {
        self.roots.iter().map(|r| format!("'{}'", r.display())).collect::<Vec<_>>().join(", ")
    }

    fn local_path(&self, location: &str) -> Result<PathBuf, AccessError> {
        // `get`, not `[..7]`: a location may start with multi-byte characters.
        if location.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("file://")) {
            let refused = |reason: String| AccessError::Unresolvable { location: location.to_string(), reason };
            let url =
                datafusion::datasource::listing::ListingTableUrl::parse(location).map_err(|e| refused(e.to_string()))?;
            return url
                .get_url()
                .to_file_path()
                .map_err(|()| refused("a file:// URL needs an absolute path on this machine".into()));
        }
        if location.contains("://") {
            return Err(AccessError::Scheme { location: location.to_string(), roots: self.roots_list() });
        }
        Ok(PathBuf::from(location))
    }

    /// Checks that `host` (a name or an IP address, IPv6 with or without
    /// brackets) may be connected to: loopback always, others when listed.
    pub fn check_host(&self, host: &str) -> Result<(), AccessError> {
        let host = unbracket(host.trim()).to_ascii_lowercase();
        if is_loopback(&host) || self.hosts.iter().any(|allowed| allowed == "*" || same_host(allowed, &host)) {
            return Ok(());
        }
        let mut allowed = vec!["loopback (localhost, 127.0.0.0/8, ::1)".to_string()];
        allowed.extend(self.hosts.iter().map(|h| format!("'{h}'")));
        Err(AccessError::Host { host, allowed: allowed.join(", ") })
    }

    /// Checks every broker of a Kafka `bootstrap_servers` list
    /// (`host:port,...`, optionally `protocol://host:port`).
    pub fn check_servers(&self, servers: &str) -> Result<(), AccessError> {
        for server in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            self.check_host(host_of(server))?;
        }
        Ok(())
    }

    /// The brokers and librdkafka files a Kafka stream or sink would use:
    /// `bootstrap_servers` (default `127.0.0.1:9092`) and every
    /// `properties.*` setting that names a host, a file or a program.
    pub fn check_kafka(&self, options: &std::collections::BTreeMap<String, String>) -> Result<(), AccessError> {
        self.check_servers(options.get("bootstrap_servers").map(String::as_str).unwrap_or("127.0.0.1:9092"))?;
        self.check_kafka_properties(
            options.iter().filter_map(|(k, v)| k.strip_prefix("properties.").map(|k| (k, v.as_str()))),
        )
    }

    /// Checks the librdkafka settings a client passes as `properties.*`
    /// (keys without that prefix): other brokers must be allowed hosts,
    /// files (certificates, keytabs) must be under the allowed roots, and
    /// settings that load a library or run a command are refused outright.
    pub fn check_kafka_properties<'a>(
        &self,
        properties: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), AccessError> {
        for (key, value) in properties {
            let key_lower = key.to_ascii_lowercase();
            if KAFKA_CODE_PROPERTIES.contains(&key_lower.as_str()) {
                return Err(AccessError::Property {
                    property: key.to_string(),
                    reason: "it makes the server load a library or run a command".into(),
                });
            }
            if KAFKA_HOST_PROPERTIES.contains(&key_lower.as_str()) {
                self.check_servers(value)?;
            } else if key_lower.ends_with(".url") {
                // e.g. sasl.oauthbearer.token.endpoint.url
                let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
                self.check_host(host_of(rest.split('/').next().unwrap_or_default()))?;
            } else if (key_lower.ends_with(".location") || key_lower.ends_with(".keytab")) && value != "probe" {
                self.resolve(value)?;
            }
        }
        Ok(())
    }
}

/// `path` as the operating system would resolve it when weir opens or
/// creates it: components that exist are canonicalised one by one (their
/// symlinks followed), `..` goes to the real parent, and the components
/// that do not exist yet are appended as written. A dangling symlink is an
/// error: creating through it would land wherever it points.
pub fn resolve_like_the_os(path: &Path) -> Result<PathBuf, String> {
    let mut resolved = PathBuf::from("/");
    let mut exists = true;
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => resolved = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(name) => {
                let next = resolved.join(name);
                if !exists {
                    resolved = next;
                    continue;
                }
                match std::fs::symlink_metadata(&next) {
                    Ok(_) => {
                        resolved = std::fs::canonicalize(&next)
                            .map_err(|e| format!("'{}' cannot be followed: {e}", next.display()))?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        exists = false;
                        resolved = next;
                    }
                    Err(e) => return Err(format!("'{}': {e}", next.display())),
                }
            }
        }
        // `..` after a component that did not exist may lead back into
        // existing ones, whose symlinks must be followed again.
        if !exists && component == Component::ParentDir {
            exists = std::fs::symlink_metadata(&resolved).is_ok();
            if exists {
                resolved = std::fs::canonicalize(&resolved).map_err(|e| format!("'{}': {e}", resolved.display()))?;
            }
        }
    }
    Ok(resolved)
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// The host of `host:port`, `[v6]:port`, a bare IPv6 address, or a
/// `protocol://host:port` broker address.
fn host_of(server: &str) -> &str {
    let server = server.split_once("://").map_or(server, |(_, rest)| rest);
    if let Some(rest) = server.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    if server.parse::<IpAddr>().is_ok() {
        return server;
    }
    server.rsplit_once(':').map_or(server, |(host, _)| host)
}

fn is_loopback(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        // RFC 6761: `localhost` and names under it are loopback.
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

fn same_host(allowed: &str, host: &str) -> bool {
    match (allowed.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => allowed == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(dir: &Path, allowed: &[PathBuf], hosts: &[&str]) -> Sandbox {
        let data = dir.join("data");
        std::fs::create_dir_all(data.join("warehouse")).unwrap();
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        Sandbox::new(&data, &data.join("warehouse"), allowed, &hosts).unwrap()
    }

    #[test]
    fn relative_locations_stay_under_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let s = sandbox(dir.path(), &[], &[]);
        let data = std::fs::canonicalize(dir.path().join("data")).unwrap();
        assert_eq!(s.resolve("t/x").unwrap(), data.join("t/x"));
        assert_eq!(s.resolve("t/../u/").unwrap().display().to_string(), format!("{}/u/", data.display()));
        assert!(matches!(s.resolve("../x"), Err(AccessError::Path { .. })));
        assert!(matches!(s.resolve("a/../../x"), Err(AccessError::Path { .. })));
        assert!(matches!(s.resolve("/etc/passwd"), Err(AccessError::Path { .. })));
        assert!(matches!(s.resolve("file:///etc/passwd"), Err(AccessError::Path { .. })));
        assert!(matches!(s.resolve("s3://bucket/x"), Err(AccessError::Scheme { .. })));
        assert!(matches!(s.resolve("catalog.sqlite"), Err(AccessError::Reserved { .. })));
        assert!(matches!(s.resolve("."), Err(AccessError::Reserved { .. })));
        // Multi-byte characters where a scheme would be (found by the fuzzer:
        // slicing the first seven bytes panicked).
        assert!(s.resolve("file:/\u{1612}x").is_ok(), "a relative name under the data dir");
        assert!(s.resolve("\u{1c5}\u{1c5}\u{1c5}\u{1c5}/t").is_ok());
        let url = format!("file://{}/t/", data.display());
        assert_eq!(s.resolve(&url).unwrap().display().to_string(), format!("{}/t/", data.display()));
    }

    #[test]
    fn symlinks_are_judged_by_where_they_point() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let s = sandbox(dir.path(), &[], &[]);
        let data = dir.path().join("data");
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), data.join("dangling")).unwrap();
        assert!(matches!(s.resolve("link/t"), Err(AccessError::Path { .. })));
        assert!(matches!(s.resolve("missing/../link/t"), Err(AccessError::Path { .. })));
        assert!(matches!(s.resolve("dangling/t"), Err(AccessError::Unresolvable { .. })));
        let allowed = sandbox(dir.path(), std::slice::from_ref(&outside), &[]);
        assert_eq!(allowed.resolve("link/t").unwrap(), std::fs::canonicalize(&outside).unwrap().join("t"));
    }

    #[test]
    fn hosts_are_loopback_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let s = sandbox(dir.path(), &[], &["kafka.internal", "10.0.0.5"]);
        for ok in ["127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3", "kafka.internal", "KAFKA.internal", "10.0.0.5"] {
            assert!(s.check_host(ok).is_ok(), "{ok}");
        }
        for refused in ["10.0.0.6", "example.com", "0.0.0.0", "169.254.169.254"] {
            assert!(s.check_host(refused).is_err(), "{refused}");
        }
        assert!(s.check_servers("127.0.0.1:9092, kafka.internal:9093,[::1]:9094").is_ok());
        assert!(s.check_servers("127.0.0.1:9092,evil:9092").is_err());
        assert!(s.check_servers("PLAINTEXT://evil:9092").is_err());
        let props = |k: &'static str, v: &'static str| vec![(k, v)].into_iter();
        assert!(s.check_kafka_properties(props("plugin.library.paths", "/tmp/x.so")).is_err());
        assert!(s.check_kafka_properties(props("sasl.kerberos.kinit.cmd", "touch /tmp/x")).is_err());
        assert!(s.check_kafka_properties(props("metadata.broker.list", "evil:9092")).is_err());
        assert!(s.check_kafka_properties(props("ssl.ca.location", "/etc/shadow")).is_err());
        assert!(s.check_kafka_properties(props("ssl.ca.location", "probe")).is_ok());
        assert!(s.check_kafka_properties(props("fetch.max.bytes", "1000")).is_ok());
        let everyone = sandbox(dir.path(), &[], &["*"]);
        assert!(everyone.check_host("example.com").is_ok());
    }
}
