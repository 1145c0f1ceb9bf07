//! Health: how the pool usually answers (its 5xx rate and latency, learned from quiet windows),
//! and whether the backends still serving show harm: the test that tells a departure the pool
//! absorbed (a drain, a scale-in: a change to record) from one it could not (a page).
//!
//! The pool's latencies in one window ([`PoolLatency`]) are merged once per window and shared
//! with the peer comparison.

use serde::{Deserialize, Serialize};

use super::DetectorConfig;
use super::stats::{ratio, upper};
use crate::window::{
    BackendSummary, N_BUCKETS, WindowSummary, first_bucket_above_ms, quantile_of_buckets,
};

/// The fraction of a pool's requests above its usual p95 in a healthy window.
const SLOW_NULL_RATE: f64 = 0.05;

/// Windows of learning before the pool's usual health is trusted.
const MIN_LEARNED_WINDOWS: u32 = 6;

/// The pool's latencies in one window, bucket by bucket, and its totals.
pub(super) struct PoolLatency {
    pub(super) buckets: Vec<u64>,
    pub(super) total: u64,
    /// The window's requests and 5xx, over every backend.
    pub(super) requests: u64,
    pub(super) errors: u64,
}

impl PoolLatency {
    /// Merges every backend's latencies of `window`.
    pub(super) fn of(window: &WindowSummary) -> Self {
        let mut buckets = vec![0u64; N_BUCKETS];
        let (mut total, mut requests, mut errors) = (0, 0, 0);
        for backend in &window.backends {
            for (bucket, count) in backend.latency.iter() {
                buckets[bucket] += count;
            }
            total += backend.latency.total();
            requests += backend.requests;
            errors += backend.errors;
        }
        PoolLatency { buckets, total, requests, errors }
    }

    /// The `q` quantile, ms.
    pub(super) fn quantile_ms(&self, q: f64) -> Option<f64> {
        quantile_of_buckets(self.buckets.iter().copied().enumerate(), self.total, q)
    }
}

/// What the pool's answers usually look like.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct PoolHealth {
    /// The usual 5xx rate.
    error_rate: f64,
    /// The usual median and p95 latency, ms (0 until known).
    p50_ms: f64,
    p95_ms: f64,
    learned_windows: u32,
}

impl PoolHealth {
    /// Learns from a window in which nothing was going on; `decay` is the per-window weight
    /// after the first windows (a running mean until then).
    pub(super) fn learn(&mut self, latency: &PoolLatency, decay: f64) {
        let (errors, requests) = (latency.errors, latency.requests);
        if requests == 0 {
            return;
        }
        self.learned_windows = self.learned_windows.saturating_add(1);
        let weight = decay.max(1.0 / f64::from(self.learned_windows));
        self.error_rate += weight * (ratio(errors, requests) - self.error_rate);
        if let (Some(p50), Some(p95)) = (latency.quantile_ms(0.5), latency.quantile_ms(0.95)) {
            if self.p95_ms <= 0.0 {
                (self.p50_ms, self.p95_ms) = (p50, p95);
            } else {
                self.p50_ms += weight * (p50 - self.p50_ms);
                self.p95_ms += weight * (p95 - self.p95_ms);
            }
        }
    }

    /// Whether the backends of `window` that `serving` keeps show harm against the pool's
    /// usual: their 5xx rate or their share of slow requests well above it, significantly.
    /// Returns what they show, in words.
    pub(super) fn harm(
        &self,
        window: &WindowSummary,
        serving: impl Fn(&BackendSummary) -> bool,
        n_backends: usize,
        config: &DetectorConfig,
    ) -> Option<String> {
        if self.learned_windows < MIN_LEARNED_WINDOWS {
            return None;
        }
        let (mut errors, mut requests, mut slow, mut timed) = (0u64, 0u64, 0u64, 0u64);
        // A request is slow above the usual p95, floored like the peer comparison's.
        let threshold = self
            .p95_ms
            .max(self.p50_ms * config.latency_min_ratio)
            .max(self.p50_ms + config.latency_min_delta_ms);
        let first_slow = first_bucket_above_ms(threshold);
        for backend in window.backends.iter().filter(|b| serving(b)) {
            errors += backend.errors;
            requests += backend.requests;
            slow += backend.latency.count_from_bucket(first_slow);
            timed += backend.latency.total();
        }
        if requests < config.errors_min_requests {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let tests = n_backends.max(1) as f64;
        let rate = ratio(errors, requests);
        let null = self.error_rate.max(1e-3);
        if rate >= self.error_rate * config.errors_min_ratio
            && rate >= self.error_rate + config.errors_min_delta / 2.0
            && upper(errors, requests, null, 1.0) * tests < config.alpha
        {
            return Some(format!(
                "the backends still serving fail {:.1}% of their requests against {:.1}% usually",
                rate * 100.0,
                self.error_rate * 100.0
            ));
        }
        let slow_fraction = ratio(slow, timed);
        if self.p95_ms > 0.0
            && timed >= config.latency_min_requests
            && slow_fraction >= config.latency_min_slow_fraction
            && upper(slow, timed, SLOW_NULL_RATE, 1.0) * tests < config.alpha
        {
            return Some(format!(
                "{:.0}% of the requests of the backends still serving take over {threshold:.0} ms, \
                 the pool's usual p95",
                slow_fraction * 100.0
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::LatencySketch;

    fn backend(name: &str, requests: u64, errors: u64, latency_ms: f64) -> BackendSummary {
        #[allow(clippy::cast_precision_loss)]
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

    fn window(backends: Vec<BackendSummary>) -> WindowSummary {
        WindowSummary { pool: "api".into(), start_ms: 0, end_ms: 10_000, backends, no_backend: 0 }
    }

    #[test]
    fn harm_is_errors_or_slowness_well_above_the_usual() {
        let config = DetectorConfig::default();
        let mut health = PoolHealth::default();
        let usual = window(vec![backend("a", 100, 0, 20.0), backend("b", 100, 1, 20.0)]);
        for _ in 0..10 {
            health.learn(&PoolLatency::of(&usual), 0.01);
        }
        let all = |_: &BackendSummary| true;
        assert_eq!(health.harm(&usual, all, 2, &config), None);
        let failing = window(vec![backend("a", 150, 30, 20.0), backend("b", 150, 25, 20.0)]);
        assert!(health.harm(&failing, all, 2, &config).unwrap().contains("fail 18.3%"));
        let slow = window(vec![backend("a", 150, 0, 200.0), backend("b", 150, 0, 200.0)]);
        assert!(health.harm(&slow, all, 2, &config).unwrap().contains("take over"));
        // Only the backends still serving count.
        assert_eq!(health.harm(&failing, |b| &*b.backend == "zzz", 2, &config), None);
    }
}
