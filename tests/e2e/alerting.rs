//! Alerting end to end: `replay --notify` and `run` against strict stand-ins for Slack,
//! PagerDuty and a signed webhook on 127.0.0.1, with faults (down, hanging, rate limiting,
//! `kill -9`), names from logs built to inject, and a real Alertmanager cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use skewtail::synth::{Incident, Scenario};

use crate::receivers::{Faults, Hit, Receiver, Vendor};
use crate::util::*;

const PD_KEY: &str = "0123456789abcdef0123456789abcdef";
const SIGNING_KEY: [u8; 32] = *b"0123456789abcdef0123456789ABCDEF";

fn secret_text() -> String {
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(SIGNING_KEY))
}

fn config(dir: &Path, sinks: &str) -> PathBuf {
    let path = dir.join("skewtail.toml");
    std::fs::write(
        &path,
        format!("max_line_bytes = 400000\n\n[[input]]\npath = \"access.log\"\nformat = \"upstream\"\npool = \"api\"\nstart_at = \"beginning\"\n\n{sinks}"),
    )
    .unwrap();
    path
}

fn webhook_sink(url: &str, extra: &str) -> String {
    format!(
        "[[sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{url}\"\nsecret_env = \"TEST_HOOK_SECRET\"\n{extra}\n"
    )
}

/// The notices (`alerts[]`) of every accepted webhook message, in arrival order.
fn webhook_alerts(hits: &[Hit]) -> Vec<Value> {
    hits.iter().flat_map(|h| h.body["alerts"].as_array().cloned().unwrap_or_default()).collect()
}

/// Each key at most once, and per fingerprint the firing before its resolve.
fn assert_once_and_in_order(alerts: &[Value]) {
    let mut keys = BTreeMap::new();
    let mut state_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for alert in alerts {
        let key = alert["key"].as_str().unwrap().to_string();
        *keys.entry(key.clone()).or_insert(0) += 1;
        state_of
            .entry(alert["fingerprint"].as_str().unwrap().to_string())
            .or_default()
            .push(alert["state"].as_str().unwrap().to_string());
    }
    assert!(keys.values().all(|n| *n == 1), "a state change delivered twice: {keys:?}");
    for (fingerprint, states) in state_of {
        for pair in states.windows(2) {
            assert_ne!(pair[0], pair[1], "{fingerprint}: {states:?} (out of order or doubled)");
        }
        assert_eq!(states[0], "firing", "{fingerprint}: {states:?}");
    }
}

#[test]
fn replay_notify_reaches_every_sink_in_its_own_contract() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let slack = Receiver::start(&runtime, Vendor::Slack, Faults::default(), 0);
    let pagerduty = Receiver::start(&runtime, Vendor::PagerDuty, Faults::default(), 0);
    let hook =
        Receiver::start(&runtime, Vendor::Signed(SIGNING_KEY.to_vec()), Faults::default(), 0);
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), "access.log", &skew_scenario());
    let sinks = format!(
        "[[sink]]\nname = \"chat\"\ntype = \"slack\"\nurl_env = \"TEST_SLACK_URL\"\ndashboard_url = \"https://dashboard.example.com/d/skew\"\n\n\
         [[sink]]\nname = \"oncall\"\ntype = \"pagerduty\"\nurl = \"{}\"\nrouting_key_env = \"TEST_PD_KEY\"\n\n{}\n\
         [[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"alerts.ndjson\"\n",
        pagerduty.url,
        webhook_sink(&hook.url, "")
    );
    let config = config(dir.path(), &sinks);

    // Without --notify nothing is contacted, and the secrets need not even be set.
    let quiet = skewtail().args(["replay", "--json", "--config"]).arg(&config).output().unwrap();
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert!(slack.hits().is_empty() && pagerduty.hits().is_empty() && hook.hits().is_empty());

    let output = skewtail()
        .args(["replay", "--json", "--notify", "--config"])
        .arg(&config)
        .env("TEST_SLACK_URL", &slack.url)
        .env("TEST_PD_KEY", PD_KEY)
        .env("TEST_HOOK_SECRET", secret_text())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = ndjson(&output);
    let alerts = of_type(&objects, "alert");
    let firing = alerts.iter().filter(|a| a["state"] == "firing").count();
    let resolved = alerts.len() - firing;
    assert!(firing >= 1 && resolved >= 1, "{alerts:?}");

    for (name, receiver) in [("slack", &slack), ("pagerduty", &pagerduty), ("webhook", &hook)] {
        for hit in receiver.hits() {
            assert!(hit.problems.is_empty(), "{name}: {:?} in {}", hit.problems, hit.body);
        }
    }
    // One Slack message per state change (no group_wait), the fallback text first.
    assert_eq!(slack.accepted().len(), alerts.len());
    assert!(slack.accepted()[0].body["text"].as_str().unwrap().contains("FIRING"));
    // PagerDuty: trigger, then resolve with the same dedup_key.
    let events: Vec<(String, String)> = pagerduty
        .accepted()
        .iter()
        .map(|h| {
            (
                h.body["event_action"].as_str().unwrap().into(),
                h.body["dedup_key"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(events.iter().filter(|e| e.0 == "trigger").count(), firing);
    assert_eq!(events.iter().filter(|e| e.0 == "resolve").count(), resolved);
    for (action, key) in &events {
        if action == "resolve" {
            assert!(events.iter().any(|(a, k)| a == "trigger" && k == key), "{events:?}");
        }
    }
    let trigger =
        pagerduty.accepted().into_iter().find(|h| h.body["event_action"] == "trigger").unwrap();
    for field in ["severity", "source", "component", "group", "class", "custom_details"] {
        assert!(
            !trigger.body["payload"][field].is_null(),
            "payload.{field} missing: {}",
            trigger.body
        );
    }
    // The signed webhook: verified by the receiver; one id per message, each change once.
    let ids: Vec<String> =
        hook.accepted().iter().map(|h| h.headers["webhook-id"].clone()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    assert_once_and_in_order(&webhook_alerts(&hook.accepted()));
    assert_eq!(webhook_alerts(&hook.accepted()).len(), alerts.len());
    // The file sink: the same NDJSON alerts as the report.
    let archived = std::fs::read_to_string(dir.path().join("alerts.ndjson")).unwrap();
    assert_eq!(archived.lines().count(), alerts.len());
    let delivery = &summary(&objects)["delivery"];
    // Slack, the webhook and the file: one message per change; PagerDuty: one per change too.
    assert_eq!(delivery["delivered"], 4 * alerts.len() as u64, "{delivery}");
    let log = stderr(&output);
    assert!(!log.contains("/services/T000") && !log.contains(PD_KEY), "secrets in the log: {log}");
}

#[test]
fn a_receiver_down_for_30_seconds_then_up_gets_everything_once_in_order() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), "access.log", &skew_scenario());
    let url = format!("http://127.0.0.1:{port}/hooks/incoming");
    let config = config(dir.path(), &webhook_sink(&url, ""));
    let started = Instant::now();
    let child = skewtail()
        .args(["replay", "--json", "--notify", "--delivery-timeout", "150", "--config"])
        .arg(&config)
        .env("TEST_HOOK_SECRET", secret_text())
        .env("SKEWTAIL_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its output is read as it comes, so that the replay reaches its alerts while the
    // receiver is down (a full pipe would hold it back until the receiver is up).
    let child = drained(KillOnDrop(child));
    std::thread::sleep(Duration::from_secs(30));
    let hook =
        Receiver::start(&runtime, Vendor::Signed(SIGNING_KEY.to_vec()), Faults::default(), port);
    let output = child.output(Duration::from_secs(170));
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = ndjson(&output);
    let alerts = of_type(&objects, "alert");
    let delivered = webhook_alerts(&hook.accepted());
    assert_eq!(delivered.len(), alerts.len(), "every alert, after the outage");
    assert_once_and_in_order(&delivered);
    assert!(hook.hits()[0].at.duration_since(started) >= Duration::from_secs(30));
    let log = stderr(&output);
    assert!(log.contains("connection refused"), "the cause is named: {log}");
}

#[test]
fn a_hanging_receiver_times_out_and_the_retry_carries_the_same_id() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let faults = Faults { hang_first: Some(Duration::from_secs(4)), ..Faults::default() };
    let hook = Receiver::start(&runtime, Vendor::Signed(SIGNING_KEY.to_vec()), faults, 0);
    let dir = tempfile::tempdir().unwrap();
    let (_, n_lines) = write_log(dir.path(), "access.log", &skew_scenario());
    let config = config(dir.path(), &webhook_sink(&hook.url, "timeout_s = 1"));
    let output = skewtail()
        .args(["replay", "--json", "--notify", "--config"])
        .arg(&config)
        .env("TEST_HOOK_SECRET", secret_text())
        .env("SKEWTAIL_LOG", "info")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(summary(&ndjson(&output))["parsed"], n_lines, "ingestion unaffected");
    let hits = hook.hits();
    assert_eq!(hits[0].status, 0, "the first request hung and was given up on");
    let first_id = &hits.iter().min_by_key(|h| h.at).unwrap().headers["webhook-id"];
    let same: Vec<&Hit> = hits.iter().filter(|h| &h.headers["webhook-id"] == first_id).collect();
    assert!(same.len() >= 2, "the retry of the timed-out message has the same webhook-id");
    assert!(stderr(&output).contains("timed out"), "{}", stderr(&output));
}

#[test]
fn rate_limits_are_waited_out_as_the_receiver_asks() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let faults = Faults { rate_limit_first: 2, ..Faults::default() };
    let slack = Receiver::start(&runtime, Vendor::Slack, faults.clone(), 0);
    let pagerduty = Receiver::start(&runtime, Vendor::PagerDuty, faults, 0);
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), "access.log", &skew_scenario());
    let sinks = format!(
        "[[sink]]\ntype = \"slack\"\nurl = \"{}\"\n\n[[sink]]\ntype = \"pagerduty\"\nurl = \"{}\"\nrouting_key = \"{PD_KEY}\"\n",
        slack.url, pagerduty.url
    );
    let config = config(dir.path(), &sinks);
    let output = skewtail()
        .args(["replay", "--json", "--notify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    for receiver in [&slack, &pagerduty] {
        let hits = receiver.hits();
        assert_eq!(hits.iter().filter(|h| h.status == 429).count(), 2);
        // Retry-After: 1 means the next attempt comes a second later, not at once.
        let gap = hits[2].at.duration_since(hits[1].at);
        assert!(gap >= Duration::from_millis(950), "{gap:?}");
        assert_eq!(receiver.accepted().len(), of_type(&ndjson(&output), "alert").len());
    }
}

#[test]
fn names_from_logs_arrive_escaped_and_truncated() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let slack = Receiver::start(&runtime, Vendor::Slack, Faults::default(), 0);
    let pagerduty = Receiver::start(&runtime, Vendor::PagerDuty, Faults::default(), 0);
    let hook =
        Receiver::start(&runtime, Vendor::Signed(SIGNING_KEY.to_vec()), Faults::default(), 0);
    let dir = tempfile::tempdir().unwrap();
    let long_name = format!("{}:8080", "x".repeat(100_000));
    let mut backends: Vec<String> = (1..=8).map(|i| format!("10.0.1.{i}:8080")).collect();
    backends[2] = "<!channel>".to_string();
    backends[5] = long_name.clone();
    let scenario = Scenario {
        backends,
        incidents: vec![
            Incident {
                start_s: 15 * 60,
                duration_s: 15 * 60,
                backend: 2,
                share: Some(0.45),
                ..Incident::default()
            },
            Incident {
                start_s: 15 * 60,
                duration_s: 15 * 60,
                backend: 5,
                share: Some(0.01),
                ..Incident::default()
            },
        ],
        ..skew_scenario()
    };
    write_log(dir.path(), "access.log", &scenario);
    let sinks = format!(
        "[[sink]]\ntype = \"slack\"\nurl = \"{}\"\n\n[[sink]]\ntype = \"pagerduty\"\nurl = \"{}\"\nrouting_key = \"{PD_KEY}\"\n\n{}",
        slack.url,
        pagerduty.url,
        webhook_sink(&hook.url, "")
    );
    let config = config(dir.path(), &sinks);
    let output = skewtail()
        .args(["replay", "--json", "--notify", "--config"])
        .arg(&config)
        .env("TEST_HOOK_SECRET", secret_text())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = ndjson(&output);
    let alerts = of_type(&objects, "alert");
    assert!(alerts.iter().any(|a| a["backend"] == "<!channel>"), "{alerts:?}");
    assert!(
        alerts.iter().any(|a| a["backend"] == long_name.as_str()),
        "the long name was judged too"
    );
    for (name, receiver) in [("slack", &slack), ("pagerduty", &pagerduty), ("webhook", &hook)] {
        assert_eq!(
            receiver.accepted().len(),
            receiver.hits().len(),
            "{name}: refused {:?}",
            receiver.hits().iter().map(|h| &h.problems).collect::<Vec<_>>()
        );
        assert!(!receiver.accepted().is_empty());
    }
    let slack_text: String = slack.accepted().iter().map(|h| h.body.to_string()).collect();
    assert!(slack_text.contains("&lt;!channel&gt;"), "escaped, and still readable");
    // The long name arrives cut, everywhere.
    for hit in
        slack.accepted().iter().chain(pagerduty.accepted().iter()).chain(hook.accepted().iter())
    {
        let mut texts = Vec::new();
        crate::receivers::strings(&hit.body, &mut texts);
        assert!(texts.iter().all(|t| t.chars().count() <= 3000), "a string over 3000 characters");
        assert!(
            hit.headers.values().all(|v| v.len() < 300),
            "headers stay short: {:?}",
            hit.headers.keys()
        );
    }
}

#[test]
fn kill_9_between_trigger_and_resolve_sends_one_trigger_and_one_resolve_to_every_sink() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let hook =
        Receiver::start(&runtime, Vendor::Signed(SIGNING_KEY.to_vec()), Faults::default(), 0);
    let slack = Receiver::start(&runtime, Vendor::Slack, Faults::default(), 0);
    let pagerduty = Receiver::start(&runtime, Vendor::PagerDuty, Faults::default(), 0);
    let dir = tempfile::tempdir().unwrap();
    let (_alertmanagers, am_ports) = alertmanager_cluster(dir.path());
    let am_urls: Vec<String> =
        am_ports.iter().map(|p| format!("\"http://127.0.0.1:{p}\"")).collect();
    let sinks = format!(
        "{}\n[[sink]]\nname = \"chat\"\ntype = \"slack\"\nurl = \"{}\"\n\n\
         [[sink]]\nname = \"oncall\"\ntype = \"pagerduty\"\nurl = \"{}\"\nrouting_key = \"{PD_KEY}\"\n\n\
         [[sink]]\nname = \"am\"\ntype = \"alertmanager\"\nurls = [{}]\n\n\
         [[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"alerts.ndjson\"\n",
        webhook_sink(&hook.url, ""),
        slack.url,
        pagerduty.url,
        am_urls.join(", ")
    );
    let config = config(dir.path(), &sinks);
    let state = dir.path().join("state");
    let mut log = Vec::new();
    skew_scenario().write(&mut log).unwrap();
    let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
    // Up to minute 22 (the skew fires near minute 15:30), then the rest (it resolves after 30).
    let cut = lines.len() * 22 / 40;
    let access = dir.path().join("access.log");
    std::fs::write(&access, lines[..cut].concat()).unwrap();
    let start = || {
        KillOnDrop(
            skewtail()
                .args(["run", "--listen", "127.0.0.1:0", "--config"])
                .arg(&config)
                .arg("--state-dir")
                .arg(&state)
                .env("TEST_HOOK_SECRET", secret_text())
                .env("SKEWTAIL_LOG", "info")
                .stdout(Stdio::null())
                .stderr(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.path().join("stderr"))
                        .unwrap(),
                )
                .spawn()
                .unwrap(),
        )
    };
    let first = start();
    let fired = hook.wait_for(Duration::from_secs(60), |hits| {
        webhook_alerts(hits).iter().any(|a| a["kind"] == "skew" && a["state"] == "firing")
    });
    assert!(fired, "{}", std::fs::read_to_string(dir.path().join("stderr")).unwrap());
    let on_every_alertmanager = |firing: bool| {
        am_ports.iter().all(|port| {
            active_alerts(*port).iter().any(|a| a["labels"]["alertname"] == "SkewtailSkew")
                == firing
        })
    };
    assert!(wait_until(Duration::from_secs(20), || on_every_alertmanager(true)));
    // kill -9 right after the trigger was accepted: the snapshot may well be older.
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &first.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    drop(first);
    let second = start();
    let mut file = std::fs::OpenOptions::new().append(true).open(&access).unwrap();
    std::io::Write::write_all(&mut file, &lines[cut..].concat()).unwrap();
    let resolved = hook.wait_for(Duration::from_secs(90), |hits| {
        webhook_alerts(hits).iter().any(|a| a["kind"] == "skew" && a["state"] == "resolved")
    });
    assert!(resolved, "{}", std::fs::read_to_string(dir.path().join("stderr")).unwrap());
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &second.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    drop(second);
    let skew: Vec<Value> =
        webhook_alerts(&hook.accepted()).into_iter().filter(|a| a["kind"] == "skew").collect();
    let states: Vec<&str> = skew.iter().map(|a| a["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["firing", "resolved"], "exactly one trigger and one resolve");
    assert_once_and_in_order(&webhook_alerts(&hook.accepted()));
    // Every other sink: the same one trigger and one resolve, in its own contract.
    for receiver in [&slack, &pagerduty, &hook] {
        assert!(receiver.hits().iter().all(|h| h.problems.is_empty()), "{:?}", receiver.hits());
    }
    let slack_skew: Vec<String> = slack
        .accepted()
        .iter()
        .map(|h| h.body["text"].as_str().unwrap().to_string())
        .filter(|text| text.contains("skew"))
        .collect();
    assert_eq!(slack_skew.len(), 2, "{slack_skew:?}");
    assert!(slack_skew[0].starts_with("FIRING") && slack_skew[1].starts_with("RESOLVED"));
    let pd_skew: Vec<String> = pagerduty
        .accepted()
        .iter()
        .filter(|h| h.body["dedup_key"].as_str().unwrap().contains("/skew/"))
        .map(|h| h.body["event_action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pd_skew, ["trigger", "resolve"]);
    let archived = std::fs::read_to_string(dir.path().join("alerts.ndjson")).unwrap();
    let archived: Vec<Value> = archived
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|a| a["kind"] == "skew")
        .collect();
    let archived: Vec<&str> = archived.iter().map(|a| a["state"].as_str().unwrap()).collect();
    assert_eq!(archived, ["firing", "resolved"]);
    for port in am_ports {
        let alerts = active_alerts(port);
        assert!(alerts.iter().all(|a| a["labels"]["alertname"] != "SkewtailSkew"), "{alerts:?}");
    }
}

#[test]
fn alert_test_reports_what_each_sink_answered() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let slack = Receiver::start(&runtime, Vendor::Slack, Faults::default(), 0);
    let pagerduty = Receiver::start(&runtime, Vendor::PagerDuty, Faults::default(), 0);
    let dir = tempfile::tempdir().unwrap();
    let down = format!("http://127.0.0.1:{}/hooks/incoming", free_port());
    let sinks = format!(
        "[[sink]]\ntype = \"slack\"\nurl = \"{}\"\n\n[[sink]]\ntype = \"pagerduty\"\nurl = \"{}\"\nrouting_key = \"{PD_KEY}\"\n\n{}\n\
         [[route]]\nname = \"pages\"\nsinks = [\"pagerduty\"]\nmatch = {{ severity = \"critical\" }}\n\n\
         [[route]]\nname = \"chat\"\nsinks = [\"slack\", \"hook\"]\n",
        slack.url,
        pagerduty.url,
        webhook_sink(&down, "timeout_s = 2")
    );
    let config = config(dir.path(), &sinks);
    let output = skewtail()
        .args(["alert", "test", "--route", "pages", "--config"])
        .arg(&config)
        .env("TEST_HOOK_SECRET", secret_text())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("pagerduty: OK, accepted (202), accepted (202)"), "{text}");
    assert!(slack.hits().is_empty(), "only the route's sinks");
    let actions: Vec<String> = pagerduty
        .hits()
        .iter()
        .map(|h| h.body["event_action"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"], "the test leaves no incident open");
    assert!(pagerduty.hits()[0].body["payload"]["summary"].as_str().unwrap().contains("TEST"));

    let output = skewtail()
        .args(["alert", "test", "--config"])
        .arg(&config)
        .env("TEST_HOOK_SECRET", secret_text())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("slack: OK, accepted (200)"), "{text}");
    assert!(text.contains("hook: FAILED, connection refused"), "{text}");
}

#[test]
fn silences_are_added_listed_and_expired() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let add = skewtail()
        .args([
            "silence",
            "add",
            "backend=10.0.1.3:*",
            "kind=skew",
            "--duration",
            "1h",
            "--comment",
            "maintenance <!channel>",
            "--state-dir",
        ])
        .arg(&state)
        .output()
        .unwrap();
    assert!(add.status.success(), "{}", stderr(&add));
    let id = String::from_utf8_lossy(&add.stdout).split_whitespace().next().unwrap().to_string();
    let list = skewtail().args(["silence", "list", "--state-dir"]).arg(&state).output().unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains(&id) && text.contains("active") && text.contains("backend=10.0.1.3:*"),
        "{text}"
    );
    let bad = skewtail()
        .args(["silence", "add", "colour=red", "--comment", "x", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("unknown field `colour`"), "{}", stderr(&bad));
    let expire =
        skewtail().args(["silence", "expire", &id, "--state-dir"]).arg(&state).output().unwrap();
    assert!(expire.status.success());
    let list = skewtail().args(["silence", "list", "--state-dir"]).arg(&state).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("expired"));
}

/// A child whose stdout and stderr are read as it runs (so a full pipe never stops it).
struct Drained {
    child: KillOnDrop,
    out: std::thread::JoinHandle<Vec<u8>>,
    err: std::thread::JoinHandle<Vec<u8>>,
}

fn drained(mut child: KillOnDrop) -> Drained {
    let read_all = |mut from: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut from, &mut buf).unwrap();
            buf
        })
    };
    let out = read_all(Box::new(child.0.stdout.take().unwrap()));
    let err = read_all(Box::new(child.0.stderr.take().unwrap()));
    Drained { child, out, err }
}

impl Drained {
    /// Waits for the exit, at most `limit`; what it printed.
    fn output(mut self, limit: Duration) -> std::process::Output {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < limit, "still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        std::process::Output {
            status,
            stdout: self.out.join().unwrap(),
            stderr: self.err.join().unwrap(),
        }
    }
}

/// A process stopped with SIGTERM (then waited for, at most 10 s) when the test ends.
pub struct Service(pub std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ =
            std::process::Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two real Alertmanagers in one cluster on 127.0.0.1 with a receiver that discards;
/// returns them and their web ports.
fn alertmanager_cluster(dir: &Path) -> (Vec<Service>, Vec<u16>) {
    alertmanager_cluster_with(dir, "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n")
}

/// Two real Alertmanagers in one cluster on 127.0.0.1 with `config` (YAML); returns them and
/// their web ports.
pub fn alertmanager_cluster_with(dir: &Path, config_text: &str) -> (Vec<Service>, Vec<u16>) {
    let config = dir.join("alertmanager.yml");
    std::fs::write(&config, config_text).unwrap();
    // Ports are picked free but another test may take one first: an instance that cannot
    // bind exits, and the cluster is started again on new ports (at most three times).
    for attempt in 0..3 {
        let web = [free_port(), free_port()];
        let gossip = [free_port(), free_port()];
        let mut services = Vec::new();
        for i in 0..2 {
            let child = std::process::Command::new("prometheus-alertmanager")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", dir.join(format!("am{attempt}-{i}")).display()))
                .arg(format!("--web.listen-address=127.0.0.1:{}", web[i]))
                .arg(format!("--cluster.listen-address=127.0.0.1:{}", gossip[i]))
                .arg(format!("--cluster.peer=127.0.0.1:{}", gossip[1 - i]))
                .arg("--cluster.peer-timeout=3s")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join(format!("am{i}.log"))).unwrap())
                .spawn()
                .expect("prometheus-alertmanager (apt-get install prometheus-alertmanager)");
            services.push(Service(child));
        }
        for (i, port) in web.iter().enumerate() {
            wait_for_port(*port, || {
                std::fs::read_to_string(dir.join(format!("am{i}.log"))).unwrap_or_default()
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        if services.iter_mut().all(|s| matches!(s.0.try_wait(), Ok(None))) {
            return (services, web.to_vec());
        }
    }
    panic!(
        "the Alertmanager cluster did not start: {}",
        std::fs::read_to_string(dir.join("am0.log")).unwrap_or_default()
    );
}

/// The alerts an Alertmanager holds as active.
fn active_alerts(port: u16) -> Vec<Value> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("http://127.0.0.1:{port}/api/v2/alerts");
        reqwest::get(url).await.unwrap().json::<Vec<Value>>().await.unwrap()
    })
}

#[test]
fn a_real_alertmanager_cluster_gets_the_alert_on_every_instance_then_its_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let (_services, ports) = alertmanager_cluster(dir.path());
    let urls: Vec<String> = ports.iter().map(|p| format!("\"http://127.0.0.1:{p}\"")).collect();
    let sinks = format!(
        "[[sink]]\nname = \"am\"\ntype = \"alertmanager\"\nurls = [{}]\nlabels = {{ cluster = \"test\" }}\n",
        urls.join(", ")
    );
    let config = config(dir.path(), &sinks);
    // First a log that ends with the skew still firing.
    let still_firing = Scenario {
        incidents: vec![Incident { duration_s: 25 * 60, ..skew_scenario().incidents[0].clone() }],
        ..skew_scenario()
    };
    write_log(dir.path(), "access.log", &still_firing);
    let output = skewtail()
        .args(["replay", "--json", "--notify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    for port in &ports {
        let alerts = active_alerts(*port);
        let skew = alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == "SkewtailSkew")
            .unwrap_or_else(|| panic!("not on {port}: {alerts:?}"));
        assert_eq!(skew["labels"]["backend"], "10.0.1.3:8080");
        assert_eq!(skew["labels"]["cluster"], "test");
        assert_eq!(skew["labels"]["severity"], "critical");
        assert_eq!(skew["status"]["state"], "active");
        assert!(skew["annotations"]["summary"].as_str().unwrap().contains("10.0.1.3:8080"));
        assert!(unix_s(&skew["endsAt"]) > chrono::Utc::now().timestamp(), "endsAt ahead: {skew}");
    }
    // Then the whole incident: the resolve (endsAt in the past) ends it on both.
    write_log(dir.path(), "access.log", &skew_scenario());
    let output = skewtail()
        .args(["replay", "--json", "--notify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    for port in &ports {
        let alerts = active_alerts(*port);
        assert!(
            alerts.iter().all(|a| a["labels"]["alertname"] != "SkewtailSkew"),
            "resolved on {port}: {alerts:?}"
        );
    }
}
