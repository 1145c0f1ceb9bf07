//! `skewtail simulate` and `skewtail evaluate`: generated logs with scripted incidents, and the
//! labelled suite that scores the detector.

use std::io::Write;

use anyhow::bail;

use super::*;
use crate::synth::Scenario;

pub(super) fn simulate(args: &SimulateArgs) -> anyhow::Result<Outcome> {
    use crate::synth::{Incident, LogStyle};
    let style = LogStyle::from_format_name(&args.format).ok_or_else(|| {
        anyhow::anyhow!(
            "no generator for format `{}`; use one of: {}",
            args.format,
            LogStyle::ALL.map(LogStyle::format_name).join(", ")
        )
    })?;
    let duration_s =
        crate::synth::parse_duration_s(&args.duration).filter(|&d| d > 0).ok_or_else(|| {
            anyhow::anyhow!("--duration `{}` is not like 90m, 2h or 1h30m", args.duration)
        })?;
    if args.backends < 2 {
        bail!("--backends must be at least 2: skew needs a pool");
    }
    if !args.weights.is_empty() && args.weights.len() != args.backends {
        bail!(
            "--weights has {} values for {} backends; give one per backend",
            args.weights.len(),
            args.backends
        );
    }
    if !(0.0..=1.0).contains(&args.late_fraction) {
        bail!("--late-fraction must be between 0 and 1");
    }
    let incidents = args
        .incidents
        .iter()
        .map(|spec| Incident::from_spec(spec))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(i) = incidents.iter().find(|i| i.backend + i.count > args.backends) {
        bail!(
            "an incident names backend {} of {} (backends count from 0)",
            i.backend + i.count - 1,
            args.backends
        );
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number of requests per second, e.g. 40 or 0.3");
    }
    let start_ms = match &args.start {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                anyhow::anyhow!("--start `{text}`: {e}; write RFC 3339, e.g. 2024-05-01T00:00:00Z")
            })?
            .timestamp_millis(),
        None => crate::synth::SEED_INCIDENT_DAY_MS,
    };
    if !(args.dispersion >= 1.0 && args.dispersion <= 1000.0) {
        bail!("--dispersion must be between 1 (independent requests) and 1000");
    }
    if !(args.night_ratio > 0.0 && args.night_ratio <= 1.0) {
        bail!("--night-ratio must be above 0 and at most 1");
    }
    let sticky_s = match &args.sticky {
        Some(text) => crate::synth::parse_duration_s(text)
            .filter(|&s| s > 0)
            .ok_or_else(|| anyhow::anyhow!("--sticky `{text}` is not like 90s or 5m"))?,
        None => 0,
    };
    let scale_up = match &args.scale_up {
        Some(text) => {
            let parsed = text.split_once('/').and_then(|(every, ramp)| {
                Some((
                    crate::synth::parse_duration_s(every).filter(|&s| s > 0)?,
                    crate::synth::parse_duration_s(ramp)?,
                ))
            });
            Some(parsed.ok_or_else(|| {
                anyhow::anyhow!("--scale-up `{text}` is not like 1h/90s (EVERY/RAMP)")
            })?)
        }
        None => None,
    };
    let mut scenario = Scenario {
        start_ms,
        duration_s,
        rate_per_s: args.rate,
        backends: crate::synth::backend_addresses(args.backends),
        weights: args.weights.clone(),
        incidents,
        batch_dispersion: args.dispersion,
        sticky_s,
        night_ratio: args.night_ratio,
        latency_tail: args.latency_tail,
        diurnal: args.diurnal,
        late_fraction: args.late_fraction,
        max_lateness_s: args.max_lateness_s,
        seed: args.seed,
        style,
        ..Scenario::seed_incident()
    };
    if let Some((every, ramp)) = scale_up {
        scenario.scale_up(every, ramp);
    }
    let n_lines = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let n = scenario.write(&mut out)?;
            out.flush()?;
            n
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let n = scenario.write(&mut out)?;
            out.flush()?;
            n
        }
    };
    if let Some(path) = &args.labels {
        // What a good detector does with this log replayed without weights: the evaluation's
        // own labels, with the backends named as the format writes them.
        let mut text = String::new();
        for label in crate::evaluate::labels(&scenario, None, None) {
            let mut value = serde_json::to_value(&label)?;
            if let crate::evaluate::Expect::Alert { backend, .. } = &label.expect {
                let (named, pool) = if &**backend == crate::detect::WHOLE_POOL {
                    (backend.to_string(), style.identity("x").1)
                } else {
                    style.identity(backend)
                };
                value["backend"] = serde_json::json!(named);
                value["pool"] = serde_json::json!((!pool.is_empty()).then_some(pool));
            }
            value["incident"] = serde_json::json!(label.incident.map(|i| &args.incidents[i]));
            value["start"] = serde_json::json!(crate::parse::time::format_rfc3339(label.start_ms));
            value["end"] = serde_json::json!(crate::parse::time::format_rfc3339(label.end_ms));
            for key in ["start_ms", "end_ms", "detectable_ms"] {
                if let Some(object) = value.as_object_mut() {
                    object.remove(key);
                }
            }
            text.push_str(&value.to_string());
            text.push('\n');
        }
        std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    tracing::info!(
        message = "Simulated log written.",
        lines = n_lines,
        format = style.format_name()
    );
    Ok(Outcome::Clean)
}

pub(super) fn evaluate(args: &EvaluateArgs) -> anyhow::Result<Outcome> {
    use crate::evaluate::{run_case, suite, summarize, table};
    let cases = suite(args.hours_clean);
    let mut results = Vec::with_capacity(cases.len());
    for case in &cases {
        tracing::info!(message = "Evaluating.", scenario = case.name);
        results.push(run_case(case));
    }
    let summary = summarize(&results);
    let mut out = std::io::stdout().lock();
    write!(out, "{}", table(&cases, &results, &summary))?;
    if args.verbose {
        for result in &results {
            writeln!(out, "\n{}:", result.name)?;
            for line in &result.alert_lines {
                writeln!(out, "  {line}")?;
            }
        }
    }
    Ok(Outcome::Clean)
}
