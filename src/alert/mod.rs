//! Alert: from the detector's state changes to messages people receive, exactly once.
//!
//! ```text
//! AlertEvent ─▶ Notice ─▶ Router ─▶ Journal ─▶ one delivery task per sink ─▶ receiver
//!              (keyed)   (routes,   (durable,  (order, backoff, Retry-After,
//!                         silences,  in the     rate limit, circuit breaker,
//!                         inhibit,   snapshot)  TTL, meta-alert)
//!                         group_wait)
//! ```
//!
//! The [`Notifier`] is driven from the ingest side on event time ([`Notifier::accept`],
//! [`Notifier::tick`]) and only ever appends to the journal; delivery runs on tokio tasks, so
//! a receiver that is down or hangs never slows ingestion. Only this module knows wire
//! formats and secrets.

mod delivery;
mod http;
mod journal;
mod matcher;
pub mod metrics;
mod notice;
mod route;
pub mod schema;
mod settings;
pub mod silence;
mod sinks;
mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use crate::clock::Clock;
pub use crate::pipeline::DeliveryTotals;
pub use http::is_loopback;
pub use journal::JournalState;
pub use matcher::Matcher;
pub use metrics::AlertMetrics;
pub use notice::{Notice, Status};
pub use route::{Held, RouterState};

use crate::detect::AlertEvent;
use crate::located::ConfigError;
use crate::pipeline::{FinishError, Flow, Observer, RunEnd};
use crate::window::WindowSummary;
use delivery::Shared;
use route::{Outgoing, Router};
use schema::AlertingConfig;

/// Checks the alerting sections without reading secrets or contacting anything.
pub fn check(config: &AlertingConfig) -> Result<(), ConfigError> {
    settings::check(config).map(|_| ())
}

/// Checks the alerting sections and reads every sink's secrets (env variables, files), as
/// `run` will, without contacting anything.
pub fn check_secrets(config: &AlertingConfig) -> Result<(), ConfigError> {
    settings::check(config)?;
    settings::build_sinks(config, true).map(|_| ())
}

/// How a notifier is built.
#[derive(Debug, Clone, Default)]
pub struct NotifierOptions {
    /// Whether `stdout` sinks print (`run`); `replay` prints its own report.
    pub with_stdout: bool,
    /// The state directory: silences file and deliveries log (`run`); none for a replay.
    pub state_dir: Option<PathBuf>,
    /// Where delivery is counted: `run` keeps one set across reloads, for `/metrics`.
    pub metrics: AlertMetrics,
    /// How long the end of a run waits for pending messages (`replay --delivery-timeout`,
    /// the sidecar's shutdown).
    pub finish_deadline: Duration,
}

/// What the notifier keeps across restarts (part of the state snapshot).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NotifierState {
    /// Groups waiting, what each route sent.
    pub router: RouterState,
    /// Pending and settled messages per sink.
    pub journal: JournalState,
}

/// Routes alerts and delivers them. It is an [`Observer`] of the pipeline, so alerts are
/// routed on the same event time in replay (`--notify`) and in the sidecar; at the end of a
/// run it delivers what is pending within its deadline and leaves the totals for the
/// observers after it.
#[derive(Debug)]
pub struct Notifier {
    router: Router,
    shared: Arc<Shared>,
    /// Route sink name → sink instances.
    instances: BTreeMap<String, Vec<String>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    outgoing: Vec<Outgoing>,
    /// The runtime its tasks run on, to wait for them at the end of a run.
    runtime: tokio::runtime::Handle,
    /// How long the end of a run waits for pending messages.
    finish_deadline: Duration,
}

impl Notifier {
    /// Builds sinks (reading their secrets) and routes, and starts one delivery task per
    /// sink on `runtime`.
    pub fn start(
        config: &AlertingConfig,
        options: &NotifierOptions,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Self, ConfigError> {
        let checked = settings::check(config)?;
        let built = settings::build_sinks(config, options.with_stdout)?;
        let silences = silence::Silences::new(
            checked.silences,
            options.state_dir.as_deref().map(silence::file_in),
        );
        let router = Router::new(checked.routes, checked.inhibit, silences);
        let clock = {
            let _inside = runtime.enter();
            Clock::start()
        };
        let mut sinks = BTreeMap::new();
        let mut wake = BTreeMap::new();
        for sink in built.sinks {
            options.metrics.init_sink(&sink.name);
            wake.insert(sink.name.clone(), Arc::new(Notify::new()));
            sinks.insert(sink.name.clone(), Arc::new(sink));
        }
        let shared = Arc::new(Shared {
            journal: journal::Journal::new(options.state_dir.as_deref().map(journal::log_in)),
            sinks,
            wake,
            metrics: options.metrics.clone(),
            clock,
            closing: AtomicBool::new(false),
        });
        let tasks = shared
            .sinks
            .values()
            .map(|sink| runtime.spawn(delivery::run(shared.clone(), sink.clone())))
            .collect();
        Ok(Notifier {
            router,
            shared,
            instances: built.names,
            tasks,
            outgoing: Vec::new(),
            runtime: runtime.clone(),
            finish_deadline: options.finish_deadline,
        })
    }

    /// Whether there is any sink at all.
    pub fn is_empty(&self) -> bool {
        self.shared.sinks.is_empty()
    }

    /// A detector state change.
    pub fn accept(&mut self, event: &AlertEvent) {
        self.router.accept(Notice::from_event(event), &mut self.outgoing);
        self.dispatch();
    }

    /// Event time has reached `now_ms`: groups whose wait is over, and reminders.
    pub fn tick(&mut self, now_ms: i64) {
        self.router.tick(now_ms, &mut self.outgoing);
        self.dispatch();
    }

    /// Sends the waiting groups now (the end of a replay).
    pub fn flush(&mut self) {
        self.router.flush(&mut self.outgoing);
        self.dispatch();
    }

    /// Reads the silences file again if `silence add` changed it.
    pub fn reload_silences(&mut self) {
        self.router.reload_silences();
    }

    fn dispatch(&mut self) {
        for outgoing in self.outgoing.drain(..) {
            for name in &outgoing.sinks {
                for instance in self.instances.get(name).into_iter().flatten() {
                    self.shared.enqueue(instance, &outgoing.notices);
                }
            }
        }
    }

    /// The delivery metrics.
    pub fn metrics(&self) -> &AlertMetrics {
        &self.shared.metrics
    }

    /// What routing held back (silenced, inhibited, unrouted).
    pub fn held(&self) -> Held {
        self.router.held()
    }

    /// The state for the snapshot, and a mark to pass to [`Notifier::state_saved`].
    pub fn state(&self) -> (NotifierState, u64) {
        let (journal, mark) = self.shared.journal.snapshot();
        (NotifierState { router: self.router.state().clone(), journal }, mark)
    }

    /// The snapshot with [`Notifier::state`]'s `mark` is on disk: the deliveries log it
    /// covers can go.
    pub fn state_saved(&self, mark: u64) {
        self.shared.journal.snapshot_saved(mark);
    }

    /// Goes on from a snapshot: pending messages are delivered, settled ones never again.
    pub fn restore(&mut self, state: NotifierState) {
        self.router.restore(state.router);
        self.shared.journal.restore(state.journal);
        for (sink, count) in self.shared.journal.pending_counts() {
            tracing::info!(message = "Messages pending from before the restart.", sink = %sink, count);
            if let Some(wake) = self.shared.wake.get(&sink) {
                wake.notify_one();
            }
        }
    }

    /// Delivers what is pending within `deadline`, then stops the tasks. What is left stays
    /// in the journal (for `run`, in the snapshot) and is reported.
    pub async fn shutdown(&mut self, deadline: Duration) -> DeliveryTotals {
        self.shared.closing.store(true, Ordering::Release);
        for wake in self.shared.wake.values() {
            wake.notify_one();
        }
        let mut tasks = std::mem::take(&mut self.tasks);
        let drained = tokio::time::timeout(deadline, async {
            for task in &mut tasks {
                let _ = task.await;
            }
        })
        .await;
        if drained.is_err() {
            for task in &tasks {
                task.abort();
            }
        }
        let names: Vec<String> = self.shared.sinks.keys().cloned().collect();
        let mut totals = self.shared.metrics.totals(&names);
        for (sink, count) in self.shared.journal.pending_counts() {
            tracing::error!(message = "Messages not delivered before exit.", sink = %sink, count);
            totals.undelivered += count as u64;
        }
        totals
    }
}

impl Observer for Notifier {
    fn window(&mut self, window: &WindowSummary) -> Flow {
        self.tick(window.end_ms);
        Flow::Continue(())
    }

    fn alert(&mut self, alert: &AlertEvent) -> Flow {
        self.accept(alert);
        Flow::Continue(())
    }

    /// Sends what waits for `group_wait`, delivers within the deadline, and leaves the totals
    /// for the summary. Call outside the runtime (the run's own thread).
    fn finish(&mut self, end: &mut RunEnd<'_>) -> Result<(), FinishError> {
        self.flush();
        let runtime = self.runtime.clone();
        let deadline = self.finish_deadline;
        end.delivery = Some(runtime.block_on(self.shutdown(deadline)));
        Ok(())
    }
}

/// A sink's name and what it answered a test message (or why it failed).
pub type TestAnswer = (String, Result<String, String>);

/// `skewtail alert test`: one clearly marked test message through each sink of `route` (all
/// sinks without one), synchronously; returns each sink's answer.
pub fn send_test(
    config: &AlertingConfig,
    route: Option<&str>,
    runtime: &tokio::runtime::Runtime,
) -> Result<Vec<TestAnswer>, ConfigError> {
    let checked = settings::check(config)?;
    let built = settings::build_sinks(config, true)?;
    let wanted: Option<Vec<String>> = match route {
        None => None,
        Some(route) => {
            let found = checked.routes.iter().find(|r| r.name == route).ok_or_else(|| {
                let names: Vec<&str> = checked.routes.iter().map(|r| r.name.as_str()).collect();
                config.error(
                    0,
                    format!("no route is named `{route}`; the routes are: {}", names.join(", ")),
                )
            })?;
            Some(
                found
                    .sinks
                    .iter()
                    .flat_map(|s| built.names.get(s).cloned().unwrap_or_default())
                    .collect(),
            )
        }
    };
    let now_ms = crate::clock::wall_clock_ms();
    let fingerprint = format!("skewtail/test/{now_ms}");
    let firing = Notice {
        key: notice::change_key(&fingerprint, now_ms, Status::Firing, 0),
        fingerprint,
        status: Status::Firing,
        kind: "test".into(),
        direction: "none".into(),
        severity: "info".into(),
        pool: "skewtail".into(),
        backend: "test".into(),
        diagnosis: "test".into(),
        reason: "a test from `skewtail alert test`".into(),
        summary: "TEST: skewtail alert test; no action needed. If you read this, alerts reach you."
            .into(),
        started_at_ms: now_ms,
        at_ms: now_ms,
        repeat: 0,
        details: serde_json::json!({
            "type": "alert", "kind": "test", "state": "firing", "test": true,
            "summary": "TEST: skewtail alert test; no action needed",
        }),
    };
    let resolved = firing.resolved(now_ms);
    let mut answers = Vec::new();
    for sink in &built.sinks {
        if wanted.as_ref().is_some_and(|w| !w.contains(&sink.name)) {
            continue;
        }
        // PagerDuty and Alertmanager get the resolve too, so the test leaves nothing open.
        let closes = matches!(
            sink.target,
            sinks::Target::PagerDuty { .. } | sinks::Target::Alertmanager { .. }
        );
        let mut notices = vec![firing.clone()];
        if closes {
            notices.push(resolved.clone());
        }
        let delivery = journal::Delivery {
            id: notice::message_id(&notices),
            notices,
            accepted_ms: now_ms,
            attempts: 0,
            not_before_ms: now_ms,
            sent: 0,
            last_error: None,
        };
        let answer = runtime.block_on(async {
            let mut said = Vec::new();
            let requests = if closes {
                // One request per state change, in order.
                delivery
                    .notices
                    .iter()
                    .flat_map(|n| {
                        sink.requests(
                            &journal::Delivery { notices: vec![n.clone()], ..delivery.clone() },
                            now_ms,
                        )
                    })
                    .collect()
            } else {
                sink.requests(&delivery, now_ms)
            };
            let clock = Clock::start();
            for request in &requests {
                match sink.send(request, clock).await {
                    http::Attempt::Delivered { status } => {
                        said.push(format!("accepted ({status})"))
                    }
                    other => return Err(other.describe()),
                }
            }
            Ok(said.join(", "))
        });
        answers.push((sink.name.clone(), answer));
    }
    Ok(answers)
}

#[cfg(test)]
mod tests;
