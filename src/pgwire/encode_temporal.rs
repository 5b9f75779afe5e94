//! Date, time, timestamp and interval writers for `encode_column`: Arrow's
//! units and epochs converted to PostgreSQL's microseconds since 2000-01-01.

use datafusion::arrow::array::{ArrowPrimitiveType, PrimitiveArray};
use datafusion::arrow::datatypes::*;

use super::super::encode::EncodeError;
use super::super::encode_text as text;
use super::{ValueWriter, get};

/// Date32 (days) and Date64 (milliseconds, `per_day` = 86 400 000).
pub(super) struct DateW<'a, T: ArrowPrimitiveType> {
    pub(super) arr: &'a PrimitiveArray<T>,
    pub(super) per_day: i64,
    pub(super) binary: bool,
}
impl<T: ArrowPrimitiveType> ValueWriter for DateW<'_, T>
where
    T::Native: Into<i64>,
{
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let days = get(self.arr.values(), row)?.into().div_euclid(self.per_day);
        if self.binary {
            let pg_days = i32::try_from(days - text::PG_EPOCH_DAYS).map_err(|_| EncodeError::OutOfRange("date"))?;
            out.extend_from_slice(&pg_days.to_be_bytes());
        } else {
            text::write_date(out, days);
        }
        Ok(())
    }
}

/// Converts a count of `unit` to microseconds, flooring sub-microsecond parts
/// (PostgreSQL keeps microseconds; flooring keeps pre-1970 times consistent).
fn to_micros(v: i64, unit: TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000),
        TimeUnit::Millisecond => v.checked_mul(1_000),
        TimeUnit::Microsecond => Some(v),
        TimeUnit::Nanosecond => Some(v.div_euclid(1_000)),
    }
}

struct TimeW<'a, T: ArrowPrimitiveType> {
    arr: &'a PrimitiveArray<T>,
    unit: TimeUnit,
    binary: bool,
}
pub(super) fn time<'a, T: ArrowPrimitiveType>(
    arr: &'a PrimitiveArray<T>,
    unit: TimeUnit,
    binary: bool,
) -> Box<dyn ValueWriter + 'a>
where
    T::Native: Into<i64>,
{
    Box::new(TimeW { arr, unit, binary })
}
impl<T: ArrowPrimitiveType> ValueWriter for TimeW<'_, T>
where
    T::Native: Into<i64>,
{
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let usecs = to_micros(get(self.arr.values(), row)?.into(), self.unit)
            .filter(|u| (0..=text::USECS_PER_DAY).contains(u))
            .ok_or(EncodeError::OutOfRange("time"))?;
        if self.binary {
            out.extend_from_slice(&usecs.to_be_bytes());
        } else {
            text::write_time(out, usecs);
        }
        Ok(())
    }
}

struct TsW<'a, T: ArrowPrimitiveType> {
    arr: &'a PrimitiveArray<T>,
    unit: TimeUnit,
    tz: bool,
    binary: bool,
}
pub(super) fn ts<'a, T: ArrowPrimitiveType>(
    arr: &'a PrimitiveArray<T>,
    unit: TimeUnit,
    tz: bool,
    binary: bool,
) -> Box<dyn ValueWriter + 'a>
where
    T::Native: Into<i64>,
{
    Box::new(TsW { arr, unit, tz, binary })
}
impl<T: ArrowPrimitiveType> ValueWriter for TsW<'_, T>
where
    T::Native: Into<i64>,
{
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let what = if self.tz { "timestamptz" } else { "timestamp" };
        let usecs = to_micros(get(self.arr.values(), row)?.into(), self.unit).ok_or(EncodeError::OutOfRange(what))?;
        if self.binary {
            let pg = usecs.checked_sub(text::PG_EPOCH_USECS).ok_or(EncodeError::OutOfRange(what))?;
            out.extend_from_slice(&pg.to_be_bytes());
        } else {
            text::write_timestamp(out, usecs, self.tz);
        }
        Ok(())
    }
}

/// Arrow interval and duration values as PostgreSQL's (months, days, microseconds).
pub(super) trait AsInterval: ArrowPrimitiveType {
    fn parts(v: Self::Native) -> Option<(i32, i32, i64)>;
}
impl AsInterval for IntervalYearMonthType {
    fn parts(v: i32) -> Option<(i32, i32, i64)> {
        Some((v, 0, 0))
    }
}
impl AsInterval for IntervalDayTimeType {
    fn parts(v: IntervalDayTime) -> Option<(i32, i32, i64)> {
        Some((0, v.days, i64::from(v.milliseconds) * 1_000))
    }
}
impl AsInterval for IntervalMonthDayNanoType {
    fn parts(v: IntervalMonthDayNano) -> Option<(i32, i32, i64)> {
        Some((v.months, v.days, v.nanoseconds / 1_000))
    }
}
macro_rules! duration_parts {
    ($t:ty, $unit:expr) => {
        impl AsInterval for $t {
            fn parts(v: i64) -> Option<(i32, i32, i64)> {
                // Durations truncate toward zero: -1.5µs is -1µs, as a span should.
                let usecs = match $unit {
                    TimeUnit::Nanosecond => v / 1_000,
                    unit => to_micros(v, unit)?,
                };
                Some((0, 0, usecs))
            }
        }
    };
}
duration_parts!(DurationSecondType, TimeUnit::Second);
duration_parts!(DurationMillisecondType, TimeUnit::Millisecond);
duration_parts!(DurationMicrosecondType, TimeUnit::Microsecond);
duration_parts!(DurationNanosecondType, TimeUnit::Nanosecond);

pub(super) struct IntervalW<'a, T: ArrowPrimitiveType> {
    pub(super) arr: &'a PrimitiveArray<T>,
    pub(super) binary: bool,
}
impl<T: AsInterval> ValueWriter for IntervalW<'_, T> {
    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let (months, days, usecs) = T::parts(get(self.arr.values(), row)?).ok_or(EncodeError::OutOfRange("interval"))?;
        if self.binary {
            out.extend_from_slice(&usecs.to_be_bytes());
            out.extend_from_slice(&days.to_be_bytes());
            out.extend_from_slice(&months.to_be_bytes());
        } else {
            text::write_interval(out, months, days, usecs);
        }
        Ok(())
    }
}
