//! The life of streams and continuous queries, owned in one place: create
//! (check against the sandbox, plan, persist, start), drop (stop, forget,
//! delete what weir owned) and restore at start-up. Statement handlers
//! check their arguments and make one call here; the server calls
//! [`StreamManager::restore`] once, before it accepts clients.
//!
//! A directory comes from the catalog whenever the catalog recorded one (a
//! view's table, `<stream>_errors`, `<query>_late`) and from the warehouse
//! only for an object that is new, so a restart with another `--warehouse`
//! finds the data where it was written, and DROP deletes that directory.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;

use super::definition::{Connector, OnError};
use super::progress::Dormant;
use super::{QueryOptions, Status, StreamDef, StreamManager, runner};
use crate::catalog::{QueryStatusRow, RelationDef, RelationKind, tables};
use crate::error::{CatalogError, QueryError};
use crate::sink::Target;
use crate::sql::{CreateContinuousQuery, CreateStream, Parser, SinkTarget, Statement};
use crate::storage::TableDir;

impl StreamManager {
    /// `CREATE STREAM`: checks the definition, records it, and makes the
    /// stream known. With `on_error = 'dead_letter'` its `<stream>_errors`
    /// table is created first.
    pub async fn create_stream(&self, name: &str, ddl: &CreateStream) -> Result<(), QueryError> {
        let def = self.define_stream(name, ddl, true).await?;
        if def.on_error == OnError::DeadLetter {
            self.create_owned_table(&format!("{name}_errors"), &runner::dead_letter_schema()).await?;
        }
        let record = RelationDef {
            name: name.to_string(),
            kind: RelationKind::Stream,
            definition: ddl.text.clone(),
            location: stream_location(&def),
            format: def.spec.options.get("format").cloned().unwrap_or_default().to_uppercase(),
            partition_columns: Vec::new(),
        };
        self.catalog.create(record, Some(stream_table(&def))).await?;
        self.register_stream(def)
    }

    /// `CREATE SINK` / `CREATE MATERIALIZED VIEW`: plans the query, records
    /// it and starts it.
    pub async fn create_query(&self, name: &str, cq: &CreateContinuousQuery) -> Result<(), QueryError> {
        self.start_query(name, cq, None, None).await
    }

    /// `DROP STREAM`: refused while a continuous query reads the stream.
    pub async fn drop_stream(&self, name: &str) -> Result<(), QueryError> {
        self.unregister_stream(name)?;
        // Its definition and its table go in one call.
        self.catalog.drop(name).await?;
        Ok(())
    }

    /// `DROP SINK` / `DROP MATERIALIZED VIEW`: stops the query (an epoch in
    /// flight is abandoned, committed files stay) and forgets it. A view's
    /// table is its own and goes with it, from the directory the catalog
    /// recorded; a sink's target table is the user's and stays.
    pub async fn drop_query(&self, def: &RelationDef) -> Result<(), QueryError> {
        self.stop(&def.name).await?;
        // The view's table goes with its definition.
        self.catalog.drop(&def.name).await?;
        if def.kind == RelationKind::MaterializedView {
            let place = TableDir::from_location(&def.location)?;
            if let TableDir::Local(dir) = &place {
                self.registry()?.view_versions.remove(dir);
            }
            if let Err(e) = self.warehouse.remove_place(&place).await {
                tracing::warn!(view = %def.name, "view files not removed: {}", e.message());
            }
        }
        Ok(())
    }

    /// Re-creates streams and restarts continuous queries from the catalog,
    /// in creation order (a query's stream and target exist before it),
    /// through the same checks as CREATE (sandbox, options). One that cannot
    /// be restored is marked failed with the reason; the server still starts.
    pub async fn restore(&self, parser: &Parser) -> Result<(), QueryError> {
        let statuses = self.catalog.store().statuses().await?;
        for def in self.catalog.list()? {
            if def.kind == RelationKind::ExternalTable {
                continue;
            }
            if def.kind == RelationKind::View {
                // In creation order, after what it reads; one that cannot
                // be planned is kept and says why when it is used.
                let view = crate::views::LogicalView::restore(&self.shared.state(), &def.name, &def.definition).await;
                self.catalog.attach(&def.name, Arc::new(view))?;
                continue;
            }
            let result = match (def.kind, parser.parse(&def.definition).map(|mut v| v.pop())) {
                (RelationKind::Stream, Ok(Some(Statement::CreateStream(ddl)))) => {
                    match self.define_stream(&def.name, &ddl, false).await {
                        Ok(stream) => {
                            self.catalog.attach(&def.name, stream_table(&stream))?;
                            self.register_stream(stream)
                        }
                        Err(e) => Err(e),
                    }
                }
                (RelationKind::Sink | RelationKind::MaterializedView, Ok(Some(Statement::CreateContinuousQuery(cq)))) => {
                    // An available_now query that finished is not run again,
                    // nor is a paused one; each shows its last committed
                    // batch, as before the restart.
                    let status = statuses.iter().find(|s| s.query == def.name).and_then(|s| Status::parse(&s.status));
                    let dormant = match status {
                        Some(status @ (Status::Finished | Status::Paused)) => Some(self.dormant(&def.name, status).await?),
                        _ => None,
                    };
                    self.start_query(&def.name, &cq, Some(&def), dormant).await
                }
                (_, Err(e)) => Err(e),
                _ => Err(QueryError::Unsupported(format!("stored definition of '{}'", def.name))),
            };
            if let Err(e) = result {
                tracing::error!(relation = %def.name, "not restored: {}", e.message());
                let row = QueryStatusRow {
                    query: def.name.clone(),
                    status: "failed".into(),
                    error: Some(format!("not restored at start-up: {}", e.message())),
                };
                let _ = self.catalog.store().set_status(row).await;
            }
        }
        Ok(())
    }

    /// Checks a stream definition and resolves what depends on this server:
    /// a file stream's relative path lives under the data directory, and
    /// what a source reads or connects to must be allowed by the sandbox
    /// (checked at restore too, so a narrower sandbox after a restart is
    /// obeyed). With `probe`, a path in a bucket must answer now (at
    /// CREATE; a restart must not drop a stream because the store is down).
    async fn define_stream(&self, name: &str, ddl: &CreateStream, probe: bool) -> Result<StreamDef, QueryError> {
        let mut def = StreamDef::from_ddl(&self.shared, name, ddl).await?;
        let option = |key: &str| def.spec.options.get(key).cloned();
        match def.connector {
            Connector::File => {
                let path = option("path").ok_or_else(|| QueryError::InvalidOptionValue {
                    option: "path".into(),
                    reason: "a file stream needs path = '<directory>'".into(),
                })?;
                let resolved = match crate::storage::s3::is_s3(&path) {
                    true if probe => crate::storage::s3::resolve(&self.sandbox, &path, &Default::default()).await?.url(),
                    true => {
                        crate::storage::s3::S3Options::default().check(&self.sandbox)?;
                        crate::storage::s3::S3Dir::parse(&path)?.url()
                    }
                    false => tables::resolve_location(&self.sandbox, &path, true)?,
                };
                def.spec.options.insert("path".into(), resolved.trim_end_matches('/').to_string());
            }
            Connector::Socket => {
                if let Some(host) = option("host") {
                    self.sandbox.check_host(&host)?;
                }
            }
            Connector::Kafka => self.sandbox.check_kafka(&def.spec.options)?,
            Connector::Generator | Connector::Nexmark => {}
        }
        // Building the source checks its options without touching the network.
        runner::open_source(&def, crate::source::OnDataLoss::default())
            .map_err(|e| QueryError::InvalidOptionValue { option: def.connector.name().into(), reason: e.to_string() })?;
        Ok(def)
    }

    /// Plans, (unless restoring) records, and starts a continuous query. At
    /// restore `restored` is the catalog's definition, which is not
    /// recorded again, and `dormant` registers it without running it
    /// (finished before the restart, or paused).
    pub(super) async fn start_query(
        &self,
        name: &str,
        cq: &CreateContinuousQuery,
        restored: Option<&RelationDef>,
        dormant: Option<Dormant>,
    ) -> Result<(), QueryError> {
        let Planned { kind, target, location, spec } = self.plan_query(name, cq, restored).await?;
        let late_table = format!("{name}_late");
        if spec.late_dir.is_some() {
            // `<query>_late`: rows that arrived after the watermark passed them.
            self.create_owned_table(&late_table, &spec.stream().spec.schema).await?;
        }
        // A view's own table: queryable by the view's name.
        let mut table: Option<Arc<dyn datafusion::catalog::TableProvider>> = None;
        let file_schema = crate::sink::parquet::micros_schema(&spec.target_schema);
        if let Target::View { dir, versions } = &spec.target {
            self.warehouse.create_place(dir)?;
            table = Some(match versions {
                // update / complete: readers see one committed version at a time.
                Some(versions) => {
                    Arc::new(super::versioned::VersionedTable { schema: file_schema.clone(), versions: versions.clone() })
                }
                None => tables::parquet_dir_table(dir, file_schema.clone())?,
            });
        }
        if let Target::DeltaView { dir, .. } = &spec.target {
            // The log exists before the first epoch: the view reads as an
            // empty table until then, from weir and from outside.
            self.warehouse.create_place(dir)?;
            if !crate::delta::is_table(dir).await? {
                crate::delta::create(dir, &file_schema).await?;
            }
            let provider = crate::delta::provider::DeltaProvider::open(dir, None).await?;
            table = Some(Arc::new(provider));
        }
        match (restored, table) {
            (None, table) => {
                let record = RelationDef {
                    name: name.to_string(),
                    kind,
                    definition: cq.text.clone(),
                    location,
                    format: if matches!(spec.target, Target::DeltaView { .. }) { "DELTA" } else { "PARQUET" }.into(),
                    partition_columns: Vec::new(),
                };
                self.catalog.create(record, table).await?;
            }
            (Some(_), Some(table)) => self.catalog.attach(name, table)?,
            (Some(_), None) => {}
        }
        self.start(kind, target, spec, dormant)
    }

    /// Checks and plans a continuous query without side effects: where its
    /// rows go and the spec a runner runs. CREATE, restore, ALTER and
    /// EXPLAIN all plan through here.
    pub(super) async fn plan_query(
        &self,
        name: &str,
        cq: &CreateContinuousQuery,
        restored: Option<&RelationDef>,
    ) -> Result<Planned, QueryError> {
        let options = QueryOptions::parse(cq)?;
        // What SHOW lists as the target, where the catalog says the output
        // lands, and the typed target the sink is opened from.
        let (kind, target, location, sink_target) = match &cq.target {
            SinkTarget::Kafka(options) => {
                crate::sql::streaming::check_options(options, crate::sink::kafka::OPTIONS, "INTO KAFKA (...)")?;
                crate::sink::kafka::check(options)
                    .map_err(|reason| QueryError::InvalidOptionValue { option: "INTO KAFKA".into(), reason })?;
                self.sandbox.check_kafka(options)?;
                let bootstrap = options.get("bootstrap_servers").map(String::as_str).unwrap_or("127.0.0.1:9092");
                let topic = options.get("topic").map(String::as_str).unwrap_or_default();
                let location = format!("kafka://{bootstrap}/{topic}");
                (RelationKind::Sink, location.clone(), location, Target::Kafka(options.clone()))
            }
            SinkTarget::Table(table) => {
                let key = crate::sql::table_key(table)?;
                let def = self.catalog.get(&key)?.ok_or_else(|| CatalogError::UnknownTable(key.clone()))?;
                if def.kind != RelationKind::ExternalTable {
                    return Err(QueryError::Unsupported(format!(
                        "a sink into '{key}', which is {} (sinks append to external tables)",
                        def.kind.described()
                    )));
                }
                let delta = def.format.eq_ignore_ascii_case("delta");
                if !def.format.eq_ignore_ascii_case("parquet") && !delta {
                    return Err(QueryError::Unsupported(format!(
                        "a sink into '{key}' stored as {} (sinks write Parquet and Delta tables)",
                        def.format
                    )));
                }
                if delta && !def.partition_columns.is_empty() {
                    return Err(QueryError::Unsupported(format!("a sink into the partitioned Delta table '{key}'")));
                }
                let s3 = crate::storage::s3::is_s3(&def.location);
                if !s3 && (def.location.contains("://") || !def.location.ends_with('/')) {
                    return Err(QueryError::Unsupported(format!(
                        "a sink into '{key}', whose location {} is not a directory",
                        def.location
                    )));
                }
                let schema = self.shared.table_provider(key.as_str()).await?.schema();
                if let Some(hidden) = def.partition_columns.iter().find(|c| c.starts_with(['_', '.'])) {
                    return Err(QueryError::Unsupported(format!(
                        "a sink into '{key}', whose partition column '{hidden}' starts with '{}' (every reader skips such directories)",
                        &hidden[..1]
                    )));
                }
                let target = if delta {
                    let dir = crate::delta::TableDir::from_location(&def.location)?;
                    crate::delta::check_appendable(&dir).await?;
                    Target::Delta { dir, schema }
                } else if s3 {
                    Target::ObjectTable {
                        dir: crate::storage::s3::S3Dir::parse(&def.location)?,
                        schema,
                        partition_columns: def.partition_columns.clone(),
                    }
                } else {
                    Target::Table { dir: recorded_dir(&def), schema, partition_columns: def.partition_columns.clone() }
                };
                (RelationKind::Sink, key, def.location.clone(), target)
            }
            SinkTarget::OwnTable => {
                let dir = match restored {
                    None => self.warehouse.place(name)?,
                    Some(def) => self.owned_recorded_dir(def)?,
                };
                let location = dir.location();
                // Unnamed, the format is the one the view was made with;
                // a new view in a bucket is Delta (a rewritten Parquet view
                // needs renames), elsewhere Parquet, as views always were.
                let default = match restored {
                    Some(def) if def.format.eq_ignore_ascii_case("delta") => super::ViewFormat::Delta,
                    Some(_) => super::ViewFormat::Parquet,
                    None if matches!(dir, TableDir::S3(_)) => super::ViewFormat::Delta,
                    None => super::ViewFormat::Parquet,
                };
                let target = match options.view_format.unwrap_or(default) {
                    super::ViewFormat::Parquet => Target::View { dir, versions: None },
                    super::ViewFormat::Delta => Target::DeltaView { dir, overwrite: false },
                };
                (RelationKind::MaterializedView, name.to_string(), location, target)
            }
        };
        // Only a query that keeps late rows has a late table to place.
        let late_dir = match options.late_rows_table {
            true => Some(self.owned_dir(&format!("{name}_late"))?),
            false => None,
        };
        let error_dirs = |stream: &StreamDef| self.owned_dir(&format!("{}_errors", stream.name)).ok();
        let spec = self.prepare(name, &cq.query, options, sink_target, error_dirs, late_dir).await?;
        Ok(Planned { kind, target, location, spec })
    }

    /// The place of the weir-owned table `name`: where the catalog
    /// recorded it, or, for a table not made yet, under the current root.
    fn owned_dir(&self, name: &str) -> Result<TableDir, QueryError> {
        match self.catalog.get(name)? {
            Some(def) => TableDir::from_location(&def.location),
            None => self.warehouse.place(name),
        }
    }

    /// A restored view's directory: the one the catalog recorded, as long
    /// as it lies under one of the warehouse's roots, current or earlier (a
    /// recorded path anywhere else is refused, never written or deleted).
    fn owned_recorded_dir(&self, def: &RelationDef) -> Result<TableDir, QueryError> {
        let dir = TableDir::from_location(&def.location)?;
        self.warehouse.check_place(&dir)?;
        Ok(dir)
    }

    /// Creates, unless the catalog has it, an external Parquet table that
    /// weir writes for the user (`<stream>_errors`, `<query>_late`), with
    /// `schema`'s columns: remembered, listed and queryable like any table.
    async fn create_owned_table(&self, name: &str, schema: &Schema) -> Result<(), QueryError> {
        if self.catalog.get(name)?.is_some() {
            return Ok(());
        }
        let dir = self.warehouse.place(name)?;
        self.warehouse.create_place(&dir)?;
        self.catalog.create_owned(&self.shared.state(), name, &dir, schema).await
    }
}

/// A continuous query checked and planned: what SHOW lists as its target,
/// where the catalog says its output lands, and what the runner runs.
pub(super) struct Planned {
    pub kind: RelationKind,
    pub target: String,
    pub location: String,
    pub spec: super::QuerySpec,
}

/// The directory a catalog entry recorded (locations of directories end
/// in `/`).
fn recorded_dir(def: &RelationDef) -> std::path::PathBuf {
    std::path::PathBuf::from(def.location.trim_end_matches('/'))
}

/// A stream as ad-hoc SQL sees it: a table that can be described (and
/// named in a continuous query) but not scanned.
fn stream_table(def: &StreamDef) -> Arc<dyn datafusion::catalog::TableProvider> {
    Arc::new(super::planning::StreamTable { name: def.name.clone(), schema: def.spec.schema.clone() })
}

/// Where a stream reads from, as SHOW STREAMS lists it.
fn stream_location(def: &StreamDef) -> String {
    let option = |key: &str| def.spec.options.get(key).map(String::as_str).unwrap_or_default();
    match def.connector {
        Connector::Kafka => {
            let servers = def.spec.options.get("bootstrap_servers").map(String::as_str).unwrap_or("127.0.0.1:9092");
            format!("kafka://{servers}/{}", option("topic"))
        }
        Connector::File => option("path").to_string(),
        Connector::Socket => format!("socket://{}:{}", option("host"), option("port")),
        Connector::Generator => "generator".into(),
        Connector::Nexmark => format!("nexmark://{}", option("table")),
    }
}
