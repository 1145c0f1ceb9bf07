//! Pipeline: wires parse → window → detect for every input, and hands the results to an
//! [`Observer`] (the replay report, the live alert dispatcher).
//!
//! Architecture invariant: replay and live run through this same code. They differ only in
//! where lines come from and in the clock that closes windows when a live input goes quiet
//! ([`Pipeline::close_idle`]); replay closes everything at the end of its input instead.

pub mod ahead;
mod lines;
mod observe;

pub use lines::Batch;
pub use observe::{DeliveryTotals, FinishError, Flow, Observer, RunEnd};

use std::sync::Arc;

use serde::Serialize;

use crate::detect::{AlertEvent, AlertState, Detector, DetectorConfig, DetectorState};
use crate::parse::{Parser, Record};
use crate::window::{Admission, Outcome, Slot, WindowConfig, WindowSummary, Windower};

/// How many unparsed lines are logged in full before only one in [`UNPARSED_LOG_EVERY`] is.
pub const UNPARSED_SAMPLES: u64 = 5;

/// After the first samples, one unparsed line in this many is logged, so a wrong format
/// cannot flood the log while it still shows that lines keep failing.
pub const UNPARSED_LOG_EVERY: u64 = 10_000;

/// Running totals, reported at the end of a replay and by `run` on exit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counters {
    /// Lines read.
    pub lines: u64,
    /// Lines that parsed as requests.
    pub parsed: u64,
    /// Lines that did not parse (bad names included).
    pub unparsed: u64,
    /// Of those, lines whose backend or pool name holds control bytes, NUL or invalid UTF-8:
    /// such a name is never made a backend (a corrupt byte would otherwise split a pool).
    pub invalid_names: u64,
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
    /// Requests to backends beyond a pool's `max_backends`, counted under `_overflow`.
    pub overflowed: u64,
    /// Alerts fired.
    pub alerts_fired: u64,
    /// Alerts resolved.
    pub alerts_resolved: u64,
    /// Findings noted (routine changes, learned splits): recorded, never firing.
    #[serde(default)]
    pub noted: u64,
    /// Requests outside `--since`/`--until`, skipped.
    #[serde(default)]
    pub outside_range: u64,
}

/// What the windower needs of a parsed request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    timestamp_ms: i64,
    pool: Option<&'a [u8]>,
    backend: Option<&'a [u8]>,
    /// The backend tried first, whose attempt failed.
    first_attempt: Option<&'a [u8]>,
    server_error: bool,
    retried: bool,
    latency_s: Option<f64>,
}

/// What became of one input's lines (`skewtail_lines_total{input,result}`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LineCounts {
    /// Lines that parsed as requests (late ones included).
    pub parsed: u64,
    /// Lines that did not parse, bad names included.
    pub unparsed: u64,
    /// Valid lines that are not requests.
    pub other: u64,
    /// Lines over the length limit.
    pub too_long: u64,
    /// Parsed lines that arrived after their window had closed.
    pub late: u64,
}

/// One input's parser and clock.
#[derive(Debug)]
struct InputState {
    name: Arc<str>,
    parser: Parser,
    windower: Windower,
    default_pool: u32,
    default_pool_name: String,
    lines: LineCounts,
    /// Whether a request of this input came well after `--until` (the rest of a time-ordered
    /// input can be left unread).
    past_range: bool,
}

/// A pipeline's saved state: every input's open windows, what the detector has learned and
/// what is firing, and the totals, all as of the same line of every input.
#[derive(Debug, serde::Deserialize)]
pub struct PipelineState {
    window_s: u32,
    lateness_s: u32,
    inputs: Vec<SavedInput>,
    detector: DetectorState,
    counters: Counters,
}

/// One input's part of a [`PipelineState`].
#[derive(Debug, serde::Deserialize)]
struct SavedInput {
    name: String,
    windower: Windower,
    #[serde(default)]
    lines: LineCounts,
}

/// The whole parse → window → detect chain.
#[derive(Debug)]
pub struct Pipeline {
    /// Only requests in this range of event time are counted (`--since`, `--until`).
    range: crate::source::range::TimeRange,
    inputs: Vec<InputState>,
    detector: Detector,
    closed: Vec<WindowSummary>,
    alerts: Vec<AlertEvent>,
    counters: Counters,
    /// An observer asked to stop.
    stopped: bool,
}

/// What [`Pipeline::finish`] does with the windows still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenWindows {
    /// Close and judge them: the input has ended (a replay).
    Close,
    /// Keep them open, to go on after a restart (the sidecar stopping).
    Keep,
}

impl Pipeline {
    /// A pipeline with no inputs yet.
    pub fn new(detector: Detector) -> Self {
        Pipeline {
            range: crate::source::range::TimeRange::default(),
            inputs: Vec::new(),
            detector,
            closed: Vec::new(),
            alerts: Vec::new(),
            counters: Counters::default(),
            stopped: false,
        }
    }

    /// Whether an observer has asked the run to stop.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Asks the observer whether to go on (between batches of lines); returns whether the run
    /// is stopped.
    pub fn poll(&mut self, observer: &mut impl Observer) -> bool {
        if observer.poll().is_break() {
            self.stopped = true;
        }
        self.stopped
    }

    /// Ends the run, the one way both replay and the sidecar end: the open windows closed and
    /// judged or kept, then each observer's [`Observer::finish`] in turn. Returns the totals
    /// and what delivery achieved.
    pub fn finish(
        &mut self,
        observer: &mut impl Observer,
        open: OpenWindows,
        interrupted: bool,
    ) -> Result<(Counters, Option<DeliveryTotals>), FinishError> {
        if open == OpenWindows::Close {
            for input in 0..self.inputs.len() {
                self.inputs[input].windower.close_all(&mut self.closed);
            }
            self.drain(observer);
        }
        let counters = self.counters();
        let mut end = RunEnd { counters, detector: &self.detector, interrupted, delivery: None };
        observer.finish(&mut end)?;
        Ok((counters, end.delivery))
    }

    /// Counts only requests in `range` of event time; the others are `outside_range`.
    pub fn set_range(&mut self, range: crate::source::range::TimeRange) {
        self.range = range;
    }

    /// Adds an input; returns its index for [`Pipeline::push_line`].
    pub fn add_input(&mut self, name: &str, parser: Parser, pool: &str) -> usize {
        let config = self.window_config();
        let mut windower = Windower::new(config);
        // A pool filled per file from its path (`{namespace}/{container}`): a file whose path
        // names no pod goes to the input's own name.
        let pool = if crate::source::container::is_pool_template(pool) { name } else { pool };
        let default_pool = windower.pool(pool.as_bytes());
        self.inputs.push(InputState {
            name: name.into(),
            parser,
            windower,
            default_pool,
            default_pool_name: pool.to_string(),
            lines: LineCounts::default(),
            past_range: false,
        });
        self.inputs.len() - 1
    }

    fn window_config(&self) -> WindowConfig {
        let config: &DetectorConfig = self.detector.config();
        WindowConfig {
            window_ms: i64::from(config.window_s.max(1)) * 1000,
            lateness_ms: i64::from(config.lateness_s) * 1000,
            forget_ms: i64::from(config.forget_after_s) * 1000,
            max_backends: config.max_backends,
        }
    }

    /// Its state, to save (read back as a [`PipelineState`]).
    pub fn save(&self) -> impl Serialize + '_ {
        #[derive(Serialize)]
        struct Saved<'a, D: Serialize> {
            window_s: u32,
            lateness_s: u32,
            inputs: Vec<SavedInputRef<'a>>,
            detector: D,
            counters: Counters,
        }
        #[derive(Serialize)]
        struct SavedInputRef<'a> {
            name: &'a str,
            windower: &'a Windower,
            lines: LineCounts,
        }
        let config = self.detector.config();
        Saved {
            window_s: config.window_s,
            lateness_s: config.lateness_s,
            inputs: self
                .inputs
                .iter()
                .map(|i| SavedInputRef { name: &i.name, windower: &i.windower, lines: i.lines })
                .collect(),
            detector: self.detector.save(),
            counters: self.counters(),
        }
    }

    /// Goes on from a saved state: inputs are matched by name, and the detector's pools by
    /// their expectations. Returns what could not be restored, in words.
    pub fn restore(&mut self, state: PipelineState) -> Vec<String> {
        let mut notes = Vec::new();
        let config = self.detector.config().clone();
        let same_windows =
            state.window_s == config.window_s && state.lateness_s == config.lateness_s;
        if !same_windows {
            notes.push(format!(
                "window_s or lateness_s changed ({}s/{}s before): the open windows and the learned statistics start again",
                state.window_s, state.lateness_s
            ));
        }
        let window_config = self.window_config();
        for saved in state.inputs {
            match self.inputs.iter_mut().find(|i| *i.name == *saved.name) {
                Some(input) if same_windows => {
                    let mut windower = saved.windower.restored(window_config);
                    input.default_pool = windower.pool(input.default_pool_name.as_bytes());
                    input.windower = windower;
                    input.lines = saved.lines;
                }
                Some(input) => input.lines = saved.lines,
                None => notes.push(format!("input `{}` is no longer configured", saved.name)),
            }
        }
        for pool in self.detector.restore(state.detector, same_windows) {
            if same_windows {
                notes.push(format!(
                    "pool `{pool}`: its expected weights changed; it is learned again"
                ));
            }
        }
        self.counters = state.counters;
        notes
    }

    /// The totals so far.
    pub fn counters(&self) -> Counters {
        let mut counters = self.counters;
        counters.late = self.inputs.iter().map(|i| i.windower.late()).sum();
        counters.overflowed = self.inputs.iter().map(|i| i.windower.overflowed()).sum();
        counters
    }

    /// Each input's name and what became of its lines.
    pub fn input_lines(&self) -> impl Iterator<Item = (&str, LineCounts)> + '_ {
        self.inputs.iter().map(|i| (&*i.name, LineCounts { late: i.windower.late(), ..i.lines }))
    }

    /// Whether input `input` has read a request well after `--until`: the rest of it (in time
    /// order) need not be read.
    pub fn past_range(&self, input: usize) -> bool {
        self.inputs.get(input).is_some_and(|i| i.past_range)
    }

    /// The newest event time input `input` has read, Unix ms.
    pub fn newest_event_ms(&self, input: usize) -> Option<i64> {
        self.inputs.get(input).and_then(|i| i.windower.newest_event_ms())
    }

    /// The detector, for what is still firing.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Feeds one parsed request of input `input`: windows it and judges closed windows. The
    /// evaluation suite enters here with generated records; lines enter through
    /// [`Pipeline::push_line`].
    #[inline]
    pub fn push_record(&mut self, input: usize, record: &Record<'_>, observer: &mut impl Observer) {
        let request = Request {
            timestamp_ms: record.timestamp_ms,
            pool: record.pool,
            backend: record.backend,
            first_attempt: record.first_attempt,
            server_error: record.is_server_error(),
            retried: record.attempts > 1,
            latency_s: record.backend_latency_s(),
        };
        if !self.in_range(input, request.timestamp_ms) {
            return;
        }
        let pool = match request.pool {
            Some(name) => self.inputs[input].windower.pool(name),
            None => self.inputs[input].default_pool,
        };
        let slot = self.resolve_slot(input, pool, request.backend);
        self.push_slot(input, slot, &request, observer);
    }

    /// Whether a request at `timestamp_ms` is in `--since`/`--until`; counts it when not, and
    /// notes when input `input` has left the range for good.
    #[inline]
    fn in_range(&mut self, input: usize, timestamp_ms: i64) -> bool {
        if self.range.contains(timestamp_ms) {
            return true;
        }
        self.counters.outside_range += 1;
        if let Some(until) = self.range.until_ms {
            // Lines may be out of order by the lateness bound and a window; a minute
            // beyond that, the input has left the range for good.
            let config = self.detector.config();
            let slack = i64::from(config.lateness_s + config.window_s) * 1000 + 60_000;
            if timestamp_ms >= until + slack {
                self.inputs[input].past_range = true;
            }
        }
        false
    }

    /// The windower slot of a backend of pool `pool`, interning it when new.
    #[inline]
    fn resolve_slot(&mut self, input: usize, pool: u32, backend: Option<&[u8]>) -> Slot {
        let state = &mut self.inputs[input];
        let slot = state.windower.slot(pool, backend);
        for pool in state.windower.take_newly_overflowing() {
            tracing::warn!(message = "Pool has more backends than detector.max_backends; requests to new ones are counted under `_overflow` and not judged.", input = %state.name, %pool, max_backends = self.detector.config().max_backends);
        }
        slot
    }

    /// Windows one request whose slot is resolved, and judges the windows it closes.
    #[inline]
    fn push_slot(
        &mut self,
        input: usize,
        slot: Slot,
        request: &Request<'_>,
        observer: &mut impl Observer,
    ) {
        self.counters.no_backend += u64::from(request.backend.is_none());
        self.counters.retried += u64::from(request.retried);
        // Retries are rare: the failed attempt's backend is resolved without a cache.
        let failed_first = request.first_attempt.map(|name| {
            let pool = slot.pool();
            self.resolve_slot(input, pool, Some(name))
        });
        let outcome = Outcome {
            is_error: request.server_error,
            retried: request.retried,
            latency_s: request.latency_s,
            failed_first,
        };
        let admission =
            self.inputs[input].windower.add(request.timestamp_ms, slot, outcome, &mut self.closed);
        debug_assert!(matches!(admission, Admission::Counted | Admission::Late));
        if !self.closed.is_empty() {
            self.drain(observer);
        }
    }

    /// Live clock: `input` has been quiet for `idle_ms` of wall time, so its event time has
    /// moved on about as much: closes the windows that ended more than the lateness bound
    /// before its newest line plus `idle_ms`. Its last windows are judged without waiting for
    /// the next line, and a log whose clock is not the wall clock (a replayed one) is not cut
    /// short.
    pub fn close_idle(&mut self, input: usize, idle_ms: i64, observer: &mut impl Observer) {
        let lateness = self.window_config().lateness_ms;
        let windower = &mut self.inputs[input].windower;
        if let Some(newest) = windower.newest_event_ms() {
            windower.close_until(newest.saturating_add(idle_ms) - lateness, &mut self.closed);
        }
        self.drain(observer);
    }

    fn drain(&mut self, observer: &mut impl Observer) {
        for window in self.closed.drain(..) {
            self.counters.windows += 1;
            let mut flow = observer.window(&window);
            self.detector.observe(&window, &mut self.alerts);
            for alert in self.alerts.drain(..) {
                match alert.state {
                    AlertState::Firing => self.counters.alerts_fired += 1,
                    AlertState::Resolved => self.counters.alerts_resolved += 1,
                    AlertState::Noted => self.counters.noted += 1,
                }
                if observer.alert(&alert).is_break() {
                    flow = Flow::Break(());
                }
            }
            self.stopped |= flow.is_break();
        }
    }
}
