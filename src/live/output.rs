//! Where the live pipeline's results go: the NDJSON stream on stdout (`run --json`) or the
//! log, the notifier, and the metrics the endpoint serves.

use std::sync::Arc;

use crate::alert::Notifier;
use crate::detect::AlertEvent;
use crate::pipeline::{FinishError, Flow, Observer, RunEnd};
use crate::report::Report;
use crate::window::WindowSummary;

use super::metrics::LiveMetrics;

/// The pipeline's observer in `run`.
pub(super) struct LiveOutput {
    /// The NDJSON stream (`--json`); without it, state changes go to the log.
    pub json: Option<Report<std::io::BufWriter<std::io::Stdout>>>,
    /// The routes and sinks.
    pub notifier: Notifier,
    /// What `/metrics` shows.
    pub metrics: Arc<LiveMetrics>,
    /// Pools with a window closed this turn, whose expected shares are to be published.
    pub touched_pools: Vec<Arc<str>>,
    /// Whether an alert changed state this turn.
    pub alerts_changed: bool,
}

/// The sidecar keeps running when its `--json` output is gone: its work is the sinks. The
/// NDJSON stream stops, once, with a log line.
impl Observer for LiveOutput {
    fn window(&mut self, window: &WindowSummary) -> Flow {
        match &mut self.json {
            Some(report) => {
                if report.window(window).is_break() {
                    self.lost_json();
                }
            }
            None => {
                tracing::debug!(message = "Window closed.", pool = %window.pool.escape_debug(), start = window.start_ms, requests = window.total_requests());
            }
        }
        let _ = self.notifier.window(window);
        self.metrics.window(window);
        if !self.touched_pools.contains(&window.pool) {
            self.touched_pools.push(window.pool.clone());
        }
        Flow::Continue(())
    }

    fn alert(&mut self, alert: &AlertEvent) -> Flow {
        match &mut self.json {
            Some(report) => {
                if report.alert(alert).is_break() {
                    self.lost_json();
                }
            }
            None => {
                tracing::info!(message = "Alert state changed.", state = ?alert.state, pool = %alert.pool.escape_debug(), backend = %alert.backend.escape_debug(), summary = %alert.summary.escape_debug());
            }
        }
        let _ = self.notifier.alert(alert);
        self.alerts_changed = true;
        Flow::Continue(())
    }

    /// Delivers what is pending within the deadline, then writes the summary (with what
    /// delivery achieved).
    fn finish(&mut self, end: &mut RunEnd<'_>) -> Result<(), FinishError> {
        self.notifier.finish(end)?;
        self.json.finish(end)
    }
}

impl LiveOutput {
    /// Standard output is gone: no more NDJSON.
    fn lost_json(&mut self) {
        self.json = None;
        tracing::warn!(
            message =
                "Standard output is closed: the --json stream stops; alerts still go to the sinks."
        );
    }

    /// Pushes out what is buffered.
    pub fn flush(&mut self) {
        if let Some(report) = &mut self.json {
            report.flush();
        }
    }
}

impl std::fmt::Debug for LiveOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOutput").field("json", &self.json.is_some()).finish_non_exhaustive()
    }
}
