//! PostgreSQL functions that clients call in their catalog queries and that
//! datafusion-pg-catalog does not provide: `version()`, descriptions,
//! `to_regtype`, `json_build_object`, `format` and a few visibility checks.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;

use crate::catalog::PG_VERSION;

pub fn register(ctx: &SessionContext) {
    // json_get_str(col, 'key'), `->` and `->>`: JSON held in text columns
    // (raw Kafka values) is queried without hand-rolled parsing.
    if let Err(e) = datafusion_functions_json::register_all(&mut *ctx.state_ref().write()) {
        tracing::warn!("JSON functions not registered: {e}");
    }
    ctx.register_udf(version_udf());
    // Weir keeps no comments on objects: every description is NULL, which
    // psql, JDBC and BI tools render as "no description".
    // No serial columns either (SQLAlchemy's reflection asks), and no
    // indexes: an index definition is NULL, as PostgreSQL answers for an
    // OID that is no index.
    // Nor user-defined functions: psql's `\df` lists the functions outside
    // pg_catalog (there are none), and needs their signatures' text to plan.
    for name in [
        "col_description",
        "obj_description",
        "shobj_description",
        "pg_get_serial_sequence",
        "pg_get_indexdef",
        "pg_get_function_result",
        "pg_get_function_arguments",
    ] {
        ctx.register_udf(ScalarUDF::from(NullText::new(name)));
    }
    ctx.register_udf(to_regtype_udf());
    ctx.register_udf(current_setting_udf());
    ctx.register_udf(ScalarUDF::from(JsonBuildObject { signature: Signature::variadic_any(Volatility::Immutable) }));
    ctx.register_udf(ScalarUDF::from(Format { signature: Signature::variadic_any(Volatility::Stable) }));
    ctx.register_udf(pg_size_pretty_udf());
    ctx.register_udf(encoding_to_char_udf());
    // Weir has one schema of user objects, always on the path: no object
    // is hidden behind another of the same name (psql's `\df`, `\dT`).
    for name in ["pg_collation_is_visible", "pg_function_is_visible", "pg_type_is_visible"] {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Int32],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))),
        ));
    }
}

/// `current_setting(name)`: the server's default for a setting (Grafana reads
/// `server_version_num` this way). Unknown names are an error, as in PostgreSQL.
/// Each statement of a session gets [`session_current_setting`] instead.
fn current_setting_udf() -> ScalarUDF {
    session_current_setting(crate::session::SessionVars::new())
}

/// `current_setting(name)` as one session sees it: its own `SET`s, then its
/// start-up parameters, then the server defaults (Grafana reads
/// `search_path` after setting it).
pub fn session_current_setting(vars: crate::session::SessionVars) -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args| {
            use datafusion::arrow::array::{Array, StringArray};
            let lookup = |name: &str| {
                crate::session::setting(&vars, name).ok_or_else(|| {
                    datafusion::error::DataFusionError::Plan(format!("unrecognized configuration parameter \"{name}\""))
                })
            };
            match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))) => {
                    Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(lookup(name)?))))
                }
                ColumnarValue::Array(a) => {
                    let names = a
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| datafusion::error::DataFusionError::Plan("current_setting expects text".into()))?;
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

/// `current_schema()` as one session sees it: the first schema on its
/// `search_path` that exists (`public` by default), as PostgreSQL answers.
pub fn session_current_schema(schema: String) -> ScalarUDF {
    constant_udf("current_schema", ScalarValue::Utf8(Some(schema)))
}

/// `current_user`, `session_user`, `user` and `current_role` for a session
/// logged in as `user` (weir has no roles to switch to: all four agree).
pub fn session_user(user: &str) -> Vec<ScalarUDF> {
    let mut udfs: Vec<ScalarUDF> = ["current_user", "session_user", "user", "current_role"]
        .into_iter()
        .map(|name| constant_udf(name, ScalarValue::Utf8(Some(user.to_string()))))
        .collect();
    udfs.push(userbyid_udf(user));
    udfs
}

/// `pg_get_userbyid(oid)`: the session's user for every owner OID. Weir
/// has no ownership: whoever is connected may use every object, so psql's
/// Owner columns (`\dt`, `\l`, `\dn`) name the connected user, as they
/// would for objects the user created in PostgreSQL.
fn userbyid_udf(user: &str) -> ScalarUDF {
    let user = ScalarValue::Utf8(Some(user.to_string()));
    create_udf(
        "pg_get_userbyid",
        vec![DataType::Int32],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            Ok(match &args[0] {
                ColumnarValue::Scalar(_) => ColumnarValue::Scalar(user.clone()),
                ColumnarValue::Array(owners) => ColumnarValue::Array(user.to_array_of_size(owners.len())?),
            })
        }),
    )
}

/// `pg_backend_pid()`: the process id this connection got at start-up, the
/// one its cancel requests carry.
pub fn session_backend_pid(pid: i32) -> ScalarUDF {
    constant_udf("pg_backend_pid", ScalarValue::Int32(Some(pid)))
}

/// A function without arguments that answers `value` for one session.
fn constant_udf(name: &str, value: ScalarValue) -> ScalarUDF {
    create_udf(
        name,
        vec![],
        value.data_type(),
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(value.clone()))),
    )
}

/// `pg_encoding_to_char(int)`: PostgreSQL's encoding names (`\l` shows
/// `UTF8`, as PostgreSQL does; weir's databases are UTF-8). Other codes
/// give '', as PostgreSQL answers for a code it does not know.
fn encoding_to_char_udf() -> ScalarUDF {
    create_udf(
        "pg_encoding_to_char",
        vec![DataType::Int32],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let name = |code: Option<i32>| match code {
                Some(0) => Some("SQL_ASCII"),
                Some(6) => Some("UTF8"),
                Some(_) => Some(""),
                None => None,
            };
            let codes = ColumnarValue::values_to_arrays(args)?;
            let codes = datafusion::arrow::compute::cast(&codes[0], &DataType::Int32)?;
            let codes = codes.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
            let names: datafusion::arrow::array::StringArray = codes.iter().map(name).collect();
            Ok(ColumnarValue::Array(Arc::new(names)))
        }),
    )
}

/// `pg_size_pretty(bigint)`: a byte count in bytes, kB, MB, GB, TB or PB,
/// rounded as PostgreSQL rounds it (psql's `\l+` and `\dt+` show sizes so).
fn pg_size_pretty_udf() -> ScalarUDF {
    create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args| {
            use datafusion::arrow::array::{Array, Int64Array, StringArray};
            match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Int64(v)) => {
                    Ok(ColumnarValue::Scalar(ScalarValue::Utf8(v.map(size_pretty))))
                }
                ColumnarValue::Array(a) => {
                    let sizes = a.as_any().downcast_ref::<Int64Array>().ok_or_else(|| {
                        datafusion::error::DataFusionError::Internal("pg_size_pretty expects bigint".into())
                    })?;
                    let text: StringArray = sizes.iter().map(|v| v.map(size_pretty)).collect();
                    Ok(ColumnarValue::Array(Arc::new(text)))
                }
                _ => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
            }
        }),
    )
}

/// PostgreSQL's `pg_size_pretty`: bytes below 10 kB; then, counting in
/// halves of a unit, the first unit whose count of halves is below 20479,
/// rounded half away from zero (PB past that).
fn size_pretty(size: i64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if size.unsigned_abs() < 10 * 1024 {
        return format!("{size} bytes");
    }
    let (mut halves, mut unit) = (size / 512, 0);
    while halves.unsigned_abs() >= 20 * 1024 - 1 && unit < UNITS.len() - 1 {
        halves /= 1024;
        unit += 1;
    }
    let rounded = (halves + if halves < 0 { -1 } else { 1 }) / 2;
    format!("{rounded} {}", UNITS[unit])
}

/// `to_regtype(name)`: the OID of a built-in type (`crate::types`), NULL
/// for a name weir does not know.
fn to_regtype_udf() -> ScalarUDF {
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(|args| {
            use datafusion::arrow::array::{Array, Int32Array, StringArray};
            let lookup = crate::types::oid_by_name;
            match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Utf8(v)) => {
                    Ok(ColumnarValue::Scalar(ScalarValue::Int32(v.as_deref().and_then(lookup))))
                }
                ColumnarValue::Array(a) => {
                    let names = a
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| datafusion::error::DataFusionError::Internal("to_regtype expects text".into()))?;
                    let oids: Int32Array =
                        (0..names.len()).map(|i| if names.is_null(i) { None } else { lookup(names.value(i)) }).collect();
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
        if !args.args.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan("json_build_object needs an even number of arguments".into()));
        }
        let rows = args.number_rows;
        let arrays = args.args.iter().map(|a| a.clone().into_array(rows)).collect::<Result<Vec<_>>>()?;
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

/// `format(fmt, args...)`: `%s` (value as text, NULL as nothing), `%I`
/// (quoted as an identifier if need be), `%L` (quoted as a literal, NULL as
/// `NULL`), `%%`, each optionally numbered (`%2$s`). Metabase builds type
/// names with it. Widths and the `-` flag are rejected by name.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
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
        if args.args.is_empty() {
            return Err(DataFusionError::Plan("format() needs a format string".into()));
        }
        let rows = args.number_rows;
        let arrays = args.args.iter().map(|a| a.clone().into_array(rows)).collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let values = arrays.iter().map(|a| ScalarValue::try_from_array(a, row)).collect::<Result<Vec<_>>>()?;
            out.push(match text_of(&values[0]) {
                None => None,
                Some(fmt) => Some(format_row(&fmt, &values[1..]).map_err(DataFusionError::Execution)?),
            });
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

/// A value as PostgreSQL prints it, or `None` for NULL.
fn text_of(v: &ScalarValue) -> Option<String> {
    if v.is_null() {
        return None;
    }
    Some(match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => s.clone(),
        ScalarValue::Boolean(Some(b)) => if *b { "t" } else { "f" }.to_string(),
        other => other.to_string(),
    })
}

fn format_row(fmt: &str, args: &[ScalarValue]) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(fmt.len());
    let mut chars = fmt.chars().peekable();
    let mut next_arg = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        if !digits.is_empty() {
            if chars.next() != Some('$') {
                return Err("format() field widths are not supported".into());
            }
            let position: usize =
                digits.parse().map_err(|_| format!("format() argument position {digits} is out of range"))?;
            next_arg = position.checked_sub(1).ok_or("format() argument positions start at 1")?;
        }
        let kind = chars.next().ok_or("unterminated format() type specifier")?;
        let value = args.get(next_arg).ok_or("too few arguments for format()")?;
        next_arg += 1;
        match kind {
            's' => out.push_str(&text_of(value).unwrap_or_default()),
            'I' => {
                let ident = text_of(value).ok_or("null values cannot be formatted as an SQL identifier")?;
                out.push_str(&quote_ident(&ident));
            }
            'L' => match text_of(value) {
                None => out.push_str("NULL"),
                Some(text) => out.push_str(&quote_literal(&text)),
            },
            '-' | '*' => return Err("format() field widths and flags are not supported".into()),
            other => return Err(format!("unrecognized format() type specifier \"{other}\"")),
        }
    }
    Ok(out)
}

/// PostgreSQL's reserved key words (and those that cannot name a function or
/// type), which `quote_ident` always quotes.
const RESERVED_WORDS: &str = "all analyse analyze and any array as asc asymmetric authorization between bigint \
    binary bit boolean both case cast char character check coalesce collate collation column concurrently \
    constraint create cross current_catalog current_date current_role current_schema current_time \
    current_timestamp current_user dec decimal default deferrable desc distinct do else end except exists \
    extract false fetch float for foreign freeze from full grant greatest group grouping having ilike in \
    initially inner inout int integer intersect interval into is isnull join lateral leading least left like \
    limit localtime localtimestamp national natural nchar none normalize not notnull null nullif numeric offset \
    on only or order out outer overlaps overlay placing position precision primary real references returning \
    right row select session_user setof similar smallint some substring symmetric table tablesample then time \
    timestamp to trailing treat trim true union unique user using values varchar variadic verbose when where \
    window with";

/// `quote_ident`: unquoted only when PostgreSQL would read the text back
/// unchanged (lower case, digits, `_`, `$`, not a reserved word).
fn quote_ident(ident: &str) -> String {
    let plain = ident.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && ident.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !RESERVED_WORDS.split_whitespace().any(|w| w == ident);
    if plain { ident.to_string() } else { format!("\"{}\"", ident.replace('"', "\"\"")) }
}

/// `quote_literal`: a string constant; with backslashes, the `E''` form.
fn quote_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') { format!("E'{}'", quoted.replace('\\', "\\\\")) } else { format!("'{quoted}'") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_postgresql() {
        let args = [ScalarValue::from("public"), ScalarValue::from("My Table"), ScalarValue::Utf8(None)];
        assert_eq!(format_row("%I.%I", &args).unwrap(), "public.\"My Table\"");
        assert_eq!(format_row("\"%s\".\"%s\" %% %s|", &args).unwrap(), "\"public\".\"My Table\" % |");
        assert_eq!(format_row("%2$L %1$s %3$L", &args).unwrap(), "'My Table' public NULL");
        assert_eq!(format_row("%I", &[ScalarValue::from("select")]).unwrap(), "\"select\"");
        assert_eq!(format_row("%L", &[ScalarValue::from("it's a\\b")]).unwrap(), "E'it''s a\\\\b'");
        assert!(format_row("%s %s", &args[..1]).is_err());
        assert!(format_row("%I", &args[2..]).is_err());
        assert!(format_row("%x", &args).is_err());
    }
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn size_pretty_matches_postgres() {
        // Values as PostgreSQL 15 prints them.
        for (bytes, text) in [
            (0, "0 bytes"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (10485247, "10239 kB"),
            (10485248, "10 MB"),
            (20971520, "20 MB"),
            (1_000_000_000, "954 MB"),
            (-10240, "-10 kB"),
            (i64::MAX, "8192 PB"),
        ] {
            assert_eq!(super::size_pretty(bytes), text, "{bytes}");
        }
    }
}
