//! One backend's share alert: pending while the condition builds up, firing once it has held
//! for `for_s`, resolved once the backend is back (to its expected share, or to where it was
//! before the incident began) for `resolve_for_s`, or, for a flapping backend, once it has
//! stayed in rotation for `flap_stable_s`.
//!
//! A condition that began before the pool had ever been seen normal (uneven from the start)
//! does not fire when the backend answers like its peers: the caller learns the split
//! instead. One that fired because the backend was harmed resolves once the harm has gone
//! for `resolve_for_s` (the split is then learned): whatever fires at cold start can resolve.

use serde::{Deserialize, Serialize};

use super::super::flapping::{FlapHistory, FlapRules};
use super::super::tracker::Hold;
use super::super::{AlertKind, DetectorConfig, Direction, Resolution, Severity};
use super::judge::Judgement;
use crate::window::WindowSummary;

/// A condition that has begun but not yet held for `for_s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Pending {
    pub(super) direction: Direction,
    pub(super) since_ms: i64,
    /// The expected share when it began: what "back to normal" means for it.
    pub(super) anchor: f64,
    /// It began before the pool had ever been seen normal for a full span.
    #[serde(default)]
    pub(super) from_start: bool,
}

/// A firing skew or drop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Firing {
    pub(super) kind: AlertKind,
    pub(super) direction: Direction,
    pub(super) since_ms: i64,
    pub(super) severity: Severity,
    pub(super) anchor: f64,
    pub(super) flapping: bool,
    pub(super) clear_since_ms: Option<i64>,
    /// It began before the pool had ever been seen normal: it resolves once the backend is no
    /// longer harmed, and the split is learned.
    #[serde(default)]
    pub(super) from_start: bool,
}

/// A backend out of rotation (it took next to nothing of its share), not yet judged a page or
/// a change.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Away {
    /// Start of the first window it was out, Unix ms.
    pub(super) since_ms: i64,
    /// Its expected share when it left.
    pub(super) expected: f64,
    /// Whether the balancer's attempts at it failed while it was away (it is still tried).
    pub(super) tried: bool,
    /// Failed attempts in the latest window.
    pub(super) failed_attempts: u64,
}

/// A backend's share alert and its recent departures from rotation.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct ShareEpisode {
    pub(super) pending: Option<Pending>,
    pub(super) firing: Option<Firing>,
    pub(super) flaps: FlapHistory,
    /// Weighted pools, for a backend the weights do not name: the configured backend whose
    /// name is closest, and how many edits apart.
    pub(super) closest_configured: Option<(String, usize)>,
    /// Out of rotation, and not (yet) paged for it.
    #[serde(default)]
    pub(super) away: Option<Away>,
    /// A newcomer near the end of its grace: its requests and the pool's since then.
    #[serde(default)]
    pub(super) settle: Option<(u64, u64)>,
}

/// What one backend's share alert steps on in one window.
pub(super) struct Step<'a> {
    pub(super) verdict: Judgement,
    /// The verdict's direction, if it holds in this window too (and is not a ramp's deficit).
    pub(super) anomalous: Option<Direction>,
    pub(super) ramping: bool,
    pub(super) window_count: u64,
    pub(super) span_count: u64,
    pub(super) span_full: bool,
    pub(super) window: &'a WindowSummary,
    pub(super) hold: Hold,
    pub(super) rules: FlapRules,
    pub(super) config: &'a DetectorConfig,
    /// The pool has never been seen normal for a full span (a learned pool's first minute):
    /// a condition that begins now is uneven from the start.
    pub(super) pool_unlearned: bool,
    /// The backend fails or is slow against its peers in this window (only looked at where it
    /// matters: a backend taking too much, or a firing that began at cold start).
    pub(super) harmed: bool,
}

/// What one window did to a backend's share alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Outcome {
    /// It fired.
    Fired(Firing),
    /// It resolved (for a reason other than clearing, when given).
    Resolved(Firing, Option<Resolution>),
    /// It would have fired, but the backend has been uneven since before the pool was ever
    /// seen normal and answers like its peers: learn the split instead.
    UnevenFromStart(Pending),
}

impl ShareEpisode {
    /// Steps the alert by one window; returns what changed.
    pub(super) fn step(&mut self, step: &Step<'_>) -> Option<Outcome> {
        let (verdict, window, config) = (&step.verdict, step.window, step.config);
        match (&mut self.firing, step.anomalous) {
            (None, None) => {
                self.pending = None;
                let since_ms = self.flaps.since_ms()?;
                if step.ramping
                    || !self.flaps.is_flapping(step.rules)
                    || self.flaps.stable(window.end_ms, step.rules)
                {
                    return None;
                }
                let firing = Firing {
                    kind: AlertKind::Drop,
                    direction: Direction::Under,
                    since_ms,
                    severity: Severity::Warning,
                    anchor: verdict.expected,
                    flapping: true,
                    clear_since_ms: None,
                    from_start: false,
                };
                self.firing = Some(firing);
                Some(Outcome::Fired(firing))
            }
            (None, Some(direction)) => {
                let pending = match self.pending {
                    Some(p) if p.direction == direction => p,
                    _ => Pending {
                        direction,
                        since_ms: window.start_ms,
                        anchor: verdict.expected,
                        from_start: step.pool_unlearned,
                    },
                };
                self.pending = Some(pending);
                if !step.span_full || window.end_ms - pending.since_ms < step.hold.fire_ms {
                    return None;
                }
                self.pending = None;
                // Uneven since before the pool was ever seen normal: a misconfiguration or a
                // design, and nothing says which unless the backend suffers for it.
                if pending.from_start && !(direction == Direction::Over && step.harmed) {
                    return Some(Outcome::UnevenFromStart(pending));
                }
                let severity =
                    if direction == Direction::Over && verdict.ratio >= config.critical_ratio {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    };
                // A backend that takes nothing at all has dropped out.
                let kind = if direction == Direction::Under
                    && step.window_count == 0
                    && step.span_count == 0
                {
                    AlertKind::Drop
                } else {
                    AlertKind::Skew
                };
                let firing = Firing {
                    kind,
                    direction,
                    since_ms: pending.since_ms,
                    severity,
                    anchor: pending.anchor,
                    flapping: direction == Direction::Under && self.flaps.is_flapping(step.rules),
                    clear_since_ms: None,
                    from_start: pending.from_start,
                };
                self.firing = Some(firing);
                Some(Outcome::Fired(firing))
            }
            (Some(firing), _) => {
                if firing.direction == Direction::Under && self.flaps.is_flapping(step.rules) {
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
                // Paged at cold start for the harm it did: once the harm has gone, the split
                // it was uneven by is the pool's own.
                let harm_gone = firing.from_start && !step.harmed;
                let stable = !firing.flapping || self.flaps.stable(window.end_ms, step.rules);
                if !((clear || harm_gone) && stable) {
                    firing.clear_since_ms = None;
                    return None;
                }
                let clear_since = *firing.clear_since_ms.get_or_insert(window.start_ms);
                // A flapping backend has already proven itself stable for longer.
                if firing.flapping || window.end_ms - clear_since >= step.hold.resolve_ms {
                    let resolved = *firing;
                    self.firing = None;
                    let resolution = (!clear).then_some(Resolution::Adopted);
                    Some(Outcome::Resolved(resolved, resolution))
                } else {
                    None
                }
            }
        }
    }
}
