//! The command line: argument definitions (clap) and one function per subcommand.
//!
//! Every subcommand builds the same [`Pipeline`]; they differ only in where lines come from
//! (files, stdin, a generated log, followed files) and in what watches the results.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser as ClapParser, Subcommand};

use crate::alert::Dispatcher;
use crate::config::{Settings, build_parser, no_backend_message};
use crate::parse::Parser;
use crate::pipeline::{Observer, Pipeline};
use crate::report::{Report, Style};
use crate::source::{LineReader, Next};
use crate::synth::Scenario;

/// Catch load-balancer traffic skew from access logs.
#[derive(Debug, ClapParser)]
#[command(name = "skewtail", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline over past logs at full speed, on the logs' own time.
    Replay(ReplayArgs),
    /// Follow live log files and send alerts to the configured sinks.
    Run(RunArgs),
    /// Validate a config file and try its formats on the first lines of each input.
    Check(CheckArgs),
    /// Replay the seed incident from a generated log: no set-up, no network.
    Demo(DemoArgs),
    /// Print every line as parsed: one JSON object per line, or why it did not parse.
    Parse(ParseArgs),
    /// Known formats: list them, or test how well they fit a log.
    #[command(subcommand)]
    Patterns(PatternsCommand),
    /// Write a realistic access log with scripted incidents (fire drills, evaluation).
    Simulate(SimulateArgs),
    /// Run the labelled scenario suite and score the detector (EVALUATION.md).
    Evaluate(EvaluateArgs),
}

/// `skewtail simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Format to write: any built-in format that names backends (`nginx` = `upstream`).
    #[arg(long, default_value = "upstream")]
    pub format: String,
    /// Length of the log: `90m`, `2h`, `1h30m`.
    #[arg(long, default_value = "1h")]
    pub duration: String,
    /// Mean requests per second.
    #[arg(long, default_value_t = 40)]
    pub rate: u32,
    /// Number of backends.
    #[arg(long, default_value_t = 8)]
    pub backends: usize,
    /// The balancer's weights, one per backend (`3,1,1,1`); equal without.
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<f64>,
    /// A scripted incident, `KIND@START+DURATION[:key=value,...]`; repeat for more. Kinds:
    /// skew (share), drift (share), drop, flap (period), errors (rate), slow (factor), surge (factor), outage
    /// (rate, every backend), seed;
    /// `backend=N` picks the backend (default 2). Example: `skew@20m+25m:backend=2,share=0.45`.
    #[arg(long = "incident")]
    pub incidents: Vec<String>,
    /// Traffic follows the day (half the mean at 04:00 UTC, 1.5x at 16:00).
    #[arg(long)]
    pub diurnal: bool,
    /// With --diurnal, the rate at 04:00 as a fraction of the mean (0.025 makes 40 req/s
    /// by day 1 req/s at night).
    #[arg(long, default_value_t = 0.5)]
    pub night_ratio: f64,
    /// Bursty traffic: clients send keep-alive batches that land on one backend, making
    /// per-window counts about this many times as dispersed as independent requests.
    #[arg(long, default_value_t = 1.0)]
    pub dispersion: f64,
    /// A hashed or sticky pool: clients keep their backend this long on average (`5m`).
    #[arg(long)]
    pub sticky: Option<String>,
    /// Scale-ups: `EVERY/RAMP`, e.g. `1h/90s`: a new backend joins every hour and the
    /// balancer slow-starts it over 90 s (they are added to --backends).
    #[arg(long)]
    pub scale_up: Option<String>,
    /// Heavy latency tails: 1% of requests 5 to 50 times slower.
    #[arg(long)]
    pub latency_tail: bool,
    /// Fraction of lines written late, out of order.
    #[arg(long, default_value_t = 0.0)]
    pub late_fraction: f64,
    /// How late such a line can be, seconds.
    #[arg(long, default_value_t = 30)]
    pub max_lateness_s: u32,
    /// Random seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Start time (RFC 3339); default 2023-11-15T14:00:00Z, the seed incident's day.
    #[arg(long)]
    pub start: Option<String>,
    /// Write the log here instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Also write the ground truth: one JSON object per incident with the alert kind,
    /// backend and times a detector should report.
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

/// `skewtail evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Hours of clean traffic per pool shape.
    #[arg(long, default_value_t = 24)]
    pub hours_clean: u32,
    /// Also list every alert each scenario raised.
    #[arg(long)]
    pub verbose: bool,
}

/// `skewtail patterns ...`.
#[derive(Debug, Subcommand)]
pub enum PatternsCommand {
    /// List the known formats.
    List {
        /// A directory of extra pattern files.
        #[arg(long)]
        patterns_dir: Option<PathBuf>,
    },
    /// Report how well a format fits a log: match rate, fields filled, the first lines that
    /// do not match and where, and a better format if there is one.
    Test(PatternsTestArgs),
}

/// `skewtail patterns test`.
#[derive(Debug, Args)]
pub struct PatternsTestArgs {
    /// The log to test.
    pub file: PathBuf,
    /// Format name; without it (or with `auto`) the best fit is picked.
    #[arg(long)]
    pub format: Option<String>,
    /// The text of the nginx `log_format` to test.
    #[arg(long)]
    pub log_format: Option<String>,
    /// A directory of extra pattern files.
    #[arg(long)]
    pub patterns_dir: Option<PathBuf>,
    /// Lines to test, from the start of the file.
    #[arg(long, default_value_t = 10_000)]
    pub lines: usize,
}

/// `skewtail parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Format name (see `replay --help`).
    #[arg(long)]
    pub format: Option<String>,
    /// The text of the nginx `log_format` that wrote the files.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Log files; standard input when none are given (or `-`).
    pub files: Vec<PathBuf>,
}

/// `skewtail replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Config file (formats, pools and weights, detector settings, sinks).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Format name: nginx (with --log-format; else combined), upstream, ingress_nginx, main, common, combined.
    #[arg(long)]
    pub format: Option<String>,
    /// The text of the nginx `log_format` that wrote the files.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Print NDJSON (alerts, windows, a summary) instead of a timeline.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 if any alert fired.
    #[arg(long)]
    pub fail_on_alert: bool,
    /// Pool name for the files' backends (default: the first file's name).
    #[arg(long)]
    pub pool: Option<String>,
    /// How long to wait at the end for configured sinks to deliver, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub delivery_timeout: f64,
    /// Log files, oldest first, read as one stream; `-` reads standard input. With --config
    /// they take the first [[input]]'s format and pool; without FILEs the [[input]] paths are replayed.
    pub files: Vec<PathBuf>,
}

/// `skewtail run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file.
    #[arg(long)]
    pub config: PathBuf,
    /// Exit with status 1 on shutdown if any alert fired.
    #[arg(long)]
    pub fail_on_alert: bool,
    /// Print the NDJSON stream `replay --json` prints: windows, alerts, and a summary at
    /// shutdown.
    #[arg(long)]
    pub json: bool,
    /// Where the state (positions, windows, baselines, firing alerts) is saved; default:
    /// `state_dir` in the config, else $STATE_DIRECTORY, /var/lib/skewtail or
    /// ~/.local/state/skewtail.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

/// `skewtail check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file.
    #[arg(long)]
    pub config: PathBuf,
    /// Lines to try from each input.
    #[arg(long, default_value_t = 10)]
    pub lines: usize,
}

/// `skewtail demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print NDJSON instead of a timeline.
    #[arg(long)]
    pub json: bool,
    /// Also write the generated log to this file (to replay it yourself).
    #[arg(long)]
    pub write_log: Option<PathBuf>,
}

/// How a command ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report.
    Clean,
    /// Alerts fired and `--fail-on-alert` was given.
    AlertsFired,
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Replay(args) => replay(&args),
        Command::Run(args) => run(&args),
        Command::Check(args) => check(&args),
        Command::Demo(args) => demo(&args),
        Command::Parse(args) => parse(&args),
        Command::Patterns(PatternsCommand::List { patterns_dir }) => {
            patterns_list(patterns_dir.as_deref())
        }
        Command::Patterns(PatternsCommand::Test(args)) => patterns_test(&args),
        Command::Simulate(args) => simulate(&args),
        Command::Evaluate(args) => evaluate(&args),
    }
}

fn outcome(fail_on_alert: bool, alerts_fired: u64) -> Outcome {
    if fail_on_alert && alerts_fired > 0 { Outcome::AlertsFired } else { Outcome::Clean }
}

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

fn replay(args: &ReplayArgs) -> anyhow::Result<Outcome> {
    let settings = match &args.config {
        Some(path) => Settings::load(path)?,
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
    let sinks = settings.build_sinks(false)?;
    let runtime = if sinks.is_empty() { None } else { Some(new_runtime()?) };
    let dispatcher = runtime.as_ref().map(|rt| Dispatcher::start(sinks, rt.handle()));
    let mut pipeline = Pipeline::new(settings.build_detector());
    let stdout = io::stdout().lock();
    let style = if args.json { Style::Json } else { Style::Human };
    let mut report =
        Report::new(io::BufWriter::with_capacity(64 * 1024, stdout), style, dispatcher);

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
    let delivery = match (report.take_dispatcher(), &runtime) {
        (Some(dispatcher), Some(runtime)) => Some(runtime.block_on(
            dispatcher.shutdown(Duration::from_secs_f64(args.delivery_timeout.max(0.0))),
        )),
        _ => None,
    };
    let finished = report.finish(&counters, pipeline.detector(), delivery.as_ref());
    match finished {
        Err(error) if !is_broken_pipe(&error) => {
            return Err(error).context("cannot write the report");
        }
        _ => {}
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

fn parse(args: &ParseArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::defaults();
    let stdin_only = [PathBuf::from("-")];
    let files = if args.files.is_empty() { &stdin_only[..] } else { &args.files[..] };
    let sample = Some(files[0].as_path()).filter(|p| *p != Path::new("-"));
    let (mut parser, _) = build_parser(
        &settings.patterns,
        args.format.as_deref(),
        args.log_format.as_deref(),
        &[],
        sample,
    )
    .map_err(anyhow::Error::msg)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for path in files {
        let source: Box<dyn Read> = if path == Path::new("-") {
            Box::new(io::stdin().lock())
        } else {
            Box::new(crate::source::open_for_replay(path)?)
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
            serde_json::to_writer(&mut out, &object)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(Outcome::Clean)
}

fn load_patterns(dir: Option<&Path>) -> anyhow::Result<crate::parse::PatternSet> {
    let mut patterns = crate::parse::PatternSet::builtin();
    if let Some(dir) = dir {
        patterns.load_dir(dir)?;
    }
    Ok(patterns)
}

fn patterns_list(dir: Option<&Path>) -> anyhow::Result<Outcome> {
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

fn patterns_test(args: &PatternsTestArgs) -> anyhow::Result<Outcome> {
    let patterns = load_patterns(args.patterns_dir.as_deref())?;
    let lines = crate::config::sample_lines(&args.file, args.lines).map_err(anyhow::Error::msg)?;
    let samples: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let ranked = crate::parse::auto::rank(&patterns, &samples);
    let mut out = io::stdout().lock();
    writeln!(out, "{}: {} line(s) tested", args.file.display(), samples.len())?;
    let format = args.format.as_deref().filter(|f| *f != "auto");
    let (mut parser, name) = if format.is_none() && args.log_format.is_none() {
        match crate::parse::auto::choose(&ranked) {
            Ok((best, why)) => {
                writeln!(out, "format: {why}")?;
                build_parser(&patterns, Some(&best.name), None, &[], None)
                    .map_err(anyhow::Error::msg)?
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
        build_parser(&patterns, format, args.log_format.as_deref(), &[], None)
            .map_err(anyhow::Error::msg)?
    };

    let mut fill = crate::parse::auto::FieldFill::default();
    let (mut n_other, mut unmatched) = (0u64, Vec::new());
    for (index, line) in samples.iter().enumerate() {
        match parser.parse(line) {
            Ok(record) => fill.add(&record),
            Err(error) if error.kind == crate::parse::ParseErrorKind::NotARequest => n_other += 1,
            Err(error) => unmatched.push((index + 1, parser.explain(&error), *line)),
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
        for (number, why, line) in unmatched.iter().take(5) {
            writeln!(
                out,
                "  line {number}: {why}\n    {}",
                line[..line.len().min(160)].escape_ascii()
            )?;
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

fn demo(args: &DemoArgs) -> anyhow::Result<Outcome> {
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

fn check(args: &CheckArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(&args.config)?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{}: config OK ({} input(s), {} pool weight set(s), {} sink(s))",
        args.config.display(),
        settings.inputs.len(),
        settings.expectations.len(),
        settings.sinks.len()
    )?;
    for note in settings.detector.disabled_parts() {
        writeln!(out, "note: {note}")?;
    }
    let mut problems = Vec::new();
    // Backends seen in the sample lines, per pool, with their request counts.
    let mut seen: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for input in &settings.inputs {
        let mut parser = input.parser.clone();
        write!(
            out,
            "input `{}` ({}), format {}: ",
            input.name,
            input.path.display(),
            input.format_name
        )?;
        if !parser.has_backend_field() {
            problems.push(format!(
                "input `{}`: {}",
                input.name,
                no_backend_message(&input.format_name)
            ));
        }
        let file = match crate::source::open_for_replay(&input.path) {
            Ok(file) => file,
            Err(error) => {
                writeln!(out, "cannot open")?;
                problems.push(format!("input `{}`: {error:#}", input.name));
                continue;
            }
        };
        let mut reader = LineReader::new(file, settings.max_line_bytes);
        let (mut tried, mut matched, mut failures) = (0, 0, Vec::new());
        while tried < args.lines {
            match reader.next_line(true)? {
                Next::Line(line) => {
                    tried += 1;
                    match parser.parse(line.bytes) {
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
                        Err(error) => failures.push(format!(
                            "    line {}: {}",
                            line.number,
                            parser.explain(&error)
                        )),
                    }
                }
                Next::TooLong { number, .. } => {
                    tried += 1;
                    failures.push(format!("    line {number}: longer than max_line_bytes"));
                }
                Next::End => break,
            }
        }
        writeln!(out, "{matched} of the first {tried} line(s) parsed")?;
        for failure in &failures {
            writeln!(out, "{failure}")?;
        }
        if tried > 0 && matched == 0 {
            problems.push(format!(
                "input `{}`: none of the first {tried} lines match format {}",
                input.name, input.format_name
            ));
        }
    }
    problems.extend(check_weights(&mut out, &settings, &seen)?);
    if problems.is_empty() { Ok(Outcome::Clean) } else { bail!("{}", problems.join("\n")) }
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

fn run(args: &RunArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(&args.config)?;
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| settings.state_dir.clone())
        .unwrap_or_else(crate::live::default_state_dir);
    let options = crate::live::RunOptions { json: args.json, state_dir };
    let counters = crate::live::run(&settings, &options)?;
    Ok(outcome(args.fail_on_alert, counters.alerts_fired))
}

fn simulate(args: &SimulateArgs) -> anyhow::Result<Outcome> {
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
    if let Some(i) = incidents.iter().find(|i| i.backend >= args.backends) {
        bail!(
            "an incident names backend {} of {} (backends count from 0)",
            i.backend,
            args.backends
        );
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
    let joins = match &args.scale_up {
        Some(text) => {
            let parsed = text.split_once('/').and_then(|(every, ramp)| {
                Some((
                    crate::synth::parse_duration_s(every).filter(|&s| s > 0)?,
                    crate::synth::parse_duration_s(ramp)?,
                ))
            });
            let (every, ramp) = parsed.ok_or_else(|| {
                anyhow::anyhow!("--scale-up `{text}` is not like 1h/90s (EVERY/RAMP)")
            })?;
            (0..duration_s / every)
                .map(|i| crate::synth::Join {
                    backend: args.backends + i as usize,
                    at_s: (i + 1) * every - every / 2,
                    ramp_s: ramp,
                })
                .collect()
        }
        None => Vec::new(),
    };
    let n_backends = args.backends + joins.len();
    let mut weights = args.weights.clone();
    if !weights.is_empty() {
        weights.resize(n_backends, 1.0);
    }
    let scenario = Scenario {
        start_ms,
        duration_s,
        rate_per_s: args.rate,
        backends: crate::synth::backend_addresses(n_backends),
        weights,
        incidents,
        joins,
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

fn evaluate(args: &EvaluateArgs) -> anyhow::Result<Outcome> {
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
