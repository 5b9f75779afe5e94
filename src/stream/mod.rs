//! The continuous-query runtime: declared streams, running queries, and
//! their lifecycle (start, restore after a restart, stop on DROP).
//!
//! * `lifecycle`: the one owner of a stream's and a query's life: create,
//!   persist, start, drop and restore, with the directories the catalog
//!   recorded.
//! * `operate`: PAUSE, RESUME and SET on a running query, keeping its
//!   progress.
//! * `replace`: CREATE OR REPLACE of a continuous query: offsets kept for
//!   the same streams, state kept when its shape is unchanged.
//! * `explain`: EXPLAIN of a continuous query: operator, state, watermarks,
//!   the plan per chunk.
//! * `definition`: CREATE STREAM / SINK / MATERIALIZED VIEW checked into typed values.
//! * `planning`: a query planned once by DataFusion over chunk tables (the
//!   current micro-batch of each stream), its shape checked.
//! * `spec`: a query as `prepare` checked it, with the plan the runner runs.
//! * `ready_query`: that plan instantiated for a run: inputs, watermarks, operator.
//! * `operator`: the trait every kind of query runs behind (chunk in, epoch
//!   end, snapshot, restore); `stateless` is the simplest implementation.
//! * `runner`: a query's attempts: recovery, then epoch after epoch.
//! * `epoch`: one epoch: reading and processing chunks into its sinks.
//! * `commit`: the commit protocol (prepare, one catalog transaction, publish).
//! * `inputs`: the one or two sources a query reads, polled in turn.
//! * `watermark`: event-time watermarks per stream (and per partition).
//! * `window`: TUMBLE, HOP and SESSION as table functions over a stream.
//! * `aggregate`: incremental aggregation, its partial state kept across
//!   epochs (`aggregate::session_window` merges SESSION windows in it).
//! * `join`: stream-stream joins with a time bound (`join::state`: buffers
//!   and operator).
//! * `aligned`: queries that combine windows, evaluated window by window
//!   (`aligned::state`: kept rows and operator).
//! * `snapshot`: kept state as bytes in an epoch's commit.
//! * `rejects`: malformed records and late rows (dead letters, `<query>_late`).
//! * `versioned`: a view rewritten each epoch (update, complete) read one
//!   committed version at a time.
//! * `progress`: live status and `weir.query_progress`.
//! * `queries_table`: `weir.queries`, every continuous query and its status.
//! * `system_table`: read-only tables computed when scanned (both of the above).

pub mod aggregate;
pub mod aligned;
mod commit;
pub mod definition;
mod epoch;
pub mod explain;
pub mod inputs;
pub mod join;
pub mod lifecycle;
pub mod operate;
mod operator;
pub mod planning;
pub mod progress;
pub mod queries_table;
pub mod ready_query;
pub mod rejects;
pub mod replace;
pub mod runner;
pub mod snapshot;
pub mod spec;
mod stateless;
pub mod system_table;
pub mod versioned;
pub mod watermark;
pub mod window;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::{AsyncStore, Catalog, RelationKind};
use crate::error::QueryError;
use crate::sink::Target;
use crate::storage::{PublishGate, Sandbox, Warehouse};
pub use aggregate::OutputMode;
pub use definition::{QueryOptions, StreamDef, Trigger, ViewFormat, parse_size};
use planning::{ChunkTable, check_shape, plan_query, query_context, scanned_tables};
pub use progress::{QueryState, Status};
pub use spec::QuerySpec;

/// One defined continuous query, running or not.
pub struct QueryEntry {
    pub kind: RelationKind,
    pub spec: QuerySpec,
    /// The table the results land in (the view's own name for a view).
    pub target: String,
    pub state: progress::SharedState,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

#[derive(Default)]
pub(crate) struct Registry {
    streams: BTreeMap<String, Arc<StreamDef>>,
    queries: BTreeMap<String, QueryEntry>,
    /// The versions of each rewritten view's directory: one per directory,
    /// shared by every plan of the view, so that a query re-planned by
    /// ALTER or CREATE OR REPLACE sees which versions readers still hold.
    view_versions: BTreeMap<std::path::PathBuf, Arc<crate::sink::Versions>>,
}

/// Owns every stream definition and continuous query of the server, and
/// their life from CREATE to DROP (see `lifecycle`).
pub struct StreamManager {
    shared: SessionContext,
    /// Where definitions are recorded and read back.
    catalog: Catalog,
    store: AsyncStore,
    /// What a stream may read and connect to.
    sandbox: Sandbox,
    /// Runners publish epochs under it, so listings see whole epochs.
    gate: PublishGate,
    /// Builds and deletes every path under the warehouse (old view
    /// versions included, through `sink::Versions`).
    warehouse: Warehouse,
    /// Guards the maps only; never held across an await. Shared with the
    /// `weir.queries` table.
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for StreamManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamManager")
    }
}

/// A summary for SHOW SINKS / SHOW MATERIALIZED VIEWS.
#[derive(Debug, Clone)]
pub struct QueryInfo {
    pub name: String,
    pub kind: RelationKind,
    pub stream: String,
    pub target: String,
    pub trigger: String,
    pub state: QueryState,
}

impl StreamManager {
    pub fn new(
        shared: SessionContext,
        catalog: Catalog,
        sandbox: Sandbox,
        gate: PublishGate,
        warehouse: Warehouse,
    ) -> StreamManager {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let table = queries_table::queries_table(registry.clone());
        if let Some(schema) = shared.catalog(crate::catalog::DATABASE).and_then(|c| c.schema("weir"))
            && let Err(e) = schema.register_table("queries".into(), Arc::new(table))
        {
            tracing::warn!("weir.queries not registered: {e}");
        }
        StreamManager { shared, store: catalog.store().clone(), catalog, sandbox, gate, warehouse, registry }
    }

    /// The one [`crate::sink::Versions`] of the rewritten view in `dir`.
    fn versions_of(&self, dir: &std::path::Path) -> Result<Arc<crate::sink::Versions>, QueryError> {
        let mut registry = self.registry()?;
        let versions = registry
            .view_versions
            .entry(dir.to_path_buf())
            .or_insert_with(|| crate::sink::Versions::new(dir, &self.warehouse));
        Ok(versions.clone())
    }

    fn registry(&self) -> Result<MutexGuard<'_, Registry>, QueryError> {
        self.registry.lock().map_err(|_| QueryError::Internal("stream registry poisoned".into()))
    }

    /// Makes a stream known to continuous queries. Its table (described,
    /// never scanned) is the catalog's, made live by `lifecycle`.
    fn register_stream(&self, def: StreamDef) -> Result<(), QueryError> {
        self.registry()?.streams.insert(def.name.clone(), Arc::new(def));
        Ok(())
    }

    pub fn streams(&self) -> Vec<Arc<StreamDef>> {
        self.registry().map(|r| r.streams.values().cloned().collect()).unwrap_or_default()
    }

    /// Forgets a stream; refused while a continuous query reads it.
    fn unregister_stream(&self, name: &str) -> Result<(), QueryError> {
        let mut registry = self.registry()?;
        if let Some(reader) = registry.queries.iter().find(|(_, q)| q.spec.streams.iter().any(|s| s.name == name)) {
            return Err(QueryError::DependentObjects(format!(
                "cannot drop stream '{name}': {} '{}' reads it; drop that first",
                kind_name(reader.1.kind),
                reader.0
            )));
        }
        registry.streams.remove(name);
        Ok(())
    }

    /// The continuous query writing into `table`, if any.
    pub fn writer_of(&self, table: &str) -> Option<String> {
        let registry = self.registry().ok()?;
        registry.queries.iter().find(|(_, q)| q.target == table).map(|(n, _)| n.clone())
    }

    /// Plans and checks a continuous query writing into `target`, once:
    /// the plan it returns is what the runner runs. A view's target gets
    /// its version pointer here when the query rewrites it each epoch.
    pub async fn prepare(
        &self,
        name: &str,
        query: &datafusion::sql::sqlparser::ast::Query,
        options: QueryOptions,
        mut target: Target,
        dead_letter_dir: impl Fn(&StreamDef) -> Option<crate::storage::TableDir>,
        late_dir: Option<crate::storage::TableDir>,
    ) -> Result<QuerySpec, QueryError> {
        let streams = self.streams();
        let mut slots: HashMap<String, (Arc<ChunkTable>, spec::Slot)> =
            streams.iter().map(|s| (s.name.clone(), ChunkTable::new(s.spec.schema.clone()))).collect();
        let chunk_tables = slots.iter().map(|(name, (table, _))| (name.clone(), table.clone())).collect();
        let ctx: SessionContext = query_context(&self.shared, chunk_tables)?;
        // A view over a stream reads the stream: its query goes in its place.
        let query = crate::views::expand(query, &self.catalog)?;
        let plan = plan_query(&ctx, &query).await?;
        let optimized = ctx.state().optimize(&plan)?;
        let read: Vec<Arc<StreamDef>> = {
            let scanned = scanned_tables(&plan);
            let mut read: Vec<Arc<StreamDef>> = streams.iter().filter(|s| scanned.contains(&s.name)).cloned().collect();
            read.dedup_by(|a, b| a.name == b.name);
            read
        };
        let names: Vec<String> = read.iter().map(|s| s.name.clone()).collect();
        // Queries that combine windows run window by window (aligned.rs).
        let mut shape = check_shape(&plan)?;
        let aligned = match aligned::wanted(&optimized, &names, shape.aggregations) {
            true => Some(aligned::analyze(&optimized, &read)?),
            false => None,
        };
        // One stream, or two joined with a time bound (left side first).
        let (inputs, join) = match read.as_slice() {
            [one] => (vec![one.clone()], None),
            [] => {
                return Err(QueryError::UnsupportedWithHint {
                    what: format!("a continuous query ('{name}') that reads no stream"),
                    hint: "a continuous query reads one stream, or two (joined with a time bound, or combined window by window); to copy tables use INSERT INTO ... SELECT".into(),
                });
            }
            [a, b] if aligned.is_some() => (vec![a.clone(), b.clone()], None),
            [_, _] => {
                let shape = join::analyze(&optimized, &read)?;
                let by_name = |n: &str| read.iter().find(|s| s.name == n).cloned();
                match (by_name(&shape.streams[0]), by_name(&shape.streams[1])) {
                    (Some(left), Some(right)) => (vec![left, right], Some(shape)),
                    _ => return Err(QueryError::Unsupported("a join of unknown streams".into())),
                }
            }
            _ => {
                return Err(QueryError::UnsupportedWithHint {
                    what: format!("a continuous query ('{name}') over more than two streams"),
                    hint: "a continuous query reads one stream, or two (joined with a time bound, or combined window by window)".into(),
                });
            }
        };
        let stream = inputs[0].clone();
        if let Some(aligned) = &aligned {
            // Each window's rows are written once, when it closes.
            if let Some(mode) = options.output_mode.filter(|m| *m != OutputMode::Append) {
                return Err(QueryError::UnsupportedWithHint {
                    what: format!("output_mode '{}' for a query that combines windows", mode.name()),
                    hint: "such a query is evaluated once per window, when the watermark passes its end: its rows are appended (output_mode 'append')".into(),
                });
            }
            if options.late_rows_table && inputs.len() > 1 {
                return Err(QueryError::InvalidOptionValue {
                    option: "late_rows".into(),
                    reason:
                        "a query over two streams has two kinds of late rows; only counting them (the default) is supported"
                            .into(),
                });
            }
            shape.aggregates = false;
            shape.window_size = Some(aligned.size);
        }
        if join.is_some() {
            if options.late_rows_table {
                return Err(QueryError::InvalidOptionValue {
                    option: "late_rows".into(),
                    reason: "a stream-stream join has two kinds of late rows; only counting them (the default) is supported"
                        .into(),
                });
            }
            if shape.aggregates && join.as_ref().is_some_and(|j| j.kind == join::JoinKind::LeftOuter) {
                return Err(QueryError::Unsupported("an aggregation over a LEFT JOIN of two streams".into()));
            }
            // A buffered row can still meet a partner after both watermarks
            // have passed its window: append would write the window twice.
            if shape.aggregates && options.output_mode.unwrap_or(OutputMode::Append) == OutputMode::Append {
                return Err(QueryError::UnsupportedWithHint {
                    what: "output_mode 'append' for an aggregation over a join of two streams".into(),
                    hint: "use WITH (output_mode = 'update') or 'complete' (a new version of the view each epoch)".into(),
                });
            }
        }
        if options.late_rows_table && stream.watermark.is_none() {
            return Err(QueryError::InvalidOptionValue {
                option: "late_rows".into(),
                reason: format!("stream '{}' declares no WATERMARK, so no row is ever late", stream.name),
            });
        }
        if options.compact_every.is_some() && !matches!(target, Target::Delta { .. } | Target::DeltaView { .. }) {
            return Err(QueryError::InvalidOptionValue {
                option: "compact_every".into(),
                reason: "compaction is for Delta targets (a table STORED AS DELTA, or a view WITH (format = 'delta'))"
                    .into(),
            });
        }
        let rewrites_allowed = !matches!(target, Target::Table { .. } | Target::ObjectTable { .. } | Target::Delta { .. });
        let output_mode = match (shape.aggregates, options.output_mode) {
            (false, None | Some(OutputMode::Append)) => OutputMode::Append,
            (false, Some(mode)) => {
                return Err(QueryError::Unsupported(format!(
                    "output_mode '{}' for a query without aggregation (it appends every row it produces)",
                    mode.name()
                )));
            }
            (true, Some(mode)) => mode,
            (true, None) => OutputMode::Append,
        };
        if shape.session_gap.is_some() && matches!(target, Target::Kafka(_)) && output_mode != OutputMode::Append {
            // Merging sessions changes a group's key; a topic keeps the old one.
            return Err(QueryError::UnsupportedWithHint {
                what: format!("a SESSION window in a Kafka sink with output_mode '{}'", output_mode.name()),
                hint: "sessions that merge change their window bounds, which are part of the record key, and the old record would stay in the topic: use output_mode 'append' (each session written once, when it closes)".into(),
            });
        }
        if shape.aggregates && output_mode != OutputMode::Append && !rewrites_allowed {
            return Err(QueryError::Unsupported(format!(
                "output_mode '{}' in a sink into a table: an aggregation that rewrites its results needs a CREATE MATERIALIZED VIEW (a table weir owns and versions)",
                output_mode.name()
            )));
        }
        let (per_chunk, unmatched_plan) = match &join {
            Some(shape) if shape.kind == join::JoinKind::LeftOuter => {
                let (per_chunk, unmatched) = join::left_outer_plans(&optimized, &shape.streams)?;
                (per_chunk, Some(unmatched))
            }
            _ => (optimized, None),
        };
        let tables = inputs.iter().filter_map(|s| slots.remove(&s.name)).collect();
        let query_plan = Arc::new(spec::QueryPlan {
            ctx,
            plan: per_chunk,
            unmatched_plan,
            tables,
            streams: inputs.clone(),
            output_mode,
            aggregates: shape.aggregates,
            window_size: shape.window_size,
            join,
            aligned,
        });
        // What the runner builds from the plan is built once now, so what
        // cannot run (e.g. append mode without a watermark or a window)
        // fails here.
        ready_query::Instance::new(&query_plan).await?;
        let output: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let target_schema = match &target {
            Target::Table { schema, .. } | Target::ObjectTable { schema, .. } | Target::Delta { schema, .. } => {
                check_compatible(&output, schema)?;
                schema.clone()
            }
            Target::View { .. } | Target::DeltaView { .. } | Target::Kafka(_) => {
                let mut seen = std::collections::HashSet::new();
                for f in output.fields() {
                    if !seen.insert(f.name().clone()) {
                        return Err(QueryError::Syntax(format!(
                            "column '{}' appears twice in the view's query; alias one of them",
                            f.name()
                        )));
                    }
                }
                Arc::new(Schema::new(
                    output.fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect::<Vec<_>>(),
                ))
            }
        };
        if let Target::View { dir, versions } = &mut target
            && shape.aggregates
            && output_mode != OutputMode::Append
        {
            let crate::storage::TableDir::Local(dir) = dir else {
                return Err(QueryError::UnsupportedWithHint {
                    what: format!("a Parquet view in a bucket with output_mode '{}'", output_mode.name()),
                    hint: "a rewritten Parquet view swaps directories by rename, which object storage lacks: use WITH (format = 'delta'), the default in a bucket warehouse".into(),
                });
            };
            *versions = Some(self.versions_of(dir)?);
        }
        if let Target::DeltaView { overwrite, .. } = &mut target {
            *overwrite = shape.aggregates && output_mode != OutputMode::Append;
        }
        Ok(QuerySpec {
            name: name.to_string(),
            dead_letter_dirs: inputs.iter().map(|s| dead_letter_dir(s)).collect(),
            late_dir: if options.late_rows_table { late_dir } else { None },
            streams: inputs,
            options,
            target,
            target_schema,
            plan: query_plan,
        })
    }

    /// Starts (or, for a finished or paused query, only registers) a
    /// continuous query.
    pub fn start(
        &self,
        kind: RelationKind,
        target: String,
        spec: QuerySpec,
        dormant: Option<progress::Dormant>,
    ) -> Result<(), QueryError> {
        let state = progress::new_state();
        let (stop, stop_rx) = watch::channel(false);
        let task = if let Some(dormant) = dormant {
            if let Ok(mut s) = state.lock() {
                s.status = dormant.status;
                s.last_batch_id = dormant.last_batch_id;
            }
            // No runner recovers the view's current version: point readers
            // at the committed one here.
            if let (crate::sink::Target::View { versions: Some(versions), .. }, Some(version)) =
                (&spec.target, dormant.version)
                && let Err(e) = versions.publish(Some(version))
            {
                tracing::warn!(query = %spec.name, "old view versions not removed: {e}");
            }
            None
        } else {
            let files = runner::Files { gate: self.gate.clone() };
            let runner = runner::run(spec.clone(), self.store.clone(), files, state.clone(), stop_rx);
            Some(tokio::spawn(runner))
        };
        let name = spec.name.clone();
        let entry = QueryEntry { kind, spec, target, state, stop, task };
        self.registry()?.queries.insert(name, entry);
        Ok(())
    }

    /// Stops a query and waits for its runner: an epoch in flight is
    /// abandoned (its staged files deleted), committed epochs stay.
    pub async fn stop(&self, name: &str) -> Result<Option<QueryEntry>, QueryError> {
        let entry = self.registry()?.queries.remove(name);
        let Some(mut entry) = entry else { return Ok(None) };
        let _ = entry.stop.send(true);
        if let Some(task) = entry.task.take()
            && tokio::time::timeout(Duration::from_secs(30), task).await.is_err()
        {
            tracing::warn!(query = name, "runner did not stop within 30s");
        }
        Ok(Some(entry))
    }

    /// Stops every runner (server shutdown).
    pub async fn shutdown(&self) {
        let names: Vec<String> = self.registry().map(|r| r.queries.keys().cloned().collect()).unwrap_or_default();
        for name in names {
            let _ = self.stop(&name).await;
        }
    }

    pub fn queries(&self) -> Vec<QueryInfo> {
        match self.registry() {
            Ok(registry) => infos(&registry),
            Err(_) => Vec::new(),
        }
    }

    pub fn store(&self) -> &AsyncStore {
        &self.store
    }
}

pub(crate) fn infos(registry: &Registry) -> Vec<QueryInfo> {
    registry
        .queries
        .iter()
        .map(|(name, q)| QueryInfo {
            name: name.clone(),
            kind: q.kind,
            stream: q.spec.streams.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
            target: q.target.clone(),
            trigger: trigger_name(q.spec.options.trigger),
            state: q.state.lock().map(|s| s.clone()).unwrap_or(QueryState {
                status: Status::Failed,
                error: Some("state lock poisoned".into()),
                last_batch_id: None,
            }),
        })
        .collect()
}

fn kind_name(kind: RelationKind) -> &'static str {
    match kind {
        RelationKind::MaterializedView => "materialized view",
        RelationKind::View => "view",
        RelationKind::Sink => "sink",
        RelationKind::Stream => "stream",
        RelationKind::ExternalTable => "table",
    }
}

pub fn trigger_name(trigger: Trigger) -> String {
    match trigger {
        Trigger::Continuous => "continuous".into(),
        Trigger::Interval(d) => format!("{} seconds", d.as_secs_f64()),
        Trigger::Once => "once".into(),
        Trigger::AvailableNow => "available_now".into(),
    }
}

/// A sink's output must fit its table: same number of columns, matched by
/// position, each assignable to the table's type as PostgreSQL's INSERT
/// would allow (`types::assignable`), so a mismatch is refused here rather
/// than failing every epoch at run time.
fn check_compatible(output: &Schema, target: &Schema) -> Result<(), QueryError> {
    if output.fields().len() != target.fields().len() {
        return Err(QueryError::DatatypeMismatch(format!(
            "the query returns {} columns but the table has {} ({})",
            output.fields().len(),
            target.fields().len(),
            target.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    for (o, t) in output.fields().iter().zip(target.fields()) {
        if !crate::types::assignable(o.data_type(), t.data_type()) {
            return Err(QueryError::DatatypeMismatch(format!(
                "the table's column '{}' is {} but the query's column in that position, '{}', is {} \
                 (columns match by position: reorder the SELECT list, or CAST the value)",
                t.name(),
                crate::types::sql_type_name(t.data_type()),
                o.name(),
                crate::types::sql_type_name(o.data_type())
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runner that panicked while holding the registry is a bug of ours:
    /// the client sees an internal error, not "not supported".
    #[tokio::test]
    async fn a_poisoned_registry_is_an_internal_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::catalog::sqlite::SqliteStore::open(&dir.path().join("catalog.sqlite")).unwrap());
        let warehouse = Warehouse::open(&dir.path().join("warehouse")).unwrap();
        let sandbox = Sandbox::new(dir.path(), warehouse.root(), &[], &[]).unwrap();
        let catalog = Catalog::open(store).await.unwrap();
        let manager = StreamManager::new(SessionContext::new(), catalog, sandbox, PublishGate::default(), warehouse);
        let registry = manager.registry.clone();
        let _ = std::thread::spawn(move || {
            let _held = registry.lock();
            panic!("deliberately poisoning the registry");
        })
        .join();
        let err = manager.unregister_stream("events").unwrap_err();
        assert_eq!(err.sqlstate(), "XX000", "{err}");
    }
}
