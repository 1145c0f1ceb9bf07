//! How much more a pool's per-backend counts vary than a binomial model allows.
//!
//! Pools balanced by client hash, sticky cookie or at layer 4 send a client's whole keep-alive
//! batch to one backend, so their per-window counts vary like batches, not like requests: the
//! variance is about E[B²]/E[B] times the binomial one for batches of size B. That factor is
//! learned from the pool's own quiet windows as Pearson's χ²/df of the observed counts against
//! the expected ones (quasi-likelihood), decayed so that it follows the pool's clients through
//! the day. Until enough windows are in, an upper confidence bound is used instead of the
//! estimate, so a young pool is judged conservatively rather than noisily.

use serde::{Deserialize, Serialize};

use super::stats::{SharedTotal, chi_squared_quantile};

/// Degrees of freedom of the prior (a dispersion of 1, as for independent requests).
const PRIOR_DOF: f64 = 2.0;

/// One pool's learned dispersion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Dispersion {
    /// Decayed sum of Pearson χ² statistics of quiet windows.
    chi_squared: f64,
    /// Decayed sum of their (independent) degrees of freedom.
    dof: f64,
}

impl Dispersion {
    /// Adds one quiet window's Pearson χ² with `dof` degrees of freedom. `overlap` is how many
    /// consecutive statistics share each window (the span length), so overlapping spans are
    /// not counted as independent evidence. `decay` is the per-window forgetting factor.
    pub(super) fn add(&mut self, chi_squared: f64, dof: f64, overlap: f64, decay: f64) {
        if !(chi_squared.is_finite() && dof > 0.0) {
            return;
        }
        let keep = 1.0 - decay;
        let weight = 1.0 / overlap.max(1.0);
        self.chi_squared = self.chi_squared * keep + chi_squared * weight;
        self.dof = self.dof * keep + dof * weight;
    }

    /// The point estimate (at least 1).
    #[cfg(test)]
    pub(super) fn estimate(&self) -> f64 {
        ((self.chi_squared + PRIOR_DOF) / (self.dof + PRIOR_DOF)).max(1.0)
    }

    /// The upper 95% confidence bound (at least 1): what the tests use.
    pub(super) fn upper(&self) -> f64 {
        let dof = self.dof + PRIOR_DOF;
        let low_quantile = chi_squared_quantile(0.05, dof).max(1e-3);
        ((self.chi_squared + PRIOR_DOF) / low_quantile).max(1.0)
    }
}

/// A deviation from a backend's level larger than this many (squared) standard deviations in
/// a window the skew test found unremarkable means the level is stale (a backend back from the
/// dead, a split changed while learning was paused): the level restarts there and the window
/// does not count as noise.
const STALE_LEVEL_Z2: f64 = 25.0;

/// A window whose χ²/df around the levels is this many times the dispersion moved the whole
/// split (χ²(3)/3 exceeds 5 in 0.2% of windows of a steady pool).
const SHIFTED_POOL: f64 = 5.0;

/// One backend's long-run share of its pool, as a weight over the pool's level total: what its
/// noise is measured around.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Level {
    weight: f64,
    /// The learning round in which the level was (re)started, plus 1; 0 when it has none.
    started: u32,
}

/// A pool's noise: each backend's level and the dispersion of the counts around those levels.
///
/// Dispersion is measured around each backend's *own* long-run share, not around its expected
/// share: a backend that has been dead or skewed since the start is a bias, not noise, and
/// must not teach the pool that such deviations are normal. The level moves as slowly as the
/// learned baseline, so drifts lasting minutes (sticky sessions, a few heavy hashed clients)
/// are noise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Noise {
    levels: Vec<Level>,
    /// The levels' total (a level's share is its weight over this).
    total: SharedTotal,
    /// Levels with a positive weight: the cells of the χ² statistic.
    positive: usize,
    /// Effective requests behind the levels (their own certainty).
    level_requests: f64,
    /// Windows learned.
    learned: u32,
    /// Dispersion of single windows (for departures from rotation).
    pub(super) window: Dispersion,
    /// Dispersion of whole spans (for the skew test; includes correlation across windows).
    pub(super) span: Dispersion,
}

/// One backend's counts in a quiet window: its slot, its requests in the window and in the
/// span, and whether it is steady (not ramping up): only steady backends are noise. Backends
/// that are not given served nothing in the span.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cell {
    pub(super) slot: usize,
    pub(super) window: u64,
    pub(super) span: u64,
    pub(super) steady: bool,
}

impl Noise {
    /// Drops a forgotten backend's level.
    pub(super) fn forget(&mut self, slot: usize) {
        if let Some(level) = self.levels.get_mut(slot) {
            if level.started > 0 {
                self.total.total -= level.weight;
                self.positive -= usize::from(level.weight > 0.0);
            }
            *level = Level::default();
        }
    }

    fn set(&mut self, slot: usize, weight: f64) {
        let level = &mut self.levels[slot];
        if level.started > 0 {
            self.total.total -= level.weight;
            self.positive -= usize::from(level.weight > 0.0);
        }
        *level = Level { weight, started: self.learned + 1 };
        self.total.total += weight;
        self.positive += usize::from(weight > 0.0);
    }

    /// Learns from a window in which nothing looked off. `span_windows` is the span's length
    /// when the span is full; `decay` the per-window forgetting of the dispersion.
    #[allow(clippy::cast_precision_loss)]
    pub(super) fn learn(&mut self, cells: &[Cell], span_windows: Option<usize>, decay: f64) {
        let n_all: u64 = cells.iter().map(|c| c.window).sum();
        if n_all == 0 {
            return;
        }
        if let Some(max_slot) = cells.iter().map(|c| c.slot).max()
            && self.levels.len() <= max_slot
        {
            self.levels.resize(max_slot + 1, Level::default());
        }
        if self.measure(cells, span_windows, decay) {
            // Every level is stale at once: the pool's split moved (a backend came back and
            // the others made room). Start the levels again from here.
            self.levels.fill(Level::default());
            self.total = SharedTotal::default();
            self.positive = 0;
        }
        // A running mean until the moving average (the baseline's half-life) takes over: long
        // enough that sticky sessions and hash imbalances lasting minutes count as noise.
        let running = 1.0 / f64::from(self.learned + 1);
        let beta = running.max(decay).min(1.0 - 1e-9);
        let n = n_all as f64;
        // (1 - beta) * share + beta * window share, for every level at once: the window's
        // shares are added with this weight, and the total grows by what is added.
        let add = beta / (1.0 - beta) * self.total.total;
        let mut added = 0.0;
        let mut fresh = Vec::new();
        for cell in cells {
            let share = cell.window as f64 / n;
            let level = &mut self.levels[cell.slot];
            if level.started == 0 || self.total.total <= 0.0 {
                fresh.push((cell.slot, share));
            } else if share > 0.0 {
                self.positive += usize::from(level.weight <= 0.0);
                level.weight += add * share;
                added += add * share;
            }
        }
        self.total.total += added;
        for (slot, share) in fresh {
            let base = if self.total.total > 0.0 { self.total.total } else { 1.0 };
            self.set(slot, share * base);
        }
        if self.total.total > SharedTotal::RESCALE_ABOVE {
            let scale = self.total.total;
            for level in &mut self.levels {
                level.weight /= scale;
            }
            self.total.total = 1.0;
        }
        self.level_requests = if running > decay {
            self.level_requests + n
        } else {
            self.level_requests * (1.0 - beta) + n
        };
        self.learned = self.learned.saturating_add(1);
    }

    /// Adds the window's χ² around the levels to the dispersions. A backend whose level is
    /// stale loses it (to start again from this window); returns whether the whole split moved.
    #[allow(clippy::cast_precision_loss)]
    fn measure(&mut self, cells: &[Cell], span_windows: Option<usize>, decay: f64) -> bool {
        if self.level_requests <= 0.0 || self.total.total <= 0.0 {
            return false;
        }
        // Ramping backends and backends without a level are left out, their weight with them.
        let (mut n, mut n_span, mut left_out, mut left_out_cells) = (0u64, 0u64, 0.0, 0usize);
        for cell in cells {
            let level = self.levels[cell.slot];
            if level.started == 0 {
                continue;
            }
            if cell.steady {
                n += cell.window;
                n_span += cell.span;
            } else {
                left_out += level.weight;
                left_out_cells += usize::from(level.weight > 0.0);
            }
        }
        let level_total = self.total.total - left_out;
        if n == 0 || level_total <= 0.0 {
            return false;
        }
        let (n, n_span) = (n as f64, n_span as f64);
        let window_inflation = 1.0 + n / self.level_requests;
        let span_inflation = 1.0 + n_span / self.level_requests;
        let limit = STALE_LEVEL_Z2 * self.window.upper() * window_inflation;
        let span_windows = span_windows.map(|s| u32::try_from(s).unwrap_or(u32::MAX));
        let (mut chi_window, mut chi_span, mut measured_share) = (0.0, 0.0, 0.0);
        // The span's χ² needs every level to be older than the span.
        let mut span_ready = span_windows.is_some();
        let mut stale = Vec::new();
        for cell in cells.iter().filter(|c| c.steady) {
            let level = self.levels[cell.slot];
            if level.started == 0 || level.weight <= 0.0 {
                continue;
            }
            let p = level.weight / level_total;
            let m = n * p;
            let deviation = (cell.window as f64 - m).powi(2) / m;
            if deviation > limit {
                stale.push(cell.slot);
                continue;
            }
            measured_share += p;
            chi_window += deviation;
            if span_windows.is_some_and(|span| self.learned + 1 - level.started >= span) {
                let m = n_span * p;
                chi_span += (cell.span as f64 - m).powi(2) / m;
            } else {
                span_ready = false;
            }
        }
        // The backends not given served nothing: each adds its expected count to χ², and the
        // stale ones are not counted at all.
        let stale_share: f64 =
            stale.iter().map(|&slot| self.levels[slot].weight / level_total).sum();
        let rest = (1.0 - measured_share - stale_share).max(0.0);
        chi_window += n * rest;
        chi_span += n_span * rest;
        let cells_window = self.positive.saturating_sub(left_out_cells + stale.len());
        let dof = cells_window.saturating_sub(1) as f64;
        if stale.len() > 1 && stale.len() == cells.iter().filter(|c| c.steady).count() {
            return true;
        }
        for slot in stale {
            self.forget(slot);
        }
        if chi_window / window_inflation > SHIFTED_POOL * dof.max(1.0) * self.window.upper() {
            return true;
        }
        self.window.add(chi_window / window_inflation, dof, 1.0, decay);
        if let Some(span) = span_windows.filter(|_| span_ready && stale_share == 0.0) {
            self.span.add(chi_span / span_inflation, dof, f64::from(span), decay);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// Cells of `n_batches` batches of `batch` requests over backends with `weights`.
    fn batched(rng: &mut SmallRng, weights: &[f64], n_batches: usize, batch: u64) -> Vec<Cell> {
        let total: f64 = weights.iter().sum();
        let mut counts = vec![0; weights.len()];
        for _ in 0..n_batches {
            let mut pick = rng.random::<f64>() * total;
            let chosen = weights.iter().position(|w| {
                pick -= w;
                pick < 0.0
            });
            counts[chosen.unwrap_or(0)] += batch;
        }
        counts
            .into_iter()
            .enumerate()
            .map(|(slot, c)| Cell { slot, window: c, span: c * 3, steady: true })
            .collect()
    }

    #[test]
    fn learns_the_batch_size_and_starts_conservative() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut noise = Noise::default();
        assert!(noise.span.upper() > 10.0, "a young pool is judged conservatively");
        for _ in 0..600 {
            noise.learn(&batched(&mut rng, &[1.0; 8], 40, 20), None, 0.005);
        }
        let estimate = noise.window.estimate();
        assert!((15.0..25.0).contains(&estimate), "batches of 20: {estimate}");
        assert!(noise.window.upper() < estimate * 1.2);
        let mut single = Noise::default();
        for _ in 0..600 {
            single.learn(&batched(&mut rng, &[1.0; 8], 800, 1), None, 0.005);
        }
        assert!(single.window.estimate() < 1.3, "{}", single.window.estimate());
    }

    #[test]
    fn a_backend_dead_from_the_start_is_bias_not_noise() {
        let mut rng = SmallRng::seed_from_u64(8);
        let mut noise = Noise::default();
        // Four configured, one dead: around their own levels, the counts are binomial.
        for _ in 0..300 {
            noise.learn(&batched(&mut rng, &[1.0, 1.0, 1.0, 0.0], 400, 1), None, 0.005);
        }
        assert!(noise.window.estimate() < 1.3, "{}", noise.window.estimate());
        // It comes back at full share: its level restarts instead of inflating the noise.
        for _ in 0..30 {
            noise.learn(&batched(&mut rng, &[1.0; 4], 400, 1), None, 0.005);
        }
        assert!(noise.window.estimate() < 1.3, "{}", noise.window.estimate());
    }
}
