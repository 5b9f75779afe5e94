//! Renders a value received in PostgreSQL's binary format as the text
//! PostgreSQL itself would print for it (the `*out` functions, with
//! `DateStyle = ISO`, `IntervalStyle = postgres`, `bytea_output = hex`,
//! `extra_float_digits = 1`, `TimeZone = UTC`), so the extended protocol
//! compares equal to the simple protocol's text.

use tokio_postgres::types::{Kind, Type};

const USECS_PER_DAY: i64 = 86_400_000_000;
/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

type R<T> = Result<T, String>;

/// Renders one non-NULL binary value of type `ty` as PostgreSQL text.
pub fn render(ty: &Type, raw: &[u8]) -> R<String> {
    if let Kind::Array(elem) = ty.kind() {
        return array(elem, raw);
    }
    Ok(match *ty {
        Type::BOOL => if byte(raw, 0)? != 0 { "t" } else { "f" }.to_owned(),
        Type::INT2 => i16::from_be_bytes(fixed(raw)?).to_string(),
        Type::INT4 => i32::from_be_bytes(fixed(raw)?).to_string(),
        Type::INT8 => i64::from_be_bytes(fixed(raw)?).to_string(),
        Type::OID => u32::from_be_bytes(fixed(raw)?).to_string(),
        Type::FLOAT4 => {
            let v = f32::from_be_bytes(fixed(raw)?);
            float(v.is_nan(), v.is_infinite(), v < 0.0, &format!("{v:e}"), 6)
        }
        Type::FLOAT8 => {
            let v = f64::from_be_bytes(fixed(raw)?);
            float(v.is_nan(), v.is_infinite(), v < 0.0, &format!("{v:e}"), 15)
        }
        Type::NUMERIC => numeric(raw)?,
        Type::DATE => date(i32::from_be_bytes(fixed(raw)?))?,
        Type::TIME => time_of_day(i64::from_be_bytes(fixed(raw)?)),
        Type::TIMESTAMP => timestamp(i64::from_be_bytes(fixed(raw)?), "")?,
        Type::TIMESTAMPTZ => timestamp(i64::from_be_bytes(fixed(raw)?), "+00")?,
        Type::INTERVAL => interval(raw)?,
        Type::BYTEA => {
            let mut s = String::from("\\x");
            for b in raw {
                s.push_str(&format!("{b:02x}"));
            }
            s
        }
        Type::UUID => {
            let h: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            if h.len() != 32 {
                return Err(format!("uuid of {} bytes", raw.len()));
            }
            format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
        }
        Type::JSONB => utf8(raw.get(1..).ok_or("empty jsonb")?)?,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::CHAR | Type::UNKNOWN | Type::JSON | Type::XML => {
            utf8(raw)?
        }
        _ => return Err(format!("no text rendering for type {} (oid {})", ty, ty.oid())),
    })
}

fn byte(raw: &[u8], i: usize) -> R<u8> {
    raw.get(i).copied().ok_or_else(|| "value too short".to_owned())
}

fn fixed<const N: usize>(raw: &[u8]) -> R<[u8; N]> {
    raw.try_into().map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

fn utf8(raw: &[u8]) -> R<String> {
    String::from_utf8(raw.to_vec()).map_err(|e| e.to_string())
}

/// A big-endian cursor over a binary value.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if self.0.len() < n {
            return Err("value too short".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn i16(&mut self) -> R<i16> {
        Ok(i16::from_be_bytes(fixed(self.take(2)?)?))
    }
    fn i32(&mut self) -> R<i32> {
        Ok(i32::from_be_bytes(fixed(self.take(4)?)?))
    }
    fn i64(&mut self) -> R<i64> {
        Ok(i64::from_be_bytes(fixed(self.take(8)?)?))
    }
}

/// `float4out`/`float8out`: shortest round-trip digits, fixed notation when
/// the decimal exponent is in `-4..max_fixed`, else `d.ddde+XX`.
fn float(nan: bool, inf: bool, negative: bool, sci: &str, max_fixed: i32) -> String {
    if nan {
        return "NaN".into();
    }
    if inf {
        return if negative { "-Infinity" } else { "Infinity" }.into();
    }
    // `sci` is Rust's shortest form, e.g. "-1.2345e-7" or "0e0".
    let (sign, body) = match sci.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", sci),
    };
    let (mantissa, exp) = body.split_once('e').unwrap_or((body, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    if (-4..max_fixed).contains(&exp) {
        let s = if exp < 0 {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        } else if n <= exp + 1 {
            format!("{}{}", digits, "0".repeat((exp + 1 - n) as usize))
        } else {
            format!("{}.{}", &digits[..(exp + 1) as usize], &digits[(exp + 1) as usize..])
        };
        format!("{sign}{s}")
    } else {
        let rest = if n > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{}{rest}e{esign}{:02}", &digits[..1], exp.abs())
    }
}

/// `numeric_out`: base-10000 digit groups, `weight` groups before the point,
/// exactly `dscale` digits after it.
fn numeric(raw: &[u8]) -> R<String> {
    let mut c = Cursor(raw);
    let ndigits = c.i16()? as usize;
    let weight = c.i16()? as i32;
    let sign = c.i16()? as u16;
    let dscale = c.i16()? as usize;
    let groups = (0..ndigits).map(|_| c.i16()).collect::<R<Vec<i16>>>()?;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let group = |i: i32| -> i16 { if i >= 0 { groups.get(i as usize).copied().unwrap_or(0) } else { 0 } };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                s.push_str(&group(i).to_string());
            } else {
                s.push_str(&format!("{:04}", group(i)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut i = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", group(i)));
            i += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

/// Proleptic Gregorian (year, month, day) of a day count from 1970-01-01.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD`, with PostgreSQL's ` BC` suffix for years before 1.
fn ymd(days_since_pg_epoch: i64) -> (String, &'static str) {
    let (y, m, d) = civil(days_since_pg_epoch + PG_EPOCH_DAYS);
    if y <= 0 { (format!("{:04}-{m:02}-{d:02}", 1 - y), " BC") } else { (format!("{y:04}-{m:02}-{d:02}"), "") }
}

fn date(days: i32) -> R<String> {
    Ok(match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        _ => {
            let (s, bc) = ymd(days.into());
            format!("{s}{bc}")
        }
    })
}

/// Seconds with the fraction trimmed of trailing zeros, as `AppendSeconds`.
fn seconds(sec: i64, usec: i64) -> String {
    if usec == 0 {
        format!("{sec:02}")
    } else {
        let frac = format!("{usec:06}");
        format!("{sec:02}.{}", frac.trim_end_matches('0'))
    }
}

fn time_of_day(usecs: i64) -> String {
    let secs = usecs.div_euclid(1_000_000);
    let usec = usecs.rem_euclid(1_000_000);
    format!("{:02}:{:02}:{}", secs / 3600, secs / 60 % 60, seconds(secs % 60, usec))
}

fn timestamp(usecs: i64, zone: &str) -> R<String> {
    Ok(match usecs {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        _ => {
            let (day, bc) = ymd(usecs.div_euclid(USECS_PER_DAY));
            let time = time_of_day(usecs.rem_euclid(USECS_PER_DAY));
            format!("{day} {time}{zone}{bc}")
        }
    })
}

/// `interval_out` with `IntervalStyle = postgres`, e.g.
/// `1 year 2 mons -3 days +04:05:06.5`.
fn interval(raw: &[u8]) -> R<String> {
    let mut c = Cursor(raw);
    let time = c.i64()?;
    let days = c.i32()?;
    let months = c.i32()?;
    let mut out = String::new();
    let mut is_zero = true;
    let mut is_before = false;
    for (value, unit) in [(months / 12, "year"), (months % 12, "mon"), (days, "day")] {
        if value == 0 {
            continue;
        }
        let plus = if is_before && value > 0 { "+" } else { "" };
        let space = if is_zero { "" } else { " " };
        let plural = if value != 1 { "s" } else { "" };
        out.push_str(&format!("{space}{plus}{value} {unit}{plural}"));
        is_before = value < 0;
        is_zero = false;
    }
    if is_zero || time != 0 {
        let hour = time / 3_600_000_000;
        let min = time / 60_000_000 % 60;
        let sec = time / 1_000_000 % 60;
        let usec = time % 1_000_000;
        let minus = time < 0;
        let sign = if minus {
            "-"
        } else if is_before {
            "+"
        } else {
            ""
        };
        let space = if is_zero { "" } else { " " };
        out.push_str(&format!("{space}{sign}{:02}:{:02}:{}", hour.abs(), min.abs(), seconds(sec.abs(), usec.abs())));
    }
    Ok(out)
}

/// `array_out`: `{a,b,NULL}`, nested per dimension, elements quoted when
/// they are empty, `NULL`, or contain braces, commas, quotes, backslashes or
/// whitespace.
fn array(elem: &Type, raw: &[u8]) -> R<String> {
    let mut c = Cursor(raw);
    let ndim = c.i32()?;
    let _has_nulls = c.i32()?;
    let _elem_oid = c.i32()?;
    if ndim == 0 {
        return Ok("{}".into());
    }
    let mut dims = Vec::new();
    for _ in 0..ndim {
        dims.push(c.i32()? as usize);
        let _lower_bound = c.i32()?;
    }
    let total: usize = dims.iter().product();
    let mut items = Vec::with_capacity(total);
    for _ in 0..total {
        let len = c.i32()?;
        items.push(if len < 0 { "NULL".to_owned() } else { quote_element(render(elem, c.take(len as usize)?)?) });
    }
    let mut items = items.into_iter();
    Ok(nest(&dims, &mut items))
}

fn nest(dims: &[usize], items: &mut impl Iterator<Item = String>) -> String {
    let parts: Vec<String> = (0..dims[0])
        .map(|_| if dims.len() == 1 { items.next().unwrap_or_default() } else { nest(&dims[1..], items) })
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn quote_element(s: String) -> String {
    let needs = s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.chars().any(|ch| matches!(ch, '{' | '}' | ',' | '"' | '\\' | ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C'));
    if !needs {
        return s;
    }
    let mut q = String::from("\"");
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            q.push('\\');
        }
        q.push(ch);
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_postgres() {
        let f8 = |v: f64| float(v.is_nan(), v.is_infinite(), v < 0.0, &format!("{v:e}"), 15);
        assert_eq!(f8(1.5), "1.5");
        assert_eq!(f8(100.0), "100");
        assert_eq!(f8(0.0), "0");
        assert_eq!(f8(-0.0), "-0");
        assert_eq!(f8(1e20), "1e+20");
        assert_eq!(f8(1.5e-7), "1.5e-07");
        assert_eq!(f8(0.0001), "0.0001");
        assert_eq!(f8(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(f8(123456789012345.0), "123456789012345");
        assert_eq!(f8(1234567890123456.0), "1.234567890123456e+15");
        let f4 = |v: f32| float(v.is_nan(), v.is_infinite(), v < 0.0, &format!("{v:e}"), 6);
        assert_eq!(f4(1.25), "1.25");
        assert_eq!(f4(1234567.0), "1.234567e+06");
        assert_eq!(f4(0.1), "0.1");
    }

    #[test]
    fn numerics_keep_their_scale() {
        // 12345.670 : ndigits 3, weight 1, sign +, dscale 3, groups 1 2345 6700
        let raw = [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1A, 0x2C];
        assert_eq!(numeric(&raw).unwrap(), "12345.670");
        // -0.05 : ndigits 1, weight -1, sign -, dscale 2, groups 500
        let raw = [0, 1, 0xFF, 0xFF, 0x40, 0, 0, 2, 0x01, 0xF4];
        assert_eq!(numeric(&raw).unwrap(), "-0.05");
        // 0 with dscale 2
        assert_eq!(numeric(&[0, 0, 0, 0, 0, 0, 0, 2]).unwrap(), "0.00");
    }

    #[test]
    fn dates_times_intervals() {
        assert_eq!(date(0).unwrap(), "2000-01-01");
        assert_eq!(date(-10957).unwrap(), "1970-01-01");
        assert_eq!(date(8766).unwrap(), "2024-01-01");
        assert_eq!(time_of_day(45_296_500_000), "12:34:56.5");
        assert_eq!(timestamp(-1, "").unwrap(), "1999-12-31 23:59:59.999999");
        let iv = |t: i64, d: i32, m: i32| {
            let mut raw = t.to_be_bytes().to_vec();
            raw.extend(d.to_be_bytes());
            raw.extend(m.to_be_bytes());
            interval(&raw).unwrap()
        };
        assert_eq!(iv(0, 0, 0), "00:00:00");
        assert_eq!(iv(0, 1, 0), "1 day");
        assert_eq!(iv(0, -1, 0), "-1 days");
        assert_eq!(iv(7_200_000_000, -1, 0), "-1 days +02:00:00");
        assert_eq!(iv(14_706_000_000, 3, 14), "1 year 2 mons 3 days 04:05:06");
        assert_eq!(iv(-1_500_000, 0, 0), "-00:00:01.5");
    }

    #[test]
    fn array_elements_are_quoted_when_needed() {
        assert_eq!(quote_element("a".into()), "a");
        assert_eq!(quote_element("a b".into()), "\"a b\"");
        assert_eq!(quote_element("".into()), "\"\"");
        assert_eq!(quote_element("null".into()), "\"null\"");
        assert_eq!(quote_element("x\"y".into()), "\"x\\\"y\"");
    }
}
