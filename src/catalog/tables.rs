//! External tables as DataFusion sees them: resolving locations, creating
//! listing tables from `CREATE EXTERNAL TABLE`, and rendering the canonical
//! DDL that the store keeps.

use std::fmt::Write as _;
use std::path::Path;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{CreateExternalTable, DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Value;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

use super::store::RelationDef;
use crate::error::QueryError;
use crate::storage::Sandbox;

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
        std::fs::create_dir_all(&resolved).map_err(|e| QueryError::UnreadableLocation {
            path: resolved.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    // Resolved again now that it exists: what was created is what is read.
    let canonical = std::fs::canonicalize(&resolved).map_err(|e| QueryError::UnreadableLocation {
        path: resolved.display().to_string(),
        reason: e.to_string(),
    })?;
    sandbox.check(&canonical)?;
    if canonical.is_dir() {
        std::fs::read_dir(&canonical).map_err(|e| QueryError::UnreadableLocation {
            path: canonical.display().to_string(),
            reason: e.to_string(),
        })?;
        // DataFusion treats a trailing slash as "a directory of files".
        Ok(format!("{}/", canonical.display()))
    } else {
        std::fs::File::open(&canonical).map_err(|e| QueryError::UnreadableLocation {
            path: canonical.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(canonical.display().to_string())
    }
}

/// Creates the listing table in `ctx` and returns its schema. Schema
/// inference failures are traced to the file that caused them.
pub async fn create(ctx: &SessionContext, cmd: CreateExternalTable) -> Result<SchemaRef, QueryError> {
    let location = cmd.locations.first().cloned().unwrap_or_default();
    let is_parquet = cmd.file_type.eq_ignore_ascii_case("parquet");
    let name = cmd.name.to_string();
    let state = ctx.state();
    let plan = state.statement_to_plan(DFStatement::CreateExternalTable(cmd)).await?;
    let table_ref = match &plan {
        LogicalPlan::Ddl(DdlStatement::CreateExternalTable(c)) => c.name.clone(),
        _ => return Err(QueryError::Unsupported(format!("plan for CREATE EXTERNAL TABLE {name}"))),
    };
    if let Err(e) = ctx.execute_logical_plan(plan).await {
        if is_parquet && let Some(bad) = super::diagnose::culprit(&location, "") {
            return Err(bad);
        }
        return Err(e.into());
    }
    let provider = ctx.table_provider(table_ref).await?;
    Ok(provider.schema())
}

/// Re-creates a persisted table from its stored definition, if the
/// sandbox still allows its locations (a server restarted with fewer
/// `--allow-path`s does not keep serving what it no longer allows).
pub async fn replay(ctx: &SessionContext, sandbox: &Sandbox, def: &RelationDef) -> Result<(), QueryError> {
    let dialect = PostgreSqlDialect {};
    let mut parser = DFParserBuilder::new(def.definition.as_str()).with_dialect(&dialect).build()?;
    match parser.parse_statements()?.pop_front() {
        Some(DFStatement::CreateExternalTable(cmd)) => {
            for location in &cmd.locations {
                sandbox.resolve(location)?;
            }
            create(ctx, cmd).await.map(|_| ())
        }
        _ => Err(QueryError::Unsupported(format!("stored definition of '{}'", def.name))),
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
        let opts: Vec<String> = cmd
            .options
            .iter()
            .map(|(k, v)| format!("{} {}", Value::SingleQuotedString(k.clone()), v))
            .collect();
        let _ = write!(sql, " OPTIONS ({})", opts.join(", "));
    }
    let locations: Vec<String> =
        cmd.locations.iter().map(|l| Value::SingleQuotedString(l.clone()).to_string()).collect();
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

/// Registers a directory of Parquet files with a known schema (a
/// materialized view's own table): an empty directory is an empty table.
pub async fn register_parquet_dir(
    ctx: &SessionContext,
    name: &str,
    dir: &Path,
    schema: SchemaRef,
) -> Result<(), QueryError> {
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
    let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
    let options = ListingOptions::new(std::sync::Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(schema);
    let table = ListingTable::try_new(config)?;
    ctx.register_table(name, std::sync::Arc::new(table))?;
    Ok(())
}

/// Creates the external Parquet table `name` over `dir`, a directory weir
/// writes for the user (`<stream>_errors`, `<query>_late`), with `schema`'s
/// columns, and returns what the store records for it.
pub async fn create_owned(ctx: &SessionContext, name: &str, dir: &Path, schema: &Schema) -> Result<RelationDef, QueryError> {
    let quote = |ident: &str| format!("\"{}\"", ident.replace('"', "\"\""));
    let columns: Vec<String> =
        schema.fields().iter().map(|f| format!("{} {}", quote(f.name()), ddl_type_name(f.data_type()))).collect();
    let ddl = format!(
        "CREATE EXTERNAL TABLE {} ({}) STORED AS PARQUET LOCATION '{}/'",
        quote(name),
        columns.join(", "),
        dir.display().to_string().replace('\'', "''")
    );
    // The parser is not Send: it is gone before the first await.
    let parsed = {
        let dialect = PostgreSqlDialect {};
        DFParserBuilder::new(ddl.as_str()).with_dialect(&dialect).build()?.parse_statements()?.pop_front()
    };
    let Some(DFStatement::CreateExternalTable(cmd)) = parsed else {
        return Err(QueryError::Internal(format!("the definition of '{name}' did not parse back")));
    };
    let def = RelationDef {
        name: name.to_string(),
        kind: super::RelationKind::ExternalTable,
        definition: canonical_ddl(&cmd),
        location: cmd.locations.join(", "),
        format: "PARQUET".into(),
    };
    create(ctx, cmd).await?;
    Ok(def)
}

/// A column type as `create_owned`'s DDL spells it: the name clients see
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
