//! `CREATE SINK name INTO table AS SELECT ...` and `CREATE MATERIALIZED
//! VIEW name AS SELECT ...`: continuous queries. A sink appends to an
//! existing Parquet table; a view creates and owns its table under the
//! warehouse, queryable by the view's name.

use std::path::PathBuf;

use super::{Output, table_key};
use crate::catalog::{RelationDef, RelationKind, tables};
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};
use crate::sink::Target;
use crate::sql::{CreateContinuousQuery, SinkTarget};
use crate::stream::{QueryOptions, Status};

pub async fn handle(engine: &Engine, cq: CreateContinuousQuery) -> Result<Output, QueryError> {
    let tag = match cq.target {
        SinkTarget::Table(_) | SinkTarget::Kafka(_) => "CREATE SINK",
        SinkTarget::OwnTable => "CREATE MATERIALIZED VIEW",
    };
    let name = table_key(&cq.name)?;
    if engine.catalog.get(&name)?.is_some() || engine.context().table_exist(name.as_str())? {
        if cq.if_not_exists {
            return Ok(Output::command(tag));
        }
        return Err(CatalogError::DuplicateTable(name).into());
    }
    start(engine, &name, &cq, None, false).await?;
    Ok(Output::command(tag))
}

/// Plans, (optionally) records, and starts a continuous query. At restore
/// `restored` is the catalog's definition (nothing is recorded again) and
/// `finished` says the catalog saw it finish.
pub async fn start(
    engine: &Engine,
    name: &str,
    cq: &CreateContinuousQuery,
    restored: Option<&RelationDef>,
    finished: bool,
) -> Result<(), QueryError> {
    let persist = restored.is_none();
    let options = QueryOptions::parse(cq)?;
    let (kind, target, location, sink_target) = match &cq.target {
        SinkTarget::Kafka(options) => {
            crate::sql::streaming::check_options(options, crate::sink::kafka::OPTIONS, "INTO KAFKA (...)")?;
            crate::sink::kafka::check(options)
                .map_err(|reason| QueryError::InvalidOptionValue { option: "INTO KAFKA".into(), reason })?;
            super::create_stream::check_kafka_access(engine, options)?;
            let bootstrap = options.get("bootstrap_servers").map(String::as_str).unwrap_or("127.0.0.1:9092");
            let topic = options.get("topic").map(String::as_str).unwrap_or_default();
            let location = format!("kafka://{bootstrap}/{topic}");
            (RelationKind::Sink, location.clone(), location, Target::Kafka(options.clone()))
        }
        SinkTarget::Table(table) => {
            let key = table_key(table)?;
            let def = engine.catalog.get(&key)?.ok_or_else(|| CatalogError::UnknownTable(key.clone()))?;
            if def.kind != RelationKind::ExternalTable {
                return Err(QueryError::Unsupported(format!(
                    "a sink into '{key}', which is a {} (sinks append to external tables)",
                    def.kind.as_str().replace('_', " ")
                )));
            }
            if !def.format.eq_ignore_ascii_case("parquet") {
                return Err(QueryError::Unsupported(format!("a sink into '{key}' stored as {} (sinks write Parquet)", def.format)));
            }
            if def.definition.contains(" PARTITIONED BY ") {
                return Err(QueryError::Unsupported(format!("a sink into the partitioned table '{key}'")));
            }
            if def.location.contains("://") || !def.location.ends_with('/') {
                return Err(QueryError::Unsupported(format!(
                    "a sink into '{key}', whose location {} is not a local directory",
                    def.location
                )));
            }
            let schema = engine.context().table_provider(key.as_str()).await?.schema();
            let dir = PathBuf::from(def.location.trim_end_matches('/'));
            (RelationKind::Sink, key, def.location.clone(), Target::Table { dir, schema })
        }
        SinkTarget::OwnTable => {
            let dir = view_dir(engine, name, restored)?;
            let location = format!("{}/", dir.display());
            (RelationKind::MaterializedView, name.to_string(), location, Target::View { dir, versions: None })
        }
    };
    let late_dir = engine.warehouse.table_dir(&format!("{name}_late"))?;
    let dead_letter_dir = |stream: &crate::stream::StreamDef| super::create_stream::dead_letter_dir(engine, &stream.name).ok();
    let spec = engine.streams.prepare(name, &cq.query, options, sink_target, dead_letter_dir, Some(late_dir)).await?;
    if let Some(dir) = &spec.late_dir {
        // `<query>_late`: rows that arrived after the watermark passed them.
        super::create_table::create_owned(engine, &format!("{name}_late"), dir, &spec.stream().spec.schema).await?;
    }
    if let Target::View { dir, versions } = &spec.target {
        engine.warehouse.create_dir(dir)?;
        let file_schema = crate::sink::ParquetSink::new(dir, name, &spec.target_schema, crate::sink::Roll::default())
            .file_schema()
            .clone();
        match versions {
            // update / complete: readers see one committed version at a time.
            Some(current) => {
                let table = crate::stream::versioned::VersionedTable { schema: file_schema, current: current.clone() };
                engine.context().register_table(name, std::sync::Arc::new(table))?;
            }
            None => tables::register_parquet_dir(engine.context(), name, dir, file_schema).await?,
        }
    }
    if persist {
        let record = RelationDef {
            name: name.to_string(),
            kind,
            definition: cq.text.clone(),
            location,
            format: "PARQUET".into(),
        };
        if let Err(e) = engine.catalog.store().insert(&record) {
            if kind == RelationKind::MaterializedView {
                let _ = engine.context().deregister_table(name);
            }
            return Err(e.into());
        }
    }
    engine.streams.start(kind, target, spec, finished)?;
    Ok(())
}

/// A view's table directory: under the warehouse, named by the escaped
/// view name. At restore it is the directory the catalog recorded, as long
/// as that is the warehouse's (a view made before names were escaped keeps
/// its files; a recorded path outside the warehouse is refused).
fn view_dir(engine: &Engine, name: &str, restored: Option<&RelationDef>) -> Result<PathBuf, QueryError> {
    let Some(def) = restored else { return Ok(engine.warehouse.table_dir(name)?) };
    let recorded = PathBuf::from(def.location.trim_end_matches('/'));
    if !engine.warehouse.owns(&recorded) {
        return Err(crate::error::AccessError::Path {
            path: def.location.clone(),
            roots: format!("'{}'", engine.warehouse.root().display()),
        }
        .into());
    }
    Ok(recorded)
}

/// Whether the catalog recorded `name` as finished (an `available_now`
/// query is not run again after a restart).
pub fn recorded_status(engine: &Engine, name: &str) -> Option<Status> {
    let statuses = engine.catalog.store().statuses().ok()?;
    statuses.into_iter().find(|s| s.query == name).and_then(|s| Status::parse(&s.status))
}

