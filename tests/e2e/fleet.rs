//! The fleet on the engines SRE teams already run, all real and on 127.0.0.1: two nginx
//! balance the same four servers, each with a skewtail sidecar; a real Prometheus scrapes
//! both and loads `deploy/prometheus/skewtail.rules.yml` (its intervals compressed); a real
//! two-instance Alertmanager cluster takes the sidecars' alerts and delivers to a webhook the
//! test runs. One nginx is reloaded with `weight=10`: the fleet recording rule shows the
//! shift, the fleet alert fires, and the incident reaches the webhook once.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::alerting::{Service, alertmanager_cluster_with};
use crate::balancers::{Nginx, Traffic, UPSTREAM_FORMAT};
use crate::util::*;

/// The rules as shipped, with the 5-minute rate windows and 2-minute holds shortened so the
/// test runs in a minute or two.
fn compressed_rules() -> String {
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/prometheus/skewtail.rules.yml"),
    )
    .unwrap();
    let compressed = rules.replace("[5m]", "[20s]").replace("for: 2m", "for: 10s");
    assert!(compressed.contains("[20s]") && compressed.contains("for: 10s"));
    compressed
}

/// A Prometheus instant query: the result vector.
fn query(port: u16, promql: &str) -> Vec<Value> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = reqwest::Url::parse_with_params(
            &format!("http://127.0.0.1:{port}/api/v1/query"),
            [("query", promql)],
        )
        .unwrap();
        let response = reqwest::Client::new().get(url).timeout(Duration::from_secs(5)).send().await;
        match response {
            Ok(response) => response
                .json::<Value>()
                .await
                .map(|v| v["data"]["result"].as_array().cloned().unwrap_or_default())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    })
}

fn value_of(sample: &Value) -> f64 {
    sample["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// A webhook receiver for Alertmanager's notifications.
fn start_receiver(runtime: &tokio::runtime::Runtime) -> (u16, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/am",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, received)
}

#[test]
fn two_balancers_one_pool_prometheus_sees_the_fleet_shift_and_alertmanager_delivers_once() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // The four shared servers.
    let mut ports = Vec::new();
    for _ in 0..4 {
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        ports.push(listener.local_addr().unwrap().port());
        let app = axum::Router::new().fallback(|| async { "ok\n" });
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    let (hook_port, received) = start_receiver(&runtime);
    let (_alertmanagers, am_ports) = alertmanager_cluster_with(
        dir.path(),
        &format!(
            "route:\n  receiver: hook\n  group_by: [alertname, pool]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook_port}/am\n        send_resolved: true\n"
        ),
    );

    // Two balancers in front of them, each with its sidecar.
    let mut balancers = Vec::new();
    let mut sidecars = Vec::new();
    let mut metrics_ports = Vec::new();
    let weights: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\" = 1")).collect();
    let am_urls: Vec<String> =
        am_ports.iter().map(|p| format!("\"http://127.0.0.1:{p}\"")).collect();
    for i in 0..2 {
        let home = dir.path().join(format!("lb{i}"));
        std::fs::create_dir(&home).unwrap();
        let nginx = Nginx::start_over(&home, &ports, &[]);
        std::fs::write(nginx.access_log(), "").unwrap();
        let config = home.join("skewtail.toml");
        std::fs::write(
            &config,
            format!(
                "[detector]\nwindow_s = 2\nlateness_s = 1\nfor_s = 6\nresolve_for_s = 6\nmin_requests = 30\n\n[[input]]\npath = \"access.log\"\nlog_format = '''{}'''\npool = \"api\"\n\n[pool.api]\nweights = {{ {} }}\n\n[[sink]]\nname = \"am\"\ntype = \"alertmanager\"\nurls = [{}]\nlabels = {{ balancer = \"lb{i}\" }}\n",
                UPSTREAM_FORMAT.trim_matches('\''),
                weights.join(", "),
                am_urls.join(", ")
            ),
        )
        .unwrap();
        let port = free_port();
        let child = skewtail()
            .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(home.join("state"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.join("run.stderr")).unwrap())
            .spawn()
            .unwrap();
        sidecars.push(Service(child));
        wait_for_port(port, || {
            std::fs::read_to_string(home.join("run.stderr")).unwrap_or_default()
        });
        metrics_ports.push(port);
        balancers.push(nginx);
    }

    // Prometheus scrapes both sidecars every second and evaluates the rules every second.
    std::fs::write(dir.path().join("skewtail.rules.yml"), compressed_rules()).unwrap();
    let targets: Vec<String> = metrics_ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - skewtail.rules.yml\nscrape_configs:\n  - job_name: skewtail\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let prometheus_port = free_port();
    let prometheus = Service(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (apt-get install prometheus)"),
    );
    wait_for_port(prometheus_port, || {
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    });

    let traffic: Vec<Traffic> = balancers.iter().map(|b| Traffic::start(b.front, 100)).collect();
    let culprit = format!("127.0.0.1:{}", ports[0]);
    let share_of = |backend: &str| {
        query(
            prometheus_port,
            &format!(
                "pool_backend:skewtail_backend_share:ratio5m{{pool=\"api\",backend=\"{backend}\"}}"
            ),
        )
        .first()
        .map(value_of)
    };
    // Both sidecars are scraped and the fleet share is even before the reload.
    let even = wait_until(Duration::from_secs(40), || {
        query(prometheus_port, "up{job=\"skewtail\"} == 1").len() == 2
            && share_of(&culprit).is_some_and(|s| (0.18..0.32).contains(&s))
    });
    assert!(even, "no even fleet share before the reload: {:?}", share_of(&culprit));

    balancers[0].reload(&[10, 1, 1, 1]);
    let reloaded = Instant::now();

    // The fleet rule shows the shift: (10/13 + 1/4) / 2 = 51% against 25% expected.
    let shifted =
        wait_until(Duration::from_secs(60), || share_of(&culprit).is_some_and(|s| s > 0.4));
    assert!(shifted, "the fleet share did not shift: {:?}", share_of(&culprit));
    let expected = query(
        prometheus_port,
        &format!("pool_backend:skewtail_backend_expected_share:ratio5m{{backend=\"{culprit}\"}}"),
    );
    assert!(
        expected.first().map(value_of).is_some_and(|e| (e - 0.25).abs() < 0.01),
        "{expected:?}"
    );
    let fleet_alert = wait_until(Duration::from_secs(60), || {
        query(prometheus_port, "ALERTS{alertname=\"SkewtailFleetSkew\",alertstate=\"firing\"}")
            .iter()
            .any(|a| a["metric"]["backend"] == *culprit)
    });
    assert!(fleet_alert, "the fleet alert did not fire");

    // The sidecar's own alert reaches the cluster, which delivers it once.
    let firing_notifications = || -> Vec<Value> {
        received
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n["status"] == "firing")
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["labels"]["alertname"] == "SkewtailSkew")
            .collect()
    };
    let delivered = wait_until(Duration::from_secs(60), || !firing_notifications().is_empty());
    assert!(delivered, "Alertmanager delivered nothing");
    // Long enough for the second instance to have sent its own copy, had it not deduplicated.
    std::thread::sleep(Duration::from_secs(8));
    let alerts = firing_notifications();
    assert_eq!(alerts.len(), 1, "delivered more than once: {alerts:#?}");
    assert_eq!(alerts[0]["labels"]["backend"], *culprit);
    assert_eq!(alerts[0]["labels"]["balancer"], "lb0", "{alerts:#?}");

    for t in traffic {
        assert!(t.stop() > 500);
    }
    drop(prometheus);
    drop(sidecars);
    for balancer in balancers {
        balancer.stop();
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(180), "the fleet test took {elapsed:?}");
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "fleet: shift and alerts within {:?} of the reload; whole test {elapsed:?}",
            reloaded.elapsed()
        );
    }
}
