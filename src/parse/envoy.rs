//! The Envoy access-log format front end: turns an Envoy `text_format` (the default, Istio's,
//! or the user's own) into [`Template`] segments.
//!
//! Envoy writes command operators as `%NAME%`, `%NAME(ARG)%` or `%NAME(ARG):MAX_LEN%`, and `-`
//! for any value it does not have. Durations are milliseconds; `%START_TIME%` is RFC 3339 UTC.
//! The backend is `%UPSTREAM_HOST%`, the pool `%UPSTREAM_CLUSTER%`.

use super::template::{
    CompileError, Field, Options, Template, TimeLayout, TimeUnit, split_placeholders,
};

/// Operators that feed the record. Any other well-formed operator is read past: Envoy has
/// well over a hundred, and validates them itself when it loads its config.
fn operator_field(name: &str, argument: Option<&str>) -> Option<Field> {
    let header = argument.map(str::to_ascii_uppercase);
    Some(match (name, header.as_deref()) {
        ("START_TIME", None) => Field::Timestamp(TimeLayout::Iso8601),
        // `%s` (seconds) and `%s.%3f`-style epoch layouts; other strftime layouts are refused
        // by `compile` below.
        ("START_TIME", Some(layout)) if layout.starts_with("%S") => {
            Field::Timestamp(TimeLayout::Epoch(TimeUnit::Seconds))
        }
        ("REQ", Some(":METHOD")) => Field::Method,
        ("REQ", Some(":PATH" | "X-ENVOY-ORIGINAL-PATH?:PATH")) => Field::Path,
        ("PROTOCOL", None) => Field::Protocol,
        ("RESPONSE_CODE", None) => Field::Status,
        ("BYTES_SENT", None) => Field::Bytes { weak: false },
        ("DURATION", None) => Field::Latency { unit: TimeUnit::Millis, weak: false },
        ("RESP", Some("X-ENVOY-UPSTREAM-SERVICE-TIME")) => Field::UpstreamLatency(TimeUnit::Millis),
        ("UPSTREAM_HOST", None) => Field::Backend,
        ("UPSTREAM_CLUSTER", None) => Field::Pool,
        _ => return None,
    })
}

/// Compiles an Envoy access-log format string.
pub fn compile(format: &str) -> Result<Template, CompileError> {
    // Envoy configs usually end the format with a newline; the line reader has removed it.
    let text = format.trim_end_matches(['\n', '\r']);
    let bytes = text.as_bytes();
    let segments = split_placeholders(text, b'%', |segments, start| {
        let column = start + 1;
        // NAME, NAME(ARG) or NAME(ARG):MAX_LEN, then the closing `%`. ARG may itself hold `%`
        // (`%START_TIME(%s)%`), so the parts are read in order rather than split on `%`.
        let name_len = bytes[start + 1..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        let name = &text[start + 1..start + 1 + name_len];
        let mut pos = start + 1 + name_len;
        if name.is_empty() && bytes.get(pos) == Some(&b'%') {
            // `%%` is a literal percent sign.
            segments.literal(b"%");
            return Ok(pos + 1);
        }
        let mut argument = None;
        if bytes.get(pos) == Some(&b'(') {
            let close = memchr::memchr(b')', &bytes[pos..])
                .ok_or(CompileError::Malformed { column, problem: "`(` has no closing `)`" })?;
            argument = Some(&text[pos + 1..pos + close]);
            pos += close + 1;
        }
        if bytes.get(pos) == Some(&b':') {
            pos += 1 + bytes[pos + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        }
        if bytes.get(pos) != Some(&b'%') {
            return Err(CompileError::Malformed {
                column,
                problem: "`%` opens a command operator that is never closed with `%`",
            });
        }
        let operator = &text[start..=pos];
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(CompileError::UnknownVariable {
                kind: "command operator",
                name: operator.to_string(),
                column,
                hint: String::new(),
                advice: "Envoy operators are upper-case names such as `%UPSTREAM_HOST%`",
            });
        }
        if name == "START_TIME" && argument.is_some_and(|a| !a.starts_with("%s")) {
            return Err(CompileError::Malformed {
                column,
                problem: "only the default `%START_TIME%` and the epoch layout `%START_TIME(%s)%` \
                          can be read; drop the custom strftime layout",
            });
        }
        let field = operator_field(name, argument).unwrap_or(Field::Ignored { list: false });
        segments.variable(operator, field, column)?;
        Ok(pos + 1)
    })?;
    Template::from_segments(
        segments,
        Options { cut_final_quote: false, time_suggestion: "`%START_TIME%`" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Parser;
    use crate::parse::vectors::check_vectors_where;

    #[test]
    fn custom_formats_compile_and_parse() {
        let mut template = compile(
            "%START_TIME(%s)% %UPSTREAM_CLUSTER% %UPSTREAM_HOST% %RESPONSE_CODE% %DURATION% \
             %REQ(USER-AGENT):10%\n",
        )
        .unwrap();
        let record = template.parse(b"1700000000 api 10.0.0.1:80 503 12 curl/8.1").unwrap();
        assert_eq!(record.timestamp_ms, 1_700_000_000_000);
        assert_eq!(record.pool, Some(&b"api"[..]));
        assert_eq!(record.backend, Some(&b"10.0.0.1:80"[..]));
        assert_eq!(record.status, Some(503));
        assert_eq!(record.latency_s, Some(0.012));
    }

    #[test]
    fn compile_errors_say_what_to_fix() {
        let error = compile("[%START_TIME%] %upstream_host%").unwrap_err();
        assert!(error.to_string().contains("`%upstream_host%`"), "{error}");
        assert!(
            compile("[%START_TIME%] %UPSTREAM_HOST")
                .unwrap_err()
                .to_string()
                .contains("never closed")
        );
        assert!(compile("%START_TIME(%Y-%m-%d)% x").unwrap_err().to_string().contains("strftime"));
        assert!(matches!(
            compile("%UPSTREAM_HOST%").unwrap_err(),
            CompileError::NoTimestamp { .. }
        ));
    }

    #[test]
    fn envoy_conformance_vectors() {
        let patterns = crate::parse::PatternSet::builtin();
        let pool_is_cluster = |expect: &mut serde_json::Map<String, serde_json::Value>| {
            if let Some(cluster) = expect.remove("upstream_cluster") {
                expect.insert("upstream_name".into(), cluster);
            }
        };
        let mut text = patterns.get("envoy").unwrap().compile(&[]).unwrap();
        let n_text = check_vectors_where(
            "envoy.jsonl",
            &["envoy_text", "envoy_app_log"],
            &mut text,
            pool_is_cluster,
        );
        let mut json = patterns.get("envoy_json").unwrap().compile(&[]).unwrap();
        assert!(matches!(json, Parser::Json(_)));
        let n_json =
            check_vectors_where("envoy.jsonl", &["envoy_json"], &mut json, pool_is_cluster);
        assert_eq!((n_text, n_json), (11, 6));
    }
}
