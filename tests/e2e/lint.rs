//! `skewtail lint` on real balancer configs: findings with their lines, exit statuses for CI,
//! JSON, and a finding that the real `nginx -t` agrees with.

use std::process::Command;

use crate::util::*;

fn lint(args: &[&str], config: &std::path::Path) -> std::process::Output {
    skewtail().arg("lint").args(args).arg(config).output().unwrap()
}

#[test]
fn lint_finds_what_skews_traffic_and_fits_ci() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.conf");
    std::fs::write(
        &bad,
        "events {}\nhttp {\n  upstream api {\n    server 127.0.0.1:8081 weight=10;\n    server 127.0.0.1:8082;\n    server 127.0.0.1:8083;\n    server 127.0.0.1:8084;\n  }\n}\n",
    )
    .unwrap();
    let output = lint(&[], &bad);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("bad.conf:4: error [weight-outlier] server 127.0.0.1:8081 has weight 10"),
        "{text}"
    );
    assert!(text.contains("77%"), "{text}");
    assert!(text.contains("why: ") && text.contains("fix: "));
    // JSON, and a threshold above the finding passes.
    let output = lint(&["--json"], &bad);
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["kind"], "nginx");
    assert_eq!(document["findings"][0]["code"], "weight-outlier");
    assert_eq!(document["findings"][0]["line"], 4);
    // A clean config passes.
    let good = dir.path().join("good.conf");
    std::fs::write(
        &good,
        "events {}\nhttp {\n  upstream api {\n    least_conn;\n    server 127.0.0.1:8081;\n    server 127.0.0.1:8082;\n  }\n}\n",
    )
    .unwrap();
    let output = lint(&[], &good);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    // Weights that drift from skewtail's config.
    let skewtail_config = dir.path().join("skewtail.toml");
    std::fs::write(
        &skewtail_config,
        "[[input]]\npath = \"access.log\"\nformat = \"upstream\"\npool = \"api\"\n\n[pool.api]\nweights = { \"127.0.0.1:8081\" = 1, \"127.0.0.1:8082\" = 3 }\n",
    )
    .unwrap();
    let output = lint(&["--against", skewtail_config.to_str().unwrap()], &good);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("[weights-mismatch]"));
    // Not a balancer config: a clear error, exit 2.
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, "hello\n").unwrap();
    let output = lint(&[], &other);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--kind nginx"), "{}", stderr(&output));
}

#[test]
fn backup_in_a_hashed_nginx_pool_is_an_error_and_real_nginx_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nginx.conf");
    let d = dir.path().display();
    std::fs::write(
        &config,
        format!("pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n  upstream api {{\n    hash $request_uri consistent;\n    server 127.0.0.1:8081;\n    server 127.0.0.1:8082 backup;\n  }}\n}}\n"),
    )
    .unwrap();
    let output = lint(&[], &config);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("nginx.conf:10: error [backup-in-hashed-pool]"), "{text}");
    let tested = Command::new(nginx_binary())
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!tested.status.success(), "nginx -t accepted it");
    assert!(
        String::from_utf8_lossy(&tested.stderr).contains("backup"),
        "{}",
        String::from_utf8_lossy(&tested.stderr)
    );
}

/// The nginx binary the tests use.
fn nginx_binary() -> &'static str {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nginx (apt-get install nginx-light)")
}

#[test]
fn an_ordinary_nginx_config_is_read_as_nginx_and_its_outlier_found() {
    // Laid out as people write it: a server block whose `listen 80;` stands on its own line
    // (a keyword guess once took that for a HAProxy `listen` section and passed the file),
    // the upstream in an included conf.d file, comments, quoted log formats with `;` in them.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("conf.d/api.conf"),
        "# API servers, one per host\nupstream api {\n    server 127.0.0.1:8081 weight=10;   # the new big box\n    server 127.0.0.1:8082;\n    server 127.0.0.1:8083;\n    server 127.0.0.1:8084;\n}\n",
    )
    .unwrap();
    let config = dir.path().join("nginx.conf");
    std::fs::write(
        &config,
        format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\nevents {{\n    worker_connections 64;\n}}\n\nhttp {{\n    log_format upstreams '$remote_addr [$time_local] \"$request\" $status '\n                         'upstream=$upstream_addr; rt=$request_time';\n    access_log {d}/access.log upstreams;\n    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\n    include conf.d/*.conf;\n\n    server {{\n        listen 80;\n        server_name api.example.com;\n\n        location / {{\n            proxy_pass http://api;\n        }}\n    }}\n}}\n"
        ),
    )
    .unwrap();
    // It is a config the real nginx loads.
    let tested = Command::new(nginx_binary())
        .args(["-t", "-p"])
        .arg(dir.path())
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    assert!(tested.status.success(), "{}", String::from_utf8_lossy(&tested.stderr));
    let output = lint(&[], &config);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}{}", stderr(&output));
    assert!(
        text.contains(
            "conf.d/api.conf:3: error [weight-outlier] server 127.0.0.1:8081 has weight 10"
        ),
        "{text}"
    );
    let output = lint(&["--json"], &config);
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["kind"], "nginx");
    assert_eq!(document["files"].as_array().map(Vec::len), Some(2));
}

#[test]
fn an_ordinary_haproxy_config_has_its_outlier_found_and_inherits_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haproxy.cfg");
    std::fs::write(
        &config,
        "global\n    maxconn 256\n\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n    default-server check inter 2s\n\nfrontend www\n    bind 127.0.0.1:18080\n    http-request deny if { path_beg /admin }\n    default_backend be_api\n\nbackend be_api\n    balance roundrobin\n    server s1 127.0.0.1:8081 weight 10\n    server s2 127.0.0.1:8082\n    server s3 127.0.0.1:8083\n    server s4 127.0.0.1:8084\n",
    )
    .unwrap();
    let tested = Command::new("haproxy").args(["-c", "-f"]).arg(&config).output().unwrap();
    assert!(tested.status.success(), "{}", String::from_utf8_lossy(&tested.stderr));
    let output = lint(&[], &config);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}{}", stderr(&output));
    assert!(
        text.contains("haproxy.cfg:18: error [weight-outlier] server s1 has weight 10"),
        "{text}"
    );
    // `default-server check` in `defaults` reaches the backend's servers.
    assert!(!text.contains("no-failure-detection"), "{text}");
}

#[test]
fn a_weight_the_balancer_refuses_is_a_lint_error_and_no_weight_import() {
    let dir = tempfile::tempdir().unwrap();
    let balancer = dir.path().join("nginx.conf");
    std::fs::write(
        &balancer,
        "events {}\nhttp {\n  upstream api {\n    server 127.0.0.1:8081 weight=ten;\n    server 127.0.0.1:8082;\n  }\n}\n",
    )
    .unwrap();
    let output = lint(&[], &balancer);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("nginx.conf:4: error [invalid-parameter] `weight=ten`"), "{text}");
    // The same rule where skewtail imports the weights: refused, with the line.
    let skewtail_config = dir.path().join("skewtail.toml");
    std::fs::write(
        &skewtail_config,
        "[[input]]\npath = \"access.log\"\nformat = \"upstream\"\npool = \"api\"\n\n[pool.api]\nnginx_upstream = { file = \"nginx.conf\" }\n",
    )
    .unwrap();
    let output = skewtail().arg("check").arg("--config").arg(&skewtail_config).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("nginx.conf:4: `weight=ten`"), "{}", stderr(&output));
}
