//! The statistics the judges share: exact binomial tails (extended to the non-integer counts
//! of a quasi-binomial test), the G-test, and small helpers.
//!
//! A quasi-binomial test divides counts by the dispersion `s` before an exact binomial test:
//! `k` of `n` with variance `s` times the binomial one behaves like `k/s` of `n/s`. With
//! `s = 1` it *is* the exact binomial test, so Poisson traffic is judged exactly as before;
//! bursty traffic (whole client batches sent to one backend) gets the wider spread it has.

use statrs::distribution::{ChiSquared, ContinuousCDF};
use statrs::function::beta::checked_beta_reg;

/// `numerator / denominator`, 0 when the denominator is 0.
#[allow(clippy::cast_precision_loss)]
pub(super) fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 { 0.0 } else { numerator as f64 / denominator as f64 }
}

/// P(X ≥ k) for X ~ Binomial(n, p), for real `k` and `n` (the regularised incomplete beta
/// function, which equals the binomial tail at integers).
pub(super) fn upper_tail(k: f64, n: f64, p: f64) -> f64 {
    if k <= 0.0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    checked_beta_reg(k, n - k + 1.0, p).unwrap_or(1.0)
}

/// P(X ≤ k) for X ~ Binomial(n, p), for real `k` and `n`.
pub(super) fn lower_tail(k: f64, n: f64, p: f64) -> f64 {
    if k >= n {
        return 1.0;
    }
    if k < 0.0 {
        return 0.0;
    }
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    // I_{1-p}(n-k, k+1) rather than 1 - I_p(k+1, n-k): far tails do not cancel to 0.
    checked_beta_reg(n - k, k + 1.0, 1.0 - p).unwrap_or(1.0)
}

/// Two-sided quasi-binomial p-value of `k` of `n` at rate `p` with dispersion `scale` (≥ 1).
#[allow(clippy::cast_precision_loss)]
pub(super) fn two_sided(k: u64, n: u64, p: f64, scale: f64) -> f64 {
    let scale = scale.max(1.0);
    let (k, n) = (k as f64 / scale, n as f64 / scale);
    (2.0 * lower_tail(k, n, p).min(upper_tail(k, n, p))).min(1.0)
}

/// One-sided (upper) quasi-binomial p-value of `k` of `n` at rate `p` with dispersion `scale`.
#[allow(clippy::cast_precision_loss)]
pub(super) fn upper(k: u64, n: u64, p: f64, scale: f64) -> f64 {
    let scale = scale.max(1.0);
    upper_tail(k as f64 / scale, n as f64 / scale, p)
}

/// One-sided (lower) quasi-binomial p-value of `k` of `n` at rate `p` with dispersion `scale`.
#[allow(clippy::cast_precision_loss)]
pub(super) fn lower(k: u64, n: u64, p: f64, scale: f64) -> f64 {
    let scale = scale.max(1.0);
    lower_tail(k as f64 / scale, n as f64 / scale, p)
}

/// The standard normal quantile (Acklam's rational approximation, relative error 1e-9).
pub(super) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The `p` quantile of χ²(ν) (Wilson–Hilferty; within a few percent from ν = 3 up).
pub(super) fn chi_squared_quantile(p: f64, dof: f64) -> f64 {
    let dof = dof.max(1e-9);
    let h = 2.0 / (9.0 * dof);
    (dof * (1.0 - h + normal_quantile(p) * h.sqrt()).powi(3)).max(0.0)
}

/// G-test of observed counts against expected shares over `k` backends (those not given
/// served nothing, and add nothing to G), with each count's variance `scale` times the
/// multinomial one: p-value of G/scale under χ²(k−1).
#[allow(clippy::cast_precision_loss)]
pub(super) fn g_test(counts: &[u64], expected: &[f64], k: usize, scale: f64) -> f64 {
    let n: u64 = counts.iter().sum();
    let mut g = 0.0;
    for (&x, &q) in counts.iter().zip(expected) {
        if q > 0.0 && x > 0 {
            g += 2.0 * x as f64 * (x as f64 / (n as f64 * q)).ln();
        }
    }
    match ChiSquared::new((k.max(2) - 1) as f64) {
        Ok(chi) => chi.sf((g / scale.max(1.0)).max(0.0)),
        Err(_) => 1.0,
    }
}

/// The median of sorted values (0 for none).
pub(super) fn median(sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] }
}

/// The smoothing factor of an exponentially weighted average whose half-life is
/// `half_life_windows` windows.
pub(super) fn half_life_alpha(half_life_windows: f64) -> f64 {
    1.0 - 0.5f64.powf(1.0 / half_life_windows.max(1.0))
}

/// Moving means of many shares at once, where a window moves only the shares that served in
/// it. Each share is kept as a weight over a common total: blending a window in adds to the
/// weights of the backends that served and scales the total, so the backends that did not
/// serve decay without being visited. In a pool of 100,000 backends, a window touches the few
/// thousand that served.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct SharedTotal {
    /// The sum of the weights; a share is its weight over this.
    pub(super) total: f64,
}

impl SharedTotal {
    /// Above this total the weights are rescaled, before they overflow.
    pub(super) const RESCALE_ABOVE: f64 = 1e100;

    /// Blends a window in with `weight` (0 < weight < 1): every share becomes
    /// `(1 - weight) * share + weight * its share of the window`. Returns what to add to a
    /// backend's weight per unit of its share of the window.
    pub(super) fn blend(&mut self, weight: f64) -> f64 {
        let weight = weight.clamp(0.0, 1.0 - 1e-12);
        let add = weight / (1.0 - weight) * self.total;
        self.total /= 1.0 - weight;
        add
    }

    /// The share a weight stands for.
    #[cfg(test)]
    pub(super) fn share(&self, weight: f64) -> f64 {
        if self.total > 0.0 { weight / self.total } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statrs::distribution::{Binomial, DiscreteCDF};

    #[test]
    fn at_dispersion_one_it_is_the_exact_binomial_test() {
        for (k, n, p) in [(3u64, 40u64, 0.125), (0, 100, 0.25), (90, 100, 0.5), (17, 17, 0.9)] {
            let binomial = Binomial::new(p, n).unwrap();
            let exact_upper = if k == 0 { 1.0 } else { binomial.sf(k - 1) };
            let exact_lower = binomial.cdf(k);
            assert!((upper(k, n, p, 1.0) - exact_upper).abs() < 1e-9, "{k} {n} {p}");
            assert!((lower(k, n, p, 1.0) - exact_lower).abs() < 1e-9, "{k} {n} {p}");
        }
        assert!(two_sided(50, 100, 0.5, 1.0) > 0.9);
        assert!(two_sided(90, 100, 0.5, 1.0) < 1e-15);
        assert!(two_sided(0, 100, 0.25, 1.0) < 1e-9);
    }

    #[test]
    fn dispersion_widens_the_test() {
        // 80 of 400 where 12.5% is expected: significant for independent requests, not when
        // requests come in batches of 20.
        assert!(two_sided(80, 400, 0.125, 1.0) < 1e-3);
        assert!(two_sided(80, 400, 0.125, 20.0) > 0.1);
        // 45% of 4,000 is still far out even in batches of 20.
        assert!(two_sided(1800, 4000, 0.125, 20.0) < 1e-9);
    }

    #[test]
    fn a_shared_total_is_a_moving_mean_of_every_share() {
        // Three backends at 50/30/20; a window where only the first two serve, 60/40.
        let mut total = SharedTotal { total: 10.0 };
        let mut weights = [5.0, 3.0, 2.0];
        let add = total.blend(0.1);
        weights[0] += add * 0.6;
        weights[1] += add * 0.4;
        let shares: Vec<f64> = weights.iter().map(|w| total.share(*w)).collect();
        for (got, want) in shares.iter().zip([0.9 * 0.5 + 0.06, 0.9 * 0.3 + 0.04, 0.9 * 0.2]) {
            assert!((got - want).abs() < 1e-12, "{shares:?}");
        }
        assert!((weights.iter().sum::<f64>() - total.total).abs() < 1e-9);
    }

    #[test]
    fn quantiles() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.001) + 3.090_232).abs() < 1e-5);
        // χ²(3) 5%: 0.352; χ²(30) 5%: 18.49; χ²(300) 5%: 260.9. Wilson–Hilferty is 7% low
        // at 3 degrees of freedom, which only makes a young pool's bound more cautious.
        for (dof, want, tolerance) in
            [(3.0, 0.352, 0.08), (30.0, 18.49, 0.01), (300.0, 260.9, 0.01)]
        {
            let got = chi_squared_quantile(0.05, dof);
            assert!((got - want).abs() / want < tolerance, "{dof}: {got}");
        }
        assert!(g_test(&[25, 25, 25, 25], &[0.25; 4], 4, 1.0) > 0.99);
        assert!(g_test(&[70, 10, 10, 10], &[0.25; 4], 4, 1.0) < 1e-9);
        assert_eq!(median(&[1.0, 2.0, 10.0]), 2.0);
    }
}
