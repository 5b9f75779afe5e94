//! Scenarios for bound parameters: text and binary values as psql, psycopg,
//! pgjdbc and node-postgres send them, decoded to exactly the expected type.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::arrow::temporal_conversions::{date32_to_datetime, timestamp_us_to_datetime};
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::api::stmt::StoredStatement;
use pgwire::error::PgWireError;
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::Bind;
use tokio_postgres::types::ToSql;

use super::*;

fn portal(declared: Vec<Option<Type>>, formats: Vec<i16>, params: Vec<Option<Vec<u8>>>) -> Portal<()> {
    let stmt = Arc::new(StoredStatement::new("s1".to_owned(), (), declared));
    let params = params.into_iter().map(|p| p.map(Into::into)).collect();
    let bind = Bind::new(None, Some("s1".to_owned()), formats, params, vec![]);
    Portal::try_new(&bind, stmt).unwrap()
}

/// One text parameter, no declared type, the given inferred type.
fn text_param(value: &str, inferred: Option<DataType>) -> PgWireResult<ScalarValue> {
    let p = portal(vec![], vec![], vec![Some(value.as_bytes().to_vec())]);
    decode_params(&p, &[inferred]).map(|mut v| v.remove(0))
}

/// One binary parameter of a declared type.
fn binary_param(value: Vec<u8>, declared: Type, inferred: Option<DataType>) -> PgWireResult<ScalarValue> {
    let p = portal(vec![Some(declared)], vec![1], vec![Some(value)]);
    decode_params(&p, &[inferred]).map(|mut v| v.remove(0))
}

fn to_binary<T: ToSql>(v: T, ty: &Type) -> Vec<u8> {
    // DataRow's buffer is a BytesMut, which is what ToSql writes into.
    let mut buf = DataRow::default().data;
    v.to_sql(ty, &mut buf).unwrap();
    buf.to_vec()
}

fn sqlstate(r: PgWireResult<ScalarValue>) -> String {
    match r {
        Err(PgWireError::UserError(info)) => info.code.clone(),
        other => panic!("expected a user error, got {other:?}"),
    }
}

const TS_US: i64 = 1_704_164_645_000_000; // 2024-01-02 03:04:05 UTC

#[test]
fn text_params_take_the_inferred_type() {
    let ok = |v: &str, dt: DataType| text_param(v, Some(dt)).unwrap();
    assert_eq!(ok(" 42 ", DataType::Int32), ScalarValue::Int32(Some(42)));
    assert_eq!(ok("42", DataType::UInt8), ScalarValue::UInt8(Some(42)));
    assert_eq!(ok("yes", DataType::Boolean), ScalarValue::Boolean(Some(true)));
    assert_eq!(ok("f", DataType::Boolean), ScalarValue::Boolean(Some(false)));
    assert_eq!(ok("Infinity", DataType::Float64), ScalarValue::Float64(Some(f64::INFINITY)));
    assert_eq!(ok("1.5", DataType::Float32), ScalarValue::Float32(Some(1.5)));
    assert_eq!(ok("12.345", DataType::Decimal128(10, 2)), ScalarValue::Decimal128(Some(1235), 10, 2));
    assert_eq!(ok("-1e2", DataType::Decimal128(10, 2)), ScalarValue::Decimal128(Some(-10000), 10, 2));
    assert_eq!(ok("héllo", DataType::Utf8View), ScalarValue::Utf8View(Some("héllo".into())));
    assert_eq!(ok("\\x01ff", DataType::Binary), ScalarValue::Binary(Some(vec![1, 255])));
    assert_eq!(ok("a\\\\b\\001", DataType::Binary), ScalarValue::Binary(Some(b"a\\b\x01".to_vec())));
    assert_eq!(ok("2024-01-02", DataType::Date32), ScalarValue::Date32(Some(19_724)));
    assert_eq!(
        ok("03:04:05.5", DataType::Time64(TimeUnit::Microsecond)),
        ScalarValue::Time64Microsecond(Some(11_045_500_000))
    );
    assert_eq!(
        ok("2024-01-02 03:04:05.5", DataType::Timestamp(TimeUnit::Microsecond, None)),
        ScalarValue::TimestampMicrosecond(Some(TS_US + 500_000), None)
    );
    assert_eq!(
        ok("2024-01-02 04:04:05+01", DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()))),
        ScalarValue::TimestampNanosecond(Some(TS_US * 1_000), Some("+00:00".into()))
    );
    let hms = (4 * 3600 + 5 * 60 + 6) * 1_000_000_000;
    assert_eq!(
        ok("1 year 2 mons 3 days 04:05:06", DataType::Interval(IntervalUnit::MonthDayNano)),
        ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(14, 3, hms)))
    );
    // pgjdbc's PGInterval text.
    assert_eq!(
        ok("0 years 0 mons -1 days 0 hours 0 mins 1.5 secs", DataType::Interval(IntervalUnit::MonthDayNano)),
        ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, -1, 1_500_000_000)))
    );
    // With no type at all the value is text.
    assert_eq!(text_param("7", None).unwrap(), ScalarValue::Utf8(Some("7".into())));
}

#[test]
fn declared_types_win_over_inferred_ones() {
    let p = portal(
        vec![Some(Type::INT8), Some(Type::NUMERIC), Some(Type::UNKNOWN)],
        vec![],
        vec![Some(b"5".to_vec()), Some(b"1.005".to_vec()), Some(b"3".to_vec())],
    );
    let inferred = [Some(DataType::Int32), Some(DataType::Decimal128(10, 2)), Some(DataType::Int16)];
    let v = decode_params(&p, &inferred).unwrap();
    assert_eq!(v[0], ScalarValue::Int64(Some(5)));
    // NUMERIC carries no scale in Parse, so the statement's decimal type is kept.
    assert_eq!(v[1], ScalarValue::Decimal128(Some(101), 10, 2));
    // `unknown` is no declaration at all.
    assert_eq!(v[2], ScalarValue::Int16(Some(3)));
}

#[test]
fn nulls_are_typed() {
    let p = portal(vec![Some(Type::INT4)], vec![], vec![None, None]);
    let v = decode_params(&p, &[None, Some(DataType::Date32)]).unwrap();
    assert_eq!(v, vec![ScalarValue::Int32(None), ScalarValue::Date32(None)]);
}

#[test]
fn binary_params_decode_postgres_wire_format() {
    let b = |v: Vec<u8>, t: Type| binary_param(v, t, None).unwrap();
    assert_eq!(b(to_binary(42i32, &Type::INT4), Type::INT4), ScalarValue::Int32(Some(42)));
    assert_eq!(b(to_binary(-7i64, &Type::INT8), Type::INT8), ScalarValue::Int64(Some(-7)));
    assert_eq!(b(to_binary(3i16, &Type::INT2), Type::INT2), ScalarValue::Int16(Some(3)));
    assert_eq!(b(to_binary(0.5f64, &Type::FLOAT8), Type::FLOAT8), ScalarValue::Float64(Some(0.5)));
    assert_eq!(b(to_binary(true, &Type::BOOL), Type::BOOL), ScalarValue::Boolean(Some(true)));
    assert_eq!(b(to_binary("héllo", &Type::TEXT), Type::VARCHAR), ScalarValue::Utf8(Some("héllo".into())));
    assert_eq!(b(vec![1, 2], Type::BYTEA), ScalarValue::Binary(Some(vec![1, 2])));
    let date = date32_to_datetime(19_724).unwrap().date();
    assert_eq!(b(to_binary(date, &Type::DATE), Type::DATE), ScalarValue::Date32(Some(19_724)));
    let ts = timestamp_us_to_datetime(TS_US + 123_456).unwrap();
    assert_eq!(
        b(to_binary(ts, &Type::TIMESTAMP), Type::TIMESTAMP),
        ScalarValue::TimestampMicrosecond(Some(TS_US + 123_456), None)
    );
    assert_eq!(
        b(to_binary(ts.and_utc(), &Type::TIMESTAMPTZ), Type::TIMESTAMPTZ),
        ScalarValue::TimestampMicrosecond(Some(TS_US + 123_456), Some("+00:00".into()))
    );
    let jsonb = to_binary(serde_json::json!({"a": 1}), &Type::JSONB);
    assert_eq!(b(jsonb, Type::JSONB), ScalarValue::Utf8(Some(r#"{"a":1}"#.into())));
    let uuid = (0u8..16).collect::<Vec<_>>();
    assert_eq!(b(uuid, Type::UUID), ScalarValue::Utf8(Some("00010203-0405-0607-0809-0a0b0c0d0e0f".into())));

    // numeric 12.30: ndigits 2, weight 0, sign +, dscale 2, digits [12, 3000]
    let words: Vec<u8> = [2i16, 0, 0, 2, 12, 3000].iter().flat_map(|w| w.to_be_bytes()).collect();
    assert_eq!(b(words.clone(), Type::NUMERIC), ScalarValue::Decimal128(Some(123_000_000_000), 38, 10));
    let rescaled = binary_param(words, Type::NUMERIC, Some(DataType::Decimal128(5, 1))).unwrap();
    assert_eq!(rescaled, ScalarValue::Decimal128(Some(123), 5, 1));

    let mut interval = 1_500_000i64.to_be_bytes().to_vec();
    interval.extend_from_slice(&3i32.to_be_bytes());
    interval.extend_from_slice(&14i32.to_be_bytes());
    assert_eq!(
        b(interval, Type::INTERVAL),
        ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(14, 3, 1_500_000_000)))
    );

    // Undeclared binary values are read as the inferred type's wire format.
    let p = portal(vec![], vec![1], vec![Some(to_binary(9i64, &Type::INT8))]);
    assert_eq!(decode_params(&p, &[Some(DataType::Int64)]).unwrap(), vec![ScalarValue::Int64(Some(9))]);
}

#[test]
fn bad_values_map_to_sqlstates() {
    assert_eq!(sqlstate(text_param("abc", Some(DataType::Int32))), "22P02");
    assert_eq!(sqlstate(text_param("99999", Some(DataType::Int16))), "22003");
    assert_eq!(sqlstate(text_param("99999999999999999999", Some(DataType::Int64))), "22003");
    assert_eq!(sqlstate(text_param("123.4", Some(DataType::Decimal128(4, 2)))), "22003");
    assert_eq!(sqlstate(text_param("maybe", Some(DataType::Boolean))), "22P02");
    assert_eq!(sqlstate(text_param("2024-13-45", Some(DataType::Date32))), "22P02");
    assert_eq!(sqlstate(text_param("\\xzz", Some(DataType::Binary))), "22P02");
    assert_eq!(sqlstate(binary_param(vec![0, 0, 1], Type::INT4, None)), "22P03");
    assert_eq!(sqlstate(binary_param(vec![1], Type::POINT, None)), "0A000");

    let p = portal(vec![], vec![], vec![Some(b"1".to_vec())]);
    let err = decode_params(&p, &[None, None]).unwrap_err();
    assert!(matches!(err, PgWireError::UserError(ref i) if i.code == "08P01"), "{err:?}");
    let p = portal(vec![], vec![0, 1, 0], vec![Some(b"1".to_vec()), Some(b"2".to_vec())]);
    let err = decode_params(&p, &[None, None]).unwrap_err();
    assert!(matches!(err, PgWireError::UserError(ref i) if i.code == "08P01"), "{err:?}");
}

#[test]
fn arbitrary_bytes_never_panic() {
    let types = [
        Type::BOOL,
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
        Type::TEXT,
        Type::BYTEA,
        Type::DATE,
        Type::TIME,
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::INTERVAL,
        Type::UUID,
        Type::JSONB,
    ];
    let inputs: [&[u8]; 8] = [
        b"",
        b"\xff\xfe",
        b"\x00\x01\x00\x00\x80\x00\x00\x05\x27\x10",
        b"\x7f\xff\xff\xff\xff\xff\xff\xff",
        b"-",
        b"1e99999",
        b"\\",
        b"99999999999999999999999999999999999999999.5",
    ];
    for t in &types {
        for input in inputs {
            for format in [0, 1] {
                let p = portal(vec![Some(t.clone())], vec![format], vec![Some(input.to_vec())]);
                let _ = decode_params(&p, &[None]);
            }
        }
    }
}
