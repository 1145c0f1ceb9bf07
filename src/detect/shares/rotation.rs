//! A backend's place in the rotation: still ramping up after it joined, collapsed in a
//! window, and the starting weight of one that serves for the first time.

use crate::detect::stats::{lower, ratio};
use crate::detect::{DetectorConfig, PoolState};
use crate::window::WindowSummary;

/// Whether a backend is still within its slow-start grace: new to the pool after its first
/// minute (or configured and not yet seen while the balancer's slow start may still hold it
/// back), and not yet past the grace.
pub(super) fn is_ramping(
    first_seen_ms: Option<i64>,
    pool_start_ms: i64,
    now_ms: i64,
    slow_start_s: Option<u32>,
    config: &DetectorConfig,
) -> bool {
    // Backends seen in a pool's first minute were there before skewtail looked.
    let incumbent_ms = i64::from(config.for_s.max(30)) * 2000;
    let grace_ms = grace_ms(slow_start_s, config);
    match first_seen_ms {
        Some(first) => first - pool_start_ms > incumbent_ms && now_ms - first < grace_ms,
        // Never seen: only a known slow start excuses it; otherwise it is down.
        None => slow_start_s.is_some_and(|_| now_ms - pool_start_ms < grace_ms),
    }
}

/// How long a newcomer may take less than its share: the balancer's own ramp plus the time it
/// takes to judge, or `new_backend_grace_s`, ms.
pub(super) fn grace_ms(slow_start_s: Option<u32>, config: &DetectorConfig) -> i64 {
    match slow_start_s {
        Some(s) => i64::from(s) * 1000 + i64::from(config.for_s) * 1000,
        None => i64::from(config.new_backend_grace_s) * 1000,
    }
}

/// The last stretch of a newcomer's grace over which its settled share is measured, ms.
pub(super) const SETTLE_MS: i64 = 120_000;

/// A newcomer expected to take fewer requests than this over [`SETTLE_MS`] is not watched as a
/// possible canary or recorded in a scale-out: its share says too little (pods churning by the
/// thousand each serve a few).
pub(super) const MIN_SETTLED_REQUESTS: f64 = 40.0;

/// A backend has left rotation in a window when it takes at most this fraction of its share.
pub(super) const DEPARTED_RATIO: f64 = 0.25;

/// Whether a backend's share collapsed in this window alone: to a small fraction of expected,
/// and significantly so (a departure from rotation, for flapping).
pub(super) fn collapsed_in_window(
    count: u64,
    n: u64,
    expected: f64,
    scale: f64,
    among: &Among,
    config: &DetectorConfig,
) -> bool {
    let share = ratio(count, n);
    if share > expected * DEPARTED_RATIO {
        return false;
    }
    // Most backends of a large pool stop here, before the exact tail.
    if !among.nothing_is_remarkable(n, expected, scale) {
        return false;
    }
    #[allow(clippy::cast_precision_loss)]
    let adjusted = lower(count, n, expected, scale) * among.n_tested as f64;
    adjusted < config.alpha
}

/// How many backends a window's per-backend tests are corrected for.
pub(super) struct Among {
    pub(super) n_tested: usize,
    /// ln(N/alpha), computed once per window.
    pub(super) zero_threshold: f64,
}

impl Among {
    #[allow(clippy::cast_precision_loss)]
    pub(super) fn new(n_tested: usize, config: &DetectorConfig) -> Self {
        Among { n_tested, zero_threshold: (n_tested as f64 / config.alpha).ln() }
    }

    /// Whether a backend expected to take `expected` of `n` requests (with dispersion
    /// `scale`) taking none of them is significant: P(0) = (1-q)^(n/s) < alpha/N needs n·q/s
    /// above ln(N/alpha). A backend that expected only a few requests may well get none.
    pub(super) fn nothing_is_remarkable(&self, n: u64, expected: f64, scale: f64) -> bool {
        #[allow(clippy::cast_precision_loss)]
        let expected_count = n as f64 * expected / scale.max(1.0);
        expected_count >= self.zero_threshold
    }
}

/// Gives the backends of a learned pool that serve for the first time their starting weight.
pub(super) fn welcome_newcomers(
    pool: &mut PoolState,
    window: &WindowSummary,
    present: &[(usize, usize)],
) {
    let newcomers: Vec<usize> = present
        .iter()
        .map(|&(slot, _)| slot)
        .filter(|&slot| pool.slots[slot].as_ref().is_some_and(|b| b.shares.baseline.is_none()))
        .collect();
    if newcomers.is_empty() {
        return;
    }
    let weight = pool.shares.baseline.welcome(newcomers.len(), window.total_requests());
    for slot in newcomers {
        if let Some(backend) = pool.backend_mut(slot) {
            backend.shares.baseline = Some(weight);
        }
    }
}
