//! Weights against reality, in pools with configured weights: a backend the weights do not
//! name that serves traffic is one `info` finding (`unexpected`), naming the configured backend
//! whose name is closest (a likely typo). It is left out of the split, so its peers are not
//! paged for the traffic it takes; and a configured backend that never served and is that
//! typo's other half is left out too, rather than paged as a drop.

use super::super::stats::ratio;
use super::super::tracker::{Hold, Verdict};
use super::super::{
    AlertKind, DetectorConfig, Direction, Evidence, ExpectedFrom, Finding, PoolState, Severity,
    Watch,
};
use crate::window::WindowSummary;

/// How long an `unexpected` backend must serve nothing before its finding resolves, ms.
const UNEXPECTED_RESOLVE_MS: i64 = 300_000;

/// Configured backends that have never served and whose name is a likely typo of a backend
/// that does serve without a weight: the pair is one finding (`unexpected`), so the configured
/// one is left out of the split rather than paged as a drop.
pub(super) fn paired_typos(pool: &PoolState) -> Vec<usize> {
    if !pool.weighted {
        return Vec::new();
    }
    pool.backends()
        .filter(|(_, b)| b.weight.is_none() && b.firing_since(Watch::Unexpected).is_some())
        .filter_map(|(_, b)| b.shares.closest_configured())
        .filter(|(_, distance)| *distance <= 2)
        .filter_map(|(name, _)| pool.index.get(name.as_str()).copied())
        .filter(|&slot| pool.slots[slot].as_ref().is_some_and(|b| b.first_seen_ms.is_none()))
        .collect()
}

/// Weighted pools: a backend the weights do not name that serves traffic is an `info`
/// finding, naming the closest configured backend (a likely typo). It is left out of the
/// split, so its peers are not paged for the traffic it takes.
pub(super) fn observe(
    pool: &mut PoolState,
    window: &WindowSummary,
    present: &[(usize, usize)],
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
    let mut window_counts = vec![0u64; pool.slots.len()];
    for &(slot, position) in present {
        window_counts[slot] = window.backends[position].requests;
    }
    let pool_requests: u64 = window_counts.iter().sum();
    let n_backends = pool.n_backends();
    for slot in 0..pool.slots.len() {
        let Some(backend) = pool.backend_mut(slot) else { continue };
        if backend.weight.is_some() {
            continue;
        }
        if backend.shares.closest_configured().is_none() {
            let episode = backend.shares.episode.get_or_insert_with(Box::default);
            episode.closest_configured = configured
                .iter()
                .map(|(seen, name)| (strsim::levenshtein(name, &backend.name), *seen, name))
                .min_by_key(|(distance, seen, name)| (*distance, *seen, *name))
                .map(|(distance, _, name)| (name.clone(), distance));
        }
        let served = window_counts.get(slot).copied().unwrap_or(0);
        let verdict = if served > 0 { Verdict::Anomalous } else { Verdict::Clear };
        let Some(transition) =
            backend.step(Watch::Unexpected, verdict, window.start_ms, window.end_ms, hold)
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
        evidence.closest_configured = backend.shares.closest_configured().map(|(n, _)| n.clone());
        evidence.duration_s = (window.end_ms - since_ms) / 1000;
        findings.push(Finding {
            state,
            kind: AlertKind::Unexpected,
            direction: Direction::Over,
            backend: backend.name.clone(),
            started_at_ms: since_ms,
            severity: Severity::Info,
            evidence,
            resolution: None,
        });
    }
}
