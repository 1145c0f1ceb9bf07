//! A real nginx balancing real requests over four local servers, logging with skewtail's
//! `upstream` format: a bad weight found in replay, and the cold-start story live. The rolling
//! restart is in `tests/rolling_restart.rs`, a binary of its own.

use std::time::{Duration, Instant};

use crate::balancers::{Nginx, Traffic, UPSTREAM_FORMAT};
use crate::live_sidecar::{LiveSidecar, brief, resolved_after};
use crate::util::*;

#[test]
fn real_nginx_with_a_bad_weight_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(dir.path(), 4, &[5, 1, 1, 1]);
    let n_sent = send_traffic(nginx.front);
    assert!(n_sent > 400, "only {n_sent} requests went through");
    let backend_names = nginx.backend_names();
    nginx.stop();

    let input =
        format!("path = \"access.log\"\nlog_format = '''{}'''", UPSTREAM_FORMAT.trim_matches('\''));
    let config = short_window_config(dir.path(), &input, "api", &backend_names);
    let n_sent = n_sent as u64;
    assert_only_culprit_flagged(&config, n_sent..=n_sent, &backend_names[0]);
}

/// The story, compressed: 4 equal servers and no weights in skewtail's config; a
/// while after skewtail starts (inside its warm-up), one server is reloaded to `weight=10`;
/// later the config is fixed. The skew must be reported within 60 s of the bad reload,
/// resolve after the fix, and nothing may be left firing.
#[test]
fn real_nginx_cold_start_skew_is_reported_live_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(dir.path(), 4, &[]);
    std::fs::write(nginx.access_log(), "").unwrap();
    let config = dir.path().join("skewtail.toml");
    std::fs::write(
        &config,
        format!(
            "[detector]\nwindow_s = 2\nlateness_s = 1\nfor_s = 6\nresolve_for_s = 6\nmin_requests = 30\nwarmup_s = 300\n\n[[input]]\npath = \"access.log\"\nlog_format = '''{}'''\npool = \"api\"\nstart_at = \"beginning\"\n\n[[sink]]\ntype = \"stdout\"\n",
            UPSTREAM_FORMAT.trim_matches('\'')
        ),
    )
    .unwrap();
    let mut sidecar = LiveSidecar::start(dir.path(), &config);
    let traffic = Traffic::start(nginx.front, 150);

    // 40 s of normal traffic, then the bad reload: well inside the 5-minute warm-up.
    std::thread::sleep(Duration::from_secs(40));
    nginx.reload(&[10, 1, 1, 1]);
    let bad_reload = Instant::now();
    std::thread::sleep(Duration::from_secs(40));
    nginx.reload(&[]);
    let fixed = Instant::now();
    let culprit = nginx.backend_names()[0].clone();

    sidecar.collect_until(fixed + Duration::from_secs(40), |alerts| {
        alerts.iter().any(|(_, a)| a["state"] == "resolved" && a["backend"] == *culprit)
    });
    let sent = traffic.stop();
    let (alerts, log) = sidecar.stop();
    nginx.stop();
    let brief = brief(&alerts);
    assert!(sent > 10_000, "only {sent} requests went through");

    let fired = alerts
        .iter()
        .find(|(_, a)| a["state"] == "firing" && a["kind"] == "skew" && a["backend"] == *culprit)
        .unwrap_or_else(|| panic!("the skew was not reported: {brief:#?}\n{log}"));
    let delay = fired.0.duration_since(bad_reload);
    assert!(delay <= Duration::from_secs(60), "reported {delay:?} after the reload: {brief:#?}");
    assert_eq!(fired.1["direction"], "over");
    assert_eq!(fired.1["evidence"]["expected_from"], "warmup", "{brief:#?}");
    let expected = fired.1["evidence"]["expected_share"].as_f64().unwrap();
    assert!((0.2..0.3).contains(&expected), "learned the skew as normal: expected {expected}");
    assert!(fired.1["summary"].as_str().unwrap().starts_with("balancer: "), "{brief:#?}");
    // Resolved after the fix, and not before it.
    let resolved = resolved_after(&alerts, &culprit, fixed, &log);
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "cold start: reported {delay:?} after the bad reload, resolved {:?} after the fix",
            resolved.0.duration_since(fixed)
        );
    }
    // Nothing else fired (no `under` on the restored server), and nothing is left firing.
    let firing: Vec<_> = alerts.iter().filter(|(_, a)| a["state"] == "firing").collect();
    let resolves: Vec<_> = alerts.iter().filter(|(_, a)| a["state"] == "resolved").collect();
    assert_eq!(firing.len(), 1, "{brief:#?}");
    assert_eq!(resolves.len(), 1, "{brief:#?}");
}
