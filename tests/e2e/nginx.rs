//! A real nginx balancing real requests over four local servers with a bad weight, logging
//! with skewtail's `upstream` format; skewtail must find the overweight server.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::*;

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
    let nginx = KillOnDrop(child);
    wait_for_port(front, || format!("{:?}", std::fs::read_to_string(dir.path().join("error.log"))));
    let n_sent = send_traffic(front);
    assert!(n_sent > 400, "only {n_sent} requests went through");
    drop(nginx);

    let backend_names: Vec<String> = backends.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let input =
        format!("path = \"access.log\"\nlog_format = '''{}'''", UPSTREAM_FORMAT.trim_matches('\''));
    let config = short_window_config(dir.path(), &input, "api", &backend_names);
    let n_sent = n_sent as u64;
    assert_only_culprit_flagged(&config, n_sent..=n_sent, &backend_names[0]);
}
