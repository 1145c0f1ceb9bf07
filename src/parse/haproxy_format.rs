//! The HAProxy `log-format` front end: turns a custom `log-format` string into [`Template`]
//! segments.
//!
//! HAProxy writes a field as `%alias` (`%ST`, `%Ta`), optionally with flags (`%{+Q}r` quotes the
//! value), or a sample expression `%[...]`. Timers are milliseconds and `-1` when a phase was
//! never reached; `+` marks a lower bound. The `%b/%s` pair is the backend identity, the same
//! `backend/server` token as in the built-in layouts, and `%b` is the pool. Lines may carry a
//! syslog header in front; the engine re-synchronises on the literal before the date.

use super::template::{
    CompileError, Field, Options, Template, TimeLayout, TimeUnit, split_placeholders,
};

/// Aliases that feed the record.
const MAPPED_ALIASES: &[(&str, Field)] = &[
    ("t", Field::Timestamp(TimeLayout::Haproxy)),
    ("tr", Field::Timestamp(TimeLayout::Haproxy)),
    ("T", Field::Timestamp(TimeLayout::Clf)),
    ("trg", Field::Timestamp(TimeLayout::Clf)),
    ("Tl", Field::Timestamp(TimeLayout::Clf)),
    ("trl", Field::Timestamp(TimeLayout::Clf)),
    ("Ts", Field::Timestamp(TimeLayout::Epoch(TimeUnit::Seconds))),
    ("Ta", Field::Latency { unit: TimeUnit::Millis, weak: false }),
    // The total session time stands in when the active time is not logged (tcplog).
    ("Tt", Field::Latency { unit: TimeUnit::Millis, weak: true }),
    ("Tr", Field::UpstreamLatency(TimeUnit::Millis)),
    ("ST", Field::Status),
    ("B", Field::Bytes { weak: false }),
    ("b", Field::Pool),
    ("s", Field::Backend),
    ("rc", Field::Retries),
    ("r", Field::Request),
    ("HM", Field::Method),
    ("HU", Field::Path),
    ("HP", Field::Path),
    ("HV", Field::Protocol),
];

/// Documented aliases skewtail reads past.
const SKIPPED_ALIASES: &[&str] = &[
    "CC", "CS", "H", "HPO", "HQ", "ID", "TR", "Tc", "Td", "Th", "Ti", "Tq", "Tu", "Tw", "U", "ac",
    "bc", "bi", "bp", "bq", "ci", "cp", "f", "fc", "fi", "fp", "ft", "hr", "hrl", "hs", "hsl",
    "lc", "ms", "pid", "rt", "sc", "si", "sp", "sq", "sslc", "sslv", "ts", "tsc",
];

fn closest_alias(name: &str) -> Option<&'static str> {
    MAPPED_ALIASES
        .iter()
        .map(|(alias, _)| *alias)
        .chain(SKIPPED_ALIASES.iter().copied())
        .filter(|alias| alias.eq_ignore_ascii_case(name) || strsim::levenshtein(alias, name) <= 1)
        .min_by_key(|alias| (!alias.eq_ignore_ascii_case(name), strsim::levenshtein(alias, name)))
}

/// Turns what a user may paste (`log-format "..."`, a quoted string, or `\ `-escaped spaces as
/// in haproxy.cfg) into the bare format.
fn unwrap_directive(text: &str) -> String {
    let mut rest = text.trim();
    if let Some(after) = rest.strip_prefix("log-format") {
        rest = after.trim();
    }
    if let Some(inner) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        rest = inner;
    }
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(next @ (' ' | '"' | '\\' | '#'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Compiles a HAProxy `log-format` string.
pub fn compile(log_format: &str) -> Result<Template, CompileError> {
    let text = unwrap_directive(log_format);
    if text.is_empty() {
        return Err(CompileError::Empty);
    }
    let bytes = text.as_bytes();
    let segments = split_placeholders(&text, b'%', |segments, start| {
        let column = start + 1;
        let mut pos = start + 1;
        if bytes.get(pos) == Some(&b'%') {
            segments.literal(b"%");
            return Ok(pos + 1);
        }
        let mut quoted = false;
        if bytes.get(pos) == Some(&b'{') {
            let close = memchr::memchr(b'}', &bytes[pos..])
                .ok_or(CompileError::Malformed { column, problem: "`%{` has no closing `}`" })?;
            quoted = text[pos + 1..pos + close].split(',').any(|flag| flag == "+Q");
            pos += close + 1;
        }
        let (name, field, end) = if bytes.get(pos) == Some(&b'[') {
            // A sample expression; brackets may nest (`%[req.hdr(host),lower]`).
            let mut depth = 0usize;
            let close = bytes[pos..]
                .iter()
                .position(|&b| {
                    depth = match b {
                        b'[' => depth + 1,
                        b']' => depth - 1,
                        _ => depth,
                    };
                    depth == 0
                })
                .ok_or(CompileError::Malformed { column, problem: "`%[` has no closing `]`" })?;
            (&text[start..=pos + close], Field::Ignored { list: false }, pos + close + 1)
        } else {
            let len = bytes[pos..].iter().take_while(|b| b.is_ascii_alphabetic()).count();
            let alias = &text[pos..pos + len];
            if alias.is_empty() {
                return Err(CompileError::Malformed {
                    column,
                    problem: "`%` is not followed by an alias or `[`; write `%%` for a percent sign",
                });
            }
            let field = MAPPED_ALIASES
                .iter()
                .find(|(known, _)| *known == alias)
                .map(|(_, field)| *field)
                .or_else(|| SKIPPED_ALIASES.contains(&alias).then_some(Field::Ignored { list: false }))
                .ok_or_else(|| CompileError::UnknownVariable {
                    kind: "log-format alias",
                    name: format!("%{alias}"),
                    column,
                    hint: closest_alias(alias).map(|a| format!(", did you mean `%{a}`?")).unwrap_or_default(),
                    advice: "see the table of aliases in HAProxy's configuration manual, section 8.2.6",
                })?;
            let end = pos + len;
            // `%b/%s` is one token, `backend/server`, as in HAProxy's own layouts.
            if alias == "b"
                && !quoted
                && text[end..].starts_with("/%s")
                && !text[end + 3..].starts_with(|c: char| c.is_ascii_alphabetic())
            {
                (&text[start..end + 3], Field::BackendServer, end + 3)
            } else {
                (&text[start..end], field, end)
            }
        };
        if quoted {
            segments.literal(b"\"");
        }
        segments.variable(name, field, column)?;
        if quoted {
            segments.literal(b"\"");
        }
        Ok(end)
    })?;
    Template::from_segments(
        segments,
        Options { cut_final_quote: true, time_suggestion: "`%tr`, `%t`, `%T` or `%Ts`" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `option httplog`, as HAProxy's manual defines it.
    const HTTPLOG: &str = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r";
    /// The same without captured headers: HAProxy drops `%hr %hs` when nothing is captured.
    const HTTPLOG_NO_CAPTURES: &str = "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %{+Q}r";

    #[test]
    fn the_httplog_format_compiles_and_reads_its_lines() {
        let mut template = compile(HTTPLOG).unwrap();
        assert!(template.has_pool_field() && template.has_backend_field());
        let line = br#"10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/1 0/0 {1wt.eu} {} "GET /index.html HTTP/1.1""#;
        let record = template.parse(line).unwrap();
        assert_eq!(record.backend, Some(&b"static/srv1"[..]));
        assert_eq!(record.pool, Some(&b"static"[..]));
        assert_eq!(record.attempts, 2);
        assert_eq!((record.status, record.bytes), (Some(200), Some(2750)));
        assert_eq!((record.upstream_latency_s, record.latency_s), (Some(0.069), Some(0.109)));
        assert_eq!(record.path, Some(&b"/index.html"[..]));
        // A syslog header in front, `<NOSRV>`, `-1` timers, and a request cut without its quote.
        let line = br#"Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in be/<NOSRV> -1/-1/-1/-1/+8490 -1 +0 - - CR-- 2/2/2/0/0 0/0 {} {} "GET /very/long"#;
        let record = template.parse(line).unwrap();
        assert_eq!((record.backend, record.pool), (None, Some(&b"be"[..])));
        assert_eq!((record.status, record.latency_s), (None, Some(8.49)));
        assert_eq!(record.path, Some(&b"/very/long"[..]));
    }

    #[test]
    fn custom_formats_with_samples_and_escapes() {
        let mut template = compile(
            r#"log-format "%ci\ [%t]\ %b\ %s\ %ST\ %Ta\ %[req.hdr(host),lower]\ %HM\ %HU""#,
        )
        .unwrap();
        let record = template
            .parse(b"10.0.0.1 [06/Feb/2009:12:14:14.655] be_api s3 503 12 example.com GET /x")
            .unwrap();
        assert_eq!((record.pool, record.backend), (Some(&b"be_api"[..]), Some(&b"s3"[..])));
        assert_eq!((record.status, record.latency_s), (Some(503), Some(0.012)));
        assert_eq!((record.method, record.path), (Some(&b"GET"[..]), Some(&b"/x"[..])));
    }

    #[test]
    fn compile_errors_say_what_to_fix() {
        let error = compile("[%tr] %st").unwrap_err();
        assert!(error.to_string().contains("did you mean `%ST`?"), "{error}");
        assert!(compile("[%tr] %[src").unwrap_err().to_string().contains("no closing `]`"));
        assert!(compile("%ST %B").unwrap_err().to_string().contains("`%tr`"));
        assert!(matches!(
            compile("[%tr] %ST%B").unwrap_err(),
            CompileError::AdjacentVariables { .. }
        ));
    }

    #[test]
    fn the_httplog_format_reads_the_haproxy_http_vectors() {
        let mut parser = crate::parse::Parser::Template(compile(HTTPLOG_NO_CAPTURES).unwrap());
        let path = crate::parse::vectors::vectors_dir().join("haproxy.jsonl");
        let content = std::fs::read_to_string(path).unwrap();
        let mut n_checked = 0;
        for row in content.lines() {
            let vector: serde_json::Value = serde_json::from_str(row).unwrap();
            let mut expect = vector["expect"].as_object().unwrap().clone();
            crate::parse::vectors::haproxy_expectations(&mut expect);
            // Plain `option httplog` lines: five timers, no captured headers, no extra tokens.
            let is_plain_httplog = expect.get("kind").and_then(|k| k.as_str()) == Some("access")
                && expect.get("timers_ms").and_then(|t| t.as_array()).is_some_and(|t| t.len() == 5)
                && !vector["line"].as_str().unwrap().contains('{')
                && vector["note"].as_str().is_none_or(|n| !n.contains("custom"));
            if !is_plain_httplog {
                continue;
            }
            let line = vector["line"].as_str().unwrap();
            let record = parser
                .parse(line.as_bytes())
                .unwrap_or_else(|e| panic!("{line}: {}", parser.explain(&e)));
            crate::parse::vectors::check_fields(&record, &expect)
                .unwrap_or_else(|why| panic!("{line}: {why}"));
            n_checked += 1;
        }
        assert!(n_checked >= 20, "only {n_checked} plain httplog vectors");
    }
}
