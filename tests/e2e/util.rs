//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use skewtail::synth::{Incident, Scenario};

/// The binary under test.
pub fn skewtail() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skewtail"));
    command.env_remove("SKEWTAIL_LOG");
    command
}

/// 40 minutes at 40 req/s; backend 10.0.1.3:8080 takes 45% from minute 15 to minute 30.
pub fn skew_scenario() -> Scenario {
    Scenario {
        duration_s: 40 * 60,
        incident: Some(Incident {
            start_s: 15 * 60,
            duration_s: 15 * 60,
            backend: 2,
            share: 0.45,
            error_rate: 0.1,
            latency_factor: 10.0,
        }),
        ..Scenario::seed_incident()
    }
}

/// Writes a scenario to `dir/name`; returns the path and the number of lines.
pub fn write_log(dir: &Path, name: &str, scenario: &Scenario) -> (PathBuf, u64) {
    let path = dir.join(name);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let n_lines = scenario.write(&mut file).unwrap();
    drop(file);
    (path, n_lines)
}

/// Parses NDJSON output into objects, failing on any non-JSON line.
pub fn ndjson(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// The objects of one `type`.
pub fn of_type<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["type"] == kind).collect()
}

/// The single summary object.
pub fn summary(objects: &[Value]) -> &Value {
    let summaries = of_type(objects, "summary");
    assert_eq!(summaries.len(), 1, "exactly one summary");
    summaries[0]
}

/// RFC 3339 to Unix seconds.
pub fn unix_s(value: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap().timestamp()
}

/// Text of stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `skewtail replay --format upstream --json [extra] LOG`, which must succeed; returns the
/// output and its NDJSON objects.
pub fn replay_json(log: &Path, extra: &[&str]) -> (Output, Vec<Value>) {
    let output = skewtail()
        .args(["replay", "--format", "upstream", "--json"])
        .args(extra)
        .arg(log)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = ndjson(&output);
    (output, objects)
}
