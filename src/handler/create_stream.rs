//! `CREATE STREAM name (...) WITH (connector = ...)`: declares a source.
//! Nothing is read until a continuous query reads the stream; options are
//! checked now, so a typo fails here and not at three in the morning.

use super::{Output, table_key};
use crate::catalog::{RelationDef, RelationKind};
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};
use crate::sql::CreateStream;
use crate::stream::definition::{Connector, OnError};
use crate::stream::{StreamDef, runner};

pub async fn handle(engine: &Engine, ddl: CreateStream) -> Result<Output, QueryError> {
    let name = table_key(&ddl.name)?;
    if engine.catalog.get(&name)?.is_some() || engine.context().table_exist(name.as_str())? {
        if ddl.if_not_exists {
            return Ok(Output::command("CREATE STREAM"));
        }
        return Err(CatalogError::DuplicateTable(name).into());
    }
    let def = define(engine, &name, &ddl).await?;
    if def.on_error == OnError::DeadLetter {
        // `<stream>_errors`: where `on_error = 'dead_letter'` keeps bad records.
        let schema = runner::dead_letter_schema();
        let dir = dead_letter_dir(engine, &name)?;
        super::create_table::create_owned(engine, &format!("{name}_errors"), &dir, &schema).await?;
    }
    let location = match def.connector {
        Connector::Kafka => format!(
            "kafka://{}/{}",
            def.spec.options.get("bootstrap_servers").map(String::as_str).unwrap_or("127.0.0.1:9092"),
            def.spec.options.get("topic").map(String::as_str).unwrap_or_default()
        ),
        Connector::File => def.spec.options.get("path").cloned().unwrap_or_default(),
        Connector::Socket => format!(
            "socket://{}:{}",
            def.spec.options.get("host").map(String::as_str).unwrap_or_default(),
            def.spec.options.get("port").map(String::as_str).unwrap_or_default()
        ),
        Connector::Generator => "generator".into(),
        Connector::Nexmark => format!("nexmark://{}", def.spec.options.get("table").map(String::as_str).unwrap_or_default()),
    };
    let format = def.spec.options.get("format").cloned().unwrap_or_default().to_uppercase();
    let record = RelationDef {
        name: name.clone(),
        kind: RelationKind::Stream,
        definition: ddl.text.clone(),
        location,
        format,
        partition_columns: Vec::new(),
    };
    // Persisted first; the stream manager then makes its table live.
    engine.catalog.create(record, None).await?;
    engine.streams.register_stream(def)?;
    Ok(Output::command("CREATE STREAM"))
}

/// Checks a stream definition and resolves what depends on this server: a
/// file stream's relative path lives under the data directory, and what a
/// source reads or connects to must be allowed by the sandbox (checked at
/// restore too, so a narrower sandbox after a restart is obeyed).
pub async fn define(engine: &Engine, name: &str, ddl: &CreateStream) -> Result<StreamDef, QueryError> {
    let mut def = StreamDef::from_ddl(engine.context(), name, ddl).await?;
    let option = |key: &str| def.spec.options.get(key).cloned();
    match def.connector {
        Connector::File => {
            let path = option("path").ok_or_else(|| QueryError::InvalidOptionValue {
                option: "path".into(),
                reason: "a file stream needs path = '<directory>'".into(),
            })?;
            let resolved = crate::catalog::tables::resolve_location(&engine.sandbox, &path, true)?;
            def.spec.options.insert("path".into(), resolved.trim_end_matches('/').to_string());
        }
        Connector::Socket => {
            if let Some(host) = option("host") {
                engine.sandbox.check_host(&host)?;
            }
        }
        Connector::Kafka => check_kafka_access(engine, &def.spec.options)?,
        Connector::Generator | Connector::Nexmark => {}
    }
    // Building the source checks its options without touching the network.
    runner::open_source(&def).map_err(|e| QueryError::InvalidOptionValue {
        option: def.connector.name().into(),
        reason: e.to_string(),
    })?;
    Ok(def)
}

pub fn dead_letter_dir(engine: &Engine, stream: &str) -> Result<std::path::PathBuf, QueryError> {
    Ok(engine.warehouse.table_dir(&format!("{stream}_errors"))?)
}

/// The brokers and librdkafka files a Kafka stream or sink would use must
/// be allowed: `bootstrap_servers` (default `127.0.0.1:9092`) and every
/// `properties.*` setting that names a host, a file or a program.
pub fn check_kafka_access(engine: &Engine, options: &crate::sql::Options) -> Result<(), QueryError> {
    engine.sandbox.check_servers(options.get("bootstrap_servers").map(String::as_str).unwrap_or("127.0.0.1:9092"))?;
    let properties = options.iter().filter_map(|(k, v)| k.strip_prefix("properties.").map(|k| (k, v.as_str())));
    engine.sandbox.check_kafka_properties(properties)?;
    Ok(())
}
