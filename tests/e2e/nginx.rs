//! A real nginx balancing real requests over four local servers with a bad weight, logging
//! with skewtail's `upstream` format; skewtail must find the overweight server.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn nginx_binary() -> &'static str {
    for candidate in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"] {
        if Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("nginx is not installed: run `apt-get install nginx-light` (.ci/run does)");
}

const UPSTREAM_FORMAT: &str = r#"'$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status"'"#;

#[test]
fn real_nginx_with_a_bad_weight_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let backends: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let front = free_port();
    let d = dir.path().display();
    let servers: String = backends
        .iter()
        .map(|p| {
            format!(
                "  server {{ listen 127.0.0.1:{p}; location / {{ return 200 \"ok {p}\\n\"; }} }}\n"
            )
        })
        .collect();
    let config = format!(
        "worker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\nevents {{ worker_connections 512; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n  log_format upstream {UPSTREAM_FORMAT};\n  upstream api {{\n    server 127.0.0.1:{} weight=5;\n    server 127.0.0.1:{};\n    server 127.0.0.1:{};\n    server 127.0.0.1:{};\n    keepalive 16;\n  }}\n{servers}  server {{\n    listen 127.0.0.1:{front};\n    access_log {d}/access.log upstream;\n    location / {{ proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n",
        backends[0], backends[1], backends[2], backends[3]
    );
    std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
    let child = Command::new(nginx_binary())
        .args(["-p"])
        .arg(dir.path())
        .args(["-c"])
        .arg(dir.path().join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _nginx = Nginx(child);

    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", front)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nginx did not start: {:?}",
            std::fs::read_to_string(dir.path().join("error.log"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Real traffic for a little over three seconds, from 8 concurrent keep-alive clients.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let n_sent: usize = runtime.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{front}/api/orders");
        let deadline = tokio::time::Instant::now() + Duration::from_millis(3200);
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
    });
    assert!(n_sent > 400, "only {n_sent} requests went through");
    drop(_nginx);

    let weights: String = backends.iter().map(|p| format!("\"127.0.0.1:{p}\" = 1, ")).collect();
    let skewtail_config = dir.path().join("skewtail.toml");
    std::fs::write(
        &skewtail_config,
        format!(
            "[detector]\nwindow_s = 1\nlateness_s = 1\nfor_s = 1\nresolve_for_s = 1\nmin_requests = 30\nbaseline_half_life_s = 60\n\n[[input]]\npath = \"access.log\"\nlog_format = '''{}'''\npool = \"api\"\n\n[pool.api]\n# As intended: equal weights. nginx was misconfigured with weight=5 on the first.\nweights = {{ {} }}\n",
            UPSTREAM_FORMAT.trim_matches('\''),
            weights.trim_end_matches(", ")
        ),
    )
    .unwrap();
    let check = skewtail().args(["check", "--config"]).arg(&skewtail_config).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(String::from_utf8_lossy(&check.stdout).contains("10 of the first 10 line(s) parsed"));

    let output =
        skewtail().args(["replay", "--json", "--config"]).arg(&skewtail_config).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = ndjson(&output);
    assert_eq!(summary(&objects)["lines"].as_u64().unwrap(), n_sent as u64);
    assert_eq!(summary(&objects)["unparsed"], 0);
    let alerts = of_type(&objects, "alert");
    assert!(!alerts.is_empty(), "no alert: {objects:#?}");
    let backend = format!("127.0.0.1:{}", backends[0]);
    assert!(
        alerts.iter().all(|a| a["backend"] == backend.as_str() && a["direction"] == "over"),
        "{alerts:#?}"
    );
    let share = alerts[0]["evidence"]["observed_share"].as_f64().unwrap();
    assert!((0.5..0.75).contains(&share), "5 of 8 expected, got {share}");
}
