//! Peers: one backend's 5xx rate or latency pulling away from the rest of its pool, judged
//! within the same window (so it works from the first window and through a skew).
//!
//! - **errors**: the backend's 5xx count against the pooled rate of its peers, with a one-sided
//!   exact binomial test (Bonferroni over the pool's backends), a volume guard, and an effect
//!   floor (ratio and percentage points), as Envoy's success-rate ejection does.
//! - **latency**: count-aware. A p99 over a few dozen requests is just their maximum, so one
//!   slow request would swing it. Instead each backend's requests slower than a threshold are
//!   counted: the threshold is the peers' p95, raised to `latency_min_ratio` times and
//!   `latency_min_delta_ms` over their median so that a tight cluster of fast servers does not
//!   make a millisecond look slow. A healthy backend has at most 5% of its requests above it;
//!   a backend is slow when a much larger fraction is (`latency_min_slow_fraction`) and a
//!   one-sided binomial test against 5% says that is no accident. A quiet pool's single slow
//!   request is 1 of 40, not a page.

use super::health::PoolLatency;
use super::quiet::Accumulated;
use super::stats::{ratio, upper};
use super::tracker::{Hold, Verdict};
use super::{AlertKind, DetectorConfig, Direction, Evidence, Finding, PoolState, Severity, Watch};
use crate::window::{BackendSummary, WindowSummary, first_bucket_above_ms, quantile_of_buckets};

/// The fraction of a healthy backend's requests above the peers' p95.
const SLOW_NULL_RATE: f64 = 0.05;

/// Below this many backends, each backend's peers are the others (leave one out); above it,
/// the whole pool stands in for them, which one backend barely moves.
const LEAVE_ONE_OUT_MAX: usize = 20;

/// The numbers behind an errors verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ErrorsJudgement {
    pub(super) verdict: Verdict,
    /// Bonferroni-adjusted one-sided p-value.
    pub(super) p_value: f64,
}

/// Judges a backend with `requests` and `errors` against peers with `peer_requests` and
/// `peer_errors`, among `n_backends`.
pub(super) fn judge_errors(
    requests: u64,
    errors: u64,
    peer_requests: u64,
    peer_errors: u64,
    n_backends: usize,
    config: &DetectorConfig,
) -> ErrorsJudgement {
    let unknown = ErrorsJudgement { verdict: Verdict::Unknown, p_value: 1.0 };
    if requests < config.errors_min_requests || peer_requests < config.errors_min_requests {
        return unknown;
    }
    let rate = ratio(errors, requests);
    let peer_rate = ratio(peer_errors, peer_requests);
    // Clearly back: under the floor's halfway mark.
    if rate < peer_rate + config.errors_min_delta / 2.0 {
        return ErrorsJudgement { verdict: Verdict::Clear, p_value: 1.0 };
    }
    // A peer rate of 0 would make any single error infinitely unlikely: floor it.
    let null_rate = peer_rate.max(1e-3);
    #[allow(clippy::cast_precision_loss)]
    let adjusted = (upper(errors, requests, null_rate, 1.0) * n_backends as f64).min(1.0);
    let anomalous = adjusted < config.alpha
        && rate >= peer_rate + config.errors_min_delta
        && rate >= peer_rate * config.errors_min_ratio;
    ErrorsJudgement {
        verdict: if anomalous { Verdict::Anomalous } else { Verdict::Unknown },
        p_value: adjusted,
    }
}

/// Judges a backend of a quiet pool on its latest requests, accumulated over windows, against
/// its peers over the same windows: the test of [`judge_errors`] with a lower volume guard and
/// a floor on the failures themselves.
pub(super) fn judge_quiet_errors(
    latest: &Accumulated,
    n_backends: usize,
    config: &DetectorConfig,
) -> ErrorsJudgement {
    let unknown = ErrorsJudgement { verdict: Verdict::Unknown, p_value: 1.0 };
    if latest.requests < config.quiet_min_requests {
        return unknown;
    }
    let rate = ratio(latest.errors, latest.requests);
    let peer_rate = ratio(latest.peer_errors, latest.peer_requests);
    if rate < peer_rate + config.errors_min_delta / 2.0 {
        return ErrorsJudgement { verdict: Verdict::Clear, p_value: 1.0 };
    }
    let null_rate = peer_rate.max(1e-3);
    #[allow(clippy::cast_precision_loss)]
    let adjusted =
        (upper(latest.errors, latest.requests, null_rate, 1.0) * n_backends as f64).min(1.0);
    let anomalous = adjusted < config.alpha
        && latest.errors >= config.quiet_min_errors
        && rate >= peer_rate + config.errors_min_delta
        && rate >= peer_rate * config.errors_min_ratio;
    ErrorsJudgement {
        verdict: if anomalous { Verdict::Anomalous } else { Verdict::Unknown },
        p_value: adjusted,
    }
}

/// Whether the backend at `position` of `window` is failing or slow against its peers in
/// this window alone: harm that a share alert must not hide (a hot backend drowning, a
/// newcomer that fails).
pub(super) fn is_harmed(
    window: &WindowSummary,
    position: usize,
    latency: Option<&PoolLatency>,
    config: &DetectorConfig,
) -> bool {
    let this = &window.backends[position];
    let n_backends = window.backends.len();
    let (pool_errors, pool_requests) = latency.map_or_else(
        || window.backends.iter().fold((0, 0), |(e, r), b| (e + b.errors, r + b.requests)),
        |l| (l.errors, l.requests),
    );
    let errors = judge_errors(
        this.requests,
        this.errors,
        pool_requests - this.requests,
        pool_errors - this.errors,
        n_backends,
        config,
    );
    if errors.verdict == Verdict::Anomalous {
        return true;
    }
    let Some(latency) = latency.filter(|_| this.latency.total() >= config.latency_min_requests)
    else {
        return false;
    };
    let threshold = if n_backends <= LEAVE_ONE_OUT_MAX {
        latency.threshold_ms(Some(this), config)
    } else {
        latency.threshold_ms(None, config)
    };
    threshold
        .and_then(|t| judge_latency(this, t, n_backends, config))
        .is_some_and(|j| j.verdict == Verdict::Anomalous)
}

/// The numbers behind a latency verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LatencyJudgement {
    pub(super) verdict: Verdict,
    /// The slow threshold, ms.
    pub(super) threshold_ms: f64,
    /// The backend's fraction of requests above it.
    pub(super) slow_fraction: f64,
    /// Bonferroni-adjusted one-sided p-value of that fraction against 5%.
    pub(super) p_value: f64,
}

impl PoolLatency {
    /// The slow threshold for the peers of `this` backend (or the whole pool), ms: their p95,
    /// at least `latency_min_ratio` times and `latency_min_delta_ms` over their median.
    fn threshold_ms(&self, this: Option<&BackendSummary>, config: &DetectorConfig) -> Option<f64> {
        let own: Vec<(usize, u64)> = this.map(|b| b.latency.iter().collect()).unwrap_or_default();
        let own_total = this.map_or(0, |b| b.latency.total());
        let peers = || {
            let mut own = own.iter().peekable();
            self.buckets.iter().enumerate().map(move |(bucket, &count)| {
                let mine = match own.peek() {
                    Some(&&(b, c)) if b == bucket => {
                        own.next();
                        c
                    }
                    _ => 0,
                };
                (bucket, count - mine)
            })
        };
        let total = self.total - own_total;
        let p95 = quantile_of_buckets(peers(), total, 0.95)?;
        let median = quantile_of_buckets(peers(), total, 0.5)?;
        Some(p95.max(median * config.latency_min_ratio).max(median + config.latency_min_delta_ms))
    }
}

/// Judges `this` backend's latency: the fraction of its requests over the threshold.
fn judge_latency(
    this: &BackendSummary,
    threshold_ms: f64,
    n_backends: usize,
    config: &DetectorConfig,
) -> Option<LatencyJudgement> {
    let n = this.latency.total();
    if n < config.latency_min_requests {
        return None;
    }
    let slow = this.latency.count_from_bucket(first_bucket_above_ms(threshold_ms));
    let slow_fraction = ratio(slow, n);
    #[allow(clippy::cast_precision_loss)]
    let p_value = (upper(slow, n, SLOW_NULL_RATE, 1.0) * n_backends as f64).min(1.0);
    let verdict = if p_value < config.alpha && slow_fraction >= config.latency_min_slow_fraction {
        Verdict::Anomalous
    } else if slow_fraction < (SLOW_NULL_RATE + config.latency_min_slow_fraction) / 2.0 {
        Verdict::Clear
    } else {
        Verdict::Unknown
    };
    Some(LatencyJudgement { verdict, threshold_ms, slow_fraction, p_value })
}

/// Judges every backend of the window against its peers on errors and latency and appends the
/// state changes. `present` maps the window's backends (by position) to their slots.
pub(super) fn observe(
    pool: &mut PoolState,
    window: &WindowSummary,
    present: &[(usize, usize)],
    latency: Option<&PoolLatency>,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    pool.quiet.record(window, present, config);
    let n_backends = window.backends.len();
    if n_backends < 2 {
        return;
    }
    let (pool_errors, pool_requests) =
        window.backends.iter().fold((0, 0), |(e, r), b| (e + b.errors, r + b.requests));
    let leave_one_out = n_backends <= LEAVE_ONE_OUT_MAX;
    let pool_threshold = latency
        .filter(|_| !leave_one_out)
        .and_then(|pool_latency| pool_latency.threshold_ms(None, config));
    let hold = Hold {
        fire_ms: i64::from(config.for_s) * 1000,
        resolve_ms: i64::from(config.resolve_for_s) * 1000,
    };
    let mut quiet_judged = false;
    let mut troubled = false;
    for &(slot, position) in present {
        let this = &window.backends[position];
        // Too few requests in this window: its latest ones, over the windows before.
        let latest = (this.requests < config.errors_min_requests)
            .then(|| pool.quiet.latest(slot, config))
            .flatten();
        let Some(backend) = pool.backend_mut(slot) else { continue };
        let errors = match &latest {
            Some(latest) => judge_quiet_errors(latest, n_backends, config),
            None => judge_errors(
                this.requests,
                this.errors,
                pool_requests - this.requests,
                pool_errors - this.errors,
                n_backends,
                config,
            ),
        };
        quiet_judged |= latest.is_some_and(|l| l.requests >= config.quiet_min_requests);
        let latency = latency
            .filter(|_| this.latency.total() >= config.latency_min_requests)
            .and_then(|pool_latency| {
                let threshold = match pool_threshold {
                    Some(threshold) => threshold,
                    None => pool_latency.threshold_ms(Some(this), config)?,
                };
                judge_latency(this, threshold, n_backends, config)
            });
        // A backend already paged (or about to be) for taking too much traffic: its skew
        // alert reports its errors and latency, so they do not page again (an inhibition, as
        // in Alertmanager).
        let inhibited = backend.shares.is_over();
        for kind in [AlertKind::Errors, AlertKind::Latency] {
            let verdict = match kind {
                AlertKind::Errors => errors.verdict,
                _ => latency.map_or(Verdict::Unknown, |j| j.verdict),
            };
            // One page per backend: one that is failing is not paged again for being slow
            // (its errors alert reports its latency).
            let failing = kind == AlertKind::Latency
                && backend.watches.as_ref().is_some_and(|w| w.errors.is_active());
            let verdict = match verdict {
                Verdict::Anomalous if inhibited || failing => Verdict::Unknown,
                verdict => verdict,
            };
            let watch = if kind == AlertKind::Errors { Watch::Errors } else { Watch::Latency };
            let Some(transition) =
                backend.step(watch, verdict, window.start_ms, window.end_ms, hold)
            else {
                continue;
            };
            let (state, since_ms) = transition.state();
            let mut evidence = Evidence::blank(config.window_s);
            evidence.observed_share = ratio(this.requests, pool_requests);
            evidence.backend_requests = this.requests;
            evidence.pool_requests = pool_requests;
            evidence.pool_backends = n_backends;
            evidence.duration_s = (window.end_ms - since_ms) / 1000;
            super::explain::add_health(&mut evidence, &this.backend, window);
            if kind == AlertKind::Errors {
                evidence.errors_p_value = Some(errors.p_value);
                if let Some(latest) = &latest {
                    evidence.backend_requests = latest.requests;
                    evidence.error_rate = ratio(latest.errors, latest.requests);
                    evidence.peer_error_rate = ratio(latest.peer_errors, latest.peer_requests);
                    #[allow(clippy::cast_possible_wrap)]
                    let span = latest.windows as i64 * i64::from(config.window_s);
                    evidence.accumulated_s = Some(span);
                }
            } else if let Some(judgement) = latency {
                evidence.latency_threshold_ms = Some(judgement.threshold_ms);
                evidence.slow_fraction = Some(judgement.slow_fraction);
                evidence.latency_p_value = Some(judgement.p_value);
            }
            findings.push(Finding {
                state,
                kind,
                direction: Direction::Over,
                backend: backend.name.clone(),
                started_at_ms: since_ms,
                severity: if kind == AlertKind::Errors {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                evidence,
                resolution: None,
            });
        }
        troubled |=
            backend.watches.as_ref().is_some_and(|w| w.errors.is_active() || w.latency.is_active());
    }
    pool.coverage.quiet_judged_windows += u64::from(quiet_judged);
    pool.troubled = troubled;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::LatencySketch;
    use std::sync::Arc;

    fn backend(name: &str, latencies_ms: &[f64]) -> BackendSummary {
        let latency = LatencySketch::from_latencies_ms(latencies_ms);
        BackendSummary {
            backend: Arc::from(name),
            id: 0,
            requests: latencies_ms.len() as u64,
            errors: 0,
            retried: 0,
            failed_attempts: 0,
            p50_ms: latency.quantile_ms(0.5),
            p99_ms: latency.quantile_ms(0.99),
            latency,
        }
    }

    fn window(backends: Vec<BackendSummary>) -> WindowSummary {
        WindowSummary {
            pool: Arc::from("api"),
            start_ms: 0,
            end_ms: 10_000,
            backends,
            no_backend: 0,
        }
    }

    /// `n` latencies spread like a healthy server's: 10 to 50 ms, with a rare slow one.
    fn healthy(n: usize, slow_every: usize) -> Vec<f64> {
        (0..n)
            .map(
                |i| {
                    if slow_every > 0 && i % slow_every == 7 {
                        900.0
                    } else {
                        10.0 + (i % 40) as f64
                    }
                },
            )
            .collect()
    }

    #[test]
    fn a_backend_failing_a_fifth_of_its_requests_stands_out() {
        let config = DetectorConfig::default();
        let judgement = judge_errors(100, 20, 300, 1, 4, &config);
        assert_eq!(judgement.verdict, Verdict::Anomalous);
        assert!(judgement.p_value < 1e-6, "{judgement:?}");
        assert_eq!(judge_errors(100, 0, 300, 21, 4, &config).verdict, Verdict::Clear);
        // 2 errors of 5: 40%, but five requests say little.
        assert_eq!(judge_errors(5, 2, 200, 0, 2, &config).verdict, Verdict::Unknown);
        // Everyone at 10%: an outage of the pool, not an outlier.
        assert_ne!(judge_errors(100, 11, 200, 19, 3, &config).verdict, Verdict::Anomalous);
    }

    #[test]
    fn a_slow_backend_stands_out_and_one_slow_request_does_not() {
        let config = DetectorConfig::default();
        let slow: Vec<f64> = (0..100).map(|i| 400.0 + f64::from(i)).collect();
        let w = window(vec![
            backend("slow", &slow),
            backend("b", &healthy(100, 0)),
            backend("c", &healthy(100, 0)),
            backend("d", &healthy(100, 0)),
        ]);
        let pool = PoolLatency::of(&w);
        let threshold = pool.threshold_ms(Some(&w.backends[0]), &config).unwrap();
        let judgement = judge_latency(&w.backends[0], threshold, 4, &config).unwrap();
        assert_eq!(judgement.verdict, Verdict::Anomalous, "{judgement:?}");
        assert!(judgement.slow_fraction > 0.9);
        // A quiet pool: 40 requests each, one of them very slow on one backend. Its p99 is
        // 20x its peers', but 1 in 40 is what a healthy backend does.
        let w = window(vec![
            backend("a", &healthy(40, 40)),
            backend("b", &healthy(40, 0)),
            backend("c", &healthy(40, 0)),
        ]);
        let pool = PoolLatency::of(&w);
        let threshold = pool.threshold_ms(Some(&w.backends[0]), &config).unwrap();
        let judgement = judge_latency(&w.backends[0], threshold, 3, &config).unwrap();
        assert_ne!(judgement.verdict, Verdict::Anomalous, "{judgement:?}");
        // 3 ms slower than identical peers is noise: the threshold is 50 ms over their median.
        let shifted: Vec<f64> = healthy(100, 0).iter().map(|ms| ms + 3.0).collect();
        let w = window(vec![
            backend("a", &shifted),
            backend("b", &healthy(100, 0)),
            backend("c", &healthy(100, 0)),
        ]);
        let threshold = PoolLatency::of(&w).threshold_ms(Some(&w.backends[0]), &config).unwrap();
        assert!(threshold >= 50.0);
        assert_ne!(
            judge_latency(&w.backends[0], threshold, 3, &config).unwrap().verdict,
            Verdict::Anomalous
        );
    }
}
