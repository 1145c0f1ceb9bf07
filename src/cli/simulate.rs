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
        let normal = scenario.normal_shares();
        let mut text = String::new();
        for (incident, spec) in scenario.incidents.iter().zip(&args.incidents) {
            let kind = incident.expected_kind(normal[incident.backend]);
            let (backend, pool) = style.identity(&scenario.backends[incident.backend]);
            let label = serde_json::json!({
                "incident": spec,
                "kind": kind,
                "backend": if incident.is_pool_wide() { crate::detect::WHOLE_POOL.to_string() } else { backend },
                "pool": (!pool.is_empty()).then_some(pool),
                "start": crate::parse::time::format_rfc3339(start_ms + i64::from(incident.start_s) * 1000),
                "end": crate::parse::time::format_rfc3339(start_ms + i64::from(incident.start_s + incident.duration_s) * 1000),
            });
            text.push_str(&label.to_string());
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
