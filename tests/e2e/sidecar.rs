//! `skewtail run` as a sidecar: no line lost or counted twice through rename and copytruncate
//! rotations, SIGTERM and `kill -9`; state that survives a restart; live and replay agreeing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use skewtail::synth::{Incident, Scenario};

use crate::util::*;

/// A running `skewtail run --json`, its NDJSON collected as it comes.
pub struct Sidecar {
    child: Option<Child>,
    objects: Arc<Mutex<Vec<Value>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: PathBuf,
}

impl Sidecar {
    fn start(config: &Path, state: &Path, stderr: PathBuf) -> Self {
        Self::start_listening(config, state, stderr, "127.0.0.1:0")
    }

    /// Starts one whose endpoint listens on `listen`.
    pub fn start_listening(config: &Path, state: &Path, stderr: PathBuf, listen: &str) -> Self {
        let mut child = skewtail()
            .args(["run", "--json", "--listen", listen, "--config"])
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .env("SKEWTAIL_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let objects = Arc::new(Mutex::new(Vec::new()));
        let sink = objects.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let object = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                sink.lock().unwrap().push(object);
            }
        });
        Sidecar { child: Some(child), objects, reader: Some(reader), stderr }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the log contains `text`.
    pub fn wait_for_log(&self, text: &str, within: Duration) {
        let started = Instant::now();
        while !self.log().contains(text) {
            assert!(
                started.elapsed() < within,
                "no `{text}` in the log within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The NDJSON objects printed so far.
    pub fn objects(&self) -> Vec<Value> {
        self.objects.lock().unwrap().clone()
    }

    /// Stops it with `signal` and waits (at most 30 s) for it to exit; returns what it printed.
    pub fn stop(mut self, signal: &str) -> Vec<Value> {
        let mut child = self.child.take().unwrap();
        let status = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "skewtail did not stop on {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if signal == "-TERM" {
            assert!(exit.success(), "exit {exit:?} after SIGTERM:\n{}", self.log());
        }
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.objects()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The windows of every run, keyed by (pool, start): a window closed again after a `kill -9`
/// must have the same counts, and is counted once.
pub fn windows_by_key(runs: &[Vec<Value>]) -> BTreeMap<(String, String), BTreeMap<String, u64>> {
    let mut windows: BTreeMap<(String, String), BTreeMap<String, u64>> = BTreeMap::new();
    for object in runs.iter().flatten().filter(|o| o["type"] == "window") {
        let key = (
            object["pool"].as_str().unwrap().to_string(),
            object["start"].as_str().unwrap().to_string(),
        );
        let counts: BTreeMap<String, u64> = object["backends"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(backend, stats)| (backend.clone(), stats["requests"].as_u64().unwrap()))
            .collect();
        if let Some(before) = windows.get(&key) {
            assert_eq!(before, &counts, "window {key:?} closed twice with different counts");
        }
        windows.insert(key, counts);
    }
    windows
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("skewtail.toml");
    std::fs::write(&path, "[[input]]\npath = \"access.log\"\nformat = \"upstream\"\npool = \"api\"\nstart_at = \"beginning\"\n").unwrap();
    path
}

/// The test's log writer: appends lines at a steady pace and rotates the file every
/// `rotate_every` lines, alternately by rename (nginx-style: a few more lines to the old
/// file before reopening) and by copytruncate.
struct Writer {
    path: PathBuf,
    file: std::fs::File,
    rotations: usize,
}

impl Writer {
    fn new(path: PathBuf) -> Self {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        Writer { path, file, rotations: 0 }
    }

    fn rotate(&mut self, lines_for_old_file: &[&[u8]]) {
        self.rotations += 1;
        let rotated = self.path.with_file_name(format!("access.log.{}", self.rotations));
        if self.rotations % 2 == 1 {
            std::fs::rename(&self.path, &rotated).unwrap();
            for line in lines_for_old_file {
                self.file.write_all(line).unwrap();
            }
            self.file =
                std::fs::OpenOptions::new().create(true).append(true).open(&self.path).unwrap();
        } else {
            for line in lines_for_old_file {
                self.file.write_all(line).unwrap();
            }
            std::fs::copy(&self.path, &rotated).unwrap();
            self.file.set_len(0).unwrap();
        }
    }
}

#[test]
fn no_line_is_lost_or_counted_twice_through_rotations_sigterm_and_kill() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let state = dir.path().join("state");
    let stderr = dir.path().join("skewtail.stderr");
    // 500,000+ lines: 17 minutes at 500 requests/s over 8 backends.
    let scenario = Scenario {
        duration_s: 17 * 60,
        rate_per_s: 500.0,
        incidents: vec![],
        ..Scenario::seed_incident()
    };
    let mut log = Vec::new();
    let n_lines = scenario.write(&mut log).unwrap();
    assert!(n_lines >= 500_000, "{n_lines}");
    let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
    let mut truth: BTreeMap<String, u64> = BTreeMap::new();
    scenario
        .generate(|item| {
            if let skewtail::synth::Generated::Request(facts) = item {
                *truth.entry(scenario.backends[facts.backend].clone()).or_default() += 1;
            }
            Ok(())
        })
        .unwrap();

    let mut writer = Writer::new(dir.path().join("access.log"));
    let mut sidecar = Some(Sidecar::start(&config, &state, stderr.clone()));
    sidecar.as_ref().unwrap().wait_for_log("Running.", Duration::from_secs(20));
    let mut runs = Vec::new();
    // Restarts at 20%, 40% (SIGTERM), 60% and 80% (kill -9) of the writing.
    let stops = [
        (lines.len() / 5, "-TERM"),
        (2 * lines.len() / 5, "-KILL"),
        (3 * lines.len() / 5, "-TERM"),
        (4 * lines.len() / 5, "-KILL"),
    ];
    // 500 lines a write; a rotation every 9 writes: over 110 rotations.
    let started = Instant::now();
    let mut written = 0;
    for (chunk_index, chunk) in lines.chunks(500).enumerate() {
        if chunk_index > 0 && chunk_index % 9 == 0 {
            writer.rotate(&chunk[..10]);
            for line in &chunk[10..] {
                writer.file.write_all(line).unwrap();
            }
        } else {
            for line in chunk {
                writer.file.write_all(line).unwrap();
            }
        }
        written += chunk.len();
        for &(at, signal) in &stops {
            if written >= at && written - chunk.len() < at {
                runs.push(sidecar.take().unwrap().stop(signal));
                let restarted = Sidecar::start(&config, &state, stderr.clone());
                sidecar = Some(restarted);
            }
        }
        // About 20,000 lines a second.
        let due = Duration::from_secs_f64(written as f64 / 20_000.0);
        if let Some(rest) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    assert!(writer.rotations >= 100, "{} rotations", writer.rotations);
    // Let it catch up and close the last windows on its idle clock, then stop it.
    let last = sidecar.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut all = runs.concat();
        all.extend(last.objects());
        let seen: u64 = windows_by_key(&[all]).values().flat_map(BTreeMap::values).sum();
        if seen >= n_lines || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let log_text = last.log();
    runs.push(last.stop("-TERM"));

    // The cumulative totals say the same: every line read exactly once.
    let summary =
        runs.last().unwrap().iter().rev().find(|o| o["type"] == "summary").unwrap().clone();
    assert_eq!(summary["lines"], n_lines, "{summary}");
    assert_eq!(summary["parsed"], n_lines, "{summary}");
    assert_eq!(summary["late"], 0, "{summary}");
    let windows = windows_by_key(&runs);
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for counts in windows.values() {
        for (backend, n) in counts {
            *counted.entry(backend.clone()).or_default() += n;
        }
    }
    let total: u64 = counted.values().sum();
    let per_window: Vec<(String, u64)> =
        windows.iter().map(|(k, v)| (k.1.clone(), v.values().sum())).collect();
    assert_eq!(
        total,
        n_lines,
        "requests counted across all runs: {} windows {per_window:?}",
        windows.len()
    );
    assert_eq!(counted, truth, "per backend");
    assert!(log_text.contains("Restored the saved state."), "{log_text}");
}

/// A 40-minute log at 40 requests/s where backend 10.0.1.3 takes 45% from minute 15 to 30.
pub fn incident_log() -> Vec<u8> {
    let scenario = Scenario {
        duration_s: 40 * 60,
        incidents: vec![Incident {
            start_s: 15 * 60,
            duration_s: 15 * 60,
            backend: 2,
            share: Some(0.45),
            ..Incident::default()
        }],
        ..Scenario::seed_incident()
    };
    let mut log = Vec::new();
    scenario.write(&mut log).unwrap();
    log
}

fn append_paced(path: &Path, text: &[u8], pieces: usize) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for piece in text.chunks(text.len() / pieces + 1) {
        file.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn a_restart_keeps_the_baseline_and_the_firing_alert() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let state = dir.path().join("state");
    let stderr = dir.path().join("skewtail.stderr");
    let log = incident_log();
    // Up to minute 22: the skew has fired. Then SIGTERM, restart, and the rest.
    let cut = log.len() * 22 / 40;
    let cut = cut + log[cut..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let first = Sidecar::start(&config, &state, stderr.clone());
    first.wait_for_log("Running.", Duration::from_secs(20));
    append_paced(&dir.path().join("access.log"), &log[..cut], 20);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !first.objects().iter().any(|o| o["type"] == "alert") {
        assert!(Instant::now() < deadline, "no alert before the restart:\n{}", first.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = first.stop("-TERM");
    let second = Sidecar::start(&config, &state, stderr.clone());
    second.wait_for_log("Restored the saved state.", Duration::from_secs(20));
    append_paced(&dir.path().join("access.log"), &log[cut..], 20);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !second.objects().iter().any(|o| o["type"] == "alert") {
        assert!(Instant::now() < deadline, "no resolve after the restart:\n{}", second.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = second.stop("-TERM");
    let alerts = |objects: &[Value]| -> Vec<(String, String, String)> {
        objects
            .iter()
            .filter(|o| o["type"] == "alert")
            .map(|o| {
                (
                    o["state"].as_str().unwrap().into(),
                    o["kind"].as_str().unwrap().into(),
                    o["backend"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let fired = ("firing".to_string(), "skew".to_string(), "10.0.1.3:8080".to_string());
    let resolved = ("resolved".to_string(), "skew".to_string(), "10.0.1.3:8080".to_string());
    assert_eq!(alerts(&before), [fired], "before the restart");
    assert_eq!(alerts(&after), [resolved], "after: it resolves, and does not fire again");
    // No new warm-up: the resolve is judged against the learned baseline.
    let resolve = after.iter().find(|o| o["type"] == "alert").unwrap();
    assert_eq!(resolve["evidence"]["expected_from"], "baseline", "{resolve}");
    assert!(unix_s(&resolve["at"]) - unix_s(&resolve["started_at"]) > 14 * 60, "{resolve}");
}

#[test]
fn live_and_replay_agree_through_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let log = incident_log();
    let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
    let sidecar = Sidecar::start(&config, &dir.path().join("state"), dir.path().join("run.stderr"));
    sidecar.wait_for_log("Running.", Duration::from_secs(20));
    let mut writer = Writer::new(dir.path().join("access.log"));
    for (index, burst) in lines.chunks(2000).enumerate() {
        if index > 0 && index % 5 == 0 {
            writer.rotate(&burst[..5]);
            for line in &burst[5..] {
                writer.file.write_all(line).unwrap();
            }
        } else {
            for line in burst {
                writer.file.write_all(line).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(writer.rotations >= 4);
    // The idle clock closes the last windows; then stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected_windows = 40 * 6;
    while windows_by_key(&[sidecar.objects()]).len() < expected_windows && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let live = sidecar.stop("-TERM");

    let replay_log = dir.path().join("all.log");
    std::fs::write(&replay_log, &log).unwrap();
    let (_, replayed) = replay_json(&replay_log, &["--pool", "api"]);
    let alerts = |objects: &[Value]| -> Vec<Value> {
        objects
            .iter()
            .filter(|o| o["type"] == "alert")
            .map(|o| {
                serde_json::json!([o["state"], o["kind"], o["backend"], o["at"], o["started_at"]])
            })
            .collect()
    };
    assert_eq!(alerts(&live), alerts(&replayed));
    assert_eq!(alerts(&live).len(), 2, "{:?}", alerts(&live));
    assert_eq!(windows_by_key(&[live]), windows_by_key(&[replayed]));
}
