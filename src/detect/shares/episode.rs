//! One backend's share alert: pending while the condition builds up, firing once it has held
//! for `for_s`, resolved once the backend is back (to its expected share, or to where it was
//! before the incident began) for `resolve_for_s`, or, for a flapping backend, once it has
//! stayed in rotation for `flap_stable_s`.

use serde::{Deserialize, Serialize};

use super::super::flapping::{FlapHistory, FlapRules};
use super::super::tracker::Hold;
use super::super::{AlertKind, AlertState, DetectorConfig, Direction, Severity};
use super::judge::Judgement;
use crate::window::WindowSummary;

/// A condition that has begun but not yet held for `for_s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Pending {
    pub(super) direction: Direction,
    pub(super) since_ms: i64,
    /// The expected share when it began: what "back to normal" means for it.
    pub(super) anchor: f64,
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
}

impl ShareEpisode {
    /// Steps the alert by one window; returns a state change.
    pub(super) fn step(&mut self, step: &Step<'_>) -> Option<(AlertState, Firing)> {
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
                };
                self.firing = Some(firing);
                Some((AlertState::Firing, firing))
            }
            (None, Some(direction)) => {
                let pending = match self.pending {
                    Some(p) if p.direction == direction => p,
                    _ => Pending { direction, since_ms: window.start_ms, anchor: verdict.expected },
                };
                self.pending = Some(pending);
                if !step.span_full || window.end_ms - pending.since_ms < step.hold.fire_ms {
                    return None;
                }
                self.pending = None;
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
                };
                self.firing = Some(firing);
                Some((AlertState::Firing, firing))
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
                let stable = !firing.flapping || self.flaps.stable(window.end_ms, step.rules);
                if !(clear && stable) {
                    firing.clear_since_ms = None;
                    return None;
                }
                let clear_since = *firing.clear_since_ms.get_or_insert(window.start_ms);
                // A flapping backend has already proven itself stable for longer.
                if firing.flapping || window.end_ms - clear_since >= step.hold.resolve_ms {
                    let resolved = *firing;
                    self.firing = None;
                    Some((AlertState::Resolved, resolved))
                } else {
                    None
                }
            }
        }
    }
}
