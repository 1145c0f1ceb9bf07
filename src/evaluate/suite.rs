//! The suite's data (`suite.toml`) read into [`Case`]s: each case is a `simulate` scenario
//! with a fixed seed, and the weights skewtail is told.

use serde::Deserialize;

use super::Case;
use crate::synth::{Incident, Scenario, backend_addresses, parse_duration_s};

/// The suite as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    case: Vec<CaseSpec>,
}

/// One case as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    what: String,
    #[serde(default)]
    hours: Option<f64>,
    #[serde(default)]
    clean: bool,
    #[serde(default)]
    rate: Option<f64>,
    #[serde(default)]
    backends: Option<usize>,
    #[serde(default)]
    weights: Vec<f64>,
    #[serde(default)]
    configured: Option<Vec<f64>>,
    #[serde(default)]
    configured_names: Option<Vec<String>>,
    #[serde(default)]
    incidents: Vec<String>,
    #[serde(default)]
    every: Option<String>,
    #[serde(default)]
    once: Vec<String>,
    #[serde(default)]
    diurnal: bool,
    #[serde(default)]
    night_ratio: Option<f64>,
    #[serde(default)]
    dispersion: Option<f64>,
    #[serde(default)]
    sticky: Option<String>,
    #[serde(default)]
    scale_up: Option<String>,
    #[serde(default)]
    latency_tail: bool,
    #[serde(default)]
    late_fraction: f64,
    #[serde(default)]
    max_lateness_s: u32,
    seed: u64,
}

/// The suite: scripted incidents on textbook and real-world traffic (bursty, hashed,
/// slow-starting, flapping, cold-starting, quiet), a day of clean traffic for each pool shape,
/// and a day of each routine operation. `hours_clean` sets the length of the clean days (24 in
/// the recorded evaluation).
///
/// # Panics
/// When the built-in `suite.toml` is malformed: a bug caught by every test run.
pub fn suite(hours_clean: u32) -> Vec<Case> {
    let file: SuiteFile = toml::from_str(include_str!("suite.toml"))
        .unwrap_or_else(|e| unreachable!("the built-in suite parses: {e}"));
    file.case
        .into_iter()
        .map(|spec| {
            case(spec, hours_clean).unwrap_or_else(|e| unreachable!("the built-in suite: {e}"))
        })
        .collect()
}

fn duration(text: &str) -> Result<u32, String> {
    parse_duration_s(text).filter(|&d| d > 0).ok_or_else(|| format!("`{text}` is not a duration"))
}

fn case(spec: CaseSpec, hours_clean: u32) -> Result<Case, String> {
    let at = |why: String| format!("case `{}`: {why}", spec.name);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let duration_s = if spec.clean {
        hours_clean * 3600
    } else {
        (spec.hours.ok_or_else(|| at("no `hours`".into()))? * 3600.0) as u32
    };
    let every_s = spec.every.as_deref().map(duration).transpose().map_err(at)?;
    let mut incidents = Vec::new();
    for text in &spec.incidents {
        let first = Incident::from_spec(text).map_err(|e| at(e.to_string()))?;
        let mut incident = first.clone();
        // Repeated `every` so long, while it fits in the case.
        while incident.start_s + incident.duration_s <= duration_s {
            incidents.push(incident.clone());
            let Some(every) = every_s else { break };
            incident.start_s += every;
        }
        if incidents.is_empty() {
            incidents.push(first);
        }
    }
    for text in &spec.once {
        incidents.push(Incident::from_spec(text).map_err(|e| at(e.to_string()))?);
    }
    let n_backends = spec.backends.unwrap_or(8);
    let base = Scenario::clean(duration_s, spec.rate.unwrap_or(40.0));
    let mut scenario = Scenario {
        backends: backend_addresses(n_backends),
        weights: spec.weights,
        incidents,
        diurnal: spec.diurnal,
        night_ratio: spec.night_ratio.unwrap_or(base.night_ratio),
        batch_dispersion: spec.dispersion.unwrap_or(1.0),
        sticky_s: spec.sticky.as_deref().map(duration).transpose().map_err(at)?.unwrap_or(0),
        latency_tail: spec.latency_tail,
        late_fraction: spec.late_fraction,
        max_lateness_s: spec.max_lateness_s,
        seed: spec.seed,
        retry_fraction: 0.002,
        ..base
    };
    if let Some(text) = &spec.scale_up {
        let (every, ramp) = text.split_once('/').ok_or_else(|| at(format!("scale_up `{text}`")))?;
        scenario.scale_up(duration(every).map_err(at)?, parse_duration_s(ramp).unwrap_or(0));
    }
    if let Some(bad) =
        scenario.incidents.iter().find(|i| i.backend + i.count > scenario.backends.len())
    {
        return Err(at(format!("an incident names backend {} of {}", bad.backend, n_backends)));
    }
    Ok(Case {
        name: spec.name,
        description: spec.what,
        scenario,
        weights: spec.configured,
        weight_names: spec.configured_names,
    })
}
