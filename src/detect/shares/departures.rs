//! Departures: a backend out of rotation is a drain, a restart or a scale-in (a change to
//! record) unless it hurts. It pages when:
//! - the backends out at once were expected to take `departure_max_share` of the pool or more
//!   (too much capacity gone at once), after `for_s`;
//! - the backends still serving show harm (their errors or latency rise against the pool's
//!   usual), after `for_s`;
//! - it has been out longer than `departure_grace_s` and its configured weight says it should
//!   serve;
//! - it has been out longer than the grace and the balancer still tries it and fails (it
//!   refuses connections; nginx logs the retry): the backend is down and not removed;
//! - it flaps (`flapping.rs`, through the episode).
//!
//! Otherwise, in a learned pool, a backend still out after the grace was removed: a scale-in,
//! recorded, and no longer expected.

use std::sync::Arc;

use super::super::changes;
use super::super::event::Operation;
use super::super::{
    AlertKind, AlertState, DetectorConfig, Direction, Finding, PoolState, Severity,
};
use super::episode::Firing;
use super::judge::Judgement;
use super::{PoolJudgement, share_evidence};
use crate::window::WindowSummary;

/// Why a departure is a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    /// Too much of the pool's capacity is out at once.
    Capacity,
    /// The rest of the pool shows harm.
    Harm,
    /// Its configured weight says it should serve.
    Configured,
    /// The balancer's attempts at it fail.
    Refusing,
}

/// Decides, for the backends of the judgement that are away (`away` holds their indexes),
/// which departures page and which were scale-ins.
pub(super) fn decide(
    pool: &mut PoolState,
    judgement: &PoolJudgement,
    verdicts: &[Judgement],
    away: &[usize],
    window: &WindowSummary,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    if away.is_empty() {
        return;
    }
    let away_of = |pool: &PoolState, slot: usize| {
        pool.slots[slot].as_ref().and_then(|b| b.shares.episode.as_ref()).and_then(|e| e.away)
    };
    let departed_share: f64 =
        away.iter().filter_map(|&i| away_of(pool, judgement.slots[i])).map(|a| a.expected).sum();
    let harm = pool.health.harm(window, |b| b.requests > 0, judgement.n_backends, config);
    let for_ms = i64::from(config.for_s) * 1000;
    let grace_ms = i64::from(config.departure_grace_s) * 1000;
    let mut removed = Vec::new();
    for &index in away {
        let slot = judgement.slots[index];
        let Some(away) = away_of(pool, slot) else { continue };
        let held = window.end_ms - away.since_ms;
        let page = if held >= for_ms && departed_share >= config.departure_max_share - 1e-9 {
            Some(Page::Capacity)
        } else if held >= for_ms && harm.is_some() {
            Some(Page::Harm)
        } else if held >= grace_ms && pool.weighted {
            Some(Page::Configured)
        } else if held >= grace_ms && away.tried {
            Some(Page::Refusing)
        } else {
            if held >= grace_ms && !pool.weighted {
                removed.push(slot);
            }
            None
        };
        let Some(page) = page else { continue };
        let Some(backend) = pool.slots[slot].as_mut() else { continue };
        let Some(episode) = backend.shares.episode.as_mut() else { continue };
        let firing = Firing {
            kind: AlertKind::Drop,
            direction: Direction::Under,
            since_ms: away.since_ms,
            severity: match page {
                Page::Capacity | Page::Harm => Severity::Critical,
                Page::Configured | Page::Refusing => Severity::Warning,
            },
            anchor: away.expected,
            flapping: false,
            clear_since_ms: None,
            from_start: false,
        };
        episode.firing = Some(firing);
        episode.away = None;
        episode.pending = None;
        let mut evidence =
            share_evidence(judgement, index, &verdicts[index], &backend.name, window, config);
        evidence.duration_s = held / 1000;
        evidence.departed_share = Some(departed_share);
        evidence.failed_attempts = away.tried.then_some(away.failed_attempts);
        if page == Page::Harm {
            evidence.harm.clone_from(&harm);
        }
        findings.push(Finding {
            state: AlertState::Firing,
            kind: AlertKind::Drop,
            direction: Direction::Under,
            backend: backend.name.clone(),
            started_at_ms: away.since_ms,
            severity: firing.severity,
            evidence,
            resolution: None,
        });
    }
    scale_in(pool, &removed, window, config, findings);
}

/// Backends removed for good from a learned pool that absorbed them: recorded as one
/// scale-in, and no longer expected (a backend that comes back later is a newcomer).
fn scale_in(
    pool: &mut PoolState,
    removed: &[usize],
    window: &WindowSummary,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    if removed.is_empty() {
        return;
    }
    let mut names: Vec<Arc<str>> = Vec::new();
    let mut since = window.start_ms;
    for &slot in removed {
        let Some(backend) = pool.slots[slot].as_mut() else { continue };
        if let Some(away) = backend.shares.episode.as_mut().and_then(|e| e.away.take()) {
            since = since.min(away.since_ms);
        }
        backend.first_seen_ms = None;
        let weight = backend.shares.baseline.take();
        backend.shares.tidy();
        names.push(backend.name.clone());
        if let Some(weight) = weight {
            pool.shares.baseline.forget(weight);
        }
        pool.shares.active.remove(&slot);
        pool.shares.heavy.retain(|&s| s != slot);
        pool.shares.noise.forget(slot);
        pool.shares.adopted.remove(&slot);
    }
    let change = changes::evidence(Operation::ScaleIn, &names, since, pool.shares.baseline.known);
    let backend =
        if names.len() == 1 { names[0].clone() } else { Arc::from(super::super::WHOLE_POOL) };
    findings.push(changes::noted(backend, change, window, config));
}
