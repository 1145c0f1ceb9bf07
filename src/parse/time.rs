//! Timestamp parsing for the layouts balancers write, straight from bytes.
//!
//! Everything here is allocation-free and returns Unix milliseconds (UTC). It is written by hand
//! rather than through `chrono`'s format strings because it runs once per log line: the fixed
//! layouts below parse in a few dozen instructions, while a generic strftime parser costs
//! several times that. `chrono` is still used for *formatting* output, where speed does not matter.

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Reads `n` ASCII digits at `at`, or `None` if any byte is not a digit.
fn digits(bytes: &[u8], at: usize, n: usize) -> Option<u32> {
    let field = bytes.get(at..at + n)?;
    let mut value = 0u32;
    for &b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(b - b'0');
    }
    Some(value)
}

fn month_from_abbrev(abbrev: &[u8]) -> Option<u32> {
    Some(match abbrev {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}

/// Combines calendar fields into Unix milliseconds after checking their ranges.
fn to_unix_ms(date: Date, time: TimeOfDay, millis: u32, offset_s: i64) -> Option<i64> {
    let (year, month, day) = date;
    let (hour, minute, second) = time;
    // Second 60 is a leap second; nginx never writes it, but clamping beats rejecting the line.
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second.min(59)) - offset_s;
    Some(secs * 1000 + i64::from(millis))
}

/// Parses a numeric UTC offset: `+hhmm`, `-hhmm`, `+hh:mm`, or `Z`. Returns seconds east of UTC.
fn utc_offset(bytes: &[u8]) -> Option<i64> {
    match bytes {
        [b'Z'] | [b'z'] => Some(0),
        [sign @ (b'+' | b'-'), ..] => {
            let (hours, minutes) = match bytes.len() {
                5 => (digits(bytes, 1, 2)?, digits(bytes, 3, 2)?),
                6 if bytes[3] == b':' => (digits(bytes, 1, 2)?, digits(bytes, 4, 2)?),
                _ => return None,
            };
            let offset = i64::from(hours * 3600 + minutes * 60);
            Some(if *sign == b'-' { -offset } else { offset })
        }
        _ => None,
    }
}

/// Parses nginx `$time_local` / Apache `%t`: `10/Oct/2000:13:55:36 -0700`.
pub fn parse_time_local(bytes: &[u8]) -> Option<i64> {
    if bytes.len() != 26
        || bytes[2] != b'/'
        || bytes[6] != b'/'
        || bytes[11] != b':'
        || bytes[20] != b' '
    {
        return None;
    }
    let (date, time) = day_month_year_time(bytes)?;
    let offset = utc_offset(&bytes[21..])?;
    to_unix_ms(date, time, 0, offset)
}

/// (year, month, day).
type Date = (i64, u32, u32);
/// (hour, minute, second).
type TimeOfDay = (u32, u32, u32);

/// Reads the `dd/Mon/yyyy:HH:MM:SS` part shared by nginx's `$time_local` and HAProxy's
/// accept date (the caller has checked the separators).
fn day_month_year_time(bytes: &[u8]) -> Option<(Date, TimeOfDay)> {
    let day = digits(bytes, 0, 2)?;
    let month = month_from_abbrev(&bytes[3..6])?;
    let year = digits(bytes, 7, 4)?;
    let time = (digits(bytes, 12, 2)?, digits(bytes, 15, 2)?, digits(bytes, 18, 2)?);
    Some(((i64::from(year), month, day), time))
}

/// Parses HAProxy's accept date, `06/Feb/2009:12:14:14.655` or (old versions) without the
/// milliseconds. HAProxy writes local time with no zone; it is read as UTC.
pub fn parse_haproxy_date(bytes: &[u8]) -> Option<i64> {
    if bytes.len() < 20 || bytes[2] != b'/' || bytes[6] != b'/' || bytes[11] != b':' {
        return None;
    }
    let millis = match &bytes[20..] {
        [] => 0,
        [b'.', fraction @ ..] if fraction.len() == 3 => digits(fraction, 0, 3)?,
        _ => return None,
    };
    let (date, time) = day_month_year_time(bytes)?;
    to_unix_ms(date, time, millis, 0)
}

/// Parses RFC 3339 / nginx `$time_iso8601`: `2000-10-10T13:55:36+00:00`, with optional
/// fractional seconds (`.123456`) and `Z`.
pub fn parse_iso8601(bytes: &[u8]) -> Option<i64> {
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b' ')
    {
        return None;
    }
    let year = digits(bytes, 0, 4)?;
    let month = digits(bytes, 5, 2)?;
    let day = digits(bytes, 8, 2)?;
    let hour = digits(bytes, 11, 2)?;
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let minute = digits(bytes, 14, 2)?;
    let second = digits(bytes, 17, 2)?;
    let mut rest = &bytes[19..];
    let mut millis = 0u32;
    if let [b'.', fraction @ ..] = rest {
        let n_digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if n_digits == 0 {
            return None;
        }
        for (i, &b) in fraction[..n_digits.min(3)].iter().enumerate() {
            millis += u32::from(b - b'0') * [100, 10, 1][i];
        }
        rest = &fraction[n_digits..];
    }
    let offset = utc_offset(rest)?;
    to_unix_ms((i64::from(year), month, day), (hour, minute, second), millis, offset)
}

/// Parses nginx `$msec`: Unix seconds with a millisecond fraction, `1700000000.123`.
pub fn parse_epoch_seconds(bytes: &[u8]) -> Option<i64> {
    let (whole, fraction) = match memchr::memchr(b'.', bytes) {
        Some(dot) => (&bytes[..dot], &bytes[dot + 1..]),
        None => (bytes, &b""[..]),
    };
    if whole.is_empty() || whole.len() > 12 || fraction.len() > 9 {
        return None;
    }
    let secs = digits(whole, 0, whole.len())?;
    let mut millis = 0i64;
    for (i, &b) in fraction.iter().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        if i < 3 {
            millis += i64::from(b - b'0') * [100, 10, 1][i];
        }
    }
    Some(i64::from(secs) * 1000 + millis)
}

/// Formats Unix milliseconds as RFC 3339 UTC, with milliseconds only when they are non-zero.
pub fn format_rfc3339(unix_ms: i64) -> String {
    use chrono::{DateTime, SecondsFormat};
    match DateTime::from_timestamp_millis(unix_ms) {
        Some(t) if unix_ms % 1000 == 0 => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => format!("@{unix_ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc(bytes: Option<i64>) -> String {
        format_rfc3339(bytes.expect("timestamp should parse"))
    }

    #[test]
    fn time_local_with_offsets() {
        assert_eq!(rfc(parse_time_local(b"24/Feb/2015:23:13:42 +0000")), "2015-02-24T23:13:42Z");
        assert_eq!(rfc(parse_time_local(b"11/Jan/2020:23:05:27 +0100")), "2020-01-11T22:05:27Z");
        assert_eq!(rfc(parse_time_local(b"15/Dec/2018:19:27:57 -0500")), "2018-12-16T00:27:57Z");
        assert_eq!(rfc(parse_time_local(b"29/Feb/2024:00:00:00 +0000")), "2024-02-29T00:00:00Z");
    }

    #[test]
    fn time_local_rejects_garbage() {
        for bad in [
            &b""[..],
            b"24/Foo/2015:23:13:42 +0000",
            b"24/Feb/2015:25:13:42 +0000",
            b"24/Feb/2015 23:13:42 +0000",
        ] {
            assert_eq!(parse_time_local(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn iso8601_variants() {
        assert_eq!(rfc(parse_iso8601(b"2023-03-18T15:00:00+00:00")), "2023-03-18T15:00:00Z");
        assert_eq!(rfc(parse_iso8601(b"2023-03-18T15:00:00.250Z")), "2023-03-18T15:00:00.250Z");
        assert_eq!(rfc(parse_iso8601(b"2023-03-18T17:00:00+02:00")), "2023-03-18T15:00:00Z");
        assert_eq!(parse_iso8601(b"2023-03-18T15:00:00"), None);
    }

    #[test]
    fn haproxy_dates() {
        assert_eq!(
            rfc(parse_haproxy_date(b"06/Feb/2009:12:14:14.655")),
            "2009-02-06T12:14:14.655Z"
        );
        assert_eq!(rfc(parse_haproxy_date(b"09/Aug/2004:20:26:09")), "2004-08-09T20:26:09Z");
        assert_eq!(parse_haproxy_date(b"09/Aug/2004:20:26:09.5"), None);
    }

    #[test]
    fn epoch_seconds() {
        assert_eq!(parse_epoch_seconds(b"1700000000.123"), Some(1_700_000_000_123));
        assert_eq!(parse_epoch_seconds(b"1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_epoch_seconds(b"17x0"), None);
    }
}
