//! A real HAProxy balancing real requests over four local servers with a bad weight, logging
//! `option httplog` lines to stdout; skewtail must find the overweight server.

use std::process::{Command, Stdio};

use crate::util::*;

fn haproxy_binary() -> &'static str {
    for candidate in ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"] {
        if std::path::Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("haproxy is not installed: run `apt-get install haproxy` (.ci/run does)");
}

#[test]
fn real_haproxy_with_a_bad_weight_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    // Four real HTTP servers on 127.0.0.1.
    let servers = tokio::runtime::Runtime::new().unwrap();
    let mut ports = Vec::new();
    for _ in 0..4 {
        let listener = servers.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        ports.push(listener.local_addr().unwrap().port());
        let app = axum::Router::new().fallback(|| async { "ok\n" });
        servers.spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    let front = free_port();
    let server_lines: String = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            format!("  server s{} 127.0.0.1:{port} weight {}\n", i + 1, if i == 0 { 5 } else { 1 })
        })
        .collect();
    let config = format!(
        "global\n  log stdout format raw local0\n  maxconn 512\ndefaults\n  mode http\n  log global\n  option httplog\n  option dontlognull\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\nfrontend fe\n  bind 127.0.0.1:{front}\n  default_backend be_api\nbackend be_api\n  balance roundrobin\n{server_lines}"
    );
    let config_path = dir.path().join("haproxy.cfg");
    std::fs::write(&config_path, config).unwrap();
    let log_path = dir.path().join("haproxy.log");
    let child = Command::new(haproxy_binary())
        .arg("-db")
        .arg("-f")
        .arg(&config_path)
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut haproxy = KillOnDrop(child);
    wait_for_port(front, || std::fs::read_to_string(&log_path).unwrap_or_default());
    let n_sent = send_traffic(front);
    assert!(n_sent > 400, "only {n_sent} requests went through");
    // A soft stop (SIGUSR1) lets HAProxy finish and log every request before it exits.
    let pid = haproxy.0.id().to_string();
    assert!(Command::new("kill").args(["-USR1", &pid]).status().unwrap().success());
    let started = std::time::Instant::now();
    while haproxy.0.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "haproxy did not stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let backend_names: Vec<String> = (1..=4).map(|i| format!("be_api/s{i}")).collect();
    let config = short_window_config(
        dir.path(),
        "path = \"haproxy.log\"\nformat = \"haproxy\"",
        "be_api",
        &backend_names,
    );
    // `log stdout` is non-blocking: HAProxy drops (and counts) log lines it cannot write at
    // once, so a few requests of thousands may be missing from the log; none may be extra.
    let n_sent = n_sent as u64;
    assert_only_culprit_flagged(&config, n_sent * 99 / 100..=n_sent, "be_api/s1");

    // With the weights read from HAProxy's own config (weight 5 on s1 is what it says), the
    // same traffic is normal: no alert, and the evidence of every window is judged.
    let with_own_weights = dir.path().join("own-weights.toml");
    std::fs::write(
        &with_own_weights,
        std::fs::read_to_string(&config).unwrap().replace(
            &format!(
                "weights = {{ {} }}",
                backend_names.iter().map(|b| format!("\"{b}\" = 1")).collect::<Vec<_>>().join(", ")
            ),
            "haproxy_backend = { file = \"haproxy.cfg\" }",
        ),
    )
    .unwrap();
    assert!(std::fs::read_to_string(&with_own_weights).unwrap().contains("haproxy_backend"));
    let output =
        skewtail().args(["replay", "--json", "--config"]).arg(&with_own_weights).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = ndjson(&output);
    assert_eq!(of_type(&objects, "alert").len(), 0, "{objects:#?}");
    assert!(of_type(&objects, "window").len() > 3);
}
