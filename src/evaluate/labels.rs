//! What a good detector does with each case: the pages it must send (kind, backend, and where
//! the fault is), and the changes it must record instead of paging. Derived from the
//! scenario's incidents and the weights skewtail is given, never written per case.

use std::sync::Arc;

use super::Case;
use crate::detect::{DetectorConfig, Operation, WHOLE_POOL};

/// What one label expects.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expect {
    /// A page (or, for `unexpected`, an info alert) of this kind on this backend, whose
    /// diagnosis names this fault.
    Alert { kind: &'static str, backend: Arc<str>, diagnosis: &'static str },
    /// A noted change of this operation (or the learned split of a pool uneven from the
    /// start).
    Change(Operation),
}

/// One labelled event.
#[derive(Debug, Clone)]
pub(super) struct Label {
    pub(super) expect: Expect,
    pub(super) start_ms: i64,
    /// When it becomes big enough to page for (a drift's crossing of the effect floor); the
    /// delay counts from here.
    pub(super) detectable_ms: i64,
    pub(super) end_ms: i64,
}

/// The labels of `case`.
pub(super) fn labels(case: &Case) -> Vec<Label> {
    let scenario = &case.scenario;
    let config = DetectorConfig::default();
    let normal = scenario.normal_shares();
    let at = |second: f64| {
        #[allow(clippy::cast_possible_truncation)]
        let ms = (second * 1000.0) as i64;
        scenario.start_ms + ms
    };
    let case_end_s = f64::from(scenario.duration_s);
    let weighted = case.weights.is_some();
    let mut labels = Vec::new();
    for incident in &scenario.incidents {
        let start = f64::from(incident.start_s);
        let end = f64::from(incident.start_s + incident.duration_s);
        let q = normal[incident.backend];
        let change = |operation, from: f64| Label {
            expect: Expect::Change(operation),
            start_ms: at(from),
            detectable_ms: at(from),
            end_ms: at(from),
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
            });
        }
    }
    // Backends that join during the case: a scale-out each.
    for join in &scenario.joins {
        let from = f64::from(join.at_s);
        if from < case_end_s {
            labels.push(Label {
                expect: Expect::Change(Operation::ScaleOut),
                start_ms: at(from),
                detectable_ms: at(from),
                end_ms: at(from),
            });
        }
    }
    // A pool uneven by design that skewtail is not told about: one finding, learned.
    let even = 1.0 / normal.len().max(1) as f64;
    if !weighted && normal.iter().any(|&s| s >= even * config.min_ratio) {
        labels.push(Label {
            expect: Expect::Change(Operation::UnevenFromStart),
            start_ms: scenario.start_ms,
            detectable_ms: scenario.start_ms,
            end_ms: scenario.start_ms,
        });
    }
    // Backends the weights do not name serve all along: each is one `unexpected` finding.
    if let Some(names) = &case.weight_names {
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
            });
        }
    }
    labels
}
