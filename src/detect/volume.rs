//! Volume: is the whole pool taking far more traffic than usual (`spike`)?
//!
//! A surge that spreads over the backends as usual changes no share, so it is never a skew:
//! it is load. Bursty pools see 2–3x bursts of total traffic for tens of seconds all the time,
//! so a spike must be *sustained*: the pool's volume over `spike_for_s` (the mean of its
//! per-window log ratios to the usual volume) must be at least `spike_min_ratio` times usual
//! and `spike_min_z` times the pool's own volatility at that span above it. The volatility is
//! learned from the pool's quiet windows at the span's scale, so it includes how long the
//! pool's bursts last.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::stats::half_life_alpha;
use super::tracker::{Hold, Tracker, Verdict};
use super::{
    AlertKind, DetectorConfig, Direction, Evidence, Finding, PoolState, Severity, WHOLE_POOL,
};
use crate::window::WindowSummary;

/// The smallest volatility assumed for a span's mean log ratio (5%): no pool is steadier than
/// that for long.
const MIN_VOLATILITY: f64 = 0.05;

/// A pool's usual volume and how much it varies.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct VolumeState {
    learned_windows: u32,
    /// Usual requests per window.
    baseline: f64,
    /// The last `spike_for_s` of log ratios of the volume to the baseline, newest last.
    recent: VecDeque<f64>,
    /// Exponentially weighted variance of the span's mean log ratio in quiet windows.
    span_variance: f64,
    /// Spans learned into it (a running mean until there are enough).
    variance_samples: u32,
    /// The `spike` alert.
    pub(super) tracker: Tracker,
}

/// Judges the pool's volume and appends the state changes of its `spike` alert.
#[allow(clippy::cast_precision_loss)]
pub(super) fn observe(
    pool: &mut PoolState,
    window: &WindowSummary,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    let state = &mut pool.volume;
    let n = window.total_requests() as f64;
    let warmup_windows = config.warmup_s.div_ceil(config.window_s.max(1));
    let span = (config.spike_for_s / config.window_s.max(1)).max(1) as usize;
    if state.learned_windows < warmup_windows {
        state.learned_windows += 1;
        state.baseline += (n - state.baseline) / f64::from(state.learned_windows);
        return;
    }
    let baseline = state.baseline;
    let log_ratio = ((n + 1.0) / (baseline + 1.0)).ln();
    state.recent.push_back(log_ratio);
    if state.recent.len() > span {
        state.recent.pop_front();
    }
    let span_mean = state.recent.iter().sum::<f64>() / state.recent.len() as f64;
    // Poisson noise alone gives a span mean a variance of about 1/(span × baseline).
    let poisson_variance = 1.0 / (span as f64 * (baseline + 1.0));
    let volatility = (state.span_variance.max(poisson_variance)).sqrt().max(MIN_VOLATILITY);
    let z = span_mean / volatility;
    // A surge that lands on one backend is that backend's skew, already judged and paged.
    let lands_on_one_backend = pool.shares.any_over;
    let full = state.recent.len() == span;
    let verdict = if full
        && baseline >= config.spike_min_baseline
        && !lands_on_one_backend
        && span_mean >= config.spike_min_ratio.ln()
        && z >= config.spike_min_z
    {
        Verdict::Anomalous
    } else if span_mean < (1.0 + (config.spike_min_ratio - 1.0) / 2.0).ln() {
        Verdict::Clear
    } else {
        Verdict::Unknown
    };
    let half_life_windows = f64::from(config.baseline_half_life_s) / f64::from(config.window_s);
    let alpha = half_life_alpha(half_life_windows);
    let ordinary = log_ratio < (1.0 + (config.spike_min_ratio - 1.0) / 2.0).ln();
    if verdict == Verdict::Clear && state.tracker.firing_since().is_none() && ordinary {
        // Learn the usual volume and its volatility, slowly, only from ordinary windows (the
        // first windows of a surge are not: they would teach that surges are usual).
        state.baseline += alpha * (n - baseline);
        if full {
            state.variance_samples = state.variance_samples.saturating_add(1);
            let weight = alpha.max(1.0 / f64::from(state.variance_samples));
            state.span_variance += weight * (span_mean * span_mean - state.span_variance);
        }
    }
    // The span itself is the persistence: a spike fires at once, dated from when the surge
    // began to show.
    let window_ms = i64::from(config.window_s) * 1000;
    let transition = if verdict == Verdict::Anomalous && state.tracker.firing_since().is_none() {
        let surging = state.recent.iter().rev().take_while(|r| **r > 0.0).count() as i64;
        Some(state.tracker.fire_now(window.end_ms - surging.max(1) * window_ms))
    } else {
        let hold = Hold { fire_ms: 0, resolve_ms: i64::from(config.resolve_for_s) * 1000 };
        state.tracker.step(verdict, window.start_ms, window.end_ms, hold)
    };
    let Some(transition) = transition else { return };
    let (alert_state, since_ms) = transition.state();
    let mut evidence = Evidence::blank(config.window_s);
    evidence.ratio = if baseline > 0.0 { n / baseline } else { 0.0 };
    evidence.observed_share = 1.0;
    evidence.expected_share = 1.0;
    evidence.pool_requests = window.total_requests();
    evidence.pool_backends = window.backends.len();
    evidence.usual_pool_requests = Some(baseline);
    evidence.volume_z = Some(z);
    evidence.duration_s = (window.end_ms - since_ms) / 1000;
    findings.push(Finding {
        state: alert_state,
        kind: AlertKind::Spike,
        direction: Direction::Over,
        backend: WHOLE_POOL.into(),
        started_at_ms: since_ms,
        severity: Severity::Warning,
        evidence,
        resolution: None,
    });
}
