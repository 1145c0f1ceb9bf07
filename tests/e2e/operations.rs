//! Operations: the sidecar's endpoint (`/metrics`, `/healthz`, `/readyz`, `/api/v1/alerts`)
//! and SIGHUP reloads under load, good and bad.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sidecar::{Sidecar, incident_log, windows_by_key};
use crate::util::*;

const BASE_CONFIG: &str = "[[input]]\npath = \"access.log\"\nformat = \"upstream\"\npool = \"api\"\nstart_at = \"beginning\"\n";

/// GETs `path` on 127.0.0.1:`port`: the status and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

/// The value of the sample `name{labels}` in a scrape, if present.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

fn hangup(sidecar: &Sidecar) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &sidecar.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Sends SIGHUP and waits until the log has one more `text`.
fn reload_and_wait(sidecar: &Sidecar, text: &str) {
    let before = sidecar.log().matches(text).count();
    hangup(sidecar);
    let seen = wait_until(Duration::from_secs(20), || sidecar.log().matches(text).count() > before);
    assert!(seen, "no new `{text}` after SIGHUP:\n{}", sidecar.log());
}

#[test]
fn reloads_under_load_keep_every_line_and_the_firing_alert_and_the_endpoint_tells_all() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skewtail.toml");
    std::fs::write(&config, BASE_CONFIG).unwrap();
    let port = free_port();
    let sidecar = Sidecar::start_listening(
        &config,
        &dir.path().join("state"),
        dir.path().join("run.stderr"),
        &format!("127.0.0.1:{port}"),
    );
    sidecar.wait_for_log("Running.", Duration::from_secs(20));
    assert_eq!(get(port, "/readyz"), (200, "ready\n".to_string()));
    assert_eq!(get(port, "/healthz").0, 200);

    let log = incident_log();
    let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
    let access = dir.path().join("access.log");
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&access).unwrap();
    let mut saw_firing_on_the_endpoint = false;
    for (index, burst) in lines.chunks(lines.len() / 40 + 1).enumerate() {
        for line in burst {
            std::io::Write::write_all(&mut file, line).unwrap();
        }
        std::thread::sleep(Duration::from_millis(30));
        match index {
            // A good reload that adds a sink: the alerts after it reach that sink too.
            8 => {
                std::fs::write(
                    &config,
                    format!("{BASE_CONFIG}\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"alerts.ndjson\"\n"),
                )
                .unwrap();
                reload_and_wait(&sidecar, "Config reloaded.");
            }
            // A bad one: rejected with file, line and reason; the running config goes on.
            16 => {
                let good = std::fs::read_to_string(&config).unwrap();
                std::fs::write(&config, format!("{good}\n[detector]\nwindow_s = \"ten\"\n"))
                    .unwrap();
                reload_and_wait(&sidecar, "Config reload rejected");
                std::fs::write(&config, good).unwrap();
            }
            // While the skew fires (minute 15 to 30): reloads, and the endpoint shows it.
            24 | 26 => {
                let wait = wait_until(Duration::from_secs(20), || {
                    get(port, "/api/v1/alerts").1.contains("10.0.1.3:8080")
                });
                assert!(wait, "the firing skew is not on /api/v1/alerts:\n{}", sidecar.log());
                let alerts: Value = serde_json::from_str(&get(port, "/api/v1/alerts").1).unwrap();
                assert_eq!(alerts["alerts"][0]["kind"], "skew", "{alerts}");
                assert_eq!(alerts["alerts"][0]["direction"], "over", "{alerts}");
                let scrape = get(port, "/metrics").1;
                assert_eq!(
                    sample(&scrape, r#"skewtail_alerts_firing{pool="api",kind="skew"}"#),
                    Some(1.0),
                    "{scrape}"
                );
                saw_firing_on_the_endpoint = true;
                reload_and_wait(&sidecar, "Config reloaded.");
            }
            _ => {}
        }
    }
    assert!(saw_firing_on_the_endpoint);
    let deadline = Instant::now() + Duration::from_secs(60);
    while windows_by_key(&[sidecar.objects()]).len() < 40 * 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let scrape = get(port, "/metrics").1;
    let log_text = sidecar.log();
    let live = sidecar.stop("-TERM");

    // Every line, once: the windows are exactly replay's.
    let replay_log = dir.path().join("all.log");
    std::fs::write(&replay_log, &log).unwrap();
    let (_, replayed) = replay_json(&replay_log, &["--pool", "api"]);
    let live_windows = windows_by_key(std::slice::from_ref(&live));
    assert_eq!(live_windows, windows_by_key(&[replayed]), "live with reloads vs replay");
    // The metrics count what the windows counted.
    let counted: u64 = live_windows.values().flat_map(|w| w.values()).sum();
    let exported: f64 = scrape
        .lines()
        .filter(|l| l.starts_with(r#"skewtail_backend_requests_total{pool="api","#))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(exported as u64, counted, "{scrape}");
    let expected =
        sample(&scrape, r#"skewtail_backend_expected_share{pool="api",backend="10.0.1.3:8080"}"#);
    assert!(expected.is_some_and(|e| (0.08..0.2).contains(&e)), "{scrape}");
    assert!(
        sample(&scrape, r#"skewtail_lines_total{input="access.log",result="counted"}"#).is_some()
    );
    assert_eq!(sample(&scrape, r#"skewtail_tail_lag_bytes{input="access.log"}"#), Some(0.0));
    assert!(sample(&scrape, "skewtail_checkpoint_age_seconds").is_some_and(|age| age < 10.0));

    // The firing alert survived three reloads: it fired once and resolved once.
    let skew: Vec<&str> = live
        .iter()
        .filter(|o| o["type"] == "alert" && o["kind"] == "skew")
        .map(|o| o["state"].as_str().unwrap())
        .collect();
    assert_eq!(skew, ["firing", "resolved"], "{log_text}");
    // The sink added by the first reload got the resolve.
    let archived = std::fs::read_to_string(dir.path().join("alerts.ndjson")).unwrap_or_default();
    assert!(archived.contains("\"resolved\""), "{archived}\n{log_text}");
    // The bad config was named with its line and the fix.
    assert_eq!(log_text.matches("Config reload rejected").count(), 1, "{log_text}");
    assert!(log_text.contains("skewtail.toml:"), "{log_text}");
    assert!(log_text.matches("Config reloaded.").count() >= 3);
}

#[test]
fn the_endpoint_can_be_turned_off_and_a_port_in_use_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skewtail.toml");
    std::fs::write(&config, format!("{BASE_CONFIG}\n[server]\nlisten = \"127.0.0.1:{}\"\n", 1))
        .unwrap();
    std::fs::write(dir.path().join("access.log"), "").unwrap();
    // A port held by another process.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let output = skewtail()
        .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        stderr(&output)
    );
    // A listen value that is not an address: the config's line and the fix.
    std::fs::write(&config, format!("{BASE_CONFIG}\n[server]\nlisten = \"everywhere\"\n")).unwrap();
    let output = skewtail().args(["check", "--config"]).arg(&config).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("skewtail.toml:8: listen = \"everywhere\" is not ADDR:PORT"),
        "{}",
        stderr(&output)
    );
    // Off: it runs without listening (SIGTERM ends it cleanly).
    std::fs::write(&config, format!("{BASE_CONFIG}\n[server]\nlisten = \"off\"\n")).unwrap();
    let sidecar =
        Sidecar::start_listening(&config, &dir.path().join("state"), dir.path().join("err"), "off");
    sidecar.wait_for_log("Running.", Duration::from_secs(20));
    assert!(!sidecar.log().contains("Serving /metrics"));
    sidecar.stop("-TERM");
}
