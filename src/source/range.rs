//! `--since` and `--until`: a time range, and where in a plain file it starts, found by
//! binary search on the lines' timestamps (seeking, so a one-hour slice of a 50 GB file costs
//! about what the slice costs).

use std::io::{Read, Seek, SeekFrom};

use super::{LineReader, Next};
use crate::parse::Parser;

/// A half-open range of event time, Unix ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// From (inclusive).
    pub since_ms: Option<i64>,
    /// Until (exclusive).
    pub until_ms: Option<i64>,
}

impl TimeRange {
    /// Whether `ms` is in the range.
    pub fn contains(&self, ms: i64) -> bool {
        self.since_ms.is_none_or(|s| ms >= s) && self.until_ms.is_none_or(|u| ms < u)
    }

    /// Whether the range is the whole of time.
    pub fn is_all(&self) -> bool {
        self.since_ms.is_none() && self.until_ms.is_none()
    }
}

/// Reads `2026-12-02T14:00:00Z` (RFC 3339), `2026-12-02` (midnight UTC), or a time relative to
/// `now_ms`: `-2h`, `-30m`, `-90s`, `-1d`.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, InvalidTime> {
    let text = text.trim();
    if let Some(relative) = text.strip_prefix('-') {
        let digits = relative.find(|c: char| !c.is_ascii_digit()).unwrap_or(relative.len());
        let amount: i64 = relative[..digits].parse().map_err(|_| bad(text))?;
        let unit_ms = match &relative[digits..] {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad(text)),
        };
        return Ok(now_ms - amount * unit_ms);
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp_millis()));
    }
    Err(bad(text))
}

/// A `--since`/`--until` that is not a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a time: write 2026-12-02T14:00:00Z, 2026-12-02, or -2h (also -30m, -90s, -1d)"
)]
pub struct InvalidTime(pub String);

fn bad(text: &str) -> InvalidTime {
    InvalidTime(text.to_string())
}

/// Lines read after a seek to find one that parses.
const PROBE_LINES: usize = 64;

/// Below this span the search stops and reading starts.
const CLOSE_ENOUGH: u64 = 256 * 1024;

/// The timestamp of the first parseable line starting after `offset` (the line `offset` falls
/// in is skipped: it may be cut).
fn probe<R: Read + Seek>(file: &mut R, offset: u64, parser: &mut Parser) -> Option<i64> {
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut lines = LineReader::new(&mut *file, super::DEFAULT_MAX_LINE_BYTES);
    let mut skip_first = offset > 0;
    for _ in 0..PROBE_LINES {
        match lines.next_line(false).ok()? {
            Next::Line(line) => {
                if std::mem::take(&mut skip_first) {
                    continue;
                }
                if let Ok(record) = parser.parse(line.bytes) {
                    return Some(record.timestamp_ms);
                }
            }
            Next::TooLong { .. } => skip_first = false,
            Next::End => return None,
        }
    }
    None
}

/// A line boundary in a plain, seekable file at or before the first line stamped at
/// `since_ms - margin_ms` or later. Lines are about in time order (a balancer logs at the
/// end of each request); `margin_ms` covers how far out of order they may be.
pub fn start_offset<R: Read + Seek>(
    file: &mut R,
    len: u64,
    since_ms: i64,
    margin_ms: i64,
    parser: &mut Parser,
) -> std::io::Result<u64> {
    let target = since_ms - margin_ms;
    let (mut low, mut high) = (0, len);
    while high - low > CLOSE_ENOUGH {
        let middle = low + (high - low) / 2;
        match probe(file, middle, parser) {
            Some(ms) if ms < target => low = middle,
            _ => high = middle,
        }
    }
    if low == 0 {
        return Ok(0);
    }
    // The start of the line after `low`.
    file.seek(SeekFrom::Start(low))?;
    let mut lines = LineReader::new(&mut *file, super::DEFAULT_MAX_LINE_BYTES);
    let _ = lines.next_line(false)?;
    Ok(low + lines.offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_absolute_and_relative() {
        assert_eq!(parse_time("2023-11-15T14:00:00Z", 0).unwrap(), 1_700_056_800_000);
        assert_eq!(parse_time("2023-11-15T15:00:00+01:00", 0).unwrap(), 1_700_056_800_000);
        assert_eq!(parse_time("2023-11-15", 0).unwrap(), 1_700_006_400_000);
        assert_eq!(parse_time("-2h", 10_000_000).unwrap(), 10_000_000 - 7_200_000);
        assert_eq!(parse_time("-90s", 100_000).unwrap(), 10_000);
        assert!(parse_time("yesterday", 0).unwrap_err().to_string().contains("-2h"));
        assert!(parse_time("-2x", 0).is_err());
    }

    #[test]
    fn the_start_of_a_slice_is_found_by_seeking() {
        // 24 hours, one line a second.
        let mut text = Vec::new();
        let start = 1_700_006_400_000i64;
        for s in 0..86_400i64 {
            let time = chrono::DateTime::from_timestamp_millis(start + s * 1000)
                .unwrap()
                .format("%d/%b/%Y:%H:%M:%S +0000");
            text.extend_from_slice(format!("10.0.0.1 - - [{time}] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\" rt=0.010 uct=\"0.001\" uht=\"0.009\" urt=\"0.009\" ua=\"10.0.0.1:8080\" us=\"200\"\n").as_bytes());
        }
        let patterns = crate::parse::PatternSet::builtin();
        let mut parser =
            crate::config::build_parser(&patterns, Some("upstream"), None, &[], None).unwrap().0;
        let since = start + 12 * 3_600_000;
        let len = text.len() as u64;
        let mut cursor = std::io::Cursor::new(&text);
        let offset = start_offset(&mut cursor, len, since, 60_000, &mut parser).unwrap();
        // At a line start, before the target, within the last probe span of it.
        assert!(offset == 0 || text[offset as usize - 1] == b'\n');
        let at =
            parser.parse(text[offset as usize..].split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert!(at.timestamp_ms <= since - 60_000, "{}", at.timestamp_ms);
        assert!(
            since - at.timestamp_ms < 3_600_000,
            "starts {} s early",
            (since - at.timestamp_ms) / 1000
        );
    }
}
