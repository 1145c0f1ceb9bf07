//! The pool's split over the span, as one window judges it: which backends are tested, what
//! each is expected to take, what the test rests on, what is learned when nothing looks off,
//! and the evidence of a share alert.

use super::judge::Judgement;
use super::unexpected;
use crate::detect::dispersion::Cell;
use crate::detect::stats::{g_test, half_life_alpha};
use crate::detect::{DetectorConfig, Evidence, ExpectedFrom, PoolState};
use crate::window::WindowSummary;

/// Each backend's expected share of its pool (0..=1): configured weight or learned baseline
/// over the pool's total; backends with neither are left out.
pub(in crate::detect) fn expected_shares(pool: &PoolState) -> Vec<(std::sync::Arc<str>, f64)> {
    let (total, weighted) = expected_total(pool);
    if total <= 0.0 {
        return Vec::new();
    }
    pool.backends()
        .filter_map(|(_, backend)| {
            let raw = if weighted { backend.weight? } else { backend.shares.baseline? };
            Some((backend.name.clone(), raw / total))
        })
        .collect()
}

/// The total of the weights the expected shares are drawn from, and whether they are
/// configured weights.
pub(super) fn expected_total(pool: &PoolState) -> (f64, bool) {
    if pool.weighted {
        (pool.configured_total, true)
    } else {
        (pool.shares.baseline.total.total, false)
    }
}

/// The numbers one window's judgement of the pool rests on.
pub(super) struct PoolJudgement {
    /// The backends tested: those that served in the span, those with something going on,
    /// and the heavy ones.
    pub(super) slots: Vec<usize>,
    pub(super) expected: Vec<f64>,
    pub(super) span_counts: Vec<u64>,
    pub(super) window_counts: Vec<u64>,
    /// Expected share of the pool's untested backends.
    pub(super) rest: f64,
    /// Backends judged, tested or not.
    pub(super) n_backends: usize,
    pub(super) span_requests: u64,
    pub(super) window_requests: u64,
    pub(super) expected_from: ExpectedFrom,
    /// The reference's extra variance, 1 + n/N_ref (1 with weights).
    pub(super) span_inflation: f64,
    pub(super) window_inflation: f64,
    pub(super) dispersion: f64,
    pub(super) pool_p_value: f64,
}

/// Collects what the pool's split is judged on this window; `None` when it cannot be judged
/// (too little traffic, too few backends).
#[allow(clippy::cast_precision_loss)]
pub(super) fn pool_judgement(
    pool: &mut PoolState,
    window: &WindowSummary,
    present: &[(usize, usize)],
    config: &DetectorConfig,
) -> Option<PoolJudgement> {
    let excluded = if pool.weighted { unexpected::paired_typos(pool) } else { Vec::new() };
    for &slot in &excluded {
        if let Some(episode) = pool.backend_mut(slot).and_then(|b| b.shares.episode.as_mut()) {
            episode.pending = None;
        }
    }
    let (mut total, weighted) = expected_total(pool);
    let mut n_backends =
        if weighted { pool.configured_backends } else { pool.shares.baseline.known };
    for &slot in &excluded {
        if let Some(weight) = pool.slots[slot].as_ref().and_then(|b| b.weight) {
            total -= weight;
            n_backends -= usize::from(weight > 0.0);
        }
    }
    // Tested: served in the span, something going on, or heavy; each once.
    let shares = &mut pool.shares;
    shares.stamp = shares.stamp.wrapping_add(1).max(1);
    if shares.listed.len() < pool.slots.len() {
        shares.listed.resize(pool.slots.len(), 0);
    }
    let mut candidates: Vec<usize> = Vec::new();
    let span_slots = shares.span.iter().flatten().map(|(slot, _)| *slot);
    for slot in span_slots.chain(shares.active.iter().copied()).chain(shares.heavy.iter().copied())
    {
        if shares.listed[slot] != shares.stamp {
            shares.listed[slot] = shares.stamp;
            candidates.push(slot);
        }
    }
    // This window's requests of each listed backend.
    let mut counts_by_slot: Vec<(usize, u64)> = present
        .iter()
        .map(|&(slot, position)| (slot, window.backends[position].requests))
        .collect();
    counts_by_slot.sort_unstable_by_key(|(slot, _)| *slot);
    let window_count = |slot: usize| {
        counts_by_slot.binary_search_by_key(&slot, |(s, _)| *s).map_or(0, |i| counts_by_slot[i].1)
    };
    let (mut slots, mut expected, mut span_counts, mut counts) = (vec![], vec![], vec![], vec![]);
    for slot in candidates {
        let Some(backend) = pool.slots[slot].as_ref() else { continue };
        let raw = if weighted {
            match backend.weight {
                Some(w) if w > 0.0 && !excluded.contains(&slot) => w,
                _ => continue,
            }
        } else {
            match backend.shares.baseline {
                Some(w) if w > 0.0 => w,
                _ => continue,
            }
        };
        slots.push(slot);
        expected.push(if total > 0.0 { raw / total } else { 0.0 });
        span_counts.push(backend.shares.span_requests);
        counts.push(window_count(slot));
    }
    let window_requests: u64 = counts.iter().sum();
    pool.coverage.max_requests = pool.coverage.max_requests.max(window_requests);
    pool.coverage.max_backends = pool.coverage.max_backends.max(n_backends);
    if window_requests < config.min_requests || n_backends < config.min_backends {
        return None;
    }
    let rest = (1.0 - expected.iter().sum::<f64>()).max(0.0);
    let span_requests: u64 = span_counts.iter().sum();
    let warmup_windows = config.warmup_s.div_ceil(config.window_s.max(1));
    let baseline = &pool.shares.baseline;
    let (expected_from, reference) = if weighted {
        (ExpectedFrom::Weights, f64::INFINITY)
    } else if baseline.learned_windows < warmup_windows {
        (ExpectedFrom::Warmup, baseline.reference_requests.max(1.0))
    } else {
        (ExpectedFrom::Baseline, baseline.reference_requests.max(1.0))
    };
    let inflation = |n: u64| 1.0 + n as f64 / reference;
    let dispersion = pool.shares.noise.span.upper();
    let span_inflation = inflation(span_requests);
    let pool_p_value = g_test(&span_counts, &expected, n_backends, dispersion * span_inflation);
    Some(PoolJudgement {
        slots,
        expected,
        span_counts,
        window_counts: counts,
        rest,
        n_backends,
        span_requests,
        window_requests,
        expected_from,
        span_inflation,
        window_inflation: inflation(window_requests),
        dispersion,
        pool_p_value,
    })
}

/// Learns from a window where nothing looked off: the noise (over backends that are not
/// ramping up) and, in learned pools, the baseline (from the backends that served).
pub(super) fn learn(
    pool: &mut PoolState,
    judgement: &PoolJudgement,
    present: &[(usize, usize)],
    window: &WindowSummary,
    ramping: &[bool],
    span_full: bool,
    config: &DetectorConfig,
) {
    let half_life_windows = f64::from(config.baseline_half_life_s) / f64::from(config.window_s);
    let decay = half_life_alpha(half_life_windows);
    let cells: Vec<Cell> = judgement
        .slots
        .iter()
        .enumerate()
        .map(|(index, &slot)| Cell {
            slot,
            window: judgement.window_counts[index],
            span: judgement.span_counts[index],
            steady: !ramping[index],
        })
        .collect();
    let span_windows = (config.for_s / config.window_s.max(1)).max(1) as usize;
    pool.shares.noise.learn(&cells, span_full.then_some(span_windows), decay);
    if pool.weighted {
        return;
    }
    let warmup_windows = config.warmup_s.div_ceil(config.window_s.max(1));
    let warming = pool.shares.baseline.learned_windows < warmup_windows;
    let n = judgement.window_requests;
    let add = pool.shares.baseline.learn(n, warming, decay);
    for &(slot, position) in present {
        #[allow(clippy::cast_precision_loss)]
        let share = window.backends[position].requests as f64 / n.max(1) as f64;
        if let Some(weight) = pool.backend_mut(slot).and_then(|b| b.shares.baseline.as_mut()) {
            *weight += add * share;
        }
    }
}

/// The evidence of a share alert.
pub(super) fn share_evidence(
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
    evidence.pool_backends = judgement.n_backends;
    evidence.p_value = verdict.p_value;
    evidence.pool_g_test_p_value = judgement.pool_p_value;
    evidence.dispersion = judgement.dispersion;
    crate::detect::explain::add_health(&mut evidence, backend, window);
    evidence
}
