//! Live: the sidecar (`skewtail run`). It follows the inputs' files ([`tailer`]), feeds their
//! lines through the same [`Pipeline`] as replay, hands alerts to the dispatcher, and saves
//! its state ([`state`]) every few seconds and at shutdown, so that a restart, even after
//! `kill -9`, reads exactly the lines after the snapshot and goes on with the same windows,
//! baselines and firing alerts.
//!
//! The daemon follows the tokio style: one shutdown signal (SIGINT or SIGTERM), the ingest loop
//! checks it on every turn, and the dispatcher drains its queues until a deadline. The ingest
//! loop is synchronous on its own thread: it is woken by inotify (`notify`) when a file
//! changes, and polls anyway, so nothing depends on an event arriving.
//!
//! This is the only module that reads the wall clock ([`wall_clock_ms`]): for the idle clock
//! that closes a quiet input's windows, and for the snapshot's timestamp.

pub mod state;
pub mod tailer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::alert::{DeliveryTotals, Notifier, NotifierOptions, NotifierState};
use crate::config::Settings;
use crate::detect::AlertEvent;
use crate::pipeline::{Counters, Observer, Pipeline, PipelineState};
use crate::report::{Report, Style};
use crate::source::Next;
use crate::window::WindowSummary;
use state::{InputCheckpoint, LoadError, SnapshotRef, StateStore};
use tailer::{TailEvent, Tailer};

/// How often the files are looked at when nothing wakes the loop earlier.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A turn that read lines is followed by at most this much rest, so that a balancer writing
/// line by line (one inotify event per write) does not wake the loop thousands of times a
/// second.
const MIN_TURN: Duration = Duration::from_millis(50);

/// How often the state is saved.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// Lines read from one input before the others get a turn.
const LINES_PER_TURN: usize = 50_000;

/// How long the dispatcher may take to deliver what is queued at shutdown.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);

/// Wall-clock time in Unix ms: the live clock. Replay never calls this.
#[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
pub fn wall_clock_ms() -> i64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// What `run` was asked for on the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Print the NDJSON stream of `replay --json` (windows, alerts, a summary at shutdown).
    pub json: bool,
    /// Where the state is saved.
    pub state_dir: PathBuf,
}

/// The state directory when neither `--state-dir` nor `state_dir` says: systemd's
/// `$STATE_DIRECTORY`, else `/var/lib/skewtail` when it can be created, else
/// `$XDG_STATE_HOME/skewtail` or `~/.local/state/skewtail`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may list several, separated by ':'.
        let first = dir.to_string_lossy().split(':').next().unwrap_or_default().to_string();
        return PathBuf::from(first);
    }
    let system = Path::new("/var/lib/skewtail");
    if std::fs::create_dir_all(system).is_ok() {
        return system.to_path_buf();
    }
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(state).join("skewtail");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/skewtail"),
        None => PathBuf::from(".skewtail-state"),
    }
}

/// Where the live lines go: the NDJSON stream on stdout, or the log; alerts also go to the
/// notifier.
enum LiveOutput {
    Json(Report<std::io::BufWriter<std::io::Stdout>>),
    Log(Option<Notifier>),
}

impl Observer for LiveOutput {
    fn window(&mut self, window: &WindowSummary) {
        match self {
            LiveOutput::Json(report) => report.window(window),
            LiveOutput::Log(notifier) => {
                tracing::debug!(message = "Window closed.", pool = %window.pool.escape_debug(), start = window.start_ms, requests = window.total_requests());
                if let Some(notifier) = notifier {
                    notifier.tick(window.end_ms);
                }
            }
        }
    }

    fn alert(&mut self, alert: &AlertEvent) {
        match self {
            LiveOutput::Json(report) => report.alert(alert),
            LiveOutput::Log(notifier) => {
                tracing::info!(message = "Alert state changed.", state = ?alert.state, pool = %alert.pool.escape_debug(), backend = %alert.backend.escape_debug(), summary = %alert.summary.escape_debug());
                if let Some(notifier) = notifier {
                    notifier.accept(alert);
                }
            }
        }
    }
}

impl LiveOutput {
    fn flush(&mut self) {
        if let LiveOutput::Json(report) = self {
            report.flush();
        }
    }

    fn notifier(&mut self) -> Option<&mut Notifier> {
        match self {
            LiveOutput::Json(report) => report.notifier(),
            LiveOutput::Log(notifier) => notifier.as_mut(),
        }
    }
}

/// Why the loop woke up.
#[derive(Debug, Clone, Copy)]
enum Wake {
    /// A watched directory changed.
    Files,
    /// SIGINT or SIGTERM.
    Shutdown,
}

/// One followed input.
struct Followed {
    index: usize,
    name: String,
    tailer: Tailer,
    /// When it last produced a line (monotonic).
    last_line: Instant,
}

fn log_event(input: &str, event: &TailEvent) {
    match event {
        TailEvent::Opened { path, offset } => {
            tracing::info!(message = "Reading file.", %input, path = %path.display(), offset);
        }
        TailEvent::Rotated { path } => {
            tracing::info!(message = "File rotated; the old file is read to its end, then the new one from its start.", %input, path = %path.display());
        }
        TailEvent::Truncated { path, recovered_from: Some(copy), recovered, .. } => {
            tracing::info!(message = "File truncated (copytruncate); the lines written since the last read were read from its copy.", %input, path = %path.display(), copy = %copy.display(), bytes = recovered);
        }
        TailEvent::Truncated { path, recovered_from: None, lost, .. } => {
            tracing::warn!(message = "File truncated and no copy of it was found: the lines written since the last read are lost.", %input, path = %path.display(), lost_bytes = lost, fix = "rotate with `delaycompress` so the copy stays readable, or rename instead of copytruncate");
        }
        TailEvent::Finished { path } => {
            tracing::info!(message = "Rotated file read to its end and closed.", %input, path = %path.display());
        }
        TailEvent::Gone { path } => {
            tracing::warn!(message = "A file skewtail was reading before it stopped is gone (rotated away and deleted or compressed); what was left unread in it is lost.", %input, path = %path.display());
        }
        TailEvent::Missing { path } => {
            tracing::warn!(message = "Nothing matches the input's path; waiting for it to appear.", %input, path = %path.display());
        }
        TailEvent::NotRegular { path, why } => {
            tracing::warn!(message = "Not following a path that is not a regular file.", %input, path = %path.display(), why);
        }
        TailEvent::CrOnly { path } => {
            tracing::warn!(message = "Lines end in CR only (old Mac style); read as such.", %input, path = %path.display());
        }
        TailEvent::Failed { path, error } => {
            tracing::error!(message = "Cannot read file; will retry.", %input, path = %path.display(), %error);
        }
    }
}

/// Watches the inputs' directories so that the loop wakes when a file changes. Polling
/// covers everything it misses (a watch limit, a directory that does not exist yet).
fn watch(inputs: &[Followed], wake: mpsc::Sender<Wake>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = wake.send(Wake::Files);
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(message = "Cannot watch for file changes; polling only.", %error);
            return None;
        }
    };
    for input in inputs {
        // The nearest existing directory above the pattern's first wildcard.
        let pattern = input.tailer.pattern();
        let mut dir = pattern.parent().map(Path::to_path_buf).unwrap_or_default();
        while dir.to_string_lossy().contains(['*', '?', '[']) || !dir.is_dir() {
            match dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => dir = parent.to_path_buf(),
                _ => break,
            }
        }
        if dir.is_dir()
            && let Err(error) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive)
        {
            tracing::warn!(message = "Cannot watch a directory; polling it.", dir = %dir.display(), %error);
        }
    }
    Some(watcher)
}

/// Runs the sidecar until SIGINT or SIGTERM; returns the totals.
pub fn run(settings: &Settings, options: &RunOptions) -> anyhow::Result<Counters> {
    if settings.inputs.is_empty() {
        anyhow::bail!("no [[input]] to follow; add one with `path` and `format`");
    }
    for input in &settings.inputs {
        if !input.parser.has_backend_field() {
            anyhow::bail!(
                "input `{}`: {}",
                input.name,
                crate::config::no_backend_message(&input.format_name)
            );
        }
    }
    let store = StateStore::open(&options.state_dir).with_context(|| {
        format!(
            "cannot use the state directory {}; give a writable one with --state-dir or `state_dir`",
            options.state_dir.display()
        )
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime for alert delivery")?;
    let notifier_options =
        NotifierOptions { with_stdout: true, state_dir: Some(options.state_dir.clone()) };
    let notifier = Notifier::start(&settings.alerting, &notifier_options, runtime.handle())?;
    if notifier.is_empty() && !options.json {
        tracing::warn!(message = "No [[sink]] configured: alerts will only appear in this log.");
    }
    let mut output = if options.json {
        LiveOutput::Json(Report::new(
            std::io::BufWriter::new(std::io::stdout()),
            Style::Json,
            Some(notifier),
        ))
    } else {
        LiveOutput::Log(Some(notifier))
    };

    // One shutdown signal: SIGINT or SIGTERM sets it and wakes the loop.
    let (wake_tx, wake_rx) = mpsc::channel::<Wake>();
    let shutdown = Arc::new(AtomicBool::new(false));
    {
        let (shutdown, wake) = (shutdown.clone(), wake_tx.clone());
        runtime.spawn(async move {
            let interrupt = tokio::signal::ctrl_c();
            #[cfg(unix)]
            let terminate = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let terminate = std::future::pending::<()>();
            tokio::select! {
                _ = interrupt => {}
                () = terminate => {}
            }
            shutdown.store(true, Ordering::SeqCst);
            let _ = wake.send(Wake::Shutdown);
        });
    }

    let mut pipeline = Pipeline::new(settings.build_detector());
    let mut followed = Vec::new();
    for input in &settings.inputs {
        let index = pipeline.add_input(&input.name, input.parser.clone(), &input.pool);
        let tailer = Tailer::new(
            input.path.clone(),
            input.start_at == crate::config::StartAt::End,
            settings.max_line_bytes,
        );
        followed.push(Followed {
            index,
            name: input.name.clone(),
            tailer,
            last_line: Instant::now(),
        });
        tracing::info!(message = "Following input.", input = %input.name, path = %input.path.display(), format = %input.format_name);
    }
    restore(&store, &mut pipeline, &mut followed, output.notifier());
    let _watcher = watch(&followed, wake_tx);
    tracing::info!(message = "Running.", state = %store.path().display());

    let idle_ms = i64::from(settings.detector.window_s + settings.detector.lateness_s) * 1000;
    let mut last_checkpoint = Instant::now();
    while !shutdown.load(Ordering::SeqCst) {
        let turn_started = Instant::now();
        let mut any_lines = false;
        for input in &mut followed {
            for event in input.tailer.poll(turn_started) {
                log_event(&input.name, &event);
            }
            let n_read = read_input(input, &mut pipeline, &mut output, &shutdown)?;
            for event in input.tailer.close_finished() {
                log_event(&input.name, &event);
            }
            let now = Instant::now();
            if n_read > 0 {
                any_lines = true;
                input.last_line = now;
            } else {
                let idle = now.duration_since(input.last_line);
                let idle = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
                if idle >= idle_ms {
                    pipeline.close_idle(input.index, idle, &mut output);
                }
            }
        }
        output.flush();
        if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            checkpoint(&store, &pipeline, &followed, output.notifier());
            if let Some(notifier) = output.notifier() {
                notifier.reload_silences();
            }
            last_checkpoint = Instant::now();
        }
        // Rest: an idle loop until woken (a file changed, a signal) or the poll interval; a
        // busy one for MIN_TURN whatever wakes it, so line-by-line writes are read in
        // batches. A signal always ends the rest (the loop condition then stops).
        let deadline = turn_started + if any_lines { MIN_TURN } else { POLL_INTERVAL };
        loop {
            match wake_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Wake::Files) if any_lines => {}
                Ok(_) | Err(_) => break,
            }
        }
    }

    // Shutdown: what is queued for delivery, within a deadline; then the state as of the last
    // line read (open windows stay open, to go on after a restart; what was not delivered
    // stays in the journal), then the summary.
    let delivery: Option<DeliveryTotals> =
        output.notifier().map(|notifier| runtime.block_on(notifier.shutdown(DELIVERY_DEADLINE)));
    checkpoint(&store, &pipeline, &followed, output.notifier());
    let counters = pipeline.counters();
    if let LiveOutput::Json(report) = output {
        report
            .finish(&counters, pipeline.detector(), delivery.as_ref())
            .context("cannot write the summary")?;
    }
    let delivery = delivery.unwrap_or_default();
    tracing::info!(
        message = "Stopped.",
        lines = counters.lines,
        parsed = counters.parsed,
        unparsed = counters.unparsed,
        late = counters.late,
        alerts_fired = counters.alerts_fired,
        alerts_delivered = delivery.delivered,
        alerts_failed = delivery.failed,
        alerts_dropped = delivery.dropped,
        alerts_undelivered = delivery.undelivered
    );
    Ok(counters)
}

/// Reads up to [`LINES_PER_TURN`] lines of one input, rotated files first; returns how many.
fn read_input(
    input: &mut Followed,
    pipeline: &mut Pipeline,
    output: &mut LiveOutput,
    shutdown: &AtomicBool,
) -> anyhow::Result<usize> {
    let mut n_read = 0;
    let mut file = 0;
    while file < input.tailer.n_files() && n_read < LINES_PER_TURN {
        if shutdown.load(Ordering::Relaxed) {
            break;
        }
        match input.tailer.next_line_from(file, Instant::now()) {
            Ok(Next::Line(line)) => {
                pipeline.push_line(input.index, line, output);
                n_read += 1;
            }
            Ok(Next::TooLong { number, length }) => {
                pipeline.push_too_long(input.index, number, length);
                n_read += 1;
            }
            Ok(Next::End) => file += 1,
            Err(error) => {
                tracing::error!(message = "Read failed; will retry.", input = %input.name, %error);
                file += 1;
            }
        }
    }
    Ok(n_read)
}

/// Saves the state: every input's positions and the pipeline, as of the same line.
fn checkpoint(
    store: &StateStore,
    pipeline: &Pipeline,
    followed: &[Followed],
    notifier: Option<&mut Notifier>,
) {
    let inputs: Vec<InputCheckpoint> = followed
        .iter()
        .map(|f| InputCheckpoint { name: f.name.clone(), files: f.tailer.checkpoint() })
        .collect();
    let alerting = notifier.as_ref().map(|n| n.state());
    let snapshot = SnapshotRef {
        format: state::FORMAT,
        written_by: concat!("skewtail ", env!("CARGO_PKG_VERSION")),
        written_at_ms: wall_clock_ms(),
        inputs: &inputs,
        pipeline: pipeline.save(),
        alerting: alerting.as_ref().map(|(state, _)| state.clone()),
    };
    match store.save(&snapshot) {
        Ok(_) => {
            if let (Some(notifier), Some((_, mark))) = (notifier, alerting) {
                notifier.state_saved(mark);
            }
        }
        Err(error) => {
            tracing::error!(message = "Cannot save the state; will retry.", path = %store.path().display(), %error);
        }
    }
}

/// Goes on from the saved state, if there is one.
fn restore(
    store: &StateStore,
    pipeline: &mut Pipeline,
    followed: &mut [Followed],
    notifier: Option<&mut Notifier>,
) {
    let snapshot = match store.load::<PipelineState>(wall_clock_ms()) {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => {
            // No snapshot yet (a crash within seconds of the first start): deliveries settled
            // since are still in the deliveries log.
            if let Some(notifier) = notifier {
                notifier.restore(NotifierState::default());
            }
            return;
        }
        Err(error @ (LoadError::Corrupt { .. } | LoadError::Incompatible { .. })) => {
            tracing::error!(message = "Saved state not used.", %error);
            if let Some(notifier) = notifier {
                notifier.restore(NotifierState::default());
            }
            return;
        }
    };
    for note in pipeline.restore(snapshot.pipeline) {
        tracing::warn!(message = "Part of the saved state was not restored.", %note);
    }
    for saved in snapshot.inputs {
        if let Some(input) = followed.iter_mut().find(|f| f.name == saved.name) {
            input.tailer.resume(saved.files);
        }
    }
    if let Some(notifier) = notifier {
        notifier.restore(snapshot.alerting.unwrap_or_default());
    }
    tracing::info!(message = "Restored the saved state.", path = %store.path().display(), written_by = %snapshot.written_by, written_at_ms = snapshot.written_at_ms);
}
