//! What psql's describe commands ask about weir's own relations, answered
//! from weir's catalog: the kind of each (a stream is a foreign table, the
//! way PostgreSQL shows data that lives elsewhere: `\dE`, and `\d` names its
//! connector as the server; a materialized view is one: `\dm`), the bytes a
//! table or view holds (`\dt+`, `\l+`), and a view's definition (`\d+`).
//!
//! datafusion-pg-catalog knows DataFusion's table types only (base or view);
//! the `pg_class` view in `mod.rs` asks [`Relations::kind`] instead.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, Int64Array, ListBuilder, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

use crate::catalog::{Catalog, DATABASE, RelationDef, RelationKind, SCHEMA};
use crate::sql::{Parser, Statement};

/// The connectors a stream can read, as `pg_foreign_server` rows: a
/// stream's server is its connector.
pub const CONNECTORS: &[&str] = &["kafka", "file", "socket", "generator", "nexmark"];

/// The OID of the first connector's `pg_foreign_server` row; the others follow.
pub const FIRST_SERVER_OID: i32 = 90_001;

/// Weir's relations as the PostgreSQL catalog functions see them.
#[derive(Clone)]
pub struct Relations {
    catalog: Catalog,
}

impl Relations {
    pub fn new(catalog: Catalog) -> Relations {
        Relations { catalog }
    }

    fn def(&self, schema: &str, name: &str) -> Option<RelationDef> {
        if schema != SCHEMA {
            return None;
        }
        self.catalog.get(name).ok().flatten()
    }

    /// `pg_class.relkind` for a relation of weir's `public` schema, or `None`
    /// for anything else (system tables keep DataFusion's kind).
    pub fn kind(&self, schema: &str, name: &str) -> Option<&'static str> {
        Some(match self.def(schema, name)?.kind {
            RelationKind::Stream => "f",
            RelationKind::MaterializedView => "m",
            RelationKind::View => "v",
            RelationKind::ExternalTable | RelationKind::Sink => "r",
        })
    }

    /// Bytes of committed data files under a table's or view's location
    /// (what a reader would scan); `None` for streams and unknown names.
    pub fn size(&self, schema: &str, name: &str) -> Option<i64> {
        let def = self.def(schema, name)?;
        match def.kind {
            RelationKind::ExternalTable | RelationKind::MaterializedView => {
                let location = def.location.strip_prefix("file://").unwrap_or(&def.location);
                Some(committed_bytes(Path::new(location)))
            }
            RelationKind::Stream | RelationKind::Sink | RelationKind::View => None,
        }
    }

    /// Bytes of every table and view of the database.
    pub fn database_size(&self) -> i64 {
        let defs = self.catalog.list().unwrap_or_default();
        defs.iter().filter_map(|d| self.size(SCHEMA, &d.name)).sum()
    }

    /// A materialized view's (or stream's) definition, as it was written.
    pub fn definition(&self, schema: &str, name: &str) -> Option<String> {
        self.def(schema, name).map(|d| crate::catalog::tables::shown_definition(&d.definition))
    }

    /// A table's or materialized view's storage as `pg_class.reloptions`
    /// (`format=delta`, `location=s3://...`).
    pub fn table_options(&self, schema: &str, name: &str) -> Option<Vec<String>> {
        let def = self.def(schema, name)?;
        if !matches!(def.kind, RelationKind::ExternalTable | RelationKind::MaterializedView) {
            return None;
        }
        Some(vec![format!("format={}", def.format.to_lowercase()), format!("location={}", def.location)])
    }

    /// A stream's connector and its options as `key 'value'` (secrets left
    /// out), as `\d` shows a foreign table's server and FDW options.
    pub fn stream_source(&self, schema: &str, name: &str) -> Option<(String, Vec<String>)> {
        let def = self.def(schema, name)?;
        if def.kind != RelationKind::Stream {
            return None;
        }
        let Ok(mut statements) = Parser::new().parse(&def.definition) else { return None };
        let Some(Statement::CreateStream(ddl)) = statements.pop() else { return None };
        let connector = ddl.options.get("connector").cloned().unwrap_or_default();
        let options = ddl
            .options
            .iter()
            .filter(|(key, _)| key.as_str() != "connector" && !is_secret(key))
            .map(|(key, value)| format!("{key} '{}'", value.replace('\'', "''")))
            .collect();
        Some((connector, options))
    }
}

/// Options whose values are credentials: never shown.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", "key.pem", "credentials", "jaas"].iter().any(|s| key.contains(s))
}

/// The size of the visible files under `dir`, recursively (staged, hidden
/// and unfinished files are not data yet).
fn committed_bytes(dir: &Path) -> i64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !crate::storage::listing::is_visible(&name.to_string_lossy()) {
            continue;
        }
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            total += committed_bytes(&entry.path());
        } else if kind.is_file() {
            total += entry.metadata().map(|m| m.len() as i64).unwrap_or(0);
        }
    }
    total
}

/// Applies `f` to each row of two text arguments (schema, name).
fn per_relation<T>(
    args: &[ColumnarValue],
    mut f: impl FnMut(&str, &str) -> Option<T>,
) -> datafusion::error::Result<Vec<Option<T>>> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let text = |a: &ArrayRef| datafusion::arrow::compute::cast(a, &DataType::Utf8);
    let (schemas, names) = (text(&arrays[0])?, text(&arrays[1])?);
    let (schemas, names) = (schemas.as_string::<i32>(), names.as_string::<i32>());
    Ok((0..names.len())
        .map(|i| if schemas.is_null(i) || names.is_null(i) { None } else { f(schemas.value(i), names.value(i)) })
        .collect())
}

/// `weir_relkind(nspname, relname, relkind)`: weir's kind for its own
/// relations, `relkind` for the rest. For the `pg_class` view only.
pub fn relkind_udf(relations: &Relations) -> ScalarUDF {
    let relations = relations.clone();
    create_udf(
        "weir_relkind",
        vec![DataType::Utf8, DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let kinds = per_relation(args, |schema, name| relations.kind(schema, name))?;
            let given = ColumnarValue::values_to_arrays(&args[2..])?;
            let given = datafusion::arrow::compute::cast(&given[0], &DataType::Utf8)?;
            let given = given.as_string::<i32>();
            let out: StringArray = kinds
                .iter()
                .enumerate()
                .map(|(i, kind)| kind.map(str::to_string).or_else(|| given.is_valid(i).then(|| given.value(i).to_string())))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `weir_stream_server(nspname, relname)`: the OID of the stream's
/// connector in `pg_foreign_server`. For the `pg_foreign_table` view only.
pub fn stream_server_udf(relations: &Relations) -> ScalarUDF {
    let relations = relations.clone();
    create_udf(
        "weir_stream_server",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let servers = per_relation(args, |schema, name| {
                let (connector, _) = relations.stream_source(schema, name)?;
                let index = CONNECTORS.iter().position(|c| *c == connector)?;
                Some(FIRST_SERVER_OID + index as i32)
            })?;
            Ok(ColumnarValue::Array(Arc::new(Int32Array::from(servers))))
        }),
    )
}

/// `weir_stream_options(nspname, relname)`: a stream's options as
/// `pg_foreign_table.ftoptions`. For the `pg_foreign_table` view only.
pub fn stream_options_udf(relations: &Relations) -> ScalarUDF {
    let relations = relations.clone();
    create_udf(
        "weir_stream_options",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let options = per_relation(args, |schema, name| relations.stream_source(schema, name).map(|(_, o)| o))?;
            Ok(ColumnarValue::Array(Arc::new(text_lists(options))))
        }),
    )
}

/// `weir_table_options(nspname, relname)`: a table's format and location as
/// `pg_class.reloptions`. For the `pg_class` view only.
pub fn table_options_udf(relations: &Relations) -> ScalarUDF {
    let relations = relations.clone();
    create_udf(
        "weir_table_options",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let options = per_relation(args, |schema, name| relations.table_options(schema, name))?;
            Ok(ColumnarValue::Array(Arc::new(text_lists(options))))
        }),
    )
}

/// Rows of text arrays (`None`: NULL).
fn text_lists(rows: Vec<Option<Vec<String>>>) -> datafusion::arrow::array::ListArray {
    let mut list = ListBuilder::new(StringBuilder::new());
    for row in rows {
        match row {
            Some(items) => {
                for item in items {
                    list.values().append_value(item);
                }
                list.append(true);
            }
            None => list.append(false),
        }
    }
    list.finish()
}

/// `weir_relation_size(nspname, relname)`: bytes of committed data of a
/// table or view (psql's `\dt+` asks `pg_table_size(c.oid)`; the client
/// rewrites turn that into this, since OIDs are datafusion-pg-catalog's).
pub fn relation_size_udf(relations: &Relations) -> ScalarUDF {
    let relations = relations.clone();
    create_udf(
        "weir_relation_size",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Int64,
        Volatility::Volatile,
        Arc::new(move |args: &[ColumnarValue]| {
            let sizes = per_relation(args, |schema, name| relations.size(schema, name))?;
            Ok(ColumnarValue::Array(Arc::new(Int64Array::from(sizes))))
        }),
    )
}

/// `weir_viewdef(nspname, relname)`: a materialized view's or stream's
/// definition (psql's `\d+` asks `pg_get_viewdef(oid)`, rewritten to this).
pub fn viewdef_udf(relations: &Relations) -> ScalarUDF {
    let relations = relations.clone();
    create_udf(
        "weir_viewdef",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let defs = per_relation(args, |schema, name| relations.definition(schema, name))?;
            Ok(ColumnarValue::Array(Arc::new(StringArray::from(defs))))
        }),
    )
}

/// `pg_database_size(name)`: bytes of every table and view, for weir's one
/// database; NULL for any other name.
pub fn database_size_udf(relations: &Relations) -> ScalarUDF {
    let relations = relations.clone();
    create_udf(
        "pg_database_size",
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Volatile,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
            let names = names.as_string::<i32>();
            let sizes: Int64Array = names.iter().map(|n| (n == Some(DATABASE)).then(|| relations.database_size())).collect();
            Ok(ColumnarValue::Array(Arc::new(sizes)))
        }),
    )
}
