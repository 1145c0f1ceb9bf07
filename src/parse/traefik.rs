//! Traefik's default access log ("common", CLF-like):
//!
//! ```text
//! ClientHost - ClientUsername [02/Jan/2006:15:04:05 -0700] "METHOD path PROTOCOL" status size
//! "Referer" "User-Agent" RequestCount "RouterName" "ServiceURL" <duration>ms
//! ```
//!
//! The head up to the user agent is nginx's `combined`, so it is read by the compiled nginx
//! format. The tail is read from the right, because the router name may hold spaces and
//! quotes are not always balanced in real logs: the duration is the last token, the service URL
//! (the backend) the quoted or bare value before it, and the router (the pool) what remains
//! after the request count. `genericCLF` lines stop after the user agent.

use super::{ParseError, Record, Template};

const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

/// The Traefik CLF parser.
#[derive(Debug, Clone)]
pub struct TraefikClf {
    head: Template,
}

impl Default for TraefikClf {
    fn default() -> Self {
        Self::new()
    }
}

fn dash_to_none(value: &[u8]) -> Option<&[u8]> {
    (!value.is_empty() && value != b"-").then_some(value)
}

fn unquote(value: &[u8]) -> &[u8] {
    value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value)
}

/// `123ms` in seconds.
fn parse_duration_ms(token: &[u8]) -> Option<f64> {
    let digits = token.strip_suffix(b"ms")?;
    let ms: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)] // durations are far below 2^52 ms
    Some(ms as f64 / 1000.0)
}

impl TraefikClf {
    /// The parser.
    pub fn new() -> Self {
        let head = super::nginx::compile(COMBINED, &[])
            .unwrap_or_else(|e| unreachable!("the combined format compiles: {e}"));
        TraefikClf { head }
    }

    /// Parses one line.
    pub fn parse<'a>(&mut self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        let (mut record, end) = self.head.parse_with_end(line)?;
        let tail = line[end..].trim_ascii();
        // `count "router" "url" 12ms`, read from the right.
        let Some(last_space) = memchr::memrchr(b' ', tail) else {
            return Ok(record); // genericCLF, or a tail with one token: nothing to read
        };
        let Some(latency_s) = parse_duration_ms(&tail[last_space + 1..]) else {
            return Ok(record);
        };
        record.latency_s = Some(latency_s);
        let rest = tail[..last_space].trim_ascii_end();
        let url_start = if rest.ends_with(b"\"") {
            memchr::memrchr(b'"', &rest[..rest.len() - 1]).unwrap_or(0)
        } else {
            memchr::memrchr(b' ', rest).map_or(0, |space| space + 1)
        };
        record.backend = dash_to_none(unquote(&rest[url_start..]));
        record.attempts = u16::from(record.backend.is_some());
        let before_url = rest[..url_start].trim_ascii_end();
        if let Some(count_end) = memchr::memchr(b' ', before_url) {
            record.pool = dash_to_none(unquote(before_url[count_end + 1..].trim_ascii()));
        }
        Ok(record)
    }

    /// Describes a [`ParseError`] for a human.
    pub fn explain(&self, error: &ParseError) -> String {
        self.head.explain(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::vectors::check_vector_file;

    #[test]
    fn traefik_clf_conformance_vectors() {
        let mut parser = crate::parse::Parser::Traefik(TraefikClf::new());
        let n_checked = check_vector_file("traefik_clf.jsonl", &mut parser, |expect| {
            if let Some(router) = expect.get("router").cloned() {
                expect.insert("upstream_name".into(), router);
            }
        });
        assert_eq!(n_checked, 18);
    }

    #[test]
    fn generic_clf_has_no_backend() {
        let record = TraefikClf::new().parse(br#"10.0.0.1 - Client [10/Nov/2009:23:00:00 +0000] "GET /foo http" 123 132 "referer" "agent""#).unwrap();
        assert_eq!((record.backend, record.pool, record.latency_s), (None, None, None));
        assert_eq!(record.protocol, Some(&b"http"[..]));
    }
}
