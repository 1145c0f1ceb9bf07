//! Pipeline: wires parse → window → detect for every input, and hands the results to an
//! [`Observer`] (the replay report, the live alert dispatcher).
//!
//! Architecture invariant: replay and live run through this same code. They differ only in
//! where lines come from and in the clock that closes windows when a live input goes quiet
//! ([`Pipeline::close_idle`]); replay closes everything at the end of its input instead.

use std::sync::Arc;

use serde::Serialize;

use crate::detect::{AlertEvent, AlertState, Detector, DetectorConfig};
use crate::parse::{ParseErrorKind, Parser, Record};
use crate::source::Line;
use crate::window::{Admission, WindowConfig, WindowSummary, Windower};

/// Receives what the pipeline produces.
pub trait Observer {
    /// A window closed.
    fn window(&mut self, window: &WindowSummary);
    /// An alert changed state.
    fn alert(&mut self, alert: &AlertEvent);
}

/// How many unparsed lines are logged in full before only one in [`UNPARSED_LOG_EVERY`] is.
pub const UNPARSED_SAMPLES: u64 = 5;

/// After the first samples, one unparsed line in this many is logged, so a wrong format
/// cannot flood the log while it still shows that lines keep failing.
pub const UNPARSED_LOG_EVERY: u64 = 10_000;

/// Running totals, reported at the end of a replay and by `run` on exit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Lines read.
    pub lines: u64,
    /// Lines that parsed as requests.
    pub parsed: u64,
    /// Lines that did not parse.
    pub unparsed: u64,
    /// Valid lines that are not requests (HAProxy `Connect from`, SSL errors): skipped.
    pub other: u64,
    /// Lines that arrived after their window had closed.
    pub late: u64,
    /// Lines over the length limit, skipped.
    pub too_long: u64,
    /// Requests that reached no backend.
    pub no_backend: u64,
    /// Requests the balancer retried on another backend.
    pub retried: u64,
    /// Pool windows closed.
    pub windows: u64,
    /// Alerts fired.
    pub alerts_fired: u64,
    /// Alerts resolved.
    pub alerts_resolved: u64,
}

/// One input's parser and clock.
#[derive(Debug)]
struct InputState {
    name: Arc<str>,
    parser: Parser,
    windower: Windower,
    default_pool: u32,
}

/// The whole parse → window → detect chain.
#[derive(Debug)]
pub struct Pipeline {
    inputs: Vec<InputState>,
    detector: Detector,
    closed: Vec<WindowSummary>,
    alerts: Vec<AlertEvent>,
    counters: Counters,
}

impl Pipeline {
    /// A pipeline with no inputs yet.
    pub fn new(detector: Detector) -> Self {
        Pipeline {
            inputs: Vec::new(),
            detector,
            closed: Vec::new(),
            alerts: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Adds an input; returns its index for [`Pipeline::push_line`].
    pub fn add_input(&mut self, name: &str, parser: Parser, pool: &str) -> usize {
        let config = self.window_config();
        let mut windower = Windower::new(config);
        let default_pool = windower.pool(pool.as_bytes());
        self.inputs.push(InputState { name: name.into(), parser, windower, default_pool });
        self.inputs.len() - 1
    }

    fn window_config(&self) -> WindowConfig {
        let config: &DetectorConfig = self.detector.config();
        WindowConfig {
            window_ms: i64::from(config.window_s.max(1)) * 1000,
            lateness_ms: i64::from(config.lateness_s) * 1000,
        }
    }

    /// The totals so far.
    pub fn counters(&self) -> Counters {
        let mut counters = self.counters;
        counters.late = self.inputs.iter().map(|i| i.windower.late()).sum();
        counters
    }

    /// The detector, for what is still firing.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Feeds one line of input `input`.
    #[inline]
    pub fn push_line(&mut self, input: usize, line: Line<'_>, observer: &mut impl Observer) {
        self.counters.lines += 1;
        let state = &mut self.inputs[input];
        let record = match state.parser.parse(line.bytes) {
            Ok(record) => record,
            Err(error) if error.kind == ParseErrorKind::NotARequest => {
                self.counters.other += 1;
                return;
            }
            Err(error) => {
                self.counters.unparsed += 1;
                let n_unparsed = self.counters.unparsed;
                if n_unparsed <= UNPARSED_SAMPLES || n_unparsed.is_multiple_of(UNPARSED_LOG_EVERY) {
                    let text = line.bytes[..line.bytes.len().min(160)].escape_ascii();
                    let reason = state.parser.explain(&error);
                    tracing::warn!(message = "Unparsed line.", input = %state.name, line = line.number, %reason, %text, total_unparsed = n_unparsed);
                    if n_unparsed == UNPARSED_SAMPLES {
                        tracing::warn!(message = "Further unparsed lines are counted; one in 10000 is logged.", input = %state.name);
                    }
                }
                return;
            }
        };
        self.counters.parsed += 1;
        self.push_record(input, &record, observer);
    }

    /// Feeds one parsed request of input `input`: windows it and judges closed windows. The
    /// evaluation suite enters here with generated records; lines enter through
    /// [`Pipeline::push_line`].
    #[inline]
    pub fn push_record(&mut self, input: usize, record: &Record<'_>, observer: &mut impl Observer) {
        let state = &mut self.inputs[input];
        let pool = match record.pool {
            Some(name) => state.windower.pool(name),
            None => state.default_pool,
        };
        let slot = state.windower.slot(pool, record.backend);
        self.counters.no_backend += u64::from(record.backend.is_none());
        let retried = record.attempts > 1;
        self.counters.retried += u64::from(retried);
        let admission = state.windower.add(
            record.timestamp_ms,
            slot,
            record.is_server_error(),
            retried,
            record.backend_latency_s(),
            &mut self.closed,
        );
        debug_assert!(matches!(admission, Admission::Counted | Admission::Late));
        if !self.closed.is_empty() {
            self.drain(observer);
        }
    }

    /// Records a line that was too long to read.
    pub fn push_too_long(&mut self, input: usize, line_number: u64, length: u64) {
        self.counters.lines += 1;
        self.counters.too_long += 1;
        tracing::warn!(message = "Line longer than max_line_bytes skipped.", input = %self.inputs[input].name, line = line_number, length);
    }

    /// Closes every open window of `input` (end of a replay).
    pub fn finish_input(&mut self, input: usize, observer: &mut impl Observer) {
        self.inputs[input].windower.close_all(&mut self.closed);
        self.drain(observer);
    }

    /// Live clock: closes `input`'s windows that ended more than the lateness bound before
    /// `now_ms` (wall time). Called when an input has gone quiet, so its last windows are
    /// judged without waiting for the next line.
    pub fn close_idle(&mut self, input: usize, now_ms: i64, observer: &mut impl Observer) {
        let lateness = self.window_config().lateness_ms;
        self.inputs[input].windower.close_until(now_ms - lateness, &mut self.closed);
        self.drain(observer);
    }

    fn drain(&mut self, observer: &mut impl Observer) {
        for window in self.closed.drain(..) {
            self.counters.windows += 1;
            observer.window(&window);
            self.detector.observe(&window, &mut self.alerts);
            for alert in self.alerts.drain(..) {
                match alert.state {
                    AlertState::Firing => self.counters.alerts_fired += 1,
                    AlertState::Resolved => self.counters.alerts_resolved += 1,
                }
                observer.alert(&alert);
            }
        }
    }
}
