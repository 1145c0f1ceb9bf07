//! The command line: argument definitions (clap), and which function runs each subcommand.
//! The subcommands live beside it, one file per question: [`replay`] (and `demo`), [`check`],
//! [`inspect`] (`parse`, `patterns`), [`simulate`] (and `evaluate`); `run` hands over to
//! [`crate::live`].
//!
//! Every subcommand builds the same [`crate::pipeline::Pipeline`]; they differ only in where
//! lines come from (files, stdin, a generated log, followed files) and in what watches the
//! results.

mod alerting;
mod check;
mod inspect;
mod lint;
mod rehearse;
mod replay;
mod simulate;

use std::path::PathBuf;

use clap::{Args, Parser as ClapParser, Subcommand};

use crate::config::Settings;

/// Catch load-balancer traffic skew from access logs.
#[derive(Debug, ClapParser)]
#[command(name = "skewtail", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// How log lines look: `run --log-format`, else `SKEWTAIL_LOG_FORMAT` (`human` or
    /// `json`), else human. (Elsewhere `--log-format` is an access log's format string.)
    pub fn log_format(&self) -> LogFormat {
        match &self.command {
            Command::Run(args) => args.log_format,
            _ => match std::env::var("SKEWTAIL_LOG_FORMAT") {
                Ok(value) if value.eq_ignore_ascii_case("json") => LogFormat::Json,
                _ => LogFormat::Human,
            },
        }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
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
    /// Alerting fire drill: send a clearly marked test message through the real sinks.
    #[command(subcommand)]
    Alert(AlertCommand),
    /// Mute alerts for a while: add, list or expire silences (kept in the state directory).
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// Check an nginx or HAProxy config for what skews traffic (exit 1 on findings).
    Lint(LintArgs),
    /// Send marked requests through a balancer and check the split in its access log
    /// (exit 1 when it is off).
    Rehearse(RehearseArgs),
    /// Print shell completions: `skewtail completions bash > /etc/bash_completion.d/skewtail`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `skewtail man > /usr/local/share/man/man1/skewtail.1`.
    Man,
}

/// `skewtail rehearse`.
#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// The balancer URL to send requests to (loopback only without --allow-remote).
    pub url: String,
    /// A skewtail config: the pool's input gives the log and its format, the pool's weights
    /// the expected split.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The pool (with --config; default: the config's only input's pool).
    #[arg(long)]
    pub pool: Option<String>,
    /// The balancer's access log (default: the pool's input in --config).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// The log's format (default: the pool's input in --config, else `auto`).
    #[arg(long)]
    pub format: Option<String>,
    /// The log's format string (nginx `log_format`, HAProxy `log-format`).
    #[arg(long)]
    pub log_format: Option<String>,
    /// Expected weights, `BACKEND=WEIGHT,...` (default: the pool's weights in --config, else
    /// an even split over the backends seen).
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<String>,
    /// Expected weights from the balancer's own config (nginx.conf or haproxy.cfg): the
    /// upstream/backend named by --pool, or the file's only one.
    #[arg(long, conflicts_with = "weights")]
    pub balancer_config: Option<PathBuf>,
    /// How many requests (at most 1,000,000).
    #[arg(long, default_value_t = 1000)]
    pub requests: u64,
    /// At most this many requests a second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// At most this many requests in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// How long to wait for the log to show the requests, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub settle_s: f64,
    /// Allow a URL that is not on this host.
    #[arg(long)]
    pub allow_remote: bool,
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `skewtail lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// The balancer's config file (nginx.conf with its includes, or haproxy.cfg).
    pub config: PathBuf,
    /// Which balancer; recognised from the file's structure when not given.
    #[arg(long, value_enum)]
    pub kind: Option<crate::balancer::Kind>,
    /// Also compare the balancer's weights with this skewtail config's `[pool.NAME] weights`.
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// Exit 1 when a finding is at least this severe.
    #[arg(long, value_enum, default_value_t = crate::lint::Severity::Warning)]
    pub fail_on: crate::lint::Severity,
    /// One JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `skewtail alert ...`.
#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Send a test message to every sink (or a route's sinks) and print what each answered.
    Test(AlertTestArgs),
}

/// `skewtail alert test`.
#[derive(Debug, Args)]
pub struct AlertTestArgs {
    /// Config file.
    #[arg(long)]
    pub config: PathBuf,
    /// Only the sinks of this route.
    #[arg(long)]
    pub route: Option<String>,
}

/// `skewtail silence ...`.
#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Mute the alerts that match, from now for a duration.
    Add(SilenceAddArgs),
    /// List the silences, active and expired.
    List(SilenceDirArgs),
    /// End a silence now.
    Expire(SilenceExpireArgs),
}

/// Where the silences are kept.
#[derive(Debug, Args)]
pub struct SilenceDirArgs {
    /// Config file (its `state_dir` is used).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// State directory (as `run --state-dir`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

/// `skewtail silence add`.
#[derive(Debug, Args)]
pub struct SilenceAddArgs {
    /// Matchers: `kind=skew`, `pool=api`, `backend=10.0.1.3:8080`, `severity=critical`,
    /// `diagnosis=balancer` (glob patterns; a leading `!` negates).
    #[arg(required = true)]
    pub matchers: Vec<String>,
    /// How long: `2h`, `30m`, `1h30m`.
    #[arg(long, default_value = "2h")]
    pub duration: String,
    /// Why (shown by `silence list` and in the log).
    #[arg(long)]
    pub comment: String,
    /// Where the silences are kept.
    #[command(flatten)]
    pub dir: SilenceDirArgs,
}

/// `skewtail silence expire`.
#[derive(Debug, Args)]
pub struct SilenceExpireArgs {
    /// The silence's id (from `silence list`).
    pub id: String,
    /// Where the silences are kept.
    #[command(flatten)]
    pub dir: SilenceDirArgs,
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
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
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
    /// Also write the ground truth for a replay without weights: one JSON object per event a
    /// detector should report: a page (`"expect": "alert"`, its kind, backend and diagnosis)
    /// or a routine change to record (`"expect": "change"`, its operation), with its times.
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
    /// Format (default `auto`: recognised from the first lines): upstream, ingress_nginx,
    /// nginx_json, nginx_proxy_manager, combined, main, common, haproxy, aws_alb, aws_elb,
    /// envoy, envoy_json, traefik, traefik_json, caddy, gcp_lb; `nginx`, `haproxy` or `envoy`
    /// with --log-format; `skewtail patterns list` for your own.
    #[arg(long)]
    pub format: Option<String>,
    /// The text of the nginx `log_format` that wrote the files.
    #[arg(long)]
    pub log_format: Option<String>,
    /// A container runtime's wrapping around each line (Kubernetes' `/var/log/containers`):
    /// `auto` takes off CRI (containerd, CRI-O) and Docker json-file wrappings wherever a
    /// line has one, joins lines the runtime cut in pieces and counts the container's stderr
    /// as `other`.
    #[arg(long, value_enum, default_value_t = crate::source::container::Wrapping::Auto)]
    pub wrapping: crate::source::container::Wrapping,
    /// How many levels of a directory given as an argument are read (1: its own files only).
    /// Cloud log trees (`AWSLogs/...`) are read whole by default; each balancer node's files
    /// are one stream, in time order, whatever directories they are in.
    #[arg(long, default_value_t = crate::source::files::DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,
    /// Only requests from this time: RFC 3339 (2026-12-02T14:00:00Z), a date, or relative
    /// (-2h, -30m, -1d). Plain files are searched by timestamp, not read from the start.
    #[arg(long)]
    pub since: Option<String>,
    /// Only requests before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Print NDJSON (alerts, windows, a summary) instead of a timeline.
    #[arg(long)]
    pub json: bool,
    /// Also write a Markdown postmortem draft here, with its charts as SVG files beside it.
    #[arg(long, value_name = "FILE.md")]
    pub report: Option<PathBuf>,
    /// Also write one self-contained HTML page (SVG charts, no scripts) here.
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
    /// No progress bar (it is drawn only on a terminal anyway).
    #[arg(long, short)]
    pub quiet: bool,
    /// Parsing threads (default: one per core, at most 16): 1 parses on the main thread; with
    /// more, a reader thread cuts the input into batches of lines, these threads parse them,
    /// and the main one windows and judges them in input order (the results are the same,
    /// byte for byte).
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
    /// Exit with status 1 if any alert fired.
    #[arg(long)]
    pub fail_on_alert: bool,
    /// Pool name for the files' backends (default: the first file's name).
    #[arg(long)]
    pub pool: Option<String>,
    /// Send the replay's alerts through the config's routes and sinks (by default a replay
    /// contacts no one).
    #[arg(long)]
    pub notify: bool,
    /// With --notify: how long to wait at the end for the sinks to deliver, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub delivery_timeout: f64,
    /// Log files, globs or directories, plain, gzip or zstd (recognised by their first
    /// bytes), put in time order by their first timestamps; `-` reads standard input. With
    /// --config they take the first [[input]]'s format and pool; without FILEs the [[input]]
    /// paths are replayed.
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
    /// Serve `/metrics`, `/healthz`, `/readyz` and `/api/v1/alerts` here (`ADDR:PORT`, or
    /// `off`); default: `[server] listen` in the config, else 127.0.0.1:9187.
    #[arg(long)]
    pub listen: Option<String>,
    /// Log lines on stderr: `human`, or `json` (one object per line, for log shippers).
    #[arg(long, value_enum, env = "SKEWTAIL_LOG_FORMAT", default_value_t = LogFormat::Human, ignore_case = true)]
    pub log_format: LogFormat,
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
    /// A check found problems at or above the severity asked for (`lint`).
    Findings,
    /// Stopped by Ctrl-C after printing partial results.
    Interrupted,
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Replay(args) => replay::replay(&args),
        Command::Run(args) => run(&args),
        Command::Check(args) => check::check(&args),
        Command::Demo(args) => replay::demo(&args),
        Command::Parse(args) => inspect::parse(&args),
        Command::Patterns(PatternsCommand::List { patterns_dir }) => {
            inspect::patterns_list(patterns_dir.as_deref())
        }
        Command::Patterns(PatternsCommand::Test(args)) => inspect::patterns_test(&args),
        Command::Simulate(args) => simulate::simulate(&args),
        Command::Evaluate(args) => simulate::evaluate(&args),
        Command::Alert(AlertCommand::Test(args)) => alerting::test(&args),
        Command::Silence(command) => alerting::silence(&command),
        Command::Lint(args) => lint::lint(&args),
        Command::Rehearse(args) => rehearse::rehearse(&args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "skewtail", &mut std::io::stdout());
            Ok(Outcome::Clean)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(Outcome::Clean)
        }
    }
}

/// Loads a config file and checks its alerting sections (without reading secrets).
pub fn load_settings(path: &std::path::Path) -> anyhow::Result<Settings> {
    let settings = Settings::load(path)?;
    crate::alert::check(&settings.alerting)?;
    Ok(settings)
}

fn outcome(fail_on_alert: bool, alerts_fired: u64) -> Outcome {
    if fail_on_alert && alerts_fired > 0 { Outcome::AlertsFired } else { Outcome::Clean }
}

fn run(args: &RunArgs) -> anyhow::Result<Outcome> {
    let settings = load_settings(&args.config)?;
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| settings.state_dir.clone())
        .unwrap_or_else(crate::live::default_state_dir);
    let listen = match &args.listen {
        Some(text) => {
            crate::config::parse_listen(text).map_err(|m| anyhow::anyhow!("--listen: {m}"))?
        }
        None => settings.server.listen,
    };
    let options =
        crate::live::RunOptions { config: args.config.clone(), json: args.json, state_dir, listen };
    let counters = crate::live::run(settings, &options, crate::live::stop_signal())?;
    Ok(outcome(args.fail_on_alert, counters.alerts_fired))
}

/// One parsing thread per core.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}
