//! Incident rehearsals, live, with a real nginx and a real HAProxy: steady traffic, `skewtail
//! run` tailing the balancer's log and alerting a signed-webhook receiver; `skewtail
//! rehearse` passes; a reload puts one server at weight 10: the alert arrives and `rehearse`
//! fails; the fix: the alert resolves and `rehearse` passes again.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::balancers::{Haproxy, Nginx, Traffic, UPSTREAM_FORMAT};
use crate::receivers::{Faults, Hit, Receiver, Vendor};
use crate::util::*;

const SIGNING_KEY: [u8; 32] = *b"rehearsal-signing-key-0123456789";

/// What the scenario needs from a balancer.
trait Balancer {
    fn front(&self) -> u16;
    fn names(&self) -> Vec<String>;
    fn reload_with(&mut self, weights: &[u32]);
    /// The `[[input]]` lines for its log.
    fn input(&self) -> String;
    fn pool(&self) -> &'static str;
    fn config_file(&self) -> PathBuf;
}

impl Balancer for Nginx {
    fn front(&self) -> u16 {
        self.front
    }
    fn names(&self) -> Vec<String> {
        self.backend_names()
    }
    fn reload_with(&mut self, weights: &[u32]) {
        self.reload(weights);
    }
    fn input(&self) -> String {
        format!(
            "path = \"{}\"\nlog_format = '''{}'''",
            self.access_log().display(),
            UPSTREAM_FORMAT.trim_matches('\'')
        )
    }
    fn pool(&self) -> &'static str {
        "api"
    }
    fn config_file(&self) -> PathBuf {
        Nginx::config_file(self)
    }
}

impl Balancer for Haproxy {
    fn front(&self) -> u16 {
        self.front
    }
    fn names(&self) -> Vec<String> {
        self.backend_names()
    }
    fn reload_with(&mut self, weights: &[u32]) {
        self.reload(weights);
    }
    fn input(&self) -> String {
        format!("path = \"{}\"\nformat = \"haproxy\"", self.access_log().display())
    }
    fn pool(&self) -> &'static str {
        "be_api"
    }
    fn config_file(&self) -> PathBuf {
        Haproxy::config_file(self)
    }
}

fn skew_alerts(hits: &[Hit], state: &str) -> Vec<Value> {
    hits.iter()
        .flat_map(|h| h.body["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["kind"] == "skew" && a["state"] == state)
        .collect()
}

fn scenario(dir: &Path, balancer: &mut dyn Balancer) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let hook =
        Receiver::start(&runtime, Vendor::Signed(SIGNING_KEY.to_vec()), Faults::default(), 0);
    let weights: Vec<String> = balancer.names().iter().map(|b| format!("\"{b}\" = 1")).collect();
    let config = dir.join("skewtail.toml");
    std::fs::write(
        &config,
        format!(
            "[detector]\nwindow_s = 2\nlateness_s = 1\nfor_s = 6\nresolve_for_s = 6\nmin_requests = 30\n\n[[input]]\n{}\npool = \"{pool}\"\nstart_at = \"end\"\n\n[pool.{pool}]\nweights = {{ {} }}\n\n[[sink]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{}\"\nsecret_env = \"REHEARSAL_SECRET\"\n",
            balancer.input(),
            weights.join(", "),
            hook.url,
            pool = balancer.pool(),
        ),
    )
    .unwrap();
    let stderr_path: PathBuf = dir.join("run.stderr");
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(SIGNING_KEY));
    let sidecar = KillOnDrop(
        skewtail()
            .args(["run", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env("REHEARSAL_SECRET", secret)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let front = balancer.front();
    let rehearse_now = || {
        let output = skewtail()
            .args(["rehearse", "--requests", "400", "--rate", "200", "--settle-s", "5", "--config"])
            .arg(&config)
            .arg(format!("http://127.0.0.1:{front}/api/rehearsal"))
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned() + &stderr(&output),
        )
    };
    let traffic = Traffic::start(balancer.front(), 100);
    std::thread::sleep(Duration::from_secs(6));

    let (status, text) = rehearse_now();
    assert_eq!(status, Some(0), "a healthy split must pass:\n{text}");
    assert!(text.contains("PASS") && text.contains("found in the log"), "{text}");

    balancer.reload_with(&[10, 1, 1, 1]);
    let culprit = balancer.names()[0].clone();
    let fired = hook.wait_for(Duration::from_secs(60), |hits| {
        skew_alerts(hits, "firing").iter().any(|a| a["backend"] == *culprit)
    });
    assert!(fired, "no skew alert at the webhook:\n{}", log());
    let (status, text) = rehearse_now();
    assert_eq!(status, Some(1), "a weight of 10 must fail:\n{text}");
    assert!(text.contains("FAIL") && text.contains(&format!("{culprit} took")), "{text}");
    // Against the balancer's own config the split is what it was told: the bad weight is in
    // the config, not in the balancer's behaviour (lint is the check for that).
    let output = skewtail()
        .args(["rehearse", "--requests", "400", "--rate", "200", "--settle-s", "5", "--config"])
        .arg(&config)
        .arg("--balancer-config")
        .arg(balancer.config_file())
        .arg(format!("http://127.0.0.1:{front}/api/rehearsal"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &stderr(&output);
    assert_eq!(output.status.code(), Some(0), "the split the balancer was told must pass:\n{text}");
    assert!(text.contains(&format!("pool `{}` in", balancer.pool())), "{text}");

    balancer.reload_with(&[1, 1, 1, 1]);
    let resolved = hook.wait_for(Duration::from_secs(60), |hits| {
        skew_alerts(hits, "resolved").iter().any(|a| a["backend"] == *culprit)
    });
    assert!(resolved, "the skew did not resolve at the webhook:\n{}", log());
    let (status, text) = rehearse_now();
    assert_eq!(status, Some(0), "the fixed split must pass again:\n{text}");

    let sent = traffic.stop();
    assert!(sent > 1000, "only {sent} requests went through");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &sidecar.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Exactly one firing and one resolve for the culprit, each verified by the receiver.
    assert!(hook.hits().iter().all(|h| h.problems.is_empty()));
    let firing = skew_alerts(&hook.accepted(), "firing");
    assert_eq!(firing.iter().filter(|a| a["backend"] == *culprit).count(), 1, "{firing:?}");
    drop(sidecar);
}

#[test]
fn nginx_rehearsal_passes_then_fails_on_a_bad_reload_and_the_alert_comes_and_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut nginx = Nginx::start(dir.path(), 4, &[]);
    std::fs::write(nginx.access_log(), "").unwrap();
    scenario(dir.path(), &mut nginx);
    nginx.stop();
}

#[test]
fn haproxy_rehearsal_passes_then_fails_on_a_bad_reload_and_the_alert_comes_and_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut haproxy = Haproxy::start(dir.path(), 4, &[]);
    scenario(dir.path(), &mut haproxy);
    haproxy.stop();
}

#[test]
fn rehearse_refuses_remote_targets_and_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, "").unwrap();
    for (args, says) in [
        (vec!["http://192.0.2.1/"], "--allow-remote"),
        (vec!["http://example.com/"], "--allow-remote"),
        (vec!["ftp://127.0.0.1/"], "only http and https"),
        (vec!["--requests", "0", "http://127.0.0.1:9/"], "--requests must be"),
        (vec!["--rate", "0", "http://127.0.0.1:9/"], "--rate must be"),
    ] {
        let output = skewtail()
            .args(["rehearse", "--format", "upstream", "--log"])
            .arg(&log)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(says), "{args:?}: {}", stderr(&output));
    }
}
