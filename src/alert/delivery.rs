//! One task per sink delivers its journal in order: the oldest message first, so a resolve
//! never overtakes its trigger. Between attempts: exponential backoff with jitter (backon),
//! or the receiver's `Retry-After`; a rate limit per sink; a circuit breaker; expiry after
//! the sink's TTL; and, when a sink has failed for a while, a meta-alert on the other sinks.
//! Nothing here can slow ingestion: the router only appends to the journal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::Notify;

use super::http::Attempt;
use super::journal::{Enqueued, Journal, Settled};
use super::metrics::{AlertMetrics, SinkLabel, SinkReason};
use super::notice::{Notice, Status, change_key};
use super::sinks::Sink;
use crate::clock::Clock;
use crate::text::for_log;

/// A sink failing this long raises a meta-alert on the others.
pub const META_ALERT_AFTER_MS: i64 = 5 * 60 * 1000;
/// Consecutive failures that open the circuit.
const BREAKER_FAILURES: u32 = 5;

/// What the delivery tasks share with the notifier.
#[derive(Debug)]
pub struct Shared {
    /// The journal.
    pub journal: Journal,
    /// Every sink, by name.
    pub sinks: BTreeMap<String, Arc<Sink>>,
    /// Wakes a sink's task (new message, shutdown).
    pub wake: BTreeMap<String, Arc<Notify>>,
    /// The metrics.
    pub metrics: AlertMetrics,
    /// The clock.
    pub clock: Clock,
    /// Set at shutdown: tasks stop once their queue is empty.
    pub closing: AtomicBool,
}

impl Shared {
    /// Queues `notices` for `sink` and wakes its task.
    pub fn enqueue(&self, sink_name: &str, notices: &[Notice]) {
        let Some(sink) = self.sinks.get(sink_name) else { return };
        let label = SinkLabel { sink: sink_name.to_string() };
        match self.journal.enqueue(sink_name, notices, self.clock.now_ms(), sink.capacity) {
            Enqueued::Duplicate => {
                tracing::debug!(message = "Already delivered or pending; not queued again.", sink = %sink_name);
                return;
            }
            Enqueued::QueuedDroppingOldest(_) => {
                self.metrics.dropped.get_or_create(&label).inc();
                tracing::error!(message = "Delivery queue full; dropped the oldest pending message.", sink = %sink_name, capacity = sink.capacity);
            }
            Enqueued::Queued(_) => {}
        }
        self.metrics.queue_depth.get_or_create(&label).set(depth(&self.journal, sink_name));
        if let Some(wake) = self.wake.get(sink_name) {
            wake.notify_one();
        }
    }
}

fn depth(journal: &Journal, sink: &str) -> i64 {
    i64::try_from(journal.depth(sink)).unwrap_or(i64::MAX)
}

/// At most `rate` messages a second, in bursts of at most `max(1, rate)`.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    tokens: f64,
    at_ms: i64,
}

impl TokenBucket {
    fn new(rate: f64, now_ms: i64) -> Self {
        TokenBucket { rate, tokens: rate.max(1.0), at_ms: now_ms }
    }

    fn refill(&mut self, now_ms: i64) {
        #[allow(clippy::cast_precision_loss)] // ms deltas are small
        let elapsed_s = (now_ms - self.at_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed_s * self.rate).min(self.rate.max(1.0));
        self.at_ms = now_ms;
    }

    fn wait_ms(&mut self, now_ms: i64) -> i64 {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            0
        } else {
            #[allow(clippy::cast_possible_truncation)] // at most a few seconds
            let wait = ((1.0 - self.tokens) / self.rate * 1000.0).ceil() as i64;
            wait.max(1)
        }
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

/// Closed → open after [`BREAKER_FAILURES`] failures in a row (or one "endpoint gone"),
/// then one probe after a cooldown that doubles from 15 s up to a minute (as the backoff:
/// once the receiver is back, delivery resumes within a minute).
#[derive(Debug, Default)]
struct Breaker {
    consecutive: u32,
    open_until_ms: i64,
    cooldown_ms: i64,
    failing_since_ms: Option<i64>,
    meta_fired: Option<Notice>,
}

impl Breaker {
    fn wait_ms(&self, now_ms: i64) -> i64 {
        (self.open_until_ms - now_ms).max(0)
    }

    /// Returns whether this failure opened the circuit.
    fn failure(&mut self, now_ms: i64, endpoint_dead: bool) -> bool {
        self.consecutive += 1;
        self.failing_since_ms.get_or_insert(now_ms);
        if self.consecutive >= BREAKER_FAILURES || endpoint_dead {
            self.cooldown_ms = (self.cooldown_ms * 2).clamp(15_000, 60_000);
            self.open_until_ms = now_ms + self.cooldown_ms;
            return true;
        }
        false
    }

    /// Returns whether the sink was failing before.
    fn success(&mut self) -> bool {
        let was_failing = self.failing_since_ms.is_some();
        self.consecutive = 0;
        self.cooldown_ms = 0;
        self.open_until_ms = 0;
        self.failing_since_ms = None;
        was_failing
    }
}

fn backoff() -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(60))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Delivers `sink`'s journal until shutdown.
pub async fn run(shared: Arc<Shared>, sink: Arc<Sink>) {
    let name = sink.name.clone();
    let label = SinkLabel { sink: name.clone() };
    let Some(wake) = shared.wake.get(&name).cloned() else { return };
    let mut limiter = TokenBucket::new(sink.rate_per_s, shared.clock.now_ms());
    let mut breaker = Breaker::default();
    let mut retry_delays: Option<(String, backon::ExponentialBackoff)> = None;
    let mut next_resend_ms = sink.resend_every().map(|every| shared.clock.now_ms() + ms(every));
    shared.metrics.up.get_or_create(&label).set(1);
    loop {
        let now = shared.clock.now_ms();
        if let (Some(at), Some(every)) = (next_resend_ms, sink.resend_every())
            && now >= at
        {
            next_resend_ms = Some(now + ms(every));
            if breaker.wait_ms(now) == 0 {
                resend_active(&shared, &sink, now).await;
            }
        }
        shared.metrics.queue_depth.get_or_create(&label).set(depth(&shared.journal, &name));
        let Some(head) = shared.journal.front(&name) else {
            if shared.closing.load(Ordering::Acquire) {
                return;
            }
            let idle = next_resend_ms.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(u64::try_from(at - now).unwrap_or(0))
            });
            let _ = tokio::time::timeout(idle, wake.notified()).await;
            continue;
        };
        if now - head.accepted_ms > sink.ttl_ms {
            shared.journal.settle(&name, &head.id, Settled::Expired, now);
            shared.metrics.expired.get_or_create(&label).inc();
            tracing::error!(message = "Message expired undelivered.", sink = %name, id = %head.id, attempts = head.attempts, last_error = head.last_error.as_deref().unwrap_or("none"));
            continue;
        }
        let wait = (head.not_before_ms - now).max(breaker.wait_ms(now)).max(limiter.wait_ms(now));
        if wait > 0 {
            let wait = Duration::from_millis(u64::try_from(wait).unwrap_or(0));
            // A new message does not jump the queue, but shutdown must not wait out a backoff.
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified() => {}
            }
            continue;
        }
        limiter.take();
        let requests = sink.requests(&head, now);
        let Some(request) = requests.get(head.sent) else {
            shared.journal.settle(&name, &head.id, Settled::Delivered, now);
            continue;
        };
        let started = tokio::time::Instant::now();
        let attempt = sink.send(request, shared.clock).await;
        shared.metrics.latency.get_or_create(&label).observe(started.elapsed().as_secs_f64());
        let now = shared.clock.now_ms();
        match attempt {
            Attempt::Delivered { .. } => {
                retry_delays = None;
                if breaker.success() {
                    tracing::info!(message = "Sink delivering again.", sink = %name);
                    shared.metrics.up.get_or_create(&label).set(1);
                    if let Some(meta) = breaker.meta_fired.take() {
                        meta_alert(&shared, &name, &meta.resolved(now));
                    }
                }
                if head.sent + 1 < requests.len() {
                    shared.journal.update(&name, &head.id, |d| d.sent += 1);
                    continue;
                }
                shared.journal.settle(&name, &head.id, Settled::Delivered, now);
                shared.metrics.sent.get_or_create(&label).inc();
                let latency_ms = now - head.notices.first().map_or(now, |n| n.at_ms.min(now));
                tracing::info!(message = "Delivered.", sink = %name, id = %head.id, alerts = head.notices.len(), first = %for_log(&head.notices[0].title()), attempts = head.attempts + 1, since_decided_ms = latency_ms);
            }
            Attempt::Retry { cause, reason, after } => {
                let delays = match &mut retry_delays {
                    Some((id, delays)) if *id == head.id => delays,
                    _ => &mut retry_delays.insert((head.id.clone(), backoff())).1,
                };
                let delay =
                    after.unwrap_or_else(|| delays.next().unwrap_or(Duration::from_secs(60)));
                let attempts = head.attempts + 1;
                shared.journal.update(&name, &head.id, |d| {
                    d.attempts = attempts;
                    d.not_before_ms = now + ms(delay);
                    d.last_error = Some(cause.clone());
                });
                shared
                    .metrics
                    .retried
                    .get_or_create(&SinkReason { sink: name.clone(), reason: reason.to_string() })
                    .inc();
                if attempts <= 3 || attempts.is_multiple_of(10) {
                    tracing::warn!(message = "Delivery failed; will retry.", sink = %name, id = %head.id, attempts, %cause, retry_in_ms = ms(delay));
                }
                on_failure(&shared, &name, &label, &mut breaker, now, false, &cause);
            }
            Attempt::Permanent { cause, reason, endpoint_dead } => {
                shared.journal.settle(&name, &head.id, Settled::Failed, now);
                shared
                    .metrics
                    .failed
                    .get_or_create(&SinkReason { sink: name.clone(), reason: reason.to_string() })
                    .inc();
                tracing::error!(message = "Delivery refused; not retrying this message.", sink = %name, id = %head.id, %cause);
                on_failure(&shared, &name, &label, &mut breaker, now, endpoint_dead, &cause);
            }
        }
    }
}

fn on_failure(
    shared: &Shared,
    name: &str,
    label: &SinkLabel,
    breaker: &mut Breaker,
    now: i64,
    endpoint_dead: bool,
    cause: &str,
) {
    if breaker.failure(now, endpoint_dead) {
        shared.metrics.up.get_or_create(label).set(0);
        tracing::error!(message = "Sink circuit open: pausing deliveries.", sink = %name, pause_s = breaker.cooldown_ms / 1000, %cause);
    }
    if breaker.meta_fired.is_none()
        && breaker.failing_since_ms.is_some_and(|since| now - since >= META_ALERT_AFTER_MS)
    {
        let since = breaker.failing_since_ms.unwrap_or(now);
        let notice = sink_failing_notice(name, since, now, cause);
        tracing::error!(message = "Sink failing for minutes; telling the other sinks.", sink = %name, %cause);
        meta_alert(shared, name, &notice);
        breaker.meta_fired = Some(notice);
    }
}

/// Queues a meta-alert for every sink but `failing`.
fn meta_alert(shared: &Shared, failing: &str, notice: &Notice) {
    for other in shared.sinks.keys().filter(|s| s.as_str() != failing) {
        shared.enqueue(other, std::slice::from_ref(notice));
    }
}

/// skewtail's own alert: a sink has not delivered since `since_ms`.
pub fn sink_failing_notice(sink: &str, since_ms: i64, now_ms: i64, cause: &str) -> Notice {
    let fingerprint = format!("skewtail/_delivery/{sink}");
    Notice {
        key: change_key(&fingerprint, since_ms, Status::Firing, 0),
        fingerprint,
        status: Status::Firing,
        kind: "delivery".into(),
        direction: "none".into(),
        severity: "warning".into(),
        pool: "skewtail".into(),
        backend: sink.into(),
        diagnosis: "delivery".into(),
        reason: cause.into(),
        summary: format!(
            "alerts to sink `{sink}` have failed for {} minutes: {cause}; they are kept and retried",
            (now_ms - since_ms) / 60_000
        ),
        started_at_ms: since_ms,
        at_ms: now_ms,
        repeat: 0,
        details: serde_json::json!({
            "type": "alert", "kind": "delivery", "state": "firing", "sink": sink, "error": cause,
        }),
    }
}

impl Notice {
    /// The resolve of a firing notice, at `at_ms`.
    pub fn resolved(&self, at_ms: i64) -> Notice {
        let mut details = self.details.clone();
        if let serde_json::Value::Object(map) = &mut details {
            map.insert("state".into(), serde_json::json!("resolved"));
        }
        Notice {
            key: change_key(&self.fingerprint, self.started_at_ms, Status::Resolved, 0),
            status: Status::Resolved,
            at_ms,
            details,
            ..self.clone()
        }
    }
}

/// Alertmanager: re-posts the firing alerts it was sent, with `endsAt` pushed ahead.
async fn resend_active(shared: &Shared, sink: &Sink, now: i64) {
    let active = shared.journal.active(&sink.name);
    if active.is_empty() {
        return;
    }
    let Some(request) = sink.resend_request(&active, now) else { return };
    match sink.send(&request, shared.clock).await {
        Attempt::Delivered { .. } => {
            tracing::debug!(message = "Firing alerts re-sent.", sink = %sink.name, count = active.len());
        }
        other => {
            tracing::warn!(message = "Re-sending firing alerts failed; next time.", sink = %sink.name, cause = %other.describe());
        }
    }
}
