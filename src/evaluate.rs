//! The labelled evaluation suite: scripted scenarios with known incidents, run through the
//! real window → detect stages, scored on the four properties the SRE book grades alerts by
//! (precision, recall, detection delay, reset time) plus false alarms per day on clean traffic.
//!
//! `skewtail evaluate` prints the table recorded in EVALUATION.md; `tests/evaluation.rs`
//! fails when a change drops below the floors. Requests come from [`crate::synth`], the
//! generator behind `skewtail simulate`, and enter the pipeline as records (parsing is tested
//! on its own; here it would only cost time).

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::detect::{AlertEvent, AlertState, Detector, DetectorConfig};
use crate::parse::Record;
use crate::parse::time::format_rfc3339;
use crate::pipeline::{Observer, Pipeline};
use crate::synth::{Generated, Incident, Join, Scenario, backend_addresses};
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
    /// Configured weights for the pool, one per backend (`None`: learned baseline).
    pub weights: Option<Vec<f64>>,
    /// The names the weights give the backends, when they differ from the log's (a typo in
    /// the config); every backend that serves without a weight should be an `unexpected`.
    pub weight_names: Option<Vec<String>>,
}

impl Case {
    fn new(name: &'static str, description: &'static str, scenario: Scenario) -> Self {
        Case { name, description, scenario, weights: None, weight_names: None }
    }

    fn weighted(self, weights: Vec<f64>) -> Self {
        Case { weights: Some(weights), ..self }
    }
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
    /// The normal traffic's per-window dispersion (the mean Pearson χ²/df of the backends'
    /// counts against their normal shares, outside incidents): 1 for independent requests;
    /// `None` when no window had 100 requests.
    pub dispersion: Option<f64>,
    /// One line per firing alert, for reading the table's numbers.
    pub alert_lines: Vec<String>,
}

/// The suite: scripted incidents on textbook and on real-world traffic (bursty, hashed,
/// slow-starting, flapping, cold-starting), and a day of clean traffic for each pool shape.
/// `hours_clean` sets the length of the clean runs (24 in the recorded evaluation).
#[allow(clippy::too_many_lines)] // one literal per case
pub fn suite(hours_clean: u32) -> Vec<Case> {
    let base = Scenario { retry_fraction: 0.002, ..Scenario::clean(3600, 40) };
    let hour = 3600;
    let spec = |s: &str| {
        Incident::from_spec(s).unwrap_or_else(|e| unreachable!("the suite's specs parse: {e}"))
    };
    let clean_day = hours_clean * hour;
    // Client keep-alive batches: counts over 20x as dispersed as independent requests.
    let bursty = Scenario { batch_dispersion: 24.0, ..base.clone() };
    // Client-hash or sticky pools: batches, and 200 clients pinned for 5 minutes on average.
    let hashed = Scenario { batch_dispersion: 24.0, sticky_s: 300, ..base.clone() };
    let four = backend_addresses(4);
    let mut typo_names = four.clone();
    typo_names[3] = "10.0.0.40:8080".to_string();
    vec![
        Case::new(
            "seed incident",
            "one of 8 backends takes 45% and errors (the seed postmortem)",
            Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("seed@60m+25m")],
                seed: 1,
                ..base.clone()
            },
        ),
        Case::new(
            "flash crowd",
            "3x traffic spread evenly: a spike, not a skew",
            Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("surge@60m+15m:factor=3")],
                seed: 2,
                ..base.clone()
            },
        ),
        Case::new(
            "slow backend",
            "one backend 10x slower, share unchanged",
            Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("slow@60m+15m:backend=5,factor=10")],
                seed: 4,
                ..base.clone()
            },
        ),
        Case::new(
            "failing backend",
            "one backend fails 20% of its requests",
            Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("errors@60m+15m:backend=1,rate=0.2")],
                seed: 5,
                ..base.clone()
            },
        ),
        Case::new(
            "backend drops out",
            "one backend takes no traffic",
            Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("drop@60m+15m:backend=6")],
                seed: 6,
                ..base.clone()
            },
        ),
        Case::new(
            "200 backends, one 4x",
            "a 200-backend pool where one backend takes 4x its share",
            Scenario {
                duration_s: 2 * hour,
                rate_per_s: 200,
                backends: backend_addresses(200),
                incidents: vec![spec("skew@60m+15m:backend=17,share=0.02")],
                seed: 8,
                ..base.clone()
            },
        ),
        Case::new(
            "2 backends, one 75%",
            "the smallest pool: one of two backends takes three quarters",
            Scenario {
                duration_s: 2 * hour,
                backends: backend_addresses(2),
                incidents: vec![spec("skew@60m+15m:backend=1,share=0.75")],
                seed: 14,
                ..base.clone()
            },
        ),
        Case::new(
            "500 backends, one 4x",
            "500 backends at 1,000 requests/s where one takes 4x its share",
            Scenario {
                duration_s: hour,
                rate_per_s: 1000,
                backends: backend_addresses(500),
                incidents: vec![spec("skew@30m+15m:backend=321,share=0.008")],
                seed: 15,
                ..base.clone()
            },
        ),
        Case::new(
            "100,000 req/s, one 1.6x",
            "8 weighted backends at 100,000 requests/s where one takes 20%",
            Scenario {
                duration_s: 6 * 60,
                rate_per_s: 100_000,
                incidents: vec![spec("skew@3m+2m:backend=4,share=0.2")],
                seed: 17,
                ..base.clone()
            },
        )
        .weighted(vec![1.0; 8]),
        Case::new(
            "slow drift",
            "one backend drifts from 12.5% to 35% over 40 minutes",
            Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("drift@40m+40m:backend=0,share=0.35")],
                seed: 9,
                ..base.clone()
            },
        ),
        Case::new(
            "pool-wide outage",
            "every backend fails 10% of its requests for 20 minutes",
            Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("outage@60m+20m:rate=0.1")],
                seed: 13,
                ..base.clone()
            },
        ),
        Case::new(
            "late lines",
            "the seed incident with 10% of lines up to 30 s out of order",
            Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("seed@60m+25m")],
                late_fraction: 0.1,
                max_lateness_s: 30,
                seed: 10,
                ..base.clone()
            },
        ),
        Case::new(
            "bursty pool, one 45%",
            "keep-alive batches (20x dispersion); one backend takes 45%",
            Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("skew@60m+20m:backend=2,share=0.45")],
                seed: 21,
                ..bursty.clone()
            },
        ),
        Case::new(
            "hashed pool, one 40%",
            "client-hash pool (batches, sticky clients); one backend takes 40%",
            Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("skew@60m+20m:backend=3,share=0.4")],
                seed: 22,
                ..hashed.clone()
            },
        ),
        Case::new(
            "flapping backend",
            "a health check flaps: out 20 s, in 20 s, for 10 minutes",
            Scenario {
                duration_s: 2 * hour,
                incidents: vec![spec("flap@60m+10m:backend=5,period=40")],
                seed: 23,
                ..base.clone()
            },
        ),
        Case::new(
            "cold start, weight 10",
            "4 equal backends; one set to weight 10 three minutes after start, restored 3 minutes later",
            Scenario {
                duration_s: 15 * 60,
                rate_per_s: 100,
                backends: four.clone(),
                incidents: vec![spec("skew@3m+3m:backend=0,share=0.77")],
                seed: 24,
                ..base.clone()
            },
        ),
        Case::new(
            "dead from the start",
            "4 configured backends; one never appears in the log",
            Scenario {
                duration_s: hour,
                backends: four.clone(),
                incidents: vec![spec("drop@0s+1h:backend=3")],
                seed: 25,
                ..base.clone()
            },
        )
        .weighted(vec![1.0; 4]),
        Case {
            weight_names: Some(typo_names),
            ..Case::new(
                "typo in the weights",
                "the config names 10.0.0.40:8080 where the log has 10.0.0.4:8080",
                Scenario { duration_s: hour, backends: four.clone(), seed: 26, ..base.clone() },
            )
            .weighted(vec![1.0; 4])
        },
        Case::new(
            "weighted pool, clean",
            "3:1:1:1 behaving as configured",
            Scenario {
                duration_s: clean_day,
                backends: four.clone(),
                weights: vec![3.0, 1.0, 1.0, 1.0],
                seed: 3,
                diurnal: true,
                ..base.clone()
            },
        )
        .weighted(vec![3.0, 1.0, 1.0, 1.0]),
        Case::new(
            "quiet pool, clean",
            "4 requests/s over 8 backends, nothing wrong",
            Scenario {
                duration_s: clean_day,
                rate_per_s: 4,
                seed: 7,
                diurnal: true,
                ..base.clone()
            },
        ),
        Case::new(
            "8 backends, clean",
            "8 equal backends at 40 requests/s with diurnal load",
            Scenario { duration_s: clean_day, seed: 11, diurnal: true, ..base.clone() },
        ),
        Case::new(
            "2 backends, clean",
            "the smallest pool at 40 requests/s with diurnal load",
            Scenario {
                duration_s: clean_day,
                backends: backend_addresses(2),
                seed: 16,
                diurnal: true,
                ..base.clone()
            },
        ),
        Case::new(
            "200 backends, clean",
            "200 equal backends at 200 requests/s with diurnal load",
            Scenario {
                duration_s: clean_day,
                rate_per_s: 200,
                backends: backend_addresses(200),
                seed: 12,
                diurnal: true,
                ..base.clone()
            },
        ),
        Case::new(
            "bursty pool, clean",
            "keep-alive batches: counts 20x as dispersed as independent requests",
            Scenario { duration_s: clean_day, seed: 31, diurnal: true, ..bursty },
        ),
        Case::new(
            "hashed pool, clean",
            "client-hash pool: batches and 200 clients pinned for minutes",
            Scenario { duration_s: clean_day, seed: 32, diurnal: true, ..hashed },
        ),
        Case::new(
            "hourly scale-ups, clean",
            "a new backend every hour, slow-started over 90 s (4 to 27 backends)",
            Scenario {
                duration_s: clean_day,
                rate_per_s: 100,
                backends: backend_addresses(4 + hours_clean as usize),
                joins: (0..hours_clean)
                    .map(|h| Join { backend: 4 + h as usize, at_s: h * hour + 1800, ramp_s: 90 })
                    .collect(),
                seed: 33,
                diurnal: true,
                ..base.clone()
            },
        ),
        Case::new(
            "quiet night, clean",
            "20 requests/s by day, 0.5 at night, with heavy latency tails",
            Scenario {
                duration_s: clean_day,
                rate_per_s: 20,
                night_ratio: 0.025,
                latency_tail: true,
                seed: 34,
                diurnal: true,
                ..base
            },
        ),
    ]
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
    fn window(&mut self, window: &WindowSummary) {
        // Pearson χ²/df over the backends that served, their normal shares renormalised.
        let n = window.total_requests() as f64;
        let total_share: f64 =
            window.backends.iter().filter_map(|b| self.normal.get(&*b.backend)).sum();
        let during_incident = self
            .incidents
            .iter()
            .any(|&(start, end)| window.start_ms < end && window.end_ms > start);
        if n < 100.0 || window.backends.len() < 2 || total_share <= 0.0 || during_incident {
            return;
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
    }

    fn alert(&mut self, alert: &AlertEvent) {
        self.alerts.push(alert.clone());
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
    let mut result = score(case, &observer.alerts);
    #[allow(clippy::cast_precision_loss)]
    let n_windows = observer.dispersions.len() as f64;
    result.dispersion =
        (n_windows > 0.0).then(|| observer.dispersions.iter().sum::<f64>() / n_windows);
    result
}

/// A labelled incident: what should fire, on which backend, when.
struct Label {
    kind: &'static str,
    backend: Arc<str>,
    start_ms: i64,
    /// When the incident becomes big enough to page for (a drift's crossing of the effect
    /// floor); the delay counts from here.
    detectable_ms: i64,
    end_ms: i64,
}

fn labels(case: &Case) -> Vec<Label> {
    let scenario = &case.scenario;
    let normal = scenario.normal_shares();
    let min_ratio = DetectorConfig::default().min_ratio;
    let at = |second: f64| {
        #[allow(clippy::cast_possible_truncation)]
        let ms = (second * 1000.0) as i64;
        scenario.start_ms + ms
    };
    let mut labels: Vec<Label> = scenario
        .incidents
        .iter()
        .map(|incident| {
            let kind = incident.expected_kind(normal[incident.backend]);
            // A drift becomes an incident when it crosses the effect floor, not when it
            // starts at 0.1% a minute.
            let q = normal[incident.backend];
            let detectable_s = match incident.share {
                Some(target) if incident.ramp && target > q * min_ratio => {
                    f64::from(incident.start_s)
                        + f64::from(incident.duration_s) * (q * min_ratio - q) / (target - q)
                }
                _ => f64::from(incident.start_s),
            };
            Label {
                kind,
                backend: if incident.is_pool_wide() {
                    Arc::from(crate::detect::WHOLE_POOL)
                } else {
                    Arc::from(scenario.backends[incident.backend].as_str())
                },
                start_ms: at(f64::from(incident.start_s)),
                detectable_ms: at(detectable_s),
                end_ms: at(f64::from(incident.start_s + incident.duration_s)),
            }
        })
        .collect();
    // Backends the weights do not name serve all along: each is one `unexpected` finding.
    if let Some(names) = &case.weight_names {
        for backend in scenario.backends.iter().filter(|b| !names.contains(b)) {
            labels.push(Label {
                kind: "unexpected",
                backend: Arc::from(backend.as_str()),
                start_ms: scenario.start_ms,
                detectable_ms: scenario.start_ms,
                end_ms: at(f64::from(scenario.duration_s)),
            });
        }
    }
    labels
}

fn score(case: &Case, alerts: &[AlertEvent]) -> CaseResult {
    let labels = labels(case);
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
        dispersion: None,
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
    /// Median detection delay over all detected incidents, s.
    pub median_delay_s: i64,
    /// The longest detection delay, s.
    pub max_delay_s: i64,
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
        max_delay_s: delays.iter().copied().max().unwrap_or(0),
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
        "| scenario | what | hours | dispersion | incidents | detected | alerts | true alerts | delay (s) | reset (s) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
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
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            case.description,
            r.hours,
            r.dispersion.map_or_else(|| "-".to_string(), |d| format!("{d:.1}")),
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
        "\n**Recall {:.2}, precision {:.2}, median detection delay {} s (longest {} s), median reset {} s, {:.2} false alarms per day over {:.0} clean hours.**",
        summary.recall,
        summary.precision,
        summary.median_delay_s,
        summary.max_delay_s,
        summary.median_reset_s,
        summary.false_alarms_per_day,
        summary.clean_hours
    );
    out
}
