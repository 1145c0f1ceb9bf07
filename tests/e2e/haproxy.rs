//! A real HAProxy balancing real requests over four local servers with a bad weight, logging
//! `option httplog` lines to stdout; skewtail must find the overweight server.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::*;

fn haproxy_binary() -> &'static str {
    for candidate in ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"] {
        if std::path::Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("haproxy is not installed: run `apt-get install haproxy` (.ci/run does)");
}

/// `n` real HTTP servers on 127.0.0.1 answering `ok`, on a runtime that stops them when
/// dropped; and their ports.
fn http_servers(n: usize) -> (tokio::runtime::Runtime, Vec<u16>) {
    let servers = tokio::runtime::Runtime::new().unwrap();
    let mut ports = Vec::new();
    for _ in 0..n {
        let listener = servers.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        ports.push(listener.local_addr().unwrap().port());
        let app = axum::Router::new().fallback(|| async { "ok\n" });
        servers.spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    (servers, ports)
}

#[test]
fn real_haproxy_with_a_bad_weight_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    // Four real HTTP servers on 127.0.0.1.
    let (_servers, ports) = http_servers(4);
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

/// HAProxy's own `log` target pointed at skewtail's syslog listener, over UDP and over TCP
/// (a `ring` forwarding octet-counted RFC 5424), while it also logs the same requests to a
/// file: the sidecars count every request sent once, in the file's windows.
#[test]
fn haproxy_logging_to_skewtail_over_syslog_gives_the_windows_of_its_file() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_servers, ports) = http_servers(3);
    let (udp, tcp, front) = (free_port(), free_port(), free_port());
    // Two sidecars, one per transport, each with one-second windows closed by the idle clock.
    let sidecar = |name: &str, listen: String| {
        let config = d.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!("[detector]\nwindow_s = 1\nlateness_s = 1\n\n[[input]]\nname = \"{name}\"\nsyslog = \"{listen}\"\nformat = \"haproxy\"\n"),
        )
        .unwrap();
        let mut child = KillOnDrop(
            skewtail()
                .args(["run", "--json", "--listen", "127.0.0.1:0", "--config"])
                .arg(&config)
                .arg("--state-dir")
                .arg(d.join(format!("state-{name}")))
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(d.join(format!("{name}.stderr"))).unwrap())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let lines = std::thread::spawn(move || {
            BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>()
        });
        (child, lines)
    };
    let (mut udp_sidecar, udp_lines) = sidecar("udp", format!("udp://127.0.0.1:{udp}"));
    let (mut tcp_sidecar, tcp_lines) = sidecar("tcp", format!("tcp://127.0.0.1:{tcp}"));
    let listening = |name: &str| {
        let log = d.join(format!("{name}.stderr"));
        wait_until(std::time::Duration::from_secs(20), || {
            std::fs::read_to_string(&log).unwrap_or_default().contains("Running.")
        })
    };
    assert!(listening("udp") && listening("tcp"), "a sidecar did not start");

    let server_lines: String = ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("  server s{} 127.0.0.1:{port}\n", i + 1))
        .collect();
    let config = format!(
        "global\n  log stdout format raw local0\n  log 127.0.0.1:{udp} local0\n  log ring@to_skewtail local0\n  maxconn 512\n\
         ring to_skewtail\n  format rfc5424\n  maxlen 4096\n  size 1048576\n  timeout connect 5s\n  timeout server 10s\n  server skewtail 127.0.0.1:{tcp}\n\
         defaults\n  mode http\n  log global\n  option httplog\n  option dontlognull\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
         frontend fe\n  bind 127.0.0.1:{front}\n  default_backend be_api\nbackend be_api\n  balance roundrobin\n{server_lines}"
    );
    std::fs::write(d.join("haproxy.cfg"), config).unwrap();
    let file_log = d.join("haproxy.log");
    let mut haproxy = KillOnDrop(
        Command::new(haproxy_binary())
            .arg("-db")
            .arg("-f")
            .arg(d.join("haproxy.cfg"))
            .stdout(std::fs::File::create(&file_log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(front, || std::fs::read_to_string(&file_log).unwrap_or_default());
    let n_sent = send_traffic(front) as u64;
    let pid = haproxy.0.id().to_string();
    assert!(Command::new("kill").args(["-USR1", &pid]).status().unwrap().success());
    assert!(wait_until(std::time::Duration::from_secs(10), || haproxy
        .0
        .try_wait()
        .unwrap()
        .is_some()));
    // The idle clock closes the last windows two seconds after the last line.
    std::thread::sleep(std::time::Duration::from_secs(4));
    for sidecar in [&mut udp_sidecar, &mut tcp_sidecar] {
        let pid = sidecar.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        assert!(wait_until(std::time::Duration::from_secs(20), || sidecar
            .0
            .try_wait()
            .unwrap()
            .is_some()));
    }

    // The file's windows, replayed with the same settings.
    let replay_config = d.join("replay.toml");
    std::fs::write(&replay_config, "[detector]\nwindow_s = 1\nlateness_s = 1\n\n[[input]]\npath = \"haproxy.log\"\nformat = \"haproxy\"\n").unwrap();
    let output =
        skewtail().args(["replay", "--json", "--config"]).arg(&replay_config).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let windows = |objects: &[Value]| -> Vec<(String, Vec<(String, u64)>)> {
        of_type(objects, "window")
            .iter()
            .map(|w| {
                let mut backends: Vec<(String, u64)> = w["backends"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(name, b)| (name.clone(), b["requests"].as_u64().unwrap()))
                    .collect();
                backends.sort();
                (w["start"].as_str().unwrap().to_string(), backends)
            })
            .collect()
    };
    let from_file = windows(&ndjson(&output));
    let in_file: u64 = from_file.iter().flat_map(|(_, b)| b.iter().map(|(_, n)| n)).sum();
    assert!(in_file >= n_sent * 99 / 100, "{in_file} of {n_sent} requests in the file");
    for (name, lines) in [("udp", udp_lines), ("tcp", tcp_lines)] {
        let objects: Vec<Value> =
            lines.join().unwrap().iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let got = windows(&objects);
        let log = std::fs::read_to_string(d.join(format!("{name}.stderr"))).unwrap();
        // Every request sent, once: nothing lost on the way, nothing counted twice.
        let total: u64 = got.iter().flat_map(|(_, b)| b.iter().map(|(_, n)| n)).sum();
        assert_eq!(total, n_sent, "{name}: {total} of {n_sent} requests\n{log}");
        // The same windows and backends as the file; the file may hold a few lines fewer
        // (`log stdout` is non-blocking: HAProxy drops what it cannot write at once).
        assert_eq!(got.len(), from_file.len(), "{name}: {got:?}\n{from_file:?}");
        for ((start, backends), (file_start, file_backends)) in got.iter().zip(&from_file) {
            assert_eq!(start, file_start, "{name}");
            let names = |b: &[(String, u64)]| b.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            assert_eq!(names(backends), names(file_backends), "{name} at {start}");
            for ((_, n), (_, in_file)) in backends.iter().zip(file_backends) {
                assert!(
                    n >= in_file,
                    "{name} at {start}: {backends:?} against the file's {file_backends:?}"
                );
            }
        }
    }
}
