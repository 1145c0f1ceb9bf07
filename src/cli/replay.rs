//! `skewtail replay` and `skewtail demo`: the pipeline over files read once, on the logs' own
//! time.

use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use super::*;
use crate::alert::{Notifier, NotifierOptions};
use crate::config::{Settings, build_parser, no_backend_message};
use crate::parse::Parser;
use crate::pipeline::Pipeline;
use crate::pipeline::ahead::{MAX_STREAMS, Opened, Stream, feed_streams};
use crate::report::{Documents, Report, Style};
use crate::source::decompress::{Compression, ThreadedReader, decompressed};
use crate::source::files::{ReplayFile, expand, in_time_order, rotated_sets};
use crate::source::range::{TimeRange, parse_time, start_offset};
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
                let files =
                    in_time_order(expand(std::slice::from_ref(&input.path))?, &input.parser)?;
                Ok(ReplayInput {
                    name: input.name.clone(),
                    parser: input.parser.clone(),
                    format: input.format_name.clone(),
                    pool: input.pool.clone(),
                    files,
                    stdin: None,
                })
            })
            .collect();
    }
    let paths = expand(&args.files)?;
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
                    let (reader, lines) = read_head(io::stdin())?;
                    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
                    stdin = Some(reader);
                    crate::config::recognise(&settings.patterns, &lines, "stdin", &[])
                        .map_err(anyhow::Error::msg)?
                }
                _ => build_parser(
                    &settings.patterns,
                    format,
                    log_format.as_deref(),
                    &[],
                    sample.map(PathBuf::as_path),
                )
                .map_err(anyhow::Error::msg)?,
            }
        }
    };
    let pool = args
        .pool
        .clone()
        .or_else(|| first_input.map(|i| i.pool.clone()))
        .unwrap_or_else(|| name.clone());
    let files = in_time_order(paths, &parser)?;
    Ok(vec![ReplayInput { name, parser, format: format_name, pool, files, stdin }])
}

/// A stream of log bytes, decompressed.
type AnyReader = Box<dyn Read + Send>;

/// Standard input's first lines (decompressed), to recognise its format: the whole stream
/// (those lines put back in front) and the lines.
fn read_head(stdin: io::Stdin) -> anyhow::Result<(AnyReader, Vec<Vec<u8>>)> {
    let (mut reader, _) = decompressed(stdin)?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while head.iter().filter(|&&b| b == b'\n').count() < crate::config::AUTO_SAMPLE_LINES
        && head.len() < 4 << 20
    {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let lines = head
        .split(|&b| b == b'\n')
        .take(crate::config::AUTO_SAMPLE_LINES)
        .map(<[u8]>::to_vec)
        .collect();
    Ok((Box::new(io::Cursor::new(head).chain(reader)), lines))
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

/// Whether a whole file lies outside `range`: it starts after its end, or the next file
/// (which begins where this one ends) starts before its beginning.
fn outside(file: &ReplayFile, next_first: Option<i64>, range: TimeRange, margin_ms: i64) -> bool {
    let starts_after = matches!((file.first_ms, range.until_ms), (Some(first), Some(until)) if first > until + margin_ms);
    let ends_before = matches!((next_first, range.since_ms), (Some(next), Some(since)) if next < since - margin_ms);
    starts_after || ends_before
}

/// One rotated set's files, opened in turn on its reader thread: skipped whole when outside
/// `--since`/`--until`, decompressed as they need, plain ones from where `--since` begins
/// (binary search).
struct SetFiles {
    files: std::iter::Peekable<std::vec::IntoIter<ReplayFile>>,
    /// Standard input, when its first lines were already read.
    stdin: Option<AnyReader>,
    range: TimeRange,
    margin_ms: i64,
    parser: Parser,
    /// Files that shrank while they were read.
    shrunk: Arc<Mutex<Vec<String>>>,
}

impl Iterator for SetFiles {
    type Item = anyhow::Result<Opened>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let file = self.files.next()?;
            let next_first = self.files.peek().and_then(|f| f.first_ms);
            if outside(&file, next_first, self.range, self.margin_ms) {
                tracing::info!(message = "File outside --since/--until: skipped.", file = %file.path.display());
                continue;
            }
            let path = file.path.display().to_string();
            return Some(self.open(&file).with_context(|| format!("{path}: read failed")));
        }
    }
}

impl SetFiles {
    fn open(&mut self, file: &ReplayFile) -> anyhow::Result<Opened> {
        let path = file.path.clone();
        let name: Arc<str> = display_name(&path).into();
        let empty_warning = {
            let path = path.clone();
            move |lines: u64, bytes: u64| {
                if lines == 0 && bytes == 0 {
                    tracing::warn!(message = "Empty input: nothing to replay from it.", file = %path.display());
                }
            }
        };
        if path == Path::new("-") {
            let reader = match self.stdin.take() {
                Some(reader) => reader,
                None => decompressed(io::stdin())?.0,
            };
            let reader = Box::new(ThreadedReader::spawn(reader));
            return Ok(Opened { name, reader, finished: Box::new(empty_warning) });
        }
        let mut opened = crate::source::open_for_replay(&path)?;
        if file.compression != Compression::Plain {
            // Decompression on a thread of its own.
            let reader = Box::new(ThreadedReader::spawn(decompressed(opened)?.0));
            return Ok(Opened { name, reader, finished: Box::new(empty_warning) });
        }
        let size = opened.metadata()?.len();
        let start = match self.range.since_ms {
            Some(since) => {
                start_offset(&mut opened, size, since, self.margin_ms, &mut self.parser)?
            }
            None => 0,
        };
        opened.seek(io::SeekFrom::Start(start))?;
        let shrunk = self.shrunk.clone();
        let finished = move |lines: u64, bytes: u64| {
            empty_warning(lines, bytes);
            if let Ok(metadata) = std::fs::metadata(&path)
                && metadata.len() < start + bytes
            {
                tracing::warn!(message = "The file shrank while it was read: the replay is incomplete.", file = %path.display(), read_bytes = start + bytes, size_now = metadata.len());
                if let Ok(mut shrunk) = shrunk.lock() {
                    shrunk.push(format!(
                        "{} ({} bytes read, {} now)",
                        path.display(),
                        start + bytes,
                        metadata.len()
                    ));
                }
            }
        };
        Ok(Opened { name, reader: Box::new(opened), finished: Box::new(finished) })
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
    pipeline.set_range(range);
    let stdout = io::stdout().lock();
    let style = if args.json { Style::Json } else { Style::Human };
    let mut report = Report::new(io::BufWriter::with_capacity(64 * 1024, stdout), style, notifier)
        .with_documents(Documents { markdown: args.report.clone(), html: args.html.clone() });

    // How far out of order lines may be around a --since/--until boundary.
    let margin_ms =
        i64::from(settings.detector.lateness_s + settings.detector.window_s) * 1000 + 60_000;
    let plain_total: Option<u64> = inputs
        .iter()
        .flat_map(|i| &i.files)
        .map(|f| {
            (f.compression == Compression::Plain && f.path != Path::new("-"))
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
            let files = SetFiles {
                stdin: if has_stdin { input.stdin.take() } else { None },
                files: set.into_iter().peekable(),
                range,
                margin_ms,
                parser: input.parser.clone(),
                shrunk: shrunk.clone(),
            };
            streams.push(Stream { input: index, files: Box::new(files) });
        }
    }
    if streams.len() > MAX_STREAMS {
        bail!(
            "{} rotated sets to merge, more than {MAX_STREAMS}: files are grouped into sets by directory and name (`access.log`, `access.log.1`, `access.log.2.gz` are one set); replay fewer sets at a time",
            streams.len()
        );
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
        &mut report,
        &feeder.interrupted,
        &mut progress,
    )?;
    for index in indexes {
        pipeline.finish_input(index, &mut report);
    }
    let shrunk = shrunk.lock().map(|s| s.clone()).unwrap_or_default();
    feeder.bar.finish_and_clear();
    let interrupted = feeder.interrupted();
    if interrupted {
        report.set_interrupted();
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
    pipeline.finish_input(index, &mut report);
    let counters = pipeline.counters();
    match report.finish(&counters, pipeline.detector(), None) {
        Err(error) if !is_broken_pipe(&error) => Err(error.into()),
        _ => Ok(Outcome::Clean),
    }
}
