//! `skewtail simulate`: a fire drill from the command line. The log it writes, replayed, must
//! raise exactly the alerts its ground-truth labels name.

use crate::util::*;

/// Simulates `incident` in `format`, replays the log, and checks what it said against the
/// labels file: for each page labelled, one firing (within a minute of the incident's start,
/// or `within_s`) and one resolved of the labelled kind on the labelled backend; for each
/// change, one noted change of that operation; and nothing else.
fn drill(format: &str, incident: &str, extra: &[&str], within_s: i64) {
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
    let labels: Vec<serde_json::Value> = std::fs::read_to_string(&labels)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
    let mut expected = Vec::new();
    for label in &labels {
        if label["expect"] == "alert" {
            let (kind, backend) =
                (label["kind"].as_str().unwrap(), label["backend"].as_str().unwrap());
            expected.push(("firing", kind, backend));
            expected.push(("resolved", kind, backend));
            let fired = alerts
                .iter()
                .find(|a| a["state"] == "firing" && a["kind"] == kind)
                .unwrap_or_else(|| panic!("{label}: not paged: {seen:?}"));
            assert_eq!(fired["diagnosis"]["verdict"], label["diagnosis"], "{fired}");
            let delay = unix_s(&fired["at"]) - unix_s(&label["start"]);
            assert!((0..=within_s).contains(&delay), "fired {delay} s after the incident began");
        } else {
            let operation = &label["operation"];
            let noted = alerts
                .iter()
                .find(|a| {
                    a["state"] == "noted" && a["evidence"]["change"]["operation"] == *operation
                })
                .unwrap_or_else(|| panic!("{label}: not recorded: {seen:?}"));
            assert_eq!(noted["severity"], "info");
            expected.push((
                "noted",
                noted["kind"].as_str().unwrap(),
                noted["backend"].as_str().unwrap(),
            ));
        }
    }
    let mut seen_sorted = seen.clone();
    seen_sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(seen_sorted, expected, "{labels:?}");
}

#[test]
fn a_failing_haproxy_server_is_an_errors_alert() {
    drill("haproxy", "errors@15m+10m:backend=1,rate=0.25", &[], 60);
}

#[test]
fn a_slow_envoy_upstream_is_a_latency_alert() {
    drill("envoy_json", "slow@15m+10m:backend=4,factor=12", &[], 60);
}

#[test]
fn a_caddy_upstream_gone_for_ten_minutes_is_a_scale_in_and_back_a_scale_out() {
    // Nothing tries it and nothing suffers: without weights, it was taken out on purpose.
    drill("caddy", "drop@15m+10m:backend=0", &["--backends", "6"], 60);
}

#[test]
fn a_refusing_nginx_upstream_is_a_drop_after_the_grace() {
    // nginx tries it every 10 s and retries elsewhere: down, not removed.
    drill("upstream", "refuse@15m+10m:backend=1", &[], 150);
}

#[test]
fn a_rolling_restart_of_an_ingress_is_one_change() {
    drill("ingress_nginx", "rolling@15m+10m:drain=40,gap=10", &[], 60);
}

#[test]
fn a_weighted_nginx_pool_with_a_skew_and_late_lines() {
    drill(
        "upstream",
        "skew@15m+10m:backend=3,share=0.5",
        &["--backends", "4", "--weights", "3,1,1,1", "--late-fraction", "0.05"],
        60,
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
