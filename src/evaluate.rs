//! The labelled evaluation suite: scripted scenarios with known incidents, run through the
//! real window → detect stages, scored on the four properties the SRE book grades alerts by
//! (precision, recall, detection delay, reset time) plus false alarms per day on clean traffic.
//!
//! `skewtail evaluate` prints the table recorded in EVALUATION.md; `tests/evaluation.rs`
//! fails when a change drops below the floors. Requests come from [`crate::synth`], the
//! generator behind `skewtail simulate`, and enter the pipeline as records (parsing is tested
//! on its own; here it would only cost time).

use std::sync::Arc;

use crate::detect::{AlertEvent, AlertState, Detector, DetectorConfig};
use crate::parse::Record;
use crate::parse::time::format_rfc3339;
use crate::pipeline::{Observer, Pipeline};
use crate::synth::{Generated, Incident, Scenario, backend_addresses};
use crate::window::WindowSummary;

/// Seconds after an incident ends within which a matching alert still counts as detecting it
/// (a skew learned as normal at the very end would otherwise be a miss and a false alarm).
const GRACE_S: i64 = 120;

/// One scenario of the suite.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short name for the table.
    pub name: &'static str,
    /// What it checks.
    pub description: &'static str,
    /// The traffic and its incidents.
    pub scenario: Scenario,
    /// Configured weights for the pool (`None`: learned baseline).
    pub weights: Option<Vec<f64>>,
}

/// What one case scored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    /// The case's name.
    pub name: &'static str,
    /// Simulated hours.
    pub hours: f64,
    /// Labelled incidents.
    pub incidents: usize,
    /// Of those, detected by an alert of the expected kind on the expected backend.
    pub detected: usize,
    /// Firing alerts.
    pub alerts: usize,
    /// Firing alerts that match a labelled incident.
    pub true_alerts: usize,
    /// Detection delay per detected incident: first matching firing − incident start, s.
    pub delays_s: Vec<i64>,
    /// Reset time per detected incident: matching resolve − incident end, s (missing when
    /// still firing at the end of the case).
    pub resets_s: Vec<i64>,
    /// One line per firing alert, for reading the table's numbers.
    pub alert_lines: Vec<String>,
}

/// The suite: the ten scenarios, a pool-wide outage, and a day of clean traffic for
/// each pool shape.
/// `hours_clean` sets the length of the clean runs (24 in the recorded evaluation).
pub fn suite(hours_clean: u32) -> Vec<Case> {
    let base = Scenario { retry_fraction: 0.002, ..Scenario::clean(3600, 40) };
    let hour = 3600;
    let spec = |s: &str| {
        Incident::from_spec(s).unwrap_or_else(|e| unreachable!("the suite's specs parse: {e}"))
    };
    let clean_day = hours_clean * hour;
    vec![
        Case {
            name: "seed incident",
            description: "one of 8 backends takes 45% and errors (the seed postmortem)",
            scenario: Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("seed@60m+25m")],
                seed: 1,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "flash crowd",
            description: "3x traffic spread evenly: a spike, not a skew",
            scenario: Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("surge@60m+15m:factor=3")],
                seed: 2,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "weighted pool, clean",
            description: "3:1:1:1 behaving as configured",
            scenario: Scenario {
                duration_s: clean_day,
                backends: backend_addresses(4),
                weights: vec![3.0, 1.0, 1.0, 1.0],
                seed: 3,
                diurnal: true,
                ..base.clone()
            },
            weights: Some(vec![3.0, 1.0, 1.0, 1.0]),
        },
        Case {
            name: "slow backend",
            description: "one backend 10x slower, share unchanged",
            scenario: Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("slow@60m+15m:backend=5,factor=10")],
                seed: 4,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "failing backend",
            description: "one backend fails 20% of its requests",
            scenario: Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("errors@60m+15m:backend=1,rate=0.2")],
                seed: 5,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "backend drops out",
            description: "one backend takes no traffic",
            scenario: Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("drop@60m+15m:backend=6")],
                seed: 6,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "quiet pool, clean",
            description: "4 requests/s over 8 backends, nothing wrong",
            scenario: Scenario {
                duration_s: clean_day,
                rate_per_s: 4,
                seed: 7,
                diurnal: true,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "200 backends, one 4x",
            description: "a 200-backend pool where one backend takes 4x its share",
            scenario: Scenario {
                duration_s: 2 * hour,
                rate_per_s: 200,
                backends: backend_addresses(200),
                incidents: vec![spec("skew@60m+15m:backend=17,share=0.02")],
                seed: 8,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "2 backends, one 75%",
            description: "the smallest pool: one of two backends takes three quarters",
            scenario: Scenario {
                duration_s: 2 * hour,
                backends: backend_addresses(2),
                incidents: vec![spec("skew@60m+15m:backend=1,share=0.75")],
                seed: 14,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "500 backends, one 4x",
            description: "500 backends at 1,000 requests/s where one takes 4x its share",
            scenario: Scenario {
                duration_s: hour,
                rate_per_s: 1000,
                backends: backend_addresses(500),
                incidents: vec![spec("skew@30m+15m:backend=321,share=0.008")],
                seed: 15,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "100,000 req/s, one 1.6x",
            description: "8 weighted backends at 100,000 requests/s where one takes 20%",
            scenario: Scenario {
                duration_s: 6 * 60,
                rate_per_s: 100_000,
                incidents: vec![spec("skew@3m+2m:backend=4,share=0.2")],
                seed: 17,
                ..base.clone()
            },
            weights: Some(vec![1.0; 8]),
        },
        Case {
            name: "slow drift",
            description: "one backend drifts from 12.5% to 35% over 40 minutes",
            scenario: Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("drift@40m+40m:backend=0,share=0.35")],
                seed: 9,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "pool-wide outage",
            description: "every backend fails 10% of its requests for 20 minutes",
            scenario: Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("outage@60m+20m:rate=0.1")],
                seed: 13,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "late lines",
            description: "the seed incident with 10% of lines up to 30 s out of order",
            scenario: Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("seed@60m+25m")],
                late_fraction: 0.1,
                max_lateness_s: 30,
                seed: 10,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "8 backends, clean",
            description: "8 equal backends at 40 requests/s with diurnal load",
            scenario: Scenario { duration_s: clean_day, seed: 11, diurnal: true, ..base.clone() },
            weights: None,
        },
        Case {
            name: "2 backends, clean",
            description: "the smallest pool at 40 requests/s with diurnal load",
            scenario: Scenario {
                duration_s: clean_day,
                backends: backend_addresses(2),
                seed: 16,
                diurnal: true,
                ..base.clone()
            },
            weights: None,
        },
        Case {
            name: "200 backends, clean",
            description: "200 equal backends at 200 requests/s with diurnal load",
            scenario: Scenario {
                duration_s: clean_day,
                rate_per_s: 200,
                backends: backend_addresses(200),
                seed: 12,
                diurnal: true,
                ..base
            },
            weights: None,
        },
    ]
}

struct Collect(Vec<AlertEvent>);

impl Observer for Collect {
    fn window(&mut self, _: &WindowSummary) {}
    fn alert(&mut self, alert: &AlertEvent) {
        self.0.push(alert.clone());
    }
}

/// Runs one case with the default detector settings and scores it.
pub fn run_case(case: &Case) -> CaseResult {
    let scenario = &case.scenario;
    let mut weights = rustc_hash::FxHashMap::default();
    if let Some(case_weights) = &case.weights {
        weights.insert(
            "api".to_string(),
            scenario.backends.iter().cloned().zip(case_weights.iter().copied()).collect(),
        );
    }
    let mut pipeline = Pipeline::new(Detector::with_weights(DetectorConfig::default(), weights));
    let parser = crate::parse::PatternSet::builtin()
        .get("upstream")
        .and_then(|p| p.compile(&[]).ok())
        .unwrap_or_else(|| unreachable!("the built-in upstream pattern compiles"));
    let input = pipeline.add_input("evaluation", parser, "api");
    let mut observer = Collect(Vec::new());
    let generated = scenario.generate(|item| {
        if let Generated::Request(facts) = item {
            let record = Record {
                timestamp_ms: facts.time_ms,
                backend: Some(scenario.backends[facts.backend].as_bytes()),
                attempts: if facts.retried_from.is_some() { 2 } else { 1 },
                status: Some(facts.status),
                upstream_latency_s: Some(facts.latency_s),
                ..Record::default()
            };
            pipeline.push_record(input, &record, &mut observer);
        }
        Ok(())
    });
    generated.unwrap_or_else(|e| unreachable!("generating into memory cannot fail: {e}"));
    pipeline.finish_input(input, &mut observer);
    score(case, &observer.0)
}

/// A labelled incident: what should fire, on which backend, when.
struct Label {
    kind: &'static str,
    backend: Arc<str>,
    start_ms: i64,
    end_ms: i64,
}

fn labels(scenario: &Scenario) -> Vec<Label> {
    let normal = scenario.normal_shares();
    scenario
        .incidents
        .iter()
        .map(|incident| {
            let kind = incident.expected_kind(normal[incident.backend]);
            Label {
                kind,
                backend: if incident.is_pool_wide() {
                    Arc::from(crate::detect::WHOLE_POOL)
                } else {
                    Arc::from(scenario.backends[incident.backend].as_str())
                },
                start_ms: scenario.start_ms + i64::from(incident.start_s) * 1000,
                end_ms: scenario.start_ms
                    + i64::from(incident.start_s + incident.duration_s) * 1000,
            }
        })
        .collect()
}

fn score(case: &Case, alerts: &[AlertEvent]) -> CaseResult {
    let labels = labels(&case.scenario);
    let firing: Vec<&AlertEvent> =
        alerts.iter().filter(|a| a.state == AlertState::Firing).collect();
    let matches = |label: &Label, alert: &AlertEvent| {
        alert.kind.name() == label.kind
            && alert.backend == label.backend
            && alert.at_ms >= label.start_ms
            && alert.at_ms <= label.end_ms + GRACE_S * 1000
    };
    let mut result = CaseResult {
        name: case.name,
        hours: f64::from(case.scenario.duration_s) / 3600.0,
        incidents: labels.len(),
        detected: 0,
        alerts: firing.len(),
        true_alerts: firing.iter().filter(|a| labels.iter().any(|l| matches(l, a))).count(),
        delays_s: Vec::new(),
        resets_s: Vec::new(),
        alert_lines: firing
            .iter()
            .map(|a| {
                format!(
                    "{} {} {}: {}",
                    format_rfc3339(a.at_ms),
                    a.kind.name(),
                    a.backend,
                    a.summary
                )
            })
            .collect(),
    };
    for label in &labels {
        let Some(first) = firing.iter().find(|a| matches(label, a)) else { continue };
        result.detected += 1;
        result.delays_s.push((first.at_ms - label.start_ms) / 1000);
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
    /// Median detection delay over all detected incidents, s.
    pub median_delay_s: i64,
    /// Median reset time, s.
    pub median_reset_s: i64,
    /// False alarms per simulated day over the clean cases.
    pub false_alarms_per_day: f64,
    /// Simulated hours of clean traffic.
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
    let alerts: usize = results.iter().map(|r| r.alerts).sum();
    let true_alerts: usize = results.iter().map(|r| r.true_alerts).sum();
    let clean: Vec<&CaseResult> = results.iter().filter(|r| r.incidents == 0).collect();
    let clean_hours: f64 = clean.iter().map(|r| r.hours).sum();
    let clean_alerts: usize = clean.iter().map(|r| r.alerts).sum();
    let mut delays: Vec<i64> = results.iter().flat_map(|r| r.delays_s.clone()).collect();
    let mut resets: Vec<i64> = results.iter().flat_map(|r| r.resets_s.clone()).collect();
    Summary {
        recall: if incidents == 0 { 1.0 } else { detected as f64 / incidents as f64 },
        precision: if alerts == 0 { 1.0 } else { true_alerts as f64 / alerts as f64 },
        median_delay_s: median(&mut delays),
        median_reset_s: median(&mut resets),
        false_alarms_per_day: if clean_hours > 0.0 {
            clean_alerts as f64 * 24.0 / clean_hours
        } else {
            0.0
        },
        clean_hours,
    }
}

/// The Markdown table of results, as in EVALUATION.md.
pub fn table(cases: &[Case], results: &[CaseResult], summary: &Summary) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "| scenario | what | hours | incidents | detected | alerts | true alerts | delay (s) | reset (s) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (case, r) in cases.iter().zip(results) {
        let list = |v: &[i64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |",
            r.name,
            case.description,
            r.hours,
            r.incidents,
            r.detected,
            r.alerts,
            r.true_alerts,
            list(&r.delays_s),
            list(&r.resets_s)
        );
    }
    let _ = writeln!(
        out,
        "\n**Recall {:.2}, precision {:.2}, median detection delay {} s, median reset {} s, {:.2} false alarms per day over {:.0} clean hours.**",
        summary.recall,
        summary.precision,
        summary.median_delay_s,
        summary.median_reset_s,
        summary.false_alarms_per_day,
        summary.clean_hours
    );
    out
}
