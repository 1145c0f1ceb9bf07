//! Delivery metrics per sink, in prometheus-client families so `/metrics` can export them
//! as they are: sent, failed and retried by reason, dropped, expired, queue depth, latency,
//! and whether the sink is up (its circuit closed).

use crate::pipeline::DeliveryTotals;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A sink.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    /// Its name.
    pub sink: String,
}

/// A sink and why.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkReason {
    /// Its name.
    pub sink: String,
    /// `timeout`, `connection`, `dns`, `tls`, `rate_limited`, `server_error`, `client_error`,
    /// `auth_error`, `gone`, `redirect`, `io`.
    pub reason: String,
}

/// Every reason label, for totals.
pub const REASONS: [&str; 11] = [
    "timeout",
    "connection",
    "dns",
    "tls",
    "rate_limited",
    "server_error",
    "client_error",
    "auth_error",
    "gone",
    "redirect",
    "io",
];

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The families (cloning shares them).
#[derive(Debug, Clone)]
pub struct AlertMetrics {
    /// Messages delivered.
    pub sent: Family<SinkLabel, Counter>,
    /// Messages refused for good, by reason.
    pub failed: Family<SinkReason, Counter>,
    /// Attempts that will be retried, by reason.
    pub retried: Family<SinkReason, Counter>,
    /// Messages dropped from a full queue.
    pub dropped: Family<SinkLabel, Counter>,
    /// Messages not delivered within the TTL.
    pub expired: Family<SinkLabel, Counter>,
    /// Messages pending.
    pub queue_depth: Family<SinkLabel, Gauge>,
    /// Seconds per HTTP attempt.
    pub latency: Family<SinkLabel, Histogram, fn() -> Histogram>,
    /// 1 while the sink's circuit is closed.
    pub up: Family<SinkLabel, Gauge>,
}

impl Default for AlertMetrics {
    fn default() -> Self {
        AlertMetrics {
            sent: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            dropped: Family::default(),
            expired: Family::default(),
            queue_depth: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            up: Family::default(),
        }
    }
}

impl AlertMetrics {
    /// Registers the families under `skewtail_notifications_*`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "skewtail_notifications_sent",
            "Messages a sink accepted",
            self.sent.clone(),
        );
        registry.register(
            "skewtail_notifications_failed",
            "Messages refused for good, by reason",
            self.failed.clone(),
        );
        registry.register(
            "skewtail_notifications_retried",
            "Attempts to be retried, by reason",
            self.retried.clone(),
        );
        registry.register(
            "skewtail_notifications_dropped",
            "Messages dropped from a full queue",
            self.dropped.clone(),
        );
        registry.register(
            "skewtail_notifications_expired",
            "Messages not delivered within the TTL",
            self.expired.clone(),
        );
        registry.register(
            "skewtail_notifications_queue_depth",
            "Messages pending per sink",
            self.queue_depth.clone(),
        );
        registry.register(
            "skewtail_notification_attempt_seconds",
            "Time per delivery attempt",
            self.latency.clone(),
        );
        registry.register(
            "skewtail_sink_up",
            "1 while the sink's circuit is closed",
            self.up.clone(),
        );
    }

    /// Creates `sink`'s series at zero, so a scrape shows every sink (and every failure
    /// reason) from the start rather than a series that appears with its first event.
    pub fn init_sink(&self, sink: &str) {
        let label = SinkLabel { sink: sink.to_string() };
        let _ = self.sent.get_or_create(&label);
        let _ = self.dropped.get_or_create(&label);
        let _ = self.expired.get_or_create(&label);
        let _ = self.queue_depth.get_or_create(&label);
        let _ = self.latency.get_or_create(&label);
        let _ = self.up.get_or_create(&label);
        for reason in REASONS {
            let key = SinkReason { sink: sink.to_string(), reason: reason.to_string() };
            let _ = self.failed.get_or_create(&key);
            let _ = self.retried.get_or_create(&key);
        }
    }

    /// Totals for `sinks`.
    pub fn totals(&self, sinks: &[String]) -> DeliveryTotals {
        let mut totals = DeliveryTotals::default();
        for sink in sinks {
            let label = SinkLabel { sink: sink.clone() };
            totals.delivered += self.sent.get_or_create(&label).get();
            totals.dropped += self.dropped.get_or_create(&label).get();
            totals.expired += self.expired.get_or_create(&label).get();
            for reason in REASONS {
                let key = SinkReason { sink: sink.clone(), reason: reason.to_string() };
                totals.failed += self.failed.get_or_create(&key).get();
            }
        }
        totals
    }
}
