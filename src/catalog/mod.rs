//! The metastore: persisted relation definitions (`store`, `sqlite`) and
//! their live counterparts registered in DataFusion (`tables`).

pub mod diagnose;
pub mod sqlite;
pub mod store;
pub mod tables;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::prelude::SessionContext;

use crate::error::CatalogError;
pub use store::{CatalogStore, EpochCommit, QueryStatusRow, RelationDef, RelationKind, StagedFile};

/// Definitions (durable) plus the data directory that relative locations
/// resolve against. DDL writes the store first and DataFusion second, so a
/// crash in between leaves a definition that is replayed at the next start.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn CatalogStore>,
    data_dir: PathBuf,
}

impl Catalog {
    pub fn new(store: Arc<dyn CatalogStore>, data_dir: &Path) -> Catalog {
        Catalog { store, data_dir: data_dir.to_path_buf() }
    }

    pub fn store(&self) -> &dyn CatalogStore {
        self.store.as_ref()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn list(&self) -> Result<Vec<RelationDef>, CatalogError> {
        self.store.list()
    }

    pub fn get(&self, name: &str) -> Result<Option<RelationDef>, CatalogError> {
        Ok(self.store.list()?.into_iter().find(|d| d.name == name))
    }

    /// Registers every persisted relation in `ctx`. A table whose files have
    /// gone is logged and skipped, not fatal: its definition stays, so SHOW
    /// TABLES still lists it and DROP TABLE can remove it.
    pub async fn restore(&self, ctx: &SessionContext) -> Result<usize, CatalogError> {
        let defs = self.store.list()?;
        let mut restored = 0;
        for def in defs.iter().filter(|d| d.kind == RelationKind::ExternalTable) {
            match tables::replay(ctx, def).await {
                Ok(()) => restored += 1,
                Err(e) => tracing::warn!(table = %def.name, "table not restored: {}", e.message()),
            }
        }
        Ok(restored)
    }
}
