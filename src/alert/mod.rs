//! Alert: delivers alert state changes to sinks without ever blocking detection.
//!
//! Each sink gets its own bounded queue and its own task. [`Dispatcher::send`] only pushes onto
//! those queues: when a queue is full the *oldest* pending alert is dropped and counted (a stale
//! page is worth less than a fresh one), so a webhook that is down can never stall ingestion.
//! Only this module knows the wire formats.

mod webhook;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

pub use webhook::{DeliveryError, WebhookSink};

use crate::detect::AlertEvent;

/// An alert as it goes on the wire: the event plus a type tag and its fingerprint.
#[derive(Debug, Serialize)]
pub struct AlertMessage<'a> {
    /// Always `"alert"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The event.
    #[serde(flatten)]
    pub event: &'a AlertEvent,
    /// Stable identity of the anomaly, shared by its firing and resolved messages.
    pub fingerprint: String,
}

impl<'a> AlertMessage<'a> {
    /// Wraps an event.
    pub fn new(event: &'a AlertEvent) -> Self {
        AlertMessage { kind: "alert", event, fingerprint: event.fingerprint() }
    }
}

/// A destination for alerts.
#[derive(Debug)]
pub enum Sink {
    /// POST JSON to a URL.
    Webhook(WebhookSink),
    /// Print NDJSON to standard output.
    Stdout,
}

impl Sink {
    fn name(&self) -> String {
        match self {
            Sink::Webhook(webhook) => webhook.name().to_string(),
            Sink::Stdout => "stdout".to_string(),
        }
    }

    async fn deliver(&self, event: &AlertEvent) -> Result<(), DeliveryError> {
        match self {
            Sink::Webhook(webhook) => webhook.deliver(event).await,
            Sink::Stdout => {
                let line = serde_json::to_string(&AlertMessage::new(event))
                    .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
                // One write per line keeps concurrent output from interleaving mid-line.
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")
                    .and_then(|()| out.flush())
                    .map_err(|e| DeliveryError::Permanent(e.to_string()))
            }
        }
    }
}

/// Delivery counts for one sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Alerts delivered.
    pub delivered: AtomicU64,
    /// Alerts given up on after retries, or refused permanently.
    pub failed: AtomicU64,
    /// Alerts dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// Totals over all sinks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeliveryTotals {
    /// Alerts delivered.
    pub delivered: u64,
    /// Alerts that failed.
    pub failed: u64,
    /// Alerts dropped on a full queue.
    pub dropped: u64,
    /// Alerts still queued when the run ended.
    pub undelivered: u64,
}

#[derive(Debug)]
struct Queue {
    items: Mutex<VecDeque<Arc<AlertEvent>>>,
    capacity: usize,
    notify: Notify,
    closed: std::sync::atomic::AtomicBool,
    stats: SinkStats,
    /// Set while an alert is being delivered, so draining knows when the sink is idle.
    in_flight: AtomicU64,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<AlertEvent>>> {
        // A panic while holding this lock cannot leave the deque inconsistent, so poison is moot.
        self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Fans alerts out to every sink's queue.
#[derive(Debug)]
pub struct Dispatcher {
    queues: Vec<(String, Arc<Queue>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Default queue capacity per sink.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

impl Dispatcher {
    /// Starts one delivery task per sink on `runtime`.
    pub fn start(sinks: Vec<(Sink, usize)>, runtime: &tokio::runtime::Handle) -> Self {
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for (sink, capacity) in sinks {
            let queue = Arc::new(Queue {
                items: Mutex::new(VecDeque::new()),
                capacity: capacity.max(1),
                notify: Notify::new(),
                closed: std::sync::atomic::AtomicBool::new(false),
                stats: SinkStats::default(),
                in_flight: AtomicU64::new(0),
            });
            queues.push((sink.name(), queue.clone()));
            tasks.push(runtime.spawn(run_sink(sink, queue)));
        }
        Dispatcher { queues, tasks }
    }

    /// Whether there are any sinks at all.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Queues an alert for every sink. Never blocks; a full queue drops its oldest alert.
    pub fn send(&self, event: &AlertEvent) {
        let event = Arc::new(event.clone());
        for (name, queue) in &self.queues {
            let mut items = queue.lock();
            if items.len() >= queue.capacity {
                items.pop_front();
                queue.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message = "Alert queue full; dropped the oldest pending alert.", sink = %name, capacity = queue.capacity);
            }
            items.push_back(event.clone());
            drop(items);
            queue.notify.notify_one();
        }
    }

    /// Waits up to `deadline` for the queues to empty, then stops the sink tasks.
    pub async fn shutdown(self, deadline: Duration) -> DeliveryTotals {
        let wait = async {
            loop {
                let busy = self
                    .queues
                    .iter()
                    .any(|(_, q)| !q.lock().is_empty() || q.in_flight.load(Ordering::Acquire) > 0);
                if !busy {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        let mut totals = DeliveryTotals::default();
        for (name, queue) in &self.queues {
            queue.closed.store(true, Ordering::Release);
            queue.notify.notify_one();
            let left = queue.lock().len() as u64 + queue.in_flight.load(Ordering::Acquire);
            if left > 0 {
                tracing::error!(message = "Alerts not delivered before shutdown.", sink = %name, undelivered = left);
            }
            totals.delivered += queue.stats.delivered.load(Ordering::Relaxed);
            totals.failed += queue.stats.failed.load(Ordering::Relaxed);
            totals.dropped += queue.stats.dropped.load(Ordering::Relaxed);
            totals.undelivered += left;
        }
        for task in self.tasks {
            task.abort();
        }
        totals
    }
}

async fn run_sink(sink: Sink, queue: Arc<Queue>) {
    let name = sink.name();
    loop {
        let next = {
            let mut items = queue.lock();
            let next = items.pop_front();
            if next.is_some() {
                queue.in_flight.fetch_add(1, Ordering::AcqRel);
            }
            next
        };
        let Some(event) = next else {
            if queue.closed.load(Ordering::Acquire) {
                return;
            }
            queue.notify.notified().await;
            continue;
        };
        match sink.deliver(&event).await {
            Ok(()) => {
                queue.stats.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::info!(message = "Alert delivered.", sink = %name, backend = %event.backend, state = ?event.state);
            }
            Err(error) => {
                queue.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(message = "Alert delivery failed.", sink = %name, backend = %event.backend, %error);
            }
        }
        queue.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::config::Secret;
    use crate::detect::{AlertKind, AlertState, Diagnosis, Direction, Evidence, Severity, Verdict};

    fn event(backend: &str) -> AlertEvent {
        AlertEvent {
            state: AlertState::Firing,
            kind: AlertKind::Skew,
            direction: Direction::Over,
            backend: backend.into(),
            pool: "api".into(),
            at_ms: 1_700_000_000_000,
            started_at_ms: 1_699_999_970_000,
            severity: Severity::Critical,
            summary: "test".into(),
            diagnosis: Diagnosis { verdict: Verdict::Balancer, reason: "test".into() },
            evidence: Evidence {
                observed_share: 0.5,
                expected_share: 0.25,
                ratio: 2.0,
                backend_requests: 50,
                pool_requests: 100,
                pool_backends: 4,
                p_value: 1e-9,
                pool_g_test_p_value: 1e-9,
                duration_s: 30,
                ..Evidence::blank(10)
            },
        }
    }

    /// Serves `status` to every request on 127.0.0.1 after `delay`, counting requests.
    async fn receiver(status: u16, delay: Duration) -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, hits)
    }

    fn webhook(url: String, timeout: Duration) -> Sink {
        Sink::Webhook(
            WebhookSink::new(
                "test".into(),
                Secret::new(url),
                timeout,
                3,
                Duration::from_millis(10),
            )
            .unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_error_is_permanent_and_not_retried() {
        let (url, hits) = receiver(404, Duration::ZERO).await;
        let dispatcher = Dispatcher::start(
            vec![(webhook(url, Duration::from_secs(5)), 8)],
            &tokio::runtime::Handle::current(),
        );
        dispatcher.send(&event("a:80"));
        let totals = dispatcher.shutdown(Duration::from_secs(10)).await;
        assert_eq!(totals, DeliveryTotals { delivered: 0, failed: 1, dropped: 0, undelivered: 0 });
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_drops_the_oldest_and_never_blocks() {
        // A receiver slower than the alerts: the queue (capacity 2) overflows.
        let (url, _hits) = receiver(200, Duration::from_millis(300)).await;
        let dispatcher = Dispatcher::start(
            vec![(webhook(url, Duration::from_secs(5)), 2)],
            &tokio::runtime::Handle::current(),
        );
        let started = std::time::Instant::now();
        for i in 0..10 {
            dispatcher.send(&event(&format!("b{i}:80")));
        }
        assert!(started.elapsed() < Duration::from_millis(100), "send must not wait for delivery");
        let totals = dispatcher.shutdown(Duration::from_secs(10)).await;
        assert_eq!(totals.delivered + totals.dropped, 10, "{totals:?}");
        assert!(totals.dropped >= 7, "{totals:?}");
        assert_eq!(totals.undelivered, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_receiver_times_out_and_shutdown_reports_what_is_left() {
        let (url, hits) = receiver(200, Duration::from_secs(30)).await;
        let dispatcher = Dispatcher::start(
            vec![(webhook(url, Duration::from_millis(200)), 8)],
            &tokio::runtime::Handle::current(),
        );
        dispatcher.send(&event("c:80"));
        dispatcher.send(&event("d:80"));
        let totals = dispatcher.shutdown(Duration::from_millis(500)).await;
        assert!(hits.load(Ordering::SeqCst) >= 1);
        assert_eq!(totals.delivered, 0);
        assert!(totals.undelivered + totals.failed == 2, "{totals:?}");
    }
}
