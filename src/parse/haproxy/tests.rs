//! HAProxy unit tests and the conformance vectors in `../shared/formats/vectors/haproxy.jsonl`.

use super::*;
use crate::parse::time::format_rfc3339;

fn text(value: Option<&[u8]>) -> Option<String> {
    value.map(|v| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn httplog_with_syslog_prefix_and_captures() {
    let line = br#"Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html HTTP/1.1""#;
    let record = HaproxyLog::new().parse(line).unwrap();
    assert_eq!(format_rfc3339(record.timestamp_ms), "2009-02-06T12:14:14.655Z");
    assert_eq!(text(record.backend).as_deref(), Some("static/srv1"));
    assert_eq!(text(record.pool).as_deref(), Some("static"));
    assert_eq!(record.status, Some(200));
    assert_eq!(record.bytes, Some(2750));
    assert_eq!(record.latency_s, Some(0.109));
    assert_eq!(record.upstream_latency_s, Some(0.069));
    assert_eq!(text(record.path).as_deref(), Some("/index.html"));
    assert_eq!(record.attempts, 1);
}

#[test]
fn retries_nosrv_and_aborts() {
    let mut log = HaproxyLog::new();
    let record = log.parse(br#"10.0.0.1:1 [15/Oct/2003:15:26:31.462] fe be/s2 3/0/1/5/9 200 10 - - ---- 5/5/5/1/2 0/0 "GET / HTTP/1.0""#).unwrap();
    assert_eq!(record.attempts, 3, "two retries");
    let record = log.parse(br#"haproxy[18113]: 127.0.0.1:34548 [15/Oct/2003:15:18:55.798] px-http px-http/<NOSRV> -1/-1/-1/-1/8490 -1 0 - - CR-- 2/2/2/0/0 0/0 """#).unwrap();
    assert_eq!(
        (record.backend, record.status, record.upstream_latency_s, record.method),
        (None, None, None, None)
    );
    assert_eq!(text(record.pool).as_deref(), Some("px-http"));
}

#[test]
fn non_request_lines_are_other_and_garbage_is_an_error() {
    let mut log = HaproxyLog::new();
    for line in [
        &b"Feb  6 12:12:09 localhost haproxy[14385]: Connect from 10.0.1.2:33312 to 10.0.3.31:8012 (www/HTTP)"[..],
        b"192.168.1.4:50033 [28/Feb/2025:02:43:10.123] frontend/backend: SSL handshake failure",
        b"Proxy fe stopped (cumulated conns: FE: 8, BE: 0).",
        b"Server be_api/s2 is DOWN, reason: Layer4 connection problem, check duration: 0ms.",
    ] {
        assert_eq!(log.parse(line).unwrap_err().kind, ParseErrorKind::NotARequest);
    }
    let error = log.parse(b"complete garbage").unwrap_err();
    assert_eq!(error.kind, ParseErrorKind::NoTimestamp);
    let error =
        log.parse(b"1.2.3.4:5 [06/Feb/2009:12:14:14.655] fe be/s1 1/2/x/4/5 200").unwrap_err();
    assert_eq!(
        log.explain(&error),
        "column 47: expected the timers (`TR/Tw/Tc/Tr/Ta` or `Tw/Tc/Tt`)"
    );
    let error =
        log.parse(b"1.2.3.4:5 [06/Feb/2009:12:14:14.655] fe be/s1 1/2/3/4/5 2x0 1").unwrap_err();
    assert_eq!(log.explain(&error), "column 57: the status code is not a number");
}

#[test]
fn haproxy_conformance_vectors() {
    let mut parser = crate::parse::Parser::Haproxy(HaproxyLog::new());
    let n_checked = crate::parse::vectors::check_vector_file(
        "haproxy.jsonl",
        &mut parser,
        crate::parse::vectors::haproxy_expectations,
    );
    assert_eq!(n_checked, 57);
}
