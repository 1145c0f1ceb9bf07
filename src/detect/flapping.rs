//! Flapping: a backend that keeps leaving and rejoining rotation (a health check that flaps).
//!
//! Each window says whether the backend's share has collapsed (far below expected,
//! significantly, in that window alone). A departure is a collapse after a window that was
//! not one. A backend with `flap_departures` departures within `flap_window_s` is flapping, and
//! stays so until it has gone `flap_stable_s` without a departure. Persistence over
//! consecutive windows cannot see this: the backend is never out for `for_s` in a row.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// One backend's recent departures from rotation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct FlapHistory {
    /// Whether the last judged window was a collapse.
    collapsed: bool,
    /// Start times of recent departures, oldest first, Unix ms.
    departures: VecDeque<i64>,
    /// End of the last collapsed window, Unix ms.
    last_collapse_end_ms: Option<i64>,
}

/// What the flapping horizon and thresholds are, in ms and counts.
#[derive(Debug, Clone, Copy)]
pub(super) struct FlapRules {
    pub(super) window_ms: i64,
    pub(super) departures: usize,
    pub(super) stable_ms: i64,
}

impl FlapHistory {
    /// Records whether the window `[start_ms, end_ms)` was a collapse.
    pub(super) fn record(&mut self, collapsed: bool, start_ms: i64, end_ms: i64, rules: FlapRules) {
        if collapsed {
            if !self.collapsed {
                self.departures.push_back(start_ms);
            }
            self.last_collapse_end_ms = Some(end_ms);
        }
        self.collapsed = collapsed;
        while self.departures.front().is_some_and(|&t| end_ms - t > rules.window_ms) {
            self.departures.pop_front();
        }
    }

    /// Whether there is nothing to remember.
    pub(super) fn is_empty(&self) -> bool {
        !self.collapsed && self.departures.is_empty()
    }

    /// Departures within the horizon.
    pub(super) fn departures(&self) -> usize {
        self.departures.len()
    }

    /// Whether the backend is flapping now.
    pub(super) fn is_flapping(&self, rules: FlapRules) -> bool {
        self.departures.len() >= rules.departures
    }

    /// When the flapping began (the oldest departure in the horizon).
    pub(super) fn since_ms(&self) -> Option<i64> {
        self.departures.front().copied()
    }

    /// Whether it has stayed in rotation for the stable period as of `now_ms`.
    pub(super) fn stable(&self, now_ms: i64, rules: FlapRules) -> bool {
        !self.collapsed
            && self.last_collapse_end_ms.is_none_or(|end| now_ms - end >= rules.stable_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: FlapRules = FlapRules { window_ms: 300_000, departures: 3, stable_ms: 180_000 };

    #[test]
    fn twenty_seconds_out_twenty_in_is_flapping_within_two_minutes() {
        let mut history = FlapHistory::default();
        let mut flapping_at = None;
        for i in 0..60i64 {
            let start = i * 10_000;
            // Out for two windows, in for two.
            let collapsed = i % 4 < 2;
            history.record(collapsed, start, start + 10_000, RULES);
            if flapping_at.is_none() && history.is_flapping(RULES) {
                flapping_at = Some(start + 10_000);
            }
        }
        assert_eq!(flapping_at, Some(90_000));
        assert!(!history.stable(600_000, RULES));
        // In rotation for good from 600 s: stable 180 s after its last collapse.
        for i in 60..90i64 {
            history.record(false, i * 10_000, i * 10_000 + 10_000, RULES);
        }
        assert!(history.stable(900_000, RULES));
    }

    #[test]
    fn one_drain_and_return_is_not_flapping() {
        let mut history = FlapHistory::default();
        for i in 0..40i64 {
            let collapsed = (10..15).contains(&i);
            history.record(collapsed, i * 10_000, i * 10_000 + 10_000, RULES);
        }
        assert_eq!(history.departures(), 1);
        assert!(!history.is_flapping(RULES));
    }
}
