//! `skewtail simulate`: a fire drill from the command line. The log it writes, replayed, must
//! raise exactly the alerts its ground-truth labels name.

use crate::util::*;

/// Simulates `incident` in `format`, replays the log, and checks the alerts against the
/// labels file: one firing and one resolved of the labelled kind on the labelled backend,
/// firing within a minute of the incident's start.
fn drill(format: &str, incident: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (log, labels) = (dir.path().join("drill.log"), dir.path().join("labels.jsonl"));
    let output = skewtail()
        .args([
            "simulate",
            "--format",
            format,
            "--duration",
            "40m",
            "--seed",
            "7",
            "--incident",
            incident,
        ])
        .args(extra)
        .arg("--out")
        .arg(&log)
        .arg("--labels")
        .arg(&labels)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let label: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&labels).unwrap().trim()).unwrap();
    let output =
        skewtail().args(["replay", "--json", "--format", format]).arg(&log).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = ndjson(&output);
    assert_eq!(summary(&objects)["unparsed"], 0);
    let alerts = of_type(&objects, "alert");
    let seen: Vec<(&str, &str, &str)> = alerts
        .iter()
        .map(|a| {
            (
                a["state"].as_str().unwrap(),
                a["kind"].as_str().unwrap(),
                a["backend"].as_str().unwrap(),
            )
        })
        .collect();
    let (kind, backend) = (label["kind"].as_str().unwrap(), label["backend"].as_str().unwrap());
    assert_eq!(seen, [("firing", kind, backend), ("resolved", kind, backend)], "{label}");
    let delay = unix_s(&alerts[0]["at"]) - unix_s(&label["start"]);
    assert!((0..=60).contains(&delay), "fired {delay} s after the incident began");
}

#[test]
fn a_failing_haproxy_server_is_an_errors_alert() {
    drill("haproxy", "errors@15m+10m:backend=1,rate=0.25", &[]);
}

#[test]
fn a_slow_envoy_upstream_is_a_latency_alert() {
    drill("envoy_json", "slow@15m+10m:backend=4,factor=12", &[]);
}

#[test]
fn a_vanished_caddy_upstream_is_a_drop() {
    drill("caddy", "drop@15m+10m:backend=0", &["--backends", "6"]);
}

#[test]
fn a_weighted_nginx_pool_with_a_skew_and_late_lines() {
    drill(
        "upstream",
        "skew@15m+10m:backend=3,share=0.5",
        &["--backends", "4", "--weights", "3,1,1,1", "--late-fraction", "0.05"],
    );
}

#[test]
fn bad_drills_are_refused_with_the_fix() {
    for (args, why) in [
        (&["--incident", "melt@1m+1m"][..], "unknown kind"),
        (&["--incident", "skew@1m+1m:backend=9"][..], "names backend 9 of 8"),
        (&["--weights", "1,2"][..], "--weights has 2 values for 8 backends"),
        (&["--format", "combined"][..], "no generator for format `combined`"),
        (&["--duration", "soon"][..], "--duration `soon`"),
    ] {
        let output = skewtail().arg("simulate").args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(why), "{args:?}: {}", stderr(&output));
    }
}
