//! Peer comparison: one backend's 5xx rate or latency pulling away from the rest of its pool.
//!
//! - **errors**: the backend's 5xx count against the pooled rate of its peers, with a one-sided
//!   exact binomial test (Bonferroni over the pool's backends), a volume guard, and an effect
//!   floor (ratio and percentage points), as Envoy's success-rate ejection and the SRE
//!   workbook's burn rates do.
//! - **latency**: the backend's p99 against the median of its peers' p99s, scaled by their
//!   median absolute deviation (robust z); the MAD is floored so a tight cluster of fast
//!   servers does not make a millisecond look like an outlier, and the p99 must also be a
//!   multiple of the peers' and some milliseconds slower.
//!
//! Both go through the same pending → firing → resolved [`Tracker`] as skew.

use statrs::distribution::{Binomial, DiscreteCDF};

use crate::window::{BackendSummary, WindowSummary};

use super::DetectorConfig;

/// The outcome of one window for one condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The condition holds.
    Anomalous,
    /// Clearly back to normal (past the hysteresis threshold).
    Clear,
    /// Neither, or not enough data to say: no change.
    Unknown,
}

/// A state change of a [`Tracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transition {
    /// Fired; the condition began at this event time.
    Fired { since_ms: i64 },
    /// Resolved; the condition had begun at this event time.
    Resolved { since_ms: i64 },
}

impl Transition {
    /// The alert state it produces and when the condition began.
    pub fn state(self) -> (super::AlertState, i64) {
        match self {
            Transition::Fired { since_ms } => (super::AlertState::Firing, since_ms),
            Transition::Resolved { since_ms } => (super::AlertState::Resolved, since_ms),
        }
    }
}

/// Pending → firing → resolved for one condition of one backend: fires after `for_s` of
/// consecutive anomalous windows and resolves after `resolve_for_s` of clear ones.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Tracker {
    pending_since_ms: Option<i64>,
    firing_since_ms: Option<i64>,
    clear_since_ms: Option<i64>,
}

impl Tracker {
    /// When the firing condition began, if it is firing.
    pub fn firing_since(&self) -> Option<i64> {
        self.firing_since_ms
    }

    /// Forgets a pending condition (a gap in the log breaks persistence).
    pub fn interrupt(&mut self) {
        self.pending_since_ms = None;
    }

    /// Feeds one window's verdict.
    pub fn step(
        &mut self,
        verdict: Verdict,
        window: &WindowSummary,
        config: &DetectorConfig,
    ) -> Option<Transition> {
        match self.firing_since_ms {
            None => {
                if verdict != Verdict::Anomalous {
                    self.pending_since_ms = None;
                    return None;
                }
                let since = *self.pending_since_ms.get_or_insert(window.start_ms);
                if window.end_ms - since < i64::from(config.for_s) * 1000 {
                    return None;
                }
                self.pending_since_ms = None;
                self.firing_since_ms = Some(since);
                self.clear_since_ms = None;
                Some(Transition::Fired { since_ms: since })
            }
            Some(since_ms) => {
                if verdict != Verdict::Clear {
                    self.clear_since_ms = None;
                    return None;
                }
                let clear_since = *self.clear_since_ms.get_or_insert(window.start_ms);
                if window.end_ms - clear_since < i64::from(config.resolve_for_s) * 1000 {
                    return None;
                }
                self.firing_since_ms = None;
                self.clear_since_ms = None;
                Some(Transition::Resolved { since_ms })
            }
        }
    }
}

/// The numbers behind an errors verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ErrorsJudgement {
    pub verdict: Verdict,
    /// Bonferroni-adjusted one-sided p-value.
    pub p_value: f64,
}

/// Judges backend `this` of `window` on its 5xx rate against its peers'.
#[allow(clippy::cast_precision_loss)]
pub(super) fn judge_errors(
    window: &WindowSummary,
    this: &BackendSummary,
    config: &DetectorConfig,
) -> ErrorsJudgement {
    let unknown = ErrorsJudgement { verdict: Verdict::Unknown, p_value: 1.0 };
    let (peer_errors, peer_requests) = window
        .backends
        .iter()
        .filter(|b| b.backend != this.backend)
        .fold((0, 0), |(e, r), b| (e + b.errors, r + b.requests));
    if this.requests < config.errors_min_requests || peer_requests < config.errors_min_requests {
        return unknown;
    }
    let rate = this.errors as f64 / this.requests as f64;
    let peer_rate = peer_errors as f64 / peer_requests as f64;
    // Clearly back: under the floor's halfway mark.
    if rate < peer_rate + config.errors_min_delta / 2.0 {
        return ErrorsJudgement { verdict: Verdict::Clear, p_value: 1.0 };
    }
    // A peer rate of 0 would make any single error infinitely unlikely: floor it.
    let null_rate = peer_rate.max(1e-3);
    let p_value = Binomial::new(null_rate, this.requests)
        .map_or(1.0, |b| if this.errors == 0 { 1.0 } else { b.sf(this.errors - 1) });
    let adjusted = (p_value * window.backends.len() as f64).min(1.0);
    let anomalous = adjusted < config.alpha
        && rate >= peer_rate + config.errors_min_delta
        && rate >= peer_rate * config.errors_min_ratio;
    ErrorsJudgement {
        verdict: if anomalous { Verdict::Anomalous } else { Verdict::Unknown },
        p_value: adjusted,
    }
}

/// The numbers behind a latency verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct LatencyJudgement {
    pub verdict: Verdict,
    /// The median of the peers' p99s, ms.
    pub peer_p99_ms: f64,
    /// (p99 − peer median) / max(1.4826·MAD, floors).
    pub robust_z: f64,
}

fn median(sorted: &[f64]) -> f64 {
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] }
}

/// Judges backend `this` of `window` on its p99 latency against its peers' p99s.
pub(super) fn judge_latency(
    window: &WindowSummary,
    this: &BackendSummary,
    config: &DetectorConfig,
    peers_scratch: &mut Vec<f64>,
) -> Option<LatencyJudgement> {
    let p99 = this.p99_ms.filter(|_| this.requests >= config.latency_min_requests)?;
    peers_scratch.clear();
    peers_scratch.extend(
        window
            .backends
            .iter()
            .filter(|b| b.backend != this.backend && b.requests >= config.latency_min_requests)
            .filter_map(|b| b.p99_ms),
    );
    // Peer statistics need peers: at least two besides this one.
    if peers_scratch.len() < 2 {
        return None;
    }
    peers_scratch.sort_by(f64::total_cmp);
    let peer_median = median(peers_scratch);
    for value in peers_scratch.iter_mut() {
        *value = (*value - peer_median).abs();
    }
    peers_scratch.sort_by(f64::total_cmp);
    let mad = median(peers_scratch);
    let scale = (1.4826 * mad).max(0.1 * peer_median).max(config.latency_min_delta_ms / 4.0);
    let robust_z = (p99 - peer_median) / scale;
    let anomalous = robust_z >= config.latency_min_z
        && p99 >= peer_median * config.latency_min_ratio
        && p99 - peer_median >= config.latency_min_delta_ms;
    let clear = p99 < peer_median * (1.0 + (config.latency_min_ratio - 1.0) / 2.0)
        || robust_z < config.latency_min_z / 2.0;
    let verdict = if anomalous {
        Verdict::Anomalous
    } else if clear {
        Verdict::Clear
    } else {
        Verdict::Unknown
    };
    Some(LatencyJudgement { verdict, peer_p99_ms: peer_median, robust_z })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn backend(name: &str, requests: u64, errors: u64, p99_ms: f64) -> BackendSummary {
        BackendSummary {
            backend: Arc::from(name),
            requests,
            errors,
            retried: 0,
            p50_ms: Some(p99_ms / 3.0),
            p99_ms: Some(p99_ms),
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

    #[test]
    fn a_backend_failing_a_fifth_of_its_requests_stands_out() {
        let config = DetectorConfig::default();
        let w = window(vec![
            backend("a", 100, 20, 50.0),
            backend("b", 100, 0, 50.0),
            backend("c", 100, 1, 50.0),
            backend("d", 100, 0, 50.0),
        ]);
        let judgement = judge_errors(&w, &w.backends[0], &config);
        assert_eq!(judgement.verdict, Verdict::Anomalous);
        assert!(judgement.p_value < 1e-6, "{judgement:?}");
        assert_eq!(judge_errors(&w, &w.backends[1], &config).verdict, Verdict::Clear);
    }

    #[test]
    fn few_requests_or_a_pool_wide_error_rate_are_not_one_backend() {
        let config = DetectorConfig::default();
        // 2 errors of 5: 40%, but five requests say little.
        let w = window(vec![backend("a", 5, 2, 50.0), backend("b", 200, 0, 50.0)]);
        assert_eq!(judge_errors(&w, &w.backends[0], &config).verdict, Verdict::Unknown);
        // Everyone at 10%: an outage of the pool, not an outlier.
        let w = window(vec![
            backend("a", 100, 11, 50.0),
            backend("b", 100, 10, 50.0),
            backend("c", 100, 9, 50.0),
        ]);
        assert_ne!(judge_errors(&w, &w.backends[0], &config).verdict, Verdict::Anomalous);
    }

    #[test]
    fn a_slow_backend_stands_out_and_a_tight_fast_cluster_does_not_flap() {
        let config = DetectorConfig::default();
        let mut scratch = Vec::new();
        let w = window(vec![
            backend("slow", 100, 0, 900.0),
            backend("b", 100, 0, 80.0),
            backend("c", 100, 0, 85.0),
            backend("d", 100, 0, 90.0),
        ]);
        let judgement = judge_latency(&w, &w.backends[0], &config, &mut scratch).unwrap();
        assert_eq!(judgement.verdict, Verdict::Anomalous, "{judgement:?}");
        assert_eq!(judgement.peer_p99_ms, 85.0);
        // 3 ms slower than identical peers is noise, however small their spread.
        let w = window(vec![
            backend("a", 100, 0, 13.0),
            backend("b", 100, 0, 10.0),
            backend("c", 100, 0, 10.0),
        ]);
        let judgement = judge_latency(&w, &w.backends[0], &config, &mut scratch).unwrap();
        assert_ne!(judgement.verdict, Verdict::Anomalous, "{judgement:?}");
        // Two backends: no peer statistics.
        let w = window(vec![backend("a", 100, 0, 900.0), backend("b", 100, 0, 10.0)]);
        assert!(judge_latency(&w, &w.backends[0], &config, &mut scratch).is_none());
    }

    #[test]
    fn the_tracker_fires_after_for_and_resolves_after_resolve_for() {
        let config = DetectorConfig { for_s: 20, resolve_for_s: 20, ..DetectorConfig::default() };
        let mut tracker = Tracker::default();
        let at = |start_s: i64| WindowSummary {
            start_ms: start_s * 1000,
            end_ms: start_s * 1000 + 10_000,
            ..window(vec![])
        };
        assert_eq!(tracker.step(Verdict::Anomalous, &at(0), &config), None);
        assert_eq!(
            tracker.step(Verdict::Anomalous, &at(10), &config),
            Some(Transition::Fired { since_ms: 0 })
        );
        assert_eq!(tracker.firing_since(), Some(0));
        assert_eq!(tracker.step(Verdict::Clear, &at(20), &config), None);
        assert_eq!(tracker.step(Verdict::Unknown, &at(30), &config), None);
        assert_eq!(tracker.step(Verdict::Clear, &at(40), &config), None);
        assert_eq!(
            tracker.step(Verdict::Clear, &at(50), &config),
            Some(Transition::Resolved { since_ms: 0 })
        );
        assert_eq!(tracker.firing_since(), None);
    }
}
