//! Adoption: a learned pool takes an uneven split as its own when nothing says it is wrong.
//!
//! - **Uneven from the start.** A pool uneven from its first windows, without weights, may be
//!   misconfigured or weighted on purpose. When the backends taking more answer like their
//!   peers, the split is learned, with one `info` finding that says how to make it explicit;
//!   only a change from it pages. When they suffer for it (the seed incident), it pages.
//! - **Steady newcomers.** A backend whose grace ends at a steady share well off the others' (a
//!   canary) is learned at that share, with one `change`; a newcomer at its share is part of a
//!   scale-out.
//! - **Evened out.** A backend learned at an uneven share that now takes an even one (a canary
//!   promoted, weights evened out) is learned again, with one `change`.

use std::sync::Arc;

use super::super::changes;
use super::super::event::{ChangeEvidence, Operation};
use super::super::{AlertState, DetectorConfig, Finding, PoolState, Severity};
use super::judge::Judgement;
use super::{PoolJudgement, share_evidence};
use crate::window::WindowSummary;

/// Sets `slot`'s learned weight so that its expected share becomes `share`, the others'
/// weights unchanged.
fn set_share(pool: &mut PoolState, slot: usize, share: f64) {
    let total = pool.shares.baseline.total.total;
    let Some(backend) = pool.slots[slot].as_mut() else { return };
    let Some(weight) = backend.shares.baseline.as_mut() else { return };
    let share = share.clamp(1e-6, 1.0 - 1e-6);
    let rest = (total - *weight).max(0.0);
    let new_weight = if rest > 0.0 { share * rest / (1.0 - share) } else { total.max(1e-9) };
    pool.shares.baseline.total.total = rest + new_weight;
    *weight = new_weight;
    pool.shares.adopted.insert(slot);
}

/// Learns the span's split for every backend the judgement tested, keeping their total.
pub(super) fn learn_split(pool: &mut PoolState, judgement: &PoolJudgement) {
    let total: f64 = judgement
        .slots
        .iter()
        .filter_map(|&slot| pool.slots[slot].as_ref().and_then(|b| b.shares.baseline))
        .sum();
    #[allow(clippy::cast_precision_loss)]
    let span_requests = judgement.span_requests.max(1) as f64;
    for (index, &slot) in judgement.slots.iter().enumerate() {
        let Some(backend) = pool.slots[slot].as_mut() else { continue };
        let Some(weight) = backend.shares.baseline.as_mut() else { continue };
        #[allow(clippy::cast_precision_loss)]
        let share = judgement.span_counts[index] as f64 / span_requests;
        let old = *weight;
        *weight = (share * total).max(total * 1e-6);
        pool.shares.baseline.total.total += *weight - old;
        pool.shares.adopted.insert(slot);
        if let Some(episode) = backend.shares.episode.as_mut() {
            episode.pending = None;
        }
    }
    pool.shares.adopted_split = true;
    pool.shares.baseline.reference_requests = span_requests;
}

/// The pool has been uneven since before it was ever seen normal, and the backend at `index`
/// (the first to have held for `for_s`) answers like its peers: learns the split and records
/// one `info` finding.
pub(super) fn uneven_from_start(
    pool: &mut PoolState,
    judgement: &PoolJudgement,
    verdicts: &[Judgement],
    index: usize,
    window: &WindowSummary,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    #[allow(clippy::cast_precision_loss)]
    let span_requests = judgement.span_requests.max(1) as f64;
    let mut listed: Vec<(Arc<str>, f64, f64)> = judgement
        .slots
        .iter()
        .enumerate()
        .filter_map(|(i, &slot)| {
            let backend = pool.slots[slot].as_ref()?;
            #[allow(clippy::cast_precision_loss)]
            let share = judgement.span_counts[i] as f64 / span_requests;
            Some((backend.name.clone(), judgement.expected[i], share))
        })
        .collect();
    // The most uneven first.
    listed.sort_by(|a, b| {
        (b.2 / b.1.max(1e-9) - 1.0).abs().total_cmp(&(a.2 / a.1.max(1e-9) - 1.0).abs())
    });
    let slot = judgement.slots[index];
    let name = pool.slots[slot].as_ref().map(|b| b.name.clone()).unwrap_or_else(|| Arc::from("?"));
    let mut evidence = share_evidence(judgement, index, &verdicts[index], &name, window, config);
    learn_split(pool, judgement);
    let since = pool.first_window_start_ms.unwrap_or(window.start_ms);
    let names: Vec<Arc<str>> = listed.iter().map(|l| l.0.clone()).collect();
    let mut change =
        changes::evidence(Operation::UnevenFromStart, &names, since, judgement.n_backends);
    change.shares = listed.iter().take(ChangeEvidence::MAX_LISTED).map(|l| (l.1, l.2)).collect();
    evidence.duration_s = (window.end_ms - since) / 1000;
    evidence.change = Some(change);
    findings.push(Finding {
        state: AlertState::Noted,
        kind: super::super::AlertKind::Skew,
        direction: verdicts[index].anomalous.unwrap_or(super::super::Direction::Over),
        backend: name,
        started_at_ms: since,
        severity: Severity::Info,
        evidence,
        resolution: None,
    });
}

/// Requests a learned share must rest on before it is reported as uneven by design.
const MIN_LEARNED_REQUESTS: f64 = 200.0;

/// The learned baseline has just finished its warm-up without a page: when the split it
/// learned is uneven (a pool weighted by design, or misconfigured from the start, that was
/// never significant enough to page), says so once, as the uneven-from-the-start finding
/// does.
pub(super) fn warmed_up(
    pool: &mut PoolState,
    judgement: &PoolJudgement,
    window: &WindowSummary,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    let expected = super::expected_shares(pool);
    if expected.len() < 2 || pool.shares.adopted_split {
        return;
    }
    #[allow(clippy::cast_precision_loss)]
    let even = 1.0 / expected.len() as f64;
    let off = |share: f64| (share / even).max(even / share.max(1e-9));
    let mut listed: Vec<(Arc<str>, f64)> = expected;
    listed.sort_by(|a, b| off(b.1).total_cmp(&off(a.1)));
    // Enough requests behind the learned share to know it within a few percent: in a pool of
    // thousands of short-lived backends each share is noise.
    let behind = pool.shares.baseline.reference_requests * listed[0].1.min(even);
    if off(listed[0].1) < config.min_ratio || behind < MIN_LEARNED_REQUESTS {
        return;
    }
    // A hot backend paged for failing or answering slowly is not a design to learn quietly:
    // its alert stands (and says the balancer sends it more than it can carry).
    let hot_and_hurt = listed.iter().filter(|l| l.1 > even * config.min_ratio).any(|l| {
        pool.index.get(&l.0).and_then(|&slot| pool.slots[slot].as_ref()).is_some_and(|b| {
            b.firing_since(super::super::Watch::Errors).is_some()
                || b.firing_since(super::super::Watch::Latency).is_some()
        })
    });
    if hot_and_hurt {
        return;
    }
    pool.shares.adopted_split = true;
    let learned: Vec<usize> = pool
        .backends()
        .filter(|(_, b)| b.shares.baseline.is_some())
        .map(|(slot, _)| slot)
        .collect();
    pool.shares.adopted.extend(learned);
    let since = pool.first_window_start_ms.unwrap_or(window.start_ms);
    let names: Vec<Arc<str>> = listed.iter().map(|l| l.0.clone()).collect();
    let mut change = changes::evidence(Operation::UnevenFromStart, &names, since, listed.len());
    change.shares = listed.iter().take(ChangeEvidence::MAX_LISTED).map(|l| (even, l.1)).collect();
    let mut evidence = super::super::Evidence::blank(config.window_s);
    evidence.observed_share = listed[0].1;
    evidence.expected_share = even;
    evidence.ratio = listed[0].1 / even;
    evidence.expected_from = super::super::ExpectedFrom::Baseline;
    evidence.pool_requests = judgement.span_requests;
    evidence.pool_backends = judgement.n_backends;
    evidence.dispersion = judgement.dispersion;
    evidence.duration_s = (window.end_ms - since) / 1000;
    evidence.change = Some(change);
    findings.push(Finding {
        state: AlertState::Noted,
        kind: super::super::AlertKind::Skew,
        direction: if listed[0].1 > even {
            super::super::Direction::Over
        } else {
            super::super::Direction::Under
        },
        backend: listed[0].0.clone(),
        started_at_ms: since,
        severity: Severity::Info,
        evidence,
        resolution: None,
    });
}

/// A backend's grace as a newcomer has ended: at a steady share well off the one it was
/// welcomed at, and answering like its peers, it is a canary, learned at that share (one
/// `change`); at its share, it joined a scale-out. Returns whether it was learned.
pub(super) fn newcomer_settled(
    pool: &mut PoolState,
    judgement: &PoolJudgement,
    index: usize,
    harmed: bool,
    window: &WindowSummary,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) -> bool {
    let slot = judgement.slots[index];
    // Its share over the last stretch of its grace (a span alone is noisy for a small share).
    let settled = pool.slots[slot]
        .as_mut()
        .and_then(|b| b.shares.episode.as_mut())
        .and_then(|e| e.settle.take())
        .filter(|s| s.1 > 0)
        .unwrap_or((judgement.span_counts[index], judgement.span_requests));
    #[allow(clippy::cast_precision_loss)]
    let share = settled.0 as f64 / settled.1.max(1) as f64;
    let expected = judgement.expected[index];
    let ratio = share / expected.max(1e-9);
    let Some(backend) = pool.slots[slot].as_ref() else { return false };
    let (name, joined_ms) =
        (backend.name.clone(), backend.first_seen_ms.unwrap_or(window.start_ms));
    // Measured over two minutes, a share settles within a few percent: a newcomer off the
    // share it was welcomed at by more than the resolve margin chose another one.
    let uneven = ratio >= config.resolve_ratio || ratio <= 1.0 / config.resolve_ratio;
    if !uneven {
        pool.changes.joined(name, joined_ms);
        return false;
    }
    if share > expected && harmed {
        return false; // It takes too much and suffers for it: the share test pages.
    }
    set_share(pool, slot, share);
    if let Some(episode) = pool.slots[slot].as_mut().and_then(|b| b.shares.episode.as_mut()) {
        episode.pending = None;
    }
    let mut change = changes::evidence(
        Operation::Canary,
        std::slice::from_ref(&name),
        joined_ms,
        judgement.n_backends,
    );
    change.shares = vec![(expected, share)];
    findings.push(changes::noted(name, change, window, config));
    true
}

/// A backend learned at an uneven share now takes about an even one (a canary promoted):
/// learns it, with one `change`. Returns whether it did.
pub(super) fn evened_out(
    pool: &mut PoolState,
    judgement: &PoolJudgement,
    index: usize,
    window: &WindowSummary,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) -> bool {
    let slot = judgement.slots[index];
    let Some(backend) = pool.slots[slot].as_ref() else { return false };
    if !pool.shares.adopted.contains(&slot) || judgement.n_backends == 0 {
        return false;
    }
    #[allow(clippy::cast_precision_loss)]
    let even = 1.0 / judgement.n_backends as f64;
    #[allow(clippy::cast_precision_loss)]
    let share = judgement.span_counts[index] as f64 / judgement.span_requests.max(1) as f64;
    let ratio = share / even;
    if ratio > config.resolve_ratio || ratio < 1.0 / config.resolve_ratio {
        return false;
    }
    let name = backend.name.clone();
    let expected = judgement.expected[index];
    set_share(pool, slot, share);
    pool.shares.adopted.remove(&slot);
    if let Some(episode) = pool.slots[slot].as_mut().and_then(|b| b.shares.episode.as_mut()) {
        episode.pending = None;
    }
    let mut change = changes::evidence(
        Operation::Evened,
        std::slice::from_ref(&name),
        window.start_ms,
        judgement.n_backends,
    );
    change.shares = vec![(expected, share)];
    findings.push(changes::noted(name, change, window, config));
    true
}
