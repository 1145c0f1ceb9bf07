//! Logs where they live: a container runtime's files (`/var/log/containers`), wrapped by CRI
//! or Docker json-file around every line, long lines in pieces, the controller's stderr mixed
//! in.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use skewtail::synth::{LogStyle, Scenario};

use crate::util::*;

/// A klog line and an nginx error-log line, as an ingress controller writes them to stderr.
const STDERR: [&str; 2] = [
    "E1115 14:00:00.000000       7 controller.go:1083] Error obtaining Endpoints for Service \"default/api\"",
    "2023/11/15 14:00:00 [error] 31#31: *1 connect() failed (111: Connection refused) while connecting to upstream",
];

/// Every `split`th line is cut in three pieces; after every `noise`th, a stderr line.
fn wrap(
    raw: &str,
    split: usize,
    noise: usize,
    wrap_piece: impl Fn(&str, &str, bool) -> String,
) -> (String, u64) {
    let mut out = String::new();
    let mut n_stderr = 0;
    for (i, line) in raw.lines().enumerate() {
        if i % split == 0 && line.len() > 30 {
            let (a, rest) = line.split_at(10);
            let (b, c) = rest.split_at(12);
            for (piece, last) in [(a, false), (b, false), (c, true)] {
                out.push_str(&wrap_piece("stdout", piece, last));
                // The runtime interleaves stderr between a line's pieces.
                if !last && i % (2 * split) == 0 {
                    out.push_str(&wrap_piece("stderr", STDERR[0], true));
                    n_stderr += 1;
                }
            }
        } else {
            out.push_str(&wrap_piece("stdout", line, true));
        }
        if i % noise == 0 {
            out.push_str(&wrap_piece("stderr", STDERR[i % 2], true));
            n_stderr += 1;
        }
    }
    (out, n_stderr)
}

fn cri(stream: &str, piece: &str, last: bool) -> String {
    format!("2023-11-15T14:00:00.123456789Z {stream} {} {piece}\n", if last { "F" } else { "P" })
}

fn docker(stream: &str, piece: &str, last: bool) -> String {
    let log = serde_json::to_string(&format!("{piece}{}", if last { "\n" } else { "" })).unwrap();
    format!(
        "{{\"log\":{log},\"stream\":\"{stream}\",\"time\":\"2023-11-15T14:00:00.123456789Z\"}}\n"
    )
}

/// ingress-nginx lines wrapped by CRI and by Docker, with pieces and stderr: every access
/// line counted once, stderr as `other` (never `unparsed`), the format recognised as it is
/// without the wrapping, and the same backends and alerts as the bare log.
#[test]
fn container_wrapped_ingress_lines_read_as_the_bare_log() {
    let dir = tempfile::tempdir().unwrap();
    let scenario =
        Scenario { style: LogStyle::IngressNginx, duration_s: 40 * 60, ..skew_scenario() };
    let (bare, n_lines) = write_log(dir.path(), "bare.log", &scenario);
    let raw = std::fs::read_to_string(&bare).unwrap();
    let (expected, expected_alerts) = summary_and_alerts(&bare);
    assert_eq!(expected["parsed"], n_lines);
    assert!(!expected_alerts.is_empty(), "the scenario's skew was not found in the bare log");
    for (name, wrapper) in
        [("cri.log", cri as fn(&str, &str, bool) -> String), ("docker.log", docker)]
    {
        let (wrapped, n_stderr) = wrap(&raw, 7, 50, wrapper);
        let path = dir.path().join(name);
        std::fs::write(&path, wrapped).unwrap();
        let (got, alerts) = summary_and_alerts(&path);
        assert_eq!(got["parsed"], expected["parsed"], "{name}: {got}");
        assert_eq!(got["unparsed"], 0, "{name}: {got}");
        assert_eq!(got["other"], n_stderr, "{name}: {got}");
        assert_eq!(got["lines"], n_lines + n_stderr, "{name}: {got}");
        assert_eq!(got["backends"], expected["backends"], "{name}");
        assert_eq!(alerts, expected_alerts, "{name}");
    }
}

/// `run` takes the wrapping off too (the sidecar in-process, on CRI files): two pods' files
/// under `/var/log/pods`, their pool filled from the path (`{namespace}/{container}`). One
/// file stops in the middle of a line in pieces while the other is read: the pieces are
/// joined with their own file's, never with another's, when the rest comes.
#[test]
fn the_sidecar_reads_cri_files() {
    let dir = tempfile::tempdir().unwrap();
    let scenario =
        Scenario { style: LogStyle::NginxUpstream, duration_s: 10 * 60, ..skew_scenario() };
    let (bare, n_lines) = write_log(dir.path(), "bare.log", &scenario);
    let raw = std::fs::read_to_string(&bare).unwrap();
    let lines: Vec<&str> = raw.lines().collect();
    let (first_half, second_half) = lines.split_at(lines.len() / 2);
    let (wrapped_a, stderr_a) = wrap(&(first_half.join("\n") + "\n"), 5, 20, cri);
    let (wrapped_b, stderr_b) = wrap(&(second_half.join("\n") + "\n"), 5, 20, cri);
    let n_stderr = stderr_a + stderr_b;
    let pod = |namespace: &str, name: &str| {
        let dir = dir.path().join(format!("pods/{namespace}_{name}_0c1d-77/controller"));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("0.log")
    };
    let (file_a, file_b) = (pod("team-a", "ingress-7d9f"), pod("team-b", "ingress-5c2e"));
    // A's last line is held back after its first piece.
    let last_line = first_half.last().unwrap();
    let cut = wrapped_a.len() - cri("stdout", last_line, true).len();
    let (held, rest) = (&wrapped_a[..cut], &last_line[..20]);
    std::fs::write(&file_a, format!("{held}{}", cri("stdout", rest, false))).unwrap();
    std::fs::write(&file_b, &wrapped_b).unwrap();
    let config = dir.path().join("skewtail.toml");
    std::fs::write(
        &config,
        "[[input]]\npath = \"pods/*/controller/*.log\"\nformat = \"auto\"\npool = \"{namespace}/{container}\"\nstart_at = \"beginning\"\n",
    )
    .unwrap();
    let settings = skewtail::config::Settings::load(&config).unwrap();
    assert_eq!(settings.inputs[0].format_name, "upstream", "recognised through the wrapping");
    let options = skewtail::live::RunOptions {
        config,
        json: false,
        state_dir: dir.path().join("state"),
        listen: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sidecar = std::thread::spawn(move || {
        skewtail::live::run(settings, &options, async move {
            let _ = stop_rx.await;
        })
    });
    let state = dir.path().join("state/state.json");
    let lines_in_state = |n: u64| {
        let state = state.clone();
        move || std::fs::read_to_string(&state).is_ok_and(|s| s.contains(&format!("\"lines\":{n}")))
    };
    // Everything but A's last line (held in pieces), then its last piece.
    let before = n_lines + n_stderr - 1;
    assert!(wait_until(Duration::from_secs(20), lines_in_state(before)), "not read: {before}");
    let mut file = std::fs::OpenOptions::new().append(true).open(&file_a).unwrap();
    std::io::Write::write_all(&mut file, cri("stdout", &last_line[20..], true).as_bytes()).unwrap();
    wait_until(Duration::from_secs(20), lines_in_state(n_lines + n_stderr));
    stop_tx.send(()).unwrap();
    let totals = sidecar.join().unwrap().unwrap();
    assert_eq!(totals.lines, n_lines + n_stderr, "{totals:?}");
    assert_eq!(totals.parsed, n_lines, "{totals:?}");
    assert_eq!(totals.other, n_stderr, "{totals:?}");
    assert_eq!(totals.unparsed, 0, "{totals:?}");
    let saved = std::fs::read_to_string(dir.path().join("state/state.json")).unwrap();
    for pool in ["team-a/controller", "team-b/controller"] {
        assert!(saved.contains(&format!("\"{pool}\"")), "no pool {pool} in the state");
    }
}

/// A replay of a kubelet's pod log tree: each pod's pool from its path (for lines that name
/// none: nginx's `upstream` format here; ingress-nginx's name their upstream).
#[test]
fn a_pod_log_tree_replays_with_the_pool_from_each_path() {
    let dir = tempfile::tempdir().unwrap();
    let scenario =
        Scenario { style: LogStyle::NginxUpstream, duration_s: 10 * 60, ..skew_scenario() };
    let (bare, n_lines) = write_log(dir.path(), "bare.log", &scenario);
    let raw = std::fs::read_to_string(&bare).unwrap();
    for (i, namespace) in ["team-a", "team-b"].into_iter().enumerate() {
        let pod = dir.path().join(format!("pods/{namespace}_ingress-{i}_0c1d-77/controller"));
        std::fs::create_dir_all(&pod).unwrap();
        std::fs::write(pod.join("0.log"), wrap(&raw, 5, 20, cri).0).unwrap();
    }
    let output = skewtail()
        .args(["replay", "--json", "--pool", "{namespace}/{container}"])
        .arg(dir.path().join("pods"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = summary(&ndjson(&output)).clone();
    assert_eq!(summary["parsed"], 2 * n_lines, "{summary}");
    let pools: Vec<&String> = summary["backends"].as_object().unwrap().keys().collect();
    assert_eq!(pools, ["team-a/controller", "team-b/controller"], "{summary}");
}

/// Feeds `log` to `command`'s standard input: the first 25 of its 40 minutes (the skew is
/// from minute 15 to 30), then waits for a `firing` alert on stdout while the pipe is still
/// open, then the rest. Returns stdout's lines once the command has exited by itself.
fn feed_and_wait_for_the_alert(mut command: std::process::Command, log: &Path) -> Vec<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut child = KillOnDrop(
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let text = std::fs::read_to_string(log).unwrap();
    let all: Vec<&str> = text.lines().collect();
    let first_part = all.len() * 25 / 40;
    let mut stdin = child.0.stdin.take().unwrap();
    for line in &all[..first_part] {
        writeln!(stdin, "{line}").unwrap();
    }
    stdin.flush().unwrap();
    let mut seen = Vec::new();
    let fired = wait_until(Duration::from_secs(30), || {
        seen.extend(lines_rx.try_iter());
        seen.iter().any(|l| l.contains("\"type\":\"alert\"") && l.contains("\"firing\""))
    });
    assert!(fired, "no alert while standard input was still open: {:?}", seen.last());
    // And the lines just written are windowed too, not held until a block fills: a window
    // ending in minute 24 is out while the pipe is open.
    let window_end = |l: &String| {
        let v: Value = serde_json::from_str(l).ok()?;
        (v["type"] == "window").then(|| v["end"].as_str().map(str::to_string)).flatten()
    };
    let first_end = seen.iter().find_map(window_end).expect("no window");
    let first_end = chrono::DateTime::parse_from_rfc3339(&first_end).unwrap();
    let wanted = (first_end + chrono::Duration::minutes(24))
        .to_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let recent = wait_until(Duration::from_secs(30), || {
        seen.extend(lines_rx.try_iter());
        seen.iter().filter_map(window_end).any(|end| end >= wanted)
    });
    assert!(recent, "no window ending at {wanted} or later while the pipe is open");
    for line in &all[first_part..] {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let stopped = wait_until(Duration::from_secs(30), || child.0.try_wait().unwrap().is_some());
    assert!(stopped, "it went on after standard input ended");
    assert!(child.0.wait().unwrap().success());
    // The reader thread ends with stdout.
    while let Ok(line) = lines_rx.recv_timeout(Duration::from_secs(10)) {
        seen.push(line);
    }
    seen
}

fn summary_of(lines: &[String]) -> Value {
    lines
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v["type"] == "summary"))
        .unwrap_or_else(|| panic!("no summary: {:?}", lines.last()))
}

/// `run` with `path = "-"` reads standard input as a stream: the alert comes while the writer
/// is still writing, and when the writer closes the pipe the sidecar stops by itself, every
/// line counted.
#[test]
fn run_reads_standard_input_as_a_stream_and_stops_when_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (log, n_lines) = write_log(dir.path(), "access.log", &skew_scenario());
    let config = dir.path().join("skewtail.toml");
    std::fs::write(&config, "[[input]]\npath = \"-\"\nformat = \"upstream\"\npool = \"api\"\n")
        .unwrap();
    let mut run = skewtail();
    run.args(["run", "--json", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"));
    let summary = summary_of(&feed_and_wait_for_the_alert(run, &log));
    assert_eq!(summary["lines"], n_lines, "{summary}");
    assert_eq!(summary["parsed"], n_lines, "{summary}");
}

/// `replay -` prints windows and alerts as they are decided, not when its input ends.
#[test]
fn replay_of_standard_input_shows_the_alert_before_the_input_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (log, n_lines) = write_log(dir.path(), "access.log", &skew_scenario());
    let mut replay = skewtail();
    replay.args(["replay", "--json", "--format", "upstream", "-"]);
    let lines = feed_and_wait_for_the_alert(replay, &log);
    assert_eq!(summary_of(&lines)["lines"], n_lines);
}

/// A FIFO given to `run` as a file is refused once, at the start, with exit 2 and the way out
/// (standard input); it is never warned about on every poll.
#[test]
fn run_refuses_a_fifo_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("access.log");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let config = dir.path().join("skewtail.toml");
    std::fs::write(&config, "[[input]]\npath = \"access.log\"\nformat = \"upstream\"\n").unwrap();
    let mut child = KillOnDrop(
        skewtail()
            .args(["run", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let exited = wait_until(Duration::from_secs(20), || child.0.try_wait().unwrap().is_some());
    assert!(exited, "run kept running on a FIFO");
    let status = child.0.wait().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut text).unwrap();
    assert_eq!(status.code(), Some(2), "{text}");
    assert_eq!(text.matches("is a FIFO").count(), 1, "{text}");
    assert!(text.contains("standard input"), "{text}");
}

/// A pasted `log_format` that stops at `$upstream_addr` while the lines go on is no fit:
/// `patterns test` shows where the format ends in the line and what comes after.
#[test]
fn a_format_pasted_too_short_shows_where_the_line_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(
        &log,
        "10.1.2.3 - - [24/Feb/2015:23:13:42 +0000] \"GET / HTTP/1.1\" 200 10.0.0.1:80 1234 \"-\" \"curl/8.4.0\" 85\n",
    )
    .unwrap();
    let short = r#"$remote_addr - $remote_user [$time_local] "$request" $status $upstream_addr"#;
    let output =
        skewtail().args(["patterns", "test", "--log-format", short]).arg(&log).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("0 of 1 line(s) parsed"), "{text}");
    assert!(text.contains("goes on past the end of the format"), "{text}");
    assert!(text.contains(r#"the line goes on:  1234 \"-\" \"curl/8.4.0\" 85"#), "{text}");
    let replay = skewtail().args(["replay", "--log-format", short]).arg(&log).output().unwrap();
    assert_eq!(replay.status.code(), Some(2), "no backend `1234 \"-\" ...` is made up");
}
