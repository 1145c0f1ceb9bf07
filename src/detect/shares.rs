//! Shares: is each backend taking its expected share of the pool's traffic?
//!
//! **Expected shares** come from configured weights, or from a baseline learned from the pool
//! itself. A learned baseline starts from equal shares (every balancer's default, weighted like
//! one window of traffic) and follows the windows that look normal: a running mean for
//! `warmup_s`, then a slow moving average. Windows that look skewed are never learned, so an
//! incident that starts during the warm-up is caught against what the pool did before it, and
//! never becomes normal. While the baseline is young, its own uncertainty widens the test (a
//! two-sample test of the recent span against the history before it).
//!
//! **The test** is over the last `for_s` of windows at once: each backend's count against its
//! expected share, with an exact binomial tail scaled by the pool's dispersion (quasi-binomial;
//! see `dispersion.rs`), Bonferroni over the backends. A backend is *anomalous* when that is
//! significant **and** the effect is large enough to matter (a ratio floor and a
//! percentage-point floor) **and** it holds in the span's every window. When one backend takes
//! too much, every other's share drops with it: the most significant is flagged, removed, and
//! the rest re-tested against each other (attribution), so one drowning server gives one page.
//!
//! **Resolving** needs the backend back within `resolve_ratio` of its expected share, or of the
//! share it had before the incident began (whatever the baseline learned meanwhile), for
//! `resolve_for_s`.
//!
//! Also here, because they are all about the expected split: `drop` (a backend taking nothing,
//! configured ones included whether or not they were ever seen), the slow-start grace of new
//! backends, flapping, and `unexpected` (a backend serving traffic that the weights do not
//! name, which is left out of the split so its peers are not paged for it).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::dispersion::{Cell, Noise};
use super::flapping::{FlapHistory, FlapRules};
use super::stats::{g_test, half_life_alpha, lower, normal_quantile, ratio, two_sided};
use super::tracker::{Hold, Verdict};
use super::{
    AlertKind, AlertState, DetectorConfig, Direction, Evidence, ExpectedFrom, Finding, PoolState,
    Severity,
};
use crate::window::WindowSummary;

/// How long an `unexpected` backend must serve nothing before its finding resolves, ms.
const UNEXPECTED_RESOLVE_MS: i64 = 300_000;

/// At most this many culprits are attributed one by one per window; beyond that the rest are
/// judged together (keeps a window's cost linear in the backends).
const MAX_ATTRIBUTION_ROUNDS: usize = 16;

/// A pool's share statistics.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct PoolShares {
    /// Windows learned into the baseline so far.
    learned_windows: u32,
    /// Effective requests behind the learned baseline (its own certainty).
    reference_requests: f64,
    /// The span's windows: (slot, requests) of each backend that served, oldest first.
    span: VecDeque<Vec<(usize, u64)>>,
    /// Each backend's level and the pool's dispersion around them.
    noise: Noise,
}

impl PoolShares {
    /// A gap in the log: the span starts again.
    pub(super) fn interrupt(&mut self) {
        self.span.clear();
    }
}

/// A condition that has begun but not yet held for `for_s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Pending {
    direction: Direction,
    since_ms: i64,
    /// The expected share when it began: what "back to normal" means for it.
    anchor: f64,
}

/// A firing skew or drop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Firing {
    kind: AlertKind,
    direction: Direction,
    since_ms: i64,
    severity: Severity,
    anchor: f64,
    flapping: bool,
    clear_since_ms: Option<i64>,
}

/// One backend's share statistics and alert.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct BackendShares {
    /// Learned share (learned pools); `None` until the backend is first seen.
    baseline: Option<f64>,
    /// Requests in the span.
    span_requests: u64,
    pending: Option<Pending>,
    firing: Option<Firing>,
    flaps: FlapHistory,
    /// Weighted pools, for a backend the weights do not name: the configured backend whose
    /// name is closest, and how many edits apart.
    closest_configured: Option<(String, usize)>,
}

impl BackendShares {
    /// The firing skew or drop: kind, direction, since.
    pub(super) fn firing(&self) -> Option<(AlertKind, Direction, i64)> {
        self.firing.map(|f| (f.kind, f.direction, f.since_ms))
    }

    /// Removes the firing alert (the backend is being forgotten).
    pub(super) fn take_firing(&mut self) -> Option<(AlertKind, Direction, i64)> {
        self.firing.take().map(|f| (f.kind, f.direction, f.since_ms))
    }

    /// Whether an "over" alert is pending or firing (its errors and latency are its own).
    pub(super) fn is_over(&self) -> bool {
        self.firing.is_some_and(|f| f.direction == Direction::Over)
            || self.pending.is_some_and(|p| p.direction == Direction::Over)
    }

    /// A gap in the log: pending conditions and the span start again.
    pub(super) fn interrupt(&mut self) {
        self.pending = None;
        self.span_requests = 0;
    }
}

/// Drops a forgotten backend's slot from the span.
pub(super) fn forget(shares: &mut PoolShares, slot: usize) {
    for window in &mut shares.span {
        window.retain(|(s, _)| *s != slot);
    }
    shares.noise.forget(slot);
}

/// The per-backend test result for one span.
#[derive(Debug, Clone, Copy)]
pub(super) struct Judgement {
    /// Share of the judged traffic.
    pub(super) share: f64,
    /// Expected share.
    pub(super) expected: f64,
    /// share / expected.
    pub(super) ratio: f64,
    /// Bonferroni-adjusted two-sided p-value (1 when screened out as plainly insignificant).
    pub(super) p_value: f64,
    /// Standard score of the count under the dispersion: ranks culprits whose p-values both
    /// underflow to 0.
    z: f64,
    pub(super) anomalous: Option<Direction>,
    /// Whether a firing alert in that direction may count this span towards resolving.
    pub(super) clear_over: bool,
    pub(super) clear_under: bool,
}

/// Tests every backend against its expected share with dispersion `scale`, attributing skew
/// to its cause.
///
/// When one backend takes too much, every other backend's share drops with it; testing each
/// against the whole pool would page for all of them. So the most significant anomalous
/// backend is flagged first, then removed, and the rest are re-tested against each other with
/// their expected shares renormalised, until nothing anomalous is left. A backend that drowns
/// is reported alone; two independent culprits are both found.
#[allow(clippy::cast_precision_loss)]
pub(super) fn judge(
    counts: &[u64],
    expected: &[f64],
    scale: f64,
    config: &DetectorConfig,
) -> Vec<Judgement> {
    let n_total: u64 = counts.iter().sum();
    // Below this |z| a backend cannot be significant at `alpha` (a sigma of slack for the
    // normal approximation's tails), so the exact test is skipped: most backends of a large
    // pool are screened out here.
    let z_screen = (normal_quantile(1.0 - config.alpha / 2.0) - 1.0).max(1.0);
    let test = |index: usize, n: u64, q_sum: f64, n_tested: usize| -> Judgement {
        let (k, q_full) = (counts[index], expected[index]);
        let share = ratio(k, n_total);
        let q = q_full / q_sum;
        let conditional_share = ratio(k, n);
        let r = conditional_share / q;
        // The percentage-point floor guards big shares against tiny, significant deviations;
        // in a large pool (expected shares under 10%) it shrinks to half the expected share,
        // so a backend taking 4x its 0.5% among 200 is still caught.
        let delta_floor = config.min_share_delta.min(q / 2.0);
        let over = r >= config.min_ratio && conditional_share - q >= delta_floor;
        let under = r <= 1.0 / config.min_ratio && q - conditional_share >= delta_floor;
        let mean = n as f64 * q;
        let z = (k as f64 - mean) / (scale * mean * (1.0 - q)).max(f64::MIN_POSITIVE).sqrt();
        let p_value = if (over || under) && z.abs() >= z_screen {
            (two_sided(k, n, q, scale) * n_tested as f64).min(1.0)
        } else {
            1.0
        };
        let significant = p_value < config.alpha;
        Judgement {
            share,
            expected: q_full,
            ratio: if q_full > 0.0 { share / q_full } else { 0.0 },
            p_value,
            z,
            anomalous: match (significant, over, under) {
                (true, true, _) => Some(Direction::Over),
                (true, _, true) => Some(Direction::Under),
                _ => None,
            },
            clear_over: r < config.resolve_ratio || conditional_share - q < delta_floor / 2.0,
            clear_under: r > 1.0 / config.resolve_ratio
                || q - conditional_share < delta_floor / 2.0,
        }
    };
    let mut remaining = vec![true; counts.len()];
    let mut results: Vec<Option<Judgement>> = vec![None; counts.len()];
    for round in 0.. {
        let (mut n, mut q_sum, mut n_left) = (0u64, 0.0, 0usize);
        for (index, _) in remaining.iter().enumerate().filter(|(_, r)| **r) {
            n += counts[index];
            q_sum += expected[index];
            n_left += 1;
        }
        let judged: Vec<(usize, Judgement)> = (0..counts.len())
            .filter(|&i| remaining[i])
            .map(|i| (i, test(i, n, q_sum, n_left)))
            .collect();
        let worst = judged
            .iter()
            .filter(|(_, j)| j.anomalous.is_some())
            .min_by(|a, b| {
                a.1.p_value.total_cmp(&b.1.p_value).then(b.1.z.abs().total_cmp(&a.1.z.abs()))
            })
            .map(|(i, j)| (*i, *j));
        match worst {
            // Keep at least `min_backends` to compare the rest against.
            Some((index, judgement))
                if n_left > config.min_backends && round < MAX_ATTRIBUTION_ROUNDS =>
            {
                results[index] = Some(judgement);
                remaining[index] = false;
            }
            _ => {
                let mut judged = judged;
                if n_left == 2 {
                    one_page_per_pair(&mut judged, counts);
                }
                for (index, judgement) in judged {
                    results[index] = Some(judgement);
                }
                break;
            }
        }
    }
    results
        .into_iter()
        .map(|j| j.unwrap_or_else(|| unreachable!("every backend is judged")))
        .collect()
}

/// A pair is one event seen from both sides: one taking too much is the other getting too
/// little, and noise can push either side past its floor first. Page once, for the one taking
/// too much, unless the other has dropped out entirely, which says more.
fn one_page_per_pair(judged: &mut [(usize, Judgement)], counts: &[u64]) {
    let [(a, ja), (b, jb)] = judged else { return };
    if ja.anomalous.is_none() && jb.anomalous.is_none() {
        return;
    }
    let a_takes_more = ja.share - ja.expected >= jb.share - jb.expected;
    let (over, under) = if a_takes_more { (0, 1) } else { (1, 0) };
    let under_dropped = counts[if under == 0 { *a } else { *b }] == 0;
    let (keep, quiet, direction) = if under_dropped {
        (under, over, Direction::Under)
    } else {
        (over, under, Direction::Over)
    };
    judged[keep].1.anomalous = Some(direction);
    judged[quiet].1.anomalous = None;
}

/// The numbers one window's judgement of the pool rests on.
struct PoolJudgement {
    slots: Vec<usize>,
    expected: Vec<f64>,
    span_counts: Vec<u64>,
    window_counts: Vec<u64>,
    span_requests: u64,
    window_requests: u64,
    expected_from: ExpectedFrom,
    /// The reference's extra variance, 1 + n/N_ref (1 with weights).
    span_inflation: f64,
    window_inflation: f64,
    dispersion: f64,
    pool_p_value: f64,
}

/// Judges the window's split (skew, drop, flapping, unexpected) and learns from it when the
/// pool looks normal. `present` maps the window's backends (by position) to their slots.
#[allow(clippy::too_many_lines)] // one pass over the pool, in the order the module doc gives
pub(super) fn observe(
    pool: &mut PoolState,
    window: &WindowSummary,
    present: &[(usize, usize)],
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    let span_windows = (config.for_s / config.window_s.max(1)).max(1) as usize;
    let mut window_counts = vec![0u64; pool.slots.len()];
    let now: Vec<(usize, u64)> = present
        .iter()
        .map(|&(slot, position)| (slot, window.backends[position].requests))
        .collect();
    for &(slot, requests) in &now {
        window_counts[slot] = requests;
        if let Some(backend) = pool.backend_mut(slot) {
            backend.shares.span_requests += requests;
        }
    }
    pool.shares.span.push_back(now);
    if pool.shares.span.len() > span_windows
        && let Some(oldest) = pool.shares.span.pop_front()
    {
        for (slot, requests) in oldest {
            if let Some(backend) = pool.backend_mut(slot) {
                backend.shares.span_requests =
                    backend.shares.span_requests.saturating_sub(requests);
            }
        }
    }
    let span_full = pool.shares.span.len() == span_windows;

    if pool.weighted {
        observe_unexpected(pool, window, &window_counts, config, findings);
    } else {
        start_baselines(pool, &window_counts);
    }
    let Some(judgement) = pool_judgement(pool, &window_counts, config) else { return };
    pool.coverage.judged_windows += 1;
    let judgements = judge(
        &judgement.span_counts,
        &judgement.expected,
        judgement.dispersion * judgement.span_inflation,
        config,
    );

    let first_start = pool.first_window_start_ms.unwrap_or(window.start_ms);
    let hold = Hold {
        fire_ms: i64::from(config.for_s) * 1000,
        resolve_ms: i64::from(config.resolve_for_s) * 1000,
    };
    let rules = FlapRules {
        window_ms: i64::from(config.flap_window_s) * 1000,
        departures: config.flap_departures as usize,
        stable_ms: i64::from(config.flap_stable_s) * 1000,
    };
    let window_scale = pool.shares.noise.window.upper() * judgement.window_inflation;
    let n_tested = judgement.slots.len();
    // Departures are judged among the backends that are not taking too much: when one
    // drowns, the others' shares all drop with it, and none of them has left.
    let (mut over_share, mut over_requests) = (0.0, 0u64);
    for (index, &slot) in judgement.slots.iter().enumerate() {
        let firing_over = pool.slots[slot].as_ref().is_some_and(|b| b.shares.is_over());
        if firing_over || judgements[index].anomalous == Some(Direction::Over) {
            over_share += judgement.expected[index];
            over_requests += judgement.window_counts[index];
        }
    }
    let rest_requests = judgement.window_requests - over_requests;
    let rest_share = (1.0 - over_share).max(f64::MIN_POSITIVE);
    let mut quiet = true;
    let mut ramping_slots = Vec::new();
    for (index, &slot) in judgement.slots.iter().enumerate() {
        let verdict = judgements[index];
        let slow_start_s = pool.slow_start_s;
        let Some(backend) = pool.backend_mut(slot) else { continue };
        let ramping =
            is_ramping(backend.first_seen_ms, first_start, window.end_ms, slow_start_s, config);
        if ramping {
            ramping_slots.push(index);
        }
        // A backend the balancer is still ramping up may take less than its share.
        let anomalous = verdict.anomalous.filter(|d| !(ramping && *d == Direction::Under));
        let window_count = judgement.window_counts[index];
        let collapsed = !ramping
            && verdict.anomalous != Some(Direction::Over)
            && collapsed_in_window(
                window_count,
                rest_requests,
                (verdict.expected / rest_share).min(1.0),
                window_scale,
                n_tested,
                config,
            );
        backend.shares.flaps.record(collapsed, window.start_ms, window.end_ms, rules);
        // Persistence: the span is significant and every window since the condition began
        // leans the same way on its own.
        let leans = |d: &Direction| {
            let window_share = ratio(window_count, judgement.window_requests);
            match d {
                Direction::Over => window_share >= verdict.expected * config.resolve_ratio,
                Direction::Under => window_share <= verdict.expected / config.resolve_ratio,
            }
        };
        let anomalous = anomalous.filter(leans);
        let shares = &mut backend.shares;
        let transition = match (&mut shares.firing, anomalous) {
            (None, None) => {
                shares.pending = None;
                match shares.flaps.since_ms() {
                    Some(since_ms)
                        if !ramping
                            && shares.flaps.is_flapping(rules)
                            && !shares.flaps.stable(window.end_ms, rules) =>
                    {
                        quiet = false;
                        let firing = Firing {
                            kind: AlertKind::Drop,
                            direction: Direction::Under,
                            since_ms,
                            severity: Severity::Warning,
                            anchor: verdict.expected,
                            flapping: true,
                            clear_since_ms: None,
                        };
                        shares.firing = Some(firing);
                        Some((AlertState::Firing, firing))
                    }
                    _ => None,
                }
            }
            (None, Some(direction)) => {
                quiet = false;
                let pending = match shares.pending {
                    Some(p) if p.direction == direction => p,
                    _ => Pending { direction, since_ms: window.start_ms, anchor: verdict.expected },
                };
                shares.pending = Some(pending);
                if span_full && window.end_ms - pending.since_ms >= hold.fire_ms {
                    shares.pending = None;
                    let since_ms = pending.since_ms;
                    let severity =
                        if direction == Direction::Over && verdict.ratio >= config.critical_ratio {
                            Severity::Critical
                        } else {
                            Severity::Warning
                        };
                    // A backend that takes nothing at all has dropped out.
                    let kind = if direction == Direction::Under
                        && window_count == 0
                        && judgement.span_counts[index] == 0
                    {
                        AlertKind::Drop
                    } else {
                        AlertKind::Skew
                    };
                    let firing = Firing {
                        kind,
                        direction,
                        since_ms,
                        severity,
                        anchor: pending.anchor,
                        flapping: direction == Direction::Under && shares.flaps.is_flapping(rules),
                        clear_since_ms: None,
                    };
                    shares.firing = Some(firing);
                    Some((AlertState::Firing, firing))
                } else {
                    None
                }
            }
            (Some(firing), _) => {
                quiet = false;
                if firing.direction == Direction::Under && shares.flaps.is_flapping(rules) {
                    firing.flapping = true;
                }
                let back_to_anchor = match firing.direction {
                    Direction::Over => verdict.share < firing.anchor * config.resolve_ratio,
                    Direction::Under => verdict.share > firing.anchor / config.resolve_ratio,
                };
                let clear = back_to_anchor
                    || match firing.direction {
                        Direction::Over => verdict.clear_over,
                        Direction::Under => verdict.clear_under,
                    };
                let stable = !firing.flapping || shares.flaps.stable(window.end_ms, rules);
                if !(clear && stable) {
                    firing.clear_since_ms = None;
                    None
                } else {
                    let clear_since = *firing.clear_since_ms.get_or_insert(window.start_ms);
                    // A flapping backend has already proven itself stable for longer.
                    if firing.flapping || window.end_ms - clear_since >= hold.resolve_ms {
                        let resolved = *firing;
                        shares.firing = None;
                        Some((AlertState::Resolved, resolved))
                    } else {
                        None
                    }
                }
            }
        };
        if let Some((state, firing)) = transition {
            let mut evidence =
                share_evidence(&judgement, index, &verdict, &backend.name, window, config);
            evidence.duration_s = (window.end_ms - firing.since_ms) / 1000;
            evidence.flapping = firing.flapping;
            if firing.flapping {
                evidence.departures = u32::try_from(shares.flaps.departures()).ok();
            }
            findings.push(Finding {
                state,
                kind: firing.kind,
                direction: firing.direction,
                backend: backend.name.clone(),
                started_at_ms: firing.since_ms,
                severity: firing.severity,
                evidence,
                note: None,
            });
        }
    }
    if quiet {
        learn(pool, &judgement, &ramping_slots, span_full, config);
    }
}

/// Whether a backend is still within its slow-start grace: new to the pool after its first
/// minute (or configured and not yet seen while the balancer's slow start may still hold it
/// back), and not yet past the grace.
fn is_ramping(
    first_seen_ms: Option<i64>,
    pool_start_ms: i64,
    now_ms: i64,
    slow_start_s: Option<u32>,
    config: &DetectorConfig,
) -> bool {
    // Backends seen in a pool's first minute were there before skewtail looked.
    let incumbent_ms = i64::from(config.for_s.max(30)) * 2000;
    let grace_ms = match slow_start_s {
        // The balancer's own ramp, plus the time it takes to judge.
        Some(s) => i64::from(s) * 1000 + i64::from(config.for_s) * 1000,
        None => i64::from(config.new_backend_grace_s) * 1000,
    };
    match first_seen_ms {
        Some(first) => first - pool_start_ms > incumbent_ms && now_ms - first < grace_ms,
        // Never seen: only a known slow start excuses it; otherwise it is down.
        None => slow_start_s.is_some_and(|_| now_ms - pool_start_ms < grace_ms),
    }
}

/// A backend has left rotation in a window when it takes at most this fraction of its share.
const DEPARTED_RATIO: f64 = 0.25;

/// Whether a backend's share collapsed in this window alone: to a small fraction of expected,
/// and significantly so (a departure from rotation, for flapping).
fn collapsed_in_window(
    count: u64,
    n: u64,
    expected: f64,
    scale: f64,
    n_tested: usize,
    config: &DetectorConfig,
) -> bool {
    let share = ratio(count, n);
    if share > expected * DEPARTED_RATIO {
        return false;
    }
    #[allow(clippy::cast_precision_loss)]
    let adjusted = lower(count, n, expected, scale) * n_tested as f64;
    adjusted < config.alpha
}

/// Gives backends of a learned pool their starting share: equal shares in the pool's first
/// window (every balancer's default), and for a backend that appears later, the average share
/// of those already known.
fn start_baselines(pool: &mut PoolState, window_counts: &[u64]) {
    let (mut known, mut sum) = (0usize, 0.0);
    let mut newcomers = Vec::new();
    for (slot, backend) in pool.backends() {
        match backend.shares.baseline {
            Some(share) => {
                known += 1;
                sum += share;
            }
            None if window_counts.get(slot).is_some_and(|&c| c > 0) => newcomers.push(slot),
            None => {}
        }
    }
    if newcomers.is_empty() {
        return;
    }
    #[allow(clippy::cast_precision_loss)]
    let share = if known == 0 { 1.0 / newcomers.len() as f64 } else { sum / known as f64 };
    if known == 0 {
        // The prior counts like one window of traffic: strong enough to judge a dramatic skew
        // from the first span, weak enough for a pool's own split to win within minutes.
        let requests: u64 = newcomers.iter().map(|&slot| window_counts[slot]).sum();
        #[allow(clippy::cast_precision_loss)]
        {
            pool.shares.reference_requests = requests as f64;
        }
    }
    for slot in newcomers {
        if let Some(backend) = pool.backend_mut(slot) {
            backend.shares.baseline = Some(share);
        }
    }
}

/// Collects what the pool's split is judged on this window; `None` when it cannot be judged
/// (too little traffic, too few backends).
fn pool_judgement(
    pool: &mut PoolState,
    window_counts: &[u64],
    config: &DetectorConfig,
) -> Option<PoolJudgement> {
    let excluded = paired_typos(pool);
    for &slot in &excluded {
        if let Some(backend) = pool.backend_mut(slot) {
            backend.shares.pending = None;
        }
    }
    let (mut slots, mut raw, mut span_counts, mut counts) = (vec![], vec![], vec![], vec![]);
    for (slot, backend) in pool.backends() {
        let weight = if pool.weighted {
            match backend.weight {
                Some(w) if w > 0.0 && !excluded.contains(&slot) => w,
                _ => continue,
            }
        } else {
            match backend.shares.baseline {
                Some(share) if share > 0.0 => share,
                _ => continue,
            }
        };
        slots.push(slot);
        raw.push(weight);
        span_counts.push(backend.shares.span_requests);
        counts.push(window_counts.get(slot).copied().unwrap_or(0));
    }
    let window_requests: u64 = counts.iter().sum();
    pool.coverage.max_requests = pool.coverage.max_requests.max(window_requests);
    pool.coverage.max_backends = pool.coverage.max_backends.max(slots.len());
    if window_requests < config.min_requests || slots.len() < config.min_backends {
        return None;
    }
    let total: f64 = raw.iter().sum();
    let expected: Vec<f64> = raw.iter().map(|w| w / total).collect();
    let span_requests: u64 = span_counts.iter().sum();
    let warmup_windows = config.warmup_s.div_ceil(config.window_s.max(1));
    let (expected_from, reference) = if pool.weighted {
        (ExpectedFrom::Weights, f64::INFINITY)
    } else if pool.shares.learned_windows < warmup_windows {
        (ExpectedFrom::Warmup, pool.shares.reference_requests.max(1.0))
    } else {
        (ExpectedFrom::Baseline, pool.shares.reference_requests.max(1.0))
    };
    #[allow(clippy::cast_precision_loss)]
    let inflation = |n: u64| 1.0 + n as f64 / reference;
    let dispersion = pool.shares.noise.span.upper();
    let span_inflation = inflation(span_requests);
    let pool_p_value = g_test(&span_counts, &expected, dispersion * span_inflation);
    Some(PoolJudgement {
        slots,
        expected,
        span_counts,
        window_counts: counts,
        span_requests,
        window_requests,
        expected_from,
        span_inflation,
        window_inflation: inflation(window_requests),
        dispersion,
        pool_p_value,
    })
}

/// Learns from a window where nothing looked off: the dispersion (over backends that are not
/// ramping up) and, in learned pools, the baseline.
fn learn(
    pool: &mut PoolState,
    judgement: &PoolJudgement,
    ramping: &[usize],
    span_full: bool,
    config: &DetectorConfig,
) {
    let half_life_windows = f64::from(config.baseline_half_life_s) / f64::from(config.window_s);
    let decay = half_life_alpha(half_life_windows);
    let cells: Vec<Cell> = judgement
        .slots
        .iter()
        .enumerate()
        .filter(|(index, _)| !ramping.contains(index))
        .map(|(index, &slot)| (slot, judgement.window_counts[index], judgement.span_counts[index]))
        .collect();
    let span_windows = (config.for_s / config.window_s.max(1)).max(1) as usize;
    pool.shares.noise.learn(&cells, span_full.then_some(span_windows), decay);
    if pool.weighted {
        return;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = judgement.window_requests as f64;
    let warmup_windows = config.warmup_s.div_ceil(config.window_s.max(1));
    let reference = pool.shares.reference_requests;
    let warming = pool.shares.learned_windows < warmup_windows;
    for (index, &slot) in judgement.slots.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let share = judgement.window_counts[index] as f64 / n;
        let q = judgement.expected[index];
        let updated = if warming {
            // A running mean by requests, from the equal-share prior.
            (q * reference + share * n) / (reference + n)
        } else {
            q + decay * (share - q)
        };
        if let Some(backend) = pool.backend_mut(slot) {
            backend.shares.baseline = Some(updated);
        }
    }
    pool.shares.reference_requests =
        if warming { reference + n } else { reference * (1.0 - decay) + n };
    pool.shares.learned_windows = pool.shares.learned_windows.saturating_add(1);
}

/// Configured backends that have never served and whose name is a likely typo of a backend
/// that does serve without a weight: the pair is one finding (`unexpected`), so the configured
/// one is left out of the split rather than paged as a drop.
fn paired_typos(pool: &PoolState) -> Vec<usize> {
    if !pool.weighted {
        return Vec::new();
    }
    pool.backends()
        .filter(|(_, b)| b.weight.is_none() && b.unexpected.firing_since().is_some())
        .filter_map(|(_, b)| b.shares.closest_configured.as_ref())
        .filter(|(_, distance)| *distance <= 2)
        .filter_map(|(name, _)| pool.index.get(name.as_str()).copied())
        .filter(|&slot| pool.slots[slot].as_ref().is_some_and(|b| b.first_seen_ms.is_none()))
        .collect()
}

/// Weighted pools: a backend the weights do not name that serves traffic is an `info`
/// finding, naming the closest configured backend (a likely typo). It is left out of the
/// split, so its peers are not paged for the traffic it takes.
fn observe_unexpected(
    pool: &mut PoolState,
    window: &WindowSummary,
    window_counts: &[u64],
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    // A typo'd entry never serves: prefer configured backends that have not been seen.
    let configured: Vec<(bool, String)> = pool
        .backends()
        .filter(|(_, b)| b.weight.is_some())
        .map(|(_, b)| (b.first_seen_ms.is_some(), b.name.to_string()))
        .collect();
    let hold = Hold { fire_ms: i64::from(config.for_s) * 1000, resolve_ms: UNEXPECTED_RESOLVE_MS };
    let pool_requests: u64 = window_counts.iter().sum();
    let n_backends = pool.n_backends();
    for slot in 0..pool.slots.len() {
        let Some(backend) = pool.backend_mut(slot) else { continue };
        if backend.weight.is_some() {
            continue;
        }
        if backend.shares.closest_configured.is_none() {
            backend.shares.closest_configured = configured
                .iter()
                .map(|(seen, name)| (strsim::levenshtein(name, &backend.name), *seen, name))
                .min_by_key(|(distance, seen, name)| (*distance, *seen, *name))
                .map(|(distance, _, name)| (name.clone(), distance));
        }
        let served = window_counts.get(slot).copied().unwrap_or(0);
        let verdict = if served > 0 { Verdict::Anomalous } else { Verdict::Clear };
        let Some(transition) =
            backend.unexpected.step(verdict, window.start_ms, window.end_ms, hold)
        else {
            continue;
        };
        let (state, since_ms) = transition.state();
        let mut evidence = Evidence::blank(config.window_s);
        evidence.backend_requests = served;
        evidence.pool_requests = pool_requests;
        evidence.pool_backends = n_backends;
        evidence.observed_share = ratio(served, pool_requests);
        evidence.expected_from = ExpectedFrom::Weights;
        evidence.closest_configured =
            backend.shares.closest_configured.as_ref().map(|(n, _)| n.clone());
        evidence.duration_s = (window.end_ms - since_ms) / 1000;
        findings.push(Finding {
            state,
            kind: AlertKind::Unexpected,
            direction: Direction::Over,
            backend: backend.name.clone(),
            started_at_ms: since_ms,
            severity: Severity::Info,
            evidence,
            note: None,
        });
    }
}

/// The evidence of a share alert.
fn share_evidence(
    judgement: &PoolJudgement,
    index: usize,
    verdict: &Judgement,
    backend: &str,
    window: &WindowSummary,
    config: &DetectorConfig,
) -> Evidence {
    let mut evidence = Evidence::blank(config.window_s);
    evidence.observed_share = verdict.share;
    evidence.expected_share = verdict.expected;
    evidence.ratio = verdict.ratio;
    evidence.expected_from = judgement.expected_from;
    evidence.backend_requests = judgement.span_counts[index];
    evidence.pool_requests = judgement.span_requests;
    evidence.pool_backends = judgement.slots.len();
    evidence.p_value = verdict.p_value;
    evidence.pool_g_test_p_value = judgement.pool_p_value;
    evidence.dispersion = judgement.dispersion;
    super::explain::add_health(&mut evidence, backend, window);
    evidence
}
