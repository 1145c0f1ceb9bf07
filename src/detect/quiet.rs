//! Quiet pools: when a window holds too few requests to judge a backend's errors (at night a
//! pool may see 0.3 requests per second, three in a window), the evidence is accumulated over
//! the windows before it instead of given up: a backend is judged on its latest
//! `quiet_min_requests` requests (at most `quiet_span_s` back), against its peers over the
//! same windows. The volume guard stays: it takes `quiet_min_errors` failures, so one failure
//! at night is not a page.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::DetectorConfig;
use crate::window::WindowSummary;

/// Pools with more backends than this in a window are never quiet enough to need it (and
/// would make accumulating per backend costly).
const MAX_QUIET_BACKENDS: usize = 256;

/// One window's counts: the pool's, and each backend's (by slot, sorted).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct QuietWindow {
    requests: u64,
    errors: u64,
    backends: Vec<(usize, u64, u64)>,
}

/// The last windows of a quiet pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct QuietErrors {
    windows: VecDeque<QuietWindow>,
}

/// A backend's latest requests and errors, and its peers' over the same windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Accumulated {
    pub(super) requests: u64,
    pub(super) errors: u64,
    pub(super) peer_requests: u64,
    pub(super) peer_errors: u64,
    /// How many windows back they reach.
    pub(super) windows: usize,
}

impl QuietErrors {
    /// Records `window` (`present` maps its backends by position to slots) when the pool is
    /// quiet; forgets everything when it is busy, where windows suffice.
    pub(super) fn record(
        &mut self,
        window: &WindowSummary,
        present: &[(usize, usize)],
        config: &DetectorConfig,
    ) {
        let span = (config.quiet_span_s / config.window_s.max(1)).max(1) as usize;
        let busy = present.len() > MAX_QUIET_BACKENDS
            || present
                .iter()
                .all(|&(_, p)| window.backends[p].requests >= config.errors_min_requests);
        if busy {
            self.windows.clear();
            return;
        }
        let mut backends: Vec<(usize, u64, u64)> = present
            .iter()
            .map(|&(slot, p)| (slot, window.backends[p].requests, window.backends[p].errors))
            .collect();
        backends.sort_unstable_by_key(|b| b.0);
        let (requests, errors) =
            window.backends.iter().fold((0, 0), |(r, e), b| (r + b.requests, e + b.errors));
        self.windows.push_back(QuietWindow { requests, errors, backends });
        while self.windows.len() > span {
            self.windows.pop_front();
        }
    }

    /// `slot`'s latest `quiet_min_requests` (or all it has within the span), newest window
    /// first, with its peers' counts over the same windows; `None` when the pool is busy.
    pub(super) fn latest(&self, slot: usize, config: &DetectorConfig) -> Option<Accumulated> {
        let mut total =
            Accumulated { requests: 0, errors: 0, peer_requests: 0, peer_errors: 0, windows: 0 };
        for window in self.windows.iter().rev() {
            let (requests, errors) = window
                .backends
                .binary_search_by_key(&slot, |b| b.0)
                .map_or((0, 0), |i| (window.backends[i].1, window.backends[i].2));
            total.requests += requests;
            total.errors += errors;
            total.peer_requests += window.requests - requests;
            total.peer_errors += window.errors - errors;
            total.windows += 1;
            if total.requests >= config.quiet_min_requests {
                break;
            }
        }
        (total.windows > 0).then_some(total)
    }

    /// A slot is forgotten (its number may be reused).
    pub(super) fn forget(&mut self, slot: usize) {
        for window in &mut self.windows {
            window.backends.retain(|b| b.0 != slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{BackendSummary, LatencySketch};

    fn window(counts: &[(u64, u64)]) -> WindowSummary {
        WindowSummary {
            pool: "api".into(),
            start_ms: 0,
            end_ms: 10_000,
            backends: counts
                .iter()
                .enumerate()
                .map(|(i, &(requests, errors))| BackendSummary {
                    backend: format!("b{i}").into(),
                    id: 0,
                    requests,
                    errors,
                    retried: 0,
                    failed_attempts: 0,
                    p50_ms: None,
                    p99_ms: None,
                    latency: LatencySketch::default(),
                })
                .collect(),
            no_backend: 0,
        }
    }

    #[test]
    fn the_latest_requests_are_accumulated_over_quiet_windows_only() {
        let config = DetectorConfig::default();
        let mut quiet = QuietErrors::default();
        let present = [(0, 0), (1, 1)];
        for _ in 0..8 {
            quiet.record(&window(&[(2, 2), (3, 0)]), &present, &config);
        }
        let latest = quiet.latest(0, &config).unwrap();
        // 10 requests take five windows of two.
        assert_eq!(
            latest,
            Accumulated { requests: 10, errors: 10, peer_requests: 15, peer_errors: 0, windows: 5 }
        );
        // A busy window: windows suffice again, and nothing is kept.
        quiet.record(&window(&[(50, 0), (50, 0)]), &present, &config);
        assert_eq!(quiet.latest(0, &config), None);
    }
}
