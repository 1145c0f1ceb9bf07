//! What a good detector does with each case: the pages it must send (kind, backend, and where
//! the fault is), and the changes it must record instead of paging. Derived from the
//! scenario's incidents and the weights skewtail is given, never written per case.

use std::sync::Arc;

use crate::detect::{DetectorConfig, Operation, WHOLE_POOL};
use crate::synth::Scenario;

/// What one label expects.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "expect", rename_all = "snake_case")]
pub enum Expect {
    /// A page (or, for `unexpected`, an info alert) of this kind on this backend (`*` for the
    /// pool), whose diagnosis names this fault.
    Alert {
        /// The alert kind.
        kind: &'static str,
        /// The backend, as the scenario names it.
        backend: Arc<str>,
        /// `balancer`, `backend`, `shared dependency` or `load`.
        diagnosis: &'static str,
    },
    /// A noted change of this operation (or the learned split of a pool uneven from the
    /// start), never a page.
    Change {
        /// The operation.
        operation: Operation,
    },
}

/// One labelled event: what a good detector does, and when.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Label {
    /// What it expects.
    #[serde(flatten)]
    pub expect: Expect,
    /// When the incident or operation begins, Unix ms.
    pub start_ms: i64,
    /// When it becomes big enough to page for (a drift's crossing of the effect floor); the
    /// delay counts from here, Unix ms.
    pub detectable_ms: i64,
    /// When it ends, Unix ms.
    pub end_ms: i64,
    /// The incident spec it comes from, if any (by its index in the scenario).
    #[serde(skip)]
    pub incident: Option<usize>,
}

/// The labels of `scenario` when skewtail is told `weights` (one per backend, under
/// `weight_names` when the config spells them differently), or learns the pool.
pub fn labels(
    scenario: &Scenario,
    weights: Option<&[f64]>,
    weight_names: Option<&[String]>,
) -> Vec<Label> {
    let config = DetectorConfig::default();
    let normal = scenario.normal_shares();
    let at = |second: f64| {
        #[allow(clippy::cast_possible_truncation)]
        let ms = (second * 1000.0) as i64;
        scenario.start_ms + ms
    };
    let case_end_s = f64::from(scenario.duration_s);
    let weighted = weights.is_some();
    let mut labels = Vec::new();
    for (number, incident) in scenario.incidents.iter().enumerate() {
        let start = f64::from(incident.start_s);
        let end = f64::from(incident.start_s + incident.duration_s);
        let q = normal[incident.backend];
        let change = |operation, from: f64| Label {
            expect: Expect::Change { operation },
            start_ms: at(from),
            detectable_ms: at(from),
            end_ms: at(from),
            incident: Some(number),
        };
        // A clean departure from a learned pool that it can absorb, for longer than the grace,
        // is a scale-in (and its return a scale-out): a change, not a page.
        let clean_departure = incident.share == Some(0.0)
            && incident.refuse_every_s == 0
            && !weighted
            && q * incident.count as f64 <= config.departure_max_share - 1e-9;
        if incident.drain_s > 0 {
            labels.push(change(Operation::RollingRestart, start));
        } else if clean_departure {
            labels.push(change(Operation::ScaleIn, start));
            if end < case_end_s {
                labels.push(change(Operation::ScaleOut, end));
            }
        } else if incident.is_operation() {
            labels.push(change(Operation::Canary, start));
            if incident.leaves {
                labels.push(change(Operation::ScaleIn, end));
            } else {
                labels.push(change(Operation::Evened, end));
            }
        } else {
            let kind = incident.expected_kind(q);
            // A drift becomes an incident when it crosses the effect floor, not when it
            // starts at 0.1% a minute.
            let detectable_s = match incident.share {
                Some(target) if incident.ramp && target > q * config.min_ratio => {
                    start
                        + f64::from(incident.duration_s) * (q * config.min_ratio - q) / (target - q)
                }
                _ => start,
            };
            labels.push(Label {
                expect: Expect::Alert {
                    kind,
                    backend: if incident.is_pool_wide() {
                        Arc::from(WHOLE_POOL)
                    } else {
                        Arc::from(scenario.backends[incident.backend].as_str())
                    },
                    diagnosis: incident.expected_diagnosis(),
                },
                start_ms: at(start),
                detectable_ms: at(detectable_s),
                end_ms: at(end),
                incident: Some(number),
            });
        }
    }
    // Backends that join during the case: a scale-out each.
    for join in &scenario.joins {
        let from = f64::from(join.at_s);
        if from < case_end_s {
            labels.push(Label {
                expect: Expect::Change { operation: Operation::ScaleOut },
                start_ms: at(from),
                detectable_ms: at(from),
                end_ms: at(from),
                incident: None,
            });
        }
    }
    // A pool uneven by design that skewtail is not told about: one finding, learned.
    #[allow(clippy::cast_precision_loss)]
    let even = 1.0 / normal.len().max(1) as f64;
    if !weighted && normal.iter().any(|&s| s >= even * config.min_ratio) {
        labels.push(Label {
            expect: Expect::Change { operation: Operation::UnevenFromStart },
            start_ms: scenario.start_ms,
            detectable_ms: scenario.start_ms,
            end_ms: scenario.start_ms,
            incident: None,
        });
    }
    // Backends the weights do not name serve all along: each is one `unexpected` finding.
    if let Some(names) = weight_names {
        for backend in scenario.backends.iter().filter(|b| !names.contains(b)) {
            labels.push(Label {
                expect: Expect::Alert {
                    kind: "unexpected",
                    backend: Arc::from(backend.as_str()),
                    diagnosis: "balancer",
                },
                start_ms: scenario.start_ms,
                detectable_ms: scenario.start_ms,
                end_ms: at(case_end_s),
                incident: None,
            });
        }
    }
    labels
}
