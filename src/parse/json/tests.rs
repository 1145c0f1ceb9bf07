//! Unit tests for the JSON scanner, plus the JSON conformance vectors.

use super::*;
use crate::parse::vectors::check_vector_file;
use crate::parse::{Parser, PatternSet};

fn builtin(name: &str) -> Parser {
    PatternSet::builtin().get(name).unwrap().compile(&[]).unwrap()
}

fn spec(path: &str) -> JsonFieldSpec {
    JsonFieldSpec::Path(path.to_string())
}

fn format(fields: &[(&str, JsonFieldSpec)]) -> JsonFormat {
    let fields = fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    JsonFormat::compile(&fields, &BTreeMap::new()).unwrap()
}

#[test]
fn nested_paths_whitespace_escapes_and_skipped_subtrees() {
    let mut json = format(&[
        ("timestamp", spec("t")),
        ("backend", spec("up.host")),
        ("status", spec("code")),
        ("path", spec("req.uri")),
    ]);
    let line = br#" { "skip" : {"a":[1,{"b":"}]\"{"}],"c":null} , "t":"2024-01-02T03:04:05.678Z", "req": {"uri":"/a\"b", "h":{"x":["y"]}}, "up":{"host":"10.0.0.1:80"}, "code": 503 } "#;
    let record = json.parse(line).unwrap();
    assert_eq!(record.timestamp_ms, 1_704_164_645_678);
    assert_eq!(record.backend, Some(&b"10.0.0.1:80"[..]));
    assert_eq!(record.status, Some(503));
    assert_eq!(record.path, Some(&br#"/a\"b"#[..]));
}

#[test]
fn null_and_missing_values_are_none() {
    let mut json = format(&[("timestamp", spec("t")), ("backend", spec("host"))]);
    let record = json.parse(br#"{"t":"2024-01-02T03:04:05Z","host":null}"#).unwrap();
    assert_eq!(record.backend, None);
    let record = json.parse(br#"{"t":"2024-01-02T03:04:05Z"}"#).unwrap();
    assert_eq!(record.backend, None);
}

#[test]
fn bad_lines_give_errors_that_name_the_place() {
    let mut json = format(&[("timestamp", spec("t")), ("status", spec("s"))]);
    let explain = |json: &mut JsonFormat, line: &[u8]| {
        let error = json.parse(line).unwrap_err();
        (error.kind, json.explain(&error))
    };
    let (kind, why) = explain(&mut json, br#"{"t":"2024-01-02T03:04:05Z","s":"abc"}"#);
    assert_eq!(kind, ParseErrorKind::BadNumber);
    assert_eq!(why, "column 34: status (`s`) is not a number or empty");
    let (kind, why) = explain(&mut json, br#"{"t":"2024-01-02T03:04:05Z","s":200"#);
    assert_eq!(kind, ParseErrorKind::LiteralMismatch);
    assert_eq!(why, "column 36: not valid JSON here (each line must be exactly one JSON object)");
    let (kind, why) = explain(&mut json, br#"{"s":200}"#);
    assert_eq!(kind, ParseErrorKind::NoTimestamp);
    assert_eq!(why, "the entry has no timestamp (`t`)");
    // Not JSON: unparsed, unless the pattern's `other` rule knows the line.
    let (kind, _) = explain(&mut json, b"DEBUG: plugin says hi");
    assert_eq!(kind, ParseErrorKind::LiteralMismatch);
    let other = regex::bytes::RegexSet::new(["^DEBUG: "]).unwrap();
    let mut knowing = json.clone().with_other_lines(Some(other));
    let (kind, _) = explain(&mut knowing, b"DEBUG: plugin says hi");
    assert_eq!(kind, ParseErrorKind::NotARequest);
    // A second object on the line, or any text after the first, is not one record.
    let (kind, _) = explain(&mut json, br#"{"t":"2024-01-02T03:04:05Z","s":200} {"t":"x"}"#);
    assert_eq!(kind, ParseErrorKind::LiteralMismatch);
    assert!(json.parse(br#"{"t":"2024-01-02T03:04:05Z","s":200}   "#).is_ok());
    let (kind, _) = explain(&mut json, br#"{"t":"yesterday"}"#);
    assert_eq!(kind, ParseErrorKind::BadTimestamp);
}

#[test]
fn units_layouts_and_alternative_paths() {
    let detailed = |path: &str, unit: Option<&str>, layout: Option<&str>| {
        JsonFieldSpec::Detailed(DetailedSpec {
            path: Some(path.to_string()),
            paths: Vec::new(),
            unit: unit.map(str::to_string),
            layout: layout.map(str::to_string),
        })
    };
    let mut json = format(&[
        ("timestamp", detailed("ts", None, Some("epoch_ms"))),
        ("latency", detailed("d", Some("duration"), None)),
        ("upstream_latency", detailed("u", Some("ns"), None)),
        ("backend", JsonFieldSpec::Paths(vec!["url".into(), "url.Host".into()])),
    ]);
    let record = json.parse(br#"{"ts":1700000000123,"d":"1m2.5s","u":1500000,"url":{"Scheme":"http","Host":"h:80"}}"#).unwrap();
    assert_eq!(record.timestamp_ms, 1_700_000_000_123);
    assert_eq!(record.latency_s, Some(62.5));
    assert_eq!(record.upstream_latency_s, Some(0.0015));
    assert_eq!(record.backend, Some(&b"h:80"[..]));
    let record = json.parse(br#"{"ts":1700000000123,"url":"http://h:80"}"#).unwrap();
    assert_eq!(record.backend, Some(&b"http://h:80"[..]));
}

#[test]
fn compile_errors_name_the_problem() {
    let fields: BTreeMap<String, JsonFieldSpec> = [(
        "latency".to_string(),
        JsonFieldSpec::Detailed(DetailedSpec {
            path: Some("d".into()),
            paths: vec![],
            unit: Some("hours".into()),
            layout: None,
        }),
    )]
    .into_iter()
    .collect();
    let error = JsonFormat::compile(&fields, &BTreeMap::new()).unwrap_err().to_string();
    assert!(error.contains("unknown unit `hours`"), "{error}");
    let fields = [("status".to_string(), spec("s"))].into_iter().collect();
    let error = JsonFormat::compile(&fields, &BTreeMap::new()).unwrap_err().to_string();
    assert!(error.contains("timestamp"), "{error}");
    let fields = [("timestamp".to_string(), spec("a..b"))].into_iter().collect();
    assert!(JsonFormat::compile(&fields, &BTreeMap::new()).is_err());
}

proptest::proptest! {
    #[test]
    fn arbitrary_and_mutated_lines_never_panic(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        cut in 0usize..300,
        at in 0usize..300,
        byte in proptest::prelude::any::<u8>(),
    ) {
        let mut parser = builtin("traefik_json");
        let _ = parser.parse(&bytes);
        let sample = std::fs::read_to_string(crate::parse::vectors::vectors_dir().join("traefik_json.jsonl")).unwrap();
        let vector: serde_json::Value = serde_json::from_str(sample.lines().next().unwrap()).unwrap();
        let mut line = vector["line"].as_str().unwrap().as_bytes().to_vec();
        let at = at % line.len();
        line[at] = byte;
        line.truncate(cut.max(at));
        let _ = parser.parse(&line);
    }
}

#[test]
fn deeply_nested_and_huge_lines_do_not_overflow() {
    let mut parser = builtin("caddy");
    let mut line = b"{\"request\":".to_vec();
    line.extend(std::iter::repeat_n(b'[', 1 << 20));
    assert!(parser.parse(&line).is_err());
    let mut line = b"{\"request\":{\"headers\":\"".to_vec();
    line.extend(std::iter::repeat_n(b'x', 1 << 20));
    line.extend(b"\"}}");
    assert!(parser.parse(&line).is_err()); // no timestamp
}

#[test]
fn json_conformance_vectors() {
    let pool_key = |key: &'static str| {
        move |expect: &mut serde_json::Map<String, serde_json::Value>| {
            if let Some(pool) = expect.remove(key) {
                expect.insert("upstream_name".into(), pool);
            }
        }
    };
    let mut n_checked = 0;
    // Traefik JSON: older versions log ServiceURL as a Go url.URL object, which has no
    // `scheme://host` text to borrow; skewtail names such a backend by its Host
    // (`172.17.0.3:80`), the same server. The vectors spell the URL out; compare the Host.
    // The rows whose line holds the object form, by their (unique) timestamp.
    let url_object_rows: Vec<serde_json::Value> =
        std::fs::read_to_string(crate::parse::vectors::vectors_dir().join("traefik_json.jsonl"))
            .unwrap()
            .lines()
            .map(|row| serde_json::from_str::<serde_json::Value>(row).unwrap())
            .filter(|v| v["line"].as_str().unwrap().contains(r#""ServiceURL":{"#))
            .map(|v| v["expect"]["timestamp"].clone())
            .collect();
    assert_eq!(url_object_rows.len(), 2);
    n_checked += check_vector_file("traefik_json.jsonl", &mut builtin("traefik_json"), |expect| {
        pool_key("service")(expect);
        if expect.get("timestamp").is_some_and(|t| url_object_rows.contains(t)) {
            let host = expect["backend_addr"].clone();
            expect.insert("backend".into(), host);
        }
    });
    n_checked += check_vector_file("caddy.jsonl", &mut builtin("caddy"), |_| {});
    n_checked +=
        check_vector_file("gcp_lb.jsonl", &mut builtin("gcp_lb"), pool_key("backend_service"));
    n_checked += check_vector_file("nginx_json.jsonl", &mut builtin("nginx_json"), |_| {});
    assert_eq!(n_checked, 7 + 11 + 5 + 2);
}

#[test]
fn nginx_escaping_fragments() {
    let mut json = format(&[("timestamp", spec("t")), ("path", spec("my_header1"))]);
    // escape=json: `\"` stays inside the value.
    let error = json
        .parse(br#"{"my_header1":"Here is \"header1\" with json escape", "my_header2":""}"#)
        .unwrap_err();
    assert_eq!(error.kind, ParseErrorKind::NoTimestamp, "valid JSON, only the time is missing");
    // escape=none: a raw quote ends the string early, and the line is not JSON.
    let error = json
        .parse(br#"{"my_header5":"Here is "header5" with none escape", "my_header6":""}"#)
        .unwrap_err();
    assert_eq!(error.kind, ParseErrorKind::LiteralMismatch);
    // Default escaping writes `\x22`, which strict JSON refuses; the scanner keeps the value
    // as logged rather than lose the line.
    let record =
        json.parse(br#"{"t":"2024-01-02T03:04:05Z","my_header1":"Here is \x22h\x22"}"#).unwrap();
    assert_eq!(record.path, Some(&br#"Here is \x22h\x22"#[..]));
}
