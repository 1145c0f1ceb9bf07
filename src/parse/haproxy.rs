//! HAProxy's `option httplog`, `option httpslog` and `option tcplog` lines.
//!
//! A hand-written parser rather than a compiled format: HAProxy's layouts are fixed, but the
//! lines around them vary (an RFC 3164 or RFC 5424 syslog header, a bare `haproxy[pid]:`, or
//! nothing with `log stdout`), captured headers `{...}` appear or not, and request lines are cut
//! at 1024 bytes without their closing quote. So the parser anchors on the accept date
//! `[06/Feb/2009:12:14:14.655]` and reads the space-separated fields after it.
//!
//! The backend identity is `backend/server`; the pool is the backend. Pseudo-servers
//! (`<NOSRV>`, `<STATS>`, `<CACHE>`) are not servers: such requests count as "no backend".
//! Dates carry no time zone; they are read as UTC.

use super::time::parse_haproxy_date;
use super::{ParseError, ParseErrorKind, Record, split_request};

/// The HAProxy log parser. Its only state is a cache of the last date parsed.
#[derive(Debug, Clone, Default)]
pub struct HaproxyLog {
    last_date: [u8; 24],
    last_date_len: usize,
    last_date_ms: i64,
}

/// Where in a line the parser was, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
enum Field {
    AcceptDate,
    Frontend,
    BackendServer,
    Timers,
    Status,
    Bytes,
    Request,
}

const FIELD_NAMES: [&str; 7] = [
    "the accept date `[dd/Mon/yyyy:hh:mm:ss.mmm]`",
    "the frontend",
    "`backend/server`",
    "the timers (`TR/Tw/Tc/Tr/Ta` or `Tw/Tc/Tt`)",
    "the status code",
    "the byte count",
    "the quoted request line",
];

/// HAProxy's own messages in the same log stream (connection accepts without `option
/// httplog`, proxy start/stop, server state changes): valid lines, but not requests.
const EVENT_PHRASES: &[&[u8]] =
    &[b"Connect from ", b"Proxy ", b"Stopping ", b"Server ", b"backend ", b"Health check "];

/// The most captured-header groups (`{...}`) HAProxy writes: one for requests, one for responses.
const MAX_CAPTURE_GROUPS: usize = 2;

/// Reads space-separated tokens from a position in the line.
struct Tokens<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Tokens<'a> {
    fn next(&mut self) -> Option<(usize, &'a [u8])> {
        let rest = &self.line[self.pos.min(self.line.len())..];
        let start = self.pos + rest.iter().take_while(|&&b| b == b' ').count();
        if start >= self.line.len() {
            return None;
        }
        let len = memchr::memchr(b' ', &self.line[start..]).unwrap_or(self.line.len() - start);
        self.pos = start + len;
        Some((start, &self.line[start..start + len]))
    }

    /// Skips a `{...}` captured-header group, which may contain spaces. Returns false when the
    /// next token is not one.
    fn skip_capture_group(&mut self) -> bool {
        let start = self.pos
            + self.line[self.pos.min(self.line.len())..].iter().take_while(|&&b| b == b' ').count();
        if self.line.get(start) != Some(&b'{') {
            return false;
        }
        match memchr::memchr(b'}', &self.line[start..]) {
            Some(close) => {
                self.pos = start + close + 1;
                true
            }
            None => false,
        }
    }
}

/// Parses a timer: digits with an optional `+` (a lower bound, `option logasap`), or `-1`
/// when the phase was never reached (`None`).
fn parse_timer(token: &[u8]) -> Result<Option<i64>, ()> {
    let digits = token.strip_prefix(b"+").unwrap_or(token);
    if digits == b"-1" {
        return Ok(None);
    }
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    Ok(Some(digits.iter().fold(0i64, |value, &b| value * 10 + i64::from(b - b'0'))))
}

fn is_timer_list(token: &[u8]) -> bool {
    memchr::memchr(b'/', token).is_some()
        && token.iter().all(|&b| b.is_ascii_digit() || matches!(b, b'/' | b'-' | b'+'))
}

#[allow(clippy::cast_precision_loss)] // milliseconds well below 2^52
fn ms_to_s(ms: Option<i64>) -> Option<f64> {
    ms.map(|ms| ms as f64 / 1000.0)
}

impl HaproxyLog {
    /// A parser with an empty date cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one line.
    pub fn parse<'a>(&mut self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        #[allow(clippy::cast_possible_truncation)] // lines are far shorter than 4 GiB
        let error = |field: Field, column: usize, kind| ParseError {
            column: column as u32,
            segment: field as u16,
            kind,
        };
        let Some((open, close)) = find_accept_date(line) else {
            let is_event = line.ends_with(b": error")
                || EVENT_PHRASES.iter().any(|p| memchr::memmem::find(line, p).is_some());
            let kind =
                if is_event { ParseErrorKind::NotARequest } else { ParseErrorKind::NoTimestamp };
            return Err(error(Field::AcceptDate, 0, kind));
        };
        let timestamp_ms = self
            .parse_date(&line[open + 1..close])
            .ok_or_else(|| error(Field::AcceptDate, open, ParseErrorKind::BadTimestamp))?;
        let mut tokens = Tokens { line, pos: close + 1 };
        let end = line.len();
        let (_, frontend) = tokens
            .next()
            .ok_or_else(|| error(Field::Frontend, end, ParseErrorKind::MissingDelimiter))?;
        if frontend.ends_with(b":") {
            // `frontend/bind: SSL handshake failure`: a connection error, not a request.
            return Err(error(Field::Frontend, close + 2, ParseErrorKind::NotARequest));
        }
        let (column, backend_server) = tokens
            .next()
            .ok_or_else(|| error(Field::BackendServer, end, ParseErrorKind::MissingDelimiter))?;
        if backend_server.ends_with(b":") {
            return Err(error(Field::BackendServer, column, ParseErrorKind::NotARequest));
        }
        let slash = memchr::memchr(b'/', backend_server)
            .ok_or_else(|| error(Field::BackendServer, column, ParseErrorKind::LiteralMismatch))?;
        let pool = &backend_server[..slash];
        let server = &backend_server[slash + 1..];

        // Custom formats sometimes put a token (a host name) before the timers; tolerate two.
        let mut timers = None;
        let mut first_candidate = None;
        for _ in 0..3 {
            let Some((column, token)) = tokens.next() else { break };
            first_candidate.get_or_insert(column);
            if is_timer_list(token) {
                timers = Some((column, token));
                break;
            }
        }
        let (timers_column, timers) = timers.ok_or_else(|| {
            error(Field::Timers, first_candidate.unwrap_or(end), ParseErrorKind::LiteralMismatch)
        })?;
        let mut values = [None; 5];
        let mut n_timers = 0;
        for part in timers.split(|&b| b == b'/') {
            if n_timers == values.len() {
                return Err(error(Field::Timers, timers_column, ParseErrorKind::BadNumber));
            }
            values[n_timers] = parse_timer(part)
                .map_err(|()| error(Field::Timers, timers_column, ParseErrorKind::BadNumber))?;
            n_timers += 1;
        }
        let is_http = match n_timers {
            5 => true,
            3 => false,
            _ => return Err(error(Field::Timers, timers_column, ParseErrorKind::BadNumber)),
        };

        let mut record = Record { timestamp_ms, pool: Some(pool), ..Record::default() };
        if !server.starts_with(b"<") {
            record.backend = Some(backend_server);
            record.attempts = 1;
        }
        if is_http {
            record.upstream_latency_s = ms_to_s(values[3]);
            record.latency_s = ms_to_s(values[4]);
            let (column, status) = tokens
                .next()
                .ok_or_else(|| error(Field::Status, end, ParseErrorKind::MissingDelimiter))?;
            record.status = match status {
                b"-1" => None,
                _ => Some(
                    parse_status(status)
                        .ok_or_else(|| error(Field::Status, column, ParseErrorKind::BadNumber))?,
                ),
            };
        } else {
            record.latency_s = ms_to_s(values[2]);
        }
        let (column, bytes) = tokens
            .next()
            .ok_or_else(|| error(Field::Bytes, end, ParseErrorKind::MissingDelimiter))?;
        record.bytes = Some(
            parse_timer(bytes)
                .ok()
                .flatten()
                .ok_or_else(|| error(Field::Bytes, column, ParseErrorKind::BadNumber))?
                .unsigned_abs(),
        );
        if is_http {
            // Cookies, termination state, then the connection counts and queues.
            let _ = (tokens.next(), tokens.next(), tokens.next());
        } else {
            let _ = tokens.next();
        }
        // actconn/feconn/beconn/srv_conn/retries: each retry was another attempt.
        let retries = tokens
            .next()
            .and_then(|(_, counts)| counts.rsplit(|&b| b == b'/').next())
            .and_then(|r| parse_timer(r).ok().flatten());
        if let (Some(retries), Some(_)) = (retries, record.backend) {
            record.attempts = u16::try_from(retries + 1).unwrap_or(u16::MAX);
        }
        let _queues = tokens.next();
        if is_http {
            for _ in 0..MAX_CAPTURE_GROUPS {
                if !tokens.skip_capture_group() {
                    break;
                }
            }
            let rest = &line[tokens.pos.min(line.len())..];
            let offset = rest.iter().take_while(|&&b| b == b' ').count();
            let request_start = tokens.pos + offset;
            if line.get(request_start) != Some(&b'"') {
                return Err(error(Field::Request, request_start, ParseErrorKind::LiteralMismatch));
            }
            let body = &line[request_start + 1..];
            // A request line longer than HAProxy's buffer is cut without its closing quote.
            let request = memchr::memchr(b'"', body).map_or(body, |close| &body[..close]);
            (record.method, record.path, record.protocol) = split_request(request);
        }
        Ok(record)
    }

    fn parse_date(&mut self, text: &[u8]) -> Option<i64> {
        if text.len() == self.last_date_len && self.last_date[..text.len()] == *text {
            return Some(self.last_date_ms);
        }
        let ms = parse_haproxy_date(text)?;
        if text.len() <= self.last_date.len() {
            self.last_date[..text.len()].copy_from_slice(text);
            self.last_date_len = text.len();
            self.last_date_ms = ms;
        }
        Some(ms)
    }

    /// Describes a [`ParseError`] for a human.
    pub fn explain(&self, error: &ParseError) -> String {
        let column = error.column + 1;
        let field = FIELD_NAMES.get(usize::from(error.segment)).copied().unwrap_or("a field");
        match error.kind {
            ParseErrorKind::NotARequest => format!(
                "column {column}: not a request line (a connection or SSL error, or `Connect from`)"
            ),
            ParseErrorKind::NoTimestamp => {
                "no HAProxy accept date `[dd/Mon/yyyy:hh:mm:ss.mmm]` in the line".to_string()
            }
            ParseErrorKind::BadTimestamp => format!("column {column}: {field} is not a date"),
            ParseErrorKind::BadNumber => format!("column {column}: {field} is not a number"),
            ParseErrorKind::MissingDelimiter => {
                format!("column {column}: the line ends before {field}")
            }
            ParseErrorKind::LiteralMismatch => format!("column {column}: expected {field}"),
            ParseErrorKind::GoesOn => format!("column {column}: the line goes on past {field}"),
        }
    }
}

fn parse_status(token: &[u8]) -> Option<u16> {
    (token.len() == 3 && token.iter().all(u8::is_ascii_digit))
        .then(|| token.iter().fold(0u16, |value, &b| value * 10 + u16::from(b - b'0')))
}

/// Finds `[dd/Mon/yyyy:...]`: the first `[` followed by two digits and `/`, and its `]`.
fn find_accept_date(line: &[u8]) -> Option<(usize, usize)> {
    const MAX_TRIES: usize = 8;
    let mut from = 0;
    for _ in 0..MAX_TRIES {
        let open = from + memchr::memchr(b'[', &line[from..])?;
        let candidate = &line[open + 1..];
        if candidate.len() > 3
            && candidate[0].is_ascii_digit()
            && candidate[1].is_ascii_digit()
            && candidate[2] == b'/'
        {
            let close = memchr::memchr(b']', &candidate[..candidate.len().min(32)])?;
            return Some((open, open + 1 + close));
        }
        from = open + 1;
    }
    None
}

#[cfg(test)]
mod tests;
