//! Input that must neither hang skewtail nor fool its counts: FIFOs and devices, CR-only
//! files, a file truncated under `replay`, control bytes in names, text after a JSON record.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use skewtail::synth::{LogStyle, Scenario};

use crate::util::*;

/// Runs `command` to its end, failing the test if that takes longer than `limit` (a hang):
/// the process is killed first.
fn output_within(command: &mut Command, limit: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: std::fs::read(&out).unwrap(), stderr: std::fs::read(&err).unwrap() }
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

fn fails_within(command: &mut Command, expected: &str) {
    let output = output_within(command, Duration::from_secs(10));
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{command:?}: {text}");
    assert!(text.contains(expected), "{command:?}: expected `{expected}` in: {text}");
}

#[test]
fn fifos_and_devices_are_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.log");
    mkfifo(&fifo);
    let config = dir.path().join("skewtail.toml");
    std::fs::write(&config, "[[input]]\npath = \"pipe.log\"\nformat = \"upstream\"\n").unwrap();
    let is_fifo = "pipe.log: is a FIFO (named pipe), not a regular file";
    fails_within(skewtail().args(["replay", "--format", "upstream"]).arg(&fifo), is_fifo);
    fails_within(skewtail().args(["replay", "--config"]).arg(&config), is_fifo);
    fails_within(skewtail().args(["check", "--config"]).arg(&config), is_fifo);
    fails_within(
        skewtail().args(["replay", "--format", "upstream", "/dev/zero"]),
        "/dev/zero: is a device",
    );
    for command in ["replay", "check", "run"] {
        fails_within(
            skewtail().args([command, "--config", "/dev/zero"]),
            "/dev/zero: cannot read the config file: is a device",
        );
        fails_within(
            skewtail().args([command, "--config"]).arg(&fifo),
            "cannot read the config file: is a FIFO",
        );
    }
    // A config file that is far too big is refused, not read to the end of memory.
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, "#".repeat(2 << 20)).unwrap();
    fails_within(skewtail().args(["check", "--config"]).arg(&huge), "is larger than");
}

#[test]
fn run_explains_a_fifo_a_glob_matches_once_and_still_stops_on_sigterm() {
    // A FIFO named as the input's path is refused at the start (tests/e2e/inputs.rs); one a
    // glob matches is said once, and the sidecar goes on following the glob's files.
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("pipe.log"));
    let config = dir.path().join("skewtail.toml");
    std::fs::write(&config, "[[input]]\npath = \"*.log\"\nformat = \"upstream\"\n").unwrap();
    let log = dir.path().join("stderr");
    let mut child = skewtail()
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("SKEWTAIL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("Not following a path that is not a regular file.") {
            break text;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no explanation within 20 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("is a FIFO"), "{text}");
    // Polls go on four times a second: the warning is not repeated.
    std::thread::sleep(Duration::from_secs(2));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("Not following a path that is not a regular file.").count(),
        1,
        "{text}"
    );
    assert!(
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success()
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("run ignored SIGTERM with a FIFO input");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// The window counts of a `replay --json`, as (start, total requests).
fn window_totals(objects: &[serde_json::Value]) -> Vec<(String, u64)> {
    of_type(objects, "window")
        .iter()
        .map(|w| {
            let total = w["backends"].as_object().unwrap().values();
            (
                w["start"].as_str().unwrap().to_string(),
                total.map(|b| b["requests"].as_u64().unwrap()).sum(),
            )
        })
        .collect()
}

#[test]
fn a_file_with_cr_only_line_endings_is_read_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let (lf, n_lines) = write_log(dir.path(), "lf.log", &Scenario::clean(5 * 60, 40.0));
    let cr = dir.path().join("cr.log");
    let text = std::fs::read(&lf).unwrap();
    std::fs::write(
        &cr,
        text.iter().map(|&b| if b == b'\n' { b'\r' } else { b }).collect::<Vec<u8>>(),
    )
    .unwrap();
    let (_, from_lf) = replay_json(&lf, &[]);
    let (output, from_cr) = replay_json(&cr, &[]);
    assert_eq!(summary(&from_cr)["lines"], n_lines, "{}", stderr(&output));
    assert_eq!(summary(&from_cr)["parsed"], n_lines);
    assert_eq!(window_totals(&from_cr), window_totals(&from_lf));
    assert!(stderr(&output).contains("Lines end in CR only"), "{}", stderr(&output));
}

#[test]
fn a_file_truncated_while_replay_reads_it_fails_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough that replay's output fills the pipe we do not read yet, so it is mid-file
    // when the file is truncated.
    let (log, _) = write_log(dir.path(), "a.log", &Scenario::clean(6 * 3600, 40.0));
    let mut child = skewtail()
        .args(["replay", "--format", "upstream", "--json"])
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    let reader = {
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()).unwrap())
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "replay did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut text).unwrap();
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains("shrank while it was read"), "{text}");
}

#[test]
fn control_bytes_and_invalid_utf8_in_names_are_unparsed_not_backends() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, n_lines) = write_log(dir.path(), "a.log", &Scenario::clean(5 * 60, 40.0));
    let text = std::fs::read(&clean).unwrap();
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    // One line in ten gets a NUL, a control byte or an invalid UTF-8 byte in its backend.
    let mut spoiled = 0;
    for (i, line) in lines.iter_mut().enumerate().filter(|(i, _)| i % 10 == 3) {
        // Inside the last address of the field: the backend the line is counted under.
        let field = memchr::memmem::find(line, b"ua=\"").unwrap() + 4;
        let end = field + memchr::memchr(b'"', &line[field..]).unwrap();
        line.insert(end - 2, [0u8, 0x01, 0xff][i % 3]);
        spoiled += 1;
    }
    let path = dir.path().join("spoiled.log");
    std::fs::write(&path, lines.join(&b'\n')).unwrap();
    let (_, objects) = replay_json(&path, &[]);
    let summary = summary(&objects);
    assert_eq!(summary["lines"], n_lines);
    assert_eq!(summary["invalid_names"], spoiled, "{summary}");
    assert_eq!(summary["parsed"], n_lines - spoiled, "{summary}");
    let mut backends = std::collections::BTreeSet::new();
    for window in of_type(&objects, "window") {
        backends.extend(window["backends"].as_object().unwrap().keys().cloned());
    }
    assert_eq!(backends.len(), 8, "{backends:?}");
}

#[test]
fn json_with_trailing_text_or_no_json_at_all_is_unparsed() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { style: LogStyle::NginxJson, ..Scenario::clean(5 * 60, 40.0) };
    let (clean, n_lines) = write_log(dir.path(), "a.log", &scenario);
    let text = std::fs::read_to_string(&clean).unwrap();
    let mut out = String::new();
    let mut trailing = 0;
    for (i, line) in text.lines().enumerate() {
        out.push_str(line);
        if i % 20 == 7 {
            out.push_str(r#" {"upstream_addr":"10.9.9.9:80"}"#);
            trailing += 1;
        }
        out.push('\n');
    }
    // Random bytes, and text that is not JSON.
    out.push_str("\u{1}\u{2}garbage\u{7f}\n<html>oops</html>\n");
    let path = dir.path().join("b.log");
    std::fs::write(&path, out).unwrap();
    let output = skewtail()
        .args(["replay", "--format", "nginx_json", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = ndjson(&output);
    let summary = summary(&objects);
    assert_eq!(summary["lines"], n_lines + 2);
    assert_eq!(summary["unparsed"], trailing + 2, "{summary}");
    assert_eq!(summary["other"], 0, "{summary}");
    assert_eq!(summary["parsed"], n_lines - trailing, "{summary}");
}
