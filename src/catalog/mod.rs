//! The metastore and DataFusion's `public` schema, kept as one:
//!
//! * `store`: what is persisted (relations, the commit log of continuous
//!   queries, warehouse roots), behind a sync trait; `sqlite` implements it
//!   (`sqlite_format`: its file's versions and their migration).
//! * `async_store`: the store as async code calls it, off the workers.
//! * `schema`: the `public` schema DataFusion plans against, the store's
//!   relations with their live tables.
//! * `tables`: external tables: locations, listing tables, canonical DDL.
//! * `scans`: which tables a plan reads; `diagnose`: the file behind a
//!   failed read.
//!
//! [`Catalog`] is the one way in: a relation is created or dropped by one
//! call that persists it and makes it live together.

pub mod async_store;
pub mod diagnose;
pub mod scans;
pub mod schema;
pub mod sqlite;
mod sqlite_format;
pub mod store;
pub mod tables;

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::catalog::TableProvider;
use datafusion::execution::SessionState;

use crate::error::{CatalogError, QueryError};

// The names and version a client sees, as a PostgreSQL catalog shows them;
// here, below every layer that reports them.

/// The database name clients connect to and `current_database()` returns.
pub const DATABASE: &str = "weir";
/// The one schema user tables live in.
pub const SCHEMA: &str = "public";
/// What `version()` and `server_version` report: PostgreSQL-shaped so that
/// drivers (SQLAlchemy, JDBC) parse it, and the major version whose
/// catalog columns `pg_catalog_compat` emulates (15), so that clients ask
/// for the columns weir has and psql 15 does not warn about a newer server.
pub const PG_VERSION: &str = "15.18";
/// [`PG_VERSION`] as `server_version_num` spells it.
pub const PG_VERSION_NUM: &str = "150018";

pub use async_store::AsyncStore;
pub use schema::CatalogSchema;
pub use store::{CatalogStore, EpochCommit, QueryStatusRow, RelationDef, RelationKind, StagedFile};

/// The durable definitions and the live schema built from them. The store
/// is written first and the schema changed only once it has committed, in
/// one call that runs to its end even if the statement that asked is
/// cancelled, so the two never disagree. (Relative locations resolve
/// through `storage::Sandbox`.)
#[derive(Debug, Clone)]
pub struct Catalog {
    store: AsyncStore,
    schema: Arc<CatalogSchema>,
}

impl Catalog {
    /// Reads every definition from `store`; their tables become live
    /// through [`Catalog::restore`] (external tables) and their owners
    /// (streams, views).
    pub async fn open(store: Arc<dyn CatalogStore>) -> Result<Catalog, CatalogError> {
        let store = AsyncStore::new(store);
        let defs = store.list().await?;
        Ok(Catalog { store, schema: Arc::new(CatalogSchema::new(defs)) })
    }

    pub fn store(&self) -> &AsyncStore {
        &self.store
    }

    /// The `public` schema, for DataFusion's catalog.
    pub fn schema(&self) -> Arc<CatalogSchema> {
        self.schema.clone()
    }

    /// Every relation, in creation order.
    pub fn list(&self) -> Result<Vec<RelationDef>, CatalogError> {
        self.schema.defs()
    }

    pub fn get(&self, name: &str) -> Result<Option<RelationDef>, CatalogError> {
        self.schema.def(name)
    }

    /// Persists `def` and makes `table` (a relation that has one) queryable
    /// under its name. `DuplicateTable` when the name is taken, by a
    /// relation or by any live table.
    pub async fn create(&self, def: RelationDef, table: Option<Arc<dyn TableProvider>>) -> Result<(), CatalogError> {
        let reservation = self.schema.reserve(&def.name)?;
        let schema = self.schema.clone();
        self.store
            .run(move |store| {
                store.insert(&def)?;
                schema.add(reservation, def, table)
            })
            .await
    }

    /// Forgets a relation and its table; false when the store had none.
    /// A continuous query's commit log and status go with it.
    pub async fn drop(&self, name: &str) -> Result<bool, CatalogError> {
        let (name, schema) = (name.to_string(), self.schema.clone());
        self.store
            .run(move |store| {
                let removed = store.remove(&name)?;
                schema.remove(&name)?;
                Ok(removed)
            })
            .await
    }

    /// Replaces a relation's stored definition (`ALTER SINK ... SET`,
    /// `CREATE OR REPLACE`), in the store and then in memory; with
    /// `discard_state`, the query's kept state goes in the same transaction.
    pub async fn redefine(&self, name: &str, definition: &str, discard_state: bool) -> Result<(), CatalogError> {
        let (name, definition, schema) = (name.to_string(), definition.to_string(), self.schema.clone());
        self.store
            .run(move |store| {
                if !store.redefine(&name, &definition, discard_state)? {
                    return Err(CatalogError::UnknownTable(name));
                }
                schema.redefine(&name, &definition)
            })
            .await
    }

    /// Makes the table of a relation already persisted queryable (restore,
    /// a view restarted from its definition).
    pub fn attach(&self, name: &str, table: Arc<dyn TableProvider>) -> Result<(), CatalogError> {
        self.schema.attach(name, table)
    }

    /// Creates, unless it exists, the Parquet table weir writes for the
    /// user under `dir` (which the warehouse has created) with `schema`'s
    /// columns: `<stream>_errors`, `<query>_late`. It is a table like any
    /// other: persisted as the DDL that recreates it, listed, queryable,
    /// and built from that definition, so it reads the same before and
    /// after a restart.
    pub async fn create_owned(
        &self,
        state: &SessionState,
        name: &str,
        dir: &crate::storage::TableDir,
        schema: &Schema,
    ) -> Result<(), QueryError> {
        if self.get(name)?.is_some() {
            return Ok(());
        }
        let def = tables::owned_table_def(name, dir, schema)?;
        let table = tables::rebuild(state, &def).await?;
        Ok(self.create(def, Some(table)).await?)
    }

    /// Makes every persisted external table queryable again. A table whose
    /// files have gone, or whose location the sandbox no longer allows, is
    /// logged and skipped, not fatal: its definition stays, so SHOW TABLES
    /// still lists it and DROP TABLE can remove it.
    pub async fn restore(&self, state: &SessionState, sandbox: &crate::storage::Sandbox) -> Result<usize, CatalogError> {
        let mut restored = 0;
        for def in self.list()?.iter().filter(|d| d.kind == RelationKind::ExternalTable) {
            match tables::replay(state, sandbox, def).await {
                Ok(table) => {
                    self.attach(&def.name, table)?;
                    restored += 1;
                }
                Err(e) => tracing::warn!(table = %def.name, "table not restored: {}", e.message()),
            }
        }
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::catalog::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::catalog::sqlite::SqliteStore;

    fn def(name: &str) -> RelationDef {
        RelationDef {
            name: name.into(),
            kind: RelationKind::ExternalTable,
            definition: format!("CREATE EXTERNAL TABLE {name} (n BIGINT) STORED AS PARQUET LOCATION '/x/'"),
            location: "/x/".into(),
            format: "PARQUET".into(),
            partition_columns: Vec::new(),
        }
    }

    /// A table of `rows` rows in one BIGINT column `n`.
    fn table(rows: i64) -> Arc<dyn TableProvider> {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..rows))]).unwrap();
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
    }

    /// A context whose `public` schema is the catalog's, as the engine's is.
    fn context(catalog: &Catalog) -> SessionContext {
        let ctx = SessionContext::new();
        ctx.catalog("datafusion").unwrap().register_schema("public", catalog.schema()).unwrap();
        ctx
    }

    async fn count(ctx: &SessionContext, table: &str) -> i64 {
        let batches = ctx.sql(&format!("SELECT count(*) FROM {table}")).await.unwrap().collect().await.unwrap();
        batches[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0)
    }

    /// One call persists a table and makes it queryable; one call drops
    /// both. A reopened catalog has what was persisted, and nothing else.
    #[tokio::test]
    async fn create_and_drop_are_one_call_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let catalog = Catalog::open(Arc::new(SqliteStore::open(&path).unwrap())).await.unwrap();
        let ctx = context(&catalog);
        catalog.create(def("a"), Some(table(3))).await.unwrap();
        catalog.create(def("b"), Some(table(5))).await.unwrap();
        assert_eq!(count(&ctx, "a").await, 3);
        let err = catalog.create(def("a"), Some(table(7))).await.unwrap_err();
        assert_eq!(err.sqlstate(), "42P07", "{err}");
        assert_eq!(count(&ctx, "a").await, 3, "a refused create leaves the table as it was");

        assert!(catalog.drop("a").await.unwrap());
        assert!(!catalog.drop("a").await.unwrap());
        assert!(ctx.sql("SELECT * FROM a").await.is_err(), "a dropped table is not queryable");
        assert_eq!(catalog.list().unwrap().iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["b"]);
        drop((ctx, catalog));

        let reopened = Catalog::open(Arc::new(SqliteStore::open(&path).unwrap())).await.unwrap();
        assert_eq!(reopened.list().unwrap().iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["b"]);
    }

    /// When the store refuses a relation, nothing of it becomes live and
    /// its name is free again: no rollback by the caller.
    #[tokio::test]
    async fn a_create_the_store_refuses_leaves_nothing_live() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(SqliteStore::open(&dir.path().join("catalog.sqlite")).unwrap());
        let catalog = Catalog::open(sqlite.clone()).await.unwrap();
        // Written behind the catalog's back: the store has it, the schema does not.
        sqlite.insert(&def("taken")).unwrap();
        let err = catalog.create(def("taken"), Some(table(1))).await.unwrap_err();
        assert_eq!(err.sqlstate(), "42P07", "{err}");
        let ctx = context(&catalog);
        assert!(ctx.sql("SELECT * FROM taken").await.is_err(), "a table the store refused is not queryable");
        assert!(catalog.get("taken").unwrap().is_none());
        // The reservation is gone with the failed call.
        ctx.register_table("taken", table(2)).unwrap();
        assert_eq!(count(&ctx, "taken").await, 2);
    }

    /// One slow commit stalls only its own caller. With the store's
    /// connection held (as a commit stuck on the disk holds it), a DDL and
    /// an epoch commit wait, while a query of another session, on the same
    /// and only worker thread, plans against the catalog's schema and runs
    /// to its end. Store calls made on the worker itself would block that
    /// thread, and the query would only run once the connection was let go.
    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_commit_does_not_stall_other_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(SqliteStore::open(&dir.path().join("catalog.sqlite")).unwrap());
        let catalog = Catalog::open(sqlite.clone()).await.unwrap();
        catalog.create(def("existing"), Some(table(4))).await.unwrap();
        let ctx = context(&catalog);

        let (held_tx, held_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            sqlite.hold_connection(|| {
                held_tx.send(()).unwrap();
                // Bounded only so that a regression fails instead of hanging.
                let _ = release_rx.recv_timeout(Duration::from_secs(60));
            })
        });
        held_rx.recv().unwrap();

        let ddl = tokio::spawn({
            let catalog = catalog.clone();
            async move { catalog.create(def("new"), Some(table(1))).await }
        });
        let epoch = tokio::spawn({
            let store = catalog.store().clone();
            async move {
                let commit = EpochCommit {
                    query: "q".into(),
                    batch_id: 0,
                    checkpoint: serde_json::json!({}),
                    files: Vec::new(),
                    progress: serde_json::json!({"batch_id": 0}),
                    state: Vec::new(),
                };
                store.commit_epoch(commit).await
            }
        });
        // Both commits start, and wait on the held connection.
        tokio::task::yield_now().await;

        assert_eq!(count(&ctx, "existing").await, 4);
        assert!(!ddl.is_finished() && !epoch.is_finished(), "the query ran to its end while both commits waited");

        release_tx.send(()).unwrap();
        ddl.await.unwrap().unwrap();
        epoch.await.unwrap().unwrap();
        holder.join().unwrap();
        assert_eq!(count(&ctx, "new").await, 1);
        assert_eq!(catalog.store().epochs("q", false).await.unwrap().len(), 1);
    }
}
