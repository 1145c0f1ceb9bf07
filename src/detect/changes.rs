//! Changes: the routine operations a pool goes through, recorded as one `info` event each
//! (kind `change`, state `noted`), never paged. Teams deploy, scale and canary many times a
//! day; a tool that pages on it is muted on the first.
//!
//! The share judges decide what a departure or an arrival is (`shares/departures.rs`,
//! `shares/adopt.rs`); this module groups what they saw into operations and says so:
//! - **restarts**: backends that left rotation and came back within `departure_grace_s`.
//!   Several, one after another, are one rolling restart, recorded once no backend has left or
//!   returned for `change_quiet_s`;
//! - **scale-out**: newcomers whose grace ended at their share, recorded once no newcomer is
//!   still settling;
//! - scale-ins, canaries, learned splits and new weights are recorded where they are decided.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::event::{ChangeEvidence, Operation};
use super::{
    AlertKind, AlertState, DetectorConfig, Direction, Evidence, Finding, PoolState, Severity,
    WHOLE_POOL,
};
use crate::window::WindowSummary;

/// A backend that left rotation and came back within the grace.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Restarted {
    backend: Arc<str>,
    left_ms: i64,
    back_ms: i64,
    /// The balancer's attempts at it failed while it was away.
    tried: bool,
}

/// A pool's operation in progress.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Changes {
    /// Backends restarted so far in this operation.
    restarted: Vec<Restarted>,
    /// When a backend last left or came back, Unix ms.
    last_activity_ms: Option<i64>,
    /// Newcomers whose grace ended at their share: (name, when it joined), the first
    /// [`ChangeEvidence::MAX_LISTED`] of them ...
    joined: Vec<(Arc<str>, i64)>,
    /// ... and how many in all.
    #[serde(default)]
    n_joined: usize,
}

impl Changes {
    /// A backend left rotation at `at_ms`.
    pub(super) fn left(&mut self, at_ms: i64) {
        self.last_activity_ms = Some(at_ms);
    }

    /// A backend that left at `left_ms` is back at `back_ms`.
    pub(super) fn returned(&mut self, backend: Arc<str>, left_ms: i64, back_ms: i64, tried: bool) {
        self.last_activity_ms = Some(back_ms);
        self.restarted.push(Restarted { backend, left_ms, back_ms, tried });
    }

    /// A newcomer that joined at `joined_ms` settled at its share.
    pub(super) fn joined(&mut self, backend: Arc<str>, joined_ms: i64) {
        self.n_joined += 1;
        if self.joined.len() < ChangeEvidence::MAX_LISTED {
            self.joined.push((backend, joined_ms));
        }
    }

    /// A backend's departures were not a restart after all (it flaps): its are forgotten.
    pub(super) fn not_restarts(&mut self, backend: &str) {
        self.restarted.retain(|r| &*r.backend != backend);
    }
}

/// Emits the operations that are over: restarts once the pool has been still for
/// `change_quiet_s` with nobody away, a scale-out once no newcomer is settling.
pub(super) fn observe(
    pool: &mut PoolState,
    window: &WindowSummary,
    anyone_away: bool,
    anyone_settling: bool,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    let n_backends = pool.shares_backends();
    let changes = &mut pool.changes;
    let quiet_ms = i64::from(config.change_quiet_s) * 1000;
    let still = changes.last_activity_ms.is_none_or(|t| window.end_ms - t >= quiet_ms);
    if !changes.restarted.is_empty() && !anyone_away && still {
        let restarted = std::mem::take(&mut changes.restarted);
        let mut names: Vec<Arc<str>> = Vec::new();
        for r in &restarted {
            if !names.contains(&r.backend) {
                names.push(r.backend.clone());
            }
        }
        let operation =
            if names.len() >= 2 { Operation::RollingRestart } else { Operation::Restart };
        let mut change = evidence(operation, &names, restarted[0].left_ms, n_backends);
        change.longest_absence_s = restarted.iter().map(|r| (r.back_ms - r.left_ms) / 1000).max();
        change.refused_while_away = restarted.iter().any(|r| r.tried);
        let backend = if names.len() == 1 { names[0].clone() } else { Arc::from(WHOLE_POOL) };
        findings.push(noted(backend, change, window, config));
    }
    if !changes.joined.is_empty() && !anyone_settling {
        let joined = std::mem::take(&mut changes.joined);
        let names: Vec<Arc<str>> = joined.iter().map(|(n, _)| n.clone()).collect();
        let since = joined.iter().map(|(_, t)| *t).min().unwrap_or(window.start_ms);
        let mut change = evidence(Operation::ScaleOut, &names, since, n_backends);
        change.n_backends = std::mem::take(&mut changes.n_joined).max(names.len());
        findings.push(noted(Arc::from(WHOLE_POOL), change, window, config));
    }
}

/// The evidence of an operation on `backends`, begun at `started_at`.
pub(super) fn evidence(
    operation: Operation,
    backends: &[Arc<str>],
    started_at: i64,
    pool_backends: usize,
) -> ChangeEvidence {
    ChangeEvidence {
        operation,
        backends: backends.iter().take(ChangeEvidence::MAX_LISTED).cloned().collect(),
        n_backends: backends.len(),
        started_at,
        longest_absence_s: None,
        refused_while_away: false,
        shares: Vec::new(),
        pool_backends,
    }
}

/// The finding that records `change` on `backend` (`*` for several).
pub(super) fn noted(
    backend: Arc<str>,
    change: ChangeEvidence,
    window: &WindowSummary,
    config: &DetectorConfig,
) -> Finding {
    let mut evidence = Evidence::blank(config.window_s);
    evidence.pool_backends = change.pool_backends;
    evidence.pool_requests = window.total_requests();
    evidence.duration_s = (window.end_ms - change.started_at) / 1000;
    let started_at_ms = change.started_at;
    evidence.change = Some(change);
    Finding {
        state: AlertState::Noted,
        kind: AlertKind::Change,
        direction: Direction::Over,
        backend,
        started_at_ms,
        severity: Severity::Info,
        evidence,
        resolution: None,
    }
}

/// The weights in a balancer config skewtail reads changed: one `change`, each moved backend
/// with its share before and after.
pub(super) fn weights_changed(
    moved: &[(Arc<str>, f64, f64)],
    pool_backends: usize,
    window: &WindowSummary,
    config: &DetectorConfig,
) -> Finding {
    let names: Vec<Arc<str>> = moved.iter().map(|m| m.0.clone()).collect();
    let mut change = evidence(Operation::WeightsChanged, &names, window.start_ms, pool_backends);
    change.shares = moved.iter().take(ChangeEvidence::MAX_LISTED).map(|m| (m.1, m.2)).collect();
    let backend = if names.len() == 1 { names[0].clone() } else { Arc::from(WHOLE_POOL) };
    noted(backend, change, window, config)
}
