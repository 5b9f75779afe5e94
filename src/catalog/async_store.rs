//! The metastore as async code reaches it: each call of the blocking
//! [`CatalogStore`] runs on tokio's blocking pool, so a slow commit (a full
//! fsync, a store waiting on a lock) holds up the one task that asked for
//! it, never the workers every session's queries run on. Implementations
//! stay plain sync code (SQLite today, a PostgreSQL client later).

use std::sync::Arc;

use super::store::{CatalogStore, EpochCommit, QueryStatusRow, RelationDef};
use crate::error::CatalogError;

#[derive(Debug, Clone)]
pub struct AsyncStore {
    store: Arc<dyn CatalogStore>,
}

impl AsyncStore {
    pub fn new(store: Arc<dyn CatalogStore>) -> AsyncStore {
        AsyncStore { store }
    }

    /// The store itself, for code that already runs off the async workers
    /// (a system table's rows are computed on the blocking pool).
    pub fn blocking(&self) -> &Arc<dyn CatalogStore> {
        &self.store
    }

    /// Runs one store call on the blocking pool. A panic inside it is a bug
    /// of ours and comes back as an internal error, not as a panic here.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn CatalogStore) -> Result<T, CatalogError> + Send + 'static,
    ) -> Result<T, CatalogError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || call(store.as_ref()))
            .await
            .map_err(|e| CatalogError::Internal(format!("catalog call did not complete: {e}")))?
    }

    pub async fn list(&self) -> Result<Vec<RelationDef>, CatalogError> {
        self.run(|s| s.list()).await
    }

    pub async fn insert(&self, def: RelationDef) -> Result<(), CatalogError> {
        self.run(move |s| s.insert(&def)).await
    }

    pub async fn remove(&self, name: &str) -> Result<bool, CatalogError> {
        let name = name.to_string();
        self.run(move |s| s.remove(&name)).await
    }

    pub async fn commit_epoch(&self, commit: EpochCommit) -> Result<(), CatalogError> {
        self.run(move |s| s.commit_epoch(&commit)).await
    }

    pub async fn epochs(&self, query: &str, last_only: bool) -> Result<Vec<EpochCommit>, CatalogError> {
        let query = query.to_string();
        self.run(move |s| s.epochs(&query, last_only)).await
    }

    pub async fn note_table_version(&self, query: &str, batch_id: i64, version: i64) -> Result<(), CatalogError> {
        let query = query.to_string();
        self.run(move |s| s.note_table_version(&query, batch_id, version)).await
    }

    pub async fn progress(&self, limit_per_query: usize) -> Result<Vec<(String, serde_json::Value)>, CatalogError> {
        self.run(move |s| s.progress(limit_per_query)).await
    }

    pub async fn prune_epochs(&self, query: &str, keep: i64) -> Result<(), CatalogError> {
        let query = query.to_string();
        self.run(move |s| s.prune_epochs(&query, keep)).await
    }

    pub async fn set_status(&self, row: QueryStatusRow) -> Result<(), CatalogError> {
        self.run(move |s| s.set_status(&row)).await
    }

    pub async fn statuses(&self) -> Result<Vec<QueryStatusRow>, CatalogError> {
        self.run(|s| s.statuses()).await
    }

    pub async fn warehouse_roots(&self) -> Result<Vec<String>, CatalogError> {
        self.run(|s| s.warehouse_roots()).await
    }

    pub async fn add_warehouse_root(&self, root: &str) -> Result<(), CatalogError> {
        let root = root.to_string();
        self.run(move |s| s.add_warehouse_root(&root)).await
    }
}
