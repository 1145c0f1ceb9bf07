//! The learned baseline of a pool without weights: what share each backend is expected to
//! take.
//!
//! It starts from equal shares (every balancer's default), weighted like one window of
//! traffic, and follows the windows that look normal: a running mean by requests for
//! `warmup_s`, then a moving average with `baseline_half_life_s`. A backend that appears later
//! starts at the average share of those already known. Shares are weights over a
//! [`SharedTotal`], so a window updates only the backends that served in it.

use serde::{Deserialize, Serialize};

use super::super::stats::SharedTotal;

/// A learned pool's baseline bookkeeping (the weights live with the backends).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Baseline {
    /// The backends' weights' total.
    pub(super) total: SharedTotal,
    /// Backends with a weight.
    pub(super) known: usize,
    /// Windows learned so far.
    pub(super) learned_windows: u32,
    /// Effective requests behind it (its own certainty).
    pub(super) reference_requests: f64,
}

impl Baseline {
    /// The weight to give each of `newcomers` backends seen for the first time, in a window
    /// with `window_requests` requests: equal shares in the pool's first window (and the
    /// prior counts like that window), the average weight of the known ones later.
    #[allow(clippy::cast_precision_loss)]
    pub(super) fn welcome(&mut self, newcomers: usize, window_requests: u64) -> f64 {
        let weight = if self.known == 0 {
            self.total = SharedTotal { total: 0.0 };
            self.reference_requests = window_requests.max(1) as f64;
            1.0 / newcomers.max(1) as f64
        } else {
            self.total.total / self.known as f64
        };
        self.known += newcomers;
        self.total.total += weight * newcomers as f64;
        weight
    }

    /// A backend with `weight` is forgotten.
    pub(super) fn forget(&mut self, weight: f64) {
        self.known = self.known.saturating_sub(1);
        self.total.total = (self.total.total - weight).max(0.0);
    }

    /// Starts learning one window of `requests`: returns what to add to each served
    /// backend's weight per unit of its share of the window. `warming` is a running mean by
    /// requests, otherwise a moving average with per-window `decay`.
    #[allow(clippy::cast_precision_loss)]
    pub(super) fn learn(&mut self, requests: u64, warming: bool, decay: f64) -> f64 {
        let n = requests as f64;
        let reference = self.reference_requests.max(1.0);
        let weight = if warming { n / (reference + n) } else { decay };
        self.reference_requests =
            if warming { reference + n } else { reference * (1.0 - decay) + n };
        self.learned_windows = self.learned_windows.saturating_add(1);
        self.total.blend(weight)
    }
}
