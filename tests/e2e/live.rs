//! `skewtail run` following a file that a writer appends to while it runs.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::*;
use skewtail::synth::Scenario;

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_follows_a_growing_file_and_alerts_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.log");
    std::fs::write(&log_path, "").unwrap();
    let config = dir.path().join("skewtail.toml");
    std::fs::write(&config, "[[input]]\npath = \"access.log\"\nformat = \"upstream\"\npool = \"api\"\n\n[[sink]]\ntype = \"stdout\"\n").unwrap();
    let stderr_path = dir.path().join("stderr.txt");
    let child = skewtail()
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let read_stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    wait_for("skewtail to start following", Duration::from_secs(20), || {
        read_stderr().contains("Following input.")
    });

    let mut log = Vec::new();
    skew_scenario().write(&mut log).unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(&log_path).unwrap();
    // Append in pieces, splitting lines across writes, as a busy nginx does.
    for chunk in log.chunks(log.len() / 7 + 1) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut alerts = Vec::new();
    let started = Instant::now();
    while alerts.len() < 2 {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        assert!(!left.is_zero(), "timed out waiting for alerts; got {alerts:?}\n{}", read_stderr());
        if let Ok(line) = lines_rx.recv_timeout(left) {
            alerts.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
        }
    }
    assert_eq!(alerts[0]["state"], "firing");
    assert_eq!(alerts[0]["backend"], "10.0.1.3:8080");
    assert_eq!(alerts[1]["state"], "resolved");

    // SIGINT stops it cleanly.
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exit = None;
    wait_for("skewtail to exit after SIGINT", Duration::from_secs(20), || {
        exit = child.0.try_wait().unwrap();
        exit.is_some()
    });
    assert!(exit.unwrap().success(), "{}", read_stderr());
    let log_text = read_stderr();
    assert!(log_text.contains("Stopped."), "{log_text}");
    assert!(log_text.contains("alerts_delivered=2"), "{log_text}");
}

/// The sidecar runs in-process: `live::run` takes its shutdown as a future, so a test can stop
/// it without a signal. Each run is stopped after a moment, wherever it is; the next one
/// resumes from the saved state, totals included: at the end every line is counted once.
#[test]
fn the_sidecar_runs_in_process_and_stops_on_its_shutdown_future() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { duration_s: 30 * 60, ..skew_scenario() };
    let (_, n_lines) = write_log(dir.path(), "access.log", &scenario);
    let config = dir.path().join("skewtail.toml");
    std::fs::write(
        &config,
        "[[input]]\npath = \"access.log\"\nformat = \"upstream\"\npool = \"api\"\nstart_at = \"beginning\"\n",
    )
    .unwrap();
    let options = skewtail::live::RunOptions {
        config: config.clone(),
        json: false,
        state_dir: dir.path().join("state"),
        listen: None,
    };
    let mut counted = 0;
    let mut runs = 0;
    while counted < n_lines && runs < 30 {
        runs += 1;
        let settings = skewtail::config::Settings::load(&config).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        let run_options = options.clone();
        let sidecar = std::thread::spawn(move || {
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            let _ = done_tx.send(skewtail::live::run(settings, &run_options, shutdown));
        });
        // Early stops land mid-file; later ones give the sidecar time to finish.
        std::thread::sleep(Duration::from_millis(100 * runs));
        stop_tx.send(()).unwrap();
        let totals = done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the sidecar did not stop within 20 s of its shutdown future")
            .expect("the sidecar failed");
        sidecar.join().unwrap();
        assert!(totals.lines >= counted, "the totals went back: {} after {counted}", totals.lines);
        counted = totals.lines;
        assert!(counted <= n_lines, "counted {counted} of {n_lines} lines after {runs} runs");
    }
    assert_eq!(counted, n_lines, "after {runs} runs");
    assert!(runs > 1, "the first run read the whole file: stop it earlier");
    assert!(dir.path().join("state/state.json").exists(), "the state was not saved");
}
