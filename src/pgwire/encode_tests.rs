//! Scenarios for result encoding: the text PostgreSQL itself prints for each
//! type, and binary values that postgres-types (as used by tokio-postgres)
//! decodes back to the original.

use std::sync::Arc;

use datafusion::arrow::array::*;
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::*;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::temporal_conversions::{date32_to_datetime, time64us_to_time, timestamp_us_to_datetime};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::messages::data::DataRow;
use tokio_postgres::types::FromSql;

use super::*;

/// Splits a DataRow body into its fields (`None` for NULL).
fn cells(row: &DataRow) -> Vec<Option<Vec<u8>>> {
    let mut data: &[u8] = &row.data;
    let mut out = Vec::new();
    for _ in 0..row.field_count {
        let len = i32::from_be_bytes(data[..4].try_into().unwrap());
        data = &data[4..];
        if len < 0 {
            out.push(None);
        } else {
            out.push(Some(data[..len as usize].to_vec()));
            data = &data[len as usize..];
        }
    }
    assert!(data.is_empty(), "trailing bytes in DataRow");
    out
}

fn batch_of(array: ArrayRef) -> RecordBatch {
    let schema = Schema::new(vec![Field::new("c", array.data_type().clone(), true)]);
    RecordBatch::try_new(Arc::new(schema), vec![array]).unwrap()
}

/// Encodes a one-column batch; returns the column's type and its values.
fn encode_one(array: ArrayRef, format: Format) -> (Type, Vec<Option<Vec<u8>>>) {
    let batch = batch_of(array);
    let fields = Arc::new(field_infos(batch.schema_ref(), &format));
    let rows = encode_batch(&batch, &fields).unwrap();
    let values = rows.iter().map(|r| cells(r).remove(0)).collect();
    (fields[0].datatype().clone(), values)
}

fn text(array: ArrayRef) -> (Type, Vec<Option<String>>) {
    let (t, values) = encode_one(array, Format::UnifiedText);
    (t, values.into_iter().map(|v| v.map(|b| String::from_utf8(b).unwrap())).collect())
}

fn binary(array: ArrayRef) -> (Type, Vec<Option<Vec<u8>>>) {
    encode_one(array, Format::UnifiedBinary)
}

/// Decodes every non-null binary value with postgres-types.
fn decoded<T: for<'a> FromSql<'a>>(array: ArrayRef) -> Vec<Option<T>> {
    let (t, values) = binary(array);
    values.into_iter().map(|v| v.map(|b| T::from_sql(&t, &b).unwrap())).collect()
}

fn some(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

/// A Float16 array (arrow does not re-export `half::f16`, so cast from f32).
fn half(v: f32) -> ArrayRef {
    let f32s: ArrayRef = Arc::new(Float32Array::from(vec![v]));
    datafusion::arrow::compute::cast(&f32s, &DataType::Float16).unwrap()
}

const TS: i64 = 1_704_164_645; // 2024-01-02 03:04:05 UTC

#[test]
fn scalars_print_like_postgres() {
    let (t, v) = text(Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])));
    assert_eq!((t, v), (Type::BOOL, vec![Some("t".into()), Some("f".into()), None]));
    assert_eq!(text(Arc::new(Int8Array::from(vec![-5]))), (Type::INT2, some(&["-5"])));
    assert_eq!(text(Arc::new(UInt16Array::from(vec![65535]))), (Type::INT4, some(&["65535"])));
    assert_eq!(text(Arc::new(UInt32Array::from(vec![u32::MAX]))), (Type::INT8, some(&["4294967295"])));
    assert_eq!(text(Arc::new(Int64Array::from(vec![i64::MIN]))), (Type::INT8, some(&["-9223372036854775808"])));
    assert_eq!(text(Arc::new(UInt64Array::from(vec![i64::MAX as u64]))), (Type::INT8, some(&["9223372036854775807"])));
    let (_, bin) = binary(Arc::new(UInt64Array::from(vec![7u64])));
    assert_eq!(bin, vec![Some(7i64.to_be_bytes().to_vec())]);
    let too_big = batch_of(Arc::new(UInt64Array::from(vec![u64::MAX])));
    let fields = Arc::new(field_infos(too_big.schema_ref(), &Format::UnifiedText));
    let err = encode_batch(&too_big, &fields).unwrap_err();
    assert!(err.to_string().contains("out of range for type bigint"), "{err}");
    let floats = Float64Array::from(vec![1.5, 0.1, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e20]);
    assert_eq!(text(Arc::new(floats)), (Type::FLOAT8, some(&["1.5", "0.1", "Infinity", "-Infinity", "NaN", "1e+20"])));
    assert_eq!(text(Arc::new(Float32Array::from(vec![0.1f32]))), (Type::FLOAT4, some(&["0.1"])));
    assert_eq!(text(half(1.5)), (Type::FLOAT4, some(&["1.5"])));
    let strings: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["héllo"])),
        Arc::new(LargeStringArray::from(vec!["héllo"])),
        Arc::new(StringViewArray::from(vec!["héllo"])),
    ];
    for s in strings {
        assert_eq!(text(s), (Type::TEXT, some(&["héllo"])));
    }
    let bytes: Vec<ArrayRef> = vec![
        Arc::new(BinaryArray::from(vec![&[1u8, 2, 255][..]])),
        Arc::new(LargeBinaryArray::from(vec![&[1u8, 2, 255][..]])),
        Arc::new(BinaryViewArray::from(vec![&[1u8, 2, 255][..]])),
        Arc::new(FixedSizeBinaryArray::try_from_iter(vec![vec![1u8, 2, 255]].into_iter()).unwrap()),
    ];
    for b in bytes {
        assert_eq!(text(b), (Type::BYTEA, some(&["\\x0102ff"])));
    }
}

#[test]
fn numerics_keep_scale_in_text_and_binary() {
    let dec = Decimal128Array::from(vec![Some(1230), Some(-5), Some(0), None]).with_precision_and_scale(10, 2).unwrap();
    let (t, v) = text(Arc::new(dec.clone()));
    assert_eq!(t, Type::NUMERIC);
    assert_eq!(v, vec![Some("12.30".into()), Some("-0.05".into()), Some("0.00".into()), None]);
    let (_, bin) = binary(Arc::new(dec));
    let words = |b: &Vec<u8>| b.chunks(2).map(|c| i16::from_be_bytes([c[0], c[1]])).collect::<Vec<_>>();
    assert_eq!(words(bin[0].as_ref().unwrap()), vec![2, 0, 0, 2, 12, 3000]);
    assert_eq!(words(bin[1].as_ref().unwrap()), vec![1, -1, 0x4000, 2, 500]);

    let big = i256::from_i128(i128::MAX) * i256::from_i128(1000);
    let d256 = Decimal256Array::from(vec![big, i256::from_i128(-12345)]).with_precision_and_scale(76, 3).unwrap();
    assert_eq!(text(Arc::new(d256)).1, some(&["170141183460469231731687303715884105727.000", "-12.345"]));

    let batch = batch_of(Arc::new(Decimal128Array::from(vec![1]).with_precision_and_scale(10, 2).unwrap()));
    let fields = field_infos(batch.schema_ref(), &Format::UnifiedText);
    assert_eq!(fields[0].type_modifier(), (10 << 16 | 2) + 4);
}

#[test]
fn datetimes_print_like_postgres() {
    let d = Date32Array::from(vec![19_724, -719_528]);
    assert_eq!(text(Arc::new(d)), (Type::DATE, some(&["2024-01-02", "0001-01-01 BC"])));
    assert_eq!(text(Arc::new(Date64Array::from(vec![TS * 1000]))), (Type::DATE, some(&["2024-01-02"])));

    let times: Vec<ArrayRef> = vec![
        Arc::new(Time32SecondArray::from(vec![11_045])),
        Arc::new(Time32MillisecondArray::from(vec![11_045_000])),
        Arc::new(Time64MicrosecondArray::from(vec![11_045_000_000])),
        Arc::new(Time64NanosecondArray::from(vec![11_045_000_000_000])),
    ];
    for t in times {
        assert_eq!(text(t), (Type::TIME, some(&["03:04:05"])));
    }
    assert_eq!(text(Arc::new(Time64MicrosecondArray::from(vec![11_045_500_000]))).1, some(&["03:04:05.5"]));

    let stamps: Vec<ArrayRef> = vec![
        Arc::new(TimestampSecondArray::from(vec![TS])),
        Arc::new(TimestampMillisecondArray::from(vec![TS * 1_000])),
        Arc::new(TimestampMicrosecondArray::from(vec![TS * 1_000_000])),
        Arc::new(TimestampNanosecondArray::from(vec![TS * 1_000_000_000])),
    ];
    for s in stamps {
        assert_eq!(text(s), (Type::TIMESTAMP, some(&["2024-01-02 03:04:05"])));
    }
    let frac = TimestampMicrosecondArray::from(vec![TS * 1_000_000 + 123_456, TS * 1_000_000 + 100_000]);
    assert_eq!(text(Arc::new(frac)).1, some(&["2024-01-02 03:04:05.123456", "2024-01-02 03:04:05.1"]));
    let tz = TimestampMillisecondArray::from(vec![TS * 1_000]).with_timezone("America/New_York");
    assert_eq!(text(Arc::new(tz)), (Type::TIMESTAMPTZ, some(&["2024-01-02 03:04:05+00"])));
}

#[test]
fn intervals_print_in_postgres_style() {
    let ym = IntervalYearMonthArray::from(vec![14, -1]);
    assert_eq!(text(Arc::new(ym)), (Type::INTERVAL, some(&["1 year 2 mons", "-1 mons"])));
    let dt = IntervalDayTimeArray::from(vec![IntervalDayTime::new(-1, 0), IntervalDayTime::new(0, 1_500)]);
    assert_eq!(text(Arc::new(dt)).1, some(&["-1 days", "00:00:01.5"]));
    let hms = (4 * 3600 + 5 * 60 + 6) * 1_000_000_000;
    let mdn = IntervalMonthDayNanoArray::from(vec![IntervalMonthDayNano::new(14, 3, hms)]);
    assert_eq!(text(Arc::new(mdn)).1, some(&["1 year 2 mons 3 days 04:05:06"]));
    let dur = DurationMillisecondArray::from(vec![1_500, -90_000_000]);
    assert_eq!(text(Arc::new(dur)), (Type::INTERVAL, some(&["00:00:01.5", "-25:00:00"])));
}

fn int_list() -> ListArray {
    ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), Some(2), None]), None, Some(vec![])])
}

#[test]
fn lists_become_postgres_arrays() {
    let (t, v) = text(Arc::new(int_list()));
    assert_eq!(t, Type::INT4_ARRAY);
    assert_eq!(v, vec![Some("{1,2,NULL}".into()), None, Some("{}".into())]);

    let strings = StringArray::from(vec![Some("a b"), Some("x\"y"), None, Some(""), Some("plain")]);
    let list = ListArray::new(
        Arc::new(Field::new_list_field(DataType::Utf8, true)),
        OffsetBuffer::new(ScalarBuffer::from(vec![0, 5])),
        Arc::new(strings),
        None,
    );
    assert_eq!(text(Arc::new(list)), (Type::TEXT_ARRAY, some(&[r#"{"a b","x\"y",NULL,"",plain}"#])));

    let fixed = FixedSizeListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(7), Some(8)])], 2);
    assert_eq!(text(Arc::new(fixed)), (Type::INT8_ARRAY, some(&["{7,8}"])));
    let large = LargeListArray::from_iter_primitive::<Float64Type, _, _>(vec![Some(vec![Some(0.5)])]);
    assert_eq!(text(Arc::new(large)), (Type::FLOAT8_ARRAY, some(&["{0.5}"])));

    let stamps = TimestampMicrosecondArray::from(vec![TS * 1_000_000]);
    let list = ListArray::new(
        Arc::new(Field::new_list_field(stamps.data_type().clone(), true)),
        OffsetBuffer::new(ScalarBuffer::from(vec![0, 1])),
        Arc::new(stamps),
        None,
    );
    assert_eq!(text(Arc::new(list)), (Type::TIMESTAMP_ARRAY, some(&[r#"{"2024-01-02 03:04:05"}"#])));

    // A sliced list must honour its offsets.
    assert_eq!(text(Arc::new(int_list().slice(2, 1))).1, some(&["{}"]));
}

#[test]
fn binary_lists_decode_as_arrays() {
    let v: Vec<Option<Vec<Option<i32>>>> = decoded(Arc::new(int_list()));
    assert_eq!(v, vec![Some(vec![Some(1), Some(2), None]), None, Some(vec![])]);
    let strings = StringArray::from(vec![Some("a"), None]);
    let list = ListArray::new(
        Arc::new(Field::new_list_field(DataType::Utf8, true)),
        OffsetBuffer::new(ScalarBuffer::from(vec![0, 2])),
        Arc::new(strings),
        None,
    );
    let v: Vec<Option<Vec<Option<String>>>> = decoded(Arc::new(list));
    assert_eq!(v, vec![Some(vec![Some("a".to_string()), None])]);
}

#[test]
fn structs_and_maps_become_json() {
    let s = StructArray::from(vec![
        (Arc::new(Field::new("a", DataType::Int32, true)), Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef),
        (Arc::new(Field::new("b", DataType::Utf8, true)), Arc::new(StringArray::from(vec!["x", "y\"z"])) as ArrayRef),
    ]);
    let (t, v) = text(Arc::new(s.clone()));
    assert_eq!(t, Type::JSON);
    assert_eq!(v, some(&[r#"{"a":1,"b":"x"}"#, r#"{"a":null,"b":"y\"z"}"#]));
    let json: Vec<Option<serde_json::Value>> = decoded(Arc::new(s));
    assert_eq!(json[0], Some(serde_json::json!({"a": 1, "b": "x"})));

    let mut builder = MapBuilder::new(None, StringBuilder::new(), Int32Builder::new());
    builder.keys().append_value("k");
    builder.values().append_value(1);
    builder.append(true).unwrap();
    assert_eq!(text(Arc::new(builder.finish())), (Type::JSON, some(&[r#"{"k":1}"#])));

    // Lists of lists cannot be PostgreSQL arrays of one scalar type.
    let inner = int_list();
    let nested = ListArray::new(
        Arc::new(Field::new_list_field(inner.data_type().clone(), true)),
        OffsetBuffer::new(ScalarBuffer::from(vec![0, 1])),
        Arc::new(inner),
        None,
    );
    assert_eq!(text(Arc::new(nested)), (Type::JSON, some(&["[[1,2,null]]"])));
}

#[test]
fn dictionaries_nulls_and_fallbacks() {
    let dict: DictionaryArray<Int8Type> = vec![Some("a"), None, Some("b"), Some("a")].into_iter().collect();
    let (t, v) = text(Arc::new(dict));
    assert_eq!(t, Type::TEXT);
    assert_eq!(v, vec![Some("a".into()), None, Some("b".into()), Some("a".into())]);

    assert_eq!(text(Arc::new(NullArray::new(2))), (Type::TEXT, vec![None, None]));

    // Run-end encoded arrays have no PostgreSQL type: Arrow's display text.
    let run = RunArray::<Int32Type>::try_new(&Int32Array::from(vec![2]), &Int64Array::from(vec![9])).unwrap();
    assert_eq!(text(Arc::new(run)), (Type::TEXT, some(&["9", "9"])));
}

#[test]
fn binary_values_decode_with_postgres_types() {
    assert_eq!(decoded::<bool>(Arc::new(BooleanArray::from(vec![true, false]))), vec![Some(true), Some(false)]);
    assert_eq!(decoded::<i16>(Arc::new(Int8Array::from(vec![-5]))), vec![Some(-5)]);
    assert_eq!(decoded::<i32>(Arc::new(UInt16Array::from(vec![65535]))), vec![Some(65535)]);
    assert_eq!(decoded::<i32>(Arc::new(Int32Array::from(vec![Some(7), None]))), vec![Some(7), None]);
    assert_eq!(decoded::<i64>(Arc::new(UInt32Array::from(vec![u32::MAX]))), vec![Some(4_294_967_295)]);
    assert_eq!(decoded::<f32>(half(1.5)), vec![Some(1.5)]);
    assert_eq!(decoded::<f64>(Arc::new(Float64Array::from(vec![0.1]))), vec![Some(0.1)]);
    assert_eq!(decoded::<String>(Arc::new(StringViewArray::from(vec!["héllo"]))), vec![Some("héllo".to_string())]);
    assert_eq!(decoded::<Vec<u8>>(Arc::new(BinaryArray::from(vec![&[0u8, 255][..]]))), vec![Some(vec![0, 255])]);

    let date = date32_to_datetime(19_724).unwrap().date();
    assert_eq!(decoded(Arc::new(Date32Array::from(vec![19_724]))), vec![Some(date)]);
    let time = time64us_to_time(11_045_500_000).unwrap();
    assert_eq!(decoded(Arc::new(Time64NanosecondArray::from(vec![11_045_500_000_000]))), vec![Some(time)]);
    let ts = timestamp_us_to_datetime(TS * 1_000_000 + 123_456).unwrap();
    assert_eq!(decoded(Arc::new(TimestampNanosecondArray::from(vec![(TS * 1_000_000 + 123_456) * 1_000]))), vec![Some(ts)]);
    let tz = TimestampMicrosecondArray::from(vec![TS * 1_000_000 + 123_456]).with_timezone("+00:00");
    assert_eq!(decoded(Arc::new(tz)), vec![Some(ts.and_utc())]);
}

#[test]
fn binary_intervals_are_micros_days_months() {
    let mdn = IntervalMonthDayNanoArray::from(vec![IntervalMonthDayNano::new(14, -3, 1_500_000)]);
    let (t, v) = binary(Arc::new(mdn));
    assert_eq!(t, Type::INTERVAL);
    let b = v[0].clone().unwrap();
    assert_eq!(i64::from_be_bytes(b[..8].try_into().unwrap()), 1_500);
    assert_eq!(i32::from_be_bytes(b[8..12].try_into().unwrap()), -3);
    assert_eq!(i32::from_be_bytes(b[12..].try_into().unwrap()), 14);
}

#[test]
fn out_of_range_values_are_errors_not_panics() {
    let batch = batch_of(Arc::new(TimestampSecondArray::from(vec![i64::MAX])));
    let fields = Arc::new(field_infos(batch.schema_ref(), &Format::UnifiedBinary));
    let err = encode_batch(&batch, &fields).unwrap_err();
    assert!(matches!(err, PgWireError::UserError(ref info) if info.code == "22008"), "{err:?}");
    let err = encode_batch(&batch, &Arc::new(vec![])).unwrap_err();
    assert!(matches!(err, PgWireError::UserError(ref info) if info.code == "XX000"), "{err:?}");
}

#[test]
fn mixed_formats_per_column() {
    let schema = Schema::new(vec![Field::new("a", DataType::Int32, false), Field::new("b", DataType::Utf8, true)]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(Int32Array::from(vec![1, 2])), Arc::new(StringArray::from(vec![Some("x"), None]))],
    )
    .unwrap();
    // A per-column list shorter than the schema falls back to text.
    let fields = Arc::new(field_infos(batch.schema_ref(), &Format::Individual(vec![1])));
    assert_eq!(fields[0].format(), FieldFormat::Binary);
    assert_eq!(fields[1].format(), FieldFormat::Text);
    let rows = encode_batch(&batch, &fields).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(cells(&rows[0]), vec![Some(1i32.to_be_bytes().to_vec()), Some(b"x".to_vec())]);
    assert_eq!(cells(&rows[1]), vec![Some(2i32.to_be_bytes().to_vec()), None]);
    assert_eq!(fields[0].type_size(), 4);
}
