//! `skewtail run` as a process, its NDJSON read as it comes: for the tests that watch a live
//! sidecar beside a real balancer.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// `skewtail run` with a config, its stdout (the stdout sink's NDJSON) read as it comes.
pub struct LiveSidecar {
    process: KillOnDrop,
    stderr: PathBuf,
    rx: mpsc::Receiver<(Instant, Value)>,
    /// What it printed so far, with when it arrived.
    pub alerts: Vec<(Instant, Value)>,
}

impl LiveSidecar {
    pub fn start(dir: &Path, config: &Path) -> Self {
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
    pub fn collect_until(
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
    pub fn stop(mut self) -> (Vec<(Instant, Value)>, String) {
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
pub fn brief(alerts: &[(Instant, Value)]) -> Vec<String> {
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

/// The culprit's `resolved`, which must come after `fixed` (the fix), not before it.
pub fn resolved_after<'a>(
    alerts: &'a [(Instant, Value)],
    culprit: &str,
    fixed: Instant,
    log: &str,
) -> &'a (Instant, Value) {
    let brief = brief(alerts);
    let resolved = alerts
        .iter()
        .find(|(_, a)| a["state"] == "resolved" && a["backend"] == culprit)
        .unwrap_or_else(|| panic!("the skew never resolved: {brief:#?}\n{log}"));
    assert!(resolved.0 > fixed, "{brief:#?}");
    resolved
}
