//! The nginx `log_format` front end: turns a `log_format` (bare, quoted, or the whole pasted
//! directive) into [`Template`] segments. nginx's format is whatever the user wrote, so instead
//! of shipping a fixed regex skewtail compiles the user's own directive.
//!
//! nginx writes `-` for an unset variable, `\xHH` for `"` and bytes outside printable ASCII
//! (kept as logged), and `\"` under `escape=json` (handled by the engine).

use std::collections::BTreeMap;

use super::template::{
    CompileError, Field, Options, Template, TimeLayout, TimeUnit, split_placeholders,
};

/// Exact variable names that feed the record or are known and skipped.
const MAPPED_VARIABLES: &[(&str, Field)] = &[
    ("time_local", Field::Timestamp(TimeLayout::Clf)),
    ("time_iso8601", Field::Timestamp(TimeLayout::Iso8601)),
    ("msec", Field::Timestamp(TimeLayout::Epoch(TimeUnit::Seconds))),
    ("request", Field::Request),
    ("request_method", Field::Method),
    ("request_uri", Field::Path),
    ("server_protocol", Field::Protocol),
    ("status", Field::Status),
    ("body_bytes_sent", Field::Bytes { weak: false }),
    // $body_bytes_sent is preferred when both are logged.
    ("bytes_sent", Field::Bytes { weak: true }),
    ("request_time", Field::Latency { unit: TimeUnit::Seconds, weak: false }),
    ("upstream_addr", Field::Backend),
    ("upstream_status", Field::UpstreamStatus),
    ("upstream_response_time", Field::UpstreamLatency(TimeUnit::Seconds)),
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

/// What to do about an unknown nginx variable.
const UNKNOWN_ADVICE: &str = "if it comes from a `map` or `set` in your nginx config, list it in \
                              `custom_variables` for this input";

/// Compiles a `log_format`. `custom_variables` names variables defined by the user's own
/// `map`/`set` blocks, which are then accepted and skipped.
pub fn compile(log_format: &str, custom_variables: &[String]) -> Result<Template, CompileError> {
    compile_with_fields(log_format, custom_variables, &BTreeMap::new())
}

/// Compiles a `log_format` in which some variables (the user's own `set`/`map` ones, say)
/// feed record fields: `field_map` maps a variable name to a record-field spec such as
/// `backend`, `pool` or `latency:ms` (see [`Field::from_spec`]).
pub fn compile_with_fields(
    log_format: &str,
    custom_variables: &[String],
    field_map: &BTreeMap<String, String>,
) -> Result<Template, CompileError> {
    let mut mapped = Vec::new();
    for (variable, spec) in field_map {
        mapped.push((variable.as_str(), Field::from_spec(variable, spec)?));
    }
    let text = unwrap_directive(log_format)?;
    if text.is_empty() {
        return Err(CompileError::Empty);
    }
    let bytes = text.as_bytes();
    let segments = split_placeholders(&text, b'$', |segments, i| {
        let column = i + 1;
        let (name, next) = if bytes.get(i + 1) == Some(&b'{') {
            let close = bytes[i + 2..]
                .iter()
                .position(|&b| b == b'}')
                .ok_or(CompileError::Malformed { column, problem: "`${` has no closing `}`" })?;
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
        let own = mapped.iter().find(|(variable, _)| *variable == name).map(|(_, field)| *field);
        let field = own.or_else(|| lookup_variable(name, custom_variables)).ok_or_else(|| {
            CompileError::UnknownVariable {
                kind: "variable",
                name: format!("${name}"),
                column,
                hint: closest_known_variable(name)
                    .map(|k| format!(", did you mean `${k}`?"))
                    .unwrap_or_default(),
                advice: UNKNOWN_ADVICE,
            }
        })?;
        segments.variable(&format!("${name}"), field, column)?;
        Ok(next)
    })?;
    Template::from_segments(
        segments,
        Options {
            cut_final_quote: false,
            time_suggestion: "`$time_local`, `$time_iso8601` or `$msec`",
        },
    )
}

/// Turns the text a user may paste (a whole `log_format name escape=json '...' '...';`
/// directive, ingress-nginx's ConfigMap entry `log-format-upstream: '...'`, a run of quoted
/// strings, or the bare format) into the bare format. A quote that is never closed is an
/// error: the format would otherwise be taken with its quote as literal text.
fn unwrap_directive(text: &str) -> Result<String, CompileError> {
    let trimmed = text.trim();
    // Where a slice of `text` starts in it, for columns of the text as given.
    let offset_of = |part: &str| part.as_ptr() as usize - text.as_ptr() as usize;
    if let Some(after) = trimmed.strip_prefix("log-format-upstream:") {
        let value = after.trim();
        return yaml_scalar(value, offset_of(value));
    }
    let mut rest = trimmed;
    if let Some(after) = rest.strip_prefix("log_format") {
        // Drop the format name and any `escape=`/`if=` parameters: everything before the
        // first quote.
        rest = after.find(['\'', '"']).map_or(after, |i| &after[i..]);
    }
    let rest = rest.trim().trim_end_matches(';').trim();
    let start = offset_of(rest);
    if !rest.starts_with(['\'', '"']) {
        return Ok(rest.to_string());
    }
    // A run of nginx-quoted strings: concatenate their contents.
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.char_indices().peekable();
    while let Some((at, quote)) = chars.next() {
        if quote != '\'' && quote != '"' {
            if quote.is_whitespace() {
                continue;
            }
            // Not a quoted run after all: use the text verbatim.
            return Ok(rest.to_string());
        }
        loop {
            match chars.next().map(|(_, c)| c) {
                None => return Err(CompileError::UnclosedQuote { column: start + at + 1 }),
                Some(c) if c == quote => break,
                Some('\\') => match chars.next().map(|(_, c)| c) {
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
    Ok(out)
}

/// A YAML scalar as a ConfigMap value holds it: `'single'` (`''` is a quote), `"double"` (with
/// backslash escapes) or plain. `at` is its byte offset in the text given, for columns.
fn yaml_scalar(value: &str, at: usize) -> Result<String, CompileError> {
    let unclosed = CompileError::UnclosedQuote { column: at + 1 };
    let mut out = String::with_capacity(value.len());
    if let Some(body) = value.strip_prefix('\'') {
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\'' {
                out.push(c);
            } else if chars.peek() == Some(&'\'') {
                chars.next();
                out.push('\'');
            } else {
                return Ok(out);
            }
        }
        return Err(unclosed);
    }
    if let Some(body) = value.strip_prefix('"') {
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Ok(out),
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c) => out.push(c),
                    None => return Err(unclosed),
                },
                c => out.push(c),
            }
        }
        return Err(unclosed);
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests;
