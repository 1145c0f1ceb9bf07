//! Detect: decides, window by window, whether a backend's share of its pool's traffic is
//! skewed (or has dropped to nothing), whether one backend's errors or latency pull away from
//! its peers (`peers.rs`), and whether the whole pool surges (`spike`), and turns that into
//! alert state changes (firing, then resolved, once each).
//!
//! For each closed window of a pool with enough traffic, every backend's request count is
//! tested against its expected share with an exact two-sided binomial test, Bonferroni-corrected
//! over the pool's backends (statrs). A backend is *anomalous* when that test is significant
//! **and** the effect is large enough to matter (a ratio floor and a percentage-point floor):
//! at high volume, significance alone flags operationally irrelevant deviations. An alert fires
//! once a backend has been anomalous for `for_s` of consecutive windows, and resolves once it
//! has been back near its expected share for `resolve_for_s` (hysteresis: the resolve
//! threshold is looser than the firing one, so a borderline backend does not flap).
//!
//! Expected shares come from configured weights when the pool has them; otherwise from a
//! baseline learned during a warm-up period and then updated slowly, only from windows in
//! which nothing in the pool was anomalous, so an incident is never learned as normal.
//!
//! Architecture invariant: no IO, no clock. Time is the windows' event time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;
use statrs::distribution::{Binomial, ChiSquared, ContinuousCDF, DiscreteCDF};

use crate::window::WindowSummary;

mod burn;
mod peers;

/// Detector settings. Every field has a default that suits a pool of a few to a few dozen
/// servers at tens of requests per second or more.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Window length, seconds.
    pub window_s: u32,
    /// How far behind the newest line a line may arrive and still count, seconds.
    pub lateness_s: u32,
    /// How long a backend must be anomalous before the alert fires, seconds.
    pub for_s: u32,
    /// How long a firing backend must look normal before the alert resolves, seconds.
    pub resolve_for_s: u32,
    /// A pool window with fewer requests than this is not judged.
    pub min_requests: u64,
    /// A pool with fewer backends than this is not judged.
    pub min_backends: usize,
    /// Family-wise significance level for the per-backend tests (Bonferroni over backends).
    pub alpha: f64,
    /// Fire only when observed/expected share is at least this (or at most its inverse).
    pub min_ratio: f64,
    /// Fire only when the share is off by at least this many percentage points (0.05 = 5 pp),
    /// or half the expected share when that is smaller (large pools).
    pub min_share_delta: f64,
    /// Resolve once the ratio is back within this factor of expected.
    pub resolve_ratio: f64,
    /// Without weights: how long to learn the baseline before judging, seconds.
    pub warmup_s: u32,
    /// Without weights: half-life of the learned baseline after warm-up, seconds.
    pub baseline_half_life_s: u32,
    /// Observed/expected ratio at which an "over" alert is critical rather than a warning.
    pub critical_ratio: f64,
    /// Errors: a backend and its peers each need this many requests in a window.
    pub errors_min_requests: u64,
    /// Errors: fire only when the backend's 5xx rate is this much above its peers' (0.05 = 5 pp).
    pub errors_min_delta: f64,
    /// Errors: ... and at least this multiple of its peers' rate.
    pub errors_min_ratio: f64,
    /// Latency: a backend and each peer need this many requests in a window.
    pub latency_min_requests: u64,
    /// Latency: fire only when the backend's p99 is this many robust deviations above the
    /// peers' median p99 ...
    pub latency_min_z: f64,
    /// ... and at least this multiple of it ...
    pub latency_min_ratio: f64,
    /// ... and at least this many milliseconds slower.
    pub latency_min_delta_ms: f64,
    /// Spike: the pool takes at least this multiple of its usual requests per window ...
    pub spike_min_ratio: f64,
    /// ... at least this many overdispersed-Poisson deviations above it ...
    pub spike_min_z: f64,
    /// ... where the deviation allows this much extra variation on top of Poisson (0.2 = 20%).
    pub spike_overdispersion: f64,
    /// Spike: a pool usually below this many requests per window is not judged.
    pub spike_min_baseline: f64,
    /// Without weights: a backend that serves nothing for this long is treated as removed on
    /// purpose (its drop alert resolves, the baseline stops expecting it), seconds.
    pub forget_after_s: u32,
    /// Pool-wide errors: page when the 5xx rate over both windows is this multiple of the
    /// pool's usual rate (the SRE workbook's 14.4x: 2% of a 30-day budget in an hour) ...
    pub burn_rate: f64,
    /// ... and at least this rate (0.01 = 1%) ...
    pub burn_min_rate: f64,
    /// ... over the short window, seconds ...
    pub burn_short_s: u32,
    /// ... and the long window, seconds ...
    pub burn_long_s: u32,
    /// ... with at least this many requests in the short window.
    pub burn_min_requests: u64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            window_s: 10,
            lateness_s: 5,
            for_s: 30,
            resolve_for_s: 30,
            min_requests: 100,
            min_backends: 2,
            alpha: 1e-3,
            min_ratio: 1.5,
            min_share_delta: 0.05,
            resolve_ratio: 1.25,
            warmup_s: 300,
            baseline_half_life_s: 3600,
            critical_ratio: 2.5,
            errors_min_requests: 30,
            errors_min_delta: 0.05,
            errors_min_ratio: 3.0,
            latency_min_requests: 30,
            latency_min_z: 6.0,
            latency_min_ratio: 2.0,
            latency_min_delta_ms: 50.0,
            spike_min_ratio: 2.0,
            spike_min_z: 5.0,
            spike_overdispersion: 0.2,
            spike_min_baseline: 20.0,
            forget_after_s: 1800,
            burn_rate: 14.4,
            burn_min_rate: 0.01,
            burn_short_s: 300,
            burn_long_s: 3600,
            burn_min_requests: 300,
        }
    }
}

/// Alert lifecycle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition has held for the configured duration.
    Firing,
    /// The condition has cleared for the configured duration.
    Resolved,
}

/// What kind of anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A backend's share of its pool is off its expected share.
    Skew,
    /// A backend that should take traffic has vanished from the log.
    Drop,
    /// The whole pool takes far more traffic than usual (backend `*`).
    Spike,
    /// A backend's 5xx rate is far above its peers'.
    Errors,
    /// A backend's p99 latency is far above its peers'.
    Latency,
}

impl AlertKind {
    /// The kind as it appears in NDJSON and fingerprints.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Skew => "skew",
            AlertKind::Drop => "drop",
            AlertKind::Spike => "spike",
            AlertKind::Errors => "errors",
            AlertKind::Latency => "latency",
        }
    }
}

/// Which way a backend is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// More than its share.
    Over,
    /// Less than its share.
    Under,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Info,
    /// Needs attention soon.
    Warning,
    /// Page someone.
    Critical,
}

/// Where the expected shares came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedFrom {
    /// Configured weights.
    Weights,
    /// The learned baseline.
    Baseline,
}

/// The numbers behind a skew alert, for the on-call and for machines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkewEvidence {
    /// The backend's share of the pool's requests in the deciding window.
    pub observed_share: f64,
    /// Its expected share.
    pub expected_share: f64,
    /// observed / expected.
    pub ratio: f64,
    /// Where the expected share came from.
    pub expected_from: ExpectedFrom,
    /// Requests the backend served in the deciding window.
    pub backend_requests: u64,
    /// Requests the pool served in the deciding window.
    pub pool_requests: u64,
    /// Backends in the pool.
    pub pool_backends: usize,
    /// Bonferroni-adjusted two-sided binomial p-value for this backend.
    pub p_value: f64,
    /// p-value of the G-test of the whole pool's split against the expected shares.
    pub pool_g_test_p_value: f64,
    /// The backend's 5xx rate in the deciding window.
    pub error_rate: f64,
    /// The other backends' combined 5xx rate.
    pub peer_error_rate: f64,
    /// The backend's p99 latency, ms.
    pub p99_ms: Option<f64>,
    /// The median of the other backends' p99 latencies, ms.
    pub peer_p99_ms: Option<f64>,
    /// Errors alerts: the Bonferroni-adjusted one-sided binomial p-value of the backend's 5xx
    /// count at its peers' rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_p_value: Option<f64>,
    /// Latency alerts: (p99 − peers' median p99) / robust scale (1.4826·MAD, floored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_robust_z: Option<f64>,
    /// Spike alerts: the pool's usual requests per window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usual_pool_requests: Option<f64>,
    /// Spike alerts: (requests − usual) / √(usual + (overdispersion·usual)²).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_z: Option<f64>,
    /// Window length, seconds.
    pub window_s: u32,
    /// How long the condition had lasted at this state change, seconds.
    pub duration_s: i64,
}

/// One alert state change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// Firing or resolved.
    pub state: AlertState,
    /// The anomaly kind.
    pub kind: AlertKind,
    /// Over or under its share.
    pub direction: Direction,
    /// The backend, as logged.
    pub backend: Arc<str>,
    /// The pool it belongs to.
    pub pool: Arc<str>,
    /// Event time of the end of the window that changed the state, Unix ms.
    #[serde(rename = "at", serialize_with = "serialize_rfc3339")]
    pub at_ms: i64,
    /// Event time the anomaly began, Unix ms.
    #[serde(rename = "started_at", serialize_with = "serialize_rfc3339")]
    pub started_at_ms: i64,
    /// How urgent it is.
    pub severity: Severity,
    /// One line for humans.
    pub summary: String,
    /// The numbers behind it.
    pub evidence: SkewEvidence,
}

impl AlertEvent {
    /// A stable identity for this anomaly across its firing and resolved events, usable as a
    /// deduplication key by receivers.
    pub fn fingerprint(&self) -> String {
        format!("skewtail/{}/{}/{}/{:?}", self.pool, self.backend, self.kind.name(), self.direction)
            .to_lowercase()
    }
}

fn serialize_rfc3339<S: serde::Serializer>(
    unix_ms: &i64,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::parse::time::format_rfc3339(*unix_ms))
}

#[derive(Debug, Clone)]
struct Firing {
    /// Skew, or drop when the backend had vanished when it fired.
    kind: AlertKind,
    direction: Direction,
    started_at_ms: i64,
    severity: Severity,
    clear_since_ms: Option<i64>,
}

#[derive(Debug, Clone, Default)]
struct BackendState {
    /// Expected share learned from traffic (unused when the pool has weights).
    baseline_share: f64,
    pending: Option<(Direction, i64)>,
    firing: Option<Firing>,
    errors: peers::Tracker,
    latency: peers::Tracker,
    /// End of the last window in which the backend served a request, Unix ms.
    last_seen_ms: i64,
}

#[derive(Debug, Default)]
struct PoolState {
    backends: BTreeMap<Arc<str>, BackendState>,
    learned_windows: u32,
    last_window_end_ms: Option<i64>,
    /// The pool's usual requests per window, learned like the share baseline.
    volume_baseline: f64,
    volume_windows: u32,
    spike: peers::Tracker,
    /// Pool-wide errors against the pool's own history.
    burn: burn::BurnState,
}

/// The per-backend test result for one window.
#[derive(Debug, Clone, Copy)]
struct Judgement {
    share: f64,
    expected: f64,
    ratio: f64,
    p_value: f64,
    anomalous: Option<Direction>,
    /// Whether a firing alert in `direction` may count this window towards resolving.
    clear_over: bool,
    clear_under: bool,
}

/// The skew detector. Feed it closed windows in event-time order per pool.
#[derive(Debug)]
pub struct SkewDetector {
    config: DetectorConfig,
    weights: FxHashMap<String, BTreeMap<String, f64>>,
    pools: FxHashMap<Arc<str>, PoolState>,
}

fn fmt_pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn fmt_ms(ms: Option<f64>) -> String {
    match ms {
        Some(ms) if ms >= 1000.0 => format!("{:.2} s", ms / 1000.0),
        Some(ms) => format!("{ms:.0} ms"),
        None => "n/a".to_string(),
    }
}

/// Formats a duration in seconds as `1h02m`, `25m10s` or `40s`.
pub fn fmt_duration(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[allow(clippy::cast_precision_loss)]
fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 { 0.0 } else { numerator as f64 / denominator as f64 }
}

/// Two-sided exact binomial test p-value: P(as or more extreme than `k` of `n` at rate `p`).
fn binomial_two_sided(k: u64, n: u64, p: f64) -> f64 {
    let Ok(binomial) = Binomial::new(p.clamp(0.0, 1.0), n) else { return 1.0 };
    let lower = binomial.cdf(k);
    let upper = if k == 0 { 1.0 } else { binomial.sf(k - 1) };
    (2.0 * lower.min(upper)).min(1.0)
}

/// G-test of observed counts against expected shares: p-value under χ²(k−1).
#[allow(clippy::cast_precision_loss)]
fn g_test_p_value(counts: &[u64], expected: &[f64]) -> f64 {
    let n: u64 = counts.iter().sum();
    let mut g = 0.0;
    for (&x, &q) in counts.iter().zip(expected) {
        if x > 0 && q > 0.0 {
            g += 2.0 * x as f64 * (x as f64 / (n as f64 * q)).ln();
        }
    }
    match ChiSquared::new((counts.len().max(2) - 1) as f64) {
        Ok(chi) => chi.sf(g.max(0.0)),
        Err(_) => 1.0,
    }
}

impl SkewDetector {
    /// A detector with per-pool weights (pool → backend → weight); pools without weights use
    /// a learned baseline.
    pub fn new(config: DetectorConfig, weights: FxHashMap<String, BTreeMap<String, f64>>) -> Self {
        SkewDetector { config, weights, pools: FxHashMap::default() }
    }

    /// The settings in use.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Alerts still firing, as (pool, backend, what, started_at_ms), where `what` is
    /// `skew over`, `skew under`, `drop`, `errors` or `latency`.
    pub fn firing(&self) -> Vec<(Arc<str>, Arc<str>, &'static str, i64)> {
        let mut out = Vec::new();
        for (pool, state) in &self.pools {
            if let Some(since) = state.spike.firing_since() {
                out.push((pool.clone(), Arc::from(WHOLE_POOL), "spike", since));
            }
            if let Some(since) = state.burn.tracker.firing_since() {
                out.push((pool.clone(), Arc::from(WHOLE_POOL), "errors", since));
            }
            for (backend, backend_state) in &state.backends {
                let mut push = |what, since| out.push((pool.clone(), backend.clone(), what, since));
                if let Some(firing) = &backend_state.firing {
                    let what = match (firing.kind, firing.direction) {
                        (AlertKind::Drop, _) => "drop",
                        (_, Direction::Over) => "skew over",
                        (_, Direction::Under) => "skew under",
                    };
                    push(what, firing.started_at_ms);
                }
                if let Some(since) = backend_state.errors.firing_since() {
                    push("errors", since);
                }
                if let Some(since) = backend_state.latency.firing_since() {
                    push("latency", since);
                }
            }
        }
        out.sort();
        out
    }

    fn warmup_windows(&self) -> u32 {
        self.config.warmup_s.div_ceil(self.config.window_s.max(1))
    }

    /// Judges one closed window and appends any alert state changes to `alerts`.
    pub fn observe(&mut self, window: &WindowSummary, alerts: &mut Vec<AlertEvent>) {
        let config = self.config.clone();
        let warmup_windows = self.warmup_windows();
        let weights = self.weights.get(&*window.pool);
        let pool = self.pools.entry(window.pool.clone()).or_default();
        // Persistence counts consecutive windows only: a gap in the log restarts it.
        if pool.last_window_end_ms != Some(window.start_ms) {
            for backend in pool.backends.values_mut() {
                backend.pending = None;
                backend.errors.interrupt();
                backend.latency.interrupt();
            }
        }
        pool.last_window_end_ms = Some(window.end_ms);

        for summary in &window.backends {
            // A backend is new when it serves a request, not when it is merely listed.
            if summary.requests > 0 && !pool.backends.contains_key(&summary.backend) {
                // A backend appearing after the baseline was learned starts at an equal share.
                let n_known = pool.backends.len();
                let initial = if pool.learned_windows == 0 || n_known == 0 {
                    0.0
                } else {
                    1.0 / (n_known + 1) as f64
                };
                #[allow(clippy::cast_precision_loss)]
                for state in pool.backends.values_mut() {
                    state.baseline_share *= 1.0 - initial;
                }
                pool.backends.insert(
                    summary.backend.clone(),
                    BackendState { baseline_share: initial, ..Default::default() },
                );
            }
            if summary.requests > 0
                && let Some(state) = pool.backends.get_mut(&summary.backend)
            {
                state.last_seen_ms = window.end_ms;
            }
        }
        if weights.is_none() {
            forget_removed_backends(pool, window, &config, alerts);
        }
        observe_shares(pool, window, weights, &config, warmup_windows, alerts);
        // After the shares, so that a backend already paged for taking too much traffic is not
        // paged again for the errors and latency its alert already reports.
        observe_peers(pool, window, weights, &config, alerts);
        observe_volume(pool, window, &config, warmup_windows, alerts);
        observe_burn(pool, window, &config, warmup_windows, alerts);
    }
}

/// Judges the window's split against the expected shares (skew and drop).
fn observe_shares(
    pool: &mut PoolState,
    window: &WindowSummary,
    weights: Option<&BTreeMap<String, f64>>,
    config: &DetectorConfig,
    warmup_windows: u32,
    alerts: &mut Vec<AlertEvent>,
) {
    let n = window.total_requests();
    if n < config.min_requests {
        return;
    }
    let names: Vec<Arc<str>> = pool.backends.keys().cloned().collect();
    let counts: Vec<u64> = names
        .iter()
        .map(|name| window.backends.iter().find(|b| b.backend == *name).map_or(0, |b| b.requests))
        .collect();
    let shares: Vec<f64> = counts.iter().map(|&c| ratio(c, n)).collect();

    let (expected, expected_from): (Vec<f64>, ExpectedFrom) = match weights {
        Some(weights) => {
            let total: f64 = weights.values().sum();
            (
                names.iter().map(|name| weights.get(&**name).map_or(0.0, |w| w / total)).collect(),
                ExpectedFrom::Weights,
            )
        }
        None => {
            if pool.learned_windows < warmup_windows {
                // Warm-up: the baseline is the running mean of the shares seen so far.
                pool.learned_windows += 1;
                let weight = 1.0 / f64::from(pool.learned_windows);
                for (state, share) in pool.backends.values_mut().zip(&shares) {
                    state.baseline_share += weight * (share - state.baseline_share);
                }
                return;
            }
            let total: f64 = pool.backends.values().map(|b| b.baseline_share).sum();
            let expected = pool
                .backends
                .values()
                .map(|b| if total > 0.0 { b.baseline_share / total } else { 0.0 })
                .collect();
            (expected, ExpectedFrom::Baseline)
        }
    };
    let n_tested = expected.iter().filter(|&&q| q > 0.0).count();
    if n_tested < config.min_backends {
        return;
    }
    let judgements = judge(&counts, &expected, config);
    let pool_p = g_test_p_value(&counts, &expected);

    let mut pool_is_quiet = true;
    for (index, name) in names.iter().enumerate() {
        let judgement = judgements[index];
        let state =
            pool.backends.get_mut(name).unwrap_or_else(|| unreachable!("names come from the map"));
        let build = |state_change, kind, direction, started_at_ms, severity| {
            let evidence = evidence(
                window,
                name,
                &judgement,
                expected_from,
                pool_p,
                n,
                names.len(),
                config,
                window.end_ms - started_at_ms,
            );
            AlertEvent {
                state: state_change,
                kind,
                direction,
                backend: name.clone(),
                pool: window.pool.clone(),
                at_ms: window.end_ms,
                started_at_ms,
                severity,
                summary: summarize(state_change, kind, direction, name, &window.pool, &evidence),
                evidence,
            }
        };
        match &mut state.firing {
            None => match (judgement.anomalous, state.pending) {
                (Some(direction), pending) => {
                    pool_is_quiet = false;
                    let since = match pending {
                        Some((pending_direction, since)) if pending_direction == direction => since,
                        _ => window.start_ms,
                    };
                    state.pending = Some((direction, since));
                    if window.end_ms - since >= i64::from(config.for_s) * 1000 {
                        let severity = if direction == Direction::Over
                            && judgement.ratio >= config.critical_ratio
                        {
                            Severity::Critical
                        } else {
                            Severity::Warning
                        };
                        // A backend that takes nothing at all has dropped out.
                        let kind = if direction == Direction::Under && counts[index] == 0 {
                            AlertKind::Drop
                        } else {
                            AlertKind::Skew
                        };
                        alerts.push(build(AlertState::Firing, kind, direction, since, severity));
                        state.pending = None;
                        state.firing = Some(Firing {
                            kind,
                            direction,
                            started_at_ms: since,
                            severity,
                            clear_since_ms: None,
                        });
                    }
                }
                (None, _) => state.pending = None,
            },
            Some(firing) => {
                pool_is_quiet = false;
                let clear = match firing.direction {
                    Direction::Over => judgement.clear_over,
                    Direction::Under => judgement.clear_under,
                };
                if !clear {
                    firing.clear_since_ms = None;
                    continue;
                }
                let clear_since = *firing.clear_since_ms.get_or_insert(window.start_ms);
                if window.end_ms - clear_since >= i64::from(config.resolve_for_s) * 1000 {
                    let (kind, direction, started_at_ms, severity) =
                        (firing.kind, firing.direction, firing.started_at_ms, firing.severity);
                    alerts.push(build(
                        AlertState::Resolved,
                        kind,
                        direction,
                        started_at_ms,
                        severity,
                    ));
                    state.firing = None;
                }
            }
        }
    }

    if pool_is_quiet && expected_from == ExpectedFrom::Baseline {
        // Learn slowly, and only from windows where nothing was off.
        let half_life_windows =
            f64::from(config.baseline_half_life_s) / f64::from(config.window_s.max(1));
        let alpha = 1.0 - 0.5f64.powf(1.0 / half_life_windows.max(1.0));
        for (state, share) in pool.backends.values_mut().zip(&shares) {
            state.baseline_share += alpha * (share - state.baseline_share);
        }
    }
}

/// A learned pool forgets a backend that has served nothing for `forget_after_s`: it was
/// removed on purpose (its `drop` alert has said so for that long), and the baseline must
/// stop expecting it, or the pool would never look normal again. A pool with configured
/// weights keeps expecting the backend: the config says it should be there.
fn forget_removed_backends(
    pool: &mut PoolState,
    window: &WindowSummary,
    config: &DetectorConfig,
    alerts: &mut Vec<AlertEvent>,
) {
    let forget_ms = i64::from(config.forget_after_s) * 1000;
    let gone: Vec<Arc<str>> = pool
        .backends
        .iter()
        .filter(|(_, state)| {
            state.last_seen_ms > 0 && window.end_ms - state.last_seen_ms >= forget_ms
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in gone {
        let Some(state) = pool.backends.remove(&name) else { continue };
        let Some(firing) = state.firing else { continue };
        let judgement = Judgement {
            share: 0.0,
            expected: 0.0,
            ratio: 0.0,
            p_value: 1.0,
            anomalous: None,
            clear_over: true,
            clear_under: true,
        };
        let evidence = evidence(
            window,
            &name,
            &judgement,
            ExpectedFrom::Baseline,
            1.0,
            window.total_requests(),
            pool.backends.len(),
            config,
            window.end_ms - firing.started_at_ms,
        );
        alerts.push(AlertEvent {
            state: AlertState::Resolved,
            kind: firing.kind,
            direction: firing.direction,
            backend: name.clone(),
            pool: window.pool.clone(),
            at_ms: window.end_ms,
            started_at_ms: firing.started_at_ms,
            severity: firing.severity,
            summary: format!(
                "{name} has served nothing in pool {} for {}: treated as removed on purpose; the \
                 baseline no longer expects it",
                window.pool,
                fmt_duration(i64::from(config.forget_after_s))
            ),
            evidence,
        });
    }
}

/// Judges the pool's 5xx rate against its own history (multi-window burn rate) and appends
/// the state changes of the pool-wide `errors` alert (backend `*`).
fn observe_burn(
    pool: &mut PoolState,
    window: &WindowSummary,
    config: &DetectorConfig,
    warmup_windows: u32,
    alerts: &mut Vec<AlertEvent>,
) {
    // Backends already paged for their own errors or for taking too much traffic are left
    // out: their alerts explain their errors, and their history must not page the pool later.
    let paged = |name: &Arc<str>| {
        pool.backends.get(name).is_some_and(|b| {
            b.errors.firing_since().is_some()
                || b.firing.as_ref().is_some_and(|f| f.direction == Direction::Over)
        })
    };
    let (errors, requests) = window
        .backends
        .iter()
        .filter(|b| !paged(&b.backend))
        .fold((0, 0), |(e, r), b| (e + b.errors, r + b.requests));
    let burn = pool.burn.observe(errors, requests, config, warmup_windows);
    let Some(transition) = pool.burn.tracker.step(burn.verdict, window, config) else { return };
    let (state, since_ms) = transition.state();
    let mut evidence = pool_wide_evidence(window, config, 1.0, since_ms);
    evidence.error_rate = burn.short_rate;
    evidence.peer_error_rate = burn.usual_rate;
    let minutes = |s: u32| fmt_duration(i64::from(s));
    let summary = match state {
        AlertState::Firing => format!(
            "pool {} is failing {} of its requests over {} ({} over {}) against {} usually, \
             on every backend alike: a pool-wide error burst, not one server; for {}",
            window.pool,
            fmt_pct(burn.short_rate),
            minutes(config.burn_short_s),
            fmt_pct(burn.long_rate),
            minutes(config.burn_long_s),
            fmt_pct(burn.usual_rate),
            fmt_duration(evidence.duration_s)
        ),
        AlertState::Resolved => format!(
            "pool {}'s 5xx rate is back to {} over {} after {}",
            window.pool,
            fmt_pct(burn.short_rate),
            minutes(config.burn_short_s),
            fmt_duration(evidence.duration_s)
        ),
    };
    alerts.push(pool_wide_event(
        window,
        AlertKind::Errors,
        state,
        since_ms,
        Severity::Critical,
        summary,
        evidence,
    ));
}

/// The evidence of a pool-wide event: the pool's window and how long it has held; `ratio` is
/// the pool's traffic against its usual. The caller adds what it measured.
fn pool_wide_evidence(
    window: &WindowSummary,
    config: &DetectorConfig,
    ratio: f64,
    since_ms: i64,
) -> SkewEvidence {
    let judgement = Judgement {
        share: 1.0,
        expected: 1.0,
        ratio,
        p_value: 1.0,
        anomalous: None,
        clear_over: false,
        clear_under: false,
    };
    evidence(
        window,
        WHOLE_POOL,
        &judgement,
        ExpectedFrom::Baseline,
        1.0,
        window.total_requests(),
        window.backends.len(),
        config,
        window.end_ms - since_ms,
    )
}

/// An event about the whole pool (backend `*`).
fn pool_wide_event(
    window: &WindowSummary,
    kind: AlertKind,
    state: AlertState,
    since_ms: i64,
    severity: Severity,
    summary: String,
    evidence: SkewEvidence,
) -> AlertEvent {
    AlertEvent {
        state,
        kind,
        direction: Direction::Over,
        backend: Arc::from(WHOLE_POOL),
        pool: window.pool.clone(),
        at_ms: window.end_ms,
        started_at_ms: since_ms,
        severity,
        summary,
        evidence,
    }
}

/// The backend name of pool-wide alerts.
pub const WHOLE_POOL: &str = "*";

/// Judges the pool's request count against its usual volume: a `spike` when it surges. A
/// surge that spreads over the backends as usual changes no share, so it is never a skew.
/// Counts are compared with an overdispersed Poisson model: real traffic varies more than
/// Poisson, so the variance is `b + (overdispersion·b)²` for a baseline of `b`.
#[allow(clippy::cast_precision_loss)]
fn observe_volume(
    pool: &mut PoolState,
    window: &WindowSummary,
    config: &DetectorConfig,
    warmup_windows: u32,
    alerts: &mut Vec<AlertEvent>,
) {
    let n = window.total_requests() as f64;
    if pool.volume_windows < warmup_windows {
        pool.volume_windows += 1;
        pool.volume_baseline += (n - pool.volume_baseline) / f64::from(pool.volume_windows);
        return;
    }
    let baseline = pool.volume_baseline;
    let sd = (baseline + (config.spike_overdispersion * baseline).powi(2)).sqrt();
    let z = if sd > 0.0 { (n - baseline) / sd } else { 0.0 };
    // A surge that lands on one backend is that backend's skew, already judged and paged.
    let lands_on_one_backend = pool.backends.values().any(|b| {
        b.firing.as_ref().is_some_and(|f| f.direction == Direction::Over)
            || b.pending.is_some_and(|(direction, _)| direction == Direction::Over)
    });
    let verdict = if baseline >= config.spike_min_baseline
        && !lands_on_one_backend
        && n >= config.spike_min_ratio * baseline
        && z >= config.spike_min_z
    {
        peers::Verdict::Anomalous
    } else if n < baseline * (1.0 + (config.spike_min_ratio - 1.0) / 2.0) {
        peers::Verdict::Clear
    } else {
        peers::Verdict::Unknown
    };
    if verdict == peers::Verdict::Clear && pool.spike.firing_since().is_none() {
        let half_life_windows =
            f64::from(config.baseline_half_life_s) / f64::from(config.window_s.max(1));
        let alpha = 1.0 - 0.5f64.powf(1.0 / half_life_windows.max(1.0));
        pool.volume_baseline += alpha * (n - baseline);
    }
    let Some(transition) = pool.spike.step(verdict, window, config) else { return };
    let (state, since_ms) = transition.state();
    let ratio = if baseline > 0.0 { n / baseline } else { 0.0 };
    let mut evidence = pool_wide_evidence(window, config, ratio, since_ms);
    evidence.usual_pool_requests = Some(baseline);
    evidence.volume_z = Some(z);
    let summary = match state {
        AlertState::Firing => format!(
            "pool {} is taking {:.1}x its usual traffic: {} requests in {}s against {:.0} usually (z {:.1}); the backends' shares are as usual, so this is load, not skew; for {}",
            window.pool,
            evidence.ratio,
            evidence.pool_requests,
            config.window_s,
            baseline,
            z,
            fmt_duration(evidence.duration_s)
        ),
        AlertState::Resolved => format!(
            "pool {}'s traffic is back to {:.1}x its usual after {}",
            window.pool,
            evidence.ratio,
            fmt_duration(evidence.duration_s)
        ),
    };
    alerts.push(pool_wide_event(
        window,
        AlertKind::Spike,
        state,
        since_ms,
        Severity::Warning,
        summary,
        evidence,
    ));
}

/// Judges every backend of the window against its peers on errors and latency, and appends
/// the state changes. Independent of the share baseline: peers are compared in the same
/// window, so this works from the first window and through a skew.
fn observe_peers(
    pool: &mut PoolState,
    window: &WindowSummary,
    weights: Option<&BTreeMap<String, f64>>,
    config: &DetectorConfig,
    alerts: &mut Vec<AlertEvent>,
) {
    let n = window.total_requests();
    let n_backends = window.backends.len();
    let baseline_total: f64 = pool.backends.values().map(|b| b.baseline_share).sum();
    let weight_total: f64 = weights.map_or(0.0, |w| w.values().sum());
    let mut scratch = Vec::new();
    for (name, state) in &mut pool.backends {
        let this = window.backends.iter().find(|b| b.backend == *name);
        let (errors, latency) = match this {
            Some(this) => (
                Some(peers::judge_errors(window, this, config)),
                peers::judge_latency(window, this, config, &mut scratch),
            ),
            None => (None, None),
        };
        let expected_share = match weights {
            Some(weights) => {
                weights.get(&**name).map_or(0.0, |w| w / weight_total.max(f64::MIN_POSITIVE))
            }
            None if baseline_total > 0.0 => state.baseline_share / baseline_total,
            None => 0.0,
        };
        let observed_share = ratio(this.map_or(0, |b| b.requests), n);
        let share_judgement = Judgement {
            share: observed_share,
            expected: expected_share,
            ratio: if expected_share > 0.0 { observed_share / expected_share } else { 0.0 },
            p_value: 1.0,
            anomalous: None,
            clear_over: false,
            clear_under: false,
        };
        let expected_from =
            if weights.is_some() { ExpectedFrom::Weights } else { ExpectedFrom::Baseline };
        let verdicts = [
            (AlertKind::Errors, errors.map_or(peers::Verdict::Unknown, |j| j.verdict)),
            (AlertKind::Latency, latency.map_or(peers::Verdict::Unknown, |j| j.verdict)),
        ];
        // A backend already paged for taking too much traffic: its skew alert reports its
        // errors and latency, so they do not page again (an inhibition, as in Alertmanager).
        let inhibited = state.firing.as_ref().is_some_and(|f| f.direction == Direction::Over);
        for (kind, verdict) in verdicts {
            let verdict = match verdict {
                peers::Verdict::Anomalous if inhibited => peers::Verdict::Unknown,
                verdict => verdict,
            };
            let tracker = match kind {
                AlertKind::Errors => &mut state.errors,
                _ => &mut state.latency,
            };
            let Some(transition) = tracker.step(verdict, window, config) else { continue };
            let (state_change, since_ms) = transition.state();
            let mut evidence = evidence(
                window,
                name,
                &share_judgement,
                expected_from,
                1.0,
                n,
                n_backends,
                config,
                window.end_ms - since_ms,
            );
            evidence.errors_p_value =
                errors.filter(|_| kind == AlertKind::Errors).map(|j| j.p_value);
            if kind == AlertKind::Latency {
                evidence.latency_robust_z = latency.map(|j| j.robust_z);
                evidence.peer_p99_ms = latency.map(|j| j.peer_p99_ms).or(evidence.peer_p99_ms);
            }
            alerts.push(AlertEvent {
                state: state_change,
                kind,
                direction: Direction::Over,
                backend: name.clone(),
                pool: window.pool.clone(),
                at_ms: window.end_ms,
                started_at_ms: since_ms,
                severity: if kind == AlertKind::Errors {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                summary: summarize(
                    state_change,
                    kind,
                    Direction::Over,
                    name,
                    &window.pool,
                    &evidence,
                ),
                evidence,
            });
        }
    }
}

/// Tests every backend against its expected share, attributing skew to its cause.
///
/// When one backend takes too much, every other backend's share drops with it; testing each
/// against the whole pool would page for all of them. So the most significant anomalous
/// backend is flagged first, then removed, and the rest are re-tested against each other with
/// their expected shares renormalised, until nothing anomalous is left. A backend that drowns
/// is reported alone; two independent culprits are both found.
#[allow(clippy::cast_precision_loss)]
fn judge(counts: &[u64], expected: &[f64], config: &DetectorConfig) -> Vec<Judgement> {
    let n_total: u64 = counts.iter().sum();
    let test = |index: usize, remaining: &[bool]| -> Judgement {
        let (k, q_full) = (counts[index], expected[index]);
        let share = ratio(k, n_total);
        if q_full <= 0.0 {
            // A backend with no expected share (not in the weights) is reported in windows
            // but never judged: it has nothing to be skewed against.
            return Judgement {
                share,
                expected: 0.0,
                ratio: 1.0,
                p_value: 1.0,
                anomalous: None,
                clear_over: true,
                clear_under: true,
            };
        }
        let n: u64 = counts.iter().zip(remaining).filter(|(_, r)| **r).map(|(c, _)| c).sum();
        let q_sum: f64 = expected.iter().zip(remaining).filter(|(_, r)| **r).map(|(q, _)| q).sum();
        let n_tested = expected.iter().zip(remaining).filter(|(q, r)| **r && **q > 0.0).count();
        let q = q_full / q_sum;
        let conditional_share = ratio(k, n);
        let p_value = (binomial_two_sided(k, n, q) * n_tested as f64).min(1.0);
        let r = conditional_share / q;
        let significant = p_value < config.alpha;
        // The percentage-point floor guards big shares against tiny, significant deviations;
        // in a large pool (expected shares under 10%) it shrinks to half the expected share,
        // so a backend taking 4x its 0.5% among 200 is still caught.
        let delta_floor = config.min_share_delta.min(q / 2.0);
        let anomalous = if significant
            && r >= config.min_ratio
            && conditional_share - q >= delta_floor
        {
            Some(Direction::Over)
        } else if significant && r <= 1.0 / config.min_ratio && q - conditional_share >= delta_floor
        {
            Some(Direction::Under)
        } else {
            None
        };
        Judgement {
            share,
            expected: q_full,
            ratio: share / q_full,
            p_value,
            anomalous,
            clear_over: r < config.resolve_ratio || conditional_share - q < delta_floor / 2.0,
            clear_under: r > 1.0 / config.resolve_ratio
                || q - conditional_share < delta_floor / 2.0,
        }
    };
    let mut remaining = vec![true; counts.len()];
    let mut results: Vec<Option<Judgement>> = vec![None; counts.len()];
    loop {
        let n_left = remaining.iter().zip(expected).filter(|(r, q)| **r && **q > 0.0).count();
        let round: Vec<(usize, Judgement)> =
            (0..counts.len()).filter(|&i| remaining[i]).map(|i| (i, test(i, &remaining))).collect();
        let worst = round
            .iter()
            .filter(|(_, j)| j.anomalous.is_some())
            .min_by(|a, b| a.1.p_value.total_cmp(&b.1.p_value))
            .map(|(i, j)| (*i, *j));
        match worst {
            // Keep at least `min_backends` to compare the rest against.
            Some((index, judgement)) if n_left > config.min_backends => {
                results[index] = Some(judgement);
                remaining[index] = false;
            }
            _ => {
                let mut round = round;
                // A pair is one event seen from both sides: one taking too much is the other
                // getting too little, and noise can push either side past its floor first.
                // Page once, for the one taking too much, unless the other has dropped out
                // entirely, which says more.
                if let [(a, ja), (b, jb)] = round[..]
                    && n_left == 2
                    && (ja.anomalous.is_some() || jb.anomalous.is_some())
                {
                    let (over, under) = if ja.share - ja.expected >= jb.share - jb.expected {
                        (0, 1)
                    } else {
                        (1, 0)
                    };
                    let under_dropped = counts[if under == 0 { a } else { b }] == 0;
                    let (keep, quiet, direction) = if under_dropped {
                        (under, over, Direction::Under)
                    } else {
                        (over, under, Direction::Over)
                    };
                    round[keep].1.anomalous = Some(direction);
                    round[quiet].1.anomalous = None;
                }
                for (index, judgement) in round {
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

#[allow(clippy::too_many_arguments)]
fn evidence(
    window: &WindowSummary,
    backend: &str,
    judgement: &Judgement,
    expected_from: ExpectedFrom,
    pool_g_test_p_value: f64,
    pool_requests: u64,
    pool_backends: usize,
    config: &DetectorConfig,
    duration_ms: i64,
) -> SkewEvidence {
    let this = window.backends.iter().find(|b| &*b.backend == backend);
    let (peer_errors, peer_requests) = window
        .backends
        .iter()
        .filter(|b| &*b.backend != backend)
        .fold((0, 0), |(e, r), b| (e + b.errors, r + b.requests));
    let mut peer_p99: Vec<f64> = window
        .backends
        .iter()
        .filter(|b| &*b.backend != backend)
        .filter_map(|b| b.p99_ms)
        .collect();
    peer_p99.sort_by(f64::total_cmp);
    SkewEvidence {
        observed_share: judgement.share,
        expected_share: judgement.expected,
        ratio: judgement.ratio,
        expected_from,
        backend_requests: this.map_or(0, |b| b.requests),
        pool_requests,
        pool_backends,
        p_value: judgement.p_value,
        pool_g_test_p_value,
        error_rate: this.map_or(0.0, |b| ratio(b.errors, b.requests)),
        peer_error_rate: ratio(peer_errors, peer_requests),
        p99_ms: this.and_then(|b| b.p99_ms),
        peer_p99_ms: peer_p99.get(peer_p99.len() / 2).copied(),
        errors_p_value: None,
        latency_robust_z: None,
        usual_pool_requests: None,
        volume_z: None,
        window_s: config.window_s,
        duration_s: duration_ms / 1000,
    }
}

fn summarize(
    state: AlertState,
    kind: AlertKind,
    direction: Direction,
    backend: &str,
    pool: &str,
    e: &SkewEvidence,
) -> String {
    let mut text = match (state, kind, direction) {
        (AlertState::Firing, AlertKind::Drop, _) => format!(
            "{backend} has dropped out of pool {pool}: 0 of {} requests in {}s, expected {}; for {}",
            e.pool_requests,
            e.window_s,
            fmt_pct(e.expected_share),
            fmt_duration(e.duration_s)
        ),
        (AlertState::Firing, AlertKind::Errors, _) => format!(
            "{backend} is failing {} of its requests in pool {pool} against {} on its peers \
             ({} requests in {}s, p = {:.1e}); for {}",
            fmt_pct(e.error_rate),
            fmt_pct(e.peer_error_rate),
            e.backend_requests,
            e.window_s,
            e.errors_p_value.unwrap_or(1.0),
            fmt_duration(e.duration_s)
        ),
        (AlertState::Firing, AlertKind::Latency, _) => format!(
            "{backend} answers slowly in pool {pool}: p99 {} against {} on its peers (robust z \
             {:.1}); for {}",
            fmt_ms(e.p99_ms),
            fmt_ms(e.peer_p99_ms),
            e.latency_robust_z.unwrap_or(0.0),
            fmt_duration(e.duration_s)
        ),
        (AlertState::Resolved, AlertKind::Errors, _) => format!(
            "{backend}'s 5xx rate in pool {pool} is back to {} (peers {}) after {}",
            fmt_pct(e.error_rate),
            fmt_pct(e.peer_error_rate),
            fmt_duration(e.duration_s)
        ),
        (AlertState::Resolved, AlertKind::Latency, _) => format!(
            "{backend}'s p99 in pool {pool} is back to {} (peers {}) after {}",
            fmt_ms(e.p99_ms),
            fmt_ms(e.peer_p99_ms),
            fmt_duration(e.duration_s)
        ),
        (AlertState::Firing, _, Direction::Over) => format!(
            "{backend} is taking {} of pool {pool}'s traffic, expected {} ({:.1}x): {} of {} requests in {}s; skewed for {}",
            fmt_pct(e.observed_share),
            fmt_pct(e.expected_share),
            e.ratio,
            e.backend_requests,
            e.pool_requests,
            e.window_s,
            fmt_duration(e.duration_s)
        ),
        (AlertState::Firing, _, Direction::Under) => format!(
            "{backend} is getting only {} of pool {pool}'s traffic, expected {}: {} of {} requests in {}s; for {}",
            fmt_pct(e.observed_share),
            fmt_pct(e.expected_share),
            e.backend_requests,
            e.pool_requests,
            e.window_s,
            fmt_duration(e.duration_s)
        ),
        (AlertState::Resolved, _, _) => format!(
            "{backend} is back to {} of pool {pool}'s traffic (expected {}) after {} of skew",
            fmt_pct(e.observed_share),
            fmt_pct(e.expected_share),
            fmt_duration(e.duration_s)
        ),
    };
    if state == AlertState::Firing
        && kind == AlertKind::Skew
        && (e.error_rate > 2.0 * e.peer_error_rate + 0.01
            || e.p99_ms > e.peer_p99_ms.map(|p| p * 2.0))
    {
        let _ = write!(
            text,
            "; its 5xx rate is {} (peers {}), p99 {} (peers {})",
            fmt_pct(e.error_rate),
            fmt_pct(e.peer_error_rate),
            fmt_ms(e.p99_ms),
            fmt_ms(e.peer_p99_ms)
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::BackendSummary;

    fn window(start_s: i64, counts: &[u64]) -> WindowSummary {
        WindowSummary {
            pool: "api".into(),
            start_ms: start_s * 1000,
            end_ms: (start_s + 10) * 1000,
            backends: counts
                .iter()
                .enumerate()
                .map(|(i, &requests)| BackendSummary {
                    backend: format!("10.0.0.{i}:80").into(),
                    requests,
                    errors: 0,
                    retried: 0,
                    p50_ms: Some(10.0),
                    p99_ms: Some(50.0),
                })
                .collect(),
            no_backend: 0,
        }
    }

    fn run(
        detector: &mut SkewDetector,
        windows: impl IntoIterator<Item = WindowSummary>,
    ) -> Vec<AlertEvent> {
        let mut alerts = Vec::new();
        for w in windows {
            detector.observe(&w, &mut alerts);
        }
        alerts
    }

    fn learned() -> SkewDetector {
        SkewDetector::new(DetectorConfig::default(), FxHashMap::default())
    }

    #[test]
    fn binomial_p_values() {
        assert!(binomial_two_sided(50, 100, 0.5) > 0.9);
        assert!(binomial_two_sided(90, 100, 0.5) < 1e-15);
        assert!(binomial_two_sided(0, 100, 0.25) < 1e-9);
        assert!(g_test_p_value(&[25, 25, 25, 25], &[0.25; 4]) > 0.99);
        assert!(g_test_p_value(&[70, 10, 10, 10], &[0.25; 4]) < 1e-9);
    }

    #[test]
    fn sustained_skew_fires_once_then_resolves_once() {
        let mut detector = learned();
        let even = [100, 100, 100, 100];
        let skewed = [600, 100, 100, 100];
        let mut t = 0;
        let mut windows = Vec::new();
        for counts in std::iter::repeat_n(even, 60)
            .chain(std::iter::repeat_n(skewed, 20))
            .chain(std::iter::repeat_n(even, 20))
        {
            windows.push(window(t, &counts));
            t += 10;
        }
        let alerts = run(&mut detector, windows);
        assert_eq!(alerts.len(), 2, "{alerts:#?}");
        let (fired, resolved) = (&alerts[0], &alerts[1]);
        assert_eq!(
            (fired.state, fired.direction, &*fired.backend),
            (AlertState::Firing, Direction::Over, "10.0.0.0:80")
        );
        assert_eq!(fired.started_at_ms, 600_000);
        assert_eq!(fired.at_ms, 630_000, "fires after for_s = 30 s");
        assert_eq!(fired.severity, Severity::Critical);
        assert!((fired.evidence.observed_share - 6.0 / 9.0).abs() < 1e-9);
        assert!((fired.evidence.expected_share - 0.25).abs() < 1e-9);
        assert_eq!(resolved.state, AlertState::Resolved);
        assert_eq!(resolved.at_ms, 830_000);
        assert!(detector.firing().is_empty());
    }

    #[test]
    fn short_blips_and_low_volume_do_not_fire() {
        let mut detector = learned();
        let mut windows: Vec<_> = (0..40).map(|i| window(i * 10, &[100, 100, 100, 100])).collect();
        windows.push(window(400, &[400, 100, 100, 100])); // one window only
        windows.push(window(410, &[100, 100, 100, 100]));
        windows.extend((42..60).map(|i| window(i * 10, &[40, 10, 10, 10]))); // 70 requests: too few
        assert!(run(&mut detector, windows).is_empty());
    }

    #[test]
    fn configured_weights_are_normal_and_equal_split_is_not() {
        let weights: BTreeMap<String, f64> = [
            ("10.0.0.0:80", 3.0),
            ("10.0.0.1:80", 1.0),
            ("10.0.0.2:80", 1.0),
            ("10.0.0.3:80", 1.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let weights: FxHashMap<String, _> = [("api".to_string(), weights)].into_iter().collect();
        let mut detector = SkewDetector::new(DetectorConfig::default(), weights.clone());
        assert!(
            run(&mut detector, (0..20).map(|i| window(i * 10, &[300, 100, 100, 100]))).is_empty()
        );
        let mut detector = SkewDetector::new(DetectorConfig::default(), weights);
        let alerts = run(&mut detector, (0..20).map(|i| window(i * 10, &[150, 150, 150, 150])));
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            (alerts[0].direction, alerts[0].evidence.expected_from),
            (Direction::Under, ExpectedFrom::Weights)
        );
    }

    #[test]
    fn starved_backend_fires_under() {
        let mut detector = learned();
        let windows = (0..40)
            .map(|i| window(i * 10, &[100, 100, 100, 100]))
            .chain((40..50).map(|i| window(i * 10, &[133, 133, 134, 0])));
        let alerts = run(&mut detector, windows);
        assert_eq!(alerts.len(), 1);
        assert_eq!((alerts[0].direction, &*alerts[0].backend), (Direction::Under, "10.0.0.3:80"));
        // It took nothing at all: it dropped out of the pool.
        assert_eq!(alerts[0].kind, AlertKind::Drop);
        assert_eq!(alerts[0].fingerprint(), "skewtail/api/10.0.0.3:80/drop/under");
        assert!(alerts[0].summary.contains("has dropped out of pool api"), "{}", alerts[0].summary);
    }

    /// Windows of four equal backends where backend 2 has `errors` 5xx and a p99 of `p99_ms`
    /// from `from_s` to `to_s`.
    fn peers_windows(errors: u64, p99_ms: f64, from_s: i64, to_s: i64) -> Vec<WindowSummary> {
        (0..60)
            .map(|i| {
                let mut w = window(i * 10, &[100, 100, 100, 100]);
                if (from_s..to_s).contains(&(i * 10)) {
                    w.backends[2].errors = errors;
                    w.backends[2].p99_ms = Some(p99_ms);
                }
                w
            })
            .collect()
    }

    #[test]
    fn a_backend_failing_a_fifth_of_its_requests_fires_errors_once_then_resolves() {
        let alerts = run(&mut learned(), peers_windows(20, 50.0, 100, 300));
        let kinds: Vec<_> =
            alerts.iter().map(|a| (a.state, a.kind, &*a.backend, a.at_ms / 1000)).collect();
        assert_eq!(
            kinds,
            [
                (AlertState::Firing, AlertKind::Errors, "10.0.0.2:80", 130),
                (AlertState::Resolved, AlertKind::Errors, "10.0.0.2:80", 330),
            ]
        );
        let fired = &alerts[0];
        assert!(fired.evidence.errors_p_value.is_some_and(|p| p < 1e-6));
        assert_eq!(fired.fingerprint(), "skewtail/api/10.0.0.2:80/errors/over");
        assert!(
            fired.summary.starts_with(
                "10.0.0.2:80 is failing 20.0% of its requests in pool api against 0.0% on its peers"
            ),
            "{}",
            fired.summary
        );
    }

    #[test]
    fn a_backend_removed_on_purpose_is_forgotten_and_one_added_is_welcome() {
        let mut detector = learned();
        // 5 minutes of warm-up with four, then one is removed for good at 600 s, and a new one
        // joins at 3000 s and takes its fair share.
        let windows = (0..400).map(|i| {
            let t = i * 10;
            if t < 600 {
                window(t, &[100, 100, 100, 100])
            } else if t < 3000 {
                window(t, &[133, 133, 134, 0])
            } else {
                let mut w = window(t, &[100, 100, 100, 0, 100]);
                w.backends.remove(3);
                w
            }
        });
        let alerts = run(&mut detector, windows);
        let seen: Vec<_> =
            alerts.iter().map(|a| (a.state, a.kind, &*a.backend, a.at_ms / 1000)).collect();
        assert_eq!(
            seen,
            [
                (AlertState::Firing, AlertKind::Drop, "10.0.0.3:80", 630),
                (AlertState::Resolved, AlertKind::Drop, "10.0.0.3:80", 2400),
            ]
        );
        assert!(
            alerts[1].summary.contains("treated as removed on purpose"),
            "{}",
            alerts[1].summary
        );
        assert!(detector.firing().is_empty());
    }

    #[test]
    fn a_pair_pages_once() {
        for (skewed, want) in [
            ([300, 100], (AlertKind::Skew, Direction::Over, "10.0.0.0:80")),
            ([100, 300], (AlertKind::Skew, Direction::Over, "10.0.0.1:80")),
            ([0, 400], (AlertKind::Drop, Direction::Under, "10.0.0.0:80")),
        ] {
            let windows = (0..60).map(|i| {
                window(i * 10, if (400..500).contains(&(i * 10)) { &skewed } else { &[200, 200] })
            });
            let alerts = run(&mut learned(), windows);
            let firing: Vec<_> = alerts
                .iter()
                .filter(|a| a.state == AlertState::Firing)
                .map(|a| (a.kind, a.direction, &*a.backend))
                .collect();
            assert_eq!(firing, [want], "{skewed:?}");
        }
    }

    #[test]
    fn an_even_flash_crowd_is_a_spike_not_a_skew() {
        let mut detector = learned();
        let windows = (0..90).map(|i| {
            let per_backend = if (400..600).contains(&(i * 10)) { 300 } else { 100 };
            window(i * 10, &[per_backend; 4])
        });
        let alerts = run(&mut detector, windows);
        let kinds: Vec<_> =
            alerts.iter().map(|a| (a.state, a.kind, &*a.backend, a.at_ms / 1000)).collect();
        assert_eq!(
            kinds,
            [
                (AlertState::Firing, AlertKind::Spike, WHOLE_POOL, 430),
                (AlertState::Resolved, AlertKind::Spike, WHOLE_POOL, 630),
            ]
        );
        assert_eq!(alerts[0].evidence.usual_pool_requests, Some(400.0));
        assert!(alerts[0].summary.contains("3.0x its usual traffic"), "{}", alerts[0].summary);
        assert!(detector.firing().is_empty());
    }

    #[test]
    fn a_slow_backend_with_an_unchanged_share_fires_latency() {
        let alerts = run(&mut learned(), peers_windows(0, 800.0, 100, 300));
        assert_eq!(alerts.len(), 2, "{alerts:#?}");
        assert_eq!((alerts[0].kind, alerts[0].state), (AlertKind::Latency, AlertState::Firing));
        assert_eq!(alerts[1].state, AlertState::Resolved);
        assert!(alerts[0].evidence.latency_robust_z.is_some_and(|z| z > 6.0));
        assert!(
            alerts[0].summary.contains("p99 800 ms against 50 ms on its peers"),
            "{}",
            alerts[0].summary
        );
        // A skewed backend that is also slow and failing gets one page, the skew one.
        let mut detector = learned();
        let windows = (0..60).map(|i| {
            let mut w = if (300..500).contains(&(i * 10)) {
                window(i * 10, &[60, 60, 220, 60])
            } else {
                window(i * 10, &[100, 100, 100, 100])
            };
            if (300..500).contains(&(i * 10)) {
                w.backends[2].errors = 40;
                w.backends[2].p99_ms = Some(900.0);
            }
            w
        });
        let alerts = run(&mut detector, windows);
        let kinds: Vec<_> = alerts.iter().map(|a| (a.state, a.kind)).collect();
        assert_eq!(
            kinds,
            [(AlertState::Firing, AlertKind::Skew), (AlertState::Resolved, AlertKind::Skew)]
        );
        assert!(
            alerts[0].summary.contains("its 5xx rate is 18.2% (peers 0.0%)"),
            "{}",
            alerts[0].summary
        );
    }

    #[test]
    fn a_gap_restarts_persistence() {
        let mut detector = learned();
        let mut windows: Vec<_> = (0..40).map(|i| window(i * 10, &[100, 100, 100, 100])).collect();
        windows.push(window(400, &[400, 100, 100, 100]));
        windows.push(window(410, &[400, 100, 100, 100]));
        windows.push(window(1000, &[400, 100, 100, 100])); // after a gap
        assert!(run(&mut detector, windows).is_empty());
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(40), "40s");
        assert_eq!(fmt_duration(1500), "25m");
        assert_eq!(fmt_duration(1510), "25m10s");
        assert_eq!(fmt_duration(3720), "1h02m");
    }
}
