//! Metrics: what `/metrics` says about the sidecar. The ingest loop keeps a [`View`] up to
//! date once per closed window and once per turn (never per line), and a scrape encodes it in
//! the OpenMetrics text format with `prometheus-client`, next to the delivery metrics of the
//! sinks.
//!
//! Per-backend series are what a fleet's Prometheus sums across sidecars (the recording rules
//! in `deploy/prometheus/`): requests, 5xx, a latency histogram with a fixed bucket set, the
//! last window's share and the expected share. Their number is bounded: a pool has at most
//! `metrics_max_backends` backends with series of their own (the rest are summed under
//! `_other`), and a backend silent for `forget_after_s` of event time loses its series, as
//! the windower and the detector forget it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::alert::AlertMetrics;
use crate::detect::StillFiring;
use crate::pipeline::LineCounts;
use crate::window::{WindowSummary, bucket_midpoint_ms};

/// Upper bounds of the latency histogram, seconds: Prometheus's default set, so that fleet
/// dashboards can sum buckets across sidecars.
pub const LATENCY_BUCKETS_S: [f64; 11] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The backend label of the backends beyond a pool's series cap, summed.
pub const OTHER_BACKENDS: &str = "_other";

/// Longest label value kept as is; longer names end in a hash of the whole (still unique).
const MAX_LABEL_CHARS: usize = 256;

/// One backend's series.
#[derive(Debug, Clone, Default)]
struct BackendSeries {
    requests: u64,
    errors: u64,
    /// Per-bucket counts (not cumulative), then the requests over the last bound.
    buckets: [u64; LATENCY_BUCKETS_S.len() + 1],
    latency_sum_s: f64,
    /// Share of the pool's requests in the pool's last window.
    share: f64,
    expected: Option<f64>,
    /// End of the last window it served in, event time.
    last_served_ms: i64,
}

impl BackendSeries {
    fn add(&mut self, requests: u64, errors: u64, window: &crate::window::BackendSummary) {
        self.requests += requests;
        self.errors += errors;
        for (bucket, count) in window.latency.iter() {
            let seconds = bucket_midpoint_ms(bucket) / 1000.0;
            let index = LATENCY_BUCKETS_S.iter().position(|le| seconds <= *le);
            self.buckets[index.unwrap_or(LATENCY_BUCKETS_S.len())] += count;
            self.latency_sum_s += seconds * count as f64;
        }
    }
}

/// One pool's series.
#[derive(Debug, Default)]
struct PoolSeries {
    backends: FxHashMap<Arc<str>, BackendSeries>,
    /// Backends beyond the cap, summed.
    other: Option<BackendSeries>,
    /// When backends were last looked at for forgetting, event time.
    last_sweep_ms: i64,
}

/// One input's tail lag.
#[derive(Debug, Clone, Copy, Default)]
struct Lag {
    bytes: u64,
    /// Newest event time read, Unix ms.
    newest_event_ms: Option<i64>,
}

/// A firing alert, as `/api/v1/alerts` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FiringAlert {
    /// The pool.
    pub pool: String,
    /// The backend (`*`: the whole pool).
    pub backend: String,
    /// `skew`, `drop`, `spike`, `errors`, `latency`, `unexpected`.
    pub kind: String,
    /// `over` or `under` for skews.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// When it began, RFC 3339.
    pub since: String,
}

impl FiringAlert {
    fn from_detector(firing: &StillFiring) -> Self {
        let mut words = firing.what.split(' ');
        let kind = words.next().unwrap_or_default().to_string();
        FiringAlert {
            pool: firing.pool.to_string(),
            backend: firing.backend.to_string(),
            kind,
            direction: words.next().map(str::to_string),
            since: crate::parse::time::format_rfc3339(firing.since_ms),
        }
    }
}

/// Everything the endpoint shows, as of the ingest loop's last update.
#[derive(Debug, Default)]
struct View {
    lines: BTreeMap<String, LineCounts>,
    lag: BTreeMap<String, Lag>,
    /// Lines dropped before reading, per input (a syslog socket's, while the loop was behind).
    dropped: BTreeMap<String, u64>,
    pools: BTreeMap<Arc<str>, PoolSeries>,
    /// Firing alerts per (pool, kind); kept at 0 once resolved, so the series ends at 0.
    firing: BTreeMap<(String, String), u64>,
    alerts: Vec<FiringAlert>,
    checkpoint_ms: Option<i64>,
    backends_held: u64,
}

/// The sidecar's metrics, shared by the ingest loop (writer) and the endpoint (reader).
#[derive(Debug)]
pub struct LiveMetrics {
    view: Mutex<View>,
    max_backends: usize,
    forget_ms: i64,
}

impl LiveMetrics {
    /// Metrics with at most `max_backends` per pool with series of their own, forgetting
    /// backends silent for `forget_ms` of event time.
    pub fn new(max_backends: usize, forget_ms: i64) -> Self {
        LiveMetrics { view: Mutex::new(View::default()), max_backends, forget_ms }
    }

    fn view(&self) -> MutexGuard<'_, View> {
        // A panic while the lock was held cannot leave the view inconsistent in a way that
        // matters for a scrape: keep serving it.
        self.view.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A registry with these metrics and the sinks' delivery metrics.
    pub fn registry(self: &Arc<Self>, alerts: &AlertMetrics) -> Registry {
        let mut registry = Registry::default();
        alerts.register(&mut registry);
        registry.register_collector(Box::new(self.clone()));
        registry
    }

    /// Counts a closed window.
    pub fn window(&self, window: &WindowSummary) {
        let total = window.total_requests();
        let mut view = self.view();
        let pool = view.pools.entry(window.pool.clone()).or_default();
        for series in pool.backends.values_mut() {
            series.share = 0.0;
        }
        if let Some(other) = &mut pool.other {
            other.share = 0.0;
        }
        for backend in &window.backends {
            let share = if total > 0 { backend.requests as f64 / total as f64 } else { 0.0 };
            let series = if pool.backends.contains_key(&backend.backend)
                || pool.backends.len() < self.max_backends
            {
                pool.backends.entry(backend.backend.clone()).or_default()
            } else {
                pool.other.get_or_insert_with(BackendSeries::default)
            };
            series.add(backend.requests, backend.errors, backend);
            series.share += share;
            series.last_served_ms = window.end_ms;
        }
        if window.end_ms - pool.last_sweep_ms >= 60_000 {
            let horizon = window.end_ms - self.forget_ms;
            pool.backends.retain(|_, s| s.last_served_ms >= horizon || s.expected.is_some());
            pool.last_sweep_ms = window.end_ms;
        }
    }

    /// Sets a pool's expected shares (configured backends that never served included).
    pub fn expected(&self, pool: &Arc<str>, expected: &[(Arc<str>, f64)]) {
        let mut view = self.view();
        let series = view.pools.entry(pool.clone()).or_default();
        for s in series.backends.values_mut() {
            s.expected = None;
        }
        let mut other = 0.0;
        for (backend, share) in expected {
            if series.backends.contains_key(backend) || series.backends.len() < self.max_backends {
                series.backends.entry(backend.clone()).or_default().expected = Some(*share);
            } else {
                other += share;
            }
        }
        if let Some(s) = &mut series.other {
            s.expected = Some(other);
        }
    }

    /// Sets what became of each input's lines.
    pub fn lines<'a>(&self, inputs: impl Iterator<Item = (&'a str, LineCounts)>) {
        let mut view = self.view();
        for (name, counts) in inputs {
            view.lines.insert(name.to_string(), counts);
        }
    }

    /// Sets an input's tail lag: bytes not read yet, and the newest event time read.
    pub fn lag(&self, input: &str, bytes: u64, newest_event_ms: Option<i64>) {
        self.view().lag.insert(input.to_string(), Lag { bytes, newest_event_ms });
    }

    /// Sets how many lines an input dropped before they could be read.
    pub fn dropped(&self, input: &str, lines: u64) {
        self.view().dropped.insert(input.to_string(), lines);
    }

    /// Sets the firing alerts.
    pub fn firing(&self, firing: &[StillFiring]) {
        let mut view = self.view();
        for count in view.firing.values_mut() {
            *count = 0;
        }
        view.alerts = firing.iter().map(FiringAlert::from_detector).collect();
        let keys: Vec<(String, String)> =
            view.alerts.iter().map(|a| (a.pool.clone(), a.kind.clone())).collect();
        for key in keys {
            *view.firing.entry(key).or_insert(0) += 1;
        }
    }

    /// Notes a saved snapshot, wall-clock ms.
    pub fn checkpointed(&self, at_ms: i64) {
        self.view().checkpoint_ms = Some(at_ms);
    }

    /// Sets how many backends the detector holds.
    pub fn backends_held(&self, n: usize) {
        self.view().backends_held = n as u64;
    }

    /// The firing alerts, for `/api/v1/alerts`.
    pub fn alerts(&self) -> Vec<FiringAlert> {
        self.view().alerts.clone()
    }
}

/// A label value from a log: as is when short, else a prefix and a hash of the whole.
fn label(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().count() <= MAX_LABEL_CHARS {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(crate::text::bounded_key(name, MAX_LABEL_CHARS))
    }
}

/// A label set of string pairs.
type Labels<'a> = [(&'static str, std::borrow::Cow<'a, str>); 2];

impl Collector for LiveMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let now_ms = crate::clock::wall_clock_ms();
        let view = self.view();

        let mut family = encoder.encode_descriptor(
            "skewtail_lines",
            "Lines read, by what became of them (counted, late, unparsed, other, too_long)",
            None,
            MetricType::Counter,
        )?;
        for (input, counts) in &view.lines {
            let results = [
                ("counted", counts.parsed.saturating_sub(counts.late)),
                ("late", counts.late),
                ("unparsed", counts.unparsed),
                ("other", counts.other),
                ("too_long", counts.too_long),
            ];
            for (result, value) in results {
                let labels: Labels<'_> = [("input", label(input)), ("result", result.into())];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }

        let backends = || {
            view.pools.iter().flat_map(|(pool, series)| {
                series
                    .backends
                    .iter()
                    .map(move |(name, s)| (pool, label(name), s))
                    .chain(series.other.iter().map(move |s| (pool, OTHER_BACKENDS.into(), s)))
            })
        };
        let mut family = encoder.encode_descriptor(
            "skewtail_backend_requests",
            "Requests whose final response came from the backend",
            None,
            MetricType::Counter,
        )?;
        for (pool, backend, s) in backends() {
            let labels: Labels<'_> = [("pool", label(pool)), ("backend", backend)];
            ConstCounter::new(s.requests).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "skewtail_backend_errors",
            "Of those, responses with a 5xx status",
            None,
            MetricType::Counter,
        )?;
        for (pool, backend, s) in backends() {
            let labels: Labels<'_> = [("pool", label(pool)), ("backend", backend)];
            ConstCounter::new(s.errors).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "skewtail_backend_latency_seconds",
            "Backend response time as the balancer logged it",
            None,
            MetricType::Histogram,
        )?;
        for (pool, backend, s) in backends() {
            let labels: Labels<'_> = [("pool", label(pool)), ("backend", backend)];
            // Per-bucket counts: the encoder makes them cumulative.
            let buckets: Vec<(f64, u64)> =
                LATENCY_BUCKETS_S.iter().copied().chain([f64::INFINITY]).zip(s.buckets).collect();
            let count = s.buckets.iter().sum();
            family.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                s.latency_sum_s,
                count,
                &buckets,
                None,
            )?;
        }
        let mut family = encoder.encode_descriptor(
            "skewtail_backend_share",
            "The backend's share of its pool's requests in the pool's last closed window",
            None,
            MetricType::Gauge,
        )?;
        for (pool, backend, s) in backends() {
            let labels: Labels<'_> = [("pool", label(pool)), ("backend", backend)];
            ConstGauge::new(s.share).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "skewtail_backend_expected_share",
            "The share the detector expects (configured weights, or the learned baseline)",
            None,
            MetricType::Gauge,
        )?;
        for (pool, backend, s) in backends() {
            if let Some(expected) = s.expected {
                let labels: Labels<'_> = [("pool", label(pool)), ("backend", backend)];
                ConstGauge::new(expected).encode(family.encode_family(&labels)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "skewtail_alerts_firing",
            "Alerts firing now, per pool and kind",
            None,
            MetricType::Gauge,
        )?;
        for ((pool, kind), count) in &view.firing {
            let labels: Labels<'_> = [("pool", label(pool)), ("kind", kind.as_str().into())];
            ConstGauge::new(*count as i64).encode(family.encode_family(&labels)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "skewtail_input_dropped",
            "Lines dropped before they were read: syslog datagrams that came while the ingest loop was behind",
            None,
            MetricType::Counter,
        )?;
        for (input, lines) in &view.dropped {
            let labels = [("input", label(input))];
            ConstCounter::new(*lines).encode(family.encode_family(&labels)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "skewtail_tail_lag_bytes",
            "Bytes written to the input's files and not read yet",
            None,
            MetricType::Gauge,
        )?;
        for (input, lag) in &view.lag {
            let labels = [("input", label(input))];
            ConstGauge::new(lag.bytes as i64).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "skewtail_tail_lag_seconds",
            "While bytes are unread: wall-clock time minus the newest event time read (0 when caught up)",
            None,
            MetricType::Gauge,
        )?;
        for (input, lag) in &view.lag {
            let behind = match lag.newest_event_ms {
                Some(newest) if lag.bytes > 0 => (now_ms - newest).max(0) as f64 / 1000.0,
                _ => 0.0,
            };
            let labels = [("input", label(input))];
            ConstGauge::new(behind).encode(family.encode_family(&labels)?)?;
        }
        if let Some(at) = view.checkpoint_ms {
            let gauge = ConstGauge::new((now_ms - at).max(0) as f64 / 1000.0);
            gauge.encode(encoder.encode_descriptor(
                "skewtail_checkpoint_age_seconds",
                "Seconds since the state was last saved",
                None,
                gauge.metric_type(),
            )?)?;
        }
        let gauge = ConstGauge::new(view.backends_held as i64);
        gauge.encode(encoder.encode_descriptor(
            "skewtail_backends_held",
            "Backends the detector remembers, over all pools",
            None,
            gauge.metric_type(),
        )?)?;
        let mut family = encoder.encode_descriptor(
            "skewtail_build_info",
            "The running version",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("version", env!("CARGO_PKG_VERSION"))];
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{BackendSummary, LatencySketch};

    fn window(pool: &str, end_ms: i64, backends: &[(&str, u64, u64)]) -> WindowSummary {
        WindowSummary {
            pool: Arc::from(pool),
            start_ms: end_ms - 10_000,
            end_ms,
            backends: backends
                .iter()
                .enumerate()
                .map(|(id, (name, requests, errors))| BackendSummary {
                    backend: Arc::from(*name),
                    id: id as u32,
                    requests: *requests,
                    errors: *errors,
                    retried: 0,
                    failed_attempts: 0,
                    p50_ms: None,
                    p99_ms: None,
                    latency: LatencySketch::from_latencies_ms(&vec![30.0; *requests as usize]),
                })
                .collect(),
            no_backend: 0,
        }
    }

    fn scrape(metrics: &Arc<LiveMetrics>) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(
            &mut text,
            &metrics.registry(&AlertMetrics::default()),
        )
        .unwrap();
        text
    }

    #[test]
    fn counts_shares_and_histograms_follow_the_windows() {
        let metrics = Arc::new(LiveMetrics::new(10, 1_800_000));
        metrics.window(&window("api", 10_000, &[("a:80", 30, 3), ("b:80", 10, 0)]));
        metrics.window(&window("api", 20_000, &[("a:80", 20, 0), ("b:80", 20, 1)]));
        metrics.expected(&Arc::from("api"), &[(Arc::from("a:80"), 0.5), (Arc::from("b:80"), 0.5)]);
        let text = scrape(&metrics);
        assert!(
            text.contains(r#"skewtail_backend_requests_total{pool="api",backend="a:80"} 50"#),
            "{text}"
        );
        assert!(text.contains(r#"skewtail_backend_errors_total{pool="api",backend="b:80"} 1"#));
        assert!(text.contains(r#"skewtail_backend_share{pool="api",backend="a:80"} 0.5"#));
        assert!(text.contains(r#"skewtail_backend_expected_share{pool="api",backend="b:80"} 0.5"#));
        // 30 ms requests fall in the 0.05 s bucket, not the 0.025 s one.
        assert!(text.contains(
            r#"skewtail_backend_latency_seconds_bucket{le="0.025",pool="api",backend="a:80"} 0"#
        ));
        assert!(text.contains(
            r#"skewtail_backend_latency_seconds_bucket{le="0.05",pool="api",backend="a:80"} 50"#
        ));
        assert!(
            text.contains(
                r#"skewtail_backend_latency_seconds_count{pool="api",backend="a:80"} 50"#
            )
        );
    }

    #[test]
    fn series_are_capped_per_pool_and_forgotten_after_silence() {
        let metrics = Arc::new(LiveMetrics::new(2, 120_000));
        metrics.window(&window(
            "api",
            60_000,
            &[("a", 1, 0), ("b", 1, 0), ("c", 5, 0), ("d", 2, 0)],
        ));
        let text = scrape(&metrics);
        assert_eq!(text.matches("skewtail_backend_requests_total{").count(), 3, "{text}");
        assert!(text.contains(r#"skewtail_backend_requests_total{pool="api",backend="_other"} 7"#));
        // Only `a` keeps serving; `b` is forgotten after 120 s of event time.
        for minute in 2..=5 {
            metrics.window(&window("api", minute * 60_000, &[("a", 1, 0)]));
        }
        let text = scrape(&metrics);
        assert!(!text.contains(r#"backend="b""#), "{text}");
        assert!(text.contains(r#"backend="a""#));
    }

    #[test]
    fn names_from_logs_are_escaped_and_bounded() {
        let metrics = Arc::new(LiveMetrics::new(10, 1_800_000));
        let long = "x".repeat(100_000);
        metrics.window(&window(
            "api",
            10_000,
            &[("evil\"} 1\nfake_metric 2", 1, 0), (&long, 1, 0)],
        ));
        let text = scrape(&metrics);
        assert!(!text.lines().any(|l| l.starts_with("fake_metric")), "{text}");
        assert!(text.contains(r#"backend="evil\"} 1\nfake_metric 2""#));
        assert!(text.lines().all(|l| l.len() < 1000));
    }

    #[test]
    fn firing_alerts_are_counted_and_listed() {
        let metrics = Arc::new(LiveMetrics::new(10, 1_800_000));
        let firing = StillFiring {
            pool: Arc::from("api"),
            backend: Arc::from("a:80"),
            what: "skew over",
            since_ms: 1_700_000_000_000,
        };
        metrics.firing(std::slice::from_ref(&firing));
        assert!(scrape(&metrics).contains(r#"skewtail_alerts_firing{pool="api",kind="skew"} 1"#));
        assert_eq!(metrics.alerts()[0].direction.as_deref(), Some("over"));
        metrics.firing(&[]);
        assert!(scrape(&metrics).contains(r#"skewtail_alerts_firing{pool="api",kind="skew"} 0"#));
        assert!(metrics.alerts().is_empty());
    }
}
