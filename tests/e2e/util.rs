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
        incidents: vec![Incident {
            start_s: 15 * 60,
            duration_s: 15 * 60,
            backend: 2,
            share: Some(0.45),
            error_rate: 0.1,
            latency_factor: 10.0,
            ..Incident::default()
        }],
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

/// Kills a child process (a server under test) when the test ends, even by panic.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits (at most 10 s) until something listens on `port`; `log` explains a failure.
pub fn wait_for_port(port: u16, log: impl Fn() -> String) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "nothing listens on {port}: {}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Polls `done` every 100 ms for at most `within`; whether it came true.
pub fn wait_until(within: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    loop {
        if done() {
            return true;
        }
        if started.elapsed() >= within {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Real traffic for a little over three seconds from 8 concurrent keep-alive clients;
/// returns the number of successful requests.
pub fn send_traffic(port: u16) -> usize {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/api/orders");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(3200);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    for _ in 0..20_000 {
                        if tokio::time::Instant::now() >= deadline {
                            break;
                        }
                        let response = client.get(&url).send().await.unwrap();
                        assert!(response.status().is_success());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        total
    })
}

/// A config for a short, dense test: 1 s windows, equal expected weights for `backends` in
/// pool `pool`, and the given input lines (`path`, `format`...).
pub fn short_window_config(dir: &Path, input: &str, pool: &str, backends: &[String]) -> PathBuf {
    let weights: Vec<String> = backends.iter().map(|b| format!("\"{b}\" = 1")).collect();
    let path = dir.join("skewtail.toml");
    std::fs::write(
        &path,
        format!(
            "[detector]\nwindow_s = 1\nlateness_s = 1\nfor_s = 1\nresolve_for_s = 1\nmin_requests = 30\nbaseline_half_life_s = 60\n\n[[input]]\n{input}\npool = \"{pool}\"\n\n[pool.{pool}]\n# As intended: equal weights. The balancer was misconfigured with weight 5 on the first.\nweights = {{ {} }}\n",
            weights.join(", ")
        ),
    )
    .unwrap();
    path
}

/// Replays with `config` and checks that every logged request parsed and that every alert
/// names `culprit` as taking too much, at about 5/8 of the traffic. `n_logged` is the range of
/// request lines the balancer may have written for `n_sent` requests.
pub fn assert_only_culprit_flagged(
    config: &Path,
    n_logged: std::ops::RangeInclusive<u64>,
    culprit: &str,
) {
    let check = skewtail().args(["check", "--config"]).arg(config).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(String::from_utf8_lossy(&check.stdout).contains("10 of the first 10 line(s) parsed"));
    let output = skewtail().args(["replay", "--json", "--config"]).arg(config).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = ndjson(&output);
    let parsed = summary(&objects)["parsed"].as_u64().unwrap();
    assert!(
        n_logged.contains(&parsed),
        "{parsed} parsed, expected {n_logged:?}: {}",
        summary(&objects)
    );
    assert_eq!(summary(&objects)["unparsed"], 0);
    let alerts = of_type(&objects, "alert");
    assert!(!alerts.is_empty(), "no alert: {objects:#?}");
    assert!(
        alerts.iter().all(|a| a["backend"] == culprit && a["direction"] == "over"),
        "{alerts:#?}"
    );
    let share = alerts[0]["evidence"]["observed_share"].as_f64().unwrap();
    assert!((0.5..0.75).contains(&share), "5 of 8 expected, got {share}");
}

/// The summary and the alerts (state, kind, backend) of a replay of `log` in pool `api`, the
/// format left to recognition.
pub fn summary_and_alerts(log: &Path) -> (Value, Vec<(String, String, String)>) {
    let output = skewtail().args(["replay", "--json", "--pool", "api"]).arg(log).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = ndjson(&output);
    let alerts = of_type(&objects, "alert")
        .iter()
        .map(|a| {
            let field = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (field("state"), field("kind"), field("backend"))
        })
        .collect();
    (summary(&objects).clone(), alerts)
}
