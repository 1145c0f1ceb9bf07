//! `deploy/` is what people copy: every example config passes `skewtail check` on real lines of
//! its format, the Kubernetes manifest's configs pass `skewtail check` and real `nginx -t`,
//! the Prometheus rules pass `promtool` (and their unit tests), the Alertmanager example
//! passes `amtool`, the dashboard uses only metrics the binary exports, and the systemd unit
//! passes `systemd-analyze verify`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

/// A short log in `format` from the generator, over backends 10.0.0.1-3:8080.
fn sample_log(dir: &Path, format: &str) -> PathBuf {
    let path = dir.join(format!("{format}.log"));
    let output = skewtail()
        .args(["simulate", "--format", format, "--duration", "2m", "--backends", "3", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    path
}

/// `skewtail check` on `config` (secrets set), which must pass with every sample line parsed.
fn check_passes(config: &Path) -> String {
    let output = skewtail()
        .args(["check", "--config"])
        .arg(config)
        .env("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/x")
        .env("PD_ROUTING_KEY", "0123456789abcdef0123456789abcdef")
        .env("SKEWTAIL_WEBHOOK_URL", "https://hooks.example.com/skewtail")
        .env("SKEWTAIL_WEBHOOK_SECRET", "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{}: {text}{}", config.display(), stderr(&output));
    assert!(text.contains("10 of the first 10 line(s) parsed"), "{}: {text}", config.display());
    text
}

/// `example` with each (from, to) replaced, written to `dir`.
fn rewritten(example: &Path, dir: &Path, replacements: &[(&str, String)]) -> PathBuf {
    let mut text = std::fs::read_to_string(example).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{} no longer mentions {from}", example.display());
        text = text.replace(from, to);
    }
    let path = dir.join(example.file_name().unwrap());
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_example_config_passes_check_on_real_lines_of_its_format() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let upstream = d.join("api.conf");
    std::fs::write(
        &upstream,
        "upstream api {\n  server 10.0.0.1:8080;\n  server 10.0.0.2:8080;\n  server 10.0.0.3:8080;\n}\n",
    )
    .unwrap();
    let haproxy = d.join("haproxy.cfg");
    std::fs::write(
        &haproxy,
        "backend be_api\n  server 10_0_0_1_8080 10.0.0.1:8080 check\n  server 10_0_0_2_8080 10.0.0.2:8080 check\n  server 10_0_0_3_8080 10.0.0.3:8080 check\n",
    )
    .unwrap();
    let path = |p: PathBuf| p.display().to_string();
    let nginx = rewritten(
        &deploy("examples/nginx.toml"),
        d,
        &[
            ("/var/log/nginx/access.log", path(sample_log(d, "upstream"))),
            ("/etc/nginx/conf.d/api.conf", path(upstream)),
        ],
    );
    let text = check_passes(&nginx);
    assert!(text.contains("pool `api` expects: 10.0.0.1:8080 = 1 (33.3%)"), "{text}");
    let haproxy_config = rewritten(
        &deploy("examples/haproxy.toml"),
        d,
        &[
            ("/var/log/haproxy.log", path(sample_log(d, "haproxy"))),
            ("/etc/haproxy/haproxy.cfg", path(haproxy)),
        ],
    );
    check_passes(&haproxy_config);
    let envoy = rewritten(
        &deploy("examples/envoy.toml"),
        d,
        &[("/var/log/envoy/access.log", path(sample_log(d, "envoy")))],
    );
    check_passes(&envoy);
    let alb = rewritten(
        &deploy("examples/alb.toml"),
        d,
        &[("alb/latest.log", path(sample_log(d, "aws_alb")))],
    );
    check_passes(&alb);
    let reference = rewritten(
        &deploy("examples/reference.toml"),
        d,
        &[("/var/log/nginx/access.log", path(sample_log(d, "upstream")))],
    );
    // The reference config's weights name other addresses than the generator's: `check`
    // says so and fails, which is its job; the config itself is valid.
    let output = skewtail().args(["check", "--config"]).arg(&reference).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("config OK"), "{text}{}", stderr(&output));
}

/// The text of `key: |` in a YAML ConfigMap, dedented.
fn config_map_entry(yaml: &str, key: &str) -> String {
    let start = yaml.find(&format!("{key}: |")).unwrap_or_else(|| panic!("no {key}"));
    let mut lines = yaml[start..].lines().skip(1);
    let first = lines.next().unwrap();
    let indent = first.len() - first.trim_start().len();
    let mut text = format!("{}\n", &first[indent..]);
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        text.push_str(line.get(indent..).unwrap_or(""));
        text.push('\n');
    }
    text
}

#[test]
fn the_kubernetes_manifests_configs_pass_check_and_real_nginx() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let manifest = std::fs::read_to_string(deploy("kubernetes/nginx-with-skewtail.yaml")).unwrap();
    for probe in ["path: /healthz", "path: /readyz", "kind: ServiceMonitor", "runAsNonRoot: true"] {
        assert!(manifest.contains(probe), "the manifest lacks {probe}");
    }
    let nginx_conf = config_map_entry(&manifest, "nginx.conf")
        .replace("/tmp/", &format!("{}/", d.display()))
        .replace("/var/log/nginx-shared/access.log", &d.join("access.log").display().to_string());
    std::fs::write(d.join("nginx.conf"), &nginx_conf).unwrap();
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx (apt-get install nginx-light)");
    let tested = Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(d)
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .output()
        .unwrap();
    assert!(tested.status.success(), "nginx -t: {}", String::from_utf8_lossy(&tested.stderr));

    let log = std::fs::read_to_string(sample_log(d, "upstream")).unwrap();
    // The manifest's upstream names 10.0.1.x; the generator 10.0.0.x.
    std::fs::write(d.join("access.log"), log.replace("10.0.0.", "10.0.1.")).unwrap();
    let skewtail_toml = config_map_entry(&manifest, "skewtail.toml")
        .replace("/var/log/nginx-shared/access.log", &d.join("access.log").display().to_string())
        .replace("/etc/nginx/nginx.conf", &d.join("nginx.conf").display().to_string());
    std::fs::write(d.join("skewtail.toml"), skewtail_toml).unwrap();
    let text = check_passes(&d.join("skewtail.toml"));
    assert!(text.contains("10.0.1.4:8080 = 1 (25.0%)"), "{text}");
}

#[test]
fn prometheus_rules_and_configs_pass_promtool_and_amtool() {
    let promtool = |args: &[&str]| {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(deploy("prometheus"))
            .output()
            .expect("promtool (apt-get install prometheus)");
        assert!(
            output.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(promtool(&["check", "rules", "skewtail.rules.yml"]).contains("SUCCESS"));
    assert!(promtool(&["test", "rules", "skewtail.rules.test.yml"]).contains("SUCCESS"));
    promtool(&["check", "config", "prometheus.yml"]);
    let output = Command::new("amtool")
        .args(["check-config"])
        .arg(deploy("alertmanager/alertmanager.yml"))
        .output()
        .expect("amtool (apt-get install prometheus-alertmanager)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Metric names (`skewtail_*`) a scrape exports, with their sample suffixes.
fn exported_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut words = line.split_whitespace().skip(2);
        let (Some(name), Some(kind)) = (words.next(), words.next()) else { continue };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

#[test]
fn the_dashboard_uses_only_metrics_the_binary_exports() {
    let dir = tempfile::tempdir().unwrap();
    let log = sample_log(dir.path(), "upstream");
    let config = dir.path().join("skewtail.toml");
    std::fs::write(
        &config,
        format!(
            "[[input]]\npath = \"{}\"\nformat = \"upstream\"\npool = \"api\"\nstart_at = \"beginning\"\n\n[[sink]]\nname = \"archive\"\ntype = \"file\"\npath = \"alerts.ndjson\"\n",
            log.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let sidecar = KillOnDrop(
        skewtail()
            .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, String::new);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let scrape = || {
        runtime.block_on(async {
            reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    // Until the first checkpoint has been saved, so every family is present.
    assert!(wait_until(Duration::from_secs(20), || scrape().contains("skewtail_checkpoint_age")));
    let mut known = exported_names(&scrape());
    drop(sidecar);
    let rules = std::fs::read_to_string(deploy("prometheus/skewtail.rules.yml")).unwrap();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- record: ") {
            known.insert(name.trim().to_string());
        }
    }
    for family in
        ["skewtail_notifications_sent_total", "skewtail_sink_up", "skewtail_backend_share"]
    {
        assert!(known.contains(family), "{family} not exported: {known:?}");
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/skewtail-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is valid JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 8);
    let names =
        regex::Regex::new(r"\b(skewtail_[a-z_]+|pool[a-z_]*:skewtail_[a-z_:0-9]+)").unwrap();
    let mut used = 0;
    for expr in &exprs {
        for found in names.find_iter(expr) {
            used += 1;
            assert!(
                known.contains(found.as_str()),
                "the dashboard uses {} (in `{expr}`), which nothing exports",
                found.as_str()
            );
        }
    }
    assert!(used >= 10);
}

#[test]
fn the_systemd_unit_verifies_and_the_dockerfile_runs_unprivileged() {
    let unit = std::fs::read_to_string(deploy("systemd/skewtail.service")).unwrap();
    for hardening in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=skewtail",
        "ReadOnlyPaths=/var/log",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(hardening), "the unit lacks {hardening}");
    }
    if Command::new("systemd-analyze").arg("--version").stdout(Stdio::null()).status().is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skewtail.service");
        std::fs::write(
            &path,
            unit.replace("/usr/local/bin/skewtail", env!("CARGO_BIN_EXE_skewtail")),
        )
        .unwrap();
        let output = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
        assert!(
            output.status.success(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let dockerfile = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    assert_eq!(dockerfile.lines().filter(|l| l.starts_with("FROM ")).count(), 2, "multi-stage");
    let user = dockerfile.lines().find_map(|l| l.strip_prefix("USER ")).expect("a USER line");
    assert!(!user.starts_with('0') && !user.starts_with("root"), "USER {user}");
}

/// The ingress-nginx DaemonSet: its config passes `check` on a node's container log as the
/// runtime writes it (CRI-wrapped, a long line in pieces, the controller's stderr mixed in),
/// and the pod reads /var/log read-only, as a non-root user.
#[test]
fn the_ingress_nginx_daemonset_reads_cri_container_logs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let manifest =
        std::fs::read_to_string(deploy("kubernetes/ingress-nginx-daemonset.yaml")).unwrap();
    for needed in ["kind: DaemonSet", "runAsNonRoot: true", "path: /var/log,", "readOnly: true }"] {
        assert!(manifest.contains(needed), "the manifest lacks {needed}");
    }
    let containers = d.join("containers");
    std::fs::create_dir(&containers).unwrap();
    let log = std::fs::read_to_string(sample_log(d, "ingress_nginx")).unwrap();
    let mut wrapped = String::new();
    for (i, line) in log.lines().enumerate() {
        let time = "2023-11-15T14:00:00.123456789Z";
        if i == 3 {
            let (head, tail) = line.split_at(40);
            wrapped.push_str(&format!("{time} stdout P {head}\n{time} stdout F {tail}\n"));
        } else {
            wrapped.push_str(&format!("{time} stdout F {line}\n"));
        }
        if i % 4 == 0 {
            wrapped.push_str(&format!(
                "{time} stderr F I1115 14:00:00.000000 7 store.go:123] updating\n"
            ));
        }
    }
    std::fs::write(
        containers.join("ingress-nginx-controller-7d9f8_ingress-nginx_controller-0a1b2c.log"),
        wrapped,
    )
    .unwrap();
    let config = config_map_entry(&manifest, "skewtail.toml")
        .replace("/var/log/containers/", &format!("{}/", containers.display()));
    std::fs::write(d.join("skewtail.toml"), config).unwrap();
    let text = check_passes(&d.join("skewtail.toml"));
    assert!(text.contains("matches 1 file(s) now"), "{text}");
    assert!(text.contains("line(s) of the container's stderr left out"), "{text}");
}
