//! The detector end to end over synthetic windows: each judge in order, with the alerts and
//! diagnoses they make.
//! Helpers here; the judges' tests by question in `shares.rs`, `operations.rs`, `health.rs`.

mod health;
mod operations;
mod shares;

pub(super) use super::*;
pub(super) use crate::window::{BackendSummary, LatencySketch};

/// A backend's line with `requests` latencies spread evenly from 0.5x to 1.5x `latency_ms`.
#[allow(clippy::cast_precision_loss)]
pub(super) fn backend(name: &str, requests: u64, errors: u64, latency_ms: f64) -> BackendSummary {
    let latencies: Vec<f64> =
        (0..requests).map(|i| latency_ms * (0.5 + i as f64 / requests as f64)).collect();
    let latency = LatencySketch::from_latencies_ms(&latencies);
    BackendSummary {
        backend: name.into(),
        id: 0,
        requests,
        errors,
        retried: 0,
        failed_attempts: 0,
        p50_ms: latency.quantile_ms(0.5),
        p99_ms: latency.quantile_ms(0.99),
        latency,
    }
}

pub(super) fn name(i: usize) -> String {
    format!("10.0.0.{i}:80")
}

pub(super) fn window(start_s: i64, counts: &[u64]) -> WindowSummary {
    WindowSummary {
        pool: "api".into(),
        start_ms: start_s * 1000,
        end_ms: (start_s + 10) * 1000,
        backends: counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &requests)| backend(&name(i), requests, 0, 20.0))
            .collect(),
        no_backend: 0,
    }
}

pub(super) fn run(
    detector: &mut Detector,
    windows: impl IntoIterator<Item = WindowSummary>,
) -> Vec<AlertEvent> {
    let mut alerts = Vec::new();
    for w in windows {
        detector.observe(&w, &mut alerts);
    }
    alerts
}

pub(super) fn learned() -> Detector {
    Detector::new(DetectorConfig::default(), FxHashMap::default())
}

pub(super) fn weighted(weights: &[(&str, f64)], slow_start_s: Option<u32>) -> Detector {
    let weights = weights.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let expectations = [("api".to_string(), PoolExpectation { weights, slow_start_s })];
    Detector::new(DetectorConfig::default(), expectations.into_iter().collect())
}

/// (state, kind, backend, at in s) of each alert.
pub(super) fn brief(alerts: &[AlertEvent]) -> Vec<(AlertState, AlertKind, &str, i64)> {
    alerts.iter().map(|a| (a.state, a.kind, &*a.backend, a.at_ms / 1000)).collect()
}

/// Windows from `counts_at(second)` every 10 s for `duration_s`.
pub(super) fn windows(
    duration_s: i64,
    mut counts_at: impl FnMut(i64) -> Vec<u64>,
) -> Vec<WindowSummary> {
    (0..duration_s / 10).map(|i| window(i * 10, &counts_at(i * 10))).collect()
}

#[test]
fn durations_read_naturally() {
    assert_eq!(fmt_duration(40), "40s");
    assert_eq!(fmt_duration(1500), "25m");
    assert_eq!(fmt_duration(1510), "25m10s");
    assert_eq!(fmt_duration(3720), "1h02m");
}

/// Every backend of a pool holds this state, so it stays small: what is rare (alerts,
/// departures, newcomers settling, learned uneven shares) lives in boxes or pool-wide sets.
#[test]
fn a_backend_costs_the_detector_about_a_hundred_bytes() {
    assert!(std::mem::size_of::<Option<BackendState>>() <= 104);
    assert!(std::mem::size_of::<crate::detect::shares::BackendShares>() <= 32);
}
