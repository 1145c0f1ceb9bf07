//! `skewtail replay` and `skewtail demo`: the pipeline over files read once, on the logs' own
//! time.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use super::*;
use crate::alert::{Notifier, NotifierOptions};
use crate::config::{Settings, build_parser};
use crate::parse::Parser;
use crate::parse::no_backend_message;
use crate::pipeline::ahead::feed_streams;
use crate::pipeline::{OpenWindows, Pipeline};
use crate::report::{Documents, Report, Style};
use crate::source::decompress::Compression;
use crate::source::files::{ReplayFile, expand, in_time_order, rotated_sets};
use crate::source::objects::{ObjectTree, Place, is_object_url};
use crate::source::once::{AnyReader, SetFiles, Stream, display_name, sample_lines_in, stdin_head};
use crate::source::range::{TimeRange, parse_time};
use crate::synth::Scenario;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A replay input: one parser and clock over files read in time order.
struct ReplayInput {
    name: String,
    parser: Parser,
    /// The format's name, for messages.
    format: String,
    pool: String,
    files: Vec<ReplayFile>,
    /// Standard input, when its first lines were read to recognise its format (they are put
    /// back in front).
    stdin: Option<AnyReader>,
    /// Where its files are.
    place: Place,
}

fn replay_inputs(args: &ReplayArgs, settings: &Settings) -> anyhow::Result<Vec<ReplayInput>> {
    if args.files.is_empty() {
        if settings.inputs.is_empty() {
            bail!(
                "nothing to replay: give log files, globs or directories (`skewtail replay FILE...`) or [[input]] entries in --config"
            );
        }
        if args.format.is_some() || args.log_format.is_some() {
            bail!(
                "--format/--log-format apply to files given on the command line; set `format` per [[input]] in the config instead"
            );
        }
        return settings
            .inputs
            .iter()
            .map(|input| {
                if let Some(listen) = input.syslog {
                    bail!(
                        "input `{}` listens for syslog on {listen}, which only `run` does; give the logs to replay as arguments (`skewtail replay --config FILE LOGS...`)",
                        input.name
                    );
                }
                let files = in_time_order(
                    expand(std::slice::from_ref(&input.path), args.max_depth)?,
                    &Place::Disk,
                    &input.parser,
                )?;
                Ok(ReplayInput {
                    name: input.name.clone(),
                    parser: input.parser.clone(),
                    format: input.format_name.clone(),
                    pool: input.pool.clone(),
                    files,
                    stdin: None,
                    place: Place::Disk,
                })
            })
            .collect();
    }
    let (paths, place) = match object_tree(&args.files)? {
        Some((tree, names)) => (names, Place::Objects(Arc::new(tree))),
        None => (expand(&args.files, args.max_depth)?, Place::Disk),
    };
    let name = display_name(&paths[0]);
    let first_input = settings.inputs.first();
    let mut stdin = None;
    let (parser, format_name) = match (&args.format, &args.log_format, first_input) {
        (None, None, Some(input)) => (input.parser.clone(), input.format_name.clone()),
        (format, log_format, _) => {
            let format =
                format.as_deref().or(if log_format.is_some() { None } else { Some("auto") });
            let sample = paths.iter().find(|p| *p != Path::new("-"));
            match (format, sample) {
                // Only standard input to look at: its first lines are read now and replayed
                // before the rest.
                (Some("auto"), None) => {
                    let (reader, lines) = stdin_head(io::stdin())?;
                    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
                    stdin = Some(reader);
                    crate::parse::recognise(
                        &settings.patterns,
                        crate::parse::Sample { source: "stdin", lines: &lines },
                        &[],
                    )?
                }
                // An object's first lines, through the store.
                (Some("auto"), Some(path)) if matches!(place, Place::Objects(_)) => {
                    let lines = sample_lines_in(&place, path, crate::parse::AUTO_SAMPLE_LINES)?;
                    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
                    let source = path.display().to_string();
                    crate::parse::recognise(
                        &settings.patterns,
                        crate::parse::Sample { source: &source, lines: &lines },
                        &[],
                    )?
                }
                _ => build_parser(
                    &settings.patterns,
                    format,
                    log_format.as_deref(),
                    &[],
                    sample.map(PathBuf::as_path),
                )?,
            }
        }
    };
    let pool = args
        .pool
        .clone()
        .or_else(|| first_input.map(|i| i.pool.clone()))
        .unwrap_or_else(|| name.clone());
    let files = in_time_order(paths, &place, &parser)?;
    Ok(vec![ReplayInput { name, parser, format: format_name, pool, files, stdin, place }])
}

/// The objects of the object storage URL among `arguments`, listed, when there is one: it is
/// replayed alone (one tree, with its own credentials).
fn object_tree(arguments: &[PathBuf]) -> anyhow::Result<Option<(ObjectTree, Vec<PathBuf>)>> {
    let Some(url) = arguments.iter().filter_map(|a| a.to_str()).find(|a| is_object_url(a)) else {
        return Ok(None);
    };
    if arguments.len() > 1 {
        bail!(
            "{url}: an object storage URL is replayed alone; give one URL (its prefix is read recursively), or copy the objects and replay them as files"
        );
    }
    let mut tree = ObjectTree::connect(url)?;
    let names = tree.list()?;
    tracing::info!(message = "Objects listed.", url, objects = names.len());
    Ok(Some((tree, names)))
}

/// `--since`/`--until` as a range.
fn time_range(args: &ReplayArgs) -> anyhow::Result<TimeRange> {
    let now = crate::clock::wall_clock_ms();
    let parse = |text: &Option<String>, flag: &str| -> anyhow::Result<Option<i64>> {
        text.as_deref()
            .map(|t| parse_time(t, now).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
            .transpose()
    };
    let range = TimeRange {
        since_ms: parse(&args.since, "--since")?,
        until_ms: parse(&args.until, "--until")?,
    };
    if let (Some(since), Some(until)) = (range.since_ms, range.until_ms)
        && since >= until
    {
        bail!("--since must be before --until");
    }
    Ok(range)
}

fn new_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime for alert delivery")
}

/// A replay's progress bar on a terminal and its Ctrl-C.
struct Feeder {
    bar: ProgressBar,
    interrupted: Arc<AtomicBool>,
    /// Parsing threads.
    threads: usize,
}

impl Feeder {
    /// A bar over `total_bytes` when known (plain files), drawn only on a terminal and
    /// without `--quiet`; Ctrl-C stops reading (a second one exits at once).
    fn new(total_bytes: Option<u64>, quiet: bool, threads: usize) -> Self {
        let draw = !quiet && io::IsTerminal::is_terminal(&io::stderr());
        let bar = match (draw, total_bytes) {
            (false, _) => ProgressBar::hidden(),
            (true, Some(total)) => ProgressBar::new(total),
            (true, None) => ProgressBar::new_spinner(),
        };
        let template = if total_bytes.is_some() {
            "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg} eta {eta}"
        } else {
            "{spinner} {bytes} {bytes_per_sec} {msg}"
        };
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let interrupted = Arc::new(AtomicBool::new(false));
        let flag = interrupted.clone();
        std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build()
            else {
                return;
            };
            runtime.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    flag.store(true, Ordering::SeqCst);
                }
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            });
        });
        Feeder { bar, interrupted, threads }
    }

    fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }
}

pub(super) fn replay(args: &ReplayArgs) -> anyhow::Result<Outcome> {
    let settings = match &args.config {
        Some(path) => load_settings(path)?,
        None => Settings::defaults(),
    };
    let range = time_range(args)?;
    let inputs = replay_inputs(args, &settings)?;
    for input in &inputs {
        if !input.parser.has_backend_field() {
            bail!("{}", no_backend_message(&input.format));
        }
    }
    // Replay pages nobody unless asked: without --notify no sink is built, so their secrets
    // need not even be set.
    let runtime = if args.notify { Some(new_runtime()?) } else { None };
    let notifier = match &runtime {
        Some(runtime) => {
            let options = NotifierOptions {
                with_stdout: false,
                finish_deadline: Duration::from_secs_f64(args.delivery_timeout.max(0.0)),
                ..NotifierOptions::default()
            };
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
    pipeline.set_range(range);
    let stdout = io::stdout().lock();
    let style = if args.json { Style::Json } else { Style::Human };
    let report = Report::new(io::BufWriter::with_capacity(64 * 1024, stdout), style)
        .with_documents(Documents { markdown: args.report.clone(), html: args.html.clone() })
        .watching_stdout();
    // The notifier first: the report's summary says what delivery achieved.
    let mut observer = (notifier, report);

    // How far out of order lines may be around a --since/--until boundary.
    let margin_ms =
        i64::from(settings.detector.lateness_s + settings.detector.window_s) * 1000 + 60_000;
    let plain_total: Option<u64> = inputs
        .iter()
        .flat_map(|i| &i.files)
        .map(|f| {
            (f.compression == Compression::Plain
                && f.path != Path::new("-")
                && !is_object_url(&f.path.to_string_lossy()))
            .then(|| std::fs::metadata(&f.path).map_or(0, |m| m.len()))
        })
        .sum();
    let feeder =
        Feeder::new(plain_total.filter(|_| range.is_all()), args.quiet, args.threads.max(1));
    let shrunk = Arc::new(Mutex::new(Vec::new()));
    let mut streams = Vec::new();
    let mut indexes = Vec::new();
    for mut input in inputs {
        let index = pipeline.add_input(&input.name, input.parser.clone(), &input.pool);
        indexes.push(index);
        let sets = rotated_sets(std::mem::take(&mut input.files));
        if sets.len() > 1 {
            tracing::info!(message = "Several rotated sets: their lines are merged by timestamp.", input = %input.name, sets = sets.len());
        }
        for set in sets {
            let has_stdin = set.iter().any(|f| f.path == Path::new("-"));
            // Opened once the merge reaches its first line's time (so only sets that overlap
            // in time are open together); from the start when that time is unknown.
            let starts_ms = set.first().and_then(|f| f.first_ms);
            let files = SetFiles {
                stdin: if has_stdin { input.stdin.take() } else { None },
                files: set.into_iter().peekable(),
                range,
                margin_ms,
                parser: input.parser.clone(),
                shrunk: shrunk.clone(),
                place: input.place.clone(),
                pool: input.pool.clone(),
            };
            streams.push(Stream {
                input: index,
                starts_ms,
                files: Box::new(files),
                wrapping: args.wrapping,
            });
        }
    }
    let mut progress = |bytes: u64, lines: u64| {
        feeder.bar.inc(bytes);
        feeder.bar.set_message(format!("{lines} lines"));
    };
    feed_streams(
        &mut pipeline,
        streams,
        settings.max_line_bytes,
        feeder.threads,
        &mut observer,
        &feeder.interrupted,
        &mut progress,
    )?;
    let shrunk = shrunk.lock().map(|s| s.clone()).unwrap_or_default();
    feeder.bar.finish_and_clear();
    let interrupted = feeder.interrupted();
    let (counters, delivery) = match pipeline.finish(&mut observer, OpenWindows::Close, interrupted)
    {
        // Whoever reads the output has had enough (`replay | head`): nothing more to say.
        Err(error) if error.is_broken_pipe() => return Ok(output_closed(&pipeline)),
        Err(error) => return Err(error.into()),
        Ok(_) if pipeline.stopped() => return Ok(output_closed(&pipeline)),
        Ok(done) => done,
    };
    drop(runtime);
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
    if interrupted {
        return Ok(Outcome::Interrupted);
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
    let parser = build_parser(&settings.patterns, Some("upstream"), None, &[], None)?.0;
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
    let mut report = Report::new(io::BufWriter::new(stdout), style).watching_stdout();
    let stream = Stream::of_reader(index, "demo", Box::new(io::Cursor::new(log)));
    let never = AtomicBool::new(false);
    let max_line = settings.max_line_bytes;
    feed_streams(
        &mut pipeline,
        vec![stream],
        max_line,
        default_threads(),
        &mut report,
        &never,
        &mut |_, _| {},
    )?;
    match pipeline.finish(&mut report, OpenWindows::Close, false) {
        Err(error) if !error.is_broken_pipe() => Err(error.into()),
        _ => Ok(Outcome::Clean),
    }
}

/// The reader of the output has gone (`replay | head`): the replay stopped there, said so
/// only in the log (stdout is closed, and stderr may be a terminal the user is reading).
fn output_closed(pipeline: &Pipeline) -> Outcome {
    tracing::info!(
        message = "The output was closed: stopped reading.",
        lines = pipeline.counters().lines
    );
    Outcome::Clean
}
