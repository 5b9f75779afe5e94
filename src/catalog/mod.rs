//! The metastore: persisted relation definitions (`store`, `sqlite`) and
//! their live counterparts registered in DataFusion (`tables`); which of
//! them a plan reads (`scans`), and the file behind a failed read
//! (`diagnose`).

pub mod diagnose;
pub mod scans;
pub mod sqlite;
pub mod store;
pub mod tables;

use std::sync::Arc;

use datafusion::prelude::SessionContext;

use crate::error::CatalogError;

// The names and version a client sees, as a PostgreSQL catalog shows them;
// here, below every layer that reports them.

/// The database name clients connect to and `current_database()` returns.
pub const DATABASE: &str = "weir";
/// The one schema user tables live in.
pub const SCHEMA: &str = "public";
/// What `version()` and `server_version` report: PostgreSQL-shaped so that
/// drivers (SQLAlchemy, JDBC) parse it, and honest about what answers.
pub const PG_VERSION: &str = "16.6";

pub use store::{CatalogStore, EpochCommit, QueryStatusRow, RelationDef, RelationKind, StagedFile};

/// The durable definitions. DDL writes the store first and DataFusion
/// second, so a crash in between leaves a definition that is replayed at
/// the next start. (Relative locations resolve through `storage::Sandbox`.)
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn CatalogStore>,
}

impl Catalog {
    pub fn new(store: Arc<dyn CatalogStore>) -> Catalog {
        Catalog { store }
    }

    pub fn store(&self) -> &dyn CatalogStore {
        self.store.as_ref()
    }

    pub fn list(&self) -> Result<Vec<RelationDef>, CatalogError> {
        self.store.list()
    }

    pub fn get(&self, name: &str) -> Result<Option<RelationDef>, CatalogError> {
        Ok(self.store.list()?.into_iter().find(|d| d.name == name))
    }

    /// Creates and records the external table `name` over `dir`, which weir
    /// writes for the user (see `tables::create_owned`). Recording comes
    /// last; a table the store refused does not linger in `ctx`.
    pub async fn create_owned_table(
        &self,
        ctx: &SessionContext,
        name: &str,
        dir: &std::path::Path,
        schema: &datafusion::arrow::datatypes::Schema,
    ) -> Result<(), crate::error::QueryError> {
        let def = tables::create_owned(ctx, name, dir, schema).await?;
        if let Err(e) = self.store.insert(&def) {
            let _ = ctx.deregister_table(name);
            return Err(e.into());
        }
        Ok(())
    }

    /// Registers every persisted relation in `ctx`. A table whose files have
    /// gone, or whose location the sandbox no longer allows, is logged and
    /// skipped, not fatal: its definition stays, so SHOW TABLES still lists
    /// it and DROP TABLE can remove it.
    pub async fn restore(&self, ctx: &SessionContext, sandbox: &crate::storage::Sandbox) -> Result<usize, CatalogError> {
        let defs = self.store.list()?;
        let mut restored = 0;
        for def in defs.iter().filter(|d| d.kind == RelationKind::ExternalTable) {
            match tables::replay(ctx, sandbox, def).await {
                Ok(()) => restored += 1,
                Err(e) => tracing::warn!(table = %def.name, "table not restored: {}", e.message()),
            }
        }
        Ok(restored)
    }
}
