//! Dates, times, timestamps and intervals as PostgreSQL prints them (ISO
//! style, `BC` years, `+00` for timestamptz, intervals in the `postgres`
//! style), from microseconds and days since 1970-01-01.

use super::{USECS_PER_DAY, USECS_PER_HOUR, USECS_PER_MINUTE, USECS_PER_SEC, write_i64, write_padded};

/// Proleptic Gregorian (year, month, day) for days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`), valid for the whole i32 day range.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Appends `YYYY-MM-DD`; returns whether the date is BC, which PostgreSQL
/// marks with a trailing ` BC` after the whole value (year 0 is 1 BC).
fn write_ymd(out: &mut Vec<u8>, days: i64) -> bool {
    let (y, m, d) = civil_from_days(days);
    let bc = y <= 0;
    let year = if bc { 1 - y } else { y };
    write_padded(out, year.unsigned_abs(), 4);
    out.push(b'-');
    write_padded(out, u64::from(m), 2);
    out.push(b'-');
    write_padded(out, u64::from(d), 2);
    bc
}

/// Appends the fraction of a second as PostgreSQL does: nothing when zero,
/// otherwise `.` and up to six digits with trailing zeros trimmed.
fn write_fraction(out: &mut Vec<u8>, usecs: u64) {
    if usecs == 0 {
        return;
    }
    let mut digits = [b'0'; 6];
    let mut v = usecs;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let keep = 6 - digits.iter().rev().take_while(|&&d| d == b'0').count();
    out.push(b'.');
    out.extend_from_slice(&digits[..keep]);
}

/// Appends `HH:MM:SS[.ffffff]` for a non-negative time of day in microseconds.
fn write_hms(out: &mut Vec<u8>, usecs: u64) {
    let usecs_per_hour = USECS_PER_HOUR as u64;
    let usecs_per_minute = USECS_PER_MINUTE as u64;
    let usecs_per_sec = USECS_PER_SEC as u64;
    write_padded(out, usecs / usecs_per_hour, 2);
    out.push(b':');
    write_padded(out, usecs % usecs_per_hour / usecs_per_minute, 2);
    out.push(b':');
    write_padded(out, usecs % usecs_per_minute / usecs_per_sec, 2);
    write_fraction(out, usecs % usecs_per_sec);
}

/// `date` text for days since the Unix epoch.
pub(in crate::pgwire) fn write_date(out: &mut Vec<u8>, days: i64) {
    if write_ymd(out, days) {
        out.extend_from_slice(b" BC");
    }
}

/// `time` text for microseconds since midnight (caller checks the range).
pub(in crate::pgwire) fn write_time(out: &mut Vec<u8>, usecs: i64) {
    write_hms(out, usecs.unsigned_abs());
}

/// `timestamp` / `timestamptz` text for microseconds since the Unix epoch; the
/// session time zone is UTC, so `timestamptz` always carries `+00`.
pub(in crate::pgwire) fn write_timestamp(out: &mut Vec<u8>, usecs: i64, with_tz: bool) {
    let days = usecs.div_euclid(USECS_PER_DAY);
    let time = usecs.rem_euclid(USECS_PER_DAY);
    let bc = write_ymd(out, days);
    out.push(b' ');
    write_hms(out, time.unsigned_abs());
    if with_tz {
        out.extend_from_slice(b"+00");
    }
    if bc {
        out.extend_from_slice(b" BC");
    }
}

/// One `N unit(s)` part of an interval in the `postgres` IntervalStyle
/// (PostgreSQL's `AddPostgresIntPart`).
fn interval_part(out: &mut Vec<u8>, value: i64, unit: &[u8], is_zero: &mut bool, is_before: &mut bool) {
    if value == 0 {
        return;
    }
    if !*is_zero {
        out.push(b' ');
    }
    if *is_before && value > 0 {
        out.push(b'+');
    }
    write_i64(out, value);
    out.push(b' ');
    out.extend_from_slice(unit);
    if value != 1 {
        out.push(b's');
    }
    // Each nonzero field decides whether the next positive one gets a `+`.
    *is_before = value < 0;
    *is_zero = false;
}

/// `interval` text in PostgreSQL's default `postgres` IntervalStyle, e.g.
/// `1 year 2 mons 3 days 04:05:06`, `-1 days`, `00:00:01.5`.
pub(in crate::pgwire) fn write_interval(out: &mut Vec<u8>, months: i32, days: i32, usecs: i64) {
    let mut is_zero = true;
    let mut is_before = false;
    interval_part(out, i64::from(months / 12), b"year", &mut is_zero, &mut is_before);
    interval_part(out, i64::from(months % 12), b"mon", &mut is_zero, &mut is_before);
    interval_part(out, i64::from(days), b"day", &mut is_zero, &mut is_before);
    if is_zero || usecs != 0 {
        if !is_zero {
            out.push(b' ');
        }
        if usecs < 0 {
            out.push(b'-');
        } else if is_before {
            out.push(b'+');
        }
        let abs = usecs.unsigned_abs();
        let usecs_per_hour = USECS_PER_HOUR as u64;
        let usecs_per_minute = USECS_PER_MINUTE as u64;
        let usecs_per_sec = USECS_PER_SEC as u64;
        // Hours are not wrapped at 24: an interval keeps `25:00:00` as is.
        write_padded(out, abs / usecs_per_hour, 2);
        out.push(b':');
        write_padded(out, abs % usecs_per_hour / usecs_per_minute, 2);
        out.push(b':');
        write_padded(out, abs % usecs_per_minute / usecs_per_sec, 2);
        write_fraction(out, abs % usecs_per_sec);
    }
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
    fn datetimes_print_like_postgres() {
        let ts = 1_704_164_645_000_000; // 2024-01-02 03:04:05 UTC
        assert_eq!(s(|o| write_timestamp(o, ts, false)), "2024-01-02 03:04:05");
        assert_eq!(s(|o| write_timestamp(o, ts + 123_456, false)), "2024-01-02 03:04:05.123456");
        assert_eq!(s(|o| write_timestamp(o, ts + 120_000, true)), "2024-01-02 03:04:05.12+00");
        assert_eq!(s(|o| write_timestamp(o, -1, false)), "1969-12-31 23:59:59.999999");
        assert_eq!(s(|o| write_date(o, 19_724)), "2024-01-02");
        assert_eq!(s(|o| write_date(o, 0)), "1970-01-01");
        assert_eq!(s(|o| write_date(o, -719_528)), "0001-01-01 BC");
        assert_eq!(s(|o| write_date(o, -719_162)), "0001-01-01");
        assert_eq!(s(|o| write_date(o, 2_932_897)), "10000-01-01");
        assert_eq!(s(|o| write_timestamp(o, -719_528 * USECS_PER_DAY, true)), "0001-01-01 00:00:00+00 BC");
        assert_eq!(s(|o| write_time(o, 11_045_500_000)), "03:04:05.5");
        assert_eq!(s(|o| write_time(o, 0)), "00:00:00");
    }

    #[test]
    fn intervals_print_in_postgres_style() {
        let hms = 4 * USECS_PER_HOUR + 5 * USECS_PER_MINUTE + 6 * USECS_PER_SEC;
        assert_eq!(s(|o| write_interval(o, 14, 3, hms)), "1 year 2 mons 3 days 04:05:06");
        assert_eq!(s(|o| write_interval(o, 0, 0, 1_500_000)), "00:00:01.5");
        assert_eq!(s(|o| write_interval(o, 0, -1, 0)), "-1 days");
        assert_eq!(s(|o| write_interval(o, 0, 1, 0)), "1 day");
        assert_eq!(s(|o| write_interval(o, 0, 0, 0)), "00:00:00");
        assert_eq!(s(|o| write_interval(o, 0, -1, USECS_PER_HOUR)), "-1 days +01:00:00");
        assert_eq!(s(|o| write_interval(o, 0, 1, -USECS_PER_SEC)), "1 day -00:00:01");
        assert_eq!(s(|o| write_interval(o, -13, 0, 0)), "-1 years -1 mons");
        assert_eq!(s(|o| write_interval(o, 0, 0, 25 * USECS_PER_HOUR)), "25:00:00");
    }
}
