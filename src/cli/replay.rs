//! `skewtail replay` and `skewtail demo`: the pipeline over files read once, on the logs' own
//! time.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use super::*;
use crate::alert::{Notifier, NotifierOptions};
use crate::config::{Settings, build_parser, no_backend_message};
use crate::parse::Parser;
use crate::pipeline::{Observer, Pipeline};
use crate::report::{Report, Style};
use crate::source::{LineReader, Next};
use crate::synth::Scenario;

/// A replay input: one parser and clock over files read in order.
struct ReplayInput {
    name: String,
    parser: Parser,
    pool: String,
    files: Vec<PathBuf>,
}

fn display_name(path: &Path) -> String {
    if path == Path::new("-") {
        return "stdin".to_string();
    }
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn replay_inputs(args: &ReplayArgs, settings: &Settings) -> anyhow::Result<Vec<ReplayInput>> {
    if args.files.is_empty() {
        if settings.inputs.is_empty() {
            bail!(
                "nothing to replay: give log files (`skewtail replay FILE...`) or [[input]] entries in --config"
            );
        }
        if args.format.is_some() || args.log_format.is_some() {
            bail!(
                "--format/--log-format apply to files given on the command line; set `format` per [[input]] in the config instead"
            );
        }
        return Ok(settings
            .inputs
            .iter()
            .map(|input| ReplayInput {
                name: input.name.clone(),
                parser: input.parser.clone(),
                pool: input.pool.clone(),
                files: vec![input.path.clone()],
            })
            .collect());
    }
    let name = display_name(&args.files[0]);
    let first_input = settings.inputs.first();
    let parser = if args.format.is_some() || args.log_format.is_some() || first_input.is_none() {
        let sample = Some(args.files[0].as_path()).filter(|p| *p != Path::new("-"));
        build_parser(
            &settings.patterns,
            args.format.as_deref(),
            args.log_format.as_deref(),
            &[],
            sample,
        )
        .map_err(anyhow::Error::msg)?
        .0
    } else {
        first_input.map(|i| i.parser.clone()).unwrap_or_else(|| unreachable!("checked above"))
    };
    let pool = args
        .pool
        .clone()
        .or_else(|| first_input.map(|i| i.pool.clone()))
        .unwrap_or_else(|| name.clone());
    Ok(vec![ReplayInput { name, parser, pool, files: args.files.clone() }])
}

fn new_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime for alert delivery")
}

/// Reads every line of `reader` into input `input` of the pipeline; returns the number of
/// lines and of bytes read.
fn feed<R: Read>(
    pipeline: &mut Pipeline,
    input: usize,
    reader: R,
    max_line: usize,
    observer: &mut impl Observer,
) -> io::Result<(u64, u64)> {
    let mut lines = LineReader::new(reader, max_line);
    let mut n_lines = 0;
    loop {
        match lines.next_line(true)? {
            Next::Line(line) => pipeline.push_line(input, line, observer),
            Next::TooLong { number, length } => pipeline.push_too_long(input, number, length),
            Next::End => {
                if lines.cr_only() {
                    tracing::warn!(
                        message = "Lines end in CR only (old Mac style); read as such.",
                        lines = n_lines
                    );
                }
                return Ok((n_lines, lines.offset()));
            }
        }
        n_lines += 1;
    }
}

fn is_broken_pipe(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::BrokenPipe
}

pub(super) fn replay(args: &ReplayArgs) -> anyhow::Result<Outcome> {
    let settings = match &args.config {
        Some(path) => load_settings(path)?,
        None => Settings::defaults(),
    };
    let inputs = replay_inputs(args, &settings)?;
    for input in &inputs {
        if !input.parser.has_backend_field() {
            bail!(
                "{}",
                no_backend_message(
                    &args.format.clone().unwrap_or_else(|| "nginx (combined)".to_string())
                )
            );
        }
    }
    // Replay pages nobody unless asked: without --notify no sink is built, so their secrets
    // need not even be set.
    let runtime = if args.notify { Some(new_runtime()?) } else { None };
    let notifier = match &runtime {
        Some(runtime) => {
            let options = NotifierOptions { with_stdout: false, ..NotifierOptions::default() };
            let notifier = Notifier::start(&settings.alerting, &options, runtime.handle())?;
            if notifier.is_empty() {
                bail!(
                    "--notify: the config has no [[sink]] to send to (stdout sinks print nothing in a replay)"
                );
            }
            Some(notifier)
        }
        None => {
            if !settings.alerting.sinks.is_empty() {
                tracing::info!(
                    message = "Replaying without sending: add --notify to send the alerts through the configured routes."
                );
            }
            None
        }
    };
    let mut pipeline = Pipeline::new(settings.build_detector());
    let stdout = io::stdout().lock();
    let style = if args.json { Style::Json } else { Style::Human };
    let mut report = Report::new(io::BufWriter::with_capacity(64 * 1024, stdout), style, notifier);

    // Files that shrank while they were read: their replay is incomplete.
    let mut shrunk = Vec::new();
    for input in inputs {
        let index = pipeline.add_input(&input.name, input.parser, &input.pool);
        for path in &input.files {
            let (n_lines, n_bytes) = if path == Path::new("-") {
                feed(&mut pipeline, index, io::stdin().lock(), settings.max_line_bytes, &mut report)
            } else {
                let file = crate::source::open_for_replay(path)?;
                let read = feed(&mut pipeline, index, &file, settings.max_line_bytes, &mut report);
                if let (Ok((_, n_bytes)), Ok(metadata)) = (&read, file.metadata())
                    && metadata.len() < *n_bytes
                {
                    tracing::warn!(message = "The file shrank while it was read: the replay is incomplete.", file = %path.display(), read_bytes = n_bytes, size_now = metadata.len());
                    shrunk.push(format!("{} ({} bytes read, {} now)", path.display(), n_bytes, metadata.len()));
                }
                read
            }
            .with_context(|| format!("{}: read failed", path.display()))?;
            if n_lines == 0 && n_bytes == 0 {
                tracing::warn!(message = "Empty input: nothing to replay from it.", file = %path.display());
            }
        }
        pipeline.finish_input(index, &mut report);
    }
    let counters = pipeline.counters();
    let delivery = match (report.take_notifier(), &runtime) {
        (Some(mut notifier), Some(runtime)) => {
            notifier.flush();
            let deadline = Duration::from_secs_f64(args.delivery_timeout.max(0.0));
            Some(runtime.block_on(notifier.shutdown(deadline)))
        }
        _ => None,
    };
    let finished = report.finish(&counters, pipeline.detector(), delivery.as_ref());
    match finished {
        Err(error) if !is_broken_pipe(&error) => {
            return Err(error).context("cannot write the report");
        }
        _ => {}
    }
    if let Some(d) = &delivery
        && d.undelivered + d.failed + d.expired + d.dropped > 0
    {
        bail!(
            "not every alert was delivered: {} delivered, {} refused, {} expired, {} dropped, {} still pending after --delivery-timeout {} s (the log above says why)",
            d.delivered,
            d.failed,
            d.expired,
            d.dropped,
            d.undelivered,
            args.delivery_timeout
        );
    }
    if !shrunk.is_empty() {
        bail!(
            "the file shrank while it was read (truncated, or rotated with copytruncate), so the replay above is incomplete: {}; replay a copy that is not being written to",
            shrunk.join(", ")
        );
    }
    if counters.lines == 0 {
        bail!(
            "no log lines in the given input; check that the files are the right ones and not empty"
        );
    }
    if counters.parsed == 0 {
        bail!(
            "none of the {} lines matched the format; run `skewtail check` or pass the right --format/--log-format (the warnings above show where matching stopped)",
            counters.lines
        );
    }
    Ok(outcome(args.fail_on_alert, counters.alerts_fired))
}

pub(super) fn demo(args: &DemoArgs) -> anyhow::Result<Outcome> {
    let scenario = Scenario::seed_incident();
    let mut log = Vec::with_capacity(40 << 20);
    let n_lines = scenario.write(&mut log)?;
    if let Some(path) = &args.write_log {
        std::fs::write(path, &log).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let settings = Settings::defaults();
    let parser = build_parser(&settings.patterns, Some("upstream"), None, &[], None)
        .map_err(anyhow::Error::msg)?
        .0;
    let mut pipeline = Pipeline::new(settings.build_detector());
    let index = pipeline.add_input("demo", parser, "api");
    let mut stdout = io::stdout().lock();
    if !args.json {
        let incident = scenario.incidents.first().map_or(0, |i| i.duration_s / 60);
        writeln!(
            stdout,
            "skewtail demo: the seed incident, replayed through the real pipeline.\n\
             {n_lines} generated nginx lines (format `upstream`): 8 API servers in pool `api`, 60 minutes\n\
             from {}; for {incident} minutes 10.0.1.3:8080 takes 45% of the traffic, answers slowly and errors.\n",
            crate::parse::time::format_rfc3339(scenario.start_ms)
        )?;
    }
    let style = if args.json { Style::Json } else { Style::Human };
    let mut report = Report::new(io::BufWriter::new(stdout), style, None);
    feed(&mut pipeline, index, &log[..], settings.max_line_bytes, &mut report)?;
    pipeline.finish_input(index, &mut report);
    let counters = pipeline.counters();
    match report.finish(&counters, pipeline.detector(), None) {
        Err(error) if !is_broken_pipe(&error) => Err(error.into()),
        _ => Ok(Outcome::Clean),
    }
}
