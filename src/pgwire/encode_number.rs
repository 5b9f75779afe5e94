//! Integer, float and decimal writers for `encode_column`: PostgreSQL's
//! widths for each integer type (unsigned ones widened to fit), its float
//! text, and `numeric` from Arrow's scaled decimals.

use std::io::Write as _;

use datafusion::arrow::array::{ArrowPrimitiveType, PrimitiveArray};
use datafusion::arrow::datatypes::*;

use super::super::encode::EncodeError;
use super::super::encode_text as text;
use super::{ValueWriter, get};

/// Integers sent as int2/int4/int8 (`width` bytes); unsigned types are widened
/// to the next signed type by `pg_type`, so the value always fits.
pub(super) struct IntW<'a, T: ArrowPrimitiveType> {
    pub(super) values: &'a [T::Native],
    pub(super) width: u8,
    pub(super) binary: bool,
}
pub(super) fn int<'a, T: ArrowPrimitiveType>(
    arr: &'a PrimitiveArray<T>,
    width: u8,
    binary: bool,
) -> Box<dyn ValueWriter + 'a>
where
    T::Native: Into<i64>,
{
    Box::new(IntW::<T> { values: arr.values(), width, binary })
}
impl<T: ArrowPrimitiveType> ValueWriter for IntW<'_, T>
where
    T::Native: Into<i64>,
{
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let v: i64 = get(self.values, row)?.into();
        if !self.binary {
            text::write_i64(out, v);
            return Ok(());
        }
        match self.width {
            2 => out.extend_from_slice(&(v as i16).to_be_bytes()),
            4 => out.extend_from_slice(&(v as i32).to_be_bytes()),
            _ => out.extend_from_slice(&v.to_be_bytes()),
        }
        Ok(())
    }
}

/// u64 goes out as int8, like PostgreSQL's bigint row counters; the rare
/// value above i64::MAX is an error rather than a silent wrap.
pub(super) struct U64W<'a> {
    pub(super) arr: &'a PrimitiveArray<UInt64Type>,
    pub(super) binary: bool,
}
impl ValueWriter for U64W<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let v = get(self.arr.values(), row)?;
        let signed = i64::try_from(v).map_err(|_| EncodeError::BigintOutOfRange(v))?;
        if self.binary {
            out.extend_from_slice(&signed.to_be_bytes());
        } else {
            text::write_i64(out, signed);
        }
        Ok(())
    }
}

pub(super) struct Float4W<'a, T: ArrowPrimitiveType> {
    pub(super) arr: &'a PrimitiveArray<T>,
    pub(super) binary: bool,
}
impl<T: ArrowPrimitiveType> ValueWriter for Float4W<'_, T>
where
    T::Native: Into<f32>,
{
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let v: f32 = get(self.arr.values(), row)?.into();
        if self.binary {
            out.extend_from_slice(&v.to_bits().to_be_bytes());
        } else {
            text::write_f32(out, v);
        }
        Ok(())
    }
}

pub(super) struct Float8W<'a> {
    pub(super) arr: &'a PrimitiveArray<Float64Type>,
    pub(super) binary: bool,
}
impl ValueWriter for Float8W<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let v = get(self.arr.values(), row)?;
        if self.binary {
            out.extend_from_slice(&v.to_bits().to_be_bytes());
        } else {
            text::write_f64(out, v);
        }
        Ok(())
    }
}

/// Writes `digits × 10^-scale` as numeric text or binary.
fn write_numeric(out: &mut Vec<u8>, negative: bool, digits: &[u8], scale: i8, binary: bool) {
    if binary {
        text::write_numeric_binary(out, negative, digits, scale);
    } else {
        text::write_numeric_text(out, negative, digits, scale);
    }
}

pub(super) struct DecW<'a, T: ArrowPrimitiveType> {
    pub(super) values: &'a [T::Native],
    pub(super) scale: i8,
    pub(super) binary: bool,
    /// Reused digit buffer, so no allocation per value.
    pub(super) digits: Vec<u8>,
}
pub(super) fn dec<'a, T: ArrowPrimitiveType>(
    arr: &'a PrimitiveArray<T>,
    scale: i8,
    binary: bool,
) -> Box<dyn ValueWriter + 'a>
where
    T::Native: Into<i128>,
{
    Box::new(DecW::<T> { values: arr.values(), scale, binary, digits: Vec::new() })
}
impl<T: ArrowPrimitiveType> ValueWriter for DecW<'_, T>
where
    T::Native: Into<i128>,
{
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let v: i128 = get(self.values, row)?.into();
        self.digits.clear();
        text::write_u128(&mut self.digits, v.unsigned_abs());
        write_numeric(out, v < 0, &self.digits, self.scale, self.binary);
        Ok(())
    }
}

pub(super) struct Dec256W<'a> {
    pub(super) arr: &'a PrimitiveArray<Decimal256Type>,
    pub(super) scale: i8,
    pub(super) binary: bool,
    pub(super) digits: Vec<u8>,
}
impl ValueWriter for Dec256W<'_> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let v = get(self.arr.values(), row)?;
        self.digits.clear();
        let negative = v < i256::ZERO;
        match v.to_i128() {
            Some(small) => text::write_u128(&mut self.digits, small.unsigned_abs()),
            // Beyond i128 (rare): use i256's own decimal rendering.
            None => {
                let _ = write!(self.digits, "{v}");
                if negative {
                    self.digits.remove(0);
                }
            }
        }
        write_numeric(out, negative, &self.digits, self.scale, self.binary);
        Ok(())
    }
}
