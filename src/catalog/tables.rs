//! External tables as DataFusion sees them: resolving locations, building
//! listing tables from `CREATE EXTERNAL TABLE` (registering them is the
//! catalog's: `super::schema`), and rendering the canonical DDL that the
//! store keeps.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::parser::{CreateExternalTable, DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Value;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

use super::store::{RelationDef, RelationKind};
use crate::error::QueryError;
use crate::storage::{Sandbox, TableDir, s3};

/// Resolves a LOCATION through the sandbox (a path under an allowed root,
/// or a `file://` URL naming one; see `storage::sandbox`). A relative path
/// is weir's to manage and lives under the data directory, created when
/// `create_missing` (the table declares its columns, so it can start
/// empty); an absolute path is the user's data and must already exist.
pub fn resolve_location(sandbox: &Sandbox, location: &str, create_missing: bool) -> Result<String, QueryError> {
    let resolved = sandbox.resolve(location)?;
    let relative = !location.contains("://") && Path::new(location).is_relative();
    if !resolved.exists() {
        if !relative {
            return Err(QueryError::MissingLocation(location.to_string()));
        }
        if !create_missing {
            return Err(QueryError::MissingLocation(resolved.display().to_string()));
        }
        std::fs::create_dir_all(&resolved)
            .map_err(|e| QueryError::UnreadableLocation { path: resolved.display().to_string(), reason: e.to_string() })?;
    }
    // Resolved again now that it exists: what was created is what is read.
    let canonical = std::fs::canonicalize(&resolved)
        .map_err(|e| QueryError::UnreadableLocation { path: resolved.display().to_string(), reason: e.to_string() })?;
    sandbox.check(&canonical)?;
    if canonical.is_dir() {
        std::fs::read_dir(&canonical)
            .map_err(|e| QueryError::UnreadableLocation { path: canonical.display().to_string(), reason: e.to_string() })?;
        // DataFusion treats a trailing slash as "a directory of files".
        Ok(format!("{}/", canonical.display()))
    } else {
        std::fs::File::open(&canonical)
            .map_err(|e| QueryError::UnreadableLocation { path: canonical.display().to_string(), reason: e.to_string() })?;
        Ok(canonical.display().to_string())
    }
}

/// Builds the listing table `cmd` describes, through the table factory
/// DataFusion's own `CREATE EXTERNAL TABLE` would use, without registering
/// it anywhere. Schema inference failures are traced to the file that
/// caused them.
pub async fn build(state: &SessionState, mut cmd: CreateExternalTable) -> Result<Arc<dyn TableProvider>, QueryError> {
    attach_buckets(state, &mut cmd)?;
    let location = cmd.locations.first().cloned().unwrap_or_default();
    let is_parquet = cmd.file_type.eq_ignore_ascii_case("parquet");
    let name = cmd.name.to_string();
    let plan = state.statement_to_plan(DFStatement::CreateExternalTable(cmd)).await?;
    let LogicalPlan::Ddl(DdlStatement::CreateExternalTable(planned)) = plan else {
        return Err(QueryError::Unsupported(format!("plan for CREATE EXTERNAL TABLE {name}")));
    };
    let factory = state
        .table_factories()
        .get(planned.file_type.to_uppercase().as_str())
        .cloned()
        .ok_or_else(|| QueryError::Unsupported(format!("tables STORED AS {}", planned.file_type.to_uppercase())))?;
    match factory.create(state, &planned).await {
        Ok(table) => Ok(table),
        Err(e) => {
            if is_parquet
                && !s3::is_s3(&location)
                && let Some(bad) = super::diagnose::culprit(&location, "")
            {
                return Err(bad);
            }
            Err(e.into())
        }
    }
}

/// Takes the `aws.*` options out of `cmd` and lets DataFusion read each
/// `s3://` location's bucket through the client they configure.
fn attach_buckets(state: &SessionState, cmd: &mut CreateExternalTable) -> Result<(), QueryError> {
    let options = s3::S3Options::take_from(&mut cmd.options)?;
    let mut any = false;
    for location in cmd.locations.iter().filter(|l| s3::is_s3(l)) {
        let dir = s3::S3Dir::parse(location)?;
        s3::store(&dir.bucket, &options)?;
        s3::attach(state.runtime_env(), &dir)?;
        any = true;
    }
    if !any && !options.is_empty() {
        return Err(QueryError::InvalidOptionValue {
            option: "aws.*".into(),
            reason: "these options configure s3:// locations; this table has none".into(),
        });
    }
    Ok(())
}

/// Resolves a client's LOCATION: local ones through the sandbox
/// ([`resolve_location`]), `s3://` ones by asking the bucket (with the
/// table's `aws.*` options). Returns the location as stored.
pub async fn resolve_any(
    sandbox: &Sandbox,
    location: &str,
    create_missing: bool,
    options: &[(String, Value)],
) -> Result<String, QueryError> {
    if !s3::is_s3(location) {
        return resolve_location(sandbox, location, create_missing);
    }
    let options = s3::S3Options::take_from(&mut options.to_vec())?;
    Ok(s3::resolve(sandbox, location, &options).await?.url())
}

/// The stored definition of a table parsed back into DataFusion's
/// `CREATE EXTERNAL TABLE`.
fn parse_definition(definition: &str) -> Result<Option<CreateExternalTable>, QueryError> {
    let dialect = PostgreSqlDialect {};
    let mut parser = DFParserBuilder::new(definition).with_dialect(&dialect).build()?;
    match parser.parse_statements()?.pop_front() {
        Some(DFStatement::CreateExternalTable(cmd)) => Ok(Some(cmd)),
        _ => Ok(None),
    }
}

/// Rebuilds a persisted table from its stored definition, if the sandbox
/// still allows its locations (a server restarted with fewer
/// `--allow-path`s does not keep serving what it no longer allows).
pub async fn replay(
    state: &SessionState,
    sandbox: &Sandbox,
    def: &RelationDef,
) -> Result<Arc<dyn TableProvider>, QueryError> {
    let Some(cmd) = parse_definition(&def.definition)? else {
        return Err(QueryError::Unsupported(format!("stored definition of '{}'", def.name)));
    };
    for location in &cmd.locations {
        if s3::is_s3(location) {
            // No request: a store that is down now must not drop the table.
            s3::S3Dir::parse(location)?;
            s3::S3Options::take_from(&mut cmd.options.clone())?.check(sandbox)?;
        } else {
            sandbox.resolve(location)?;
        }
    }
    build(state, cmd).await
}

/// Builds a table weir itself defined (an owned table) from its stored
/// definition; its location is the warehouse's, allowed by construction.
pub async fn rebuild(state: &SessionState, def: &RelationDef) -> Result<Arc<dyn TableProvider>, QueryError> {
    match parse_definition(&def.definition)? {
        Some(cmd) => build(state, cmd).await,
        None => Err(QueryError::Unsupported(format!("stored definition of '{}'", def.name))),
    }
}

/// The partition columns a stored `CREATE EXTERNAL TABLE` declares (read
/// once, when a catalog of an older format is migrated).
pub fn partition_columns_of(definition: &str) -> Result<Vec<String>, QueryError> {
    Ok(parse_definition(definition)?.map(|cmd| partition_columns(&cmd)).unwrap_or_default())
}

/// The names of `cmd`'s partition columns. DataFusion's parser keeps a
/// quoted name as written (`"Day"`); the catalog keeps the name itself.
pub fn partition_columns(cmd: &CreateExternalTable) -> Vec<String> {
    let unquote = |raw: &String| match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => raw.clone(),
    };
    cmd.table_partition_cols.iter().map(unquote).collect()
}

/// A stored definition as clients are shown it (`SHOW CREATE TABLE`,
/// psql's `\d+`): secret options masked.
pub fn shown_definition(definition: &str) -> String {
    match parse_definition(definition) {
        Ok(Some(mut cmd)) if cmd.options.iter().any(|(k, _)| s3::is_secret(k)) => {
            s3::mask(&mut cmd.options);
            canonical_ddl(&cmd)
        }
        _ => definition.to_string(),
    }
}

/// The DDL that recreates `cmd`: every clause DataFusion's parser accepts,
/// unlike `CreateExternalTable`'s Display, which drops columns and options.
pub fn canonical_ddl(cmd: &CreateExternalTable) -> String {
    let mut sql = String::from("CREATE EXTERNAL TABLE ");
    let _ = write!(sql, "{}", cmd.name);
    if !cmd.columns.is_empty() {
        let cols: Vec<String> = cmd.columns.iter().map(|c| c.to_string()).collect();
        let _ = write!(sql, " ({})", cols.join(", "));
    }
    let _ = write!(sql, " STORED AS {}", cmd.file_type.to_uppercase());
    if !cmd.table_partition_cols.is_empty() {
        let cols: Vec<String> = cmd.table_partition_cols.iter().map(|c| quote_ident(c)).collect();
        let _ = write!(sql, " PARTITIONED BY ({})", cols.join(", "));
    }
    if !cmd.order_exprs.is_empty() {
        for ordering in &cmd.order_exprs {
            let exprs: Vec<String> = ordering.iter().map(|e| e.to_string()).collect();
            let _ = write!(sql, " WITH ORDER ({})", exprs.join(", "));
        }
    }
    if !cmd.options.is_empty() {
        let opts: Vec<String> =
            cmd.options.iter().map(|(k, v)| format!("{} {}", Value::SingleQuotedString(k.clone()), v)).collect();
        let _ = write!(sql, " OPTIONS ({})", opts.join(", "));
    }
    let locations: Vec<String> = cmd.locations.iter().map(|l| Value::SingleQuotedString(l.clone()).to_string()).collect();
    if locations.len() == 1 {
        let _ = write!(sql, " LOCATION {}", locations[0]);
    } else {
        let _ = write!(sql, " LOCATION ({})", locations.join(", "));
    }
    sql
}

fn quote_ident(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A directory of Parquet files with a known schema (a materialized view's
/// own table, a dead-letter or late-rows table): an empty directory is an
/// empty table.
pub fn parquet_dir_table(dir: &TableDir, schema: SchemaRef) -> Result<Arc<dyn TableProvider>, QueryError> {
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
    let url = ListingTableUrl::parse(dir.location())?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// The definition of a table weir writes for the user under `dir` (which
/// exists): a Parquet external table with `schema`'s columns, stored as the
/// DDL that recreates it like any user's table.
pub fn owned_table_def(name: &str, dir: &TableDir, schema: &Schema) -> Result<RelationDef, QueryError> {
    let location = match dir {
        TableDir::Local(dir) => {
            let canonical = std::fs::canonicalize(dir)
                .map_err(|e| QueryError::UnreadableLocation { path: dir.display().to_string(), reason: e.to_string() })?;
            format!("{}/", canonical.display())
        }
        TableDir::S3(dir) => dir.url(),
    };
    let quote = |ident: &str| format!("\"{}\"", ident.replace('"', "\"\""));
    let columns: Vec<String> =
        schema.fields().iter().map(|f| format!("{} {}", quote(f.name()), ddl_type_name(f.data_type()))).collect();
    let definition = format!(
        "CREATE EXTERNAL TABLE {} ({}) STORED AS PARQUET LOCATION {}",
        quote(name),
        columns.join(", "),
        Value::SingleQuotedString(location.clone())
    );
    Ok(RelationDef {
        name: name.to_string(),
        kind: RelationKind::ExternalTable,
        definition,
        location,
        format: "PARQUET".into(),
        partition_columns: Vec::new(),
    })
}

/// A column type as an owned table's DDL spells it: the name clients see
/// (`crate::types`), except that a list keeps its element type
/// (`integer[][]`), which DataFusion's SQL parses back to the same list
/// where the wire would send json.
fn ddl_type_name(dt: &DataType) -> String {
    match dt {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) | DataType::ListView(f) => {
            format!("{}[]", ddl_type_name(f.data_type()))
        }
        other => crate::types::sql_type_name(other),
    }
}
