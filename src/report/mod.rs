//! Report: what `replay` and `demo` print: a timeline for humans, or NDJSON for machines
//! (also `run --json`).
//!
//! The report is an [`Observer`] of the pipeline. Alerts reach the routes through the
//! notifier, an observer of its own beside it; the report only reads, at the end, what
//! delivery achieved.
//!
//! `totals.rs` sums each backend over the whole input for the table that ends the timeline.

pub mod charts;
pub mod document;
pub mod totals;

use std::io::{self, Write};

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use crate::detect::{
    AlertEvent, AlertKind, AlertMessage, AlertState, Detector, Direction, Severity, Unjudged,
    fmt_duration,
};
use crate::parse::time::format_rfc3339;
use crate::pipeline::{Counters, DeliveryTotals, FinishError, Flow, Observer, RunEnd};
use crate::window::WindowSummary;

/// Human timeline or NDJSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A readable timeline.
    Human,
    /// One JSON object per line.
    Json,
}

/// Writes the replay output.
pub struct Report<W: Write> {
    out: W,
    style: Style,
    /// Whether `out` is standard output, whose reader may go away before anything more is
    /// written (`replay | head`): then it is probed between batches.
    watch_stdout: bool,
    totals: totals::Totals,
    series: charts::Series,
    events: Vec<document::Event>,
    span_ms: Option<(i64, i64)>,
    documents: Documents,
    /// The first write error (a closed pipe, a full disk); reported once at the end.
    error: Option<io::Error>,
}

impl<W: Write> std::fmt::Debug for Report<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report").field("style", &self.style).finish_non_exhaustive()
    }
}

/// The incident documents to write at the end, if any.
#[derive(Debug, Clone, Default)]
pub struct Documents {
    /// `--report`: the Markdown draft (its charts beside it).
    pub markdown: Option<std::path::PathBuf>,
    /// `--html`: the self-contained page.
    pub html: Option<std::path::PathBuf>,
}

/// The closing summary line.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    counters: Counters,
    still_firing: usize,
    /// Pools whose shares were never judged, and why: "0 alerts" must not pass for "all is
    /// well" when nothing was looked at.
    unjudged_pools: &'a [Unjudged],
    /// Backends forgotten after `forget_after_s` of silence.
    forgotten_backends: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<&'a DeliveryTotals>,
    /// Per pool, each backend over the whole input (busiest first).
    backends: &'a BTreeMap<String, Vec<totals::BackendRow>>,
    /// Stopped by Ctrl-C: the results cover only what was read.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    interrupted: bool,
}

impl<W: Write> Report<W> {
    /// A report writing to `out`.
    pub fn new(out: W, style: Style) -> Self {
        Report {
            out,
            style,
            watch_stdout: false,
            totals: totals::Totals::default(),
            series: charts::Series::default(),
            events: Vec::new(),
            span_ms: None,
            documents: Documents::default(),
            error: None,
        }
    }

    /// `out` is standard output: stop the run as soon as its reader is gone.
    pub fn watching_stdout(mut self) -> Self {
        self.watch_stdout = true;
        self
    }

    /// Also writes these documents at the end.
    pub fn with_documents(mut self, documents: Documents) -> Self {
        self.documents = documents;
        self
    }

    fn emit(&mut self, write: impl FnOnce(&mut W) -> io::Result<()>) {
        if self.error.is_none()
            && let Err(error) = write(&mut self.out)
        {
            self.error = Some(error);
        }
    }

    /// Pushes out what is buffered (live output, after each turn).
    pub fn flush(&mut self) {
        self.emit(Write::flush);
    }

    /// Writes the summary and the documents; returns the first write error, if any.
    fn write_summary(
        &mut self,
        counters: &Counters,
        detector: &Detector,
        delivery: Option<&DeliveryTotals>,
        interrupted: bool,
    ) -> io::Result<()> {
        let style = self.style;
        let still_firing = detector.firing();
        let unjudged = detector.unjudged();
        let backends: BTreeMap<String, Vec<totals::BackendRow>> = self
            .totals
            .pools()
            .map(|pool| (pool.to_string(), self.totals.rows(pool, &detector.expected_shares(pool))))
            .collect();
        self.emit(|out| match style {
            Style::Json => {
                let summary = Summary {
                    kind: "summary",
                    counters: *counters,
                    still_firing: still_firing.len(),
                    unjudged_pools: &unjudged,
                    forgotten_backends: detector.forgotten_backends(),
                    delivery,
                    backends: &backends,
                    interrupted,
                };
                serde_json::to_writer(&mut *out, &summary)?;
                writeln!(out)
            }
            Style::Human => {
                for firing in &still_firing {
                    writeln!(
                        out,
                        "still firing at end of input: {} on {} in pool {}, since {}",
                        firing.what,
                        firing.backend,
                        firing.pool,
                        format_rfc3339(firing.since_ms)
                    )?;
                }
                for pool in &unjudged {
                    writeln!(out, "pool {} was never judged: {}", pool.pool, pool.reason)?;
                }
                for (pool, rows) in &backends {
                    write!(out, "\n{}", totals::text_table(pool, rows))?;
                }
                if counters.late > 0 {
                    writeln!(
                        out,
                        "\nwarning: {} line(s) arrived later than the lateness bound after newer lines and were not counted; if the files are out of order, give them all (or their directory) and skewtail orders them by time",
                        counters.late
                    )?;
                }
                if interrupted {
                    writeln!(out, "\ninterrupted: these results cover only the lines read before Ctrl-C")?;
                }
                if counters.outside_range > 0 {
                    writeln!(out, "{} line(s) outside --since/--until were skipped", counters.outside_range)?;
                }
                writeln!(
                    out,
                    "\n{} lines: {} parsed, {} unparsed, {} other, {} late, {} too long; {} windows; {} alert(s) fired, {} resolved, {} still firing",
                    counters.lines,
                    counters.parsed,
                    counters.unparsed,
                    counters.other,
                    counters.late,
                    counters.too_long,
                    counters.windows,
                    counters.alerts_fired,
                    counters.alerts_resolved,
                    still_firing.len()
                )?;
                if counters.noted > 0 {
                    writeln!(out, "{} change(s) and finding(s) noted (info: recorded, not paged)", counters.noted)?;
                }
                if let Some(d) = delivery {
                    writeln!(out, "alert delivery: {} delivered, {} failed, {} dropped, {} expired, {} undelivered", d.delivered, d.failed, d.dropped, d.expired, d.undelivered)?;
                }
                Ok(())
            }
        });
        self.emit(Write::flush);
        self.write_documents(counters, detector, &backends)?;
        match self.error.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Stops the run once a write has failed: nobody reads what follows.
    fn flow(&self) -> Flow {
        if self.error.is_some() { Flow::Break(()) } else { Flow::Continue(()) }
    }

    fn write_documents(
        &self,
        counters: &Counters,
        detector: &Detector,
        backends: &BTreeMap<String, Vec<totals::BackendRow>>,
    ) -> io::Result<()> {
        if self.documents.markdown.is_none() && self.documents.html.is_none() {
            return Ok(());
        }
        let pools = self
            .series
            .pools()
            .map(|pool| {
                let expected = detector.expected_shares(pool);
                document::PoolSection {
                    pool: pool.to_string(),
                    rows: backends.get(&**pool).cloned().unwrap_or_default(),
                    charts: self.series.charts(
                        pool,
                        &expected,
                        &document::periods(&self.events, pool),
                    ),
                }
            })
            .collect();
        let incident = document::Incident {
            span_ms: self.span_ms.unwrap_or_default(),
            lines: (counters.lines, counters.parsed),
            events: self.events.clone(),
            pools,
        };
        if let Some(path) = &self.documents.markdown {
            let written = document::write_markdown(&incident, path)?;
            tracing::info!(message = "Incident draft written.", path = %path.display(), files = written.len());
        }
        if let Some(path) = &self.documents.html {
            std::fs::write(path, document::html(&incident))?;
            tracing::info!(message = "HTML report written.", path = %path.display());
        }
        Ok(())
    }
}

fn direction_word(direction: Direction) -> &'static str {
    match direction {
        Direction::Over => "over",
        Direction::Under => "under",
    }
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "CRITICAL",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

impl<W: Write> Observer for Report<W> {
    fn window(&mut self, window: &WindowSummary) -> Flow {
        self.totals.add(window);
        self.series.add(window);
        let (start, end) = self.span_ms.unwrap_or((window.start_ms, window.end_ms));
        self.span_ms = Some((start.min(window.start_ms), end.max(window.end_ms)));
        if self.style != Style::Json {
            return self.flow();
        }
        let backends: serde_json::Map<String, serde_json::Value> = window
            .backends
            .iter()
            .map(|b| {
                (
                    b.backend.to_string(),
                    json!({"requests": b.requests, "errors": b.errors, "retried": b.retried, "p50_ms": b.p50_ms.map(round3), "p99_ms": b.p99_ms.map(round3)}),
                )
            })
            .collect();
        let object = json!({
            "type": "window",
            "start": format_rfc3339(window.start_ms),
            "end": format_rfc3339(window.end_ms),
            "pool": &*window.pool,
            "backends": backends,
            "no_backend": window.no_backend,
        });
        self.emit(|out| {
            serde_json::to_writer(&mut *out, &object)?;
            writeln!(out)
        });
        self.flow()
    }

    fn alert(&mut self, alert: &AlertEvent) -> Flow {
        if self.events.len() < document::MAX_EVENTS {
            self.events.push(document::Event::from_alert(alert));
        }
        match self.style {
            Style::Json => self.emit(|out| {
                serde_json::to_writer(&mut *out, &AlertMessage::new(alert))?;
                writeln!(out)
            }),
            Style::Human => {
                let (state, detail) = match alert.state {
                    AlertState::Firing => ("FIRING  ", severity_word(alert.severity)),
                    AlertState::Resolved => ("RESOLVED", "after"),
                    AlertState::Noted => ("NOTED   ", "info"),
                };
                let detail = if alert.state == AlertState::Resolved {
                    format!("{detail} {}", fmt_duration(alert.evidence.duration_s))
                } else {
                    detail.to_string()
                };
                let what = match alert.kind {
                    AlertKind::Skew => format!("skew {:<5}", direction_word(alert.direction)),
                    kind => format!("{:<10}", kind.name()),
                };
                // A timeline line is news: out at once (a few per incident), so that `| head`
                // or `| tee` sees it while the replay goes on.
                self.emit(|out| {
                    writeln!(
                        out,
                        "{}  {state} {detail:<14} {what} {} / {}\n    {}",
                        format_rfc3339(alert.at_ms),
                        alert.pool,
                        alert.backend,
                        alert.summary
                    )?;
                    out.flush()
                });
            }
        }
        self.flow()
    }

    fn poll(&mut self) -> Flow {
        if self.watch_stdout && self.error.is_none() && reader_is_gone() {
            self.error = Some(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        // Between batches, before the run waits for more lines: what is decided is out, so a
        // replay of a live pipe (`replay -`) shows windows and alerts as they come.
        self.emit(Write::flush);
        self.flow()
    }

    fn finish(&mut self, end: &mut RunEnd<'_>) -> Result<(), FinishError> {
        Ok(self.write_summary(
            &end.counters,
            end.detector,
            end.delivery.as_ref(),
            end.interrupted,
        )?)
    }
}

/// Whether standard output is a pipe whose reader has closed it (`replay | head` has read
/// enough): poll reports an error on its write end, without writing anything.
fn reader_is_gone() -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let stdout = io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
    poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 })).is_ok()
        && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
