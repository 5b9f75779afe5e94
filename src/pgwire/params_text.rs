//! Parsers for PostgreSQL's input syntax of parameter values (boolean,
//! numeric, bytea, interval, time zone offsets) and the binary `numeric` and
//! `uuid` layouts, for the cases Arrow's own string casts do not cover.

use std::borrow::Cow;

/// PostgreSQL's boolean input: `t`/`true`/`yes`/`on`/`1` and their negatives,
/// any case, unambiguous prefixes allowed (input is already trimmed).
pub(super) fn parse_bool(s: &str) -> Option<bool> {
    let lower = s.to_ascii_lowercase();
    let l = lower.as_str();
    let prefix_of = |word: &str, min: usize| l.len() >= min && word.starts_with(l);
    if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || l == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || l == "0" {
        Some(false)
    } else {
        None
    }
}

/// Parses `[+-]digits[.digits][e[+-]digits]` into `(unscaled, scale)` with
/// value `unscaled × 10^-scale`; None when malformed or beyond i128.
pub(super) fn parse_decimal(s: &str) -> Option<(i128, i32)> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], body[at + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v: i128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
    }
    let scale = i32::try_from(frac.len()).ok()?.checked_sub(exp)?;
    Some((if negative { -v } else { v }, scale))
}

/// Changes the scale of `v × 10^-from` to `to`, rounding half away from zero.
pub(super) fn rescale(v: i128, from: i32, to: i32) -> Option<i128> {
    if to >= from {
        let factor = 10i128.checked_pow(u32::try_from(to - from).ok()?)?;
        return v.checked_mul(factor);
    }
    let Some(divisor) = u32::try_from(from - to).ok().and_then(|d| 10i128.checked_pow(d)) else {
        // Dividing by more than i128 can hold rounds everything to zero.
        return Some(0);
    };
    let q = v / divisor;
    let r = v % divisor;
    Some(if r.unsigned_abs() * 2 >= divisor.unsigned_abs() { q + v.signum() } else { q })
}

/// bytea input: `\x` hex (whitespace between pairs allowed) or the escape
/// format, where `\\` is a backslash and `\ooo` an octal byte.
pub(super) fn parse_bytea(raw: &[u8]) -> Option<Vec<u8>> {
    if let Some(hex) = raw.strip_prefix(b"\\x") {
        let digits: Vec<u8> = hex.iter().copied().filter(|c| !c.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        return digits.chunks(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect();
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
        } else if raw.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = raw.get(i + 1..i + 4)?;
            if !oct.iter().all(|c| (b'0'..=b'7').contains(c)) || oct[0] > b'3' {
                return None;
            }
            out.push((oct[0] - b'0') << 6 | (oct[1] - b'0') << 3 | (oct[2] - b'0'));
            i += 4;
        }
    }
    Some(out)
}

/// Rewrites a trailing PostgreSQL offset `+hh` / `+hhmm` as `+hh:mm`, which
/// Arrow's timestamp parser requires.
pub(super) fn normalize_offset(s: &str) -> Cow<'_, str> {
    let Some(at) = s.rfind(['+', '-']) else {
        return Cow::Borrowed(s);
    };
    // The offset follows the time, so it comes after a ':'; a '-' in the date does not.
    if !s[..at].contains(':') {
        return Cow::Borrowed(s);
    }
    let off = &s[at + 1..];
    if !off.bytes().all(|b| b.is_ascii_digit()) {
        return Cow::Borrowed(s);
    }
    match off.len() {
        2 => Cow::Owned(format!("{s}:00")),
        4 => Cow::Owned(format!("{}:{}", &s[..at + 3], &off[2..])),
        _ => Cow::Borrowed(s),
    }
}

/// Interval input in the `postgres` and verbose styles:
/// `1 year 2 mons 3 days 04:05:06.5`, `-1 days +01:00:00`, `1.5 secs`,
/// `2 hours ago`. Returns (months, days, microseconds); fractional months and
/// days spill into the smaller units as PostgreSQL does (a month is 30 days).
pub(super) fn parse_interval(s: &str) -> Option<(i64, i64, i64)> {
    const DAY: f64 = 86_400_000_000.0;
    let (mut months, mut days, mut usecs) = (0i64, 0i64, 0f64);
    let mut ago = false;
    let cleaned = s.replace(',', " ");
    let mut tokens = cleaned.split_whitespace().peekable();
    let mut seen = false;
    while let Some(tok) = tokens.next() {
        seen = true;
        let lower = tok.to_ascii_lowercase();
        if lower == "@" {
            continue;
        }
        if lower == "ago" {
            ago = true;
            continue;
        }
        if tok.contains(':') {
            usecs += parse_clock(tok)?;
            continue;
        }
        // A number, its unit either attached (`10s`) or the next token.
        let split = lower.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(lower.len());
        let n: f64 = lower[..split].parse().ok()?;
        let unit = if split < lower.len() { lower[split..].to_owned() } else { tokens.next()?.to_ascii_lowercase() };
        match unit.as_str() {
            "y" | "yr" | "yrs" | "year" | "years" => {
                let m = n * 12.0;
                months += m.trunc() as i64;
                days += (m.fract() * 30.0).round() as i64;
            }
            "mon" | "mons" | "month" | "months" => {
                months += n.trunc() as i64;
                let d = n.fract() * 30.0;
                days += d.trunc() as i64;
                usecs += d.fract() * DAY;
            }
            "w" | "week" | "weeks" => {
                let d = n * 7.0;
                days += d.trunc() as i64;
                usecs += d.fract() * DAY;
            }
            "d" | "day" | "days" => {
                days += n.trunc() as i64;
                usecs += n.fract() * DAY;
            }
            "h" | "hr" | "hrs" | "hour" | "hours" => usecs += n * 3_600_000_000.0,
            "m" | "min" | "mins" | "minute" | "minutes" => usecs += n * 60_000_000.0,
            "s" | "sec" | "secs" | "second" | "seconds" => usecs += n * 1_000_000.0,
            "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => usecs += n * 1_000.0,
            "us" | "usec" | "usecs" | "microsecond" | "microseconds" => usecs += n,
            _ => return None,
        }
    }
    if !seen || !usecs.is_finite() || usecs.abs() > 9.2e18 {
        return None;
    }
    let usecs = usecs.round() as i64;
    Some(if ago { (-months, -days, -usecs) } else { (months, days, usecs) })
}

/// `[+-]HH:MM[:SS[.ffffff]]` as microseconds.
fn parse_clock(tok: &str) -> Option<f64> {
    let (sign, body) = match tok.as_bytes().first() {
        Some(b'-') => (-1.0, &tok[1..]),
        Some(b'+') => (1.0, &tok[1..]),
        _ => (1.0, tok),
    };
    let mut parts = body.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next().map_or(Some(0.0), |p| p.parse().ok())?;
    if parts.next().is_some() || h < 0.0 || m < 0.0 || s < 0.0 {
        return None;
    }
    Some(sign * ((h * 3600.0 + m * 60.0 + s) * 1_000_000.0))
}

/// Binary `numeric` (ndigits, weight, sign, dscale, base-10000 digits) as
/// `(unscaled, dscale)`; None for NaN/Infinity, malformed input or values
/// beyond i128.
pub(super) fn decode_numeric_binary(raw: &[u8]) -> Option<(i128, i32)> {
    let word = |i: usize| raw.get(2 * i..2 * i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = i32::from(word(3)?);
    if raw.len() != 8 + 2 * ndigits || (sign != 0 && sign != 0x4000) || dscale > 0x3fff {
        return None;
    }
    // Digit k is worth 10000^(weight - k); bring everything to 10^-dscale.
    let mut v: i128 = 0;
    for k in 0..ndigits {
        let d = word(4 + k)?;
        if d >= 10_000 {
            return None;
        }
        let exp10 = 4 * (weight - k as i32) + dscale;
        let term = if exp10 >= 0 {
            i128::from(d).checked_mul(10i128.checked_pow(u32::try_from(exp10).ok()?)?)?
        } else {
            // Digits beyond dscale are not sent by PostgreSQL; drop them.
            i128::from(d) / 10i128.checked_pow(u32::try_from(-exp10).ok()?).unwrap_or(i128::MAX)
        };
        v = v.checked_add(term)?;
    }
    Some((if sign == 0x4000 { -v } else { v }, dscale))
}

/// The canonical `8-4-4-4-12` text of a binary uuid.
pub(super) fn format_uuid(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    s
}
