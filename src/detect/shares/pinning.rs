//! Pinning after a scale-up: new backends join, but long-lived connections (HTTP/2, gRPC,
//! keep-alive pools) stay on the old ones, so the newcomers get only a trickle while the old
//! ones stay overloaded. A slow start ramps up; a canary is one backend at a deliberate share.
//! Pinning is two or more backends that joined together and, `pin_after_s` after joining,
//! still take less than a quarter of their share while the older backends take more: one
//! pool-wide page (kind `skew`, direction `under`, backend `*`), while their own grace would
//! otherwise hide them for minutes.

use serde::{Deserialize, Serialize};

use super::super::tracker::{Hold, Tracker, Verdict};
use super::super::{
    AlertKind, DetectorConfig, Direction, Evidence, ExpectedFrom, Finding, PoolState, Severity,
    WHOLE_POOL,
};
use super::PoolJudgement;
use crate::window::WindowSummary;

/// Newcomers that joined within this long of each other joined together, ms.
const TOGETHER_MS: i64 = 60_000;

/// A newcomer is pinned while it takes at most this fraction of its share.
const PINNED_RATIO: f64 = 0.25;

/// A pool's pinning alert and the newcomers it is about.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Pinning {
    tracker: Tracker,
    /// The pinned newcomers' slots (while pending or firing).
    pub(super) slots: Vec<usize>,
}

impl Pinning {
    /// When the alert began, if it is firing.
    pub(super) fn firing_since(&self) -> Option<i64> {
        self.tracker.firing_since()
    }

    /// Whether `slot` is one of the newcomers pinned now.
    pub(super) fn holds(&self, slot: usize) -> bool {
        self.tracker.firing_since().is_some() && self.slots.contains(&slot)
    }
}

/// Judges the pool's newcomers for pinning; `settling` says which of the judgement's
/// backends are within their grace.
pub(super) fn observe(
    pool: &mut PoolState,
    judgement: &PoolJudgement,
    settling: &[bool],
    window: &WindowSummary,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    let after_ms = i64::from(config.pin_after_s) * 1000;
    let firing = pool.shares.pinning.tracker.firing_since().is_some();
    // While firing, the newcomers it is about are judged, settled or not.
    let candidates: Vec<usize> = (0..judgement.slots.len())
        .filter(|&i| {
            let slot = judgement.slots[i];
            if firing {
                return pool.shares.pinning.slots.contains(&slot);
            }
            settling[i]
                && pool.slots[slot]
                    .as_ref()
                    .and_then(|b| b.first_seen_ms)
                    .is_some_and(|first| window.end_ms - first >= after_ms)
        })
        .collect();
    // Those that joined together with the most recent of them.
    let joined = |i: usize| {
        pool.slots[judgement.slots[i]].as_ref().and_then(|b| b.first_seen_ms).unwrap_or(0)
    };
    let latest = candidates.iter().map(|&i| joined(i)).max().unwrap_or(0);
    let together: Vec<usize> =
        candidates.into_iter().filter(|&i| firing || latest - joined(i) <= TOGETHER_MS).collect();
    #[allow(clippy::cast_precision_loss)]
    let span = judgement.span_requests.max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let share = |i: usize| judgement.span_counts[i] as f64 / span;
    let (observed, expected): (f64, f64) =
        together.iter().fold((0.0, 0.0), |(o, e), &i| (o + share(i), e + judgement.expected[i]));
    let each_pinned = together.iter().all(|&i| share(i) <= judgement.expected[i] * PINNED_RATIO);
    let verdict = if together.len() >= 2 && each_pinned && observed < expected {
        Verdict::Anomalous
    } else if together.is_empty() || observed >= expected / config.resolve_ratio {
        Verdict::Clear
    } else {
        Verdict::Unknown
    };
    let hold = Hold {
        fire_ms: i64::from(config.for_s) * 1000,
        resolve_ms: i64::from(config.resolve_for_s) * 1000,
    };
    let state = &mut pool.shares.pinning;
    if !firing {
        state.slots = together.iter().map(|&i| judgement.slots[i]).collect();
    }
    let Some(transition) = state.tracker.step(verdict, window.start_ms, window.end_ms, hold) else {
        return;
    };
    let (alert_state, since_ms) = transition.state();
    let mut evidence = Evidence::blank(config.window_s);
    evidence.observed_share = observed;
    evidence.expected_share = expected;
    evidence.ratio = if expected > 0.0 { observed / expected } else { 0.0 };
    evidence.expected_from =
        if pool.weighted { ExpectedFrom::Weights } else { ExpectedFrom::Baseline };
    evidence.backend_requests = together.iter().map(|&i| judgement.span_counts[i]).sum();
    evidence.pool_requests = judgement.span_requests;
    evidence.pool_backends = judgement.n_backends;
    evidence.pinned_backends = Some(
        together
            .iter()
            .filter_map(|&i| pool.slots[judgement.slots[i]].as_ref().map(|b| b.name.clone()))
            .take(crate::detect::ChangeEvidence::MAX_LISTED)
            .collect(),
    );
    evidence.duration_s = (window.end_ms - since_ms) / 1000;
    findings.push(Finding {
        state: alert_state,
        kind: AlertKind::Skew,
        direction: Direction::Under,
        backend: WHOLE_POOL.into(),
        started_at_ms: since_ms,
        severity: Severity::Warning,
        evidence,
        resolution: None,
    });
}
