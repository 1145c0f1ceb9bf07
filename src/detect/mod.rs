//! Detect: decides, window by window, whether the balancer splits a pool's traffic as it
//! should, whether one backend's errors or latency pull away from its peers, and whether the
//! whole pool surges or fails, and turns that into alert state changes (firing, then resolved,
//! once each), each with a diagnosis of where the fault most likely is.
//!
//! [`Detector::observe`] calls the judges in order, each in its own file:
//! - `shares.rs`: each backend's share against its expected share (weights, or a baseline
//!   learned from the pool and started from equal shares), over a span of windows, with a
//!   quasi-binomial test whose dispersion (`dispersion.rs`) is learned from the pool itself;
//!   attribution (one drowning server gives one page); `drop`; new backends' slow-start grace;
//!   flapping (`flapping.rs`); backends that serve traffic without a configured weight.
//! - `peers.rs`: errors and latency against the backend's peers in the same window.
//! - `volume.rs`: pool-wide surges (`spike`) against the pool's own volatility.
//! - `burn.rs`: pool-wide errors against the pool's own history.
//!
//! `tracker.rs` holds the pending → firing → resolved machinery, `stats.rs` the tests,
//! `event.rs` what an alert carries, and `explain.rs` the diagnosis and the human summary.
//!
//! Architecture invariant: no IO, no clock. Time is the windows' event time. Memory is held
//! per backend active within `forget_after_s` (plus configured ones), never per backend ever
//! seen, and judging a window costs O(backends) per pool.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::window::WindowSummary;

mod burn;
mod changes;
mod dispersion;
mod event;
mod explain;
mod flapping;
mod health;
mod peers;
mod quiet;
mod settings;
mod shares;
pub mod split;
mod stats;
mod tracker;
mod volume;

pub use event::{
    AlertEvent, AlertKind, AlertMessage, AlertState, ChangeEvidence, Diagnosis, Direction,
    Evidence, ExpectedFrom, Operation, Resolution, Severity, Verdict, WHOLE_POOL,
};
pub use explain::fmt_duration;
pub use settings::{DetectorConfig, InvalidSetting};

/// What a pool is expected to look like, from the config or the balancer's own config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolExpectation {
    /// Expected weight per backend, keyed as the access log names backends. Backends with
    /// weight 0 (backup, down) are expected to take nothing and are not judged.
    pub weights: BTreeMap<String, f64>,
    /// The balancer ramps new servers up over this long (HAProxy `slowstart`, nginx
    /// `slow_start=`), seconds: their grace period.
    pub slow_start_s: Option<u32>,
}

/// One state change found by a judge, before it is explained.
#[derive(Debug, Clone)]
struct Finding {
    state: AlertState,
    kind: AlertKind,
    direction: Direction,
    backend: Arc<str>,
    started_at_ms: i64,
    severity: Severity,
    evidence: Evidence,
    /// Why it resolved, when that is not simply that its condition cleared.
    resolution: Option<Resolution>,
}

/// What the detector remembers of one backend.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct BackendState {
    name: Arc<str>,
    /// Configured weight, in pools with weights; `None` for a backend the config does not name.
    weight: Option<f64>,
    /// Event time of the end of the first window it served a request in.
    first_seen_ms: Option<i64>,
    /// Event time of the end of the last window it served a request in, or in which the
    /// balancer tried it and failed: a backend still tried is still there.
    last_seen_ms: Option<i64>,
    shares: shares::BackendShares,
    /// Its errors, latency and unexpected alerts, while any of them is pending or firing:
    /// most backends have none, and a large pool holds many backends.
    watches: Option<Box<Watches>>,
}

/// A backend's alerts other than its share's.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Watches {
    errors: tracker::Tracker,
    latency: tracker::Tracker,
    unexpected: tracker::Tracker,
}

/// Which of a backend's [`Watches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    Errors,
    Latency,
    Unexpected,
}

impl Watch {
    const ALL: [Watch; 3] = [Watch::Errors, Watch::Latency, Watch::Unexpected];

    fn kind(self) -> AlertKind {
        match self {
            Watch::Errors => AlertKind::Errors,
            Watch::Latency => AlertKind::Latency,
            Watch::Unexpected => AlertKind::Unexpected,
        }
    }
}

impl Watches {
    fn get_mut(&mut self, watch: Watch) -> &mut tracker::Tracker {
        match watch {
            Watch::Errors => &mut self.errors,
            Watch::Latency => &mut self.latency,
            Watch::Unexpected => &mut self.unexpected,
        }
    }
}

impl BackendState {
    fn new(name: Arc<str>, weight: Option<f64>) -> Self {
        BackendState {
            name,
            weight,
            first_seen_ms: None,
            last_seen_ms: None,
            shares: shares::BackendShares::default(),
            watches: None,
        }
    }

    /// When `watch`'s alert began, if it is firing.
    fn firing_since(&self, watch: Watch) -> Option<i64> {
        let watches = self.watches.as_deref()?;
        match watch {
            Watch::Errors => watches.errors.firing_since(),
            Watch::Latency => watches.latency.firing_since(),
            Watch::Unexpected => watches.unexpected.firing_since(),
        }
    }

    /// Steps `watch` by one window's verdict.
    fn step(
        &mut self,
        watch: Watch,
        verdict: tracker::Verdict,
        start_ms: i64,
        end_ms: i64,
        hold: tracker::Hold,
    ) -> Option<tracker::Transition> {
        if self.watches.is_none() && verdict != tracker::Verdict::Anomalous {
            return None; // Idle and nothing new: nothing can change.
        }
        let watches = self.watches.get_or_insert_with(Box::default);
        let transition = watches.get_mut(watch).step(verdict, start_ms, end_ms, hold);
        if **watches == Watches::default() {
            self.watches = None;
        }
        transition
    }
}

/// What the detector remembers of one pool.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PoolState {
    name: Arc<str>,
    /// Backends by slot; a forgotten backend's slot is reused.
    slots: Vec<Option<BackendState>>,
    free_slots: Vec<usize>,
    index: FxHashMap<Arc<str>, usize>,
    /// The window's backend ids to slots: a faster way in than the name, checked against it.
    #[serde(skip)]
    by_id: Vec<usize>,
    /// Whether the pool has configured weights.
    weighted: bool,
    /// The configured weights' total, and how many are positive.
    configured_total: f64,
    configured_backends: usize,
    slow_start_s: Option<u32>,
    first_window_start_ms: Option<i64>,
    last_window_end_ms: Option<i64>,
    shares: shares::PoolShares,
    volume: volume::VolumeState,
    burn: burn::BurnState,
    /// How the pool usually answers.
    #[serde(default)]
    health: health::PoolHealth,
    /// The routine operation in progress.
    #[serde(default)]
    changes: changes::Changes,
    /// A quiet pool's latest windows, for its errors.
    #[serde(default)]
    quiet: quiet::QuietErrors,
    /// A backend's errors or latency alert was pending or firing in the last window: the
    /// pool does not look normal, and nothing is learned from it.
    #[serde(default)]
    troubled: bool,
    /// Weights that changed in the balancer's config and are not reported yet: each
    /// backend's share before and after.
    #[serde(skip)]
    reweighed: Option<Vec<(Arc<str>, f64, f64)>>,
    /// Why the pool has not been judged yet, for the end-of-run report.
    coverage: Coverage,
}

/// How much of a pool's traffic was enough to judge.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Coverage {
    windows: u64,
    judged_windows: u64,
    /// Windows in which a backend's errors were judged on requests accumulated over
    /// several windows (a quiet pool).
    #[serde(default)]
    quiet_judged_windows: u64,
    max_requests: u64,
    max_backends: usize,
}

impl PoolState {
    fn new(name: Arc<str>, expectation: Option<&PoolExpectation>) -> Self {
        let mut pool = PoolState {
            name,
            slots: Vec::new(),
            free_slots: Vec::new(),
            index: FxHashMap::default(),
            by_id: Vec::new(),
            weighted: expectation.is_some(),
            configured_total: expectation.map_or(0.0, |e| e.weights.values().sum()),
            configured_backends: expectation
                .map_or(0, |e| e.weights.values().filter(|w| **w > 0.0).count()),
            slow_start_s: expectation.and_then(|e| e.slow_start_s),
            first_window_start_ms: None,
            last_window_end_ms: None,
            shares: shares::PoolShares::default(),
            volume: volume::VolumeState::default(),
            burn: burn::BurnState::default(),
            health: health::PoolHealth::default(),
            changes: changes::Changes::default(),
            quiet: quiet::QuietErrors::default(),
            troubled: false,
            reweighed: None,
            coverage: Coverage::default(),
        };
        // Configured backends are expected from the start, seen or not.
        for (name, &weight) in expectation.map(|e| &e.weights).into_iter().flatten() {
            pool.insert(Arc::from(name.as_str()), Some(weight));
        }
        pool
    }

    fn insert(&mut self, name: Arc<str>, weight: Option<f64>) -> usize {
        let state = BackendState::new(name.clone(), weight);
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(state);
                slot
            }
            None => {
                self.slots.push(Some(state));
                self.slots.len() - 1
            }
        };
        self.index.insert(name, slot);
        slot
    }

    /// The slot of a window's backend, by its id when that still names it, else by name
    /// (creating it when it is new).
    fn slot_of(&mut self, summary: &crate::window::BackendSummary) -> usize {
        let id = summary.id as usize;
        if let Some(&slot) = self.by_id.get(id)
            && self
                .slots
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|b| Arc::ptr_eq(&b.name, &summary.backend))
        {
            return slot;
        }
        let slot = match self.index.get(&summary.backend) {
            Some(&slot) => slot,
            None => self.insert(summary.backend.clone(), None),
        };
        if self.by_id.len() <= id {
            self.by_id.resize(id + 1, usize::MAX);
        }
        self.by_id[id] = slot;
        slot
    }

    /// Takes new configured weights, keeping what was learned; records the change (emitted
    /// at the pool's next window) when any weight moved.
    fn reweigh(&mut self, expectation: &PoolExpectation) {
        let old_total = self.configured_total;
        let new_total: f64 = expectation.weights.values().sum();
        let mut moved: Vec<(Arc<str>, f64, f64)> = Vec::new();
        for (name, &weight) in &expectation.weights {
            let slot = match self.index.get(name.as_str()) {
                Some(&slot) => slot,
                None => self.insert(Arc::from(name.as_str()), None),
            };
            if let Some(backend) = self.backend_mut(slot) {
                let before = backend.weight.unwrap_or(0.0);
                if (before - weight).abs() > 1e-12 || backend.weight.is_none() {
                    moved.push((
                        backend.name.clone(),
                        before / old_total.max(1e-12),
                        weight / new_total,
                    ));
                }
                backend.weight = Some(weight);
            }
        }
        for backend in self.slots.iter_mut().flatten() {
            if backend.weight.is_some() && !expectation.weights.contains_key(&*backend.name) {
                moved.push((
                    backend.name.clone(),
                    backend.weight.unwrap_or(0.0) / old_total.max(1e-12),
                    0.0,
                ));
                backend.weight = None;
            }
        }
        self.configured_total = new_total;
        self.configured_backends = expectation.weights.values().filter(|w| **w > 0.0).count();
        self.slow_start_s = expectation.slow_start_s;
        if !moved.is_empty() {
            self.shares.interrupt_pending(&mut self.slots);
            self.reweighed = Some(moved);
        }
    }

    fn remove(&mut self, slot: usize) -> Option<BackendState> {
        let state = self.slots.get_mut(slot)?.take()?;
        self.index.remove(&state.name);
        self.free_slots.push(slot);
        Some(state)
    }

    fn backends(&self) -> impl Iterator<Item = (usize, &BackendState)> {
        self.slots.iter().enumerate().filter_map(|(slot, b)| b.as_ref().map(|b| (slot, b)))
    }

    fn backend_mut(&mut self, slot: usize) -> Option<&mut BackendState> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    fn n_backends(&self) -> usize {
        self.index.len()
    }

    /// Backends its split is judged over: the configured ones, or those the baseline knows.
    fn shares_backends(&self) -> usize {
        if self.weighted { self.configured_backends } else { self.shares.baseline_known() }
    }
}

/// One pool that was never judged, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unjudged {
    /// The pool.
    pub pool: String,
    /// Why its shares were never judged.
    pub reason: String,
}

/// One alert that is still firing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StillFiring {
    /// The pool.
    pub pool: Arc<str>,
    /// The backend (`*` for the whole pool).
    pub backend: Arc<str>,
    /// `skew over`, `skew under`, `drop`, `spike`, `errors`, `latency` or `unexpected`.
    pub what: &'static str,
    /// When the condition began, Unix ms.
    pub since_ms: i64,
}

/// What the detector has learned and what is firing: saved with the sidecar's state, so a
/// restart goes on where it stopped (no new warm-up, and a firing alert still resolves).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct DetectorState {
    pools: Vec<PoolState>,
    forgotten_backends: u64,
}

/// The detector. Feed it closed windows in event-time order per pool.
#[derive(Debug)]
pub struct Detector {
    config: DetectorConfig,
    expectations: FxHashMap<String, PoolExpectation>,
    pools: FxHashMap<Arc<str>, PoolState>,
    forgotten_backends: u64,
}

impl Detector {
    /// A detector with what each named pool is expected to look like; other pools learn
    /// their baseline.
    pub fn new(config: DetectorConfig, expectations: FxHashMap<String, PoolExpectation>) -> Self {
        Detector { config, expectations, pools: FxHashMap::default(), forgotten_backends: 0 }
    }

    /// A detector with plain weights per pool (pool → backend → weight).
    pub fn with_weights(
        config: DetectorConfig,
        weights: impl IntoIterator<Item = (String, BTreeMap<String, f64>)>,
    ) -> Self {
        let expectations = weights
            .into_iter()
            .map(|(pool, weights)| (pool, PoolExpectation { weights, slow_start_s: None }))
            .collect();
        Self::new(config, expectations)
    }

    /// The settings in use.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Its state, to save (read back as a [`DetectorState`]).
    pub fn save(&self) -> impl serde::Serialize + '_ {
        /// The saved shape of [`DetectorState`], borrowing instead of copying.
        #[derive(serde::Serialize)]
        struct Saved<'a> {
            pools: Vec<&'a PoolState>,
            forgotten_backends: u64,
        }
        Saved { pools: self.pools.values().collect(), forgotten_backends: self.forgotten_backends }
    }

    /// Goes on from a saved state. A pool whose configured weights changed since (a balancer
    /// config edited and reloaded) keeps what it learned, takes the new weights, and records
    /// the change (a `change` event at its next window). A pool that gained or lost its
    /// weights starts again, and so does everything when the window length changed: their
    /// statistics no longer mean the same. Returns the pools that started again.
    pub fn restore(&mut self, state: DetectorState, same_windows: bool) -> Vec<String> {
        let mut dropped = Vec::new();
        self.forgotten_backends = state.forgotten_backends;
        for mut pool in state.pools {
            let expectation = self.expectations.get(&*pool.name);
            if same_windows
                && pool.weighted
                && let Some(expectation) = expectation
            {
                pool.reweigh(expectation);
                self.pools.insert(pool.name.clone(), pool);
                continue;
            }
            let same_expectation = match expectation {
                None => !pool.weighted,
                Some(e) => {
                    pool.weighted
                        && pool
                            .backends()
                            .filter(|(_, b)| b.weight.is_some())
                            .all(|(_, b)| e.weights.get(&*b.name).copied() == b.weight)
                        && pool.configured_backends
                            == e.weights.values().filter(|w| **w > 0.0).count()
                }
            };
            if same_windows && same_expectation {
                self.pools.insert(pool.name.clone(), pool);
            } else {
                dropped.push(pool.name.to_string());
            }
        }
        dropped
    }

    /// Backends forgotten after `forget_after_s` of silence, over the run.
    pub fn forgotten_backends(&self) -> u64 {
        self.forgotten_backends
    }

    /// Backends remembered now, over all pools.
    pub fn backends_held(&self) -> usize {
        self.pools.values().map(PoolState::n_backends).sum()
    }

    /// Each backend's expected share of `pool` (configured or learned), as the share test
    /// uses it; empty for a pool not seen yet.
    pub fn expected_shares(&self, pool: &str) -> Vec<(Arc<str>, f64)> {
        self.pools.get(pool).map(shares::expected_shares).unwrap_or_default()
    }

    /// Alerts still firing, sorted.
    pub fn firing(&self) -> Vec<StillFiring> {
        let mut out = Vec::new();
        for (pool, state) in &self.pools {
            let mut push = |backend: &Arc<str>, what, since_ms| {
                out.push(StillFiring {
                    pool: pool.clone(),
                    backend: backend.clone(),
                    what,
                    since_ms,
                });
            };
            let whole: Arc<str> = Arc::from(WHOLE_POOL);
            if let Some(since) = state.volume.tracker.firing_since() {
                push(&whole, "spike", since);
            }
            if let Some(since) = state.burn.tracker.firing_since() {
                push(&whole, "errors", since);
            }
            if let Some(since) = state.shares.pinning_since() {
                push(&whole, "skew under", since);
            }
            for (_, backend) in state.backends() {
                if let Some((kind, direction, since)) = backend.shares.firing() {
                    let what = match (kind, direction) {
                        (AlertKind::Drop, _) => "drop",
                        (_, Direction::Over) => "skew over",
                        (_, Direction::Under) => "skew under",
                    };
                    push(&backend.name, what, since);
                }
                for watch in Watch::ALL {
                    if let Some(since) = backend.firing_since(watch) {
                        push(&backend.name, watch.kind().name(), since);
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Pools whose shares were never judged, with the reason, sorted by pool.
    pub fn unjudged(&self) -> Vec<Unjudged> {
        let mut out: Vec<Unjudged> = self
            .pools
            .values()
            .filter(|pool| pool.coverage.judged_windows == 0)
            .map(|pool| Unjudged {
                pool: pool.name.to_string(),
                reason: explain::unjudged_reason(&pool.coverage, &self.config),
            })
            .collect();
        out.sort_by(|a, b| a.pool.cmp(&b.pool));
        out
    }

    /// Judges one closed window and appends any alert state changes to `alerts`.
    pub fn observe(&mut self, window: &WindowSummary, alerts: &mut Vec<AlertEvent>) {
        let config = &self.config;
        let pool = self.pools.entry(window.pool.clone()).or_insert_with(|| {
            PoolState::new(window.pool.clone(), self.expectations.get(&*window.pool))
        });
        pool.first_window_start_ms.get_or_insert(window.start_ms);
        // Persistence counts consecutive windows only: a gap in the log restarts it.
        let consecutive = pool.last_window_end_ms == Some(window.start_ms);
        pool.last_window_end_ms = Some(window.end_ms);
        pool.coverage.windows += 1;
        if !consecutive {
            for backend in pool.slots.iter_mut().flatten() {
                backend.shares.interrupt();
                if let Some(watches) = &mut backend.watches {
                    watches.errors.interrupt();
                    watches.latency.interrupt();
                }
            }
            pool.shares.interrupt();
        }

        // Each of the window's backends gets a slot; a backend is new when it serves. One
        // the balancer only tried, and failed, is still there (not serving).
        let mut present: Vec<(usize, usize)> = Vec::with_capacity(window.backends.len());
        let mut tried: Vec<(usize, u64)> = Vec::new();
        for (position, summary) in window.backends.iter().enumerate() {
            // Requests beyond the pool's backend cap are not a server to judge.
            if &*summary.backend == crate::window::OVERFLOW_BACKEND {
                continue;
            }
            if summary.failed_attempts > 0 {
                let slot = pool.slot_of(summary);
                if let Some(backend) = pool.backend_mut(slot) {
                    backend.last_seen_ms = Some(window.end_ms);
                }
                tried.push((slot, summary.failed_attempts));
            }
            if summary.requests == 0 {
                continue;
            }
            let slot = pool.slot_of(summary);
            if let Some(backend) = pool.backend_mut(slot) {
                backend.first_seen_ms.get_or_insert(window.end_ms);
                backend.last_seen_ms = Some(window.end_ms);
            }
            present.push((slot, position));
        }
        tried.sort_unstable_by_key(|t| t.0);
        let latency = health::PoolLatency::of(window);

        let mut findings = Vec::new();
        if let Some(moved) = pool.reweighed.take() {
            findings.push(changes::weights_changed(
                &moved,
                pool.configured_backends,
                window,
                config,
            ));
        }
        // The passes over every backend (forgetting, finding the heavy ones) run once a
        // minute, from the pool's first window: often enough for a half-hour horizon.
        let windows_a_minute = u64::from((60 / config.window_s.max(1)).max(1));
        if (pool.coverage.windows - 1).is_multiple_of(windows_a_minute) {
            self.forgotten_backends += forget_silent_backends(pool, window, config, &mut findings);
            shares::maintain(pool, config);
        }
        let seen = shares::Seen { window, present: &present, tried: &tried, latency: &latency };
        shares::observe(pool, &seen, config, &mut findings);
        // After the shares, so that a backend already paged for taking too much traffic is not
        // paged again for the errors and latency its alert already reports.
        let judged_latency = window
            .backends
            .iter()
            .filter(|b| b.latency.total() >= config.latency_min_requests)
            .count();
        let peer_latency = (judged_latency >= 3).then_some(&latency);
        peers::observe(pool, window, &present, peer_latency, config, &mut findings);
        volume::observe(pool, window, config, &mut findings);
        burn::observe(pool, window, &present, config, &mut findings);
        explain::explain(pool, window, config, findings, alerts);
    }
}

/// Forgets backends that have served nothing, and have not even been tried, for
/// `forget_after_s`, so memory follows the backends that are active, not every backend ever
/// seen. In a learned pool such a backend was removed from the balancer: what is still firing
/// on it resolves with the reason `removed`, and the baseline stops expecting it. A backend the
/// balancer still tries and fails is in trouble, not removed: it is kept. Configured backends
/// are never forgotten: the config says they should be there. Returns how many were
/// forgotten.
fn forget_silent_backends(
    pool: &mut PoolState,
    window: &WindowSummary,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) -> u64 {
    let forget_ms = i64::from(config.forget_after_s) * 1000;
    let silent: Vec<usize> = pool
        .backends()
        .filter(|(_, b)| b.weight.is_none())
        .filter(|(_, b)| b.last_seen_ms.is_some_and(|seen| window.end_ms - seen >= forget_ms))
        .map(|(slot, _)| slot)
        .collect();
    let n_forgotten = silent.len() as u64;
    for slot in silent {
        let Some(mut backend) = pool.remove(slot) else { continue };
        shares::forget(pool, slot, &backend.shares);
        pool.quiet.forget(slot);
        let mut evidence = Evidence::blank(config.window_s);
        evidence.pool_backends = pool.index.len();
        for (kind, direction, since_ms) in backend.resolve_all() {
            findings.push(Finding {
                state: AlertState::Resolved,
                kind,
                direction,
                backend: backend.name.clone(),
                started_at_ms: since_ms,
                severity: Severity::Warning,
                evidence: Evidence {
                    duration_s: (window.end_ms - since_ms) / 1000,
                    ..evidence.clone()
                },
                resolution: Some(Resolution::Removed),
            });
        }
    }
    n_forgotten
}

impl BackendState {
    /// Resolves everything firing on a backend that is being forgotten.
    fn resolve_all(&mut self) -> Vec<(AlertKind, Direction, i64)> {
        let mut resolved = Vec::new();
        if let Some((kind, direction, since)) = self.shares.take_firing() {
            resolved.push((kind, direction, since));
        }
        if let Some(mut watches) = self.watches.take() {
            for watch in Watch::ALL {
                if let Some(tracker::Transition::Resolved { since_ms }) =
                    watches.get_mut(watch).resolve_now()
                {
                    resolved.push((watch.kind(), Direction::Over, since_ms));
                }
            }
        }
        resolved
    }
}

#[cfg(test)]
mod tests;
