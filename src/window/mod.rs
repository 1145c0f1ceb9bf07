//! Window: groups records into event-time windows per pool and backend.
//!
//! Windows are keyed by the log's own timestamps, never the wall clock, so a replay and the
//! live sidecar cut the same windows from the same lines. A window stays open until the newest
//! event time seen passes its end by the lateness bound; a line older than every open window is
//! counted as late (and dropped from the statistics, never silently).
//!
//! Architecture invariant: no IO, no clock, no allocation per record once a backend has been
//! seen (backend names are interned on first sight; stats slots are reused).

use std::collections::VecDeque;
use std::sync::Arc;

mod latency;
mod names;

pub use latency::{
    LatencyHistogram, LatencySketch, N_BUCKETS, bucket_midpoint_ms, first_bucket_above_ms,
    quantile_of_buckets,
};
pub use names::{OVERFLOW_BACKEND, Slot};

use names::PoolNames;
use rustc_hash::FxHashMap;

/// Counters for one backend in one window.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct BackendStats {
    requests: u64,
    errors: u64,
    retried: u64,
    #[serde(default)]
    failed_attempts: u64,
    latency: LatencyHistogram,
}

impl BackendStats {
    /// Whether nothing has been counted for it in this window yet.
    fn is_untouched(&self) -> bool {
        self.requests == 0 && self.failed_attempts == 0
    }
}

/// One backend's line in a closed window.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSummary {
    /// The backend's name as logged (`10.0.0.3:8080`).
    pub backend: Arc<str>,
    /// Its number within its pool, stable while the window's source remembers the backend: a
    /// cheaper key than the name.
    pub id: u32,
    /// Requests whose final response came from this backend.
    pub requests: u64,
    /// Of those, how many got a 5xx.
    pub errors: u64,
    /// Of those, how many were retries after another backend failed.
    pub retried: u64,
    /// Attempts that went to this backend first and failed, so the balancer passed the
    /// request on to another (nginx logs both in `$upstream_addr`). A backend with failed
    /// attempts and no requests is still in rotation but not serving: refusing connections,
    /// timing out, or failing in a way the balancer retries.
    pub failed_attempts: u64,
    /// Median backend latency, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile backend latency, ms.
    pub p99_ms: Option<f64>,
    /// The backend latencies themselves, for comparisons with peers.
    pub latency: LatencySketch,
}

/// A closed window for one pool.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSummary {
    /// The pool the backends belong to.
    pub pool: Arc<str>,
    /// Window start, Unix ms (inclusive).
    pub start_ms: i64,
    /// Window end, Unix ms (exclusive).
    pub end_ms: i64,
    /// Backends that served requests in this window, in first-seen order.
    pub backends: Vec<BackendSummary>,
    /// Requests in this pool that reached no backend (`-`).
    pub no_backend: u64,
}

impl WindowSummary {
    /// Requests that reached a backend.
    pub fn total_requests(&self) -> u64 {
        self.backends.iter().map(|b| b.requests).sum()
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct PoolSlot {
    backends: Vec<BackendStats>,
    /// The backends that served in this window, so that closing it costs what it holds, not
    /// every backend the pool ever had.
    touched: Vec<u32>,
    no_backend: u64,
}

impl PoolSlot {
    /// The counters of `backend` in this window (starting at `window_start_ms`), marking it
    /// touched and active on first use.
    fn touch(
        &mut self,
        backend: u32,
        window_start_ms: i64,
        names: &mut PoolNames,
    ) -> &mut BackendStats {
        let index = backend as usize;
        if self.backends.len() <= index {
            self.backends.resize_with(index + 1, BackendStats::default);
        }
        let stats = &mut self.backends[index];
        if stats.is_untouched() {
            self.touched.push(backend);
            // Marked when counted, not when closed: a sweep must not forget a backend that
            // has requests in a window still open.
            let last_served = &mut names.last_served_ms[index];
            *last_served = (*last_served).max(window_start_ms);
        }
        stats
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct OpenWindow {
    start_ms: i64,
    pools: Vec<PoolSlot>,
}

/// What one request did, as the windower counts it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// The client saw a 5xx.
    pub is_error: bool,
    /// The balancer retried it on another backend.
    pub retried: bool,
    /// The backend's latency, seconds.
    pub latency_s: Option<f64>,
    /// The backend of the same pool tried first, whose attempt failed (when the log names it).
    pub failed_first: Option<Slot>,
}

/// What happened to a record handed to [`Windower::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted in its window.
    Counted,
    /// Older than every open window: counted as late, not in any window.
    Late,
}

/// Window length and lateness bound.
#[derive(Debug, Clone, Copy)]
pub struct WindowConfig {
    /// Window length, ms.
    pub window_ms: i64,
    /// How far behind the newest event time a line may arrive and still be counted, ms.
    pub lateness_ms: i64,
    /// A backend that serves nothing for this long is forgotten (its name and slots are
    /// reused), ms: memory follows the active backends, not every backend ever seen.
    pub forget_ms: i64,
    /// At most this many backends per pool; beyond, requests go to [`OVERFLOW_BACKEND`].
    pub max_backends: usize,
}

/// Event-time windows for one input (one clock).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Windower {
    #[serde(skip, default = "WindowConfig::unset")]
    config: WindowConfig,
    open: VecDeque<OpenWindow>,
    #[serde(skip)]
    spare: Vec<OpenWindow>,
    /// Pool name → index; rebuilt from `pool_names` after a restore.
    #[serde(skip)]
    pools: FxHashMap<Box<[u8]>, u32>,
    pool_names: Vec<Arc<str>>,
    /// Per pool: its backends' names.
    backends: Vec<PoolNames>,
    newest_event_ms: i64,
    late: u64,
    /// Requests counted under [`OVERFLOW_BACKEND`].
    overflowed: u64,
    /// Pools that reached their backend cap and have not been reported yet.
    #[serde(skip)]
    newly_overflowing: Vec<Arc<str>>,
    /// Backends forgotten after `forget_ms` of silence.
    forgotten: u64,
    /// When forgotten backends were last looked for, ms of event time.
    last_sweep_ms: i64,
}

impl WindowConfig {
    /// A placeholder until a restored windower is given its config.
    fn unset() -> Self {
        WindowConfig {
            window_ms: 10_000,
            lateness_ms: 0,
            forget_ms: i64::MAX,
            max_backends: usize::MAX,
        }
    }
}

/// Windows further apart than this (1 hour of 10 s windows) are not filled with empty ones.
const MAX_EMPTY_WINDOWS: i64 = 360;

impl Windower {
    /// A windower with no windows open yet.
    pub fn new(config: WindowConfig) -> Self {
        Windower {
            config,
            open: VecDeque::new(),
            spare: Vec::new(),
            pools: FxHashMap::default(),
            pool_names: Vec::new(),
            backends: Vec::new(),
            newest_event_ms: i64::MIN,
            late: 0,
            overflowed: 0,
            newly_overflowing: Vec::new(),
            forgotten: 0,
            last_sweep_ms: i64::MIN,
        }
    }

    /// After a restore: takes its config again and rebuilds its lookup tables.
    pub fn restored(mut self, config: WindowConfig) -> Self {
        self.config = config;
        self.pools = self
            .pool_names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                #[allow(clippy::cast_possible_truncation)] // pools are few
                (Box::from(name.as_bytes()), index as u32)
            })
            .collect();
        for pool in &mut self.backends {
            pool.rebuild_index();
        }
        self
    }

    /// Requests counted under [`OVERFLOW_BACKEND`] because their pool had too many backends.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Whether `slot` is its pool's [`OVERFLOW_BACKEND`].
    pub fn is_overflow(&self, slot: Slot) -> bool {
        slot.backend.is_some() && self.backends[slot.pool as usize].overflow == slot.backend
    }

    /// Pools that have just reached their backend cap (each reported once).
    pub fn take_newly_overflowing(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.newly_overflowing)
    }

    /// Backends forgotten after serving nothing for `forget_ms`.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Backends remembered now, over all pools.
    pub fn backends_held(&self) -> usize {
        self.backends.iter().map(|p| p.active).sum()
    }

    /// Lines that arrived after their window had closed.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Interns a pool name (allocates only the first time a name is seen).
    pub fn pool(&mut self, name: &[u8]) -> u32 {
        if let Some(&index) = self.pools.get(name) {
            return index;
        }
        #[allow(clippy::cast_possible_truncation)] // pools are few
        let index = self.pool_names.len() as u32;
        self.pools.insert(name.into(), index);
        self.pool_names.push(String::from_utf8_lossy(name).into());
        self.backends.push(PoolNames::default());
        index
    }

    /// Resolves a pool and backend to a [`Slot`].
    pub fn slot(&mut self, pool: u32, backend: Option<&[u8]>) -> Slot {
        let Some(name) = backend else { return Slot { pool, backend: None } };
        let names = &mut self.backends[pool as usize];
        let (index, now_overflowing) = names.intern(name, self.config.max_backends);
        if now_overflowing {
            self.newly_overflowing.push(self.pool_names[pool as usize].clone());
        }
        if names.overflow == Some(index) {
            self.overflowed += 1;
        }
        Slot { pool, backend: Some(index) }
    }

    fn window_start(&self, timestamp_ms: i64) -> i64 {
        timestamp_ms.div_euclid(self.config.window_ms) * self.config.window_ms
    }

    fn new_window(&mut self, start_ms: i64) -> OpenWindow {
        match self.spare.pop() {
            Some(mut window) => {
                window.start_ms = start_ms;
                window
            }
            None => OpenWindow { start_ms, pools: Vec::new() },
        }
    }

    /// Counts one request. Windows that can no longer receive lines are closed into `closed`.
    pub fn add(
        &mut self,
        timestamp_ms: i64,
        slot: Slot,
        outcome: Outcome,
        closed: &mut Vec<WindowSummary>,
    ) -> Admission {
        let start = self.window_start(timestamp_ms);
        if let Some(back) = self.open.back()
            && start - back.start_ms > MAX_EMPTY_WINDOWS * self.config.window_ms
        {
            // A long gap in the log: close what is open rather than fill the gap.
            self.close_all(closed);
        }
        if self.open.is_empty() {
            let window = self.new_window(start);
            self.open.push_back(window);
        }
        let front_start = self.open.front().map_or(start, |w| w.start_ms);
        if start < front_start {
            self.late += 1;
            return Admission::Late;
        }
        while let Some(back_start) = self.open.back().map(|w| w.start_ms).filter(|&s| s < start) {
            let window = self.new_window(back_start + self.config.window_ms);
            self.open.push_back(window);
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // start >= front_start
        let offset = ((start - front_start) / self.config.window_ms) as usize;
        let window = &mut self.open[offset];
        let pool_index = slot.pool as usize;
        if window.pools.len() <= pool_index {
            window.pools.resize_with(pool_index + 1, PoolSlot::default);
        }
        let pool = &mut window.pools[pool_index];
        let names = &mut self.backends[pool_index];
        match slot.backend {
            None => pool.no_backend += 1,
            Some(backend) => {
                let stats = pool.touch(backend, window.start_ms, names);
                stats.requests += 1;
                stats.errors += u64::from(outcome.is_error);
                stats.retried += u64::from(outcome.retried);
                if let Some(latency) = outcome.latency_s {
                    stats.latency.record(latency);
                }
            }
        }
        if let Some(first) = outcome.failed_first.filter(|f| f.pool == slot.pool)
            && let Some(backend) = first.backend
            && first.backend != slot.backend
        {
            pool.touch(backend, window.start_ms, names).failed_attempts += 1;
        }
        if timestamp_ms > self.newest_event_ms {
            self.newest_event_ms = timestamp_ms;
            self.close_until(timestamp_ms - self.config.lateness_ms, closed);
        }
        Admission::Counted
    }

    /// Closes every window that ends at or before `watermark_ms`.
    pub fn close_until(&mut self, watermark_ms: i64, closed: &mut Vec<WindowSummary>) {
        while self.open.front().is_some_and(|w| w.start_ms + self.config.window_ms <= watermark_ms)
        {
            self.close_front(closed);
        }
    }

    /// Closes every open window (end of a replay, or an idle live input).
    pub fn close_all(&mut self, closed: &mut Vec<WindowSummary>) {
        while !self.open.is_empty() {
            self.close_front(closed);
        }
    }

    /// The newest event time counted, if any.
    pub fn newest_event_ms(&self) -> Option<i64> {
        (self.newest_event_ms != i64::MIN).then_some(self.newest_event_ms)
    }

    /// End of the newest open window, if any.
    pub fn newest_window_end(&self) -> Option<i64> {
        self.open.back().map(|w| w.start_ms + self.config.window_ms)
    }

    fn close_front(&mut self, closed: &mut Vec<WindowSummary>) {
        let Some(mut window) = self.open.pop_front() else { return };
        // Once a minute of event time, forget the backends silent for `forget_ms`.
        if window.start_ms.saturating_sub(self.last_sweep_ms) >= 60_000 {
            self.last_sweep_ms = window.start_ms;
            let before = window.start_ms.saturating_sub(self.config.forget_ms);
            self.forgotten +=
                self.backends.iter_mut().map(|p| p.forget_before(before)).sum::<u64>();
        }
        for (pool_index, pool_name) in self.pool_names.iter().enumerate() {
            let mut summary = WindowSummary {
                pool: pool_name.clone(),
                start_ms: window.start_ms,
                end_ms: window.start_ms + self.config.window_ms,
                backends: Vec::new(),
                no_backend: 0,
            };
            if let Some(pool) = window.pools.get_mut(pool_index) {
                summary.no_backend = std::mem::take(&mut pool.no_backend);
                // In first-seen order, as the backends were interned.
                pool.touched.sort_unstable();
                summary.backends.reserve(pool.touched.len());
                let names = &self.backends[pool_index];
                for &backend_index in &pool.touched {
                    let backend_index = backend_index as usize;
                    let stats = &mut pool.backends[backend_index];
                    let latency = stats.latency.to_sketch();
                    let name = names.names[backend_index].clone();
                    summary.backends.push(BackendSummary {
                        backend: name.unwrap_or_else(|| Arc::from(OVERFLOW_BACKEND)),
                        id: backend_index as u32,
                        requests: stats.requests,
                        errors: stats.errors,
                        retried: stats.retried,
                        failed_attempts: stats.failed_attempts,
                        p50_ms: latency.quantile_ms(0.5),
                        p99_ms: latency.quantile_ms(0.99),
                        latency,
                    });
                    stats.requests = 0;
                    stats.errors = 0;
                    stats.retried = 0;
                    stats.failed_attempts = 0;
                    stats.latency.clear();
                }
                pool.touched.clear();
            }
            // A pool that has never named a backend and saw nothing now (an input's default
            // pool when every line names its own) has no window to report.
            if self.backends[pool_index].names.is_empty() && summary.no_backend == 0 {
                continue;
            }
            closed.push(summary);
        }
        self.spare.push(window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(is_error: bool, retried: bool, latency_s: Option<f64>) -> Outcome {
        Outcome { is_error, retried, latency_s, failed_first: None }
    }

    const CONFIG: WindowConfig = WindowConfig {
        window_ms: 10_000,
        lateness_ms: 5_000,
        forget_ms: 600_000,
        max_backends: 1000,
    };

    #[test]
    fn silent_backends_are_forgotten_and_a_pool_over_its_cap_overflows() {
        let mut windower = Windower::new(WindowConfig { max_backends: 130, ..CONFIG });
        let pool = windower.pool(b"api");
        let mut closed = Vec::new();
        // An hour of churn: 10 new backends a minute, each serving for 6 seconds.
        for second in 0..3600i64 {
            let name = format!("10.1.{}.{}:80", second / 60 / 25, second / 6 % 250);
            let slot = windower.slot(pool, Some(name.as_bytes()));
            windower.add(second * 1000, slot, outcome(false, false, Some(0.01)), &mut closed);
        }
        assert!(windower.forgotten() > 400, "{}", windower.forgotten());
        // Those of the last 10 minutes, and a minute's worth more until the next sweep.
        assert!(windower.backends_held() <= 120, "{}", windower.backends_held());
        assert_eq!(windower.overflowed(), 0);
        // A burst of 200 distinct backends at once: the cap holds, the rest overflow.
        for i in 0..200u32 {
            let slot = windower.slot(pool, Some(format!("10.9.0.{i}:80").as_bytes()));
            windower.add(3_600_000, slot, outcome(false, false, None), &mut closed);
        }
        assert_eq!(windower.backends_held(), 130);
        assert!(windower.overflowed() > 0);
        assert_eq!(windower.take_newly_overflowing().len(), 1, "reported once");
        assert!(windower.take_newly_overflowing().is_empty());
        windower.close_all(&mut closed);
        let last = closed.last().unwrap();
        assert!(last.backends.iter().any(|b| &*b.backend == OVERFLOW_BACKEND));
    }

    #[test]
    fn the_first_sweep_forgets_no_backend_with_requests_in_an_open_window() {
        let mut windower = Windower::new(CONFIG);
        let pool = windower.pool(b"api");
        let mut closed = Vec::new();
        // Two windows open at once (lateness), backends first seen in each.
        for (at, name) in [(1_000, "a:80"), (9_000, "b:80"), (12_000, "c:80"), (14_000, "a:80")] {
            let slot = windower.slot(pool, Some(name.as_bytes()));
            windower.add(at, slot, outcome(false, false, None), &mut closed);
        }
        let c = windower.slot(pool, Some(b"c:80"));
        windower.add(16_000, c, outcome(false, false, None), &mut closed);
        assert_eq!(closed.len(), 1, "the first window closed, sweeping as it did");
        windower.close_all(&mut closed);
        let names: Vec<Vec<&str>> =
            closed.iter().map(|w| w.backends.iter().map(|b| &*b.backend).collect()).collect();
        assert_eq!(names, [vec!["a:80", "b:80"], vec!["a:80", "c:80"]]);
        assert_eq!(windower.forgotten(), 0);
    }

    #[test]
    fn a_windower_survives_a_round_trip() {
        let mut windower = Windower::new(CONFIG);
        let pool = windower.pool(b"api");
        let a = windower.slot(pool, Some(b"a:80"));
        let mut closed = Vec::new();
        windower.add(1_000, a, outcome(true, false, Some(0.02)), &mut closed);
        let text = serde_json::to_string(&windower).unwrap();
        let mut restored: Windower =
            serde_json::from_str::<Windower>(&text).unwrap().restored(CONFIG);
        let b = restored.slot(pool, Some(b"b:80"));
        assert_eq!(restored.slot(pool, Some(b"a:80")), a, "names keep their slots");
        restored.add(2_000, b, outcome(false, false, Some(0.01)), &mut closed);
        restored.close_all(&mut closed);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].total_requests(), 2);
        assert_eq!(closed[0].backends[0].errors, 1);
        assert!(closed[0].backends[0].p50_ms.is_some_and(|ms| (ms - 20.0).abs() < 1.0));
    }

    #[test]
    fn an_unused_default_pool_reports_no_windows() {
        let mut windower = Windower::new(CONFIG);
        let _default = windower.pool(b"input.log");
        let named = windower.pool(b"be_api");
        let slot = windower.slot(named, Some(b"be_api/s1"));
        let mut closed = Vec::new();
        for second in 0..30 {
            windower.add(second * 1000, slot, outcome(false, false, Some(0.01)), &mut closed);
        }
        windower.close_all(&mut closed);
        assert!(!closed.is_empty());
        assert!(closed.iter().all(|w| &*w.pool == "be_api"), "{closed:?}");
    }

    #[test]
    fn histogram_quantiles_are_within_a_few_percent() {
        let mut histogram = LatencyHistogram::default();
        for i in 1..=1000 {
            histogram.record(f64::from(i) / 1000.0); // 1 ms .. 1 s
        }
        let p50 = histogram.quantile_ms(0.5).unwrap();
        let p99 = histogram.quantile_ms(0.99).unwrap();
        assert!((p50 - 500.0).abs() / 500.0 < 0.04, "p50 {p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.04, "p99 {p99}");
        assert_eq!(LatencyHistogram::default().quantile_ms(0.5), None);
        histogram.record(0.0);
        histogram.record(1e9);
        histogram.record(f64::NAN);
    }

    #[test]
    fn windows_close_after_lateness_and_late_lines_are_counted() {
        let mut windower = Windower::new(CONFIG);
        let pool = windower.pool(b"api");
        let a = windower.slot(pool, Some(b"a:80"));
        let b = windower.slot(pool, Some(b"b:80"));
        let mut closed = Vec::new();
        assert_eq!(
            windower.add(1_000, a, outcome(false, false, Some(0.01)), &mut closed),
            Admission::Counted
        );
        assert_eq!(
            windower.add(12_000, b, outcome(true, false, None), &mut closed),
            Admission::Counted
        );
        // 9 s is within lateness: the first window is still open.
        assert_eq!(
            windower.add(9_000, b, outcome(false, true, None), &mut closed),
            Admission::Counted
        );
        assert!(closed.is_empty());
        windower.add(15_000, a, outcome(false, false, None), &mut closed);
        assert_eq!(closed.len(), 1);
        let first = &closed[0];
        assert_eq!((first.start_ms, first.end_ms, first.total_requests()), (0, 10_000, 2));
        assert_eq!(first.backends[1].retried, 1);
        // Now 9 s is too late.
        assert_eq!(
            windower.add(9_500, a, outcome(false, false, None), &mut closed),
            Admission::Late
        );
        assert_eq!(windower.late(), 1);
        windower.close_all(&mut closed);
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[1].backends.iter().map(|b| b.errors).sum::<u64>(), 1);
    }

    #[test]
    fn a_failed_first_attempt_counts_for_the_backend_tried_first() {
        let mut windower = Windower::new(CONFIG);
        let pool = windower.pool(b"api");
        let (a, b) = (windower.slot(pool, Some(b"a:80")), windower.slot(pool, Some(b"b:80")));
        let mut closed = Vec::new();
        let retried = Outcome { retried: true, failed_first: Some(a), ..Outcome::default() };
        windower.add(1_000, b, retried, &mut closed);
        windower.add(2_000, b, retried, &mut closed);
        windower.close_all(&mut closed);
        let backends = &closed[0].backends;
        let of = |name: &str| backends.iter().find(|s| &*s.backend == name).unwrap();
        assert_eq!((of("a:80").requests, of("a:80").failed_attempts), (0, 2));
        assert_eq!(
            (of("b:80").requests, of("b:80").retried, of("b:80").failed_attempts),
            (2, 2, 0)
        );
    }

    #[test]
    fn gaps_emit_empty_windows_but_long_gaps_do_not() {
        let mut windower = Windower::new(CONFIG);
        let pool = windower.pool(b"api");
        let a = windower.slot(pool, Some(b"a:80"));
        let none = windower.slot(pool, None);
        let mut closed = Vec::new();
        windower.add(0, a, outcome(false, false, None), &mut closed);
        windower.add(40_000, none, outcome(false, false, None), &mut closed);
        windower.close_all(&mut closed);
        assert_eq!(closed.len(), 5);
        assert_eq!(closed[4].no_backend, 1);
        closed.clear();
        windower.add(100_000_000, a, outcome(false, false, None), &mut closed);
        windower.close_all(&mut closed);
        assert_eq!(closed.len(), 1);
    }
}
