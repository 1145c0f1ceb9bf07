//! Observers: what a run tells whoever watches it (the report, the notifier, the sidecar's
//! metrics), in one order, push style, and how a run ends once for all of them.

use serde::Serialize;

use super::Counters;
use crate::detect::{AlertEvent, Detector};
use crate::window::WindowSummary;

/// Whether a run goes on after an observer's call: [`Flow::Break`] stops it (the output it
/// writes to is gone, as when `replay | head` has read enough).
pub type Flow = std::ops::ControlFlow<()>;

/// Receives what the pipeline produces, push style: every closed window and every alert
/// state change in order, then the end of the run once. Observers compose: a pair is an
/// observer that tells both, an `Option` one that tells its content if any.
pub trait Observer {
    /// A window closed.
    fn window(&mut self, window: &WindowSummary) -> Flow;

    /// An alert changed state.
    fn alert(&mut self, alert: &AlertEvent) -> Flow;

    /// Between batches of lines: whether the run should go on (an output that can tell it is
    /// gone says so here, before anything is written to it).
    fn poll(&mut self) -> Flow {
        Flow::Continue(())
    }

    /// The run is over: [`Pipeline::finish`] calls this once, observers of a pair in order,
    /// so one can leave something in `end` for the next (the notifier its delivery totals,
    /// for the summary).
    fn finish(&mut self, end: &mut RunEnd<'_>) -> Result<(), FinishError> {
        let _ = end;
        Ok(())
    }
}

/// How a run ended, for the observers' [`Observer::finish`].
#[derive(Debug)]
pub struct RunEnd<'a> {
    /// The totals.
    pub counters: Counters,
    /// What the detector knows now (still firing, unjudged pools, expected shares).
    pub detector: &'a Detector,
    /// The run stopped before its input ended (Ctrl-C, a closed output).
    pub interrupted: bool,
    /// What alert delivery achieved, once the notifier has drained.
    pub delivery: Option<DeliveryTotals>,
}

/// Totals over all sinks, for the summary at exit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeliveryTotals {
    /// Messages delivered.
    pub delivered: u64,
    /// Messages refused for good.
    pub failed: u64,
    /// Messages dropped from a full queue.
    pub dropped: u64,
    /// Messages that expired.
    pub expired: u64,
    /// Messages still pending at exit (kept in the state snapshot by `run`).
    pub undelivered: u64,
}

/// Why an observer could not finish.
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    /// Writing the output or a document failed.
    #[error("cannot write the report: {0}")]
    Io(#[from] std::io::Error),
}

impl FinishError {
    /// Whether it is only that the reader of the output went away (`replay | head`): not
    /// worth an error.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, FinishError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl<A: Observer, B: Observer> Observer for (A, B) {
    fn window(&mut self, window: &WindowSummary) -> Flow {
        let first = self.0.window(window);
        let second = self.1.window(window);
        if first.is_break() { first } else { second }
    }

    fn alert(&mut self, alert: &AlertEvent) -> Flow {
        let first = self.0.alert(alert);
        let second = self.1.alert(alert);
        if first.is_break() { first } else { second }
    }

    fn poll(&mut self) -> Flow {
        let first = self.0.poll();
        let second = self.1.poll();
        if first.is_break() { first } else { second }
    }

    fn finish(&mut self, end: &mut RunEnd<'_>) -> Result<(), FinishError> {
        let first = self.0.finish(end);
        let second = self.1.finish(end);
        first.and(second)
    }
}

impl<O: Observer> Observer for Option<O> {
    fn window(&mut self, window: &WindowSummary) -> Flow {
        self.as_mut().map_or(Flow::Continue(()), |o| o.window(window))
    }

    fn alert(&mut self, alert: &AlertEvent) -> Flow {
        self.as_mut().map_or(Flow::Continue(()), |o| o.alert(alert))
    }

    fn poll(&mut self) -> Flow {
        self.as_mut().map_or(Flow::Continue(()), Observer::poll)
    }

    fn finish(&mut self, end: &mut RunEnd<'_>) -> Result<(), FinishError> {
        self.as_mut().map_or(Ok(()), |o| o.finish(end))
    }
}

impl<O: Observer + ?Sized> Observer for &mut O {
    fn window(&mut self, window: &WindowSummary) -> Flow {
        (**self).window(window)
    }

    fn alert(&mut self, alert: &AlertEvent) -> Flow {
        (**self).alert(alert)
    }

    fn poll(&mut self) -> Flow {
        (**self).poll()
    }

    fn finish(&mut self, end: &mut RunEnd<'_>) -> Result<(), FinishError> {
        (**self).finish(end)
    }
}
