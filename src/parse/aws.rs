//! AWS Application Load Balancer and Classic ELB access logs.
//!
//! Both are space-separated with some double-quoted fields. ALB lines start with the request
//! type (`http`, `https`, `h2`, `grpcs`, `ws`, `wss`) and carry the target group, which is the
//! pool; Classic ELB lines start with the time, and the load balancer's name is the pool. AWS
//! appends new fields at the end of ALB lines, so everything after the fields skewtail reads
//! is ignored. The backend is `target:port` as logged; `-` means no target (a WAF block, a
//! fixed response, a request that never completed).

use super::time::parse_iso8601;
use super::{ParseError, ParseErrorKind, Record};

/// Which AWS layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsKind {
    /// Application Load Balancer.
    Alb,
    /// Classic Load Balancer.
    Elb,
}

/// The AWS access-log parser.
#[derive(Debug, Clone)]
pub struct AwsLog {
    kind: AwsKind,
}

const ALB_TYPES: &[&[u8]] = &[b"http", b"https", b"h2", b"grpcs", b"ws", b"wss"];

/// Field names by position, for error messages (ALB numbering; ELB has no `type`).
const FIELD_NAMES: [&str; 17] = [
    "type",
    "time",
    "elb",
    "client:port",
    "target:port",
    "request_processing_time",
    "target_processing_time",
    "response_processing_time",
    "elb_status_code",
    "target_status_code",
    "received_bytes",
    "sent_bytes",
    "\"request\"",
    "\"user_agent\"",
    "ssl_cipher",
    "ssl_protocol",
    "target_group_arn",
];

/// Reads space-separated fields, a double-quoted one as one field (without its quotes).
struct Fields<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn next(&mut self) -> Option<(usize, &'a [u8])> {
        while self.line.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
        let start = self.pos;
        if start >= self.line.len() {
            return None;
        }
        if self.line[start] == b'"' {
            let mut at = start + 1;
            loop {
                let close = at + memchr::memchr(b'"', &self.line[at..])?;
                let escaped =
                    self.line[start + 1..close].iter().rev().take_while(|&&b| b == b'\\').count()
                        % 2
                        == 1;
                if !escaped {
                    self.pos = close + 1;
                    return Some((start, &self.line[start + 1..close]));
                }
                at = close + 1;
            }
        }
        let len = memchr::memchr(b' ', &self.line[start..]).unwrap_or(self.line.len() - start);
        self.pos = start + len;
        Some((start, &self.line[start..start + len]))
    }
}

fn dash_to_none(value: &[u8]) -> Option<&[u8]> {
    (!value.is_empty() && value != b"-").then_some(value)
}

/// Seconds with up to 6 decimals; `-1` (not dispatched, timed out) is `None`.
fn parse_seconds(value: &[u8]) -> Result<Option<f64>, ()> {
    if value == b"-1" {
        return Ok(None);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|v| *v >= 0.0)
        .map(Some)
        .ok_or(())
}

fn parse_status(value: &[u8]) -> Result<Option<u16>, ()> {
    if value == b"-" {
        return Ok(None);
    }
    if value.len() == 3 && value.iter().all(u8::is_ascii_digit) {
        return Ok(Some(value.iter().fold(0u16, |v, &b| v * 10 + u16::from(b - b'0'))));
    }
    Err(())
}

/// `METHOD url PROTOCOL`, where the URL is everything between the first and last space (it
/// may hold a raw space), and each part may be `-` on a malformed request.
#[allow(clippy::type_complexity)]
fn split_aws_request(request: &[u8]) -> (Option<&[u8]>, Option<&[u8]>, Option<&[u8]>) {
    let request = request.trim_ascii_end();
    let Some(first) = memchr::memchr(b' ', request) else {
        return (None, dash_to_none(request), None);
    };
    let method = dash_to_none(&request[..first]);
    let rest = &request[first + 1..];
    match memchr::memrchr(b' ', rest) {
        Some(last) => (method, dash_to_none(&rest[..last]), dash_to_none(&rest[last + 1..])),
        None => (method, dash_to_none(rest), None),
    }
}

impl AwsLog {
    /// A parser for one layout.
    pub fn new(kind: AwsKind) -> Self {
        AwsLog { kind }
    }

    /// Parses one line.
    pub fn parse<'a>(&mut self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        // Fields are numbered as the ALB's; ELB lines have no `type` (field 0).
        #[allow(clippy::cast_possible_truncation)] // lines are far shorter than 4 GiB
        let error = |index: usize, column: usize, kind| ParseError {
            column: column as u32,
            segment: index as u16,
            kind,
        };
        let mut fields = Fields { line, pos: 0 };
        let mut take = |index: usize| {
            fields.next().ok_or_else(|| error(index, line.len(), ParseErrorKind::MissingDelimiter))
        };
        if self.kind == AwsKind::Alb {
            let (column, kind) = take(0)?;
            if !ALB_TYPES.contains(&kind) {
                // NLB TLS logs (`tls 2.0 ...`) and ALB connection logs share the bucket.
                let not_a_request = kind == b"tls" || parse_iso8601(kind).is_some();
                return Err(error(
                    0,
                    column,
                    if not_a_request {
                        ParseErrorKind::NotARequest
                    } else {
                        ParseErrorKind::LiteralMismatch
                    },
                ));
            }
        }
        let (column, time) = take(1)?;
        let timestamp_ms =
            parse_iso8601(time).ok_or_else(|| error(1, column, ParseErrorKind::BadTimestamp))?;
        let (_, elb) = take(2)?;
        let (column, client) = take(3)?;
        if memchr::memchr(b':', client).is_none() {
            // An ALB connection log: `time client_ip client_port listener_port tls ...`.
            return Err(error(3, column, ParseErrorKind::NotARequest));
        }
        let (_, target) = take(4)?;
        let mut times = [None; 3];
        for (i, slot) in times.iter_mut().enumerate() {
            let (column, value) = take(5 + i)?;
            *slot = parse_seconds(value)
                .map_err(|()| error(5 + i, column, ParseErrorKind::BadNumber))?;
        }
        let (column, status) = take(8)?;
        let status =
            parse_status(status).map_err(|()| error(8, column, ParseErrorKind::BadNumber))?;
        let (column, upstream_status) = take(9)?;
        let upstream_status = parse_status(upstream_status)
            .map_err(|()| error(9, column, ParseErrorKind::BadNumber))?;
        let (_, _received) = take(10)?;
        let (column, sent) = take(11)?;
        let bytes = std::str::from_utf8(sent)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| error(11, column, ParseErrorKind::BadNumber))?;
        let (column, request) = take(12)?;
        if line.get(column) != Some(&b'"') {
            return Err(error(12, column, ParseErrorKind::LiteralMismatch));
        }
        let (method, path, protocol) = split_aws_request(request);
        let pool = match self.kind {
            AwsKind::Elb => Some(elb),
            // user_agent, ssl_cipher, ssl_protocol, then the target group.
            AwsKind::Alb => (13..=16)
                .map(take)
                .last()
                .and_then(Result::ok)
                .and_then(|(_, arn)| dash_to_none(arn)),
        };
        let backend = dash_to_none(target);
        let latency_s = times.iter().flatten().copied().reduce(|a, b| a + b);
        Ok(Record {
            timestamp_ms,
            backend,
            pool,
            attempts: u16::from(backend.is_some()),
            first_attempt: None,
            status,
            upstream_status,
            latency_s,
            upstream_latency_s: times[1],
            bytes: Some(bytes),
            method,
            path,
            protocol,
        })
    }

    /// Describes a [`ParseError`] for a human.
    pub fn explain(&self, error: &ParseError) -> String {
        let column = error.column + 1;
        let field = FIELD_NAMES.get(usize::from(error.segment)).copied().unwrap_or("a field");
        match error.kind {
            ParseErrorKind::NotARequest => {
                format!("column {column}: not a request (an NLB TLS or ALB connection log line)")
            }
            ParseErrorKind::MissingDelimiter => {
                format!("column {column}: the line ends before `{field}`")
            }
            ParseErrorKind::BadTimestamp => {
                format!("column {column}: `{field}` is not an ISO 8601 time")
            }
            ParseErrorKind::BadNumber => {
                format!("column {column}: `{field}` is not a number or `-`")
            }
            ParseErrorKind::GoesOn => format!("column {column}: the line goes on past `{field}`"),
            ParseErrorKind::LiteralMismatch | ParseErrorKind::NoTimestamp => match self.kind {
                AwsKind::Alb => format!(
                    "column {column}: expected `{field}`; an ALB line starts with http, https, h2, grpcs, ws or wss"
                ),
                AwsKind::Elb => format!("column {column}: expected `{field}`"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::vectors::check_vector_file;

    fn run_vectors(file: &str, kind: AwsKind) -> usize {
        let mut parser = crate::parse::Parser::Aws(AwsLog::new(kind));
        check_vector_file(file, &mut parser, |expect| {
            if let Some(group) = expect.get("target_group").cloned() {
                expect.insert("upstream_name".into(), group);
            }
        })
    }

    #[test]
    fn alb_conformance_vectors() {
        assert_eq!(run_vectors("aws_alb.jsonl", AwsKind::Alb), 36);
    }

    #[test]
    fn elb_conformance_vectors() {
        assert_eq!(run_vectors("aws_elb_classic.jsonl", AwsKind::Elb), 9);
    }

    #[test]
    fn each_layout_rejects_the_other() {
        let alb = br#"http 2018-07-02T22:23:00.186641Z app/lb/1 1.2.3.4:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "GET http://x:80/ HTTP/1.1" "curl" - - arn:tg "Root=1""#;
        let elb = br#"2015-05-13T23:39:43.945958Z my-lb 1.2.3.4:2817 10.0.0.1:80 0.000086 0.001048 0.001337 200 200 0 57 "GET https://x:443/ HTTP/1.1" "curl" - -"#;
        assert!(AwsLog::new(AwsKind::Alb).parse(alb).is_ok());
        assert!(AwsLog::new(AwsKind::Elb).parse(elb).is_ok());
        let error = AwsLog::new(AwsKind::Alb).parse(elb).unwrap_err();
        assert_eq!(
            error.kind,
            ParseErrorKind::NotARequest,
            "an ISO time first looks like a connection log"
        );
        assert!(AwsLog::new(AwsKind::Elb).parse(alb).is_err());
        let record = AwsLog::new(AwsKind::Alb).parse(alb).unwrap();
        assert_eq!(record.pool, Some(&b"arn:tg"[..]));
        assert_eq!(record.latency_s, Some(0.001));
    }
}
