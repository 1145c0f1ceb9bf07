//! The share test itself: each backend's count against its expected share, quasi-binomial,
//! Bonferroni over the pool, with effect floors and attribution.

use super::super::stats::{normal_quantile, ratio, two_sided};
use super::super::{DetectorConfig, Direction};

/// At most this many culprits are attributed one by one per window; beyond that the rest are
/// judged together (keeps a window's cost linear in the backends).
const MAX_ATTRIBUTION_ROUNDS: usize = 16;

/// A volume guard: a backend is off its share only when it is at least this many requests
/// off in the span. Among 100,000 backends, one that took 5 requests where 0.2 were expected
/// is not an incident, whatever the ratio.
const MIN_EXCESS_REQUESTS: f64 = 10.0;

/// The per-backend test result for one span.
#[derive(Debug, Clone, Copy)]
pub(in crate::detect) struct Judgement {
    /// Share of the judged traffic.
    pub(in crate::detect) share: f64,
    /// Expected share.
    pub(in crate::detect) expected: f64,
    /// share / expected.
    pub(in crate::detect) ratio: f64,
    /// Bonferroni-adjusted two-sided p-value (1 when screened out as plainly insignificant).
    pub(in crate::detect) p_value: f64,
    /// Standard score of the count under the dispersion: ranks culprits whose p-values both
    /// underflow to 0.
    z: f64,
    pub(in crate::detect) anomalous: Option<Direction>,
    /// Whether a firing alert in that direction may count this span towards resolving.
    pub(in crate::detect) clear_over: bool,
    pub(in crate::detect) clear_under: bool,
}

impl Judgement {
    /// The same numbers, judged as taking too much: a backend far above an even share that
    /// fails for it, before the pool's baseline is known well enough to say so alone.
    pub(in crate::detect) fn drowning(self) -> Self {
        Judgement { anomalous: Some(Direction::Over), ..self }
    }
}

/// The backends of a pool that one window's test looks at, and the rest.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tested<'a> {
    /// Requests of each tested backend.
    pub(super) counts: &'a [u64],
    /// Expected share of each tested backend (of the whole pool).
    pub(super) expected: &'a [f64],
    /// Expected share of the pool's other backends: too light to be judged, they served
    /// nothing in the span (so they cannot be anomalous) but still take their share of the
    /// expectation.
    pub(super) rest: f64,
    /// Backends in the pool, tested or not (for Bonferroni and the `min_backends` guard).
    pub(super) n_backends: usize,
}

/// Tests every backend of `tested` against its expected share with dispersion `scale`,
/// attributing skew to its cause.
///
/// When one backend takes too much, every other backend's share drops with it; testing each
/// against the whole pool would page for all of them. So the most significant anomalous
/// backend is flagged first, then removed, and the rest are re-tested against each other with
/// their expected shares renormalised, until nothing anomalous is left. A backend that drowns
/// is reported alone; two independent culprits are both found.
#[allow(clippy::cast_precision_loss)]
pub(super) fn judge(tested: Tested<'_>, scale: f64, config: &DetectorConfig) -> Vec<Judgement> {
    let Tested { counts, expected, rest, n_backends } = tested;
    let n_total: u64 = counts.iter().sum();
    // Below this |z| a backend cannot be significant at `alpha` (a sigma of slack for the
    // normal approximation's tails), so the exact test is skipped: most backends of a large
    // pool are screened out here.
    let z_screen = (normal_quantile(1.0 - config.alpha / 2.0) - 1.0).max(1.0);
    let test = |index: usize, n: u64, q_sum: f64| -> Judgement {
        let (k, q_full) = (counts[index], expected[index]);
        let share = ratio(k, n_total);
        let q = q_full / q_sum;
        let conditional_share = ratio(k, n);
        let r = conditional_share / q;
        // The percentage-point floor guards big shares against tiny, significant deviations;
        // in a large pool (expected shares under 10%) it shrinks to half the expected share,
        // so a backend taking 4x its 0.5% among 200 is still caught.
        let delta_floor = config.min_share_delta.min(q / 2.0);
        let mean = n as f64 * q;
        let excess = k as f64 - mean;
        let over = r >= config.min_ratio
            && conditional_share - q >= delta_floor
            && excess >= MIN_EXCESS_REQUESTS;
        let under = r <= 1.0 / config.min_ratio
            && q - conditional_share >= delta_floor
            && -excess >= MIN_EXCESS_REQUESTS;
        let z = (k as f64 - mean) / (scale * mean * (1.0 - q)).max(f64::MIN_POSITIVE).sqrt();
        let p_value = if (over || under) && z.abs() >= z_screen {
            (two_sided(k, n, q, scale) * n_backends as f64).min(1.0)
        } else {
            1.0
        };
        let significant = p_value < config.alpha;
        Judgement {
            share,
            expected: q_full,
            ratio: if q_full > 0.0 { share / q_full } else { 0.0 },
            p_value,
            z,
            anomalous: match (significant, over, under) {
                (true, true, _) => Some(Direction::Over),
                (true, _, true) => Some(Direction::Under),
                _ => None,
            },
            clear_over: r < config.resolve_ratio || conditional_share - q < delta_floor / 2.0,
            clear_under: r > 1.0 / config.resolve_ratio
                || q - conditional_share < delta_floor / 2.0,
        }
    };
    let mut remaining = vec![true; counts.len()];
    let (mut n, mut q_sum, mut n_left) = (n_total, expected.iter().sum::<f64>() + rest, n_backends);
    let mut flagged: Vec<(usize, Judgement)> = Vec::new();
    // Each round tests the remaining backends without keeping their results: in a pool of
    // thousands, only the culprit of the round is worth keeping.
    for _ in 0..MAX_ATTRIBUTION_ROUNDS {
        // Keep at least `min_backends` to compare the rest against.
        if n_left <= config.min_backends {
            break;
        }
        let worst = (0..counts.len())
            .filter(|&i| remaining[i])
            .filter_map(|i| {
                let judgement = test(i, n, q_sum);
                judgement.anomalous.map(|_| (i, judgement))
            })
            .min_by(|a, b| {
                a.1.p_value.total_cmp(&b.1.p_value).then(b.1.z.abs().total_cmp(&a.1.z.abs()))
            });
        let Some((index, judgement)) = worst else { break };
        flagged.push((index, judgement));
        remaining[index] = false;
        n -= counts[index];
        q_sum -= expected[index];
        n_left -= 1;
    }
    let mut results: Vec<Judgement> = (0..counts.len()).map(|i| test(i, n, q_sum)).collect();
    for (index, judgement) in flagged {
        results[index] = judgement;
    }
    if n_left == 2 {
        let mut left = remaining.iter().enumerate().filter(|(_, r)| **r).map(|(i, _)| i);
        if let (Some(a), Some(b)) = (left.next(), left.next()) {
            let mut pair = [(a, results[a]), (b, results[b])];
            one_page_per_pair(&mut pair, counts);
            results[a] = pair[0].1;
            results[b] = pair[1].1;
        }
    }
    results
}

/// A pair is one event seen from both sides: one taking too much is the other getting too
/// little, and noise can push either side past its floor first. Page once, for the one taking
/// too much, unless the other has dropped out entirely, which says more.
fn one_page_per_pair(judged: &mut [(usize, Judgement); 2], counts: &[u64]) {
    let [(a, ja), (b, jb)] = *judged;
    if ja.anomalous.is_none() && jb.anomalous.is_none() {
        return;
    }
    let a_takes_more = ja.share - ja.expected >= jb.share - jb.expected;
    let (over, under) = if a_takes_more { (0, 1) } else { (1, 0) };
    let under_dropped = counts[if under == 0 { a } else { b }] == 0;
    let (keep, quiet, direction) = if under_dropped {
        (under, over, Direction::Under)
    } else {
        (over, under, Direction::Over)
    };
    judged[keep].1.anomalous = Some(direction);
    judged[quiet].1.anomalous = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything(counts: &[u64], expected: &[f64]) -> Vec<Judgement> {
        let tested = Tested { counts, expected, rest: 0.0, n_backends: counts.len() };
        judge(tested, 1.0, &DetectorConfig::default())
    }

    #[test]
    fn one_drowning_backend_is_the_only_culprit() {
        // 49% where 17% is expected, and the three others low in proportion: only the first
        // is anomalous (the big backend's deficit is the culprit's doing).
        let judged = everything(&[359, 111, 117, 566], &[0.487, 0.17, 0.173, 0.17]);
        let flagged: Vec<_> = judged.iter().map(|j| j.anomalous).collect();
        assert_eq!(flagged, [None, None, None, Some(Direction::Over)]);
    }

    #[test]
    fn leaving_out_backends_that_served_nothing_changes_no_verdict() {
        // 1,000 backends expected at 0.1% each; 500 served 4 requests each, one 60 (15x).
        let mut counts = vec![4u64; 500];
        counts[7] = 60;
        counts.resize(1000, 0);
        let expected = vec![0.001; 1000];
        let all = everything(&counts, &expected);
        let present = Tested {
            counts: &counts[..500],
            expected: &expected[..500],
            rest: 0.5,
            n_backends: 1000,
        };
        let sparse = judge(present, 1.0, &DetectorConfig::default());
        for (a, b) in all.iter().zip(&sparse) {
            assert_eq!((a.anomalous, a.p_value.to_bits()), (b.anomalous, b.p_value.to_bits()));
        }
        assert_eq!(sparse[7].anomalous, Some(Direction::Over));
        assert_eq!(sparse.iter().filter(|j| j.anomalous.is_some()).count(), 1);
    }
}
