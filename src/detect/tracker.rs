//! Persistence and hysteresis: the pending → firing → resolved life of one condition.

use serde::{Deserialize, Serialize};

use super::AlertState;

/// The outcome of one window for one condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The condition holds.
    Anomalous,
    /// Clearly back to normal (past the hysteresis threshold).
    Clear,
    /// Neither, or not enough data to say: no change.
    Unknown,
}

/// A state change of a [`Tracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transition {
    /// Fired; the condition began at this event time.
    Fired { since_ms: i64 },
    /// Resolved; the condition had begun at this event time.
    Resolved { since_ms: i64 },
}

impl Transition {
    /// The alert state it produces and when the condition began.
    pub(super) fn state(self) -> (AlertState, i64) {
        match self {
            Transition::Fired { since_ms } => (AlertState::Firing, since_ms),
            Transition::Resolved { since_ms } => (AlertState::Resolved, since_ms),
        }
    }
}

/// How long a condition must hold to fire, and how long it must be clear to resolve, ms.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hold {
    pub(super) fire_ms: i64,
    pub(super) resolve_ms: i64,
}

/// Pending → firing → resolved for one condition: fires once the condition has held for
/// `fire_ms` of consecutive windows and resolves once it has been clear for `resolve_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Tracker {
    pending_since_ms: Option<i64>,
    firing_since_ms: Option<i64>,
    clear_since_ms: Option<i64>,
}

impl Tracker {
    /// When the firing condition began, if it is firing.
    pub(super) fn firing_since(&self) -> Option<i64> {
        self.firing_since_ms
    }

    /// Whether the condition is pending or firing.
    pub(super) fn is_active(&self) -> bool {
        self.pending_since_ms.is_some() || self.firing_since_ms.is_some()
    }

    /// Forgets a pending condition (a gap in the log breaks persistence).
    pub(super) fn interrupt(&mut self) {
        self.pending_since_ms = None;
    }

    /// Feeds the verdict of the window `[start_ms, end_ms)`.
    pub(super) fn step(
        &mut self,
        verdict: Verdict,
        start_ms: i64,
        end_ms: i64,
        hold: Hold,
    ) -> Option<Transition> {
        match self.firing_since_ms {
            None => {
                if verdict != Verdict::Anomalous {
                    self.pending_since_ms = None;
                    return None;
                }
                let since = *self.pending_since_ms.get_or_insert(start_ms);
                if end_ms - since < hold.fire_ms {
                    return None;
                }
                self.pending_since_ms = None;
                self.firing_since_ms = Some(since);
                self.clear_since_ms = None;
                Some(Transition::Fired { since_ms: since })
            }
            Some(since_ms) => {
                if verdict != Verdict::Clear {
                    self.clear_since_ms = None;
                    return None;
                }
                let clear_since = *self.clear_since_ms.get_or_insert(start_ms);
                if end_ms - clear_since < hold.resolve_ms {
                    return None;
                }
                self.firing_since_ms = None;
                self.clear_since_ms = None;
                Some(Transition::Resolved { since_ms })
            }
        }
    }

    /// Fires at once, the condition having begun at `since_ms` (a judge that decided
    /// persistence itself, e.g. over a span of windows).
    pub(super) fn fire_now(&mut self, since_ms: i64) -> Transition {
        self.pending_since_ms = None;
        self.clear_since_ms = None;
        self.firing_since_ms = Some(since_ms);
        Transition::Fired { since_ms }
    }

    /// Resolves at once (the backend is gone, or the condition no longer applies).
    pub(super) fn resolve_now(&mut self) -> Option<Transition> {
        let since_ms = self.firing_since_ms.take()?;
        self.clear_since_ms = None;
        Some(Transition::Resolved { since_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_after_the_hold_and_resolves_after_the_resolve_hold() {
        let hold = Hold { fire_ms: 20_000, resolve_ms: 20_000 };
        let mut tracker = Tracker::default();
        let at = |start_s: i64| (start_s * 1000, start_s * 1000 + 10_000);
        let mut step = |verdict, start_s| {
            let (start, end) = at(start_s);
            tracker.step(verdict, start, end, hold)
        };
        assert_eq!(step(Verdict::Anomalous, 0), None);
        assert_eq!(step(Verdict::Anomalous, 10), Some(Transition::Fired { since_ms: 0 }));
        assert_eq!(step(Verdict::Clear, 20), None);
        assert_eq!(step(Verdict::Unknown, 30), None);
        assert_eq!(step(Verdict::Clear, 40), None);
        assert_eq!(step(Verdict::Clear, 50), Some(Transition::Resolved { since_ms: 0 }));
        assert_eq!(tracker.firing_since(), None);
    }
}
