//! PostgreSQL functions that clients call in their catalog queries and that
//! datafusion-pg-catalog does not provide: `version()`, descriptions,
//! `to_regtype`, `json_build_object` and a few visibility checks.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;

use crate::engine::PG_VERSION;

pub fn register(ctx: &SessionContext) {
    // json_get_str(col, 'key'), `->` and `->>`: JSON held in text columns
    // (raw Kafka values) is queried without hand-rolled parsing.
    if let Err(e) = datafusion_functions_json::register_all(&mut *ctx.state_ref().write()) {
        tracing::warn!("JSON functions not registered: {e}");
    }
    ctx.register_udf(version_udf());
    // Weir keeps no comments on objects: every description is NULL, which
    // psql, JDBC and BI tools render as "no description".
    // No serial columns either (SQLAlchemy's reflection asks).
    for name in ["col_description", "obj_description", "shobj_description", "pg_get_serial_sequence"] {
        ctx.register_udf(ScalarUDF::from(NullText::new(name)));
    }
    ctx.register_udf(to_regtype_udf());
    ctx.register_udf(current_setting_udf());
    ctx.register_udf(ScalarUDF::from(JsonBuildObject { signature: Signature::variadic_any(Volatility::Immutable) }));
    ctx.register_udf(create_udf(
        "pg_collation_is_visible",
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))),
    ));
}

/// `current_setting(name)`: the server's default for a setting (Grafana reads
/// `server_version_num` this way). Unknown names are an error, as in PostgreSQL.
fn current_setting_udf() -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args| {
            use datafusion::arrow::array::{Array, StringArray};
            let lookup = |name: &str| {
                crate::handler::session::default_setting(name).ok_or_else(|| {
                    datafusion::error::DataFusionError::Plan(format!("unrecognized configuration parameter \"{name}\""))
                })
            };
            match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))) => {
                    Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(lookup(name)?))))
                }
                ColumnarValue::Array(a) => {
                    let names = a.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                        datafusion::error::DataFusionError::Plan("current_setting expects text".into())
                    })?;
                    let values = (0..names.len())
                        .map(|i| if names.is_null(i) { Ok(None) } else { lookup(names.value(i)).map(Some) })
                        .collect::<Result<StringArray>>()?;
                    Ok(ColumnarValue::Array(Arc::new(values)))
                }
                _ => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
            }
        }),
    )
}

/// Built-in type names and their OIDs, for `to_regtype`. Drivers use it to
/// probe for extension types (psycopg asks for `hstore` at connect); names
/// not listed resolve to NULL, meaning "no such type".
const TYPE_OIDS: &[(&str, i32)] = &[
    ("bool", 16), ("boolean", 16), ("bytea", 17), ("int8", 20), ("bigint", 20), ("int2", 21),
    ("smallint", 21), ("int4", 23), ("integer", 23), ("int", 23), ("text", 25), ("oid", 26),
    ("json", 114), ("float4", 700), ("real", 700), ("float8", 701), ("double precision", 701),
    ("varchar", 1043), ("character varying", 1043), ("date", 1082), ("time", 1083),
    ("time without time zone", 1083), ("timestamp", 1114), ("timestamp without time zone", 1114),
    ("timestamptz", 1184), ("timestamp with time zone", 1184), ("interval", 1186),
    ("numeric", 1700), ("decimal", 1700), ("uuid", 2950), ("jsonb", 3802),
];

fn to_regtype_udf() -> ScalarUDF {
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(|args| {
            use datafusion::arrow::array::{Array, Int32Array, StringArray};
            let lookup = |name: &str| {
                let name = name.trim().trim_start_matches("pg_catalog.").to_ascii_lowercase();
                TYPE_OIDS.iter().find(|(n, _)| *n == name).map(|(_, oid)| *oid)
            };
            match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Utf8(v)) => {
                    Ok(ColumnarValue::Scalar(ScalarValue::Int32(v.as_deref().and_then(lookup))))
                }
                ColumnarValue::Array(a) => {
                    let names = a.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                        datafusion::error::DataFusionError::Internal("to_regtype expects text".into())
                    })?;
                    let oids: Int32Array = (0..names.len())
                        .map(|i| if names.is_null(i) { None } else { lookup(names.value(i)) })
                        .collect();
                    Ok(ColumnarValue::Array(Arc::new(oids)))
                }
                other => Err(datafusion::error::DataFusionError::Plan(format!(
                    "to_regtype expects text, got {}",
                    other.data_type()
                ))),
            }
        }),
    )
}

fn version_udf() -> ScalarUDF {
    let version = format!(
        "PostgreSQL {PG_VERSION} (weir {}) on {}-linux, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(version.clone()))))),
    )
}

/// A function of any arguments that returns NULL text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NullText {
    name: &'static str,
    signature: Signature,
}

impl NullText {
    fn new(name: &'static str) -> NullText {
        NullText { name, signature: Signature::variadic_any(Volatility::Stable) }
    }
}

impl ScalarUDFImpl for NullText {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}

/// `json_build_object(k1, v1, k2, v2, ...)`: a JSON object per row, as text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::StringArray;
        use datafusion::error::DataFusionError;
        if args.args.len() % 2 != 0 {
            return Err(DataFusionError::Plan("json_build_object needs an even number of arguments".into()));
        }
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.clone().into_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = match ScalarValue::try_from_array(&pair[0], row)? {
                    ScalarValue::Utf8(Some(k)) | ScalarValue::LargeUtf8(Some(k)) | ScalarValue::Utf8View(Some(k)) => k,
                    other => other.to_string(),
                };
                object.insert(key, json_value(ScalarValue::try_from_array(&pair[1], row)?));
            }
            out.push(Some(serde_json::Value::Object(object).to_string()));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

fn json_value(v: ScalarValue) -> serde_json::Value {
    use serde_json::Value;
    if v.is_null() {
        return Value::Null;
    }
    match v {
        ScalarValue::Boolean(Some(b)) => Value::Bool(b),
        ScalarValue::Int8(Some(i)) => Value::from(i),
        ScalarValue::Int16(Some(i)) => Value::from(i),
        ScalarValue::Int32(Some(i)) => Value::from(i),
        ScalarValue::Int64(Some(i)) => Value::from(i),
        ScalarValue::UInt8(Some(i)) => Value::from(i),
        ScalarValue::UInt16(Some(i)) => Value::from(i),
        ScalarValue::UInt32(Some(i)) => Value::from(i),
        ScalarValue::UInt64(Some(i)) => Value::from(i),
        ScalarValue::Float32(Some(f)) => Value::from(f),
        ScalarValue::Float64(Some(f)) => Value::from(f),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Value::String(s),
        other => Value::String(other.to_string()),
    }
}
