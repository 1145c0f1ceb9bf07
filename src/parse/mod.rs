//! Parse: one log line in, one [`Record`] (or a counted [`ParseError`]) out.
//!
//! Architecture invariant: this module does no IO, reads no clock and never allocates per line.
//! A [`Record`] borrows its text fields from the line; a [`ParseError`] is a small `Copy` value
//! that names the column and what was expected there, and [`Parser::explain`] turns it into
//! words only when a human will read it.

pub mod auto;
mod aws;
pub mod choice;
pub mod envoy;
mod haproxy;
pub mod haproxy_format;
mod json;
pub mod nginx;
mod patterns;
mod template;
pub mod time;
mod traefik;
#[cfg(test)]
mod vectors;

pub use auto::AUTO_SAMPLE_LINES;
pub use aws::{AwsKind, AwsLog};
pub use choice::{ChoiceError, Sample, build_parser, no_backend_message, recognise};
pub use haproxy::HaproxyLog;
pub use json::JsonFormat;
pub use patterns::{Pattern, PatternError, PatternSet};
pub use template::{CompileError, Template};
pub use traefik::TraefikClf;

/// One request, as the balancer logged it. Text fields borrow from the line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Record<'a> {
    /// Event time, Unix milliseconds UTC.
    pub timestamp_ms: i64,
    /// The server that produced the final response (the last entry of a retry list);
    /// `None` when the request never reached a backend (`-`).
    pub backend: Option<&'a [u8]>,
    /// The pool (upstream group) this line names, when the format carries one.
    pub pool: Option<&'a [u8]>,
    /// How many backends were tried: 1 for a plain request, more when the balancer retried,
    /// 0 when no backend was involved.
    pub attempts: u16,
    /// The server tried first, when the balancer retried and the log names it (nginx's
    /// `$upstream_addr` list): that attempt failed (refused, timed out, or an error the
    /// balancer passes on), so the server is still in rotation but not serving.
    pub first_attempt: Option<&'a [u8]>,
    /// Status sent to the client.
    pub status: Option<u16>,
    /// Status the final backend returned.
    pub upstream_status: Option<u16>,
    /// Total request time as the balancer measured it, in seconds.
    pub latency_s: Option<f64>,
    /// Time spent in the final backend, in seconds.
    pub upstream_latency_s: Option<f64>,
    /// Bytes sent to the client.
    pub bytes: Option<u64>,
    /// Request method, as logged.
    pub method: Option<&'a [u8]>,
    /// Request target, as logged (not decoded).
    pub path: Option<&'a [u8]>,
    /// Protocol from the request line (`HTTP/1.1`).
    pub protocol: Option<&'a [u8]>,
}

impl Record<'_> {
    /// Whether the client saw a server error, preferring the status sent to the client.
    pub fn is_server_error(&self) -> bool {
        matches!(self.status.or(self.upstream_status), Some(500..=599))
    }

    /// The latency to attribute to the backend: its own time when logged, else the total.
    pub fn backend_latency_s(&self) -> Option<f64> {
        self.upstream_latency_s.or(self.latency_s)
    }
}

/// Why a line did not parse. `Copy` and allocation-free: bad lines are normal input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the line where matching stopped.
    pub column: u32,
    /// Index of the format segment that failed (see [`Parser::explain`]).
    pub segment: u16,
    /// What went wrong there.
    pub kind: ParseErrorKind,
}

/// The kinds of [`ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The fixed text of the format was not found at this column.
    LiteralMismatch,
    /// The text that ends a field never appeared.
    MissingDelimiter,
    /// The timestamp field did not hold a timestamp in the expected layout.
    BadTimestamp,
    /// A numeric field (status, bytes, time) held something else.
    BadNumber,
    /// The format has no timestamp field, or it was empty.
    NoTimestamp,
    /// A valid line that is not a request (HAProxy's `Connect from`, an SSL handshake error):
    /// counted as `other`, not as unparsed.
    NotARequest,
    /// The format ended before the line did: its last field, which takes the rest of the
    /// line, holds text a value of its kind cannot (an address with spaces or quotes). A
    /// format pasted too short fits only in part.
    GoesOn,
}

/// A compiled line parser for one input. An enum rather than a trait object so the per-line
/// call is a direct, inlinable match.
#[derive(Debug, Clone)]
pub enum Parser {
    /// A compiled format string: nginx `log_format`, Envoy format, HAProxy `log-format`.
    Template(Template),
    /// HAProxy's built-in HTTP, HTTPS and TCP logs.
    Haproxy(HaproxyLog),
    /// AWS ALB or Classic ELB logs.
    Aws(AwsLog),
    /// Traefik's common (CLF) access log.
    Traefik(TraefikClf),
    /// One JSON object per line, with fields found by path.
    Json(JsonFormat),
    /// Several layouts one product writes (nginx-proxy-manager's proxy and redirect hosts,
    /// Envoy's default and Istio's), tried in turn.
    Variants(Variants),
}

/// Several templates tried in turn, starting with the one that matched last: a log nearly
/// always keeps one layout, so the usual cost is one attempt.
#[derive(Debug, Clone)]
pub struct Variants {
    templates: Vec<Template>,
    last_match: usize,
}

impl Variants {
    /// Tries the templates in order; at least one is required.
    pub fn new(templates: Vec<Template>) -> Option<Self> {
        (!templates.is_empty()).then_some(Variants { templates, last_match: 0 })
    }

    #[inline]
    fn parse<'a>(&mut self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        let error = match self.templates[self.last_match].parse(line) {
            Ok(record) => return Ok(record),
            Err(error) => error,
        };
        for index in 0..self.templates.len() {
            if index != self.last_match
                && let Ok(record) = self.templates[index].parse(line)
            {
                self.last_match = index;
                return Ok(record);
            }
        }
        Err(error)
    }

    fn first(&self) -> &Template {
        &self.templates[0]
    }
}

impl Parser {
    /// Parses one line (without its newline).
    #[inline]
    pub fn parse<'a>(&mut self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        match self {
            Parser::Template(template) => template.parse(line),
            Parser::Haproxy(log) => log.parse(line),
            Parser::Aws(log) => log.parse(line),
            Parser::Traefik(log) => log.parse(line),
            Parser::Json(format) => format.parse(line),
            Parser::Variants(variants) => variants.parse(line),
        }
    }

    /// Describes a parse error for a human: the field, the column and what was expected.
    pub fn explain(&self, error: &ParseError) -> String {
        match self {
            Parser::Template(template) => template.explain(error),
            Parser::Haproxy(log) => log.explain(error),
            Parser::Aws(log) => log.explain(error),
            Parser::Traefik(log) => log.explain(error),
            Parser::Json(format) => format.explain(error),
            // Errors come from the variant that matched last; the first explains well enough.
            Parser::Variants(variants) => variants.templates[variants.last_match].explain(error),
        }
    }

    /// Whether records from this parser carry their own pool name.
    pub fn has_pool_field(&self) -> bool {
        match self {
            Parser::Template(template) => template.has_pool_field(),
            Parser::Variants(variants) => variants.templates.iter().any(Template::has_pool_field),
            Parser::Json(format) => format.has_pool_field(),
            Parser::Haproxy(_) | Parser::Aws(_) | Parser::Traefik(_) => true,
        }
    }

    /// How much of a line the format describes (its number of fields); used to prefer the
    /// fuller of two formats that both match, like `main` over `combined` on a `main` log.
    pub fn specificity(&self) -> usize {
        match self {
            Parser::Template(template) => template.n_variables(),
            Parser::Variants(variants) => variants.first().n_variables(),
            Parser::Json(format) => format.n_fields(),
            Parser::Haproxy(_) => 16,
            Parser::Aws(_) => 17,
            // The Traefik tail is optional, so on a plain combined log it must not outrank
            // `combined` (8 variables); on a Traefik log it wins on the fields it fills.
            Parser::Traefik(_) => 7,
        }
    }

    /// Whether records from this parser can name a backend at all.
    pub fn has_backend_field(&self) -> bool {
        match self {
            Parser::Template(template) => template.has_backend_field(),
            Parser::Variants(variants) => {
                variants.templates.iter().any(Template::has_backend_field)
            }
            Parser::Json(format) => format.has_backend_field(),
            Parser::Haproxy(_) | Parser::Aws(_) | Parser::Traefik(_) => true,
        }
    }
}

/// Splits a request line into method, target and protocol. Anything that is not
/// `METHOD target [HTTP/x]` (an empty request, binary garbage) yields no fields at all.
#[allow(clippy::type_complexity)]
pub(crate) fn split_request(value: &[u8]) -> (Option<&[u8]>, Option<&[u8]>, Option<&[u8]>) {
    let Some(first_space) = memchr::memchr(b' ', value) else {
        return (None, None, None);
    };
    let method = &value[..first_space];
    if method.is_empty() || !method.iter().all(u8::is_ascii_alphabetic) {
        return (None, None, None);
    }
    let rest = &value[first_space + 1..];
    match memchr::memrchr(b' ', rest) {
        // `HTTP/1.1` as usual; Traefik's own tests also log a bare lowercase `http`.
        Some(last_space)
            if rest[last_space + 1..].get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"http")) =>
        {
            (Some(method), Some(&rest[..last_space]), Some(&rest[last_space + 1..]))
        }
        // HTTP/0.9 style: no protocol.
        None if !rest.is_empty() => (Some(method), Some(rest), None),
        _ => (None, None, None),
    }
}
