//! Per-backend totals over a whole replay, for the table that ends the timeline and the
//! reports: requests, share against expected, 5xx, p99. Memory follows the backends (one
//! bucket map each), not the input.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::window::{WindowSummary, quantile_of_buckets};

/// Backends shown per pool; the rest are summed as one row.
pub const MAX_ROWS: usize = 20;

#[derive(Debug, Default, Clone)]
struct Accumulated {
    requests: u64,
    errors: u64,
    /// (latency bucket, count), ascending: a backend's latencies fall in a few dozen of the
    /// sketch's buckets, so a sorted list is small and merges in one walk. Counts are `u32`
    /// to keep 100,000 backends' lists small; should one reach `u32::MAX` (4 billion requests
    /// in one bucket), the backend's counts are halved, which keeps its quantiles.
    latency: Vec<(u16, u32)>,
}

impl Accumulated {
    /// Adds a window's (bucket, count) pairs, ascending.
    fn add_latency(&mut self, buckets: impl Iterator<Item = (usize, u64)> + Clone) {
        // Usually every bucket is already there: add in place without allocating.
        let mut at = 0;
        let all_known = buckets.clone().all(|(bucket, _)| {
            while self.latency.get(at).is_some_and(|&(b, _)| usize::from(b) < bucket) {
                at += 1;
            }
            self.latency.get(at).is_some_and(|&(b, _)| usize::from(b) == bucket)
        });
        if !all_known {
            // Grown by a few slots, not doubled: 100,000 backends' slack would be tens of MB.
            let needed = buckets.clone().count();
            if self.latency.capacity() - self.latency.len() < needed {
                self.latency.reserve_exact(needed + 4);
            }
            for (bucket, _) in buckets.clone() {
                #[allow(clippy::cast_possible_truncation)] // buckets number a few hundred
                let bucket = bucket as u16;
                if let Err(at) = self.latency.binary_search_by_key(&bucket, |&(b, _)| b) {
                    self.latency.insert(at, (bucket, 0));
                }
            }
        }
        let mut at = 0;
        for (bucket, count) in buckets {
            while usize::from(self.latency[at].0) < bucket {
                at += 1;
            }
            let mut count = count;
            while u64::from(self.latency[at].1) + count > u64::from(u32::MAX) {
                for (_, kept) in &mut self.latency {
                    *kept = kept.div_ceil(2);
                }
                count = count.div_ceil(2);
            }
            #[allow(clippy::cast_possible_truncation)] // checked just above
            {
                self.latency[at].1 += count as u32;
            }
        }
    }

    fn add(&mut self, other: &Accumulated) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.add_latency(other.latency.iter().map(|&(b, c)| (usize::from(b), u64::from(c))));
    }
}

/// Backends a pool keeps totals for one by one, at least (the detector's default
/// `max_backends`): at twice as many, the least busy are folded into one aggregate, so memory
/// stays bounded when backends churn for months (the table shows the busiest [`MAX_ROWS`]).
/// A folded backend that serves again starts a new total, which the table says.
const TRACKED: usize = 100_000;

/// One pool's totals.
#[derive(Debug, Default)]
struct PoolTotals {
    backends: Vec<(Arc<str>, Accumulated)>,
    /// The backends folded away, summed.
    folded: Accumulated,
    /// How many totals were folded (a backend folded twice counts twice).
    n_folded: u64,
    index: FxHashMap<Arc<str>, usize>,
    /// By a window's backend id: its name (the windower hands out the same `Arc` for as long
    /// as it remembers the backend) and its place in `backends`. A pointer compare instead of
    /// a string lookup per backend per window; a reused id has a new `Arc`.
    by_id: Vec<Option<(Arc<str>, usize)>>,
}

impl PoolTotals {
    fn row(&mut self, id: u32, name: &Arc<str>) -> &mut Accumulated {
        let id = id as usize;
        let cached = self.by_id.get(id).and_then(Option::as_ref);
        let at = match cached {
            Some((known, at)) if Arc::ptr_eq(known, name) => *at,
            _ => {
                let at = match self.index.get(name) {
                    Some(&at) => at,
                    None => {
                        if self.backends.len() >= 2 * TRACKED {
                            self.fold_least_busy();
                        }
                        self.backends.push((name.clone(), Accumulated::default()));
                        self.index.insert(name.clone(), self.backends.len() - 1);
                        self.backends.len() - 1
                    }
                };
                if self.by_id.len() <= id {
                    self.by_id.resize(id + 1, None);
                }
                self.by_id[id] = Some((name.clone(), at));
                at
            }
        };
        &mut self.backends[at].1
    }

    /// Keeps the [`TRACKED`] busiest backends and folds the others into `folded`.
    fn fold_least_busy(&mut self) {
        self.backends
            .sort_unstable_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(&b.0)));
        for (_, acc) in self.backends.drain(TRACKED..) {
            self.folded.add(&acc);
            self.n_folded += 1;
        }
        self.index =
            self.backends.iter().enumerate().map(|(at, (name, _))| (name.clone(), at)).collect();
        self.by_id.clear();
    }
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
    /// The expected share as the tables print it (`12.5%`, `-` when unknown).
    pub fn expected_text(&self) -> String {
        self.expected.map_or("-".to_string(), |e| format!("{:.1}%", e * 100.0))
    }

    /// The p99 as the tables print it (`72 ms`, `-` without latencies).
    pub fn p99_text(&self) -> String {
        self.p99_ms.map_or("-".to_string(), |ms| format!("{ms:.0} ms"))
    }

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
    pools: BTreeMap<Arc<str>, PoolTotals>,
}

impl Totals {
    /// Adds a closed window.
    pub fn add(&mut self, window: &WindowSummary) {
        let pool = match self.pools.get_mut(&window.pool) {
            Some(pool) => pool,
            None => self.pools.entry(window.pool.clone()).or_default(),
        };
        for b in &window.backends {
            let row = pool.row(b.id, &b.backend);
            row.requests += b.requests;
            row.errors += b.errors;
            row.add_latency(b.latency.iter());
        }
    }

    /// The pools seen.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<str>> {
        self.pools.keys()
    }

    /// A pool's rows, busiest first (at most [`MAX_ROWS`], the rest summed), with expected
    /// shares from `expected`.
    pub fn rows(&self, pool: &str, expected: &[(Arc<str>, f64)]) -> Vec<BackendRow> {
        let Some(pool) = self.pools.get(pool) else { return Vec::new() };
        let total: u64 =
            pool.backends.iter().map(|(_, b)| b.requests).sum::<u64>() + pool.folded.requests;
        let share = |n: u64| if total > 0 { n as f64 / total as f64 } else { 0.0 };
        let mut sorted: Vec<(&Arc<str>, &Accumulated)> =
            pool.backends.iter().map(|(name, acc)| (name, acc)).collect();
        sorted.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
        let row = |name: String, acc: &Accumulated, expected: Option<f64>| BackendRow {
            backend: name,
            requests: acc.requests,
            share: share(acc.requests),
            expected,
            errors: acc.errors,
            p99_ms: quantile_of_buckets(
                acc.latency.iter().map(|&(b, c)| (usize::from(b), u64::from(c))),
                acc.latency.iter().map(|&(_, c)| u64::from(c)).sum(),
                0.99,
            ),
        };
        // A map, not a scan: a pool can have 100,000 backends and as many expectations.
        let expected_by_name: std::collections::HashMap<&str, f64> =
            expected.iter().map(|(name, share)| (&**name, *share)).collect();
        let expected_of = |name: &Arc<str>| expected_by_name.get(&**name).copied();
        let mut rows: Vec<BackendRow> = sorted
            .iter()
            .take(MAX_ROWS)
            .map(|(name, acc)| row(name.to_string(), acc, expected_of(name)))
            .collect();
        if sorted.len() > MAX_ROWS || pool.n_folded > 0 {
            let mut rest = pool.folded.clone();
            for (_, acc) in sorted.iter().skip(MAX_ROWS) {
                rest.add(acc);
            }
            // What is expected of every backend not shown, folded ones included.
            let shown: f64 = sorted.iter().take(MAX_ROWS).filter_map(|(n, _)| expected_of(n)).sum();
            // Summed in the detector's order, not the map's: the same bits every run.
            let rest_expected = expected.iter().map(|(_, share)| share).sum::<f64>() - shown;
            let n_rest = sorted.len().saturating_sub(MAX_ROWS) as u64 + pool.n_folded;
            let name = if pool.n_folded > 0 {
                format!("({n_rest} others, some counted twice)")
            } else {
                format!("({n_rest} others)")
            };
            rows.push(row(name, &rest, Some(rest_expected).filter(|e| *e > 1e-12)));
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
        let name = crate::text::truncate(&crate::text::without_controls(&r.backend), width);
        let (expected, p99) = (r.expected_text(), r.p99_text());
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
                failed_attempts: 0,
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

    #[test]
    fn a_reused_backend_id_is_told_apart_by_name_and_latencies_add_up() {
        let backend = |name: &str, id: u32, latencies: &[f64]| BackendSummary {
            backend: Arc::from(name),
            id,
            requests: latencies.len() as u64,
            errors: 0,
            retried: 0,
            failed_attempts: 0,
            p50_ms: None,
            p99_ms: None,
            latency: LatencySketch::from_latencies_ms(latencies),
        };
        let window = |backends| WindowSummary {
            pool: Arc::from("api"),
            start_ms: 0,
            end_ms: 10_000,
            backends,
            no_backend: 0,
        };
        let mut totals = Totals::default();
        totals.add(&window(vec![backend("a", 0, &[10.0, 20.0])]));
        // The windower forgot `a` and gave its id to `b`; later `a` came back under id 1.
        totals.add(&window(vec![backend("b", 0, &[5000.0])]));
        totals.add(&window(vec![backend("a", 1, &[30.0, 20.0, 900.0])]));
        let rows = totals.rows("api", &[]);
        let row = |name: &str| rows.iter().find(|r| r.backend == name).unwrap().clone();
        assert_eq!((row("a").requests, row("b").requests), (5, 1));
        let all = LatencySketch::from_latencies_ms(&[10.0, 20.0, 30.0, 20.0, 900.0]);
        assert_eq!(row("a").p99_ms, all.quantile_ms(0.99));
        let acc = &totals.pools["api"].backends[totals.pools["api"].index["a"]].1;
        let expected: Vec<(u16, u32)> = all
            .iter()
            .map(|(b, c)| (u16::try_from(b).unwrap(), u32::try_from(c).unwrap()))
            .collect();
        assert_eq!(acc.latency, expected, "merged bucket by bucket, in order");
    }

    #[test]
    fn a_bucket_about_to_overflow_halves_the_backend_keeping_its_quantiles() {
        let mut acc = Accumulated::default();
        acc.add_latency([(3, u64::from(u32::MAX) - 10), (7, 1000)].into_iter());
        acc.add_latency([(3, 100)].into_iter());
        let (low, high) = (acc.latency[0].1, acc.latency[1].1);
        assert_eq!(high, 500);
        assert!(low > u32::MAX / 2 && low < u32::MAX / 2 + 100, "{low}");
    }

    #[test]
    fn churning_backends_are_folded_so_memory_stays_bounded() {
        let mut totals = Totals::default();
        let n = 2 * TRACKED as u32 + 10;
        for i in 0..n {
            let requests = if i < 5 { 1_000 } else { 1 };
            let window = WindowSummary {
                pool: Arc::from("api"),
                start_ms: i64::from(i) * 10_000,
                end_ms: i64::from(i) * 10_000 + 10_000,
                backends: vec![BackendSummary {
                    backend: Arc::from(format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255)),
                    id: i,
                    requests,
                    errors: 0,
                    retried: 0,
                    failed_attempts: 0,
                    p50_ms: None,
                    p99_ms: None,
                    latency: LatencySketch::from_latencies_ms(&[10.0]),
                }],
                no_backend: 0,
            };
            totals.add(&window);
        }
        let pool = &totals.pools["api"];
        assert!(pool.backends.len() <= 2 * TRACKED && pool.n_folded > 0, "{}", pool.backends.len());
        let rows = totals.rows("api", &[]);
        // The busy five survive every fold, and every request is in some row.
        assert!(rows[..5].iter().all(|r| r.requests == 1_000), "{:?}", &rows[..5]);
        assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 5 * 1_000 + u64::from(n) - 5);
        assert!(rows.last().unwrap().backend.contains("others"));
    }
}
