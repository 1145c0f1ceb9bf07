//! Shares: is each backend taking its expected share of the pool's traffic?
//!
//! **Expected shares** come from configured weights, or from a baseline learned from the pool
//! itself (`baseline.rs`), started from equal shares and learned only from windows that look
//! normal, so an incident that starts during the warm-up is caught against what the pool did
//! before it, and never becomes normal. While the baseline is young, its own uncertainty widens
//! the test (a two-sample test of the recent span against the history before it).
//!
//! **The test** (`judge.rs`) is over the last `for_s` of windows at once: each backend's count
//! against its expected share, with an exact binomial tail scaled by the pool's dispersion
//! (quasi-binomial; see `dispersion.rs`), Bonferroni over the backends, with effect floors and
//! attribution (one drowning server gives one page). A condition must also hold in each
//! window on its own before it fires (`episode.rs`).
//!
//! **Resolving** needs the backend back within `resolve_ratio` of its expected share, or of the
//! share it had before the incident began (whatever the baseline learned meanwhile), for
//! `resolve_for_s`.
//!
//! Also here, because they are all about the expected split: `drop` (a backend taking nothing,
//! configured ones included whether or not they were ever seen), the slow-start grace of new
//! backends, flapping, and `unexpected` (`unexpected.rs`).
//!
//! This file is the pass over one window's tested backends; `span.rs` gathers what that pass
//! rests on (the tested backends, their expected shares, the dispersion) and what is learned
//! after a quiet window; `rotation.rs` says whether a backend is ramping up or collapsed.
//!
//! **Cost.** A window looks only at the backends that served in the span, those with
//! something going on, and those heavy enough that serving nothing would be remarkable; the
//! rest of a pool of 100,000 is an aggregate. A pass over every backend happens once a minute
//! ([`maintain`]).

mod adopt;
mod baseline;
mod departures;
mod episode;
mod judge;
mod pinning;
mod rotation;
mod span;
mod unexpected;

use std::collections::VecDeque;

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::changes;
use super::dispersion::Noise;
use super::flapping::FlapRules;
use super::health::PoolLatency;
use super::peers;
use super::stats::{SharedTotal, half_life_alpha, normal_quantile, ratio};
use super::tracker::Hold;
use super::{AlertKind, AlertState, DetectorConfig, Direction, Finding, PoolState, Resolution};
use crate::window::WindowSummary;
use baseline::Baseline;
use episode::{Away, Firing, Outcome, ShareEpisode, Step};
use judge::{Judgement, Tested, judge};
use rotation::{
    Among, DEPARTED_RATIO, MIN_SETTLED_REQUESTS, SETTLE_MS, collapsed_in_window, grace_ms,
    is_ramping, welcome_newcomers,
};
pub(super) use span::expected_shares;
use span::{PoolJudgement, expected_total, learn, pool_judgement, share_evidence};

/// A pool's share statistics.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct PoolShares {
    /// The learned baseline (pools without weights).
    baseline: Baseline,
    /// The span's windows: (slot, requests) of each backend that served, oldest first.
    span: VecDeque<Vec<(usize, u64)>>,
    /// Each backend's level and the pool's dispersion around them.
    noise: Noise,
    /// Backends with something going on (pending, firing, flapping, named as a typo).
    active: FxHashSet<usize>,
    /// Backends whose expected share is large enough that serving nothing in a span would
    /// be remarkable (found once a minute, with a margin).
    heavy: Vec<usize>,
    /// Whether a backend is taking too much (pending or firing) as of the last judged window.
    pub(super) any_over: bool,
    /// The split was learned as the pool's design (uneven from the start).
    #[serde(default)]
    adopted_split: bool,
    /// Newcomers that get only a trickle after a scale-up.
    #[serde(default)]
    pinning: pinning::Pinning,
    /// Backends whose learned share was taken as it was, uneven (a canary, a pool uneven by
    /// design): kept here, not per backend, as few have one.
    #[serde(default)]
    adopted: FxHashSet<usize>,
    /// Per slot, the last window (by `stamp`) that listed it for testing: lists each tested
    /// backend once without sorting or hashing.
    #[serde(skip)]
    listed: Vec<u32>,
    #[serde(skip)]
    stamp: u32,
}

impl PoolShares {
    /// A gap in the log: the span starts again.
    pub(super) fn interrupt(&mut self) {
        self.span.clear();
    }

    /// New weights: what was pending was judged against the old ones.
    pub(super) fn interrupt_pending(&mut self, slots: &mut [Option<super::BackendState>]) {
        for backend in slots.iter_mut().flatten() {
            if let Some(episode) = &mut backend.shares.episode {
                episode.pending = None;
            }
        }
        self.pinning = pinning::Pinning::default();
    }

    /// Backends the learned baseline knows.
    pub(super) fn baseline_known(&self) -> usize {
        self.baseline.known
    }

    /// When the pool's pinning alert began, if it is firing.
    pub(super) fn pinning_since(&self) -> Option<i64> {
        self.pinning.firing_since()
    }
}

/// One backend's share statistics: kept for every backend, so kept small.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct BackendShares {
    /// Learned weight (learned pools; a share is a weight over the baseline's total); `None`
    /// until the backend is first seen.
    baseline: Option<f64>,
    /// Requests in the span.
    span_requests: u64,
    /// What is going on with it, when anything is: most backends of a large pool have
    /// nothing pending, firing or flapping, and carry no more than the two fields above.
    episode: Option<Box<ShareEpisode>>,
}

impl BackendShares {
    /// The firing skew or drop: kind, direction, since.
    pub(super) fn firing(&self) -> Option<(super::AlertKind, Direction, i64)> {
        self.episode.as_ref()?.firing.map(|f| (f.kind, f.direction, f.since_ms))
    }

    /// Removes the firing alert (the backend is being forgotten).
    pub(super) fn take_firing(&mut self) -> Option<(super::AlertKind, Direction, i64)> {
        self.episode.as_mut()?.firing.take().map(|f| (f.kind, f.direction, f.since_ms))
    }

    /// Whether an "over" alert is pending or firing (its errors and latency are its own).
    pub(super) fn is_over(&self) -> bool {
        self.episode.as_ref().is_some_and(|e| {
            e.firing.is_some_and(|f| f.direction == Direction::Over)
                || e.pending.is_some_and(|p| p.direction == Direction::Over)
        })
    }

    /// A gap in the log: pending conditions and the span start again.
    pub(super) fn interrupt(&mut self) {
        if let Some(episode) = &mut self.episode {
            episode.pending = None;
        }
        self.span_requests = 0;
    }

    fn closest_configured(&self) -> Option<&(String, usize)> {
        self.episode.as_ref()?.closest_configured.as_ref()
    }

    /// Lets go of the episode once nothing is going on; returns whether one is left.
    fn tidy(&mut self) -> bool {
        if self.episode.as_ref().is_some_and(|e| {
            e.pending.is_none()
                && e.firing.is_none()
                && e.flaps.is_empty()
                && e.closest_configured.is_none()
                && e.away.is_none()
                && e.settle.is_none()
        }) {
            self.episode = None;
        }
        self.episode.is_some()
    }
}

/// A backend is forgotten: its slot leaves the span, the baseline and the noise.
pub(super) fn forget(pool: &mut PoolState, slot: usize, shares: &BackendShares) {
    let pool_shares = &mut pool.shares;
    for window in &mut pool_shares.span {
        window.retain(|(s, _)| *s != slot);
    }
    pool_shares.noise.forget(slot);
    pool_shares.active.remove(&slot);
    pool_shares.heavy.retain(|&s| s != slot);
    pool_shares.pinning.slots.retain(|&s| s != slot);
    pool_shares.adopted.remove(&slot);
    if let Some(weight) = shares.baseline {
        pool_shares.baseline.forget(weight);
    }
}

/// The once-a-minute pass over every backend: finds the heavy ones, and rescales the
/// baseline's weights before they grow too large.
pub(super) fn maintain(pool: &mut PoolState, config: &DetectorConfig) {
    let rescale = pool.shares.baseline.total.total > SharedTotal::RESCALE_ABOVE;
    if rescale {
        let scale = pool.shares.baseline.total.total;
        for backend in pool.slots.iter_mut().flatten() {
            if let Some(weight) = &mut backend.shares.baseline {
                *weight /= scale;
            }
        }
        pool.shares.baseline.total.total = 1.0;
    }
    // Heavy: serving nothing over a span of the usual volume could be significant. The
    // threshold takes a quarter of the last span's requests, as a margin for surges until the
    // next pass.
    let span_requests: u64 = pool.shares.span.iter().flatten().map(|(_, n)| n).sum();
    let z = (normal_quantile(1.0 - config.alpha / 2.0) - 1.0).max(1.0);
    // Before any span, every backend is heavy; and any backend with 1% of the pool is (at
    // most a hundred, and a young pool's cautious dispersion must not hide them).
    #[allow(clippy::cast_precision_loss)]
    let min_share = if span_requests == 0 {
        0.0
    } else {
        (z * z * pool.shares.noise.span.upper() / (span_requests as f64 / 4.0)).min(0.01)
    };
    let (total, weighted) = expected_total(pool);
    pool.shares.heavy = pool
        .backends()
        .filter_map(|(slot, backend)| {
            let raw = if weighted { backend.weight? } else { backend.shares.baseline? };
            (total > 0.0 && raw / total >= min_share).then_some(slot)
        })
        .collect();
}

/// What the detector gathered about a window for the share judge.
pub(super) struct Seen<'a> {
    /// The window.
    pub(super) window: &'a WindowSummary,
    /// The window's backends that served, by position, to their slots.
    pub(super) present: &'a [(usize, usize)],
    /// Backends whose attempts failed in the window: (slot, failed attempts), by slot.
    pub(super) tried: &'a [(usize, u64)],
    /// The pool's latencies in the window.
    pub(super) latency: &'a PoolLatency,
}

impl Seen<'_> {
    /// The failed attempts of `slot` in the window.
    fn failed_attempts(&self, slot: usize) -> u64 {
        self.tried.binary_search_by_key(&slot, |t| t.0).map_or(0, |i| self.tried[i].1)
    }
}

/// What the pass over the tested backends found that the pool acts on afterwards.
#[derive(Default)]
struct Pass {
    /// Indexes of backends out of rotation, not yet paged.
    away: Vec<usize>,
    /// Backends back in rotation within the grace: (name, left, back, tried).
    returned: Vec<(Arc<str>, i64, i64, bool)>,
    /// A backend left rotation in this window.
    left: bool,
    /// The first backend uneven since before the pool was seen normal, to learn the split by.
    uneven: Option<usize>,
    /// A firing raised at cold start resolved as the pool's design: learn the split.
    learn_split: bool,
    /// Newcomers whose grace ended in this window, and whether they suffer.
    settled: Vec<(usize, bool)>,
    /// Backends learned at an uneven share that fired: perhaps evened out.
    evened: Vec<(usize, Firing)>,
    /// Backends within their grace.
    settling: Vec<bool>,
}

/// Judges the window's split (skew, drop, flapping, unexpected, departures, newcomers,
/// pinning) and learns from it when the pool looks normal.
#[allow(clippy::too_many_lines)] // one pass over the pool, in the order the module doc gives
pub(super) fn observe(
    pool: &mut PoolState,
    seen: &Seen<'_>,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    let (window, present) = (seen.window, seen.present);
    let span_windows = (config.for_s / config.window_s.max(1)).max(1) as usize;
    let now: Vec<(usize, u64)> = present
        .iter()
        .map(|&(slot, position)| (slot, window.backends[position].requests))
        .collect();
    for &(slot, requests) in &now {
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
        unexpected::observe(pool, window, present, config, findings);
    } else {
        welcome_newcomers(pool, window, present);
    }
    let Some(judgement) = pool_judgement(pool, window, present, config) else { return };
    pool.coverage.judged_windows += 1;
    let tested = Tested {
        counts: &judgement.span_counts,
        expected: &judgement.expected,
        rest: judgement.rest,
        n_backends: judgement.n_backends,
    };
    let judgements = judge(tested, judgement.dispersion * judgement.span_inflation, config);

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
    // A learned pool never yet seen normal for a full span: what is uneven now was uneven
    // from the start.
    #[allow(clippy::cast_possible_truncation)]
    let pool_unlearned = !pool.weighted
        && !pool.shares.adopted_split
        && (pool.shares.baseline.learned_windows as usize) < span_windows;
    let window_ms = i64::from(config.window_s) * 1000;
    let weighted = pool.weighted;
    let positions = {
        let mut positions = present.to_vec();
        positions.sort_unstable_by_key(|p| p.0);
        positions
    };
    let position_of =
        |slot: usize| positions.binary_search_by_key(&slot, |p| p.0).ok().map(|i| positions[i].1);
    // A backend failing or slow against its peers: the pool does not look normal.
    let mut quiet = !pool.troubled;
    let mut any_over = false;
    #[allow(clippy::cast_precision_loss)]
    let even = 1.0 / judgement.n_backends.max(1) as f64;
    let mut pass = Pass { settling: vec![false; judgement.slots.len()], ..Pass::default() };
    let among = Among::new(judgement.n_backends, config);
    #[allow(clippy::cast_precision_loss)]
    let settle_windows = SETTLE_MS as f64 / window_ms.max(1) as f64;
    for (index, &slot) in judgement.slots.iter().enumerate() {
        let verdict = judgements[index];
        let slow_start_s = pool.slow_start_s;
        let pinned = pool.shares.pinning.holds(slot);
        let adopted = pool.shares.adopted.contains(&slot);
        let Some(backend) = pool.slots.get_mut(slot).and_then(Option::as_mut) else { continue };
        let ramping_now =
            is_ramping(backend.first_seen_ms, first_start, window.end_ms, slow_start_s, config);
        let ramped_before = !ramping_now
            && is_ramping(
                backend.first_seen_ms,
                first_start,
                window.end_ms - window_ms,
                slow_start_s,
                config,
            );
        pass.settling[index] = ramping_now;
        // A newcomer expected to take enough requests for its share to mean something (not
        // one of thousands of short-lived pods each serving a few): watched as it settles.
        #[allow(clippy::cast_precision_loss)]
        let watched = !weighted
            && judgement.window_requests as f64 * judgement.expected[index] * settle_windows
                >= MIN_SETTLED_REQUESTS;
        // The last stretch of a newcomer's grace: its share there says whether it settled at
        // its share or is a canary.
        let settling_now = ramping_now
            && watched
            && backend.first_seen_ms.is_some_and(|first| {
                window.end_ms - first >= grace_ms(slow_start_s, config) - SETTLE_MS
            });
        if ramped_before && !ramping_now && watched && backend.first_seen_ms.is_some() && !pinned {
            let harmed = position_of(slot)
                .is_some_and(|p| peers::is_harmed(window, p, Some(seen.latency), config));
            pass.settled.push((index, harmed));
        }
        let window_count = judgement.window_counts[index];
        let failed_attempts = seen.failed_attempts(slot);
        let firing_from_start =
            backend.shares.episode.as_ref().and_then(|e| e.firing).is_some_and(|f| f.from_start);
        let window_share = ratio(window_count, judgement.window_requests);
        // Before the pool was ever seen normal, a young baseline is judged cautiously; a
        // backend far above an even share that also fails or slows down is drowning, and
        // that is evidence enough (the seed incident, at cold start).
        let drowning_candidate = pool_unlearned
            && verdict.anomalous.is_none()
            && window_share >= even * config.min_ratio
            && window_share - even >= config.min_share_delta.min(even / 2.0);
        // Harm is looked at only where it decides something: a backend taking too much (at
        // cold start, or as a newcomer), or one paged at cold start.
        let harmed =
            (verdict.anomalous == Some(Direction::Over) || firing_from_start || drowning_candidate)
                && position_of(slot)
                    .is_some_and(|p| peers::is_harmed(window, p, Some(seen.latency), config));
        let verdict = if drowning_candidate && harmed { verdict.drowning() } else { verdict };
        // Persistence: the span is significant and every window since the condition began
        // leans the same way on its own. A backend the balancer is still ramping up may take
        // less than its share, and, while it answers like its peers, more (a canary).
        let mut anomalous = verdict.anomalous.filter(|d| match d {
            Direction::Over => {
                window_share >= verdict.expected * config.resolve_ratio && (!ramping_now || harmed)
            }
            Direction::Under => {
                !ramping_now && !pinned && window_share <= verdict.expected / config.resolve_ratio
            }
        });
        let collapsed = !ramping_now
            && !pinned
            && verdict.anomalous != Some(Direction::Over)
            && collapsed_in_window(
                window_count,
                rest_requests,
                (verdict.expected / rest_share).min(1.0),
                window_scale,
                &among,
                config,
            );
        // Out of rotation: next to nothing of its share in this window, or nothing at all
        // where that is remarkable (in a pair, the other one then takes everything and looks
        // like the culprit), or nothing over the span. Only a backend that served before can
        // leave.
        let departed = backend.first_seen_ms.is_some()
            && !ramping_now
            && !pinned
            && (collapsed
                || (window_count == 0
                    && among.nothing_is_remarkable(
                        judgement.window_requests,
                        verdict.expected,
                        window_scale,
                    ))
                || (verdict.anomalous == Some(Direction::Under)
                    && window_count == 0
                    && judgement.span_counts[index] == 0));
        let serving = window_share > verdict.expected * DEPARTED_RATIO;
        let shares = &mut backend.shares;
        if shares.episode.is_none()
            && anomalous.is_none()
            && !collapsed
            && !departed
            && !settling_now
        {
            continue; // Nothing going on: most backends, most windows.
        }
        let episode = shares.episode.get_or_insert_with(Box::default);
        episode.flaps.record(collapsed, window.start_ms, window.end_ms, rules);
        if settling_now {
            let settle = episode.settle.get_or_insert((0, 0));
            settle.0 += window_count;
            settle.1 += judgement.window_requests;
        }
        if departed && episode.firing.is_none() {
            let away = episode.away.get_or_insert_with(|| {
                pass.left = true;
                Away {
                    since_ms: window.start_ms,
                    expected: verdict.expected,
                    tried: false,
                    failed_attempts: 0,
                }
            });
            away.tried |= failed_attempts > 0;
            away.failed_attempts = failed_attempts;
        } else if serving && let Some(away) = episode.away.take() {
            // A window or two at nothing is noise at low volume, not a restart.
            if episode.firing.is_none() && window.start_ms - away.since_ms >= 2 * window_ms {
                pass.returned.push((
                    backend.name.clone(),
                    away.since_ms,
                    window.start_ms,
                    away.tried,
                ));
            }
        }
        if episode.away.is_some() {
            // Judged as a departure, not as a share.
            anomalous = anomalous.filter(|d| *d == Direction::Over);
            pass.away.push(index);
        }
        let step = Step {
            verdict,
            anomalous,
            ramping: ramping_now,
            window_count,
            span_count: judgement.span_counts[index],
            span_full,
            window,
            hold,
            rules,
            config,
            pool_unlearned,
            harmed,
        };
        let was_firing = episode.firing.is_some();
        let outcome = episode.step(&step);
        if episode.firing.is_some_and(|f| f.flapping) {
            episode.away = None; // Its departures are the flapping's, not a restart's.
        }
        if was_firing || anomalous.is_some() || episode.firing.is_some() || episode.away.is_some() {
            quiet = false;
        }
        let departures = u32::try_from(episode.flaps.departures()).ok();
        if shares.tidy() {
            pool.shares.active.insert(slot);
        } else {
            pool.shares.active.remove(&slot);
        }
        any_over |= shares.is_over();
        let fired = match outcome {
            None => continue,
            Some(Outcome::UnevenFromStart(_)) => {
                pass.uneven.get_or_insert(index);
                continue;
            }
            Some(Outcome::Fired(firing)) if adopted && firing.kind == AlertKind::Skew => {
                pass.evened.push((index, firing));
                continue;
            }
            Some(Outcome::Fired(firing)) => (AlertState::Firing, firing, None),
            Some(Outcome::Resolved(firing, resolution)) => {
                pass.learn_split |= resolution == Some(Resolution::Adopted);
                (AlertState::Resolved, firing, resolution)
            }
        };
        let (state, firing, resolution) = fired;
        if firing.flapping && state == AlertState::Firing {
            pool.changes.not_restarts(&backend.name);
        }
        let mut evidence =
            share_evidence(&judgement, index, &verdict, &backend.name, window, config);
        evidence.duration_s = (window.end_ms - firing.since_ms) / 1000;
        evidence.flapping = firing.flapping;
        if firing.flapping {
            evidence.departures = departures;
        }
        findings.push(Finding {
            state,
            kind: firing.kind,
            direction: firing.direction,
            backend: backend.name.clone(),
            started_at_ms: firing.since_ms,
            severity: firing.severity,
            evidence,
            resolution,
        });
    }
    pool.shares.any_over = any_over;
    if pass.left {
        pool.changes.left(window.start_ms);
    }
    for (name, left_ms, back_ms, tried) in pass.returned {
        pool.changes.returned(name, left_ms, back_ms, tried);
    }
    departures::decide(pool, &judgement, &judgements, &pass.away, window, config, findings);
    for (index, firing) in pass.evened {
        if !adopt::evened_out(pool, &judgement, index, window, config, findings) {
            push_fired(pool, &judgement, &judgements, index, firing, window, config, findings);
        } else if let Some(episode) =
            pool.slots[judgement.slots[index]].as_mut().and_then(|b| b.shares.episode.as_mut())
        {
            episode.firing = None;
        }
    }
    if let Some(index) = pass.uneven {
        adopt::uneven_from_start(pool, &judgement, &judgements, index, window, config, findings);
        quiet = false;
    } else if pass.learn_split {
        adopt::learn_split(pool, &judgement);
    }
    for (index, harmed) in pass.settled {
        adopt::newcomer_settled(pool, &judgement, index, harmed, window, config, findings);
    }
    pinning::observe(pool, &judgement, &pass.settling, window, config, findings);
    let anyone_away = !pass.away.is_empty();
    let anyone_settling = pass.settling.iter().any(|s| *s);
    changes::observe(pool, window, anyone_away, anyone_settling, config, findings);
    if quiet {
        let warmup_windows = config.warmup_s.div_ceil(config.window_s.max(1));
        let warming = pool.shares.baseline.learned_windows < warmup_windows;
        learn(pool, &judgement, present, window, &pass.settling, span_full, config);
        if !pool.weighted && warming && pool.shares.baseline.learned_windows >= warmup_windows {
            adopt::warmed_up(pool, &judgement, window, config, findings);
        }
        let decay = half_life_alpha(
            f64::from(config.baseline_half_life_s) / f64::from(config.window_s.max(1)),
        );
        pool.health.learn(seen.latency, decay);
    }
}

/// Pushes the finding of a skew that fired (for a backend learned at an uneven share that did
/// not even out).
#[allow(clippy::too_many_arguments)]
fn push_fired(
    pool: &PoolState,
    judgement: &PoolJudgement,
    verdicts: &[Judgement],
    index: usize,
    firing: Firing,
    window: &WindowSummary,
    config: &DetectorConfig,
    findings: &mut Vec<Finding>,
) {
    let Some(backend) = pool.slots[judgement.slots[index]].as_ref() else { return };
    let mut evidence =
        share_evidence(judgement, index, &verdicts[index], &backend.name, window, config);
    evidence.duration_s = (window.end_ms - firing.since_ms) / 1000;
    findings.push(Finding {
        state: AlertState::Firing,
        kind: firing.kind,
        direction: firing.direction,
        backend: backend.name.clone(),
        started_at_ms: firing.since_ms,
        severity: firing.severity,
        evidence,
        resolution: None,
    });
}
