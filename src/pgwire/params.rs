//! Bound parameters of the extended protocol: reads each value of a Bind in
//! its wire format (text or binary) as a DataFusion scalar of the type the
//! statement expects.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::FieldFormat;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use super::params_text as text;
use crate::types::pg_type;

/// Why a parameter could not be decoded; each maps to PostgreSQL's SQLSTATE.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error("bind message supplies {supplied} parameters, but prepared statement \"{statement}\" requires {required}")]
    WrongCount { supplied: usize, required: usize, statement: String },
    #[error("bind message has {formats} parameter formats but {params} parameters")]
    WrongFormatCount { formats: usize, params: usize },
    #[error("parameter ${index} has unsupported type {pg_type}")]
    UnsupportedType { index: usize, pg_type: String },
    #[error("invalid input syntax for type {pg_type} in parameter ${index}: \"{value}\"")]
    InvalidText { index: usize, pg_type: String, value: String },
    #[error("incorrect binary data format in bind parameter {index} ({pg_type})")]
    InvalidBinary { index: usize, pg_type: String },
    #[error("value \"{value}\" of parameter ${index} is out of range for type {pg_type}")]
    OutOfRange { index: usize, pg_type: String, value: String },
    #[error("invalid byte sequence for encoding \"UTF8\" in parameter ${index}")]
    InvalidUtf8 { index: usize },
}

impl ParamError {
    fn sqlstate(&self) -> &'static str {
        match self {
            ParamError::WrongCount { .. } | ParamError::WrongFormatCount { .. } => "08P01",
            ParamError::UnsupportedType { .. } => "0A000",
            ParamError::InvalidText { .. } => "22P02",
            ParamError::InvalidBinary { .. } => "22P03",
            ParamError::OutOfRange { .. } => "22003",
            ParamError::InvalidUtf8 { .. } => "22021",
        }
    }
}

impl From<ParamError> for PgWireError {
    fn from(e: ParamError) -> Self {
        PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), e.sqlstate().into(), e.to_string())))
    }
}

/// The Arrow type a PostgreSQL parameter type maps to (None when unsupported).
///
/// Follows DataFusion's own SQL type names where they exist (`NUMERIC` is
/// `Decimal128(38, 10)`), but keeps PostgreSQL's microsecond precision for
/// times so every PostgreSQL value fits.
pub fn arrow_type_of(t: &Type) -> Option<DataType> {
    Some(match *t {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 | Type::OID => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => DataType::Decimal128(38, 10),
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::CHAR
        | Type::UNKNOWN
        | Type::JSON
        | Type::JSONB
        | Type::UUID => DataType::Utf8,
        Type::BYTEA => DataType::Binary,
        Type::DATE => DataType::Date32,
        Type::TIME => DataType::Time64(TimeUnit::Microsecond),
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        Type::INTERVAL => DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
        _ => return None,
    })
}

/// Decodes the portal's parameters. `inferred[i]` is the type DataFusion inferred for $i+1 (None if unknown);
/// a type the client declared in Parse wins over the inferred one; with neither, the value is text (Utf8).
pub fn decode_params<S: Clone>(portal: &Portal<S>, inferred: &[Option<DataType>]) -> PgWireResult<Vec<ScalarValue>> {
    let declared = &portal.statement.parameter_types;
    let required = inferred.len().max(declared.len());
    let supplied = portal.parameters.len();
    if supplied != required {
        return Err(ParamError::WrongCount { supplied, required, statement: portal.statement.id.clone() }.into());
    }
    if let Format::Individual(codes) = &portal.parameter_format
        && codes.len() != supplied
    {
        return Err(ParamError::WrongFormatCount { formats: codes.len(), params: supplied }.into());
    }
    let mut values = Vec::with_capacity(supplied);
    for (i, raw) in portal.parameters.iter().enumerate() {
        let declared = declared.get(i).cloned().flatten().filter(|t| *t != Type::UNKNOWN);
        let inferred = inferred.get(i).cloned().flatten().filter(|t| *t != DataType::Null);
        let binary = match &portal.parameter_format {
            Format::UnifiedText => false,
            Format::UnifiedBinary => true,
            Format::Individual(codes) => codes.get(i).is_some_and(|c| FieldFormat::from(*c) == FieldFormat::Binary),
        };
        values.push(decode_one(i + 1, raw.as_deref(), declared, inferred, binary)?);
    }
    Ok(values)
}

/// Decodes parameter `$index`: `declared` decides how its bytes are read and
/// the result type; without it the inferred type does, and without either it
/// is text.
fn decode_one(
    index: usize,
    raw: Option<&[u8]>,
    declared: Option<Type>,
    inferred: Option<DataType>,
    binary: bool,
) -> Result<ScalarValue, ParamError> {
    let target = match &declared {
        Some(t) => {
            let mapped =
                arrow_type_of(t).ok_or_else(|| ParamError::UnsupportedType { index, pg_type: t.name().to_owned() })?;
            match (&mapped, &inferred) {
                // Parse carries no typmod, so a declared NUMERIC takes the
                // precision and scale the statement needs.
                (DataType::Decimal128(..), Some(d @ (DataType::Decimal128(..) | DataType::Decimal256(..)))) => d.clone(),
                _ => mapped,
            }
        }
        None => inferred.unwrap_or(DataType::Utf8),
    };
    let wire = declared.unwrap_or_else(|| pg_type(&target));
    let Some(raw) = raw else {
        return ScalarValue::try_new_null(&target)
            .map_err(|_| ParamError::UnsupportedType { index, pg_type: target.to_string() });
    };
    let ctx = Ctx { index, wire: &wire };
    let value = if binary { decode_binary(&ctx, raw)? } else { decode_text(&ctx, raw, &target)? };
    conform(&ctx, value, &target)
}

/// What an error message needs to name the parameter.
struct Ctx<'a> {
    index: usize,
    wire: &'a Type,
}

impl Ctx<'_> {
    fn invalid_text(&self, value: &str) -> ParamError {
        ParamError::InvalidText { index: self.index, pg_type: self.wire.name().to_owned(), value: clip(value) }
    }
    fn out_of_range(&self, value: &str) -> ParamError {
        ParamError::OutOfRange { index: self.index, pg_type: self.wire.name().to_owned(), value: clip(value) }
    }
    fn invalid_binary(&self) -> ParamError {
        ParamError::InvalidBinary { index: self.index, pg_type: self.wire.name().to_owned() }
    }
    fn unsupported(&self, what: &DataType) -> ParamError {
        ParamError::UnsupportedType { index: self.index, pg_type: what.to_string() }
    }
}

/// Error messages quote the value, but not a megabyte of it.
fn clip(value: &str) -> String {
    let mut s: String = value.chars().take(64).collect();
    if s.len() < value.len() {
        s.push_str("...");
    }
    s
}

fn decode_text(ctx: &Ctx<'_>, raw: &[u8], target: &DataType) -> Result<ScalarValue, ParamError> {
    let s = std::str::from_utf8(raw).map_err(|_| ParamError::InvalidUtf8 { index: ctx.index })?;
    let t = s.trim();
    Ok(match target {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ScalarValue::Utf8(Some(s.to_owned())),
        DataType::Boolean => ScalarValue::Boolean(Some(text::parse_bool(t).ok_or_else(|| ctx.invalid_text(s))?)),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let v: i64 = t.parse().map_err(|e: std::num::ParseIntError| int_error(ctx, s, &e))?;
            ScalarValue::Int64(Some(v))
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let v: u64 = t.parse().map_err(|e: std::num::ParseIntError| int_error(ctx, s, &e))?;
            ScalarValue::UInt64(Some(v))
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            ScalarValue::Float64(Some(t.parse().map_err(|_| ctx.invalid_text(s))?))
        }
        DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            let (unscaled, scale) = text::parse_decimal(t).ok_or_else(|| {
                if t.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) && !t.is_empty() {
                    ctx.out_of_range(s)
                } else {
                    ctx.invalid_text(s)
                }
            })?;
            decimal(ctx, s, unscaled, scale, target)?
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            ScalarValue::Binary(Some(text::parse_bytea(raw).ok_or_else(|| ctx.invalid_text(s))?))
        }
        DataType::Interval(_) | DataType::Duration(_) => {
            let (months, days, usecs) = text::parse_interval(t).ok_or_else(|| ctx.invalid_text(s))?;
            interval(ctx, s, months, days, usecs)?
        }
        DataType::Timestamp(unit, Some(_)) => {
            // Arrow's parser wants `+hh:mm`; clients send PostgreSQL's `+hh`.
            let normalized = text::normalize_offset(t);
            let utf8 = ScalarValue::Utf8(Some(normalized.into_owned()));
            utf8.cast_to(&DataType::Timestamp(*unit, Some("+00:00".into()))).map_err(|_| ctx.invalid_text(s))?
        }
        // Dates and times: Arrow's parsers accept PostgreSQL's ISO output.
        _ => {
            let utf8 = ScalarValue::Utf8(Some(text::normalize_offset(t).into_owned()));
            match utf8.cast_to(target) {
                Ok(v) => v,
                Err(_) if !datafusion::arrow::compute::can_cast_types(&DataType::Utf8, target) => {
                    return Err(ctx.unsupported(target));
                }
                Err(_) => return Err(ctx.invalid_text(s)),
            }
        }
    })
}

fn int_error(ctx: &Ctx<'_>, s: &str, e: &std::num::ParseIntError) -> ParamError {
    use std::num::IntErrorKind;
    match e.kind() {
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => ctx.out_of_range(s),
        _ => ctx.invalid_text(s),
    }
}

/// A decimal `unscaled × 10^-scale` as a Decimal128 of the target's scale
/// (rounded half away from zero, as PostgreSQL rounds numeric input).
fn decimal(ctx: &Ctx<'_>, s: &str, unscaled: i128, scale: i32, target: &DataType) -> Result<ScalarValue, ParamError> {
    let (precision, to_scale) = match target {
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            (*p, *s)
        }
        _ => (38, scale.clamp(0, 38) as i8),
    };
    let v = text::rescale(unscaled, scale, i32::from(to_scale)).ok_or_else(|| ctx.out_of_range(s))?;
    let limit = 10i128.checked_pow(u32::from(precision.min(38))).unwrap_or(i128::MAX);
    if v.unsigned_abs() >= limit.unsigned_abs() {
        return Err(ctx.out_of_range(s));
    }
    Ok(ScalarValue::Decimal128(Some(v), precision.min(38), to_scale))
}

fn interval(ctx: &Ctx<'_>, s: &str, months: i64, days: i64, usecs: i64) -> Result<ScalarValue, ParamError> {
    let months = i32::try_from(months).map_err(|_| ctx.out_of_range(s))?;
    let days = i32::try_from(days).map_err(|_| ctx.out_of_range(s))?;
    let nanos = usecs.checked_mul(1_000).ok_or_else(|| ctx.out_of_range(s))?;
    Ok(ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(months, days, nanos))))
}

/// Microseconds from the Unix epoch to PostgreSQL's 2000-01-01.
const PG_EPOCH_USECS: i64 = 946_684_800_000_000;
const PG_EPOCH_DAYS: i32 = 10_957;

fn fixed<const N: usize>(ctx: &Ctx<'_>, raw: &[u8]) -> Result<[u8; N], ParamError> {
    raw.try_into().map_err(|_| ctx.invalid_binary())
}

/// Reads a binary-format value of the wire type.
fn decode_binary(ctx: &Ctx<'_>, raw: &[u8]) -> Result<ScalarValue, ParamError> {
    let utf8 = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(|s| ScalarValue::Utf8(Some(s.to_owned())))
            .map_err(|_| ParamError::InvalidUtf8 { index: ctx.index })
    };
    Ok(match *ctx.wire {
        Type::BOOL => ScalarValue::Boolean(Some(fixed::<1>(ctx, raw)?[0] != 0)),
        Type::INT2 => ScalarValue::Int16(Some(i16::from_be_bytes(fixed(ctx, raw)?))),
        Type::INT4 => ScalarValue::Int32(Some(i32::from_be_bytes(fixed(ctx, raw)?))),
        Type::INT8 => ScalarValue::Int64(Some(i64::from_be_bytes(fixed(ctx, raw)?))),
        Type::OID => ScalarValue::Int64(Some(i64::from(u32::from_be_bytes(fixed(ctx, raw)?)))),
        Type::FLOAT4 => ScalarValue::Float32(Some(f32::from_be_bytes(fixed(ctx, raw)?))),
        Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_be_bytes(fixed(ctx, raw)?))),
        Type::NUMERIC => {
            let (unscaled, scale) = text::decode_numeric_binary(raw).ok_or_else(|| ctx.invalid_binary())?;
            let p = 38u8;
            ScalarValue::Decimal128(Some(unscaled), p, i8::try_from(scale).map_err(|_| ctx.invalid_binary())?)
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::CHAR | Type::UNKNOWN | Type::JSON => utf8(raw)?,
        // jsonb's binary form is a version byte (1) before the text.
        Type::JSONB => match raw.split_first() {
            Some((1, rest)) => utf8(rest)?,
            _ => return Err(ctx.invalid_binary()),
        },
        Type::UUID => ScalarValue::Utf8(Some(text::format_uuid(&fixed::<16>(ctx, raw)?))),
        Type::BYTEA => ScalarValue::Binary(Some(raw.to_vec())),
        Type::DATE => {
            let days =
                i32::from_be_bytes(fixed(ctx, raw)?).checked_add(PG_EPOCH_DAYS).ok_or_else(|| ctx.invalid_binary())?;
            ScalarValue::Date32(Some(days))
        }
        Type::TIME => ScalarValue::Time64Microsecond(Some(i64::from_be_bytes(fixed(ctx, raw)?))),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let usecs =
                i64::from_be_bytes(fixed(ctx, raw)?).checked_add(PG_EPOCH_USECS).ok_or_else(|| ctx.invalid_binary())?;
            let tz = (*ctx.wire == Type::TIMESTAMPTZ).then(|| Arc::from("+00:00"));
            ScalarValue::TimestampMicrosecond(Some(usecs), tz)
        }
        Type::INTERVAL => {
            let b: [u8; 16] = fixed(ctx, raw)?;
            let (usecs, rest) = b.split_at(8);
            let usecs = i64::from_be_bytes(usecs.try_into().map_err(|_| ctx.invalid_binary())?);
            let days = i32::from_be_bytes(rest[..4].try_into().map_err(|_| ctx.invalid_binary())?);
            let months = i32::from_be_bytes(rest[4..].try_into().map_err(|_| ctx.invalid_binary())?);
            interval(ctx, "interval", i64::from(months), i64::from(days), usecs)?
        }
        _ => {
            return Err(ParamError::UnsupportedType { index: ctx.index, pg_type: ctx.wire.name().to_owned() });
        }
    })
}

/// Casts a decoded value to exactly the type the statement expects, since
/// DataFusion rejects parameters whose type differs from the placeholder's.
fn conform(ctx: &Ctx<'_>, value: ScalarValue, target: &DataType) -> Result<ScalarValue, ParamError> {
    if value.data_type() == *target {
        return Ok(value);
    }
    if let (ScalarValue::Decimal128(Some(v), _, scale), DataType::Decimal128(..)) = (&value, target) {
        return decimal(ctx, &value.to_string(), *v, i32::from(*scale), target);
    }
    let shown = value.to_string();
    value.cast_to(target).map_err(|_| {
        let numeric = |dt: &DataType| dt.is_numeric();
        if !datafusion::arrow::compute::can_cast_types(&value.data_type(), target) {
            ctx.unsupported(target)
        } else if numeric(&value.data_type()) && numeric(target) {
            ctx.out_of_range(&shown)
        } else {
            ctx.invalid_text(&shown)
        }
    })
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
