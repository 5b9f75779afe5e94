//! `DESCRIBE t`: columns, their SQL types and nullability.

use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Output, table_key, text_batch, text_schema};
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};

pub fn schema() -> SchemaRef {
    text_schema(&["column_name", "data_type", "is_nullable"])
}

pub async fn handle(engine: &Engine, name: &ObjectName) -> Result<Output, QueryError> {
    let key = table_key(name)?;
    if !engine.context().table_exist(key.as_str())? {
        return Err(CatalogError::UnknownTable(key).into());
    }
    let provider = engine.context().table_provider(key.as_str()).await?;
    let rows = provider
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let nullable = if f.is_nullable() { "YES" } else { "NO" };
            vec![f.name().clone(), sql_type_name(f.data_type()), nullable.to_string()]
        })
        .collect();
    Ok(Output::batch(text_batch(schema(), rows)?))
}

/// The PostgreSQL spelling of an Arrow type, as `\d` would show it.
pub fn sql_type_name(dt: &DataType) -> String {
    match dt {
        DataType::Null => "unknown".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric(20,0)".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => format!("numeric({p},{s})"),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("numeric({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "bytea".into()
        }
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Duration(TimeUnit::Second | TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond)
        | DataType::Interval(_) => "interval".into(),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) | DataType::ListView(f) => {
            format!("{}[]", sql_type_name(f.data_type()))
        }
        DataType::Struct(_) | DataType::Map(..) => "json".into(),
        DataType::Dictionary(_, value) => sql_type_name(value),
        other => other.to_string().to_lowercase(),
    }
}
