//! PostgreSQL 15's columns for the catalog tables BI tools read whole, and
//! the `information_schema` tables they join; weir's own relations as psql
//! describes them (`relations`), and the session's role (`roles`).
//!
//! BI tools read catalogs with `SELECT x.*` and by column name, so a column
//! too many, too few or of the wrong type breaks them (DBeaver's navigator,
//! Metabase's sync). The tables here are views over datafusion-pg-catalog's
//! (so OIDs stay the ones its other tables hand out) in PostgreSQL 15's
//! columns and order, or empty tables where weir has no such objects.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, Int32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::information_schema::{INFORMATION_SCHEMA, InformationSchemaProvider};
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, EmptyRelation, LogicalPlan, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

use crate::catalog::{Catalog, DATABASE};
use crate::error::ServerError;

mod relations;
mod roles;

pub use relations::Relations;
pub use roles::SessionUser;

/// `pg_database` as in PostgreSQL 15: no `datlastsysoid` (gone in 15) or
/// `daticurules` (new in 16), and `datcollversion`; weir records no
/// collation versions. `datlocprovider` is PostgreSQL's one-letter code.
const PG_DATABASE: &str = "SELECT oid, datname, datdba, encoding, \
    CASE datlocprovider WHEN 'libc' THEN 'c' WHEN 'icu' THEN 'i' ELSE datlocprovider END AS datlocprovider, \
    datistemplate, datallowconn, datconnlimit, datfrozenxid, datminmxid, dattablespace, datcollate, datctype, \
    daticulocale, CAST(NULL AS TEXT) AS datcollversion, datacl \
    FROM pg_catalog.pg_database";

/// `pg_namespace` as in PostgreSQL 15: no `options` column; no privileges
/// (`nspacl` NULL, an array as psql's `\dn+` expects).
const PG_NAMESPACE: &str = "SELECT oid, nspname, nspowner, CAST(NULL AS TEXT[]) AS nspacl FROM pg_catalog.pg_namespace";

/// `pg_class` as in PostgreSQL 15, with `relacl` and `reloptions`: weir
/// keeps no privileges (NULL); a table's or view's options are its format
/// and location, which psql's `\d+` prints as "Options:". The kind of
/// weir's relations is weir's (`relations::Relations::kind`).
const PG_CLASS: &str = "SELECT c.oid, c.relname, c.relnamespace, c.reltype, c.reloftype, c.relowner, c.relam, \
    c.relfilenode, c.reltablespace, c.relpages, c.reltuples, c.relallvisible, c.reltoastrelid, c.relhasindex, \
    c.relisshared, c.relpersistence, weir_relkind(n.nspname, c.relname, c.relkind) AS relkind, c.relnatts, \
    c.relchecks, c.relhasrules, c.relhastriggers, c.relhassubclass, c.relrowsecurity, c.relforcerowsecurity, \
    c.relispopulated, c.relreplident, c.relispartition, c.relrewrite, c.relfrozenxid, c.relminmxid, \
    CAST(NULL AS TEXT[]) AS relacl, weir_table_options(n.nspname, c.relname) AS reloptions, c.relpartbound \
    FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace";

/// `information_schema.views` in PostgreSQL 15's columns (DataFusion's has
/// `definition`; BI tools read `view_definition`). Weir's views take no
/// INSERT, UPDATE or DELETE and have no CHECK OPTION.
const VIEWS: &str = "SELECT table_catalog, table_schema, table_name, definition AS view_definition, \
    'NONE' AS check_option, 'NO' AS is_updatable, 'NO' AS is_insertable_into, 'NO' AS is_trigger_updatable, \
    'NO' AS is_trigger_deletable, 'NO' AS is_trigger_insertable_into FROM information_schema.views";

/// `pg_foreign_table`: a row per stream, its connector as the server and its
/// options (secrets left out) as `key 'value'`, which psql's `\d` prints.
const PG_FOREIGN_TABLE: &str = "SELECT c.oid AS ftrelid, weir_stream_server(n.nspname, c.relname) AS ftserver, \
    weir_stream_options(n.nspname, c.relname) AS ftoptions \
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
    WHERE weir_relkind(n.nspname, c.relname, c.relkind) = 'f'";

/// `information_schema.columns` as PostgreSQL 15 defines it: a view over
/// `pg_attribute`, so names and types agree with what psql and JDBC see
/// (`data_type` 'bigint', `udt_name` 'int8', where DataFusion's own table
/// says 'Int64'). Weir columns have no defaults, identities, generation
/// expressions, domains or non-default collations, and take no UPDATE.
const COLUMNS: &str = "SELECT \
    current_database() AS table_catalog, nc.nspname AS table_schema, c.relname AS table_name, \
    a.attname AS column_name, CAST(a.attnum AS INT) AS ordinal_position, \
    CAST(NULL AS TEXT) AS column_default, \
    CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable, \
    CASE WHEN t.typelem <> 0 AND t.typlen = -1 THEN 'ARRAY' \
         WHEN nt.nspname = 'pg_catalog' THEN format_type(a.atttypid, -1) \
         ELSE 'USER-DEFINED' END AS data_type, \
    CAST(NULL AS INT) AS character_maximum_length, \
    CAST(CASE WHEN a.atttypid IN (25, 1042, 1043) THEN 1073741824 END AS INT) AS character_octet_length, \
    CAST(CASE a.atttypid WHEN 21 THEN 16 WHEN 23 THEN 32 WHEN 20 THEN 64 WHEN 700 THEN 24 WHEN 701 THEN 53 \
        WHEN 1700 THEN CASE WHEN a.atttypmod >= 4 THEN (a.atttypmod - 4) / 65536 END END AS INT) \
        AS numeric_precision, \
    CAST(CASE WHEN a.atttypid IN (20, 21, 23, 700, 701) THEN 2 WHEN a.atttypid = 1700 THEN 10 END AS INT) \
        AS numeric_precision_radix, \
    CAST(CASE WHEN a.atttypid IN (20, 21, 23) THEN 0 \
        WHEN a.atttypid = 1700 AND a.atttypmod >= 4 THEN (a.atttypmod - 4) % 65536 END AS INT) AS numeric_scale, \
    CAST(CASE WHEN a.atttypid = 1082 THEN 0 WHEN a.atttypid IN (1083, 1114, 1184, 1186, 1266) THEN 6 END AS INT) \
        AS datetime_precision, \
    CAST(NULL AS TEXT) AS interval_type, CAST(NULL AS INT) AS interval_precision, \
    CAST(NULL AS TEXT) AS character_set_catalog, CAST(NULL AS TEXT) AS character_set_schema, \
    CAST(NULL AS TEXT) AS character_set_name, \
    CAST(NULL AS TEXT) AS collation_catalog, CAST(NULL AS TEXT) AS collation_schema, \
    CAST(NULL AS TEXT) AS collation_name, \
    CAST(NULL AS TEXT) AS domain_catalog, CAST(NULL AS TEXT) AS domain_schema, CAST(NULL AS TEXT) AS domain_name, \
    current_database() AS udt_catalog, nt.nspname AS udt_schema, t.typname AS udt_name, \
    CAST(NULL AS TEXT) AS scope_catalog, CAST(NULL AS TEXT) AS scope_schema, CAST(NULL AS TEXT) AS scope_name, \
    CAST(NULL AS INT) AS maximum_cardinality, CAST(a.attnum AS TEXT) AS dtd_identifier, \
    'NO' AS is_self_referencing, 'NO' AS is_identity, CAST(NULL AS TEXT) AS identity_generation, \
    CAST(NULL AS TEXT) AS identity_start, CAST(NULL AS TEXT) AS identity_increment, \
    CAST(NULL AS TEXT) AS identity_maximum, CAST(NULL AS TEXT) AS identity_minimum, 'NO' AS identity_cycle, \
    'NEVER' AS is_generated, CAST(NULL AS TEXT) AS generation_expression, 'NO' AS is_updatable \
    FROM pg_catalog.pg_attribute a \
    JOIN pg_catalog.pg_class c ON a.attrelid = c.oid \
    JOIN pg_catalog.pg_namespace nc ON c.relnamespace = nc.oid \
    JOIN pg_catalog.pg_type t ON a.atttypid = t.oid \
    JOIN pg_catalog.pg_namespace nt ON t.typnamespace = nt.oid \
    WHERE a.attnum > 0 AND NOT a.attisdropped";

/// `information_schema.table_constraints` in PostgreSQL 15's columns.
const TABLE_CONSTRAINTS: &[&str] = &[
    "constraint_catalog",
    "constraint_schema",
    "constraint_name",
    "table_catalog",
    "table_schema",
    "table_name",
    "constraint_type",
    "is_deferrable",
    "initially_deferred",
    "enforced",
    "nulls_distinct",
];

/// `information_schema.key_column_usage` in PostgreSQL 15's columns (the
/// two positions are integers, the rest names).
const KEY_COLUMN_USAGE: &[&str] = &[
    "constraint_catalog",
    "constraint_schema",
    "constraint_name",
    "table_catalog",
    "table_schema",
    "table_name",
    "column_name",
];

/// Replaces `pg_catalog`'s tables above, and serves `information_schema` as
/// a schema of the catalog in place of DataFusion's built-in one (whose
/// session flag it turns off). Call right after
/// `datafusion_pg_catalog::setup_pg_catalog`.
pub async fn register(ctx: &SessionContext, catalog: &Catalog, server_user: &str) -> Result<(), ServerError> {
    register_inner(ctx, catalog, server_user)
        .await
        .map_err(|e| ServerError::Engine(format!("pg_catalog compatibility: {e}")))
}

async fn register_inner(ctx: &SessionContext, weir_catalog: &Catalog, server_user: &str) -> Result<()> {
    let relations = Relations::new(weir_catalog.clone());
    // What psql's size and definition columns become (`sql::client_compat`).
    for udf in [
        relations::relation_size_udf(&relations),
        relations::viewdef_udf(&relations),
        relations::database_size_udf(&relations),
    ] {
        ctx.register_udf(udf);
    }
    let catalog =
        ctx.catalog(DATABASE).ok_or_else(|| datafusion::error::DataFusionError::Plan(format!("no catalog {DATABASE}")))?;
    let pg_catalog = catalog
        .schema("pg_catalog")
        .ok_or_else(|| datafusion::error::DataFusionError::Plan("no schema pg_catalog".into()))?;

    // Planned against datafusion-pg-catalog's tables, before the overlay
    // that replaces them is registered.
    // The functions the views read are registered only while they are
    // planned (their plans keep them), not for users.
    let mut pg_tables: HashMap<String, Arc<dyn TableProvider>> = HashMap::new();
    let view_udfs = [
        relations::relkind_udf(&relations),
        relations::stream_server_udf(&relations),
        relations::stream_options_udf(&relations),
        relations::table_options_udf(&relations),
    ];
    for udf in &view_udfs {
        ctx.register_udf(udf.clone());
    }
    for (name, sql) in [
        ("pg_database", PG_DATABASE),
        ("pg_namespace", PG_NAMESPACE),
        ("pg_class", PG_CLASS),
        ("pg_foreign_table", PG_FOREIGN_TABLE),
    ] {
        pg_tables.insert(name.into(), view(ctx, sql).await?);
    }
    for udf in &view_udfs {
        ctx.deregister_udf(udf.name());
    }
    pg_tables.insert("pg_foreign_server".into(), foreign_servers()?);
    if let Some(shipped) = pg_catalog.table("pg_roles").await? {
        let roles = roles::Roles { schema: shipped.schema(), server_user: server_user.to_string() };
        pg_tables.insert("pg_roles".into(), Arc::new(roles));
    }
    for name in ["pg_constraint", "pg_index"] {
        pg_tables.insert(name.into(), without_rows_with_arrays(pg_catalog.as_ref(), name).await?);
    }
    pg_tables.insert("pg_attribute".into(), pg_attribute(ctx, pg_catalog.as_ref()).await?);
    catalog.register_schema("pg_catalog", Arc::new(Overlay { base: pg_catalog, tables: pg_tables }))?;

    // DataFusion answers `information_schema` itself while the session flag
    // is on, and offers no way to add a table to it. With the flag off, the
    // schema is an ordinary one of the catalog: DataFusion's tables
    // (tables, views, schemata, df_settings, routines, ...) with `columns`
    // replaced, plus the two below. (A session that sets
    // `datafusion.catalog.information_schema` back on gets DataFusion's.)
    let state = ctx.state();
    let builtin = InformationSchemaProvider::new(Arc::clone(state.catalog_list()))
        .with_table_functions(state.table_functions().clone());
    let mut info_tables: HashMap<String, Arc<dyn TableProvider>> = HashMap::new();
    info_tables.insert("columns".into(), view(ctx, COLUMNS).await?);
    info_tables.insert("views".into(), view(ctx, VIEWS).await?);
    // Weir keeps no constraints (no primary, unique or foreign keys), so
    // both are empty; Metabase joins them to find primary keys.
    info_tables.insert("table_constraints".into(), empty(TABLE_CONSTRAINTS, &[])?);
    info_tables
        .insert("key_column_usage".into(), empty(KEY_COLUMN_USAGE, &["ordinal_position", "position_in_unique_constraint"])?);
    ctx.state_ref().write().config_mut().options_mut().catalog.information_schema = false;
    catalog.register_schema(INFORMATION_SCHEMA, Arc::new(Overlay { base: Arc::new(builtin), tables: info_tables }))?;
    Ok(())
}

async fn view(ctx: &SessionContext, sql: &str) -> Result<Arc<dyn TableProvider>> {
    let plan = ctx.sql(sql).await?.into_unoptimized_plan();
    Ok(Arc::new(ViewTable::new(plan, Some(sql.to_string()))))
}

/// `pg_attribute` with each column's type as weir's type table
/// (`crate::types`) has it, so `\d`, JDBC's `getColumns` and SQLAlchemy's
/// reflection see the type the wire sends: `atttypid`, `attlen`, and
/// `atttypmod` with numeric(p, s) packed as PostgreSQL packs it,
/// `(p << 16 | s) + 4`. datafusion-pg-catalog maps types its own way (UInt64
/// as numeric, intervals and most arrays as text) and leaves every typmod at
/// -1. Each column's Arrow type comes from DataFusion's own
/// `information_schema.columns`, so this is planned while that is still the
/// one the session answers; the functions reading it are registered only
/// while the view is planned (its plan keeps them), not for users.
async fn pg_attribute(ctx: &SessionContext, pg_catalog: &dyn SchemaProvider) -> Result<Arc<dyn TableProvider>> {
    let shipped = pg_catalog
        .table("pg_attribute")
        .await?
        .ok_or_else(|| datafusion::error::DataFusionError::Plan("no table pg_catalog.pg_attribute".into()))?;
    let columns: Vec<String> = shipped
        .schema()
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "atttypid" => "CAST(COALESCE(d.typid, a.atttypid) AS INT) AS atttypid".to_string(),
            "attlen" => "CAST(COALESCE(d.typlen, a.attlen) AS SMALLINT) AS attlen".to_string(),
            "atttypmod" => "CAST(COALESCE(d.typmod, a.atttypmod) AS INT) AS atttypmod".to_string(),
            name => format!("a.{name}"),
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM pg_catalog.pg_attribute a LEFT JOIN ( \
            SELECT c.oid AS relid, col.column_name, {TYPID}(col.data_type) AS typid, \
                {TYPLEN}(col.data_type) AS typlen, {TYPMOD}(col.data_type) AS typmod \
            FROM information_schema.columns col \
            JOIN pg_catalog.pg_namespace n ON n.nspname = col.table_schema \
            JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = col.table_name \
            WHERE col.table_catalog = '{DATABASE}' \
        ) d ON d.relid = a.attrelid AND d.column_name = a.attname",
        columns.join(", ")
    );
    let udfs = [
        attribute_udf(TYPID, |(oid, _, _)| oid),
        attribute_udf(TYPLEN, |(_, len, _)| i32::from(len)),
        attribute_udf(TYPMOD, |(_, _, typmod)| typmod),
    ];
    for udf in &udfs {
        ctx.register_udf(udf.clone());
    }
    let view = view(ctx, &sql).await;
    for udf in &udfs {
        ctx.deregister_udf(udf.name());
    }
    view
}

const TYPID: &str = "weir_attribute_typid";
const TYPLEN: &str = "weir_attribute_typlen";
const TYPMOD: &str = "weir_attribute_typmod";

/// One of a column's `pg_attribute` type columns from its Arrow type's
/// display form ([`crate::types::attribute_of`]); NULL when that does not
/// parse, so the view keeps datafusion-pg-catalog's value.
fn attribute_udf(name: &str, pick: fn((i32, i16, i32)) -> i32) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let types = arrays[0].as_string::<i32>();
            let values: Int32Array = types.iter().map(|t| t.and_then(crate::types::attribute_of).map(pick)).collect();
            Ok(ColumnarValue::Array(Arc::new(values)))
        }),
    )
}

/// `pg_constraint` and `pg_index` with PostgreSQL's array columns
/// (`conkey int2[]`, `indkey int2vector`, ...; datafusion-pg-catalog has them
/// as text, so `attnum = ANY(conkey)` and `unnest(indkey)` cannot plan) and
/// no rows: weir has no constraints or indexes, and the rows the static
/// tables ship describe PostgreSQL's own system catalogs under OIDs no weir
/// relation has.
async fn without_rows_with_arrays(pg_catalog: &dyn SchemaProvider, table: &str) -> Result<Arc<dyn TableProvider>> {
    let shipped = pg_catalog
        .table(table)
        .await?
        .ok_or_else(|| datafusion::error::DataFusionError::Plan(format!("no table pg_catalog.{table}")))?;
    let list = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
    let fields: Vec<Field> = shipped
        .schema()
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            // int2[] and int2vector
            "conkey" | "confkey" | "confdelsetcols" | "indkey" | "indoption" => {
                Field::new(f.name(), list(DataType::Int16), true)
            }
            // oid[] and oidvector
            "conpfeqop" | "conppeqop" | "conffeqop" | "conexclop" | "indcollation" | "indclass" => {
                Field::new(f.name(), list(DataType::Int32), true)
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    Ok(Arc::new(MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])?))
}

/// `pg_foreign_server`: one row per connector (the server a stream names).
fn foreign_servers() -> Result<Arc<dyn TableProvider>> {
    use datafusion::arrow::array::{ArrayRef, Int32Array, ListArray, StringArray};
    let text_list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let schema = Arc::new(Schema::new(vec![
        Field::new("oid", DataType::Int32, false),
        Field::new("srvname", DataType::Utf8, false),
        Field::new("srvowner", DataType::Int32, false),
        Field::new("srvfdw", DataType::Int32, false),
        Field::new("srvtype", DataType::Utf8, true),
        Field::new("srvversion", DataType::Utf8, true),
        Field::new("srvacl", text_list.clone(), true),
        Field::new("srvoptions", text_list, true),
    ]));
    let n = relations::CONNECTORS.len();
    let oids: Int32Array = (0..n as i32).map(|i| relations::FIRST_SERVER_OID + i).collect();
    let no_lists = || -> ArrayRef { Arc::new(ListArray::new_null(Arc::new(Field::new("item", DataType::Utf8, true)), n)) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(oids),
        Arc::new(StringArray::from(relations::CONNECTORS.to_vec())),
        Arc::new(Int32Array::from(vec![roles::ROLE_OID; n])),
        Arc::new(Int32Array::from(vec![0; n])),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
        no_lists(),
        no_lists(),
    ];
    let batch = datafusion::arrow::array::RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// An empty view (information_schema's tables are views in PostgreSQL) of
/// nullable text columns `text`, then integer columns `int`.
fn empty(text: &[&str], int: &[&str]) -> Result<Arc<dyn TableProvider>> {
    let fields = text
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, true))
        .chain(int.iter().map(|n| Field::new(*n, DataType::Int32, true)));
    let schema = DFSchema::try_from(Schema::new(fields.collect::<Vec<_>>()))?;
    let plan = LogicalPlan::EmptyRelation(EmptyRelation { produce_one_row: false, schema: Arc::new(schema) });
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// A schema whose `tables` replace or add to those of `base`.
#[derive(Debug)]
struct Overlay {
    base: Arc<dyn SchemaProvider>,
    tables: HashMap<String, Arc<dyn TableProvider>>,
}

#[async_trait]
impl SchemaProvider for Overlay {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.base.table_names();
        names.extend(self.tables.keys().filter(|n| !self.base.table_exist(n)).cloned());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match self.tables.get(&name.to_ascii_lowercase()) {
            Some(table) => Ok(Some(Arc::clone(table))),
            None => self.base.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(&name.to_ascii_lowercase()) || self.base.table_exist(name)
    }
}
