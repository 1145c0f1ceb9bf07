//! What a placeholder feeds: the record fields, how times and durations are written, and
//! storing a matched value into the record.

use super::number::{is_unset, last_list_item, list_ends, parse_decimal, parse_uint};
use super::segments::CompileError;
use crate::parse::time::{
    parse_epoch_seconds, parse_haproxy_date, parse_iso8601, parse_time_local,
};
use crate::parse::{Record, split_request};

/// How a timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeLayout {
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
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "clf" => TimeLayout::Clf,
            "iso8601" | "rfc3339" => TimeLayout::Iso8601,
            "haproxy" => TimeLayout::Haproxy,
            _ => TimeLayout::Epoch(TimeUnit::from_name(name.strip_prefix("epoch_")?)?),
        })
    }

    /// Unix milliseconds from a timestamp's text.
    pub(crate) fn parse(self, value: &[u8]) -> Option<i64> {
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
pub(crate) enum TimeUnit {
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
    pub(crate) fn from_name(name: &str) -> Option<Self> {
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
    pub(crate) fn parse_seconds(self, value: &[u8]) -> Option<f64> {
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
pub(crate) enum Field {
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
    pub(super) fn is_list(self) -> bool {
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
    pub(crate) fn from_spec(placeholder: &str, spec: &str) -> Result<Self, CompileError> {
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

/// HAProxy's pseudo-servers: the request was answered without reaching a server.
impl Field {
    /// Where a value of this field that runs to the end of the line goes past what the field
    /// can hold: a name (backend, pool) holds no quote and no space but those of a list of
    /// attempts (`a, b : c`). `None`: it can hold it all (other fields are checked by their
    /// own parsing).
    pub(super) fn overrun(self, value: &[u8]) -> Option<usize> {
        if !matches!(self, Field::Backend | Field::BackendServer | Field::Pool) {
            return None;
        }
        let list = self.is_list();
        value.iter().enumerate().find_map(|(at, &byte)| {
            let in_list_separator = list
                && byte == b' '
                && (value[..at].ends_with(b",")
                    || value[at..].starts_with(b" : ")
                    || value[..at].ends_with(b" :"));
            (byte == b'"' || (byte == b' ' && !in_list_separator)).then_some(at)
        })
    }
}

fn is_pseudo_server(server: &[u8]) -> bool {
    server.starts_with(b"<")
}

/// Stores one placeholder's value into the record. `None` means the value is malformed.
#[inline(always)]
pub(crate) fn apply_field<'a>(
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
