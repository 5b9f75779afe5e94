//! Operating a running continuous query without losing its progress:
//! `ALTER SINK | MATERIALIZED VIEW name PAUSE | RESUME | SET (...)`.
//!
//! Each stops the runner after its last committed epoch (an epoch in flight
//! is abandoned, as on DROP) and, where the query goes on, starts a new one
//! from the catalog's commit log: source offsets, kept state and the epoch
//! numbering carry over, so nothing is read twice or lost. A pause is
//! recorded in the catalog, so a restart leaves the query paused.

use super::progress::Dormant;
use super::{Status, StreamManager};
use crate::catalog::{QueryStatusRow, RelationDef};
use crate::error::QueryError;
use crate::sql::{CreateContinuousQuery, Options};

/// Options `ALTER ... SET` may change: how often the query commits and how
/// it cuts its files, not what it computes.
pub const ALTERABLE: &[&str] = &[
    "trigger",
    "flush_interval",
    "max_records_per_trigger",
    "target_file_size",
    "target_file_rows",
    "fail_on_data_loss",
    "compact_every",
];

/// What an ALTER did, for the client's notice.
#[derive(Debug, PartialEq, Eq)]
pub enum Altered {
    Done,
    /// Nothing to do: the query was already in the state asked for.
    Already(Status),
}

impl StreamManager {
    /// Stops `def`'s runner after its last commit and keeps it stopped,
    /// across restarts too, until [`Self::resume`].
    pub async fn pause(&self, def: &RelationDef, cq: &CreateContinuousQuery) -> Result<Altered, QueryError> {
        let status = self.status_of(&def.name)?;
        match status {
            Status::Paused => return Ok(Altered::Already(Status::Paused)),
            Status::Finished => {
                return Err(QueryError::WrongState(format!(
                    "'{}' has finished (it processed everything its trigger asked for); there is nothing to pause",
                    def.name
                )));
            }
            _ => {}
        }
        self.stop(&def.name).await?;
        self.save_status(&def.name, Status::Paused).await?;
        let dormant = self.dormant(&def.name, Status::Paused).await?;
        self.start_query(&def.name, cq, Some(def), Some(dormant)).await?;
        Ok(Altered::Done)
    }

    /// Runs a paused or failed query again from its last commit.
    pub async fn resume(&self, def: &RelationDef, cq: &CreateContinuousQuery) -> Result<Altered, QueryError> {
        match self.status_of(&def.name)? {
            Status::Paused | Status::Failed | Status::Stopped => {}
            Status::Finished => {
                return Err(QueryError::WrongState(format!(
                    "'{}' has finished (it processed everything its trigger asked for); drop and create it to run it again",
                    def.name
                )));
            }
            running => return Ok(Altered::Already(running)),
        }
        self.restart(def, cq).await?;
        Ok(Altered::Done)
    }

    /// Changes options that leave the results alone (see [`ALTERABLE`]):
    /// checked as CREATE would check them, recorded as the query's new
    /// definition, then the query restarts from its last commit under them
    /// (a paused query records them and stays paused).
    pub async fn set_options(
        &self,
        def: &RelationDef,
        cq: &CreateContinuousQuery,
        changes: &Options,
    ) -> Result<(), QueryError> {
        if let Some(key) = changes.keys().find(|k| !ALTERABLE.contains(&k.as_str())) {
            return Err(QueryError::UnsupportedWithHint {
                what: format!("ALTER ... SET ({key})"),
                hint: format!(
                    "SET changes {} only; to change what the query computes or how it writes, use CREATE OR REPLACE",
                    ALTERABLE.join(", ")
                ),
            });
        }
        let mut options = cq.options.clone();
        options.extend(changes.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut altered = cq.clone();
        altered.options = options;
        altered.text = cq.render(&altered.options);
        // The same checks as CREATE, before anything changes.
        super::QueryOptions::parse(&altered)?;
        let status = self.status_of(&def.name)?;
        self.stop(&def.name).await?;
        self.catalog.redefine(&def.name, &altered.text, false).await?;
        let mut redefined = def.clone();
        redefined.definition = altered.text.clone();
        let dormant = match status {
            Status::Paused | Status::Finished => Some(self.dormant(&def.name, status).await?),
            _ => None,
        };
        self.start_query(&def.name, &altered, Some(&redefined), dormant).await
    }

    /// Stops whatever runs for `def` and starts it again from its last
    /// commit, recorded as running.
    async fn restart(&self, def: &RelationDef, cq: &CreateContinuousQuery) -> Result<(), QueryError> {
        self.stop(&def.name).await?;
        self.save_status(&def.name, Status::Running).await?;
        self.start_query(&def.name, cq, Some(def), None).await
    }

    fn status_of(&self, name: &str) -> Result<Status, QueryError> {
        let registry = self.registry()?;
        let entry =
            registry.queries.get(name).ok_or_else(|| QueryError::Internal(format!("query '{name}' is not registered")))?;
        Ok(entry.state.lock().map(|s| s.status).unwrap_or(Status::Failed))
    }

    /// How a query that does not run shows: its last committed batch, and
    /// for a view rewritten each epoch, the version readers see.
    pub(super) async fn dormant(&self, name: &str, status: Status) -> Result<Dormant, QueryError> {
        let last = self.store.epochs(name, true).await?.pop();
        Ok(Dormant {
            status,
            last_batch_id: last.as_ref().map(|e| e.batch_id),
            version: last
                .as_ref()
                .and_then(|e| e.progress.get("version"))
                .and_then(|v| v.as_str())
                .map(std::path::PathBuf::from),
        })
    }

    pub(super) async fn save_status(&self, name: &str, status: Status) -> Result<(), QueryError> {
        let row = QueryStatusRow { query: name.to_string(), status: status.as_str().into(), error: None };
        Ok(self.store.set_status(row).await?)
    }
}
