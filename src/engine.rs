//! The query engine shared by every connection: one DataFusion context whose
//! catalog is the metastore's live view, plus the parser and configuration.

use std::path::Path;
use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;

use crate::catalog::sqlite::SqliteStore;
use crate::catalog::{Catalog, CatalogStore};
use crate::catalog::{DATABASE, SCHEMA};
use crate::config::Config;
use crate::error::{QueryError, ServerError};
use crate::session::SessionVars;
use crate::sql::Parser;
use crate::storage::{CommittedStore, PublishGate, Sandbox, Warehouse};
use crate::stream::StreamManager;

pub struct Engine {
    pub config: Config,
    /// Holds the shared catalog list; per-statement states are cloned from it
    /// so a session's SET never leaks into another session.
    ctx: SessionContext,
    pub catalog: Catalog,
    pub parser: Parser,
    /// Streams and continuous queries.
    pub streams: StreamManager,
    /// What clients may make the server read, write and connect to.
    pub sandbox: Sandbox,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens (or creates) the data directory and catalog and restores every
    /// table definition. Streams and continuous queries are the server's to
    /// restart (`StreamManager::restore`), once the engine exists.
    pub async fn open(config: Config) -> Result<Engine, ServerError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| ServerError::DataDir(config.data_dir.display().to_string(), e.to_string()))?;
        let store: Arc<dyn CatalogStore> = Arc::new(SqliteStore::open(&config.data_dir.join("catalog.sqlite"))?);
        let catalog = Catalog::open(store.clone()).await?;
        let warehouse = Warehouse::open(&config.warehouse)
            .map_err(|e| ServerError::DataDir(config.warehouse.display().to_string(), e.to_string()))?;
        let roots = catalog.store().warehouse_roots().await?;
        let warehouse = warehouse.with_earlier_roots(roots);
        let mut allowed = config.allowed_paths.clone();
        allowed.extend(warehouse.roots().skip(1).filter(|r| r.is_dir()).map(Path::to_path_buf));
        let sandbox = Sandbox::new(&config.data_dir, warehouse.root(), &allowed, &config.allowed_hosts)
            .map_err(|e| ServerError::DataDir(config.data_dir.display().to_string(), e))?;
        // A warehouse in a bucket must answer now: a missing bucket or a
        // refused host is an error at start, not at the first view.
        let warehouse = match &config.warehouse_bucket {
            Some(url) => {
                let dir = crate::storage::s3::resolve(&sandbox, url, &Default::default())
                    .await
                    .map_err(|e| ServerError::DataDir(url.clone(), e.message()))?;
                warehouse.in_bucket(dir)
            }
            None => warehouse,
        };
        // Remembered before anything is written under it, so that a restart
        // with another --warehouse still finds the tables made under this
        // one: each earlier root stays the warehouse's, and readable.
        catalog.store().add_warehouse_root(&warehouse.current_root()).await?;
        tracing::info!("clients may read and write files under {}", sandbox.roots_list());
        // No write is in flight yet: what a crash left half-uploaded goes.
        crate::storage::upload::remove_leftovers(sandbox.data_dir());

        let mut session_config = SessionConfig::new()
            .with_default_catalog_and_schema(DATABASE, SCHEMA)
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(true);
        // Sessions are UTC: `'...+02:00'::timestamptz` keeps its zone and
        // renders as `+00`, as in a PostgreSQL session with TimeZone=UTC.
        session_config.options_mut().execution.time_zone = Some("+00:00".to_string());
        // No cached directory listings: a file that lands in a table's
        // directory must be seen by the very next query.
        let caches = CacheManagerConfig::default().with_list_files_cache_limit(0);
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(caches)
            .build_arc()
            .map_err(|e| ServerError::Engine(e.to_string()))?;
        // Every local read and write of the engine goes through the store
        // that lists committed files only and stays under the allowed roots.
        let gate = PublishGate::default();
        let local = Arc::new(datafusion::object_store::local::LocalFileSystem::new());
        let files = CommittedStore::new(local, gate.clone(), &sandbox);
        let file_url = datafusion::execution::object_store::ObjectStoreUrl::local_filesystem();
        runtime.register_object_store(file_url.as_ref(), Arc::new(files));
        crate::storage::s3::install_delta_factories();
        // Views in a bucket warehouse are listing tables over s3:// URLs.
        if let Some(dir) = warehouse.bucket() {
            crate::storage::s3::attach(&runtime, dir).map_err(|e| ServerError::Engine(e.message()))?;
        }
        // Tables made under an earlier bucket root are restored, written
        // and dropped there: their bucket gets its client from the
        // environment (no request now; a store that is down shows when a
        // table is used).
        for dir in warehouse.earlier_buckets() {
            let configured = crate::storage::s3::S3Options::default()
                .check(&sandbox)
                .and_then(|()| crate::storage::s3::store(&dir.bucket, &Default::default()))
                .and_then(|_| crate::storage::s3::attach(&runtime, dir));
            if let Err(e) = configured {
                tracing::warn!(root = %dir, "an earlier warehouse's bucket is not configured: {}", e.message());
            }
        }
        let ctx = SessionContext::new_with_config_rt(session_config, runtime);
        // `STORED AS DELTA`: tables with a Delta log (see `crate::delta`).
        ctx.state_ref()
            .write()
            .table_factories_mut()
            .insert("DELTA".to_string(), Arc::new(crate::delta::provider::TableFactory));
        // The catalog is the `public` schema: what it holds is what plans see.
        ctx.catalog(DATABASE)
            .ok_or_else(|| ServerError::Engine("no default catalog".into()))?
            .register_schema(SCHEMA, catalog.schema())
            .map_err(|e| ServerError::Engine(e.to_string()))?;
        datafusion_pg_catalog::setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider)
            .map_err(|e| ServerError::Engine(e.to_string()))?;
        crate::pg_catalog_compat::register(&ctx, &catalog, &config.user).await?;
        crate::functions::register(&ctx);
        register_system_schema(&ctx, store.clone())?;

        let restored = catalog.restore(&ctx.state(), &sandbox).await?;
        tracing::info!(tables = restored, "catalog restored");
        let streams = StreamManager::new(ctx.clone(), catalog.clone(), sandbox.clone(), gate, warehouse);
        Ok(Engine { config, ctx, catalog, parser: Parser::new(), streams, sandbox })
    }

    /// The context DDL registers tables in.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// A planning and execution state for one statement of a session, with
    /// the session's `SET datafusion.*` overrides applied.
    pub fn session_state(&self, vars: &SessionVars) -> Result<SessionState, QueryError> {
        let mut state = self.ctx.state();
        for (key, value) in crate::session::datafusion_overrides(vars) {
            state.config_mut().options_mut().set(&key, &value)?;
        }
        if !vars.is_empty() {
            use datafusion::execution::FunctionRegistry;
            state.register_udf(Arc::new(crate::functions::session_current_setting(vars.clone())))?;
            if let Some(user) = crate::session::user(vars) {
                state.config_mut().set_extension(Arc::new(crate::pg_catalog_compat::SessionUser(user.to_string())));
                for udf in crate::functions::session_user(user) {
                    state.register_udf(Arc::new(udf))?;
                }
            }
            if let Some(pid) = crate::session::backend_pid(vars) {
                state.register_udf(Arc::new(crate::functions::session_backend_pid(pid)))?;
            }
            if let Some(schema) = self.first_schema_on_path(vars) {
                state.register_udf(Arc::new(crate::functions::session_current_schema(schema)))?;
            }
        }
        Ok(state)
    }

    /// The first schema on the session's `search_path` that exists, when the
    /// session changed the path (else `current_schema()` stays `public`).
    fn first_schema_on_path(&self, vars: &SessionVars) -> Option<String> {
        let path = crate::session::search_path(vars)?;
        let schemas = self.ctx.catalog(DATABASE)?.schema_names();
        path.into_iter().find(|s| schemas.contains(s))
    }
}

/// The schema `weir`: system tables such as `weir.query_progress`.
fn register_system_schema(ctx: &SessionContext, store: Arc<dyn CatalogStore>) -> Result<(), ServerError> {
    use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
    let schema = MemorySchemaProvider::new();
    schema
        .register_table("query_progress".into(), Arc::new(crate::stream::progress::progress_table(store)))
        .map_err(|e| ServerError::Engine(e.to_string()))?;
    let catalog = ctx.catalog(DATABASE).ok_or_else(|| ServerError::Engine("no default catalog".into()))?;
    catalog.register_schema("weir", Arc::new(schema)).map_err(|e| ServerError::Engine(e.to_string()))?;
    Ok(())
}
