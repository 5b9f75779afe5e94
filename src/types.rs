//! The one Arrow → PostgreSQL type table. A column of each Arrow type has
//! one PostgreSQL type everywhere a client can see it: the row description
//! the wire sends (`pgwire::encode`), `DESCRIBE` and stream schema messages
//! (`sql_type_name`), and `pg_catalog.pg_attribute` (`pg_catalog_compat`,
//! which `\d`, JDBC's `getColumns` and SQLAlchemy read); plus the type names
//! `to_regtype()` resolves.

use datafusion::arrow::datatypes::DataType;
use pgwire::api::Type;

/// The PostgreSQL type a column of this Arrow type is sent as.
pub fn pg_type(dt: &DataType) -> Type {
    match dt {
        DataType::Null => Type::TEXT,
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        // PostgreSQL has no unsigned types. DataFusion returns row_number(),
        // rank() and friends as UInt64 where PostgreSQL says bigint, and
        // clients expect the latter; the rare value above i64::MAX is an
        // error when sent (22003), never a wrapped number. Cast to numeric
        // to read such a column exactly.
        DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            Type::NUMERIC
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            // PostgreSQL arrays must be rectangular and of one scalar type, so
            // lists of lists or of structs go out as JSON instead.
            array_of(&pg_type(f.data_type())).unwrap_or_else(|| json_or_text(dt))
        }
        DataType::Struct(_) | DataType::Map(..) => json_or_text(dt),
        DataType::Dictionary(_, value) => pg_type(value),
        _ => Type::TEXT,
    }
}

/// The array type whose elements are `elem`, for the scalar types we send.
fn array_of(elem: &Type) -> Option<Type> {
    Some(match *elem {
        Type::BOOL => Type::BOOL_ARRAY,
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::FLOAT4 => Type::FLOAT4_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::TEXT => Type::TEXT_ARRAY,
        Type::BYTEA => Type::BYTEA_ARRAY,
        Type::DATE => Type::DATE_ARRAY,
        Type::TIME => Type::TIME_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::INTERVAL => Type::INTERVAL_ARRAY,
        _ => return None,
    })
}

fn json_or_text(dt: &DataType) -> Type {
    if json_compatible(dt) { Type::JSON } else { Type::TEXT }
}

/// Whether arrow-json can render every value of `dt` (map keys must be strings).
fn json_compatible(dt: &DataType) -> bool {
    match dt {
        DataType::Struct(fields) => fields.iter().all(|f| json_compatible(f.data_type())),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                matches!(kv[0].data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                    && json_compatible(kv[1].data_type())
            }
            _ => false,
        },
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => json_compatible(f.data_type()),
        DataType::Dictionary(_, value) => json_compatible(value),
        DataType::RunEndEncoded(_, values) => json_compatible(values.data_type()),
        d => {
            d.is_primitive()
                || d.is_temporal()
                || matches!(
                    d,
                    DataType::Null
                        | DataType::Boolean
                        | DataType::Utf8
                        | DataType::LargeUtf8
                        | DataType::Utf8View
                        | DataType::Binary
                        | DataType::LargeBinary
                        | DataType::BinaryView
                        | DataType::FixedSizeBinary(_)
                )
        }
    }
}

/// `pg_type.typlen` for the types we send; -1 marks variable width.
pub fn type_size(t: &Type) -> i16 {
    match *t {
        Type::BOOL => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::FLOAT4 | Type::DATE => 4,
        Type::INT8 | Type::FLOAT8 | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => 8,
        Type::INTERVAL => 16,
        _ => -1,
    }
}

/// `atttypmod`: numeric(p, s) is `(p << 16 | s) + 4`; clients such as pgjdbc
/// derive the display scale from it.
pub fn type_modifier(dt: &DataType) -> i32 {
    let (p, s) = match dt {
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            (*p, *s)
        }
        DataType::Dictionary(_, value) => return type_modifier(value),
        _ => return -1,
    };
    if s < 0 || i32::from(s) > i32::from(p) {
        return -1;
    }
    ((i32::from(p) << 16) | i32::from(s)) + 4
}

/// The PostgreSQL spelling of an Arrow type, as `DESCRIBE` shows it: the
/// name of [`pg_type`], with numeric's precision and scale when known.
pub fn sql_type_name(dt: &DataType) -> String {
    let t = pg_type(dt);
    match (name_of(&t), type_modifier(dt)) {
        ("numeric", typmod) if typmod >= 4 => format!("numeric({},{})", (typmod - 4) >> 16, (typmod - 4) & 0xffff),
        (name, _) => name.to_string(),
    }
}

/// The short name of a type [`pg_type`] returns (PostgreSQL's own spelling;
/// `timestamp` and `timestamptz` rather than the SQL standard's long forms).
fn name_of(t: &Type) -> &'static str {
    match *t {
        Type::BOOL => "boolean",
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::NUMERIC => "numeric",
        Type::BYTEA => "bytea",
        Type::DATE => "date",
        Type::TIME => "time",
        Type::TIMESTAMP => "timestamp",
        Type::TIMESTAMPTZ => "timestamptz",
        Type::INTERVAL => "interval",
        Type::JSON => "json",
        Type::BOOL_ARRAY => "boolean[]",
        Type::INT2_ARRAY => "smallint[]",
        Type::INT4_ARRAY => "integer[]",
        Type::INT8_ARRAY => "bigint[]",
        Type::FLOAT4_ARRAY => "real[]",
        Type::FLOAT8_ARRAY => "double precision[]",
        Type::NUMERIC_ARRAY => "numeric[]",
        Type::TEXT_ARRAY => "text[]",
        Type::BYTEA_ARRAY => "bytea[]",
        Type::DATE_ARRAY => "date[]",
        Type::TIME_ARRAY => "time[]",
        Type::TIMESTAMP_ARRAY => "timestamp[]",
        Type::TIMESTAMPTZ_ARRAY => "timestamptz[]",
        Type::INTERVAL_ARRAY => "interval[]",
        _ => "text",
    }
}

/// Built-in type names and their types, for `to_regtype`. Drivers use it to
/// probe for extension types (psycopg asks for `hstore` at connect); names
/// not listed resolve to NULL, meaning "no such type".
const NAMED: &[(&str, Type)] = &[
    ("bool", Type::BOOL),
    ("boolean", Type::BOOL),
    ("bytea", Type::BYTEA),
    ("int8", Type::INT8),
    ("bigint", Type::INT8),
    ("int2", Type::INT2),
    ("smallint", Type::INT2),
    ("int4", Type::INT4),
    ("integer", Type::INT4),
    ("int", Type::INT4),
    ("text", Type::TEXT),
    ("oid", Type::OID),
    ("json", Type::JSON),
    ("float4", Type::FLOAT4),
    ("real", Type::FLOAT4),
    ("float8", Type::FLOAT8),
    ("double precision", Type::FLOAT8),
    ("varchar", Type::VARCHAR),
    ("character varying", Type::VARCHAR),
    ("date", Type::DATE),
    ("time", Type::TIME),
    ("time without time zone", Type::TIME),
    ("timestamp", Type::TIMESTAMP),
    ("timestamp without time zone", Type::TIMESTAMP),
    ("timestamptz", Type::TIMESTAMPTZ),
    ("timestamp with time zone", Type::TIMESTAMPTZ),
    ("interval", Type::INTERVAL),
    ("numeric", Type::NUMERIC),
    ("decimal", Type::NUMERIC),
    ("uuid", Type::UUID),
    ("jsonb", Type::JSONB),
];

/// The OID of a built-in type by any of its names (`int8`, `bigint`,
/// `pg_catalog.int8`), as `to_regtype()` resolves it.
pub fn oid_by_name(name: &str) -> Option<i32> {
    let name = name.trim().trim_start_matches("pg_catalog.").to_ascii_lowercase();
    NAMED.iter().find(|(n, _)| *n == name).and_then(|(_, t)| i32::try_from(t.oid()).ok())
}

/// A column's `pg_attribute` type columns from the display form of its Arrow
/// type (what DataFusion's `information_schema.columns.data_type` holds):
/// `(atttypid, attlen, atttypmod)`; `None` for a form that does not parse.
pub fn attribute_of(arrow_type: &str) -> Option<(i32, i16, i32)> {
    let dt: DataType = arrow_type.parse().ok()?;
    let t = pg_type(&dt);
    Some((i32::try_from(t.oid()).ok()?, type_size(&t), type_modifier(&dt)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, TimeUnit};

    use super::*;

    /// UInt64 (row_number(), rank(), unsigned Parquet columns) is bigint on
    /// the wire, in DESCRIBE and in pg_attribute alike.
    #[test]
    fn uint64_is_bigint_everywhere() {
        assert_eq!(pg_type(&DataType::UInt64), Type::INT8);
        assert_eq!(sql_type_name(&DataType::UInt64), "bigint");
        assert_eq!(attribute_of("UInt64"), Some((20, 8, -1)));
    }

    /// The name DESCRIBE shows, the type the wire sends and the row
    /// pg_attribute lists agree for every kind of column.
    #[test]
    fn names_types_and_attributes_agree() {
        let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
        let cases = [
            (DataType::Boolean, "boolean"),
            (DataType::Int8, "smallint"),
            (DataType::UInt32, "bigint"),
            (DataType::Float64, "double precision"),
            (DataType::Decimal128(10, 2), "numeric(10,2)"),
            (DataType::Utf8View, "text"),
            (DataType::Timestamp(TimeUnit::Microsecond, None), "timestamp"),
            (DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())), "timestamptz"),
            (DataType::Duration(TimeUnit::Second), "interval"),
            (list(DataType::Int64), "bigint[]"),
            (list(DataType::UInt64), "bigint[]"),
            (list(list(DataType::Int64)), "json"),
            (DataType::Struct(vec![Field::new("a", DataType::Int32, true)].into()), "json"),
            (DataType::Null, "text"),
        ];
        for (dt, name) in cases {
            assert_eq!(sql_type_name(&dt), name, "{dt}");
            let t = pg_type(&dt);
            let attribute = (t.oid() as i32, type_size(&t), type_modifier(&dt));
            assert_eq!(attribute_of(&dt.to_string()), Some(attribute), "{dt}");
        }
    }

    #[test]
    fn to_regtype_names() {
        assert_eq!(oid_by_name("pg_catalog.INT8"), Some(20));
        assert_eq!(oid_by_name("double precision"), Some(701));
        assert_eq!(oid_by_name("hstore"), None);
    }
}

/// Whether a value of type `from` may be stored in a column of type `to`
/// without an explicit cast: PostgreSQL's assignment casts. Numbers go into
/// any number type (a value out of range is an error when it is written),
/// anything goes into text, dates and timestamps into each other. Text
/// does not go into a number, a date or a boolean: a sink whose SELECT list
/// is out of order would otherwise be accepted and fail on its first row.
pub fn assignable(from: &DataType, to: &DataType) -> bool {
    use datafusion::arrow::datatypes::DataType::*;
    // A dictionary is an encoding of its values' type (DataFusion reads a
    // Hive partition column as one): assign by the values' type.
    if let Dictionary(_, values) = from {
        return assignable(values, to);
    }
    if let Dictionary(_, values) = to {
        return assignable(from, values);
    }
    let text = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let temporal = |t: &DataType| matches!(t, Date32 | Date64 | Timestamp(_, _));
    if from == to || matches!(from, Null) || text(to) {
        return true;
    }
    if text(from) || matches!(from, Boolean) || matches!(to, Boolean) {
        return false;
    }
    if from.is_numeric() || to.is_numeric() {
        return from.is_numeric() && to.is_numeric();
    }
    if temporal(from) || temporal(to) {
        return temporal(from) && temporal(to);
    }
    datafusion::arrow::compute::can_cast_types(from, to)
}

#[cfg(test)]
mod assignment_tests {
    use super::assignable;
    use datafusion::arrow::datatypes::{DataType, TimeUnit};

    #[test]
    fn assignment_casts_follow_postgres() {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let dictionary = DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Utf8));
        for (from, to) in [
            (DataType::Utf8, dictionary.clone()),
            (DataType::Date32, dictionary),
            (DataType::Int32, DataType::Int64),
            (DataType::Int64, DataType::Int32),
            (DataType::Float64, DataType::Int64),
            (DataType::Int64, DataType::Utf8),
            (ts.clone(), DataType::Utf8),
            (DataType::Date32, ts.clone()),
            (DataType::Null, DataType::Int64),
        ] {
            assert!(assignable(&from, &to), "{from} -> {to}");
        }
        for (from, to) in [
            (DataType::Utf8, DataType::Int64),
            (DataType::Utf8View, DataType::Int32),
            (DataType::Utf8, ts.clone()),
            (DataType::Boolean, DataType::Int64),
            (DataType::Int64, DataType::Boolean),
            (ts, DataType::Int64),
        ] {
            assert!(!assignable(&from, &to), "{from} -> {to}");
        }
    }
}
