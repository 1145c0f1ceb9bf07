//! `skewtail replay` on generated nginx logs with known incidents.

use std::time::Duration;

use skewtail::synth::{Incident, LogStyle, SEED_INCIDENT_DAY_MS, Scenario};

use crate::util::*;

const INCIDENT_START_S: i64 = SEED_INCIDENT_DAY_MS / 1000 + 15 * 60;
const INCIDENT_END_S: i64 = INCIDENT_START_S + 15 * 60;

#[test]
fn injected_skew_gives_exactly_one_firing_and_one_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let (log, n_lines) = write_log(dir.path(), "access.log", &skew_scenario());
    let (_, objects) = replay_json(&log, &[]);
    let alerts = of_type(&objects, "alert");
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    let (fired, resolved) = (alerts[0], alerts[1]);
    for alert in [fired, resolved] {
        assert_eq!(alert["kind"], "skew");
        assert_eq!(alert["direction"], "over");
        assert_eq!(alert["backend"], "10.0.1.3:8080");
        assert_eq!(alert["pool"], "access.log");
    }
    assert_eq!(fired["state"], "firing");
    assert_eq!(fired["severity"], "critical");
    let started = unix_s(&fired["started_at"]);
    assert!((INCIDENT_START_S..=INCIDENT_START_S + 20).contains(&started), "started {started}");
    let fired_at = unix_s(&fired["at"]);
    assert!(
        fired_at - INCIDENT_START_S <= 60,
        "detected within a minute: {}",
        fired_at - INCIDENT_START_S
    );
    let share = fired["evidence"]["observed_share"].as_f64().unwrap();
    assert!((0.3..0.6).contains(&share), "{share}");
    assert!((fired["evidence"]["expected_share"].as_f64().unwrap() - 0.125).abs() < 0.03);
    assert!(fired["summary"].as_str().unwrap().contains("10.0.1.3:8080 is taking"));
    assert!(fired["evidence"]["error_rate"].as_f64().unwrap() > 0.05);
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["started_at"], fired["started_at"]);
    let resolved_at = unix_s(&resolved["at"]);
    assert!(
        (INCIDENT_END_S..=INCIDENT_END_S + 90).contains(&resolved_at),
        "resolved at {resolved_at}"
    );
    assert_eq!(fired["fingerprint"], resolved["fingerprint"]);

    let windows = of_type(&objects, "window");
    assert_eq!(windows.len(), 40 * 6);
    assert!(windows[0]["backends"]["10.0.1.1:8080"]["requests"].as_u64().unwrap() > 0);
    assert!(windows[0]["backends"]["10.0.1.1:8080"]["p99_ms"].as_f64().unwrap() > 0.0);
    let summary = summary(&objects);
    assert_eq!(summary["lines"], n_lines);
    assert_eq!(summary["parsed"], n_lines);
    assert_eq!(summary["unparsed"], 0);
    assert_eq!(summary["alerts_fired"], 1);
    assert_eq!(summary["alerts_resolved"], 1);
    assert_eq!(summary["still_firing"], 0);
    assert!(summary["retried"].as_u64().unwrap() > 0, "retries are counted");
}

#[test]
fn human_timeline_and_fail_on_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = write_log(dir.path(), "access.log", &skew_scenario());
    let output = skewtail()
        .args(["replay", "--format", "upstream", "--fail-on-alert"])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("FIRING   CRITICAL       skew over  access.log / 10.0.1.3:8080"),
        "{text}"
    );
    assert!(text.contains("RESOLVED after"), "{text}");
    assert!(text.contains("1 alert(s) fired, 1 resolved, 0 still firing"), "{text}");
}

#[test]
fn clean_log_gives_no_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = write_log(dir.path(), "clean.log", &Scenario::clean(40 * 60, 40.0));
    // `--fail-on-alert` with nothing to report: exit status 0.
    let (_, objects) = replay_json(&log, &["--fail-on-alert"]);
    assert!(of_type(&objects, "alert").is_empty());
    assert_eq!(summary(&objects)["alerts_fired"], 0);
}

#[test]
fn ten_percent_garbage_still_detects_and_counts_unparsed() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { garbage_fraction: 0.10, ..skew_scenario() };
    let (log, n_lines) = write_log(dir.path(), "dirty.log", &scenario);
    let (output, objects) = replay_json(&log, &[]);
    let alerts = of_type(&objects, "alert");
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert_eq!(alerts[0]["backend"], "10.0.1.3:8080");
    let summary = summary(&objects);
    let unparsed = summary["unparsed"].as_u64().unwrap();
    #[allow(clippy::cast_precision_loss)]
    let fraction = unparsed as f64 / n_lines as f64;
    assert!((0.09..0.11).contains(&fraction), "unparsed fraction {fraction}");
    assert_eq!(summary["parsed"].as_u64().unwrap() + unparsed, n_lines);
    // The first few are shown with their file line number and the reason; the rest only counted.
    let log_text = stderr(&output);
    // 5 samples, then one in 10000.
    let expected_logged = 5 + usize::try_from(unparsed / 10_000).unwrap();
    assert_eq!(log_text.matches("Unparsed line.").count(), expected_logged, "{log_text}");
    assert!(log_text.contains("line=") && log_text.contains("column"), "{log_text}");
    assert!(log_text.contains("Further unparsed lines are counted; one in 10000 is logged."));
}

#[test]
fn three_hour_log_reports_its_one_incident_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario {
        duration_s: 3 * 3600,
        rate_per_s: 25.0,
        seed: 7,
        incidents: vec![Incident {
            start_s: 95 * 60,
            duration_s: 20 * 60,
            backend: 5,
            share: Some(0.40),
            error_rate: 0.08,
            latency_factor: 8.0,
            ..Incident::default()
        }],
        ..Scenario::seed_incident()
    };
    let (log, _) = write_log(dir.path(), "three-hours.log", &scenario);
    let (_, objects) = replay_json(&log, &[]);
    let alerts = of_type(&objects, "alert");
    let states: Vec<(&str, &str)> = alerts
        .iter()
        .map(|a| (a["state"].as_str().unwrap(), a["backend"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("firing", "10.0.1.6:8080"), ("resolved", "10.0.1.6:8080")]);
    let incident_start = SEED_INCIDENT_DAY_MS / 1000 + 95 * 60;
    assert!((unix_s(&alerts[0]["at"]) - incident_start) <= 60);
}

#[test]
fn stdin_and_several_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Vec::new();
    skew_scenario().write(&mut log).unwrap();
    let split = log.len() / 2 + log[log.len() / 2..].iter().position(|&b| b == b'\n').unwrap() + 1;
    std::fs::write(dir.path().join("access.log.1"), &log[..split]).unwrap();
    std::fs::write(dir.path().join("access.log"), &log[split..]).unwrap();
    let output = skewtail()
        .args(["replay", "--format", "upstream", "--json", "--pool", "api"])
        .arg(dir.path().join("access.log.1"))
        .arg(dir.path().join("access.log"))
        .output()
        .unwrap();
    let objects = ndjson(&output);
    let alerts = of_type(&objects, "alert");
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["pool"], "api");

    use std::io::Write;
    let mut child = skewtail()
        .args(["replay", "--format", "upstream", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Write from a thread: the child's stdout must be drained at the same time.
    let writer = std::thread::spawn(move || stdin.write_all(&log).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(of_type(&ndjson(&output), "alert").len(), 2);
}

#[test]
fn configured_weights_make_a_weighted_pool_normal() {
    // A 3:1:1:1 pool that behaves as configured is not skew; with equal weights it is.
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario {
        backends: (1..=4).map(|i| format!("10.0.2.{i}:80")).collect(),
        incidents: vec![Incident {
            start_s: 0,
            duration_s: 20 * 60,
            backend: 0,
            share: Some(0.5),
            error_rate: 0.0,
            latency_factor: 1.0,
            ..Incident::default()
        }],
        duration_s: 20 * 60,
        ..Scenario::seed_incident()
    };
    write_log(dir.path(), "weighted.log", &scenario);
    let config = |weights: &str| {
        let path = dir.path().join("skewtail.toml");
        std::fs::write(&path, format!("[[input]]\npath = \"weighted.log\"\nformat = \"upstream\"\npool = \"api\"\n\n[pool.api]\nweights = {{ {weights} }}\n")).unwrap();
        let output = skewtail().args(["replay", "--json", "--config"]).arg(&path).output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        ndjson(&output)
    };
    let objects =
        config(r#""10.0.2.1:80" = 3, "10.0.2.2:80" = 1, "10.0.2.3:80" = 1, "10.0.2.4:80" = 1"#);
    assert!(of_type(&objects, "alert").is_empty());
    let objects =
        config(r#""10.0.2.1:80" = 1, "10.0.2.2:80" = 1, "10.0.2.3:80" = 1, "10.0.2.4:80" = 1"#);
    let alerts = of_type(&objects, "alert");
    assert_eq!(alerts.len(), 1, "fires, and stays firing to the end: {alerts:#?}");
    assert_eq!(alerts[0]["evidence"]["expected_from"], "weights");
    assert_eq!(summary(&objects)["still_firing"], 1);
}

#[test]
fn demo_prints_the_incident_and_its_resolution() {
    let output = skewtail().arg("demo").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let fired = text.find("FIRING   CRITICAL       skew over  api / 10.0.1.3:8080").expect(&text);
    let resolved = text.find("RESOLVED").expect(&text);
    assert!(fired < resolved);
    assert!(text.contains("1 alert(s) fired, 1 resolved, 0 still firing"), "{text}");
}

/// Replays a generated log in `style` with `--format auto` and checks that the format is
/// recognised, every line parses, and the one incident is reported, once, on the right
/// backend and pool. `skewtail parse` must read the same log as requests, line for line.
fn detects_the_injected_skew_in(style: LogStyle) {
    let dir = tempfile::tempdir().unwrap();
    // Twelve minutes: the baseline's five-minute warm-up, then three minutes of skew.
    let scenario = Scenario {
        style,
        duration_s: 12 * 60,
        rate_per_s: 25.0,
        incidents: vec![Incident { start_s: 6 * 60, duration_s: 3 * 60, ..skew_incident() }],
        ..skew_scenario()
    };
    let (log, n_lines) = write_log(dir.path(), "balancer.log", &scenario);
    let output = skewtail()
        .args(["replay", "--format", "auto", "--json"])
        .arg(&log)
        .env("SKEWTAIL_LOG", "info")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let format = style.format_name();
    assert!(stderr(&output).contains(&format!("format={format} ")), "{}", stderr(&output));
    let objects = ndjson(&output);
    let (backend, pool) = style.identity(&scenario.backends[skew_incident().backend]);
    // Formats whose lines name no pool are judged per input, named after the file.
    let pool = if pool.is_empty() { "balancer.log" } else { pool };
    let states: Vec<(&str, &str, &str)> = of_type(&objects, "alert")
        .iter()
        .map(|a| {
            (
                a["state"].as_str().unwrap(),
                a["backend"].as_str().unwrap(),
                a["pool"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("firing", backend.as_str(), pool), ("resolved", backend.as_str(), pool)],
        "{format}"
    );
    assert_eq!(summary(&objects)["parsed"], n_lines);

    let output = skewtail().args(["parse", "--format", format]).arg(&log).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let parsed = ndjson(&output);
    assert_eq!(parsed.len() as u64, n_lines);
    assert!(parsed.iter().all(|p| p["kind"] == "access" && p["backend"].is_string()), "{format}");
}

fn skew_incident() -> Incident {
    skew_scenario().incidents[0].clone()
}

/// One end-to-end replay test per format.
macro_rules! replay_detects_skew {
    ($($name:ident => $style:ident,)*) => {$(
        #[test]
        fn $name() {
            detects_the_injected_skew_in(LogStyle::$style);
        }
    )*};
}

replay_detects_skew! {
    ingress_nginx_replay_detects_the_injected_skew => IngressNginx,
    nginx_json_replay_detects_the_injected_skew => NginxJson,
    haproxy_replay_detects_the_injected_skew => HaproxyHttp,
    aws_alb_replay_detects_the_injected_skew => AwsAlb,
    aws_elb_replay_detects_the_injected_skew => AwsElb,
    envoy_replay_detects_the_injected_skew => Envoy,
    envoy_json_replay_detects_the_injected_skew => EnvoyJson,
    traefik_replay_detects_the_injected_skew => Traefik,
    traefik_json_replay_detects_the_injected_skew => TraefikJson,
    caddy_replay_detects_the_injected_skew => Caddy,
    gcp_lb_replay_detects_the_injected_skew => GcpLb,
}

#[test]
fn a_replay_that_judged_nothing_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // Two minutes at 3 requests a second: no 10 s window reaches 100 requests.
    let (log, _) = write_log(
        dir.path(),
        "quiet.log",
        &skewtail::synth::Scenario {
            duration_s: 120,
            rate_per_s: 3.0,
            ..skewtail::synth::Scenario::seed_incident()
        },
    );
    let (_, objects) = replay_json(&log, &[]);
    let unjudged = summary(&objects)["unjudged_pools"].as_array().unwrap().clone();
    assert_eq!(unjudged.len(), 1, "{unjudged:?}");
    assert_eq!(unjudged[0]["pool"], "quiet.log");
    assert!(
        unjudged[0]["reason"].as_str().unwrap().contains("no 10s window had 100 requests"),
        "{unjudged:?}"
    );
    let output = skewtail().args(["replay", "--format", "upstream"]).arg(&log).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("pool quiet.log was never judged: no 10s window had 100 requests"),
        "{text}"
    );
}

/// `replay | head -1`: once the reader of the output is gone, replay stops reading (it does not
/// parse the rest of the file for nobody) and exits cleanly; its log says where it stopped.
#[test]
fn replay_stops_reading_when_its_output_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { duration_s: 6 * 3600, ..skew_scenario() };
    let (log, n_lines) = write_log(dir.path(), "access.log", &scenario);
    let stderr_path = dir.path().join("stderr.txt");
    let mut child = skewtail()
        .env("SKEWTAIL_LOG", "info")
        .args(["replay", "--json"])
        .arg(&log)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let exited = wait_until(Duration::from_secs(60), || child.try_wait().unwrap().is_some());
    if !exited {
        child.kill().unwrap();
    }
    let status = child.wait().unwrap();
    let log_text = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(exited, "replay kept running after its output was closed:\n{log_text}");
    assert!(first.starts_with('{'), "the first line is not JSON: {first}");
    assert!(status.success(), "{status}:\n{log_text}");
    let stopped = log_text
        .lines()
        .find(|l| l.contains("The output was closed"))
        .unwrap_or_else(|| panic!("no word of the closed output:\n{log_text}"));
    let read: u64 = stopped
        .split_whitespace()
        .find_map(|w| w.strip_prefix("lines="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line count in {stopped}"));
    assert!(read < n_lines / 2, "read {read} of {n_lines} lines after the output closed");
}
