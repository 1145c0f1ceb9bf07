//! `skewtail check`: is the config valid, do its formats read its inputs, and do the weights
//! name the backends the logs show?

use std::collections::BTreeMap;
use std::io::{self, Write};

use anyhow::bail;

use super::*;
use crate::config::Settings;
use crate::parse::no_backend_message;
use crate::source::container::{Unwrapped, Unwrapper};
use crate::source::{LineReader, Next};

pub(super) fn check(args: &CheckArgs) -> anyhow::Result<Outcome> {
    let settings = load_settings(&args.config)?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{}: config OK ({} input(s), {} pool weight set(s), {} sink(s))",
        args.config.display(),
        settings.inputs.len(),
        settings.expectations.len(),
        settings.alerting.sinks.len()
    )?;
    for note in settings.detector.disabled_parts() {
        writeln!(out, "note: {note}")?;
    }
    let mut problems = Vec::new();
    // The sinks' secrets (env variables, files) must be there for `run`.
    if let Err(error) = crate::alert::check_secrets(&settings.alerting) {
        problems.push(error.to_string());
    }
    // Backends seen in the sample lines, per pool, with their request counts.
    let mut seen: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for input in &settings.inputs {
        write!(
            out,
            "input `{}` ({}), format {}: ",
            input.name,
            input.path.display(),
            input.format_name
        )?;
        if !input.parser.has_backend_field() {
            problems.push(format!(
                "input `{}`: {}",
                input.name,
                no_backend_message(&input.format_name)
            ));
        }
        if let Some(listen) = input.syslog {
            writeln!(out, "syslog on {listen}, received by `run`")?;
            continue;
        }
        if input.path == std::path::Path::new("-") {
            writeln!(out, "standard input, read as a stream by `run`")?;
            continue;
        }
        // The files `run` would follow now: a glob's matches, or the path itself.
        let paths = crate::source::tailer::candidates(&input.path);
        let is_glob = paths.len() != 1 || paths[0] != input.path;
        if is_glob {
            if paths.is_empty() {
                writeln!(out, "matches no file now; `run` follows files as they appear")?;
                continue;
            }
            writeln!(out, "matches {} file(s) now", paths.len())?;
        }
        for path in &paths {
            if is_glob {
                write!(out, "  {}: ", path.display())?;
            }
            let sampled =
                sample_input(&mut out, input, path, args.lines, settings.max_line_bytes, &mut seen);
            if let Err(problem) = sampled? {
                problems.push(problem);
            }
        }
    }
    problems.extend(check_weights(&mut out, &settings, &seen)?);
    if problems.is_empty() { Ok(Outcome::Clean) } else { bail!("{}", problems.join("\n")) }
}

/// Tries the input's format on the first `lines` lines of `path`, printing how many parsed and
/// why others did not, and counting the backends seen; the error is a problem to report.
fn sample_input(
    out: &mut impl Write,
    input: &crate::config::InputSettings,
    path: &std::path::Path,
    lines: usize,
    max_line_bytes: usize,
    seen: &mut BTreeMap<String, BTreeMap<String, u64>>,
) -> anyhow::Result<Result<(), String>> {
    let mut parser = input.parser.clone();
    let file = match crate::source::open_for_replay(path) {
        Ok(file) => file,
        Err(error) => {
            writeln!(out, "cannot open")?;
            return Ok(Err(format!("input `{}`: {error}", input.name)));
        }
    };
    let mut reader = LineReader::new(file, max_line_bytes);
    let mut unwrapper = Unwrapper::new(input.wrapping, max_line_bytes);
    let (mut tried, mut matched, mut failures) = (0, 0, Vec::new());
    let mut stderr_lines = 0;
    while tried < lines {
        match reader.next_line(true)? {
            Next::Line(line) => {
                let number = line.number;
                let bytes = match unwrapper.take_off(line.bytes) {
                    Unwrapped::Line(bytes) => bytes,
                    Unwrapped::Held => continue,
                    Unwrapped::Stderr => {
                        stderr_lines += 1;
                        continue;
                    }
                    Unwrapped::TooLong(_) => {
                        tried += 1;
                        failures.push(format!("    line {number}: longer than max_line_bytes"));
                        continue;
                    }
                };
                tried += 1;
                match parser.parse(bytes) {
                    Ok(record) => {
                        matched += 1;
                        if let Some(backend) = record.backend {
                            let pool = record.pool.map_or_else(
                                || input.pool.clone(),
                                |p| String::from_utf8_lossy(p).into_owned(),
                            );
                            *seen
                                .entry(pool)
                                .or_default()
                                .entry(String::from_utf8_lossy(backend).into_owned())
                                .or_default() += 1;
                        }
                    }
                    Err(error) => {
                        failures.push(format!("    line {number}: {}", parser.explain(&error)));
                    }
                }
            }
            Next::TooLong { number, .. } => {
                tried += 1;
                failures.push(format!("    line {number}: longer than max_line_bytes"));
            }
            Next::End => break,
        }
    }
    write!(out, "{matched} of the first {tried} line(s) parsed")?;
    if stderr_lines > 0 {
        write!(out, " ({stderr_lines} line(s) of the container's stderr left out)")?;
    }
    writeln!(out)?;
    for failure in &failures {
        writeln!(out, "{failure}")?;
    }
    if tried > 0 && matched == 0 {
        return Ok(Err(format!(
            "input `{}`: none of the first {tried} lines match format {} ({})",
            input.name,
            input.format_name,
            path.display()
        )));
    }
    Ok(Ok(()))
}

/// Prints each pool's expected weights and compares them with the backends seen in the sample
/// lines; returns the problems: backends that serve without a weight.
fn check_weights(
    out: &mut impl Write,
    settings: &Settings,
    seen: &BTreeMap<String, BTreeMap<String, u64>>,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for (pool, expectation) in &settings.expectations {
        let total: f64 = expectation.weights.values().sum();
        let listed: Vec<String> = expectation
            .weights
            .iter()
            .map(|(backend, weight)| {
                format!("{backend} = {weight} ({:.1}%)", 100.0 * weight / total)
            })
            .collect();
        write!(out, "pool `{pool}` expects: {}", listed.join(", "))?;
        match expectation.slow_start_s {
            Some(s) => writeln!(out, "; slow start {s}s")?,
            None => writeln!(out)?,
        }
        let Some(sample) = seen.get(pool) else {
            writeln!(out, "  no backend of pool `{pool}` appears in the sample lines")?;
            continue;
        };
        for (backend, n) in sample {
            if expectation.weights.contains_key(backend) {
                continue;
            }
            let closest = expectation
                .weights
                .keys()
                .filter(|name| !sample.contains_key(*name))
                .map(|name| (strsim::levenshtein(name, backend), name))
                .min();
            let hint = match closest {
                Some((distance, name)) if distance <= 2 => format!("; did you mean `{name}`?"),
                _ => String::new(),
            };
            problems.push(format!(
                "pool `{pool}`: backend `{backend}` serves {n} of the sample's requests but has no weight{hint} Add it to the weights, or skewtail will report it as `unexpected`"
            ));
        }
        for backend in expectation.weights.keys().filter(|b| !sample.contains_key(*b)) {
            writeln!(
                out,
                "  {backend} is configured but not in the sample lines (fine if the sample is short; a `drop` if it never serves)"
            )?;
        }
    }
    for pool in seen.keys().filter(|p| !settings.expectations.contains_key(*p)) {
        writeln!(
            out,
            "pool `{pool}` has no weights: a baseline is learned, starting from equal shares ({} backend(s) in the sample)",
            seen[pool].len()
        )?;
    }
    Ok(problems)
}
