//! A real nginx balancing real requests over four local servers, logging with skewtail's
//! `upstream` format: a bad weight found in replay, the cold-start story live, and a rolling
//! restart that must not page while a bad weight after it still does.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::balancers::{Nginx, Traffic, UPSTREAM_FORMAT, Upstreams};
use crate::util::*;

/// `skewtail run` with a config, its stdout (the stdout sink's NDJSON) read as it comes.
struct LiveSidecar {
    process: KillOnDrop,
    stderr: PathBuf,
    rx: mpsc::Receiver<(Instant, Value)>,
    /// What it printed so far, with when it arrived.
    alerts: Vec<(Instant, Value)>,
}

impl LiveSidecar {
    fn start(dir: &Path, config: &Path) -> Self {
        let stderr = dir.join("skewtail.stderr");
        let mut process = KillOnDrop(
            skewtail()
                .args(["run", "--listen", "127.0.0.1:0", "--config"])
                .arg(config)
                .arg("--state-dir")
                .arg(dir.join("state"))
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&stderr).unwrap())
                .spawn()
                .unwrap(),
        );
        let stdout = process.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<(Instant, Value)>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let alert = serde_json::from_str(&line).unwrap_or(Value::Null);
                if tx.send((Instant::now(), alert)).is_err() {
                    break;
                }
            }
        });
        LiveSidecar { process, stderr, rx, alerts: Vec::new() }
    }

    /// Collects what it prints until `done` holds or `deadline` passes; whether `done` held.
    fn collect_until(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&[(Instant, Value)]) -> bool,
    ) -> bool {
        while Instant::now() < deadline {
            if let Ok(alert) = self.rx.recv_timeout(Duration::from_millis(200)) {
                self.alerts.push(alert);
            }
            if done(&self.alerts) {
                return true;
            }
        }
        false
    }

    /// Stops it with SIGTERM (a clean stop, within 20 s); returns all it printed, and its log.
    fn stop(mut self) -> (Vec<(Instant, Value)>, String) {
        let pid = self.process.0.id().to_string();
        assert!(
            std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success()
        );
        let started = Instant::now();
        while self.process.0.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "skewtail did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        while let Ok(alert) = self.rx.recv_timeout(Duration::from_millis(200)) {
            self.alerts.push(alert);
        }
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        (std::mem::take(&mut self.alerts), log)
    }
}

/// One line per alert, for failure messages.
fn brief(alerts: &[(Instant, Value)]) -> Vec<String> {
    alerts
        .iter()
        .map(|(_, a)| {
            format!(
                "{} {} {} {} {}",
                a["state"], a["severity"], a["kind"], a["backend"], a["summary"]
            )
        })
        .collect()
}

#[test]
fn real_nginx_with_a_bad_weight_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(dir.path(), 4, &[5, 1, 1, 1]);
    let n_sent = send_traffic(nginx.front);
    assert!(n_sent > 400, "only {n_sent} requests went through");
    let backend_names = nginx.backend_names();
    nginx.stop();

    let input =
        format!("path = \"access.log\"\nlog_format = '''{}'''", UPSTREAM_FORMAT.trim_matches('\''));
    let config = short_window_config(dir.path(), &input, "api", &backend_names);
    let n_sent = n_sent as u64;
    assert_only_culprit_flagged(&config, n_sent..=n_sent, &backend_names[0]);
}

/// The story, compressed: 4 equal servers and no weights in skewtail's config; a
/// while after skewtail starts (inside its warm-up), one server is reloaded to `weight=10`;
/// later the config is fixed. The skew must be reported within 60 s of the bad reload,
/// resolve after the fix, and nothing may be left firing.
#[test]
fn real_nginx_cold_start_skew_is_reported_live_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(dir.path(), 4, &[]);
    std::fs::write(nginx.access_log(), "").unwrap();
    let config = dir.path().join("skewtail.toml");
    std::fs::write(
        &config,
        format!(
            "[detector]\nwindow_s = 2\nlateness_s = 1\nfor_s = 6\nresolve_for_s = 6\nmin_requests = 30\nwarmup_s = 300\n\n[[input]]\npath = \"access.log\"\nlog_format = '''{}'''\npool = \"api\"\nstart_at = \"beginning\"\n\n[[sink]]\ntype = \"stdout\"\n",
            UPSTREAM_FORMAT.trim_matches('\'')
        ),
    )
    .unwrap();
    let mut sidecar = LiveSidecar::start(dir.path(), &config);
    let traffic = Traffic::start(nginx.front, 150);

    // 40 s of normal traffic, then the bad reload: well inside the 5-minute warm-up.
    std::thread::sleep(Duration::from_secs(40));
    nginx.reload(&[10, 1, 1, 1]);
    let bad_reload = Instant::now();
    std::thread::sleep(Duration::from_secs(40));
    nginx.reload(&[]);
    let fixed = Instant::now();
    let culprit = nginx.backend_names()[0].clone();

    sidecar.collect_until(fixed + Duration::from_secs(40), |alerts| {
        alerts.iter().any(|(_, a)| a["state"] == "resolved" && a["backend"] == *culprit)
    });
    let sent = traffic.stop();
    let (alerts, log) = sidecar.stop();
    nginx.stop();
    let brief = brief(&alerts);
    assert!(sent > 10_000, "only {sent} requests went through");

    let fired = alerts
        .iter()
        .find(|(_, a)| a["state"] == "firing" && a["kind"] == "skew" && a["backend"] == *culprit)
        .unwrap_or_else(|| panic!("the skew was not reported: {brief:#?}\n{log}"));
    let delay = fired.0.duration_since(bad_reload);
    assert!(delay <= Duration::from_secs(60), "reported {delay:?} after the reload: {brief:#?}");
    assert_eq!(fired.1["direction"], "over");
    assert_eq!(fired.1["evidence"]["expected_from"], "warmup", "{brief:#?}");
    let expected = fired.1["evidence"]["expected_share"].as_f64().unwrap();
    assert!((0.2..0.3).contains(&expected), "learned the skew as normal: expected {expected}");
    assert!(fired.1["summary"].as_str().unwrap().starts_with("balancer: "), "{brief:#?}");
    // Resolved after the fix, and not before it.
    let resolved = alerts
        .iter()
        .find(|(_, a)| a["state"] == "resolved" && a["backend"] == *culprit)
        .unwrap_or_else(|| panic!("the skew never resolved: {brief:#?}\n{log}"));
    assert!(resolved.0 > fixed, "{brief:#?}");
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "cold start: reported {delay:?} after the bad reload, resolved {:?} after the fix",
            resolved.0.duration_since(fixed)
        );
    }
    // Nothing else fired (no `under` on the restored server), and nothing is left firing.
    let firing: Vec<_> = alerts.iter().filter(|(_, a)| a["state"] == "firing").collect();
    let resolves: Vec<_> = alerts.iter().filter(|(_, a)| a["state"] == "resolved").collect();
    assert_eq!(firing.len(), 1, "{brief:#?}");
    assert_eq!(resolves.len(), 1, "{brief:#?}");
}

/// The operations story, compressed: four servers behind a real nginx, no weights in
/// skewtail's config, steady load. Each server in turn is stopped (refusing connections, as a
/// deploy without a drain does) and started again: no page, and one `change` recorded. Then
/// nginx is reloaded with `weight=10` on one server: paged within 60 s, resolved after the fix.
#[test]
fn real_nginx_rolling_restart_is_a_change_and_a_bad_weight_still_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut upstreams = Upstreams::start(4);
    // A deploy-friendly upstream: a failed server is tried again after 2 s (nginx's default
    // of 10 s would keep a restarted server out while the next one stops).
    let nginx =
        Nginx::start_over_with(dir.path(), &upstreams.ports, &[], "max_fails=1 fail_timeout=2s");
    std::fs::write(nginx.access_log(), "").unwrap();
    let config = dir.path().join("skewtail.toml");
    // Two-second windows and every duration scaled down alike: a 30 s grace covers a 6 s stop
    // and the 2 s nginx leaves a failed server alone.
    let detector = "window_s = 2\nlateness_s = 1\nfor_s = 6\nresolve_for_s = 6\nmin_requests = 30\ndeparture_grace_s = 30\nchange_quiet_s = 20";
    let format = UPSTREAM_FORMAT.trim_matches('\'');
    std::fs::write(
        &config,
        format!(
            "[detector]\n{detector}\n\n[[input]]\npath = \"access.log\"\nlog_format = '''{format}'''\npool = \"api\"\nstart_at = \"beginning\"\n\n[[sink]]\ntype = \"stdout\"\n"
        ),
    )
    .unwrap();
    let mut sidecar = LiveSidecar::start(dir.path(), &config);
    let traffic = Traffic::start(nginx.front, 150);
    std::thread::sleep(Duration::from_secs(16));
    let restarts_began = Instant::now();
    for i in 0..4 {
        upstreams.stop(i);
        std::thread::sleep(Duration::from_secs(6));
        upstreams.restart(i);
        std::thread::sleep(Duration::from_secs(4));
    }
    let names = nginx.backend_names();
    // Recorded once the pool has been still for `change_quiet_s` (about 20 s after the last
    // return, 60 s after the first stop when alone); a loaded CI machine may be slower.
    let recorded = sidecar.collect_until(Instant::now() + Duration::from_secs(75), |alerts| {
        alerts.iter().any(|(_, a)| a["state"] == "noted" && a["kind"] == "change")
    });
    let pages_during_restarts: Vec<String> =
        brief(&sidecar.alerts).into_iter().filter(|b| !b.starts_with("\"noted\"")).collect();
    nginx.reload(&[10, 1, 1, 1]);
    let bad_reload = Instant::now();
    let culprit = names[0].clone();
    sidecar.collect_until(bad_reload + Duration::from_secs(60), |alerts| {
        alerts.iter().any(|(_, a)| a["state"] == "firing" && a["backend"] == *culprit)
    });
    nginx.reload(&[]);
    let fixed = Instant::now();
    sidecar.collect_until(fixed + Duration::from_secs(30), |alerts| {
        alerts.iter().any(|(_, a)| a["state"] == "resolved" && a["backend"] == *culprit)
    });
    let sent = traffic.stop();
    let (alerts, log) = sidecar.stop();
    nginx.stop();
    drop(upstreams);
    let brief = brief(&alerts);
    assert!(sent > 10_000, "only {sent} requests went through");
    assert!(recorded, "no change was recorded for the rolling restart: {brief:#?}\n{log}");
    assert!(pages_during_restarts.is_empty(), "the rolling restart paged: {brief:#?}");
    let change = alerts
        .iter()
        .find(|(_, a)| a["state"] == "noted" && a["kind"] == "change")
        .map(|(at, a)| (at, a.clone()))
        .unwrap();
    assert_eq!(change.1["severity"], "info");
    let evidence = &change.1["evidence"]["change"];
    assert_eq!(evidence["operation"], "rolling_restart", "{brief:#?}");
    assert_eq!(evidence["n_backends"], 4, "{brief:#?}");
    assert_eq!(evidence["refused_while_away"], true, "nginx retried the refused requests");
    assert!(change.0.duration_since(restarts_began) < Duration::from_secs(115));
    // The bad weight pages, within 60 s, once, and resolves after the fix.
    let fired: Vec<_> = alerts.iter().filter(|(_, a)| a["state"] == "firing").collect();
    assert_eq!(fired.len(), 1, "{brief:#?}");
    let (fired_at, page) = fired[0];
    assert_eq!(
        (&page["kind"], &page["direction"], &page["backend"]),
        (&"skew".into(), &"over".into(), &Value::from(culprit.as_str())),
        "{brief:#?}"
    );
    assert!(fired_at.duration_since(bad_reload) <= Duration::from_secs(60), "{brief:#?}");
    let resolved = alerts
        .iter()
        .find(|(_, a)| a["state"] == "resolved" && a["backend"] == *culprit)
        .unwrap_or_else(|| panic!("the skew never resolved: {brief:#?}\n{log}"));
    assert!(resolved.0 > fixed, "{brief:#?}");
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "rolling restart: recorded {:?} after it began; bad weight paged {:?} after the reload, resolved {:?} after the fix",
            change.0.duration_since(restarts_began),
            fired_at.duration_since(bad_reload),
            resolved.0.duration_since(fixed)
        );
    }
}
