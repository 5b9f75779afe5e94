//! Object storage: `s3://bucket/prefix/` locations on AWS S3 or any
//! S3-compatible server, through object_store's S3 client (the crate
//! DataFusion and the Delta crate read and write with).
//!
//! A bucket is configured once per server: from the usual AWS environment
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...), overridden by the `aws.*`
//! options of the first table that names the bucket with options. Every
//! table in a bucket shares that client: a later table may repeat the same
//! options or give none, but not different ones (two endpoints or two sets
//! of credentials for one bucket name would make which one a scan uses
//! depend on the order tables were declared).
//!
//! The environment is the operator's and trusted; an endpoint a client
//! writes in `aws.endpoint` is checked against the host allow-list like a
//! Kafka broker. Secrets in options are kept in the catalog (as a Hive
//! metastore keeps table properties) and never shown back: see [`mask`].
//!
//! Requests time out and retry briefly (a few seconds, not object_store's
//! three minutes), so a store that is down surfaces as an error the query
//! runner retries with backoff, reporting `retrying` with the cause.

use std::collections::{BTreeMap, HashMap};

use datafusion::sql::sqlparser::ast::Value;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use datafusion::object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use datafusion::object_store::path::Path;
use datafusion::object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};

use crate::error::{AccessError, QueryError};

/// The option keys a table may set for its bucket.
pub const OPTION_KEYS: &[&str] =
    &["aws.access_key_id", "aws.secret_access_key", "aws.session_token", "aws.region", "aws.endpoint", "aws.allow_http"];

/// Options whose values `SHOW CREATE TABLE` and the stored DDL's readers
/// never see.
const SECRET_KEYS: &[&str] = &["aws.secret_access_key", "aws.session_token"];

/// What a masked secret shows as.
pub const MASKED: &str = "********";

/// Whether `location` is an `s3://` URL.
pub fn is_s3(location: &str) -> bool {
    location.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("s3://"))
}

/// A directory-like location in a bucket: `s3://bucket/prefix/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Dir {
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (empty: the bucket).
    pub prefix: Path,
}

impl S3Dir {
    pub fn parse(location: &str) -> Result<S3Dir, QueryError> {
        let refused = |reason: &str| {
            QueryError::Access(AccessError::Unresolvable { location: location.to_string(), reason: reason.to_string() })
        };
        if !is_s3(location) {
            return Err(refused("not an s3:// URL"));
        }
        let rest = &location[5..];
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty()
            || !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(refused("a bucket name is lowercase letters, digits, '-' and '.'"));
        }
        let segments: Vec<&str> = key.split('/').filter(|s| !s.is_empty()).collect();
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return Err(refused("'.' and '..' are not key segments"));
        }
        // Characters a URL would decode or cut (`%`, `#`, `?`, spaces) are
        // refused: DataFusion reads the location as a URL, the sink writes
        // keys, and both must name the same objects.
        if let Some(bad) = key.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_./=+".contains(*c))) {
            return Err(refused(&format!("'{bad}' in a key prefix (use letters, digits and - _ . / = +)")));
        }
        let prefix = Path::parse(segments.join("/")).map_err(|e| refused(&e.to_string()))?;
        Ok(S3Dir { bucket: bucket.to_string(), prefix })
    }

    /// `s3://bucket/prefix/`: with the trailing slash DataFusion reads as
    /// "a directory of files".
    pub fn url(&self) -> String {
        match self.prefix.as_ref() {
            "" => format!("s3://{}/", self.bucket),
            prefix => format!("s3://{}/{prefix}/", self.bucket),
        }
    }

    /// The key of `name` directly under the prefix.
    pub fn key(&self, name: &str) -> Path {
        self.prefix.clone().join(name)
    }

    /// The URL of a key in this bucket.
    pub fn key_url(&self, key: &Path) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// The key a URL of this bucket names, if it is one.
    pub fn key_of(&self, url: &str) -> Option<Path> {
        let rest = url.strip_prefix("s3://")?.strip_prefix(self.bucket.as_str())?.strip_prefix('/')?;
        Path::parse(rest).ok()
    }

    /// Whether `url` names an object anywhere below this prefix.
    pub fn holds_below(&self, url: &str) -> bool {
        self.key_of(url).is_some_and(|key| key.prefix_match(&self.prefix).is_some_and(|mut rest| rest.next().is_some()))
    }

    /// Whether `url` names an object directly under this prefix.
    pub fn holds(&self, url: &str) -> bool {
        self.key_of(url).is_some_and(|key| {
            key.prefix_match(&self.prefix).is_some_and(|mut rest| rest.next().is_some() && rest.next().is_none())
        })
    }
}

impl std::fmt::Display for S3Dir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

/// A table's `aws.*` options, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options(BTreeMap<String, String>);

impl S3Options {
    /// Takes the `aws.*` options out of a `CREATE EXTERNAL TABLE`'s options
    /// (DataFusion's own table options know no `aws` namespace); an unknown
    /// `aws.` key is refused.
    pub fn take_from(options: &mut Vec<(String, Value)>) -> Result<S3Options, QueryError> {
        let mut taken = BTreeMap::new();
        let mut kept = Vec::with_capacity(options.len());
        for (key, value) in options.drain(..) {
            let lower = key.to_ascii_lowercase();
            if !lower.starts_with("aws.") {
                kept.push((key, value));
                continue;
            }
            if !OPTION_KEYS.contains(&lower.as_str()) {
                return Err(QueryError::InvalidOption {
                    option: key,
                    context: "an s3:// table's OPTIONS".into(),
                    valid: OPTION_KEYS.join(", "),
                });
            }
            let text = match value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s,
                other => other.to_string(),
            };
            taken.insert(lower, text);
        }
        *options = kept;
        Ok(S3Options(taken))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The endpoint a client named, if any.
    pub fn endpoint(&self) -> Option<&str> {
        self.0.get("aws.endpoint").map(String::as_str)
    }

    /// The host the client will connect to must be one weir may reach:
    /// the endpoint (from the options, else the environment), else AWS's
    /// regional endpoint. A region is a plain name (it becomes part of a
    /// host name).
    pub fn check(&self, sandbox: &super::Sandbox) -> Result<(), QueryError> {
        let builder = AmazonS3Builder::from_env();
        let region = self
            .0
            .get("aws.region")
            .cloned()
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Region))
            .unwrap_or_else(|| "us-east-1".into());
        if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(QueryError::InvalidOptionValue {
                option: "aws.region".into(),
                reason: format!("'{region}' is not a region name (lowercase letters, digits and '-')"),
            });
        }
        let endpoint = self
            .endpoint()
            .map(str::to_string)
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint))
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let url = url::Url::parse(&endpoint).map_err(|e| QueryError::InvalidOptionValue {
            option: "aws.endpoint".into(),
            reason: format!("'{endpoint}' is not a URL: {e}"),
        })?;
        Ok(sandbox.check_host(url.host_str().unwrap_or_default())?)
    }
}

/// Whether `key` (an option key, any case) holds a secret.
pub fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str())
}

struct Registered {
    options: S3Options,
    store: Arc<dyn ObjectStore>,
}

/// Each bucket's publish gate: a sink publishing an epoch's files into the
/// bucket holds it, a listing of the bucket waits for it (as the server's
/// gate does for local directories), and a slow store stalls no one else.
static GATES: LazyLock<Mutex<HashMap<String, super::PublishGate>>> = LazyLock::new(Default::default);

/// The publish gate of `bucket`.
pub fn gate(bucket: &str) -> super::PublishGate {
    let mut gates = GATES.lock().unwrap_or_else(|p| p.into_inner());
    gates.entry(bucket.to_string()).or_default().clone()
}

/// The configured client of each bucket, for this process (the Delta
/// crate's factories are process-wide too).
static BUCKETS: LazyLock<Mutex<HashMap<String, Registered>>> = LazyLock::new(Default::default);

/// The client for `bucket`: the one already configured, or a new one from
/// the environment and `options`, kept for the bucket from now on.
pub fn store(bucket: &str, options: &S3Options) -> Result<Arc<dyn ObjectStore>, QueryError> {
    let (store, new) = known_or_new(bucket, options)?;
    if new {
        keep(bucket, options, &store)?;
    }
    Ok(store)
}

/// The bucket's configured client if `options` agree with it (or are
/// none); else a new client, not kept yet (`true`).
fn known_or_new(bucket: &str, options: &S3Options) -> Result<(Arc<dyn ObjectStore>, bool), QueryError> {
    let buckets = BUCKETS.lock().map_err(|_| QueryError::Internal("bucket registry poisoned".into()))?;
    if let Some(known) = buckets.get(bucket) {
        if options.is_empty() || *options == known.options {
            return Ok((known.store.clone(), false));
        }
        if !known.options.is_empty() {
            return Err(QueryError::InvalidOptionValue {
                option: "aws.*".into(),
                reason: format!(
                    "bucket '{bucket}' is already configured with other options by an earlier table; every table in one bucket uses the same endpoint and credentials (give the same options, or none)"
                ),
            });
        }
    }
    drop(buckets);
    Ok((build(bucket, options)?, true))
}

/// Keeps a new client for `bucket`, checking again under the lock: a
/// CREATE racing this one may have configured the bucket meanwhile.
fn keep(bucket: &str, options: &S3Options, store: &Arc<dyn ObjectStore>) -> Result<(), QueryError> {
    let mut buckets = BUCKETS.lock().map_err(|_| QueryError::Internal("bucket registry poisoned".into()))?;
    if let Some(known) = buckets.get(bucket)
        && !known.options.is_empty()
        && known.options != *options
    {
        return Err(QueryError::InvalidOptionValue {
            option: "aws.*".into(),
            reason: format!("bucket '{bucket}' was configured with other options by a table created meanwhile"),
        });
    }
    buckets.insert(bucket.to_string(), Registered { options: options.clone(), store: store.clone() });
    Ok(())
}

/// The client of a bucket some table or stream configured, if any.
pub fn configured(bucket: &str) -> Option<Arc<dyn ObjectStore>> {
    BUCKETS.lock().ok()?.get(bucket).map(|r| r.store.clone())
}

/// The configured client of `bucket`, or an error: writers and the Delta
/// crate use only buckets a table's CREATE (or restore) checked, never a
/// client made up from the environment for a bucket nobody declared.
pub fn configured_or_refuse(bucket: &str) -> Result<Arc<dyn ObjectStore>, QueryError> {
    configured(bucket).ok_or_else(|| {
        QueryError::WrongState(format!(
            "bucket '{bucket}' is not configured in this server (no table or stream in it was created or restored)"
        ))
    })
}

fn build(bucket: &str, options: &S3Options) -> Result<Arc<dyn ObjectStore>, QueryError> {
    // Timeouts as config keys, not a new `ClientOptions`: that would drop
    // the client settings `from_env` read (AWS_ALLOW_HTTP among them).
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout), "5s")
        .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "60s");
    for (key, value) in &options.0 {
        let name = key.trim_start_matches("aws.");
        let config: AmazonS3ConfigKey =
            name.parse().map_err(|e| QueryError::InvalidOptionValue { option: key.clone(), reason: format!("{e}") })?;
        builder = builder.with_config(config, value.clone());
    }
    // A plain-HTTP endpoint (a local S3-compatible server) is what the
    // user asked for by writing `http://`.
    let endpoint = options.endpoint().map(str::to_string).or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
    if endpoint.is_some_and(|e| e.starts_with("http://")) {
        builder = builder.with_allow_http(true);
    }
    let retry = RetryConfig { backoff: BackoffConfig::default(), max_retries: 3, retry_timeout: Duration::from_secs(15) };
    let store = builder
        .with_retry(retry)
        .build()
        .map_err(|e| QueryError::InvalidOptionValue { option: "aws.*".into(), reason: e.to_string() })?;
    Ok(Arc::new(store))
}

/// Checks that the bucket answers for `dir`: lists one level under it. A
/// missing bucket, refused credentials or an unreachable endpoint is an
/// error naming the cause, at CREATE time.
pub async fn probe(store: &dyn ObjectStore, dir: &S3Dir) -> Result<(), QueryError> {
    let prefix = (!dir.prefix.as_ref().is_empty()).then_some(&dir.prefix);
    store.list_with_delimiter(prefix).await.map(|_| ()).map_err(|e| store_error(&dir.url(), e))
}

/// Deletes every object under `dir` (a warehouse table dropped). The
/// prefix is never empty here: the warehouse owns only prefixes strictly
/// below its root.
pub async fn remove_prefix(dir: &S3Dir) -> Result<(), QueryError> {
    use datafusion::object_store::ObjectStoreExt;
    use futures::TryStreamExt;
    if dir.prefix.as_ref().is_empty() {
        return Err(QueryError::Unsupported(format!("deleting the whole bucket {dir}")));
    }
    let store = configured_or_refuse(&dir.bucket)?;
    let keys: Vec<Path> = store
        .list(Some(&dir.prefix))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(|e| store_error(&dir.url(), e))?;
    for key in keys {
        match store.delete(&key).await {
            Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(&dir.key_url(&key), e)),
        }
    }
    Ok(())
}

/// An object store error as a client should read it.
pub fn store_error(location: &str, e: datafusion::object_store::Error) -> QueryError {
    use datafusion::object_store::Error;
    let text = e.to_string();
    match e {
        _ if text.contains("NoSuchBucket") => QueryError::MissingLocation(format!("{location} (the bucket does not exist)")),
        Error::NotFound { .. } => QueryError::MissingLocation(location.to_string()),
        Error::PermissionDenied { .. } | Error::Unauthenticated { .. } => {
            QueryError::Access(AccessError::Unresolvable { location: location.to_string(), reason: cause(&text) })
        }
        _ if text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch")
            || text.contains("AccessDenied") =>
        {
            QueryError::Access(AccessError::Unresolvable { location: location.to_string(), reason: cause(&text) })
        }
        _ => QueryError::UnreadableLocation { path: location.to_string(), reason: cause(&text) },
    }
}

/// object_store's message without the request's whole retry story, and
/// with the store's own error code and message instead of its XML body
/// (`403 Forbidden: InvalidAccessKeyId: The AWS Access Key Id ...`).
fn cause(text: &str) -> String {
    let line = text.lines().next().unwrap_or(text);
    let line = line.split("<?xml").next().unwrap_or(line).trim_end().trim_end_matches(':');
    let line = if line.len() > 600 { format!("{}...", &line[..line.floor_char_boundary(600)]) } else { line.to_string() };
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let len = text[start..].find(close)?;
        Some(text[start..start + len].chars().take(300).collect::<String>())
    };
    match (between("<Code>", "</Code>"), between("<Message>", "</Message>")) {
        (Some(code), Some(message)) => format!("{line}: {code}: {message}"),
        (Some(code), None) => format!("{line}: {code}"),
        _ => line,
    }
}

/// Resolves a client's `s3://` LOCATION: a valid URL, an allowed
/// endpoint, a bucket that answers. Returns the location as stored
/// (`s3://bucket/prefix/`).
pub async fn resolve(sandbox: &super::Sandbox, location: &str, options: &S3Options) -> Result<S3Dir, QueryError> {
    let dir = S3Dir::parse(location)?;
    options.check(sandbox)?;
    // A client kept only once it answered: a mistyped endpoint or key can
    // be corrected by the next CREATE.
    let (store, new) = known_or_new(&dir.bucket, options)?;
    probe(store.as_ref(), &dir).await?;
    if new {
        keep(&dir.bucket, options, &store)?;
    }
    Ok(dir)
}

/// Makes DataFusion read `dir`'s bucket through its configured client,
/// listing committed objects only, under the bucket's gate (see
/// `super::store`).
pub fn attach(runtime: &datafusion::execution::runtime_env::RuntimeEnv, dir: &S3Dir) -> Result<(), QueryError> {
    let store = configured_or_refuse(&dir.bucket)?;
    let url =
        url::Url::parse(&format!("s3://{}", dir.bucket)).map_err(|e| QueryError::Internal(format!("bucket URL: {e}")))?;
    runtime.register_object_store(&url, Arc::new(super::CommittedStore::remote(store, gate(&dir.bucket))));
    Ok(())
}

/// Replaces every secret option value in `options` by [`MASKED`].
pub fn mask(options: &mut [(String, Value)]) {
    for (key, value) in options.iter_mut() {
        if is_secret(key) {
            *value = Value::SingleQuotedString(MASKED.to_string());
        }
    }
}

/// Lets the Delta crate open `s3://` tables with the bucket's configured
/// client, committing log entries with S3's conditional put (`If-None-Match`),
/// which every current S3 and moto support: no lock table is needed.
pub fn install_delta_factories() {
    use deltalake::logstore::{logstore_factories, object_store_factories};
    let scheme = url::Url::parse("s3://").expect("a scheme URL");
    object_store_factories().insert(scheme.clone(), Arc::new(DeltaStores));
    logstore_factories().insert(scheme, Arc::new(DeltaLogs));
}

struct DeltaStores;

impl deltalake::logstore::ObjectStoreFactory for DeltaStores {
    fn parse_url_opts(
        &self,
        url: &url::Url,
        _config: &deltalake::logstore::StorageConfig,
    ) -> deltalake::DeltaResult<(deltalake::logstore::ObjectStoreRef, Path)> {
        let dir = S3Dir::parse(url.as_str())
            .map_err(|e| deltalake::DeltaTableError::InvalidTableLocation(format!("{url}: {e}")))?;
        let store = configured_or_refuse(&dir.bucket)
            .map_err(|e| deltalake::DeltaTableError::InvalidTableLocation(format!("{url}: {e}")))?;
        Ok((store, dir.prefix))
    }
}

struct DeltaLogs;

impl deltalake::logstore::LogStoreFactory for DeltaLogs {
    fn with_options(
        &self,
        prefixed_store: deltalake::logstore::ObjectStoreRef,
        root_store: deltalake::logstore::ObjectStoreRef,
        location: &url::Url,
        options: &deltalake::logstore::StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn deltalake::logstore::LogStore>> {
        Ok(deltalake::logstore::default_logstore(prefixed_store, root_store, location, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_to_a_bucket_and_a_clean_prefix() {
        let dir = S3Dir::parse("s3://lake/events/2026/").unwrap();
        assert_eq!(dir.bucket, "lake");
        assert_eq!(dir.prefix.as_ref(), "events/2026");
        assert_eq!(dir.url(), "s3://lake/events/2026/");
        assert_eq!(S3Dir::parse("S3://lake").unwrap().url(), "s3://lake/");
        assert!(dir.holds("s3://lake/events/2026/a.parquet"));
        assert!(!dir.holds("s3://lake/events/2026/x/a.parquet"));
        assert!(!dir.holds("s3://other/events/2026/a.parquet"));
        for bad in
            ["s3://", "s3://Upper/x", "s3://b/../x", "s3://b/./x", "file:///tmp", "s3://b/a%20b", "s3://b/x#y", "s3://b/x?y"]
        {
            assert!(S3Dir::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aws_options_are_taken_out_and_secrets_masked() {
        let quoted = |s: &str| Value::SingleQuotedString(s.to_string());
        let mut options = vec![
            ("aws.endpoint".to_string(), quoted("http://127.0.0.1:9000")),
            ("aws.secret_access_key".to_string(), quoted("s3cr3t")),
            ("format.compression".to_string(), quoted("zstd")),
        ];
        let mut shown = options.clone();
        let taken = S3Options::take_from(&mut options).unwrap();
        assert_eq!(taken.endpoint(), Some("http://127.0.0.1:9000"));
        assert_eq!(options.len(), 1);
        mask(&mut shown);
        assert_eq!(shown[1].1, quoted(MASKED));
        assert_eq!(shown[0].1, quoted("http://127.0.0.1:9000"));
        let mut unknown = vec![("aws.bogus".to_string(), quoted("1"))];
        assert!(S3Options::take_from(&mut unknown).is_err());
    }

    #[test]
    fn a_store_error_names_the_code_and_message_not_the_xml() {
        let text = "Generic S3 error: Error performing GET http://h/b in 2ms - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>";
        let got = cause(text);
        assert!(
            got.ends_with(
                "403 Forbidden: InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records."
            ),
            "{got}"
        );
        assert_eq!(cause("plain"), "plain");
    }
}
