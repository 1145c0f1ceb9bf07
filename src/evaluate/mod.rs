//! The labelled evaluation suite: scripted scenarios with known incidents, run through the
//! real window → detect stages, scored on the four properties the SRE book grades alerts by
//! (precision, recall, detection delay, reset time) plus false alarms per day on clean traffic.
//!
//! `skewtail evaluate` prints the table recorded in EVALUATION.md; `tests/evaluation.rs`
//! fails when a change drops below the floors. Requests come from [`crate::synth`], the
//! generator behind `skewtail simulate`, and enter the pipeline as records (parsing is tested
//! on its own; here it would only cost time).

use rustc_hash::FxHashMap;

mod labels;
mod suite;

pub use labels::{Expect, Label, labels};

use crate::detect::{AlertEvent, AlertState, Detector, DetectorConfig, Severity};
use crate::parse::Record;
use crate::parse::time::format_rfc3339;
use crate::pipeline::{Flow, Observer, OpenWindows, Pipeline};
use crate::synth::{Generated, Scenario};
use crate::window::WindowSummary;
pub use suite::suite;

/// Seconds after an incident ends within which a matching alert still counts as detecting it
/// (a skew learned as normal at the very end would otherwise be a miss and a false alarm).
const GRACE_S: i64 = 120;

/// Seconds after a routine change begins within which its record counts (a rolling restart
/// is recorded once it is over; a newcomer once its grace has ended).
const CHANGE_WITHIN_S: i64 = 15 * 60;

/// One scenario of the suite.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short name for the table.
    pub name: String,
    /// What it checks.
    pub description: String,
    /// The traffic and its incidents.
    pub scenario: Scenario,
    /// Configured weights for the pool, one per backend (`None`: learned baseline).
    pub weights: Option<Vec<f64>>,
    /// The names the weights give the backends, when they differ from the log's (a typo in
    /// the config); every backend that serves without a weight should be an `unexpected`.
    pub weight_names: Option<Vec<String>>,
}

/// What one case scored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Simulated hours.
    pub hours: f64,
    /// Labelled incidents (what must alert).
    pub incidents: usize,
    /// Of those, detected by an alert of the expected kind on the expected backend.
    pub detected: usize,
    /// Of those, with the expected diagnosis.
    pub diagnosed: usize,
    /// Firing alerts (pages, and `info` findings such as `unexpected`).
    pub alerts: usize,
    /// Of those, pages: `warning` and `critical`.
    pub pages: usize,
    /// Firing alerts that match a labelled incident.
    pub true_alerts: usize,
    /// Labelled routine changes (what must be recorded, not paged).
    pub changes_expected: usize,
    /// Of those, recorded as a noted change of the right operation.
    pub changes_recorded: usize,
    /// Noted changes and findings, in all.
    pub noted: usize,
    /// Alerts still firing when the case ends.
    pub left_firing: usize,
    /// Detection delay per detected incident: first matching firing − incident start, s.
    pub delays_s: Vec<i64>,
    /// Reset time per detected incident: matching resolve − incident end, s (missing when
    /// still firing at the end of the case).
    pub resets_s: Vec<i64>,
    /// The normal traffic's per-window dispersion (the mean Pearson χ²/df of the backends'
    /// counts against their normal shares, outside incidents): 1 for independent requests;
    /// `None` when no window had 100 requests.
    pub dispersion: Option<f64>,
    /// One line per firing alert and noted change, for reading the table's numbers.
    pub alert_lines: Vec<String>,
}

/// Collects the alerts, and each window's dispersion against the normal shares.
struct Collect<'a> {
    alerts: Vec<AlertEvent>,
    /// Backend address → its normal share.
    normal: FxHashMap<&'a str, f64>,
    /// The incidents' times: windows that overlap them are not normal traffic.
    incidents: Vec<(i64, i64)>,
    dispersions: Vec<f64>,
}

impl Observer for Collect<'_> {
    #[allow(clippy::cast_precision_loss)]
    fn window(&mut self, window: &WindowSummary) -> Flow {
        // Pearson χ²/df over the backends that served, their normal shares renormalised.
        let n = window.total_requests() as f64;
        let total_share: f64 =
            window.backends.iter().filter_map(|b| self.normal.get(&*b.backend)).sum();
        let during_incident = self
            .incidents
            .iter()
            .any(|&(start, end)| window.start_ms < end && window.end_ms > start);
        if n < 100.0 || window.backends.len() < 2 || total_share <= 0.0 || during_incident {
            return Flow::Continue(());
        }
        let chi: f64 = window
            .backends
            .iter()
            .filter_map(|b| {
                let expected = n * self.normal.get(&*b.backend)? / total_share;
                Some((b.requests as f64 - expected).powi(2) / expected)
            })
            .sum();
        self.dispersions.push(chi / (window.backends.len() - 1) as f64);
        Flow::Continue(())
    }

    fn alert(&mut self, alert: &AlertEvent) -> Flow {
        self.alerts.push(alert.clone());
        Flow::Continue(())
    }
}

/// Runs one case with the default detector settings and scores it.
pub fn run_case(case: &Case) -> CaseResult {
    let scenario = &case.scenario;
    let mut weights = Vec::new();
    if let Some(case_weights) = &case.weights {
        let names = case.weight_names.as_ref().unwrap_or(&scenario.backends);
        weights.push((
            "api".to_string(),
            names.iter().cloned().zip(case_weights.iter().copied()).collect(),
        ));
    }
    let mut pipeline = Pipeline::new(Detector::with_weights(DetectorConfig::default(), weights));
    let parser = crate::parse::PatternSet::builtin()
        .get("upstream")
        .and_then(|p| p.compile(&[]).ok())
        .unwrap_or_else(|| unreachable!("the built-in upstream pattern compiles"));
    let input = pipeline.add_input("evaluation", parser, "api");
    let normal = scenario.normal_shares();
    let mut observer = Collect {
        alerts: Vec::new(),
        normal: scenario.backends.iter().map(String::as_str).zip(normal).collect(),
        incidents: scenario
            .incidents
            .iter()
            .map(|i| {
                let at = |s: u32| scenario.start_ms + i64::from(s) * 1000;
                (at(i.start_s), at(i.start_s + i.duration_s))
            })
            .collect(),
        dispersions: Vec::new(),
    };
    let generated = scenario.generate(|item| {
        if let Generated::Request(facts) = item {
            let record = Record {
                timestamp_ms: facts.time_ms,
                backend: Some(scenario.backends[facts.backend].as_bytes()),
                attempts: if facts.retried_from.is_some() { 2 } else { 1 },
                first_attempt: facts.retried_from.map(|b| scenario.backends[b].as_bytes()),
                status: Some(facts.status),
                upstream_latency_s: Some(facts.latency_s),
                ..Record::default()
            };
            pipeline.push_record(input, &record, &mut observer);
        }
        Ok(())
    });
    generated.unwrap_or_else(|e| unreachable!("generating into memory cannot fail: {e}"));
    pipeline
        .finish(&mut observer, OpenWindows::Close, false)
        .unwrap_or_else(|e| unreachable!("collecting into memory cannot fail: {e}"));
    let mut result = score(case, &observer.alerts);
    result.left_firing = pipeline.detector().firing().len();
    #[allow(clippy::cast_precision_loss)]
    let n_windows = observer.dispersions.len() as f64;
    result.dispersion =
        (n_windows > 0.0).then(|| observer.dispersions.iter().sum::<f64>() / n_windows);
    result
}

fn score(case: &Case, alerts: &[AlertEvent]) -> CaseResult {
    let labels = labels(&case.scenario, case.weights.as_deref(), case.weight_names.as_deref());
    let firing: Vec<&AlertEvent> =
        alerts.iter().filter(|a| a.state == AlertState::Firing).collect();
    let noted: Vec<&AlertEvent> = alerts.iter().filter(|a| a.state == AlertState::Noted).collect();
    let matches = |label: &Label, alert: &AlertEvent| match &label.expect {
        Expect::Alert { kind, backend, .. } => {
            alert.kind.name() == *kind
                && alert.backend == *backend
                && alert.at_ms >= label.start_ms
                && alert.at_ms <= label.end_ms + GRACE_S * 1000
        }
        Expect::Change { .. } => false,
    };
    let records = |label: &Label, alert: &AlertEvent| match &label.expect {
        Expect::Change { operation } => {
            alert.evidence.change.as_ref().is_some_and(|c| c.operation == *operation)
                && alert.at_ms >= label.start_ms
                && alert.at_ms <= label.start_ms + CHANGE_WITHIN_S * 1000
        }
        Expect::Alert { .. } => false,
    };
    let line = |a: &AlertEvent| {
        format!(
            "{} {} {} {} {}: {}",
            format_rfc3339(a.at_ms),
            a.state.name(),
            a.severity.name(),
            a.kind.name(),
            a.backend,
            a.summary
        )
    };
    let n_incidents = labels.iter().filter(|l| matches!(l.expect, Expect::Alert { .. })).count();
    let mut result = CaseResult {
        name: case.name.clone(),
        hours: f64::from(case.scenario.duration_s) / 3600.0,
        incidents: n_incidents,
        detected: 0,
        diagnosed: 0,
        alerts: firing.len(),
        pages: firing.iter().filter(|a| a.severity >= Severity::Warning).count(),
        true_alerts: firing.iter().filter(|a| labels.iter().any(|l| matches(l, a))).count(),
        changes_expected: labels.len() - n_incidents,
        changes_recorded: labels.iter().filter(|l| noted.iter().any(|a| records(l, a))).count(),
        noted: noted.len(),
        left_firing: 0,
        delays_s: Vec::new(),
        resets_s: Vec::new(),
        dispersion: None,
        alert_lines: firing.iter().chain(&noted).map(|a| line(a)).collect(),
    };
    for label in &labels {
        let Expect::Alert { diagnosis, .. } = &label.expect else { continue };
        let Some(first) = firing.iter().find(|a| matches(label, a)) else { continue };
        result.detected += 1;
        result.diagnosed += usize::from(first.diagnosis.verdict.label() == *diagnosis);
        result.delays_s.push((first.at_ms - label.detectable_ms).max(0) / 1000);
        let resolved = alerts.iter().find(|a| {
            a.state == AlertState::Resolved
                && a.kind == first.kind
                && a.backend == first.backend
                && a.started_at_ms == first.started_at_ms
        });
        if let Some(resolved) = resolved {
            result.resets_s.push((resolved.at_ms - label.end_ms) / 1000);
        }
    }
    result
}

/// Totals over the suite.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Detected incidents / labelled incidents.
    pub recall: f64,
    /// True alerts / firing alerts.
    pub precision: f64,
    /// Detected incidents whose diagnosis names the right fault / detected incidents.
    pub diagnosis_accuracy: f64,
    /// Median detection delay over all detected incidents, s.
    pub median_delay_s: i64,
    /// The longest detection delay, s.
    pub max_delay_s: i64,
    /// Median reset time, s.
    pub median_reset_s: i64,
    /// False alarms (alerts of any severity) per simulated day over the clean cases.
    pub false_alarms_per_day: f64,
    /// Pages (`warning` and above) over the clean cases and routine operations.
    pub clean_pages: usize,
    /// Alerts still firing at the end of a clean case.
    pub clean_left_firing: usize,
    /// Routine changes recorded / labelled.
    pub changes_recorded: usize,
    /// Labelled routine changes.
    pub changes_expected: usize,
    /// Simulated hours of clean traffic (routine operations included).
    pub clean_hours: f64,
}

fn median(values: &mut [i64]) -> i64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Sums up case results.
#[allow(clippy::cast_precision_loss)]
pub fn summarize(results: &[CaseResult]) -> Summary {
    let incidents: usize = results.iter().map(|r| r.incidents).sum();
    let detected: usize = results.iter().map(|r| r.detected).sum();
    let diagnosed: usize = results.iter().map(|r| r.diagnosed).sum();
    let alerts: usize = results.iter().map(|r| r.alerts).sum();
    let true_alerts: usize = results.iter().map(|r| r.true_alerts).sum();
    let clean: Vec<&CaseResult> = results.iter().filter(|r| r.incidents == 0).collect();
    let clean_hours: f64 = clean.iter().map(|r| r.hours).sum();
    let clean_alerts: usize = clean.iter().map(|r| r.alerts).sum();
    let mut delays: Vec<i64> = results.iter().flat_map(|r| r.delays_s.clone()).collect();
    let mut resets: Vec<i64> = results.iter().flat_map(|r| r.resets_s.clone()).collect();
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    Summary {
        recall: ratio(detected, incidents),
        precision: ratio(true_alerts, alerts),
        diagnosis_accuracy: ratio(diagnosed, detected),
        max_delay_s: delays.iter().copied().max().unwrap_or(0),
        median_delay_s: median(&mut delays),
        median_reset_s: median(&mut resets),
        false_alarms_per_day: if clean_hours > 0.0 {
            clean_alerts as f64 * 24.0 / clean_hours
        } else {
            0.0
        },
        clean_pages: clean.iter().map(|r| r.pages).sum(),
        clean_left_firing: clean.iter().map(|r| r.left_firing).sum(),
        changes_recorded: results.iter().map(|r| r.changes_recorded).sum(),
        changes_expected: results.iter().map(|r| r.changes_expected).sum(),
        clean_hours,
    }
}

/// The Markdown table of results, as in EVALUATION.md: pages and recorded changes apart.
pub fn table(cases: &[Case], results: &[CaseResult], summary: &Summary) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "| scenario | what | hours | dispersion | incidents | detected | diagnosed | pages | alerts | true alerts | changes recorded | noted | delay (s) | reset (s) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (case, r) in cases.iter().zip(results) {
        let list = |v: &[i64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            }
        };
        let changes = if r.changes_expected == 0 {
            "-".to_string()
        } else {
            format!("{}/{}", r.changes_recorded, r.changes_expected)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            case.description,
            r.hours,
            r.dispersion.map_or_else(|| "-".to_string(), |d| format!("{d:.1}")),
            r.incidents,
            r.detected,
            r.diagnosed,
            r.pages,
            r.alerts,
            r.true_alerts,
            changes,
            r.noted,
            list(&r.delays_s),
            list(&r.resets_s)
        );
    }
    let _ = writeln!(
        out,
        "\n**Recall {:.2}, precision {:.2}, diagnosis right on {:.0}% of the detected incidents, median detection delay {} s (longest {} s), median reset {} s; over {:.0} clean hours (routine operations included) {} pages, {:.2} false alarms per day and {} alerts left firing; {} of {} routine changes recorded.**",
        summary.recall,
        summary.precision,
        summary.diagnosis_accuracy * 100.0,
        summary.median_delay_s,
        summary.max_delay_s,
        summary.median_reset_s,
        summary.clean_hours,
        summary.clean_pages,
        summary.false_alarms_per_day,
        summary.clean_left_firing,
        summary.changes_recorded,
        summary.changes_expected,
    );
    out
}
