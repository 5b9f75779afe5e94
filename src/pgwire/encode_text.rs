//! PostgreSQL value formatting primitives: the exact text PostgreSQL prints for
//! numbers, dates, times and intervals (those in `time`), and the binary
//! `numeric` layout.
//!
//! Everything here appends to a caller-owned `Vec<u8>` so a whole batch is
//! written into one reused buffer without per-value allocation.

use std::fmt::Write as _;

#[path = "encode_text_time.rs"]
mod time;
pub(super) use time::{write_date, write_interval, write_time, write_timestamp};

/// Microseconds per day, second and hour.
pub(super) const USECS_PER_DAY: i64 = 86_400_000_000;
const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_HOUR: i64 = 3_600_000_000;
const USECS_PER_MINUTE: i64 = 60_000_000;
/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's epoch).
pub(super) const PG_EPOCH_DAYS: i64 = 10_957;
/// Microseconds from the Unix epoch to the PostgreSQL epoch.
pub(super) const PG_EPOCH_USECS: i64 = PG_EPOCH_DAYS * USECS_PER_DAY;

/// Appends the decimal digits of `v`.
pub(super) fn write_u128(out: &mut Vec<u8>, mut v: u128) {
    // 39 digits hold u128::MAX; digits are produced right to left.
    let mut buf = [0u8; 40];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends the decimal digits of `v`; u64 division is much cheaper than u128.
pub(super) fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub(super) fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// Appends `v` zero-padded to at least `width` digits (as `%0Nd` would).
fn write_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let start = out.len();
    write_u64(out, v);
    let len = out.len() - start;
    if len < width {
        let pad = width - len;
        out.splice(start..start, std::iter::repeat_n(b'0', pad));
    }
}

/// A fixed stack buffer for `core::fmt` output, so float formatting does not allocate.
struct StackBuf {
    buf: [u8; 64],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Appends a float the way PostgreSQL 12+ prints it with the default
/// `extra_float_digits = 1`: the shortest digits that round-trip, in fixed
/// notation when the decimal exponent is in `-4..fixed_limit` and as
/// `d.ddde+XX` otherwise (`fixed_limit` is 15 for float8 and 6 for float4).
/// `shortest_exp` is Rust's shortest round-trip `{:e}` rendering of the value.
fn write_float(
    out: &mut Vec<u8>,
    is_nan: bool,
    is_inf: bool,
    negative: bool,
    shortest_exp: std::fmt::Arguments<'_>,
    fixed_limit: i32,
) {
    if is_nan {
        out.extend_from_slice(b"NaN");
        return;
    }
    if is_inf {
        out.extend_from_slice(if negative { b"-Infinity" } else { b"Infinity" });
        return;
    }
    let mut sb = StackBuf { buf: [0; 64], len: 0 };
    if sb.write_fmt(shortest_exp).is_err() {
        // Unreachable for finite floats (at most ~25 bytes); keep the plain form.
        out.extend_from_slice(b"NaN");
        return;
    }
    let s = &sb.buf[..sb.len];
    let (sign, rest) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let e_pos = rest.iter().position(|&c| c == b'e').unwrap_or(rest.len());
    let mantissa = &rest[..e_pos];
    let exp: i32 = std::str::from_utf8(rest.get(e_pos + 1..).unwrap_or(b"0")).ok().and_then(|e| e.parse().ok()).unwrap_or(0);
    // Digits without the decimal point; Rust prints `d[.ddd]e<exp>`.
    let mut digits = [0u8; 32];
    let mut n = 0;
    for &c in mantissa {
        if c.is_ascii_digit() && n < digits.len() {
            digits[n] = c;
            n += 1;
        }
    }
    let digits = &digits[..n];
    if sign {
        out.push(b'-');
    }
    if digits.iter().all(|&d| d == b'0') {
        out.push(b'0');
        return;
    }
    if (-4..fixed_limit).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.extend_from_slice(digits);
                out.extend(std::iter::repeat_n(b'0', int_len - digits.len()));
            } else {
                out.extend_from_slice(&digits[..int_len]);
                out.push(b'.');
                out.extend_from_slice(&digits[int_len..]);
            }
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.extend_from_slice(digits);
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        write_padded(out, u64::from(exp.unsigned_abs()), 2);
    }
}

pub(super) fn write_f64(out: &mut Vec<u8>, v: f64) {
    write_float(out, v.is_nan(), v.is_infinite(), v.is_sign_negative(), format_args!("{v:e}"), 15);
}

pub(super) fn write_f32(out: &mut Vec<u8>, v: f32) {
    write_float(out, v.is_nan(), v.is_infinite(), v.is_sign_negative(), format_args!("{v:e}"), 6);
}

/// Appends an exact decimal `digits × 10^-scale` (digits are ASCII, no sign)
/// as PostgreSQL prints `numeric`: all `scale` fractional digits, and a
/// negative Arrow scale expanded into trailing zeros.
pub(super) fn write_numeric_text(out: &mut Vec<u8>, negative: bool, digits: &[u8], scale: i8) {
    let is_zero = digits.iter().all(|&d| d == b'0');
    if negative && !is_zero {
        out.push(b'-');
    }
    if scale <= 0 {
        out.extend_from_slice(digits);
        if !is_zero {
            out.extend(std::iter::repeat_n(b'0', usize::from(scale.unsigned_abs())));
        }
        return;
    }
    let s = usize::from(scale.unsigned_abs());
    if digits.len() > s {
        out.extend_from_slice(&digits[..digits.len() - s]);
        out.push(b'.');
        out.extend_from_slice(&digits[digits.len() - s..]);
    } else {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', s - digits.len()));
        out.extend_from_slice(digits);
    }
}

/// Appends PostgreSQL's binary `numeric` for `digits × 10^-scale`: ndigits,
/// weight, sign and dscale as 16-bit words, then base-10000 digits, most
/// significant first, with leading and trailing zero groups dropped.
pub(super) fn write_numeric_binary(out: &mut Vec<u8>, negative: bool, digits: &[u8], scale: i8) {
    const POW10: [i16; 4] = [1, 10, 100, 1000];
    let dscale = i16::from(scale.max(0));
    let first_nonzero = digits.iter().position(|&d| d != b'0');
    let Some(first) = first_nonzero else {
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&dscale.to_be_bytes());
        return;
    };
    let digits = &digits[first..];
    let scale = i32::from(scale);
    // Decimal exponent of the most and least significant digit.
    let msd_exp = digits.len() as i32 - 1 - scale;
    let lsd_exp = -scale;
    let weight = msd_exp.div_euclid(4);
    let last = lsd_exp.div_euclid(4);
    // At most 78 decimal digits (i256) span at most 21 base-10000 groups.
    let mut groups = [0i16; 24];
    let count = ((weight - last + 1) as usize).min(groups.len());
    for (k, &d) in digits.iter().enumerate() {
        let exp = msd_exp - k as i32;
        let idx = (weight - exp.div_euclid(4)) as usize;
        if let Some(g) = groups.get_mut(idx) {
            *g += i16::from(d - b'0') * POW10[exp.rem_euclid(4) as usize];
        }
    }
    let mut ndigits = count;
    while ndigits > 0 && groups[ndigits - 1] == 0 {
        ndigits -= 1;
    }
    out.extend_from_slice(&(ndigits as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in &groups[..ndigits] {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

/// `bytea` text in the default `hex` output format: `\x0102ff`.
pub(super) fn write_bytea_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 + bytes.len() * 2);
    out.extend_from_slice(b"\\x");
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// Appends one array element's text, double-quoted and escaped when
/// PostgreSQL's `array_out` would quote it (empty, `NULL`, or containing
/// quotes, backslashes, braces, commas or whitespace).
pub(super) fn write_array_element(out: &mut Vec<u8>, text: &[u8]) {
    let needs_quote = text.is_empty()
        || text.eq_ignore_ascii_case(b"NULL")
        || text.iter().any(|c| matches!(c, b'"' | b'\\' | b'{' | b'}' | b',' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c));
    if !needs_quote {
        out.extend_from_slice(text);
        return;
    }
    out.push(b'"');
    for &c in text {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn floats_print_like_postgres() {
        let cases: &[(f64, &str)] = &[
            (1.5, "1.5"),
            (0.1, "0.1"),
            (-2.0, "-2"),
            (0.0, "0"),
            (-0.0, "-0"),
            (100.0, "100"),
            (1e14, "100000000000000"),
            (1e15, "1e+15"),
            (1e20, "1e+20"),
            (1.2345678901234568e20, "1.2345678901234568e+20"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e300, "1e+300"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
            (std::f64::consts::PI, "3.141592653589793"),
        ];
        for (v, want) in cases {
            assert_eq!(s(|o| write_f64(o, *v)), *want, "{v:?}");
        }
        assert_eq!(s(|o| write_f32(o, 0.1)), "0.1");
        assert_eq!(s(|o| write_f32(o, 100000.0)), "100000");
        assert_eq!(s(|o| write_f32(o, 1e6)), "1e+06");
        assert_eq!(s(|o| write_f32(o, 1.25)), "1.25");
        assert_eq!(s(|o| write_f32(o, f32::NEG_INFINITY)), "-Infinity");
    }

    #[test]
    fn numerics_keep_their_scale() {
        assert_eq!(s(|o| write_numeric_text(o, false, b"1230", 2)), "12.30");
        assert_eq!(s(|o| write_numeric_text(o, true, b"5", 3)), "-0.005");
        assert_eq!(s(|o| write_numeric_text(o, false, b"0", 2)), "0.00");
        assert_eq!(s(|o| write_numeric_text(o, false, b"12", -2)), "1200");
        assert_eq!(s(|o| write_numeric_text(o, false, b"42", 0)), "42");
    }

    #[test]
    fn numeric_binary_layout_matches_postgres() {
        let words = |negative, digits: &[u8], scale| {
            let mut out = Vec::new();
            write_numeric_binary(&mut out, negative, digits, scale);
            out.chunks(2).map(|c| i16::from_be_bytes([c[0], c[1]])).collect::<Vec<_>>()
        };
        // 12.30: ndigits 2, weight 0, sign +, dscale 2, digits [12, 3000]
        assert_eq!(words(false, b"1230", 2), vec![2, 0, 0, 2, 12, 3000]);
        // 0.005 → weight -1, digits [50]
        assert_eq!(words(true, b"5", 3), vec![1, -1, 0x4000, 3, 50]);
        assert_eq!(words(false, b"0", 2), vec![0, 0, 0, 2]);
        // 123456789 → [1, 2345, 6789], weight 2
        assert_eq!(words(false, b"123456789", 0), vec![3, 2, 0, 0, 1, 2345, 6789]);
        // 1200 stored with scale -2 (12 × 10^2) → [1200]
        assert_eq!(words(false, b"12", -2), vec![1, 0, 0, 0, 1200]);
        // 10000 → [1] weight 1
        assert_eq!(words(false, b"10000", 0), vec![1, 1, 0, 0, 1]);
    }

    #[test]
    fn array_elements_are_quoted_like_array_out() {
        let q = |t: &str| s(|o| write_array_element(o, t.as_bytes()));
        assert_eq!(q("abc"), "abc");
        assert_eq!(q("a b"), "\"a b\"");
        assert_eq!(q("x\"y"), "\"x\\\"y\"");
        assert_eq!(q(""), "\"\"");
        assert_eq!(q("null"), "\"null\"");
        assert_eq!(q("a,b"), "\"a,b\"");
        assert_eq!(q("\\x01"), "\"\\\\x01\"");
    }
}
