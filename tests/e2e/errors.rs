//! Bad input and bad config: a clear message and exit status 2, never a panic.

use crate::util::*;

fn fails_with(args: &[&str], expected: &str) {
    let output = skewtail().args(args).output().unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
    assert!(text.contains(expected), "{args:?}: expected `{expected}` in: {text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn missing_unreadable_empty_and_directory_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.log");
    fails_with(
        &["replay", "--format", "upstream", missing.to_str().unwrap()],
        "nope.log: no such file; check the path",
    );
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, "").unwrap();
    fails_with(
        &["replay", "--format", "upstream", empty.to_str().unwrap()],
        "no log lines in the given input",
    );
    // A directory is an input (its files are replayed in time order); an empty one says so.
    let nothing = dir.path().join("nothing");
    std::fs::create_dir(&nothing).unwrap();
    fails_with(&["replay", "--format", "upstream", nothing.to_str().unwrap()], "holds no files");
    let garbage = dir.path().join("garbage.log");
    std::fs::write(&garbage, "not a log line\n\u{0}\u{1}binary\n").unwrap();
    fails_with(
        &["replay", "--format", "upstream", garbage.to_str().unwrap()],
        "none of the 2 lines matched the format",
    );
}

#[test]
fn format_problems() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.log");
    std::fs::write(&log, "x\n").unwrap();
    let log = log.to_str().unwrap();
    fails_with(
        &["replay", "--log-format", "[$time_local] $upstream_adr", log],
        "unknown variable `$upstream_adr`",
    );
    fails_with(
        &["replay", "--log-format", "[$time_local] $upstream_adr", log],
        "did you mean `$upstream_addr`?",
    );
    // Not a log at all: no format fits, and the message says what to do.
    fails_with(&["replay", log], "no known format fits");
    // A log without upstream fields is recognised, and why it cannot be judged is named.
    let combined = dir.path().join("combined.log");
    std::fs::write(
        &combined,
        "10.0.0.1 - - [15/Nov/2023:14:00:00 +0000] \"GET / HTTP/1.1\" 200 12 \"-\" \"curl/8\"\n",
    )
    .unwrap();
    fails_with(
        &["replay", combined.to_str().unwrap()],
        "format `combined` has no backend field, so skew cannot be judged",
    );
    fails_with(
        &["replay", "--format", "apache", log],
        "unknown format `apache`; known formats: auto, nginx, combined, main",
    );
    fails_with(&["replay", "--format", "upstream"], "nothing to replay");
}

#[test]
fn config_errors_name_file_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skewtail.toml");
    std::fs::write(&config, "[detector]\nwindow_s = 10\nfor = 30\n").unwrap();
    fails_with(&["check", "--config", config.to_str().unwrap()], "skewtail.toml:3:");
    fails_with(&["check", "--config", config.to_str().unwrap()], "unknown field `for`");
    fails_with(
        &["check", "--config", dir.path().join("missing.toml").to_str().unwrap()],
        "cannot read the config file",
    );
    // A usage error is status 2 too (clap).
    fails_with(&["replay", "--no-such-flag"], "unexpected argument");
}

#[test]
fn check_reports_how_well_each_input_parses() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Vec::new();
    skewtail::synth::Scenario { duration_s: 2, ..skewtail::synth::Scenario::seed_incident() }
        .write(&mut log)
        .unwrap();
    log.extend_from_slice(b"this line is garbage\n");
    std::fs::write(dir.path().join("access.log"), &log).unwrap();
    let config = dir.path().join("skewtail.toml");
    std::fs::write(&config, "[[input]]\npath = \"access.log\"\nformat = \"upstream\"\n").unwrap();
    let output = skewtail()
        .args(["check", "--config", config.to_str().unwrap(), "--lines", "1000"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("config OK (1 input(s)"), "{text}");
    let n = log.iter().filter(|&&b| b == b'\n').count();
    assert!(text.contains(&format!("{} of the first {n} line(s) parsed", n - 1)), "{text}");
    assert!(text.contains(&format!("line {n}: column 1: `$remote_addr` never ends")), "{text}");

    std::fs::write(&config, "[[input]]\npath = \"access.log\"\nformat = \"ingress_nginx\"\n")
        .unwrap();
    let output = skewtail().args(["check", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("none of the first 10 lines match format ingress_nginx"));
}

#[test]
fn huge_lines_and_invalid_utf8_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Vec::new();
    skewtail::synth::Scenario { duration_s: 20, ..skewtail::synth::Scenario::seed_incident() }
        .write(&mut log)
        .unwrap();
    log.extend(std::iter::repeat_n(b'a', 3 << 20));
    log.extend_from_slice(b"\n\xff\xfe\xfd invalid utf-8\n");
    let path = dir.path().join("a.log");
    std::fs::write(&path, &log).unwrap();
    let (output, objects) = replay_json(&path, &[]);
    let summary = summary(&objects);
    assert_eq!(summary["too_long"], 1);
    assert_eq!(summary["unparsed"], 1);
    assert!(stderr(&output).contains("Line longer than max_line_bytes skipped."));
}

#[test]
fn the_example_config_in_deploy_is_valid() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/reference.toml");
    let output = skewtail()
        .args(["check", "--config"])
        .arg(&example)
        .env("SKEWTAIL_WEBHOOK_URL", "https://hooks.example.com/services/T0/B0/x")
        .env("SKEWTAIL_WEBHOOK_SECRET", "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .env("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/x")
        .env("PD_ROUTING_KEY", "0123456789abcdef0123456789abcdef")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("config OK (1 input(s), 1 pool weight set(s), 4 sink(s))"),
        "{text}{}",
        stderr(&output)
    );
}

#[test]
fn parse_prints_each_line_or_why_not() {
    use std::io::Write;
    let mut child = skewtail()
        .args(["parse", "--format", "upstream"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = concat!(
        r#"10.2.3.4 - - [15/Nov/2023:14:30:00 +0100] "GET /a HTTP/1.1" 503 12 "-" "ua" rt=0.250 uct="0.001" uht="0.2" urt="0.100, 0.200" ua="10.0.1.1:8080, 10.0.1.2:8080" us="502, 503""#,
        "\n\u{1}garbage\n"
    );
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let objects = ndjson(&output);
    assert_eq!(objects.len(), 2);
    let access = &objects[0];
    assert_eq!(access["kind"], "access");
    assert_eq!(access["timestamp_utc"], "2023-11-15T13:30:00Z");
    assert_eq!(access["backend"], "10.0.1.2:8080");
    assert_eq!(access["attempts"], 2);
    assert_eq!(access["status"], 503);
    assert_eq!(access["upstream_status"], 503);
    assert_eq!(access["latency_s"], 0.25);
    assert_eq!(access["upstream_latency_s"], 0.2);
    assert_eq!(access["path"], "/a");
    assert_eq!(objects[1]["kind"], "error");
    assert_eq!(objects[1]["line"], 2);
    assert!(objects[1]["error"].as_str().unwrap().contains("column 1"), "{}", objects[1]);
}

#[test]
fn format_auto_and_patterns_test() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = write_log(
        dir.path(),
        "access.log",
        &skewtail::synth::Scenario { duration_s: 30, ..skew_scenario() },
    );
    let output = skewtail()
        .args(["replay", "--format", "auto", "--json"])
        .arg(&log)
        .env("SKEWTAIL_LOG", "info")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("format=upstream reason=picked `upstream`"),
        "{}",
        stderr(&output)
    );

    // A log with a few foreign lines: the report gives the rate, the fields and where the
    // other lines stopped matching.
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("this is not a log line\n");
    std::fs::write(&log, &text).unwrap();
    let output = skewtail().args(["patterns", "test"]).arg(&log).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report = String::from_utf8(output.stdout).unwrap();
    let n_lines = text.lines().count();
    assert!(
        report.contains(&format!("format `upstream`: {} of {n_lines} line(s) parsed", n_lines - 1)),
        "{report}"
    );
    assert!(report.contains("fields filled: backend 100.0%"), "{report}");
    assert!(
        report.contains(&format!("line {n_lines}: column 1: `$remote_addr` never ends")),
        "{report}"
    );

    // A worse format given by hand gets a suggestion.
    let output = skewtail()
        .args(["patterns", "test", "--format", "ingress_nginx"])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(report.contains("suggestion: format `upstream` parses"), "{report}");

    // Two formats that fit equally: auto refuses to guess.
    let patterns = dir.path().join("patterns");
    std::fs::create_dir(&patterns).unwrap();
    let upstream = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns/nginx_upstream.toml"),
    )
    .unwrap();
    std::fs::write(
        patterns.join("copy.toml"),
        upstream.replace("name = \"upstream\"", "name = \"upstream_copy\""),
    )
    .unwrap();
    let output = skewtail()
        .args(["patterns", "test", "--patterns-dir"])
        .arg(&patterns)
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(report.contains("fit the first") && report.contains("equally well"), "{report}");
}

#[test]
fn check_compares_the_weights_with_the_backends_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Vec::new();
    skewtail::synth::Scenario {
        duration_s: 5,
        backends: skewtail::synth::backend_addresses(3),
        ..skewtail::synth::Scenario::seed_incident()
    }
    .write(&mut log)
    .unwrap();
    std::fs::write(dir.path().join("access.log"), &log).unwrap();
    let config = dir.path().join("skewtail.toml");
    // A typo: the log has 10.0.0.3:8080, the weights say 10.0.0.30:8080.
    std::fs::write(
        &config,
        "[[input]]\npath = \"access.log\"\nformat = \"upstream\"\npool = \"api\"\n\n[pool.api]\nweights = { \"10.0.0.1:8080\" = 2, \"10.0.0.2:8080\" = 1, \"10.0.0.30:8080\" = 1 }\n",
    )
    .unwrap();
    let output = skewtail().args(["check", "--config", config.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("pool `api` expects: 10.0.0.1:8080 = 2 (50.0%)"), "{text}");
    assert!(text.contains("10.0.0.30:8080 is configured but not in the sample lines"), "{text}");
    assert_eq!(output.status.code(), Some(2), "{text}");
    let error = stderr(&output);
    assert!(
        error.contains("backend `10.0.0.3:8080` serves")
            && error.contains("did you mean `10.0.0.30:8080`?"),
        "{error}"
    );
    // Without weights it says so, and that the baseline starts from equal shares.
    std::fs::write(
        &config,
        "[[input]]\npath = \"access.log\"\nformat = \"upstream\"\npool = \"api\"\n",
    )
    .unwrap();
    let output = skewtail().args(["check", "--config", config.to_str().unwrap()]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("pool `api` has no weights: a baseline is learned, starting from equal shares (3 backend(s)"), "{text}");
}

#[test]
fn settings_that_switch_detection_off_are_refused_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skewtail.toml");
    for (text, line, message) in [
        ("[detector]\nalpha = nan\n", ":2:", "detector.alpha must be a finite number"),
        ("[detector]\nmin_ratio = 1.0\n", ":2:", "detector.min_ratio must be above 1"),
        ("[detector]\nspike_min_z = inf\n", ":2:", "detector.spike_min_z must be a finite number"),
        (
            "[detector]\nwindow_s = 60\nfor_s = 30\n",
            ":3:",
            "detector.for_s must be at least window_s",
        ),
        ("max_line_bytes = 0\n", ":1:", "max_line_bytes must be at least 1"),
        ("[pool.api]\nweights = { a = nan }\n", ":2:", "weight of `a` must be a number >= 0"),
    ] {
        std::fs::write(&config, text).unwrap();
        let output =
            skewtail().args(["check", "--config", config.to_str().unwrap()]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{text}");
        let error = stderr(&output);
        assert!(error.contains(line) && error.contains(message), "{text}: {error}");
    }
    std::fs::write(&config, "[detector]\nmin_requests = 100000000\n").unwrap();
    let output = skewtail().args(["check", "--config", config.to_str().unwrap()]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("note: min_requests is above a million"), "{text}");
}

/// `check` reads an input's path as `run` does: a glob is expanded and each file it matches
/// now is tried; a glob that matches nothing yet is said, not an error (`run` follows files
/// as they appear); a plain path that is missing is.
#[test]
fn check_expands_globs_as_run_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("containers")).unwrap();
    let scenario = skewtail::synth::Scenario { duration_s: 120, ..skew_scenario() };
    for name in ["api-1.log", "api-2.log"] {
        write_log(&dir.path().join("containers"), name, &scenario);
    }
    let config = dir.path().join("skewtail.toml");
    let input = |path: &str, pool: &str| {
        format!("[[input]]\npath = \"{path}\"\nformat = \"upstream\"\npool = \"{pool}\"\n")
    };
    let inputs = input("containers/*.log", "api") + "\n" + &input("later/*.log", "web");
    std::fs::write(&config, inputs).unwrap();
    let output = skewtail().args(["check", "--config"]).arg(&config).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    assert!(text.contains("matches 2 file(s) now"), "{text}");
    for name in ["api-1.log", "api-2.log"] {
        let line = text.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{text}"));
        assert!(line.ends_with("10 of the first 10 line(s) parsed"), "{line}");
    }
    assert!(text.contains("later/*.log), format upstream: matches no file now"), "{text}");
    std::fs::write(&config, input("containers/missing.log", "api")).unwrap();
    fails_with(&["check", "--config", config.to_str().unwrap()], "missing.log: no such file");
}
