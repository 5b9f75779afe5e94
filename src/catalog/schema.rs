//! The `public` schema as DataFusion sees it: the store's relations in
//! memory, with the live table of each one that has one. Planning reads it
//! without touching the store; only [`super::Catalog`]'s create and drop
//! change it, and only after the store has committed, so it never shows a
//! relation the store does not have.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DFResult};

use super::store::RelationDef;
use crate::error::CatalogError;

#[derive(Debug, Default)]
pub struct CatalogSchema {
    /// Guards the maps only; never held across an await.
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    /// What the store holds, in creation order (restore replays in it).
    defs: Vec<RelationDef>,
    /// What queries can read: persisted tables and views, and the live-only
    /// entries callers register through DataFusion (streams).
    tables: HashMap<String, Arc<dyn TableProvider>>,
    /// Names being created: held from before the store is written until the
    /// relation is live, so no one else takes the name in between.
    reserved: HashSet<String>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("defs", &self.defs.len()).field("tables", &self.tables.len()).finish()
    }
}

impl State {
    fn taken(&self, name: &str) -> bool {
        self.reserved.contains(name) || self.tables.contains_key(name) || self.defs.iter().any(|d| d.name == name)
    }
}

/// A name held for a relation being created; released when dropped, so a
/// creation abandoned half-way (an error, a cancelled statement) frees it.
pub(super) struct Reservation {
    schema: Arc<CatalogSchema>,
    name: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Ok(mut state) = self.schema.state.write() {
            state.reserved.remove(&self.name);
        }
    }
}

impl CatalogSchema {
    pub(super) fn new(defs: Vec<RelationDef>) -> CatalogSchema {
        CatalogSchema { state: RwLock::new(State { defs, ..State::default() }) }
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, State>, CatalogError> {
        self.state.read().map_err(|_| CatalogError::Internal("catalog schema lock poisoned".into()))
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, State>, CatalogError> {
        self.state.write().map_err(|_| CatalogError::Internal("catalog schema lock poisoned".into()))
    }

    pub(super) fn defs(&self) -> Result<Vec<RelationDef>, CatalogError> {
        Ok(self.read()?.defs.clone())
    }

    pub(super) fn def(&self, name: &str) -> Result<Option<RelationDef>, CatalogError> {
        Ok(self.read()?.defs.iter().find(|d| d.name == name).cloned())
    }

    /// Holds `name` for a new relation; `DuplicateTable` when a relation,
    /// a live table or another creation has it.
    pub(super) fn reserve(self: &Arc<Self>, name: &str) -> Result<Reservation, CatalogError> {
        let mut state = self.write()?;
        if state.taken(name) {
            return Err(CatalogError::DuplicateTable(name.to_string()));
        }
        state.reserved.insert(name.to_string());
        Ok(Reservation { schema: self.clone(), name: name.to_string() })
    }

    /// Shows a relation the store has just committed (and its table).
    pub(super) fn add(
        &self,
        reservation: Reservation,
        def: RelationDef,
        table: Option<Arc<dyn TableProvider>>,
    ) -> Result<(), CatalogError> {
        let mut state = self.write()?;
        if let Some(table) = table {
            state.tables.insert(def.name.clone(), table);
        }
        state.defs.push(def);
        // The name is taken by the relation now; the reservation can go.
        drop(state);
        drop(reservation);
        Ok(())
    }

    /// Forgets a relation the store has just removed, and its table.
    pub(super) fn remove(&self, name: &str) -> Result<(), CatalogError> {
        let mut state = self.write()?;
        state.defs.retain(|d| d.name != name);
        state.tables.remove(name);
        Ok(())
    }

    /// Makes the table of a persisted relation queryable (at restore), or
    /// swaps it for a new one (a view restarted after ALTER ... SET, whose
    /// runner publishes versions through a new handle).
    pub(super) fn attach(&self, name: &str, table: Arc<dyn TableProvider>) -> Result<(), CatalogError> {
        let mut state = self.write()?;
        if !state.defs.iter().any(|d| d.name == name) {
            return Err(CatalogError::UnknownTable(name.to_string()));
        }
        state.tables.insert(name.to_string(), table);
        Ok(())
    }

    /// Records a relation's new definition, which the store has just saved.
    pub(super) fn redefine(&self, name: &str, definition: &str) -> Result<(), CatalogError> {
        let mut state = self.write()?;
        let def =
            state.defs.iter_mut().find(|d| d.name == name).ok_or_else(|| CatalogError::UnknownTable(name.to_string()))?;
        def.definition = definition.to_string();
        Ok(())
    }
}

fn df_error(e: CatalogError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// DataFusion's view. Registering through DataFusion (`ctx.register_table`)
/// makes a table live without persisting anything: that is for relations
/// whose definition the caller keeps elsewhere (a stream's table, which
/// cannot be scanned). Persisted relations come and go through
/// [`super::Catalog`].
#[async_trait]
impl SchemaProvider for CatalogSchema {
    fn table_names(&self) -> Vec<String> {
        self.read().map(|s| s.tables.keys().cloned().collect()).unwrap_or_default()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.read().map_err(df_error)?.tables.get(name).cloned())
    }

    fn register_table(&self, name: String, table: Arc<dyn TableProvider>) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let mut state = self.write().map_err(df_error)?;
        if state.tables.contains_key(&name) || state.reserved.contains(&name) {
            return Err(df_error(CatalogError::DuplicateTable(name)));
        }
        Ok(state.tables.insert(name, table))
    }

    fn deregister_table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.write().map_err(df_error)?.tables.remove(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.read().map(|s| s.tables.contains_key(name)).unwrap_or(false)
    }
}
