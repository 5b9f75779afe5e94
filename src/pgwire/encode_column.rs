//! Per-column value writers: each Arrow array is downcast once per batch into a
//! writer that appends one value at a time in PostgreSQL text or binary form.

use std::io::Write as _;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::array::{
    Array, BinaryViewArray, BooleanArray, FixedSizeBinaryArray, FixedSizeListArray, GenericBinaryArray, GenericListArray,
    GenericStringArray, OffsetSizeTrait, StringViewArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::*;
use datafusion::arrow::json::writer::{EncoderOptions, NullableEncoder, make_encoder};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::Type;

use super::encode::EncodeError;
use super::encode_text as text;
use crate::types::pg_type;

#[path = "encode_number.rs"]
mod number;
#[path = "encode_temporal.rs"]
mod temporal;
use number::{Dec256W, Float4W, Float8W, U64W, dec, int};
use temporal::{DateW, IntervalW, time, ts};

/// Appends one non-null value; nullness is decided by [`Column`].
trait ValueWriter {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

/// A column (or list child) ready to encode: its logical null mask plus the
/// writer for its values.
pub(super) struct Column<'a> {
    /// Logical nulls, so dictionary values and `Null` arrays count as NULL.
    nulls: Option<NullBuffer>,
    writer: Box<dyn ValueWriter + 'a>,
}

impl Column<'_> {
    fn is_null(&self, row: usize) -> bool {
        self.nulls.as_ref().is_some_and(|n| n.is_null(row))
    }

    /// Appends a length-prefixed field (`-1` for NULL), the layout shared by
    /// `DataRow` columns and binary array elements.
    pub(super) fn write_field(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.is_null(row) {
            out.extend_from_slice(&(-1i32).to_be_bytes());
            return Ok(());
        }
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        self.writer.write(row, out)?;
        let len = i32::try_from(out.len() - at - 4).map_err(|_| EncodeError::ValueTooLarge)?;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

fn downcast_failed(dt: &DataType) -> EncodeError {
    EncodeError::Internal(format!("array does not match its data type {dt}"))
}

/// Builds the writer for `array`, whose PostgreSQL type is `pg_type(array.data_type())`.
pub(super) fn column<'a>(
    array: &'a dyn Array,
    field: &'a FieldRef,
    binary: bool,
    json: &'a EncoderOptions,
) -> Result<Column<'a>, EncodeError> {
    let dt = array.data_type();
    let nulls = array.logical_nulls();
    let writer: Box<dyn ValueWriter + 'a> = if pg_type(dt) == Type::JSON {
        // json's binary form is its text, so both formats share this writer.
        let enc = make_encoder(field, array, json).map_err(EncodeError::Arrow)?;
        Box::new(JsonW(enc))
    } else {
        writer(array, dt, field, binary, json)?
    };
    Ok(Column { nulls, writer })
}

macro_rules! prim {
    ($array:expr, $t:ty) => {
        $array.as_primitive_opt::<$t>().ok_or_else(|| downcast_failed($array.data_type()))?
    };
}

fn writer<'a>(
    array: &'a dyn Array,
    dt: &'a DataType,
    field: &'a FieldRef,
    binary: bool,
    json: &'a EncoderOptions,
) -> Result<Box<dyn ValueWriter + 'a>, EncodeError> {
    let fail = || downcast_failed(dt);
    Ok(match dt {
        DataType::Null => Box::new(NullW),
        DataType::Boolean => Box::new(BoolW { arr: array.as_boolean_opt().ok_or_else(fail)?, binary }),
        DataType::Int8 => int::<Int8Type>(prim!(array, Int8Type), 2, binary),
        DataType::Int16 => int::<Int16Type>(prim!(array, Int16Type), 2, binary),
        DataType::Int32 => int::<Int32Type>(prim!(array, Int32Type), 4, binary),
        DataType::Int64 => int::<Int64Type>(prim!(array, Int64Type), 8, binary),
        DataType::UInt8 => int::<UInt8Type>(prim!(array, UInt8Type), 2, binary),
        DataType::UInt16 => int::<UInt16Type>(prim!(array, UInt16Type), 4, binary),
        DataType::UInt32 => int::<UInt32Type>(prim!(array, UInt32Type), 8, binary),
        DataType::UInt64 => Box::new(U64W { arr: prim!(array, UInt64Type), binary }),
        DataType::Float16 => Box::new(Float4W { arr: prim!(array, Float16Type), binary }),
        DataType::Float32 => Box::new(Float4W { arr: prim!(array, Float32Type), binary }),
        DataType::Float64 => Box::new(Float8W { arr: prim!(array, Float64Type), binary }),
        DataType::Decimal32(_, s) => dec::<Decimal32Type>(prim!(array, Decimal32Type), *s, binary),
        DataType::Decimal64(_, s) => dec::<Decimal64Type>(prim!(array, Decimal64Type), *s, binary),
        DataType::Decimal128(_, s) => dec::<Decimal128Type>(prim!(array, Decimal128Type), *s, binary),
        DataType::Decimal256(_, s) => {
            Box::new(Dec256W { arr: prim!(array, Decimal256Type), scale: *s, binary, digits: Vec::new() })
        }
        DataType::Utf8 => Box::new(RawW(array.as_string_opt::<i32>().ok_or_else(fail)?)),
        DataType::LargeUtf8 => Box::new(RawW(array.as_string_opt::<i64>().ok_or_else(fail)?)),
        DataType::Utf8View => Box::new(RawW(array.as_string_view_opt().ok_or_else(fail)?)),
        DataType::Binary => Box::new(ByteaW { arr: array.as_binary_opt::<i32>().ok_or_else(fail)?, binary }),
        DataType::LargeBinary => Box::new(ByteaW { arr: array.as_binary_opt::<i64>().ok_or_else(fail)?, binary }),
        DataType::BinaryView => Box::new(ByteaW { arr: array.as_binary_view_opt().ok_or_else(fail)?, binary }),
        DataType::FixedSizeBinary(_) => Box::new(ByteaW { arr: array.as_fixed_size_binary_opt().ok_or_else(fail)?, binary }),
        DataType::Date32 => Box::new(DateW { arr: prim!(array, Date32Type), per_day: 1, binary }),
        DataType::Date64 => Box::new(DateW { arr: prim!(array, Date64Type), per_day: 86_400_000, binary }),
        DataType::Time32(TimeUnit::Second) => {
            time::<Time32SecondType>(prim!(array, Time32SecondType), TimeUnit::Second, binary)
        }
        DataType::Time32(TimeUnit::Millisecond) => {
            time::<Time32MillisecondType>(prim!(array, Time32MillisecondType), TimeUnit::Millisecond, binary)
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            time::<Time64MicrosecondType>(prim!(array, Time64MicrosecondType), TimeUnit::Microsecond, binary)
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            time::<Time64NanosecondType>(prim!(array, Time64NanosecondType), TimeUnit::Nanosecond, binary)
        }
        DataType::Timestamp(unit, tz) => {
            let tz = tz.is_some();
            match unit {
                TimeUnit::Second => ts::<TimestampSecondType>(prim!(array, TimestampSecondType), *unit, tz, binary),
                TimeUnit::Millisecond => {
                    ts::<TimestampMillisecondType>(prim!(array, TimestampMillisecondType), *unit, tz, binary)
                }
                TimeUnit::Microsecond => {
                    ts::<TimestampMicrosecondType>(prim!(array, TimestampMicrosecondType), *unit, tz, binary)
                }
                TimeUnit::Nanosecond => {
                    ts::<TimestampNanosecondType>(prim!(array, TimestampNanosecondType), *unit, tz, binary)
                }
            }
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            Box::new(IntervalW { arr: prim!(array, IntervalYearMonthType), binary })
        }
        DataType::Interval(IntervalUnit::DayTime) => Box::new(IntervalW { arr: prim!(array, IntervalDayTimeType), binary }),
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            Box::new(IntervalW { arr: prim!(array, IntervalMonthDayNanoType), binary })
        }
        DataType::Duration(TimeUnit::Second) => Box::new(IntervalW { arr: prim!(array, DurationSecondType), binary }),
        DataType::Duration(TimeUnit::Millisecond) => {
            Box::new(IntervalW { arr: prim!(array, DurationMillisecondType), binary })
        }
        DataType::Duration(TimeUnit::Microsecond) => {
            Box::new(IntervalW { arr: prim!(array, DurationMicrosecondType), binary })
        }
        DataType::Duration(TimeUnit::Nanosecond) => {
            Box::new(IntervalW { arr: prim!(array, DurationNanosecondType), binary })
        }
        DataType::List(inner) | DataType::LargeList(inner) | DataType::FixedSizeList(inner, _)
            if pg_type(dt) != Type::TEXT =>
        {
            let offsets = match dt {
                DataType::List(_) => Offsets::Small(array.as_list_opt::<i32>().ok_or_else(fail)?),
                DataType::LargeList(_) => Offsets::Large(array.as_list_opt::<i64>().ok_or_else(fail)?),
                _ => Offsets::Fixed(array.as_fixed_size_list_opt().ok_or_else(fail)?),
            };
            let child = column(offsets.values(), inner, binary, json)?;
            let elem_oid = pg_type(inner.data_type()).oid();
            Box::new(ListW { offsets, child, elem_oid, binary, scratch: Vec::new() })
        }
        DataType::Dictionary(_, _) => {
            let dict = array.as_any_dictionary_opt().ok_or_else(fail)?;
            let values = dict.values();
            // With no values every key must be NULL, so the writer is never called.
            if values.is_empty() {
                Box::new(NullW)
            } else {
                let keys = dict.normalized_keys();
                Box::new(DictW { keys, inner: column(values.as_ref(), field, binary, json)? })
            }
        }
        _ => {
            let fmt = ArrayFormatter::try_new(array, &FormatOptions::default()).map_err(EncodeError::Arrow)?;
            Box::new(DisplayW(fmt))
        }
    })
}

struct NullW;
impl ValueWriter for NullW {
    fn write(&mut self, _row: usize, _out: &mut Vec<u8>) -> Result<(), EncodeError> {
        Ok(())
    }
}

fn get<T: Copy>(values: &[T], row: usize) -> Result<T, EncodeError> {
    values.get(row).copied().ok_or(EncodeError::RowOutOfBounds(row))
}

struct BoolW<'a> {
    arr: &'a BooleanArray,
    binary: bool,
}
impl ValueWriter for BoolW<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if row >= self.arr.len() {
            return Err(EncodeError::RowOutOfBounds(row));
        }
        let v = self.arr.value(row);
        out.push(match (self.binary, v) {
            (true, v) => u8::from(v),
            (false, true) => b't',
            (false, false) => b'f',
        });
        Ok(())
    }
}

/// Arrays whose values are byte strings, whatever their offset layout.
trait ByteSource {
    fn len(&self) -> usize;
    fn bytes(&self, row: usize) -> &[u8];
}
impl<O: OffsetSizeTrait> ByteSource for GenericStringArray<O> {
    fn len(&self) -> usize {
        Array::len(self)
    }
    fn bytes(&self, row: usize) -> &[u8] {
        self.value(row).as_bytes()
    }
}
impl ByteSource for StringViewArray {
    fn len(&self) -> usize {
        Array::len(self)
    }
    fn bytes(&self, row: usize) -> &[u8] {
        self.value(row).as_bytes()
    }
}
impl<O: OffsetSizeTrait> ByteSource for GenericBinaryArray<O> {
    fn len(&self) -> usize {
        Array::len(self)
    }
    fn bytes(&self, row: usize) -> &[u8] {
        self.value(row)
    }
}
impl ByteSource for BinaryViewArray {
    fn len(&self) -> usize {
        Array::len(self)
    }
    fn bytes(&self, row: usize) -> &[u8] {
        self.value(row)
    }
}
impl ByteSource for FixedSizeBinaryArray {
    fn len(&self) -> usize {
        Array::len(self)
    }
    fn bytes(&self, row: usize) -> &[u8] {
        self.value(row)
    }
}
fn bytes_at<A: ByteSource>(arr: &A, row: usize) -> Result<&[u8], EncodeError> {
    if row >= arr.len() {
        return Err(EncodeError::RowOutOfBounds(row));
    }
    Ok(arr.bytes(row))
}

/// Text values: UTF-8 bytes are both the text and the binary form.
struct RawW<'a, A>(&'a A);
impl<A: ByteSource> ValueWriter for RawW<'_, A> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(bytes_at(self.0, row)?);
        Ok(())
    }
}

struct ByteaW<'a, A> {
    arr: &'a A,
    binary: bool,
}
impl<A: ByteSource> ValueWriter for ByteaW<'_, A> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let bytes = bytes_at(self.arr, row)?;
        if self.binary {
            out.extend_from_slice(bytes);
        } else {
            text::write_bytea_hex(out, bytes);
        }
        Ok(())
    }
}

/// Where each list's elements sit in the child array.
enum Offsets<'a> {
    Small(&'a GenericListArray<i32>),
    Large(&'a GenericListArray<i64>),
    Fixed(&'a FixedSizeListArray),
}
impl<'a> Offsets<'a> {
    fn values(&self) -> &'a dyn Array {
        match self {
            Offsets::Small(a) => a.values().as_ref(),
            Offsets::Large(a) => a.values().as_ref(),
            Offsets::Fixed(a) => a.values().as_ref(),
        }
    }
    fn range(&self, row: usize) -> Result<std::ops::Range<usize>, EncodeError> {
        fn span<O: OffsetSizeTrait>(offsets: &[O], row: usize) -> Option<std::ops::Range<usize>> {
            Some(offsets.get(row)?.as_usize()..offsets.get(row + 1)?.as_usize())
        }
        let range = match self {
            Offsets::Small(a) => span(a.value_offsets(), row),
            Offsets::Large(a) => span(a.value_offsets(), row),
            Offsets::Fixed(a) => (row < a.len()).then(|| {
                let start = a.value_offset(row) as usize;
                start..start + a.value_length() as usize
            }),
        };
        range.ok_or(EncodeError::RowOutOfBounds(row))
    }
}

/// One-dimensional PostgreSQL arrays (lower bound 1) from Arrow lists.
struct ListW<'a> {
    offsets: Offsets<'a>,
    child: Column<'a>,
    elem_oid: u32,
    binary: bool,
    /// Holds one element's text while deciding whether it needs quoting.
    scratch: Vec<u8>,
}
impl ValueWriter for ListW<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let range = self.offsets.range(row)?;
        if self.binary {
            let len = i32::try_from(range.len()).map_err(|_| EncodeError::ValueTooLarge)?;
            let has_null = range.clone().any(|i| self.child.is_null(i));
            out.extend_from_slice(&i32::from(len > 0).to_be_bytes());
            out.extend_from_slice(&i32::from(has_null).to_be_bytes());
            out.extend_from_slice(&self.elem_oid.to_be_bytes());
            if len > 0 {
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&1i32.to_be_bytes());
            }
            for i in range {
                self.child.write_field(i, out)?;
            }
            return Ok(());
        }
        out.push(b'{');
        for (n, i) in range.enumerate() {
            if n > 0 {
                out.push(b',');
            }
            if self.child.is_null(i) {
                out.extend_from_slice(b"NULL");
                continue;
            }
            self.scratch.clear();
            self.child.writer.write(i, &mut self.scratch)?;
            text::write_array_element(out, &self.scratch);
        }
        out.push(b'}');
        Ok(())
    }
}

/// Dictionary values are written through the value array's own writer.
struct DictW<'a> {
    keys: Vec<usize>,
    inner: Column<'a>,
}
impl ValueWriter for DictW<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let key = get(&self.keys, row)?;
        self.inner.writer.write(key, out)
    }
}

struct JsonW<'a>(NullableEncoder<'a>);
impl ValueWriter for JsonW<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.0.encode(row, out);
        Ok(())
    }
}

/// Anything without a PostgreSQL counterpart goes out as Arrow's display text.
struct DisplayW<'a>(ArrayFormatter<'a>);
impl ValueWriter for DisplayW<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        write!(out, "{}", self.0.value(row)).map_err(|e| EncodeError::Internal(e.to_string()))
    }
}
