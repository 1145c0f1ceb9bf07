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
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nginx (apt-get install nginx-light)");
    let tested = Command::new(nginx)
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
