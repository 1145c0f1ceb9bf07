//! Test support: the conformance vectors in `../shared/formats/vectors` and the comparison of
//! a [`Record`] with a vector's `expect` object.

use super::time::format_rfc3339;
use super::{ParseErrorKind, Parser, Record};

/// Where the vectors are: `SKEWTAIL_VECTORS`, or `../shared/formats/vectors` beside the checkout.
pub(crate) fn vectors_dir() -> std::path::PathBuf {
    std::env::var_os("SKEWTAIL_VECTORS").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/formats/vectors"),
        std::path::PathBuf::from,
    )
}

pub(crate) fn check_fields(
    record: &Record<'_>,
    expect: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    use serde_json::{Value, json};
    let as_json = |v: Option<&[u8]>| v.map_or(Value::Null, |v| json!(String::from_utf8_lossy(v)));
    for (key, want) in expect {
        let got = match key.as_str() {
            "timestamp_utc" => json!(format_rfc3339(record.timestamp_ms)),
            "method" => as_json(record.method),
            "path" => as_json(record.path),
            "protocol" => as_json(record.protocol),
            "status" => json!(record.status),
            "bytes" => json!(record.bytes),
            "latency_s" => json!(record.latency_s),
            "backend" => as_json(record.backend),
            "upstream_status" => json!(record.upstream_status),
            "upstream_latency_s" => json!(record.upstream_latency_s),
            "upstream_name" => as_json(record.pool),
            "upstreams" => {
                json!(if want.as_array().is_some_and(Vec::is_empty) { 0 } else { record.attempts })
            }
            _ => continue,
        };
        let want = match key.as_str() {
            "upstreams" => json!(want.as_array().map_or(0, Vec::len)),
            // skewtail keeps event time in milliseconds (windows are seconds long), so
            // microsecond timestamps are compared at millisecond precision.
            "timestamp_utc" => want
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or_else(|| want.clone(), |t| json!(format_rfc3339(t.timestamp_millis()))),
            _ => want.clone(),
        };
        let same = match (&got, &want) {
            (Value::Number(a), Value::Number(b)) => {
                (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-9
            }
            _ => got == want,
        };
        if !same {
            return Err(format!("{key}: got {got}, want {want}"));
        }
    }
    Ok(())
}

/// Runs every vector of `file` through `parser`: `access` lines must give exactly the expected
/// fields (after `adjust` maps the format's own key names), `other` lines must be recognised as
/// valid non-requests. Panics listing every failure; returns the number of vectors checked.
pub(crate) fn check_vector_file(
    file: &str,
    parser: &mut Parser,
    adjust: impl Fn(&mut serde_json::Map<String, serde_json::Value>),
) -> usize {
    check_vectors_where(file, &[], parser, adjust)
}

/// [`check_vector_file`] for the vectors whose `format` is one of `formats` (all when empty):
/// one file can hold several formats (Envoy text and JSON).
pub(crate) fn check_vectors_where(
    file: &str,
    formats: &[&str],
    parser: &mut Parser,
    adjust: impl Fn(&mut serde_json::Map<String, serde_json::Value>),
) -> usize {
    let path = vectors_dir().join(file);
    let content =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut failures = Vec::new();
    let mut n_checked = 0;
    for (index, row) in content.lines().enumerate() {
        let vector: serde_json::Value = serde_json::from_str(row).unwrap();
        if !formats.is_empty() && !formats.contains(&vector["format"].as_str().unwrap()) {
            continue;
        }
        // A fragment tests one quirk of a value, not a whole line; its format's own tests
        // check it.
        if vector["expect"]["kind"] == "fragment" {
            continue;
        }
        let line = vector["line"].as_str().unwrap();
        let mut expect = vector["expect"].as_object().unwrap().clone();
        adjust(&mut expect);
        let label = format!("{file}:{}", index + 1);
        n_checked += 1;
        match (expect["kind"].as_str().unwrap(), parser.parse(line.as_bytes())) {
            ("access", Ok(record)) => {
                if let Err(why) = check_fields(&record, &expect) {
                    failures.push(format!("{label}: {why}\n    {line}"));
                }
            }
            ("other", Err(error)) if error.kind == ParseErrorKind::NotARequest => {}
            (kind, Err(error)) => failures.push(format!(
                "{label}: expected {kind}, got: {}\n    {line}",
                parser.explain(&error)
            )),
            (kind, Ok(record)) => {
                failures.push(format!("{label}: expected {kind}, got {record:?}\n    {line}"))
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n_checked} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    n_checked
}

/// Maps a HAProxy vector's keys to skewtail's: pseudo-servers are logged as
/// `backend/<NOSRV>` but are no server, so such requests reach no backend (formats README,
/// section 2), and the pool is the backend name.
pub(crate) fn haproxy_expectations(expect: &mut serde_json::Map<String, serde_json::Value>) {
    if expect.get("server").is_some_and(serde_json::Value::is_null) {
        expect.insert("backend".into(), serde_json::Value::Null);
    }
    if let Some(name) = expect.get("backend_name").cloned() {
        expect.insert("upstream_name".into(), name);
    }
}
