//! The nginx `log_format` compiler.
//!
//! nginx's format is whatever `log_format` the user wrote, so instead of shipping a fixed regex we
//! compile the user's directive into a list of segments: fixed text ("literals") and variables.
//! Matching walks the variables left to right. A variable's value runs up to the next literal,
//! found with `memchr`'s SIMD searchers; no regex, no backtracking, no allocation.
//!
//! Two nginx habits need care:
//! - `$upstream_*` variables hold lists (`a:80, b:80 : c:80`) whose separators contain spaces, so
//!   a variable followed by a space does not end at a space that belongs to the list.
//! - With `escape=json` a quoted value can contain `\"`; a quote preceded by an odd number of
//!   backslashes is therefore never taken as the end of a value. (With the default escaping a
//!   quote is written `\x22` and a backslash `\x5C`, so the check never triggers there.)

use std::collections::BTreeMap;

use super::time::{parse_epoch_seconds, parse_iso8601, parse_time_local};
use super::{ParseError, ParseErrorKind, Record, split_request};

/// What a variable feeds into the [`Record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    RequestMethod,
    RequestUri,
    ServerProtocol,
    Status,
    BodyBytesSent,
    BytesSent,
    RequestTime,
    UpstreamAddr,
    UpstreamStatus,
    UpstreamResponseTime,
    Pool,
    /// A known variable skewtail does not use; a list-valued one when `list` is set.
    Ignored {
        list: bool,
    },
}

impl Field {
    fn is_list(self) -> bool {
        matches!(
            self,
            Field::UpstreamAddr
                | Field::UpstreamStatus
                | Field::UpstreamResponseTime
                | Field::Ignored { list: true }
        )
    }

    fn is_timestamp(self) -> bool {
        matches!(self, Field::TimeLocal | Field::TimeIso8601 | Field::Msec)
    }
}

/// Exact variable names that feed the record or are known and skipped.
const MAPPED_VARIABLES: &[(&str, Field)] = &[
    ("time_local", Field::TimeLocal),
    ("time_iso8601", Field::TimeIso8601),
    ("msec", Field::Msec),
    ("request", Field::Request),
    ("request_method", Field::RequestMethod),
    ("request_uri", Field::RequestUri),
    ("server_protocol", Field::ServerProtocol),
    ("status", Field::Status),
    ("body_bytes_sent", Field::BodyBytesSent),
    ("bytes_sent", Field::BytesSent),
    ("request_time", Field::RequestTime),
    ("upstream_addr", Field::UpstreamAddr),
    ("upstream_status", Field::UpstreamStatus),
    ("upstream_response_time", Field::UpstreamResponseTime),
    // ingress-nginx names the Kubernetes service here; proxy_pass's host is the upstream group.
    ("proxy_upstream_name", Field::Pool),
    ("proxy_host", Field::Pool),
];

/// Known nginx (and ingress-nginx) variables that skewtail reads past without using.
const SKIPPED_VARIABLES: &[&str] = &[
    "args",
    "binary_remote_addr",
    "connection",
    "connection_requests",
    "connection_time",
    "content_length",
    "content_type",
    "document_root",
    "document_uri",
    "gzip_ratio",
    "host",
    "hostname",
    "https",
    "is_args",
    "limit_rate",
    "nginx_version",
    "pid",
    "pipe",
    "proxy_add_x_forwarded_for",
    "proxy_alternative_upstream_name",
    "proxy_port",
    "proxy_protocol_addr",
    "proxy_protocol_port",
    "proxy_protocol_server_addr",
    "proxy_protocol_server_port",
    "query_string",
    "realip_remote_addr",
    "realip_remote_port",
    "realpath_root",
    "remote_addr",
    "remote_port",
    "remote_user",
    "req_id",
    "request_body",
    "request_completion",
    "request_filename",
    "request_id",
    "request_length",
    "scheme",
    "server_addr",
    "server_name",
    "server_port",
    "ssl_cipher",
    "ssl_client_s_dn",
    "ssl_client_verify",
    "ssl_early_data",
    "ssl_protocol",
    "ssl_server_name",
    "ssl_session_id",
    "ssl_session_reused",
    "tcpinfo_rcv_space",
    "tcpinfo_rtt",
    "tcpinfo_rttvar",
    "tcpinfo_snd_cwnd",
    "the_real_ip",
    "uri",
    "upstream_cache_status",
    "namespace",
    "ingress_name",
    "service_name",
    "service_port",
];

/// Variable families: any name with one of these prefixes is a known, skipped variable.
const SKIPPED_PREFIXES: &[&str] =
    &["http_", "sent_http_", "sent_trailer_", "cookie_", "arg_", "geoip_", "jwt_claim_"];

/// `$upstream_*` variables that carry one item per attempt, skipped but list-aware.
const SKIPPED_UPSTREAM_LISTS: &[&str] = &[
    "upstream_bytes_received",
    "upstream_bytes_sent",
    "upstream_connect_time",
    "upstream_header_time",
    "upstream_queue_time",
    "upstream_response_length",
    "upstream_first_byte_time",
    "upstream_session_time",
];

/// `$upstream_*` families that also carry one item per attempt.
const SKIPPED_UPSTREAM_PREFIXES: &[&str] =
    &["upstream_http_", "upstream_cookie_", "upstream_trailer_"];

fn lookup_variable(name: &str, custom: &[String]) -> Option<Field> {
    if let Some((_, field)) = MAPPED_VARIABLES.iter().find(|(known, _)| *known == name) {
        return Some(*field);
    }
    if SKIPPED_UPSTREAM_LISTS.contains(&name)
        || SKIPPED_UPSTREAM_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        return Some(Field::Ignored { list: true });
    }
    if SKIPPED_VARIABLES.contains(&name)
        || SKIPPED_PREFIXES.iter().any(|p| name.starts_with(p))
        || custom.iter().any(|c| c == name)
    {
        return Some(Field::Ignored { list: false });
    }
    None
}

fn closest_known_variable(name: &str) -> Option<&'static str> {
    MAPPED_VARIABLES
        .iter()
        .map(|(known, _)| *known)
        .chain(SKIPPED_VARIABLES.iter().copied())
        .chain(SKIPPED_UPSTREAM_LISTS.iter().copied())
        .map(|known| (strsim::levenshtein(name, known), known))
        .filter(|(distance, _)| *distance <= 3)
        .min()
        .map(|(_, known)| known)
}

/// Why a `log_format` could not be compiled. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A `$variable` nginx (as far as skewtail knows) does not have.
    #[error(
        "unknown variable `${name}` at column {column} of the log_format{hint}; if it comes from a \
         `map` or `set` in your nginx config, list it in `custom_variables` for this input"
    )]
    UnknownVariable {
        /// The variable's name, without `$`.
        name: String,
        /// 1-based column in the log_format text.
        column: usize,
        /// ", did you mean `$x`?" or empty.
        hint: String,
    },
    /// Two variables with nothing between them cannot be told apart.
    #[error(
        "`${first}` and `${second}` follow each other with no text between them at column \
         {column}, so skewtail cannot tell where one ends; nginx logs them glued together too - \
         put a separator (a space, quote or `|`) between them in the log_format"
    )]
    AdjacentVariables {
        /// The first variable.
        first: String,
        /// The second variable.
        second: String,
        /// 1-based column of the second one.
        column: usize,
    },
    /// Without a time variable there is no event time to window on.
    #[error(
        "the log_format has no time variable; add `$time_local`, `$time_iso8601` or `$msec` to it"
    )]
    NoTimestamp,
    /// A `${` without its `}`, or a `$` with no name.
    #[error("malformed variable at column {column} of the log_format: {problem}")]
    Malformed {
        /// 1-based column.
        column: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// The format is empty.
    #[error("the log_format is empty; pass the text of your nginx `log_format` directive")]
    Empty,
    /// A field map names a record field that does not exist.
    #[error(
        "`{variable}` is mapped to `{field}`, which is not a record field; use backend, pool, \
         status, upstream_status, latency, upstream_latency, bytes or ignore"
    )]
    UnknownRecordField {
        /// The variable.
        variable: String,
        /// The unknown field name.
        field: String,
    },
}

#[derive(Debug, Clone)]
enum Segment {
    Literal { text: Box<[u8]> },
    Variable { name: Box<str>, field: Field },
}

/// A compiled nginx `log_format`.
#[derive(Debug, Clone)]
pub struct NginxFormat {
    /// The format as written, for error messages.
    segments: Vec<Segment>,
    /// The literal the format starts with (often empty).
    prefix: Box<[u8]>,
    /// The variables in order, each with the literal that ends it: the per-line loop walks
    /// this one flat array.
    steps: Vec<Step>,
    /// The first time variable, as (step, segment), when everything before it is skipped
    /// text (remote address, user...). Lines whose prefix differs from the format (a vhost or
    /// an X-Forwarded-For list in front, a missing ident column) are then re-synchronised on
    /// the literal just before the time, as robust combined-log parsers do.
    resync_anchor: Option<(usize, usize)>,
    has_pool: bool,
    has_backend: bool,
    time_cache: TimeCache,
}

/// One variable and what ends it.
#[derive(Debug, Clone)]
struct Step {
    field: Field,
    is_list: bool,
    is_timestamp: bool,
    /// The literal after the variable; empty when the variable runs to the end of the line.
    terminator: Box<[u8]>,
    /// The variable's index in `segments`, for error messages.
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
    fn parse(&mut self, field: Field, value: &[u8]) -> Option<i64> {
        if value.len() == self.len && self.text[..value.len()] == *value {
            return Some(self.unix_ms);
        }
        let ms = match field {
            Field::TimeLocal => parse_time_local(value),
            Field::TimeIso8601 => parse_iso8601(value),
            _ => parse_epoch_seconds(value),
        }?;
        if value.len() <= self.text.len() {
            self.text[..value.len()].copy_from_slice(value);
            self.len = value.len();
            self.unix_ms = ms;
        }
        Some(ms)
    }
}

/// Turns the text a user may paste (a whole `log_format name escape=json '...' '...';`
/// directive, a run of quoted strings, or the bare format) into the bare format.
fn unwrap_directive(text: &str) -> String {
    let mut rest = text.trim();
    if let Some(after) = rest.strip_prefix("log_format") {
        // Drop the format name and any `escape=`/`if=` parameters: everything before the
        // first quote.
        rest = after.find(['\'', '"']).map_or(after, |i| &after[i..]);
    }
    let rest = rest.trim().trim_end_matches(';').trim();
    if !rest.starts_with(['\'', '"']) {
        return rest.to_string();
    }
    // A run of nginx-quoted strings: concatenate their contents.
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars().peekable();
    while let Some(quote) = chars.next() {
        if quote != '\'' && quote != '"' {
            if quote.is_whitespace() {
                continue;
            }
            // Not a quoted run after all: use the text verbatim.
            return rest.to_string();
        }
        loop {
            match chars.next() {
                None => return rest.to_string(),
                Some(c) if c == quote => break,
                Some('\\') => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c @ ('\'' | '"' | '\\')) => out.push(c),
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                    None => out.push('\\'),
                },
                Some(c) => out.push(c),
            }
        }
    }
    out
}

/// Parses an unsigned decimal number (`0.050`, `12`) without allocation.
fn parse_decimal(bytes: &[u8]) -> Option<f64> {
    let (whole, fraction) = match memchr::memchr(b'.', bytes) {
        Some(dot) => (&bytes[..dot], &bytes[dot + 1..]),
        None => (bytes, &b""[..]),
    };
    if whole.is_empty() || whole.len() > 15 || fraction.len() > 9 {
        return None;
    }
    let mut value = 0u64;
    for &b in whole {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    let mut frac = 0u64;
    for &b in fraction {
        if !b.is_ascii_digit() {
            return None;
        }
        frac = frac * 10 + u64::from(b - b'0');
    }
    const SCALE: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
    #[allow(clippy::cast_precision_loss)] // whole and fraction are capped at 15 and 9 digits
    Some(value as f64 + frac as f64 / SCALE[fraction.len()])
}

fn parse_uint(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    let mut value = 0u64;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    Some(value)
}

/// nginx writes `-` for an unset variable (and `""` under `escape=json`).
fn is_unset(value: &[u8]) -> bool {
    value.is_empty() || value == b"-"
}

/// The last item of an upstream list (`a, b : c` gives `c`) and the number of items.
#[inline]
fn last_list_item(value: &[u8]) -> (&[u8], u16) {
    // Nearly every request has one attempt: no separator at all.
    if memchr::memchr2(b',', b' ', value).is_none() {
        return (value, 1);
    }
    let mut n_items: u16 = 1;
    let mut last_start = 0;
    for (i, &b) in value.iter().enumerate() {
        // `,` separates attempts within a group; ` : ` separates groups after an internal
        // redirect. A `:` inside `ip:port` or `unix:/path` has no space before it.
        let is_separator = b == b',' || (b == b':' && i > 0 && value[i - 1] == b' ');
        if is_separator {
            n_items = n_items.saturating_add(1);
            last_start = i + 1;
        }
    }
    (value[last_start..].trim_ascii(), n_items)
}

impl NginxFormat {
    /// Compiles a `log_format`. `custom_variables` names variables defined by the user's own
    /// `map`/`set` blocks, which are then accepted and skipped.
    pub fn compile(log_format: &str, custom_variables: &[String]) -> Result<Self, CompileError> {
        Self::compile_with_fields(log_format, custom_variables, &BTreeMap::new())
    }

    /// Compiles a `log_format` in which some variables (the user's own `set`/`map` ones, say)
    /// feed record fields: `field_map` maps a variable name to `backend`, `pool`, `status`,
    /// `upstream_status`, `latency` or `upstream_latency` (seconds), `bytes`, or `ignore`.
    pub fn compile_with_fields(
        log_format: &str,
        custom_variables: &[String],
        field_map: &BTreeMap<String, String>,
    ) -> Result<Self, CompileError> {
        let mut mapped = Vec::new();
        for (variable, record_field) in field_map {
            let field = match record_field.as_str() {
                "backend" => Field::UpstreamAddr,
                "pool" => Field::Pool,
                "status" => Field::Status,
                "upstream_status" => Field::UpstreamStatus,
                "latency" => Field::RequestTime,
                "upstream_latency" => Field::UpstreamResponseTime,
                "bytes" => Field::BodyBytesSent,
                "ignore" => Field::Ignored { list: false },
                other => {
                    return Err(CompileError::UnknownRecordField {
                        variable: variable.clone(),
                        field: other.to_string(),
                    });
                }
            };
            mapped.push((variable.as_str(), field));
        }
        let text = unwrap_directive(log_format);
        if text.is_empty() {
            return Err(CompileError::Empty);
        }
        let bytes = text.as_bytes();
        let mut segments: Vec<Segment> = Vec::new();
        let mut literal: Vec<u8> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                literal.push(bytes[i]);
                i += 1;
                continue;
            }
            let column = i + 1;
            let (name, next) = if bytes.get(i + 1) == Some(&b'{') {
                let close = bytes[i + 2..].iter().position(|&b| b == b'}').ok_or(
                    CompileError::Malformed { column, problem: "`${` has no closing `}`" },
                )?;
                (&text[i + 2..i + 2 + close], i + 3 + close)
            } else {
                let len = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count();
                (&text[i + 1..i + 1 + len], i + 1 + len)
            };
            if name.is_empty() {
                return Err(CompileError::Malformed {
                    column,
                    problem: "`$` is not followed by a variable name",
                });
            }
            let own =
                mapped.iter().find(|(variable, _)| *variable == name).map(|(_, field)| *field);
            let field =
                own.or_else(|| lookup_variable(name, custom_variables)).ok_or_else(|| {
                    CompileError::UnknownVariable {
                        name: name.to_string(),
                        column,
                        hint: closest_known_variable(name)
                            .map(|k| format!(", did you mean `${k}`?"))
                            .unwrap_or_default(),
                    }
                })?;
            if literal.is_empty() {
                if let Some(Segment::Variable { name: first, .. }) = segments.last() {
                    return Err(CompileError::AdjacentVariables {
                        first: first.to_string(),
                        second: name.to_string(),
                        column,
                    });
                }
            } else {
                segments.push(Self::literal_segment(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Variable { name: name.into(), field });
            i = next;
        }
        if !literal.is_empty() {
            segments.push(Self::literal_segment(literal));
        }
        let fields = || {
            segments.iter().filter_map(|s| {
                if let Segment::Variable { field, .. } = s { Some(*field) } else { None }
            })
        };
        if !fields().any(Field::is_timestamp) {
            return Err(CompileError::NoTimestamp);
        }
        let has_pool = fields().any(|f| f == Field::Pool);
        let has_backend = fields().any(|f| f == Field::UpstreamAddr);
        let resync_anchor = segments
            .iter()
            .position(|s| matches!(s, Segment::Variable { field, .. } if field.is_timestamp()))
            .filter(|&anchor| {
                anchor > 1
                    && matches!(segments[anchor - 1], Segment::Literal { .. })
                    && segments[..anchor].iter().all(|s| {
                        matches!(
                            s,
                            Segment::Literal { .. }
                                | Segment::Variable { field: Field::Ignored { .. }, .. }
                        )
                    })
            });
        let prefix = match segments.first() {
            Some(Segment::Literal { text }) => text.clone(),
            _ => Box::default(),
        };
        #[allow(clippy::cast_possible_truncation)] // formats have far fewer than 65536 segments
        let steps: Vec<Step> = segments
            .iter()
            .enumerate()
            .filter_map(|(index, segment)| match segment {
                Segment::Variable { field, .. } => Some(Step {
                    field: *field,
                    is_list: field.is_list(),
                    is_timestamp: field.is_timestamp(),
                    terminator: match segments.get(index + 1) {
                        Some(Segment::Literal { text }) => text.clone(),
                        _ => Box::default(),
                    },
                    segment: index as u16,
                }),
                Segment::Literal { .. } => None,
            })
            .collect();
        let resync_anchor = resync_anchor.and_then(|segment| {
            steps
                .iter()
                .position(|step| usize::from(step.segment) == segment)
                .map(|step| (step, segment))
        });
        Ok(NginxFormat {
            segments,
            prefix,
            steps,
            resync_anchor,
            has_pool,
            has_backend,
            time_cache: TimeCache { text: [0; 40], len: usize::MAX, unix_ms: 0 },
        })
    }

    fn literal_segment(text: Vec<u8>) -> Segment {
        Segment::Literal { text: text.into_boxed_slice() }
    }

    /// Whether the format carries a pool name (`$proxy_upstream_name`, `$proxy_host`).
    pub fn has_pool_field(&self) -> bool {
        self.has_pool
    }

    /// How many variables the format has.
    pub fn n_variables(&self) -> usize {
        self.steps.len()
    }

    /// Whether the format names the backend (`$upstream_addr`).
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
        if !line.starts_with(&self.prefix) {
            return Err(ParseError {
                column: 0,
                segment: 0,
                kind: ParseErrorKind::LiteralMismatch,
            });
        }
        match self.match_steps(line, self.prefix.len(), 0, &mut record) {
            Ok(end) => Ok((record, end)),
            Err(error) => match self.resync_anchor {
                Some((step, segment)) if usize::from(error.segment) < segment => {
                    self.resync(line, step, error)
                }
                _ => Err(error),
            },
        }
    }

    /// Retries a line whose prefix did not match by searching for the literal before the time
    /// variable, at most a few times.
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
            let Some(at) = find_literal(&line[from..], &literal) else {
                return Err(error);
            };
            let start = from + at + literal.len();
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
            let end = if step.terminator.is_empty() {
                line.len()
            } else {
                find_value_end(&line[pos..], &step.terminator, step.is_list)
                    .ok_or_else(|| error(ParseErrorKind::MissingDelimiter, pos))?
                    + pos
            };
            let value = &line[pos..end];
            if step.is_timestamp {
                record.timestamp_ms = time_cache
                    .parse(step.field, value)
                    .ok_or_else(|| error(ParseErrorKind::BadTimestamp, pos))?;
                has_time = true;
            } else {
                apply_field(step.field, value, record)
                    .ok_or_else(|| error(ParseErrorKind::BadNumber, pos))?;
            }
            pos = end + step.terminator.len();
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
            Some(Segment::Literal { text, .. }) => {
                format!("the text `{}`", String::from_utf8_lossy(text))
            }
            Some(Segment::Variable { name, .. }) => format!("`${name}`"),
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
                "column {column}: {} is not a timestamp in nginx's layout",
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
/// quotes escaped with a backslash and, for list variables, the spaces inside `, ` and ` : `.
#[inline]
fn find_value_end(rest: &[u8], literal: &[u8], is_list: bool) -> Option<usize> {
    let mut from = 0;
    loop {
        let at = from + find_literal(&rest[from..], literal)?;
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

/// Finds a format literal in a line. Literals are short (`" "`, ` uct="`) and values are
/// short, so `memchr` for the first byte and a direct comparison beat a general substring
/// search, whose set-up cost dominates on haystacks this small.
#[inline]
fn find_literal(haystack: &[u8], literal: &[u8]) -> Option<usize> {
    let (&first, tail) = literal.split_first()?;
    let mut from = 0;
    while let Some(at) = find_byte(first, &haystack[from..]) {
        let at = from + at;
        let after = &haystack[at + 1..];
        if after.len() >= tail.len() && after.iter().zip(tail).all(|(a, b)| a == b) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `memchr` after a plain scan of the first bytes: most values (a status, a time, an
/// address) end within a few bytes, where a SIMD search's set-up costs more than it saves.
#[inline]
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

/// Stores one variable's value into the record. `None` means the value is malformed.
fn apply_field<'a>(field: Field, value: &'a [u8], record: &mut Record<'a>) -> Option<()> {
    match field {
        Field::Request => {
            (record.method, record.path, record.protocol) = split_request(value);
        }
        Field::RequestMethod => record.method = (!is_unset(value)).then_some(value),
        Field::RequestUri => record.path = (!is_unset(value)).then_some(value),
        Field::ServerProtocol => record.protocol = (!is_unset(value)).then_some(value),
        Field::Status => record.status = parse_status(value)?,
        Field::BodyBytesSent => record.bytes = parse_optional(value, parse_uint)?,
        Field::BytesSent => {
            // $body_bytes_sent is preferred when both are logged.
            if record.bytes.is_none() {
                record.bytes = parse_optional(value, parse_uint)?;
            }
        }
        Field::RequestTime => record.latency_s = parse_optional(value, parse_decimal)?,
        Field::UpstreamAddr => {
            if is_unset(value) {
                record.backend = None;
                record.attempts = 0;
            } else {
                let (last, n_items) = last_list_item(value);
                record.backend = (!is_unset(last)).then_some(last);
                record.attempts = n_items;
            }
        }
        Field::UpstreamStatus => record.upstream_status = parse_status(last_list_item(value).0)?,
        Field::UpstreamResponseTime => {
            record.upstream_latency_s = parse_optional(last_list_item(value).0, parse_decimal)?;
        }
        Field::Pool => record.pool = (!is_unset(value)).then_some(value),
        Field::Ignored { .. } | Field::TimeLocal | Field::TimeIso8601 | Field::Msec => {}
    }
    Some(())
}

/// `Some(None)` for an unset value, `None` for a malformed one.
fn parse_optional<T>(value: &[u8], parse: impl Fn(&[u8]) -> Option<T>) -> Option<Option<T>> {
    if is_unset(value) { Some(None) } else { parse(value).map(Some) }
}

fn parse_status(value: &[u8]) -> Option<Option<u16>> {
    #[allow(clippy::cast_possible_truncation)] // at most 3 digits
    parse_optional(value, |v| (v.len() == 3).then(|| parse_uint(v)).flatten().map(|s| s as u16))
}

#[cfg(test)]
mod tests;
