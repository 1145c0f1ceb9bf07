//! `skewtail parse` and `skewtail patterns`: how the formats read a log, line by line or
//! ranked over a sample.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::*;
use crate::config::{Settings, build_parser};
use crate::parse::Parser;
use crate::parse::no_backend_message;
use crate::source::{LineReader, Next};

/// One parsed line in the vocabulary of the conformance vectors (`null` for a missing value).
fn parsed_line_json(number: u64, parser: &mut Parser, line: &[u8]) -> serde_json::Value {
    use serde_json::json;
    let text = |v: Option<&[u8]>| v.map(|v| String::from_utf8_lossy(v).into_owned());
    match parser.parse(line) {
        Ok(r) => json!({
            "line": number,
            "kind": "access",
            "timestamp_utc": crate::parse::time::format_rfc3339(r.timestamp_ms),
            "backend": text(r.backend),
            "pool": text(r.pool),
            "attempts": r.attempts,
            "status": r.status,
            "upstream_status": r.upstream_status,
            "latency_s": r.latency_s,
            "upstream_latency_s": r.upstream_latency_s,
            "bytes": r.bytes,
            "method": text(r.method),
            "path": text(r.path),
            "protocol": text(r.protocol),
        }),
        Err(error) if error.kind == crate::parse::ParseErrorKind::NotARequest => {
            json!({"line": number, "kind": "other"})
        }
        Err(error) => json!({"line": number, "kind": "error", "error": parser.explain(&error)}),
    }
}

pub(super) fn parse(args: &ParseArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::defaults();
    let stdin_only = [PathBuf::from("-")];
    let files = if args.files.is_empty() { &stdin_only[..] } else { &args.files[..] };
    let sample = Some(files[0].as_path()).filter(|p| *p != Path::new("-"));
    // `auto` needs a file to look at; standard input alone keeps nginx's combined default.
    let format = match (&args.format, &args.log_format, sample) {
        (None, None, Some(_)) => Some("auto"),
        (format, _, _) => format.as_deref(),
    };
    let (mut parser, _) =
        build_parser(&settings.patterns, format, args.log_format.as_deref(), &[], sample)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let (mut n_lines, mut n_parsed) = (0u64, 0u64);
    for path in files {
        let source: Box<dyn Read + Send> = if path == Path::new("-") {
            crate::source::decompress::decompressed(io::stdin())?.0
        } else {
            crate::source::decompress::decompressed(crate::source::open_for_replay(path)?)?.0
        };
        let mut reader = LineReader::new(source, settings.max_line_bytes);
        loop {
            let object = match reader
                .next_line(true)
                .with_context(|| format!("{}: read failed", path.display()))?
            {
                Next::Line(line) => parsed_line_json(line.number, &mut parser, line.bytes),
                Next::TooLong { number, length } => serde_json::json!({
                    "line": number, "kind": "error", "error": format!("line of {length} bytes is longer than max_line_bytes")
                }),
                Next::End => break,
            };
            n_lines += 1;
            n_parsed += u64::from(object["kind"] == "access");
            serde_json::to_writer(&mut out, &object)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    if n_lines > 0 && n_parsed == 0 {
        anyhow::bail!(
            "none of the {n_lines} lines parsed; `skewtail patterns test FILE` shows which format fits and where lines stop matching"
        );
    }
    Ok(Outcome::Clean)
}

fn load_patterns(dir: Option<&Path>) -> anyhow::Result<crate::parse::PatternSet> {
    let mut patterns = crate::parse::PatternSet::builtin();
    if let Some(dir) = dir {
        crate::config::load_patterns(&mut patterns, dir)?;
    }
    Ok(patterns)
}

pub(super) fn patterns_list(dir: Option<&Path>) -> anyhow::Result<Outcome> {
    let patterns = load_patterns(dir)?;
    let mut out = io::stdout().lock();
    writeln!(out, "auto             recognise the format from the first lines")?;
    writeln!(out, "nginx            the --log-format given (combined without one)")?;
    for pattern in patterns.iter() {
        writeln!(
            out,
            "{:<16} {} ({})",
            pattern.name,
            pattern.description,
            pattern.origin.display()
        )?;
    }
    Ok(Outcome::Clean)
}

fn percent(part: u64, whole: usize) -> String {
    #[allow(clippy::cast_precision_loss)]
    let value = if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 };
    format!("{value:.1}%")
}

pub(super) fn patterns_test(args: &PatternsTestArgs) -> anyhow::Result<Outcome> {
    let patterns = load_patterns(args.patterns_dir.as_deref())?;
    let lines = crate::source::once::sample_lines(&args.file, args.lines)?;
    let samples: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let ranked = crate::parse::auto::rank(&patterns, &samples);
    let mut out = io::stdout().lock();
    writeln!(out, "{}: {} line(s) tested", args.file.display(), samples.len())?;
    let format = args.format.as_deref().filter(|f| *f != "auto");
    let (mut parser, name) = if format.is_none() && args.log_format.is_none() {
        match crate::parse::auto::choose(&ranked) {
            Ok((best, why)) => {
                writeln!(out, "format: {why}")?;
                build_parser(&patterns, Some(&best.name), None, &[], None)?
            }
            Err(why) => {
                writeln!(out, "no format picked: {why}")?;
                for candidate in &ranked {
                    writeln!(
                        out,
                        "  {:<16} {} parsed{}",
                        candidate.name,
                        percent(candidate.matched as u64, candidate.sampled),
                        candidate
                            .first_error
                            .as_deref()
                            .map_or(String::new(), |e| format!("; {e}"))
                    )?;
                }
                bail!("no format fits {}", args.file.display());
            }
        }
    } else {
        build_parser(&patterns, format, args.log_format.as_deref(), &[], None)?
    };

    let mut fill = crate::parse::auto::FieldFill::default();
    let (mut n_other, mut unmatched) = (0u64, Vec::new());
    for (index, line) in samples.iter().enumerate() {
        match parser.parse(line) {
            Ok(record) => fill.add(&record),
            Err(error) if error.kind == crate::parse::ParseErrorKind::NotARequest => n_other += 1,
            Err(error) => unmatched.push((index + 1, parser.explain(&error), *line, error)),
        }
    }
    let total = samples.len();
    writeln!(
        out,
        "format `{name}`: {} of {total} line(s) parsed ({}), {n_other} other (valid, not requests), {} unmatched",
        fill.records,
        percent(fill.records, total),
        unmatched.len()
    )?;
    let filled: Vec<String> = fill
        .rows()
        .iter()
        .map(|(field, n)| format!("{field} {}", percent(*n, fill.records as usize)))
        .collect();
    writeln!(out, "fields filled: {}", filled.join(", "))?;
    if fill.records > 0 && fill.backend == 0 {
        writeln!(out, "warning: {}", no_backend_message(&name))?;
    }
    if !unmatched.is_empty() {
        writeln!(out, "first unmatched lines:")?;
        for (number, why, line, error) in unmatched.iter().take(5) {
            let shown = |bytes: &[u8]| bytes[..bytes.len().min(160)].escape_ascii().to_string();
            if error.kind == crate::parse::ParseErrorKind::GoesOn {
                // Where the format ends in the line, and what comes after it.
                let (fits, rest) = line.split_at((error.column as usize).min(line.len()));
                writeln!(
                    out,
                    "  line {number}: {why}\n    the format:  {}\n    the line goes on: {}",
                    shown(fits),
                    shown(rest)
                )?;
            } else {
                writeln!(out, "  line {number}: {why}\n    {}", shown(line))?;
            }
        }
    }
    if let Some(better) =
        ranked.iter().find(|c| c.name != name).filter(|c| c.matched as u64 > fill.records)
    {
        writeln!(
            out,
            "suggestion: format `{}` parses {} of {total} line(s); try --format {}",
            better.name, better.matched, better.name
        )?;
    }
    if fill.records == 0 {
        bail!("format `{name}` matches none of the lines in {}", args.file.display());
    }
    Ok(Outcome::Clean)
}
