//! The format-string engine shared by nginx `log_format`, Envoy access-log formats and HAProxy
//! `log-format`.
//!
//! All three describe a line as fixed text ("literals") with placeholders between them. Each
//! dialect's front end (`nginx.rs`, `envoy.rs`, `haproxy_format.rs`) turns its own placeholder
//! syntax into [`Segment`]s and says which record [`Field`] each one feeds; this module compiles
//! the segments into a flat list of steps and matches lines against it. A placeholder's value
//! runs up to the next literal, found with `memchr`: no regex, no backtracking, no allocation.
//!
//! Two habits of real logs need care:
//! - nginx `$upstream_*` variables hold lists (`a:80, b:80 : c:80`) whose separators contain
//!   spaces, so a list value followed by a space does not end at a space inside the list.
//! - With nginx `escape=json` (and Envoy, Traefik) a quoted value can contain `\"`; a quote
//!   preceded by an odd number of backslashes is therefore never taken as the end of a value.

use super::time::{parse_epoch_seconds, parse_haproxy_date, parse_iso8601, parse_time_local};
use super::{ParseError, ParseErrorKind, Record, split_request};

/// How a timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeLayout {
    /// `10/Oct/2000:13:55:36 -0700` (nginx `$time_local`, HAProxy `%T`/`%trl`).
    Clf,
    /// RFC 3339 / ISO 8601 (`$time_iso8601`, Envoy `%START_TIME%`, JSON logs).
    Iso8601,
    /// A Unix time in the given unit, with an optional fraction (`$msec`, Caddy's `ts`).
    Epoch(TimeUnit),
    /// HAProxy's accept date `06/Feb/2009:12:14:14.655`, no zone (read as UTC).
    Haproxy,
}

impl TimeLayout {
    /// Reads a layout name from a pattern file: `clf`, `iso8601` (or `rfc3339`), `haproxy`,
    /// `epoch_s`, `epoch_ms`, `epoch_us`, `epoch_ns`.
    pub(super) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "clf" => TimeLayout::Clf,
            "iso8601" | "rfc3339" => TimeLayout::Iso8601,
            "haproxy" => TimeLayout::Haproxy,
            _ => TimeLayout::Epoch(TimeUnit::from_name(name.strip_prefix("epoch_")?)?),
        })
    }

    /// Unix milliseconds from a timestamp's text.
    pub(super) fn parse(self, value: &[u8]) -> Option<i64> {
        match self {
            TimeLayout::Clf => parse_time_local(value),
            TimeLayout::Iso8601 => parse_iso8601(value),
            TimeLayout::Haproxy => parse_haproxy_date(value),
            TimeLayout::Epoch(TimeUnit::Seconds) => parse_epoch_seconds(value),
            TimeLayout::Epoch(unit) => {
                // Integers of ms, µs or ns: whole units are exact, a fraction is below 1 ms.
                let whole = memchr::memchr(b'.', value).map_or(value, |dot| &value[..dot]);
                let per_ms = match unit {
                    TimeUnit::Micros => 1_000,
                    TimeUnit::Nanos => 1_000_000,
                    _ => 1,
                };
                i64::try_from(parse_uint(whole)? / per_ms).ok()
            }
        }
    }
}

/// The unit a duration is logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeUnit {
    /// Seconds (nginx, Caddy).
    Seconds,
    /// Milliseconds (Envoy, HAProxy).
    Millis,
    /// Microseconds (Apache `%D`).
    Micros,
    /// Nanoseconds (Traefik JSON).
    Nanos,
    /// A duration string with its unit: `0.005192s` (Google Cloud), `1.5ms`, `1m2s` (Go).
    Text,
}

impl TimeUnit {
    /// Reads a unit name from a pattern file: `s`, `ms`, `us`, `ns` or `duration`.
    pub(super) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "s" => TimeUnit::Seconds,
            "ms" => TimeUnit::Millis,
            "us" => TimeUnit::Micros,
            "ns" => TimeUnit::Nanos,
            "duration" => TimeUnit::Text,
            _ => return None,
        })
    }

    /// Seconds from a duration's text.
    #[inline]
    pub(super) fn parse_seconds(self, value: &[u8]) -> Option<f64> {
        let per_second = match self {
            TimeUnit::Seconds => return parse_decimal(value),
            TimeUnit::Millis => 1e3,
            TimeUnit::Micros => 1e6,
            TimeUnit::Nanos => 1e9,
            TimeUnit::Text => return parse_duration_text(value),
        };
        parse_decimal(value).map(|v| v / per_second)
    }
}

/// Parses a duration with units, as Go and protobuf write them: `0.005192s`, `1.5ms`,
/// `2m3.5s`, `350µs`.
fn parse_duration_text(value: &[u8]) -> Option<f64> {
    let mut rest = value;
    let mut total = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n_number = rest.iter().take_while(|b| b.is_ascii_digit() || **b == b'.').count();
        let number = parse_decimal(&rest[..n_number])?;
        rest = &rest[n_number..];
        let n_unit = rest.iter().take_while(|b| !b.is_ascii_digit()).count();
        let per_second = match &rest[..n_unit] {
            b"h" => 1.0 / 3600.0,
            b"m" => 1.0 / 60.0,
            b"s" => 1.0,
            b"ms" => 1e3,
            b"us" | [0xC2, 0xB5, b's'] | [0xCE, 0xBC, b's'] => 1e6, // us, µs, μs
            b"ns" => 1e9,
            _ => return None,
        };
        total += number / per_second;
        rest = &rest[n_unit..];
    }
    Some(total)
}

/// What a placeholder feeds into the [`Record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    /// The event time.
    Timestamp(TimeLayout),
    /// A whole request line, `METHOD target PROTOCOL`.
    Request,
    /// The method alone.
    Method,
    /// The request target alone.
    Path,
    /// The protocol alone.
    Protocol,
    /// Status sent to the client (`-1` or `-` when there was none).
    Status,
    /// Bytes sent to the client. A `weak` source (nginx `$bytes_sent` next to
    /// `$body_bytes_sent`) only fills the field when nothing else did.
    Bytes {
        /// Whether another placeholder takes precedence.
        weak: bool,
    },
    /// Total request time. `weak` as for `Bytes` (HAProxy `%Tt` next to `%Ta`).
    Latency {
        /// The unit it is logged in.
        unit: TimeUnit,
        /// Whether another placeholder takes precedence.
        weak: bool,
    },
    /// Time spent in the final backend (last item of a list).
    UpstreamLatency(TimeUnit),
    /// Status from the final backend (last item of a list).
    UpstreamStatus,
    /// The backend address, or a list of them with the final one last.
    Backend,
    /// HAProxy's `backend/server` pair: the pool and, unless it is a pseudo-server such as
    /// `<NOSRV>`, the backend.
    BackendServer,
    /// The pool (upstream group, cluster).
    Pool,
    /// How many times the balancer retried (HAProxy `%rc`).
    Retries,
    /// A known placeholder skewtail does not use; a list-valued one when `list` is set.
    Ignored {
        /// Whether the value is an nginx upstream list.
        list: bool,
    },
}

impl Field {
    fn is_list(self) -> bool {
        matches!(
            self,
            Field::Backend
                | Field::UpstreamStatus
                | Field::UpstreamLatency(_)
                | Field::Ignored { list: true }
        )
    }
}

impl Field {
    /// Reads a record-field spec from a pattern's `[fields]` table: a field name, with a unit
    /// for durations (`latency:ms`) or a layout for the timestamp (`timestamp:epoch_s`).
    pub(super) fn from_spec(placeholder: &str, spec: &str) -> Result<Self, CompileError> {
        let (name, modifier) = match spec.split_once(':') {
            Some((name, modifier)) => (name, Some(modifier)),
            None => (spec, None),
        };
        let bad = |problem: String| CompileError::BadFieldSpec {
            placeholder: placeholder.to_string(),
            spec: spec.to_string(),
            problem,
        };
        let unit = || match modifier {
            None => Ok(TimeUnit::Seconds),
            Some(unit) => TimeUnit::from_name(unit).ok_or_else(|| {
                bad(format!("unknown unit `{unit}`; use s, ms, us, ns or duration"))
            }),
        };
        let field = match name {
            "timestamp" => {
                let layout = modifier.unwrap_or("iso8601");
                Field::Timestamp(TimeLayout::from_name(layout).ok_or_else(|| {
                    bad(format!(
                        "unknown timestamp layout `{layout}`; use iso8601, clf, haproxy, \
                         epoch_s, epoch_ms, epoch_us or epoch_ns"
                    ))
                })?)
            }
            "latency" => Field::Latency { unit: unit()?, weak: false },
            "upstream_latency" => Field::UpstreamLatency(unit()?),
            _ if modifier.is_some() => {
                return Err(bad(format!("`{name}` takes no `:` modifier")));
            }
            "backend" => Field::Backend,
            "pool" => Field::Pool,
            "status" => Field::Status,
            "upstream_status" => Field::UpstreamStatus,
            "bytes" => Field::Bytes { weak: false },
            "method" => Field::Method,
            "path" => Field::Path,
            "protocol" => Field::Protocol,
            "request" => Field::Request,
            "retries" => Field::Retries,
            "ignore" => Field::Ignored { list: false },
            _ => {
                return Err(bad(
                    "not a record field; use timestamp, backend, pool, status, upstream_status, \
                     latency, upstream_latency, bytes, method, path, protocol, request, retries \
                     or ignore"
                        .to_string(),
                ));
            }
        };
        Ok(field)
    }
}

/// Why a format string could not be compiled. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A placeholder the dialect (as far as skewtail knows) does not have.
    #[error("unknown {kind} `{name}` at column {column} of the format{hint}; {advice}")]
    UnknownVariable {
        /// What the dialect calls its placeholders ("variable", "operator", "alias").
        kind: &'static str,
        /// The placeholder as written (`$stauts`).
        name: String,
        /// 1-based column in the format text.
        column: usize,
        /// ", did you mean `$x`?" or empty.
        hint: String,
        /// How to make it known.
        advice: &'static str,
    },
    /// Two placeholders with nothing between them cannot be told apart.
    #[error(
        "`{first}` and `{second}` follow each other with no text between them at column \
         {column}, so skewtail cannot tell where one ends; the balancer writes them glued \
         together too - put a separator (a space, quote or `|`) between them in the format"
    )]
    AdjacentVariables {
        /// The first placeholder.
        first: String,
        /// The second placeholder.
        second: String,
        /// 1-based column of the second one.
        column: usize,
    },
    /// Without a time placeholder there is no event time to window on.
    #[error("the format has no time field; add {suggestion} to it")]
    NoTimestamp {
        /// The dialect's time placeholders.
        suggestion: &'static str,
    },
    /// A placeholder that is not closed or has no name.
    #[error("malformed placeholder at column {column} of the format: {problem}")]
    Malformed {
        /// 1-based column.
        column: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// The format is empty.
    #[error("the format is empty; pass the text of your balancer's log format")]
    Empty,
    /// An `other` regex that does not compile.
    #[error("an `other` regex is invalid: {problem}")]
    BadRegex {
        /// The regex crate's explanation.
        problem: String,
    },
    /// A `[fields]` entry that does not name a record field, or has a bad unit or layout.
    #[error("`{placeholder}` is mapped to `{spec}`: {problem}")]
    BadFieldSpec {
        /// The placeholder or JSON path.
        placeholder: String,
        /// The spec as written.
        spec: String,
        /// What is wrong and what would be right.
        problem: String,
    },
}

/// One piece of a format: fixed text, or a placeholder and the field it feeds.
#[derive(Debug, Clone)]
pub(super) enum Segment {
    /// Text the line must contain as is.
    Literal(Box<[u8]>),
    /// A placeholder, named as the user wrote it (for error messages).
    Variable {
        /// `$status`, `%ST`, `%UPSTREAM_HOST%`.
        name: Box<str>,
        /// What it feeds.
        field: Field,
    },
}

/// Dialect details the engine needs beyond the segments.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Options {
    /// The final quoted value may lack its closing quote (HAProxy cuts request lines at
    /// 1024 bytes).
    pub cut_final_quote: bool,
    /// The dialect's time placeholders, for the "no time field" error.
    pub time_suggestion: &'static str,
}

/// A compiled format string.
#[derive(Debug, Clone)]
pub struct Template {
    /// The format as written, for error messages.
    segments: Vec<Segment>,
    /// The literal the format starts with (often empty).
    prefix: Box<[u8]>,
    /// The placeholders in order, each with the literal that ends it: the per-line loop walks
    /// this one flat array.
    steps: Vec<Step>,
    /// The first time placeholder, as (step, segment), when everything before it is skipped
    /// text (remote address, user...). Lines whose prefix differs from the format (a vhost, an
    /// X-Forwarded-For list, a syslog header in front, a missing ident column) are then
    /// re-synchronised on the literal just before the time, as robust log parsers do.
    resync_anchor: Option<(usize, usize)>,
    has_pool: bool,
    has_backend: bool,
    time_cache: TimeCache,
    /// Valid lines that are not requests (Envoy's own application log in the same stream),
    /// tried only on lines that fail to match.
    other_lines: Option<regex::bytes::RegexSet>,
}

/// One placeholder and what ends it.
#[derive(Debug, Clone)]
struct Step {
    field: Field,
    is_list: bool,
    /// The literal after the placeholder; empty when it runs to the end of the line.
    terminator: Terminator,
    /// Whether the value may run to the end of the line without its terminator.
    may_be_cut: bool,
    /// The placeholder's index in `segments`, for error messages.
    segment: u16,
}

/// The last timestamp text parsed and its value: consecutive lines nearly always share the
/// same second, so this skips most timestamp parsing.
#[derive(Debug, Clone)]
struct TimeCache {
    text: [u8; 40],
    len: usize,
    unix_ms: i64,
}

impl TimeCache {
    fn parse(&mut self, layout: TimeLayout, value: &[u8]) -> Option<i64> {
        if value.len() == self.len && same_bytes(&self.text[..value.len()], value) {
            return Some(self.unix_ms);
        }
        let ms = layout.parse(value)?;
        if value.len() <= self.text.len() {
            self.text[..value.len()].copy_from_slice(value);
            self.len = value.len();
            self.unix_ms = ms;
        }
        Some(ms)
    }
}

/// Builds the segment list while a front end tokenises a format: merges adjacent literals and
/// refuses two placeholders with nothing between them.
#[derive(Debug, Default)]
pub(super) struct SegmentsBuilder {
    segments: Vec<Segment>,
    literal: Vec<u8>,
}

impl SegmentsBuilder {
    /// Appends fixed text.
    pub fn literal(&mut self, text: &[u8]) {
        self.literal.extend_from_slice(text);
    }

    /// Appends a placeholder found at 1-based `column`.
    pub fn variable(
        &mut self,
        name: &str,
        field: Field,
        column: usize,
    ) -> Result<(), CompileError> {
        if self.literal.is_empty() {
            if let Some(Segment::Variable { name: first, .. }) = self.segments.last() {
                return Err(CompileError::AdjacentVariables {
                    first: first.to_string(),
                    second: name.to_string(),
                    column,
                });
            }
        } else {
            let text = std::mem::take(&mut self.literal).into_boxed_slice();
            self.segments.push(Segment::Literal(text));
        }
        self.segments.push(Segment::Variable { name: name.into(), field });
        Ok(())
    }

    /// The finished segments.
    pub fn finish(mut self) -> Vec<Segment> {
        if !self.literal.is_empty() {
            self.segments.push(Segment::Literal(self.literal.into_boxed_slice()));
        }
        self.segments
    }
}

/// Splits a format into literals and placeholders: every dialect marks a placeholder with one
/// sigil byte (`$`, `%`). `placeholder` reads the one starting at the given index (the sigil),
/// pushes what it stands for, and returns the index after it.
pub(super) fn split_placeholders(
    text: &str,
    sigil: u8,
    mut placeholder: impl FnMut(&mut SegmentsBuilder, usize) -> Result<usize, CompileError>,
) -> Result<Vec<Segment>, CompileError> {
    let bytes = text.as_bytes();
    let mut segments = SegmentsBuilder::default();
    let mut i = 0;
    while i < bytes.len() {
        let Some(at) = memchr::memchr(sigil, &bytes[i..]) else {
            segments.literal(&bytes[i..]);
            break;
        };
        segments.literal(&bytes[i..i + at]);
        i = placeholder(&mut segments, i + at)?;
    }
    Ok(segments.finish())
}

/// Parses an unsigned decimal number (`0.050`, `12`, HAProxy's lower bound `+30`) without
/// allocation; exponent forms (`2.7e-06`, as some JSON encoders write) take the slower path.
#[inline]
pub(super) fn parse_decimal(bytes: &[u8]) -> Option<f64> {
    parse_plain_decimal(bytes).or_else(|| parse_exponent_decimal(bytes))
}

#[cold]
fn parse_exponent_decimal(bytes: &[u8]) -> Option<f64> {
    let value: f64 = std::str::from_utf8(bytes).ok()?.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value)
}

#[inline]
fn parse_plain_decimal(bytes: &[u8]) -> Option<f64> {
    let bytes = bytes.strip_prefix(b"+").unwrap_or(bytes);
    let (whole, fraction) = match memchr::memchr(b'.', bytes) {
        Some(dot) => (&bytes[..dot], &bytes[dot + 1..]),
        None => (bytes, &b""[..]),
    };
    if whole.is_empty() || whole.len() > 15 || fraction.len() > 9 {
        return None;
    }
    let value = parse_digits(whole)?;
    let frac = if fraction.is_empty() { 0 } else { parse_digits(fraction)? };
    const SCALE: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
    #[allow(clippy::cast_precision_loss)] // whole and fraction are capped at 15 and 9 digits
    Some(value as f64 + frac as f64 / SCALE[fraction.len()])
}

#[inline]
fn parse_digits(bytes: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    Some(value)
}

/// Parses an unsigned integer, allowing HAProxy's `+` lower-bound marker.
#[inline]
pub(super) fn parse_uint(bytes: &[u8]) -> Option<u64> {
    let bytes = bytes.strip_prefix(b"+").unwrap_or(bytes);
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    parse_digits(bytes)
}

/// Balancers write `-` for an unset value (and `""` under nginx `escape=json`); HAProxy writes
/// `-1` for a timer or status it never reached.
#[inline]
fn is_unset(value: &[u8]) -> bool {
    value.is_empty() || value == b"-" || value == b"-1"
}

/// The last item of an upstream list (`a, b : c` gives `c`) and the number of items.
#[inline]
pub(super) fn last_list_item(value: &[u8]) -> (&[u8], u16) {
    let (last, _, n_items) = list_ends(value);
    (last, n_items)
}

/// The last and first items of an upstream list (`a, b : c` gives `c` and `a`) and the number
/// of items.
#[inline]
pub(super) fn list_ends(value: &[u8]) -> (&[u8], &[u8], u16) {
    // Nearly every request has one attempt: no separator at all.
    if memchr::memchr2(b',', b' ', value).is_none() {
        return (value, value, 1);
    }
    let mut n_items: u16 = 1;
    let mut last_start = 0;
    let mut first_end = value.len();
    for (i, &b) in value.iter().enumerate() {
        // `,` separates attempts within a group; ` : ` separates groups after an internal
        // redirect. A `:` inside `ip:port` or `unix:/path` has no space before it.
        let is_separator = b == b',' || (b == b':' && i > 0 && value[i - 1] == b' ');
        if is_separator {
            if n_items == 1 {
                first_end = i;
            }
            n_items = n_items.saturating_add(1);
            last_start = i + 1;
        }
    }
    (value[last_start..].trim_ascii(), value[..first_end].trim_ascii(), n_items)
}

impl Template {
    /// Compiles segments from a dialect front end.
    pub(super) fn from_segments(
        segments: Vec<Segment>,
        options: Options,
    ) -> Result<Self, CompileError> {
        if segments.is_empty() {
            return Err(CompileError::Empty);
        }
        let fields = || {
            segments.iter().filter_map(|s| {
                if let Segment::Variable { field, .. } = s { Some(*field) } else { None }
            })
        };
        if !fields().any(|f| matches!(f, Field::Timestamp(_))) {
            return Err(CompileError::NoTimestamp { suggestion: options.time_suggestion });
        }
        let has_pool = fields().any(|f| matches!(f, Field::Pool | Field::BackendServer));
        let has_backend = fields().any(|f| matches!(f, Field::Backend | Field::BackendServer));
        let resync_anchor = segments
            .iter()
            .position(|s| matches!(s, Segment::Variable { field: Field::Timestamp(_), .. }))
            .filter(|&anchor| {
                anchor > 1
                    && matches!(segments[anchor - 1], Segment::Literal(_))
                    && segments[..anchor].iter().all(|s| {
                        matches!(
                            s,
                            Segment::Literal(_)
                                | Segment::Variable { field: Field::Ignored { .. }, .. }
                        )
                    })
            });
        let prefix = match segments.first() {
            Some(Segment::Literal(text)) => text.clone(),
            _ => Box::default(),
        };
        let last_variable = segments.iter().rposition(|s| matches!(s, Segment::Variable { .. }));
        #[allow(clippy::cast_possible_truncation)] // formats have far fewer than 65536 segments
        let steps: Vec<Step> = segments
            .iter()
            .enumerate()
            .filter_map(|(index, segment)| match segment {
                Segment::Variable { field, .. } => {
                    let terminator = match segments.get(index + 1) {
                        Some(Segment::Literal(text)) => text.clone(),
                        _ => Box::default(),
                    };
                    Some(Step {
                        field: *field,
                        is_list: field.is_list(),
                        may_be_cut: options.cut_final_quote
                            && Some(index) == last_variable
                            && terminator.first() == Some(&b'"'),
                        terminator: Terminator::new(terminator),
                        segment: index as u16,
                    })
                }
                Segment::Literal(_) => None,
            })
            .collect();
        let resync_anchor = resync_anchor.and_then(|segment| {
            steps
                .iter()
                .position(|step| usize::from(step.segment) == segment)
                .map(|step| (step, segment))
        });
        Ok(Template {
            segments,
            prefix,
            steps,
            resync_anchor,
            has_pool,
            has_backend,
            time_cache: TimeCache { text: [0; 40], len: usize::MAX, unix_ms: 0 },
            other_lines: None,
        })
    }

    /// Counts lines matching any of `other_lines` as valid non-requests (`other`) instead of
    /// errors.
    pub(super) fn with_other_lines(mut self, other_lines: Option<regex::bytes::RegexSet>) -> Self {
        self.other_lines = other_lines;
        self
    }

    /// Whether the format carries a pool name.
    pub fn has_pool_field(&self) -> bool {
        self.has_pool
    }

    /// How many placeholders the format has.
    pub fn n_variables(&self) -> usize {
        self.steps.len()
    }

    /// Whether the format names the backend.
    pub fn has_backend_field(&self) -> bool {
        self.has_backend
    }

    /// Parses one line.
    #[inline]
    pub fn parse<'a>(&mut self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        self.parse_with_end(line).map(|(record, _)| record)
    }

    /// Parses one line and also returns where the format's text ended in it, for formats
    /// that read a variable tail by hand (Traefik).
    #[inline]
    pub fn parse_with_end<'a>(
        &mut self,
        line: &'a [u8],
    ) -> Result<(Record<'a>, usize), ParseError> {
        let mut record = Record::default();
        let result = if self.prefix.is_empty() || line.starts_with(&self.prefix) {
            self.match_steps(line, self.prefix.len(), 0, &mut record)
        } else {
            Err(ParseError { column: 0, segment: 0, kind: ParseErrorKind::LiteralMismatch })
        };
        match result {
            Ok(end) => Ok((record, end)),
            Err(error) => match self.resync_anchor {
                Some((step, segment)) if usize::from(error.segment) < segment => {
                    self.resync(line, step, error).map_err(|error| self.classify(line, error))
                }
                _ => Err(self.classify(line, error)),
            },
        }
    }

    /// Turns the error for a line that is a known non-request into `NotARequest`.
    #[cold]
    fn classify(&self, line: &[u8], error: ParseError) -> ParseError {
        match &self.other_lines {
            Some(other) if other.is_match(line) => {
                ParseError { kind: ParseErrorKind::NotARequest, ..error }
            }
            _ => error,
        }
    }

    /// Retries a line whose prefix did not match by searching for the literal before the time
    /// placeholder, at most a few times.
    #[cold]
    fn resync<'a>(
        &mut self,
        line: &'a [u8],
        anchor_step: usize,
        error: ParseError,
    ) -> Result<(Record<'a>, usize), ParseError> {
        const MAX_TRIES: usize = 8;
        let literal = self.steps[anchor_step - 1].terminator.clone();
        let mut from = 0;
        for _ in 0..MAX_TRIES {
            let Some(at) = literal.find_in(&line[from..]) else {
                return Err(error);
            };
            let start = from + at + literal.text.len();
            let mut record = Record::default();
            if let Ok(end) = self.match_steps(line, start, anchor_step, &mut record) {
                return Ok((record, end));
            }
            from = from + at + 1;
        }
        Err(error)
    }

    fn match_steps<'a>(
        &mut self,
        line: &'a [u8],
        mut pos: usize,
        first_step: usize,
        record: &mut Record<'a>,
    ) -> Result<usize, ParseError> {
        let mut has_time = false;
        let Self { steps, time_cache, .. } = self;
        for step in &steps[first_step..] {
            #[allow(clippy::cast_possible_truncation)] // lines are far shorter than 4 GiB
            let error = |kind, column: usize| ParseError {
                column: column as u32,
                segment: step.segment,
                kind,
            };
            let (end, next) = if step.terminator.text.is_empty() {
                (line.len(), line.len())
            } else {
                match find_value_end(&line[pos..], &step.terminator, step.is_list) {
                    Some(end) => (pos + end, pos + end + step.terminator.text.len()),
                    None if step.may_be_cut => (line.len(), line.len()),
                    None => return Err(error(ParseErrorKind::MissingDelimiter, pos)),
                }
            };
            let value = &line[pos..end];
            if let Field::Timestamp(layout) = step.field {
                record.timestamp_ms = time_cache
                    .parse(layout, value)
                    .ok_or_else(|| error(ParseErrorKind::BadTimestamp, pos))?;
                has_time = true;
            } else {
                apply_field(step.field, value, record)
                    .ok_or_else(|| error(ParseErrorKind::BadNumber, pos))?;
            }
            pos = next;
        }
        if has_time {
            Ok(pos)
        } else {
            #[allow(clippy::cast_possible_truncation)]
            Err(ParseError {
                column: pos as u32,
                segment: self.segments.len() as u16,
                kind: ParseErrorKind::NoTimestamp,
            })
        }
    }

    /// Describes a [`ParseError`] in words: the column, the field and what was expected.
    pub fn explain(&self, error: &ParseError) -> String {
        let column = error.column + 1;
        let describe = |index: usize| match self.segments.get(index) {
            Some(Segment::Literal(text)) => {
                format!("the text `{}`", String::from_utf8_lossy(text))
            }
            Some(Segment::Variable { name, .. }) => format!("`{name}`"),
            None => "the end of the line".to_string(),
        };
        let segment = usize::from(error.segment);
        match error.kind {
            ParseErrorKind::LiteralMismatch => {
                format!("column {column}: expected {}", describe(segment))
            }
            ParseErrorKind::MissingDelimiter => format!(
                "column {column}: {} never ends: expected {} after it",
                describe(segment),
                describe(segment + 1)
            ),
            ParseErrorKind::BadTimestamp => format!(
                "column {column}: {} is not a timestamp in the format's layout",
                describe(segment)
            ),
            ParseErrorKind::BadNumber => {
                format!("column {column}: {} is not a number or `-`", describe(segment))
            }
            ParseErrorKind::NoTimestamp => format!("column {column}: the line has no timestamp"),
            ParseErrorKind::NotARequest => format!("column {column}: not a request line"),
        }
    }
}

/// Finds where a value ends: the next occurrence of the literal that follows it, skipping
/// quotes escaped with a backslash and, for list values, the spaces inside `, ` and ` : `.
#[inline(always)]
fn find_value_end(rest: &[u8], terminator: &Terminator, is_list: bool) -> Option<usize> {
    let literal = &terminator.text;
    let mut from = 0;
    loop {
        let at = from + terminator.find_in(&rest[from..])?;
        let escaped_quote = literal[0] == b'"'
            && rest[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1;
        let inside_list = is_list
            && literal[0] == b' '
            && (rest[..at].ends_with(b",")
                || rest[..at].ends_with(b" :")
                || rest[at..].starts_with(b" : ")
                || rest[at..].starts_with(b" , "));
        if !escaped_quote && !inside_list {
            return Some(at);
        }
        from = at + 1;
    }
}

/// A format literal that ends a value, ready to be found in lines. Literals are short
/// (`" "`, ` uct="`) and values are short, so `memchr` for the first byte and a check of the
/// rest beat a general substring search, whose set-up cost dominates on haystacks this small.
/// The rest, when it fits in 8 bytes, is checked with one masked word compare: a `memcmp`
/// call per candidate cost a sixth of the parse.
#[derive(Debug, Clone)]
struct Terminator {
    text: Box<[u8]>,
    /// The bytes after the first, little-endian, zero-padded.
    tail_word: u64,
    /// Which bytes of a loaded word `tail_word` covers; `None` when the tail is over 8 bytes.
    tail_mask: Option<u64>,
}

impl Terminator {
    fn new(text: Box<[u8]>) -> Self {
        let tail = text.get(1..).unwrap_or_default();
        let (tail_word, tail_mask) = if tail.len() <= 8 {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            let mask = if tail.len() == 8 { u64::MAX } else { (1u64 << (8 * tail.len())) - 1 };
            (u64::from_le_bytes(word), Some(mask))
        } else {
            (0, None)
        };
        Terminator { text, tail_word, tail_mask }
    }

    /// Where the literal first occurs in `haystack`.
    #[inline(always)]
    fn find_in(&self, haystack: &[u8]) -> Option<usize> {
        let (&first, tail) = self.text.split_first()?;
        let mut from = 0;
        while let Some(at) = find_byte(first, &haystack[from..]) {
            let at = from + at;
            let after = &haystack[at + 1..];
            let matches = match self.tail_mask {
                Some(mask) if after.len() >= 8 => {
                    let word = u64::from_le_bytes(after[..8].try_into().unwrap_or_default());
                    word & mask == self.tail_word
                }
                _ => after.starts_with(tail),
            };
            if matches {
                return Some(at);
            }
            from = at + 1;
        }
        None
    }
}

/// Whether two byte strings of the same length are equal, compared a word at a time inline:
/// timestamps are compared on every line, and a `memcmp` call costs more than the compare.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return a == b;
    }
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let mut at = 0;
    while at + 8 <= a.len() {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    // The last, overlapping word covers what is left.
    word(a, a.len() - 8) == word(b, b.len() - 8)
}

#[inline(always)]
fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    const SHORT: usize = 16;
    let head = &haystack[..haystack.len().min(SHORT)];
    if let Some(at) = head.iter().position(|&b| b == needle) {
        return Some(at);
    }
    if haystack.len() <= SHORT {
        return None;
    }
    memchr::memchr(needle, &haystack[SHORT..]).map(|at| at + SHORT)
}

/// HAProxy's pseudo-servers: the request was answered without reaching a server.
fn is_pseudo_server(server: &[u8]) -> bool {
    server.starts_with(b"<")
}

/// Stores one placeholder's value into the record. `None` means the value is malformed.
#[inline(always)]
pub(super) fn apply_field<'a>(
    field: Field,
    value: &'a [u8],
    record: &mut Record<'a>,
) -> Option<()> {
    match field {
        Field::Request => {
            (record.method, record.path, record.protocol) = split_request(value);
        }
        Field::Method => record.method = (!is_unset(value)).then_some(value),
        Field::Path => record.path = (!is_unset(value)).then_some(value),
        Field::Protocol => record.protocol = (!is_unset(value)).then_some(value),
        Field::Status => record.status = parse_status(value)?,
        Field::Bytes { weak } => {
            if !weak || record.bytes.is_none() {
                record.bytes = parse_optional(value, parse_uint)?;
            }
        }
        Field::Latency { unit, weak } => {
            if !weak || record.latency_s.is_none() {
                record.latency_s = parse_optional(value, |v| unit.parse_seconds(v))?;
            }
        }
        Field::Backend => {
            if is_unset(value) {
                record.backend = None;
                record.attempts = 0;
            } else {
                let (last, first, n_items) = list_ends(value);
                record.backend = (!is_unset(last)).then_some(last);
                record.attempts = n_items;
                record.first_attempt = (n_items > 1 && !is_unset(first)).then_some(first);
            }
        }
        Field::BackendServer => {
            let slash = memchr::memchr(b'/', value)?;
            record.pool = Some(&value[..slash]);
            let has_server = !is_pseudo_server(&value[slash + 1..]);
            record.backend = has_server.then_some(value);
            record.attempts = u16::from(has_server);
        }
        Field::UpstreamStatus => {
            // Traefik logs an origin status of 0 when it answered itself: no backend status.
            record.upstream_status = parse_status(last_list_item(value).0)?.filter(|&s| s != 0);
        }
        Field::UpstreamLatency(unit) => {
            record.upstream_latency_s =
                parse_optional(last_list_item(value).0, |v| unit.parse_seconds(v))?;
        }
        Field::Pool => record.pool = (!is_unset(value)).then_some(value),
        Field::Retries => {
            let retries = parse_optional(value, parse_uint)?.unwrap_or(0);
            if record.backend.is_some() {
                record.attempts = u16::try_from(retries + 1).unwrap_or(u16::MAX);
            }
        }
        Field::Ignored { .. } | Field::Timestamp(_) => {}
    }
    Some(())
}

/// `Some(None)` for an unset value, `None` for a malformed one.
#[inline]
fn parse_optional<T>(value: &[u8], parse: impl Fn(&[u8]) -> Option<T>) -> Option<Option<T>> {
    if is_unset(value) { Some(None) } else { parse(value).map(Some) }
}

/// A status code: one to three digits (Envoy logs `0` when no response was sent).
#[inline]
fn parse_status(value: &[u8]) -> Option<Option<u16>> {
    #[allow(clippy::cast_possible_truncation)] // at most 3 digits
    parse_optional(value, |v| (v.len() <= 3).then(|| parse_uint(v)).flatten().map(|s| s as u16))
}

#[cfg(test)]
mod tests {
    use super::{Terminator, same_bytes};

    #[test]
    fn terminators_of_every_length_are_found_where_a_plain_search_finds_them() {
        let haystack = b"a\" b uct=\"0.1\" x uct=\"0.2\" ua=\"10.0.0.1:80\" end-of-line--marker!";
        for literal in [
            &b" "[..],
            b"\" ",
            b" uct=\"",
            b"\" ua=\"",
            b"0.0.1:80\"",
            b"end-of-line--marker!",
            b"marker!",
            b"absent",
            b"!x",
        ] {
            let terminator = Terminator::new(literal.into());
            for from in 0..haystack.len() {
                let rest = &haystack[from..];
                let expected = rest.windows(literal.len()).position(|w| w == literal);
                assert_eq!(terminator.find_in(rest), expected, "{literal:?} from {from}");
            }
        }
    }

    #[test]
    fn same_bytes_compares_every_byte() {
        let a = b"15/Nov/2023:14:00:00 +0000";
        for at in 0..a.len() {
            let mut b = *a;
            b[at] ^= 1;
            assert!(!same_bytes(a, &b), "byte {at}");
        }
        assert!(same_bytes(a, a) && same_bytes(b"abc", b"abc") && !same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"abcd"));
    }
}
