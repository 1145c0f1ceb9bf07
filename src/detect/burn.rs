//! Pool-wide errors against the pool's own history, in the SRE workbook's multi-window
//! burn-rate style: page when the 5xx rate over both a short window (30 seconds) and a long one
//! (5 minutes) is at least `burn_rate` times the pool's usual rate (and at least
//! `burn_min_rate`). The short window makes it reset fast, the long one keeps a brief burst
//! from paging. Peer comparison cannot see this case: when every backend fails alike, no
//! backend stands out.
//!
//! The windows are the workbook's fastest pair scaled down (its 1 hour and 5 minutes guard a
//! 30-day SLO budget): the reference here is the pool's own usual rate, not a budget, and a
//! pool that starts failing all over must page within minutes, not the 20 an hour-long window
//! takes to fill at a 50x burn.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::stats::half_life_alpha;
use super::tracker::{Hold, Tracker, Verdict};
use super::{
    AlertKind, DetectorConfig, Direction, Evidence, Finding, PoolState, Severity, WHOLE_POOL,
};
use crate::window::WindowSummary;

/// The pool's recent windows and its usual 5xx rate.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct BurnState {
    /// (5xx, requests) per window, newest last, at most the long window's worth.
    windows: VecDeque<(u64, u64)>,
    usual_rate: f64,
    learned_windows: u32,
    /// The pool-wide errors alert.
    pub tracker: Tracker,
}

/// One window's burn figures.
#[derive(Debug, Clone, Copy)]
pub(super) struct Burn {
    pub verdict: Verdict,
    /// 5xx rate over the long window.
    pub long_rate: f64,
    /// The pool's usual 5xx rate.
    pub usual_rate: f64,
}

#[allow(clippy::cast_precision_loss)]
fn rate(windows: impl Iterator<Item = (u64, u64)>) -> (f64, u64) {
    let (errors, requests) = windows.fold((0, 0), |(e, r), (we, wr)| (e + we, r + wr));
    (if requests == 0 { 0.0 } else { errors as f64 / requests as f64 }, requests)
}

impl BurnState {
    /// Adds one window of the pool and judges it.
    pub fn observe(
        &mut self,
        errors: u64,
        requests: u64,
        config: &DetectorConfig,
        warmup_windows: u32,
    ) -> Burn {
        let window_s = config.window_s.max(1);
        let long = (config.burn_long_s / window_s).max(1) as usize;
        let short = (config.burn_short_s / window_s).clamp(1, long as u32) as usize;
        self.windows.push_back((errors, requests));
        if self.windows.len() > long {
            self.windows.pop_front();
        }
        let (short_rate, _) = rate(self.windows.iter().rev().take(short).copied());
        let (long_rate, long_requests) = rate(self.windows.iter().copied());
        let unknown = Burn { verdict: Verdict::Unknown, long_rate, usual_rate: self.usual_rate };
        #[allow(clippy::cast_precision_loss)]
        let this_rate = if requests == 0 { 0.0 } else { errors as f64 / requests as f64 };
        if self.learned_windows < warmup_windows {
            self.learned_windows += 1;
            self.usual_rate += (this_rate - self.usual_rate) / f64::from(self.learned_windows);
            return unknown;
        }
        let threshold = (config.burn_rate * self.usual_rate.max(1e-3)).max(config.burn_min_rate);
        let verdict = if long_requests >= config.burn_min_requests
            && short_rate >= threshold
            && long_rate >= threshold
        {
            Verdict::Anomalous
        } else if short_rate < threshold / 2.0 {
            Verdict::Clear
        } else {
            Verdict::Unknown
        };
        if verdict == Verdict::Clear
            && this_rate < threshold / 2.0
            && self.tracker.firing_since().is_none()
            && requests > 0
        {
            // Learn slowly, only from windows that look normal themselves: the first windows
            // of a burst still have a clear short window.
            let half_life_windows = f64::from(config.baseline_half_life_s) / f64::from(window_s);
            self.usual_rate += half_life_alpha(half_life_windows) * (this_rate - self.usual_rate);
        }
        Burn { verdict, ..unknown }
    }
}

/// Judges the pool's 5xx rate against its own history and appends the state changes of the
/// pool-wide `errors` alert (backend `*`).
pub(super) fn observe(
    pool: &mut PoolState,
    window: &WindowSummary,
    present: &[(usize, usize)],
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    // Backends already paged for their own errors or for taking too much traffic are left
    // out: their alerts explain their errors, and their history must not page the pool later.
    let (mut errors, mut requests) = (0, 0);
    for &(slot, position) in present {
        let summary = &window.backends[position];
        let paged = pool.slots[slot]
            .as_ref()
            .is_some_and(|b| b.firing_since(super::Watch::Errors).is_some() || b.shares.is_over());
        if !paged {
            errors += summary.errors;
            requests += summary.requests;
        }
    }
    let warmup_windows = config.warmup_s.div_ceil(config.window_s.max(1));
    let burn = pool.burn.observe(errors, requests, config, warmup_windows);
    let hold = Hold {
        fire_ms: i64::from(config.for_s) * 1000,
        resolve_ms: i64::from(config.resolve_for_s) * 1000,
    };
    let Some(transition) =
        pool.burn.tracker.step(burn.verdict, window.start_ms, window.end_ms, hold)
    else {
        return;
    };
    let (state, since_ms) = transition.state();
    let mut evidence = Evidence::blank(config.window_s);
    evidence.observed_share = 1.0;
    evidence.expected_share = 1.0;
    evidence.ratio = 1.0;
    evidence.pool_requests = window.total_requests();
    evidence.pool_backends = window.backends.len();
    // For the whole pool, the "peers" are the pool's own past.
    evidence.error_rate = burn.long_rate;
    evidence.peer_error_rate = burn.usual_rate;
    evidence.duration_s = (window.end_ms - since_ms) / 1000;
    findings.push(Finding {
        state,
        kind: AlertKind::Errors,
        direction: Direction::Over,
        backend: WHOLE_POOL.into(),
        started_at_ms: since_ms,
        severity: Severity::Critical,
        evidence,
        resolution: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sustained_pool_wide_burn_pages_and_a_burst_does_not() {
        let config = DetectorConfig::default();
        let mut state = BurnState::default();
        // An hour at the usual 0.25%.
        for _ in 0..360 {
            state.observe(1, 400, &config, 30);
        }
        // A 20-second burst of 30% errors: five minutes barely move.
        for _ in 0..2 {
            assert_ne!(state.observe(120, 400, &config, 30).verdict, Verdict::Anomalous);
        }
        for _ in 0..30 {
            state.observe(1, 400, &config, 30);
        }
        // Sustained 10%: five minutes cross 14.4 x 0.25% = 3.6% after about two minutes, and
        // the usual rate does not learn the burst meanwhile.
        let mut first_anomalous = None;
        for i in 0..200 {
            let burn = state.observe(40, 400, &config, 30);
            if burn.verdict == Verdict::Anomalous && first_anomalous.is_none() {
                first_anomalous = Some(i);
            }
        }
        let first = first_anomalous.expect("a sustained burn pages");
        assert!((8..14).contains(&first), "after {first} windows");
        assert!((state.usual_rate - 0.0025).abs() < 1e-4, "{}", state.usual_rate);
        // Back to normal: the short window clears within a minute.
        let cleared = (0..30).any(|_| state.observe(1, 400, &config, 30).verdict == Verdict::Clear);
        assert!(cleared);
    }
}
