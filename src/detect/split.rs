//! One split judged on its own: were these requests spread as the weights say? The share
//! test of the detector, for a single sample of independent requests (`skewtail rehearse`
//! sends them itself, so there is no dispersion to learn): an exact binomial test per
//! backend, Bonferroni over the backends, with the detector's effect floors.

use serde::Serialize;

use super::DetectorConfig;
use super::stats::{lower, ratio, upper};

/// What one backend did against its expected share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitVerdict {
    /// The backend.
    pub backend: String,
    /// Requests it served.
    pub requests: u64,
    /// Its share of the requests.
    pub share: f64,
    /// Its expected share (`None`: it has no weight).
    pub expected: Option<f64>,
    /// The one-sided p-value in the direction it leans.
    pub p_value: f64,
    /// `ok`, `over`, `under`, `missing` (expected traffic, got none) or `unexpected` (got
    /// traffic, has no weight).
    pub verdict: &'static str,
}

/// Judges `counts` (backend, requests) against `expected` (backend, share summing to 1).
pub fn judge_split(
    counts: &[(String, u64)],
    expected: &[(String, f64)],
    config: &DetectorConfig,
) -> Vec<SplitVerdict> {
    let total: u64 = counts.iter().map(|c| c.1).sum();
    let mut names: Vec<&String> = expected.iter().map(|e| &e.0).collect();
    for (name, _) in counts {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let alpha = config.alpha / names.len().max(1) as f64;
    names
        .into_iter()
        .map(|name| {
            let requests = counts.iter().find(|c| &c.0 == name).map_or(0, |c| c.1);
            let share = ratio(requests, total);
            let want = expected.iter().find(|e| &e.0 == name).map(|e| e.1);
            let (p_value, verdict) = match want {
                None if requests > 0 => (0.0, "unexpected"),
                None => (1.0, "ok"),
                Some(p) => {
                    let p_over = upper(requests, total, p, 1.0);
                    let p_under = lower(requests, total, p, 1.0);
                    let far = (share - p).abs() >= config.min_share_delta;
                    if share > p && p_over < alpha && far && share >= p * config.min_ratio {
                        (p_over, "over")
                    } else if share < p && p_under < alpha && far && share * config.min_ratio <= p {
                        (p_under, if requests == 0 { "missing" } else { "under" })
                    } else {
                        (p_over.min(p_under), "ok")
                    }
                }
            };
            SplitVerdict {
                backend: name.clone(),
                requests,
                share,
                expected: want,
                p_value,
                verdict,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(counts: &[u64]) -> Vec<&'static str> {
        let counts: Vec<(String, u64)> =
            counts.iter().enumerate().map(|(i, c)| (format!("s{i}"), *c)).collect();
        let expected: Vec<(String, f64)> = (0..4).map(|i| (format!("s{i}"), 0.25)).collect();
        judge_split(&counts, &expected, &DetectorConfig::default())
            .into_iter()
            .map(|v| v.verdict)
            .collect()
    }

    #[test]
    fn an_even_split_passes_and_a_weight_of_ten_fails() {
        assert_eq!(split(&[260, 240, 255, 245]), ["ok", "ok", "ok", "ok"]);
        // weight=10 among 1s: 10/13 of 1,000.
        assert_eq!(split(&[769, 77, 77, 77]), ["over", "under", "under", "under"]);
        assert_eq!(split(&[334, 333, 333, 0]), ["ok", "ok", "ok", "missing"]);
        // Too few requests to say anything.
        assert_eq!(split(&[6, 1, 1, 0]), ["ok", "ok", "ok", "ok"]);
    }
}
