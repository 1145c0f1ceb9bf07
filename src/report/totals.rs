//! Per-backend totals over a whole replay, for the table that ends the timeline and the
//! reports: requests, share against expected, 5xx, p99. Memory follows the backends (one
//! bucket map each), not the input.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::window::{WindowSummary, quantile_of_buckets};

/// Backends shown per pool; the rest are summed as one row.
pub const MAX_ROWS: usize = 20;

#[derive(Debug, Default, Clone)]
struct Accumulated {
    requests: u64,
    errors: u64,
    latency: BTreeMap<usize, u64>,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendRow {
    /// The backend (`(N others)` for the rest).
    pub backend: String,
    /// Requests it served.
    pub requests: u64,
    /// Its share of the pool's requests.
    pub share: f64,
    /// Its expected share, when known.
    pub expected: Option<f64>,
    /// Responses with a 5xx status.
    pub errors: u64,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
}

impl BackendRow {
    /// Whether its share is off its expected share by the detector's default effect floor
    /// (1.5x either way): the rows the table and the report flag.
    pub fn is_off(&self) -> bool {
        self.expected
            .is_some_and(|e| e > 0.0 && (self.share / e >= 1.5 || self.share / e <= 1.0 / 1.5))
    }
}

/// Totals per pool and backend.
#[derive(Debug, Default)]
pub struct Totals {
    pools: BTreeMap<Arc<str>, BTreeMap<Arc<str>, Accumulated>>,
}

impl Totals {
    /// Adds a closed window.
    pub fn add(&mut self, window: &WindowSummary) {
        let pool = self.pools.entry(window.pool.clone()).or_default();
        for b in &window.backends {
            let row = pool.entry(b.backend.clone()).or_default();
            row.requests += b.requests;
            row.errors += b.errors;
            for (bucket, count) in b.latency.iter() {
                *row.latency.entry(bucket).or_default() += count;
            }
        }
    }

    /// The pools seen.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<str>> {
        self.pools.keys()
    }

    /// A pool's rows, busiest first (at most [`MAX_ROWS`], the rest summed), with expected
    /// shares from `expected`.
    pub fn rows(&self, pool: &str, expected: &[(Arc<str>, f64)]) -> Vec<BackendRow> {
        let Some(backends) = self.pools.get(pool) else { return Vec::new() };
        let total: u64 = backends.values().map(|b| b.requests).sum();
        let share = |n: u64| if total > 0 { n as f64 / total as f64 } else { 0.0 };
        let mut sorted: Vec<(&Arc<str>, &Accumulated)> = backends.iter().collect();
        sorted.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
        let row = |name: String, acc: &Accumulated, expected: Option<f64>| BackendRow {
            backend: name,
            requests: acc.requests,
            share: share(acc.requests),
            expected,
            errors: acc.errors,
            p99_ms: quantile_of_buckets(
                acc.latency.iter().map(|(b, c)| (*b, *c)),
                acc.latency.values().sum(),
                0.99,
            ),
        };
        // A map, not a scan: a pool can have 100,000 backends and as many expectations.
        let expected: std::collections::HashMap<&str, f64> =
            expected.iter().map(|(name, share)| (&**name, *share)).collect();
        let expected_of = |name: &Arc<str>| expected.get(&**name).copied();
        let mut rows: Vec<BackendRow> = sorted
            .iter()
            .take(MAX_ROWS)
            .map(|(name, acc)| row(name.to_string(), acc, expected_of(name)))
            .collect();
        if sorted.len() > MAX_ROWS {
            let mut rest = Accumulated::default();
            let mut rest_expected = 0.0;
            for (name, acc) in &sorted[MAX_ROWS..] {
                rest.requests += acc.requests;
                rest.errors += acc.errors;
                for (bucket, count) in &acc.latency {
                    *rest.latency.entry(*bucket).or_default() += count;
                }
                rest_expected += expected_of(name).unwrap_or(0.0);
            }
            let name = format!("({} others)", sorted.len() - MAX_ROWS);
            rows.push(row(name, &rest, Some(rest_expected).filter(|e| *e > 0.0)));
        }
        rows
    }
}

/// The rows as a text table.
pub fn text_table(pool: &str, rows: &[BackendRow]) -> String {
    use std::fmt::Write as _;
    let width = rows.iter().map(|r| r.backend.chars().count()).max().unwrap_or(7).clamp(7, 48);
    let mut out = format!(
        "pool {pool}\n  {:<width$} {:>10} {:>7} {:>9} {:>7} {:>9}\n",
        "backend", "requests", "share", "expected", "5xx", "p99"
    );
    for r in rows {
        let name = crate::alert::escape::truncate(
            &crate::alert::escape::without_controls(&r.backend),
            width,
        );
        let expected = r.expected.map_or("-".to_string(), |e| format!("{:.1}%", e * 100.0));
        let p99 = r.p99_ms.map_or("-".to_string(), |ms| format!("{ms:.0} ms"));
        let flag = if r.is_off() { "  <" } else { "" };
        let _ = writeln!(
            out,
            "  {name:<width$} {:>10} {:>6.1}% {expected:>9} {:>7} {p99:>9}{flag}",
            r.requests,
            r.share * 100.0,
            r.errors
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{BackendSummary, LatencySketch};

    #[test]
    fn rows_sum_windows_and_cap_the_count() {
        let mut totals = Totals::default();
        let backends: Vec<BackendSummary> = (0..25)
            .map(|i| BackendSummary {
                backend: Arc::from(format!("b{i:02}")),
                id: i,
                requests: 100 - u64::from(i),
                errors: 1,
                retried: 0,
                p50_ms: None,
                p99_ms: None,
                latency: LatencySketch::from_latencies_ms(&[10.0, 20.0, 900.0]),
            })
            .collect();
        let window = WindowSummary {
            pool: Arc::from("api"),
            start_ms: 0,
            end_ms: 10_000,
            backends,
            no_backend: 0,
        };
        totals.add(&window);
        totals.add(&window);
        let rows = totals.rows("api", &[(Arc::from("b00"), 0.04)]);
        assert_eq!(rows.len(), MAX_ROWS + 1);
        assert_eq!((rows[0].backend.as_str(), rows[0].requests, rows[0].errors), ("b00", 200, 2));
        assert_eq!(rows[0].expected, Some(0.04));
        assert!(rows[0].p99_ms.unwrap() > 800.0);
        assert_eq!(rows[MAX_ROWS].backend, "(5 others)");
        let text = text_table("api", &rows);
        assert!(text.contains("pool api") && text.contains("b00"), "{text}");
    }
}
