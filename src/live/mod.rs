//! Live: the sidecar (`skewtail run`). It follows the inputs' files ([`tailer`], [`follow`]),
//! feeds their lines through the same [`Pipeline`] as replay, hands alerts to the notifier,
//! serves `/metrics` and the probes ([`server`], [`metrics`]), reloads its config on SIGHUP
//! ([`reload`]), and saves its state ([`state`]) every few seconds and at shutdown, so that a
//! restart, even after `kill -9`, reads exactly the lines after the snapshot and goes on with
//! the same windows, baselines and firing alerts.
//!
//! The daemon follows the tokio style: one shutdown signal (SIGINT or SIGTERM), the ingest loop
//! checks it on every turn, and the notifier drains its queues until a deadline. The ingest
//! loop is synchronous on its own thread: it is woken by inotify (`notify`) when a file
//! changes, and polls anyway, so nothing depends on an event arriving. Delivery and the HTTP
//! endpoint run on a one-thread tokio runtime beside it.
//!
//! The sidecar reads the wall clock (through [`crate::clock`], the one place that does) for the
//! idle clock that closes a quiet input's windows, the heartbeat and the snapshot's timestamp;
//! the windows themselves run on the logs' event time, as in replay.

mod error;
mod follow;
pub mod metrics;
mod output;
mod reload;
pub mod server;
pub mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::alert::{AlertMetrics, Notifier, NotifierOptions, NotifierState};
use crate::config::Settings;
use crate::pipeline::OpenWindows;
use crate::pipeline::{Counters, Pipeline, PipelineState};
use crate::report::{Report, Style};
use crate::source::container::Unwrapper;
use crate::source::piped::PipedLines;
use crate::source::tailer::Tailer;
pub use error::LiveError;
use follow::{Followed, log_event, read_input, watch};
use metrics::LiveMetrics;
use output::LiveOutput;
use server::Health;
use state::{InputCheckpoint, LoadError, SnapshotRef, StateStore};

/// How often the files are looked at when nothing wakes the loop earlier.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A turn that read lines is followed by at most this much rest, so that a balancer writing
/// line by line (one inotify event per write) does not wake the loop thousands of times a
/// second.
const MIN_TURN: Duration = Duration::from_millis(50);

/// How often the state is saved.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// How long the notifier may take to deliver what is queued at shutdown.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);

/// What `run` was asked for on the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file, read again on SIGHUP.
    pub config: PathBuf,
    /// Print the NDJSON stream of `replay --json` (windows, alerts, a summary at shutdown).
    pub json: bool,
    /// Where the state is saved.
    pub state_dir: PathBuf,
    /// Where the HTTP endpoint listens; `None`: off.
    pub listen: Option<SocketAddr>,
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

/// Why the loop woke up.
#[derive(Debug, Clone, Copy)]
enum Wake {
    /// A watched directory changed.
    Files,
    /// The shutdown future resolved, or SIGHUP.
    Signal,
}

/// Shutdown and reload, as flags the ingest loop reads on every turn.
#[derive(Debug, Default)]
struct Signals {
    shutdown: AtomicBool,
    reload: AtomicBool,
}

/// Resolves on SIGINT or SIGTERM: the shutdown the command line gives [`run`].
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(error) => {
            tracing::error!(message = "Cannot listen for SIGTERM; stop with SIGINT.", %error);
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Sets the shutdown flag when `shutdown` resolves, and reload on every SIGHUP.
fn listen_for_control(
    runtime: &tokio::runtime::Runtime,
    shutdown: impl Future<Output = ()> + Send + 'static,
    signals: &Arc<Signals>,
    wake: &mpsc::Sender<Wake>,
) {
    let (stop, stop_wake) = (signals.clone(), wake.clone());
    runtime.spawn(async move {
        shutdown.await;
        stop.shutdown.store(true, Ordering::SeqCst);
        let _ = stop_wake.send(Wake::Signal);
    });
    let (reload, reload_wake) = (signals.clone(), wake.clone());
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!(message = "Cannot listen for SIGHUP; restart to load a new config.");
            return;
        };
        while hangup.recv().await.is_some() {
            reload.reload.store(true, Ordering::SeqCst);
            let _ = reload_wake.send(Wake::Signal);
        }
    });
}

/// Checks that settings can run live: inputs, each with a backend field.
fn check_live(settings: &Settings) -> Result<(), LiveError> {
    if settings.inputs.is_empty() {
        return Err(LiveError::NoInputs);
    }
    for input in &settings.inputs {
        if !input.parser.has_backend_field() {
            return Err(LiveError::NoBackendField {
                input: input.name.clone(),
                why: crate::parse::no_backend_message(&input.format_name),
            });
        }
        // A FIFO or a device cannot be followed (no end to read to, no offset to resume
        // from): refused once, at the start, rather than warned about on every poll.
        if input.syslog.is_none()
            && let Ok(metadata) = std::fs::metadata(&input.path)
            && let Some(why) = crate::source::not_regular(&metadata)
        {
            return Err(LiveError::NotRegular {
                input: input.name.clone(),
                path: input.path.clone(),
                why,
            });
        }
    }
    Ok(())
}

/// Starts the notifier for `settings`, its metrics in `metrics`.
fn start_notifier(
    settings: &Settings,
    options: &RunOptions,
    metrics: &AlertMetrics,
    runtime: &tokio::runtime::Handle,
) -> Result<Notifier, LiveError> {
    let notifier_options = NotifierOptions {
        with_stdout: true,
        state_dir: Some(options.state_dir.clone()),
        metrics: metrics.clone(),
        finish_deadline: DELIVERY_DEADLINE,
    };
    Ok(Notifier::start(&settings.alerting, &notifier_options, runtime)?)
}

/// Binds the syslog inputs of `settings` that `previous` does not already serve (a reload
/// keeps an input's listener), so that a port in use refuses the config before anything
/// changes, and starts reading standard input for a `path = "-"` input; returns them by
/// input name.
fn bind_listeners(
    settings: &Settings,
    previous: &[Followed],
    wake: &mpsc::Sender<Wake>,
) -> Result<BTreeMap<String, PipedLines>, LiveError> {
    let mut bound = BTreeMap::new();
    for input in &settings.inputs {
        let kept =
            previous.iter().any(|f| f.name == input.name && f.tailer.pattern() == input.path);
        if kept {
            continue;
        }
        let wake = wake.clone();
        let woken = move || {
            let _ = wake.send(Wake::Files);
        };
        if input.path == Path::new("-") {
            let max_line = settings.max_line_bytes;
            let stdin = std::io::stdin();
            let piped = PipedLines::spawn(stdin, &input.name, input.wrapping, max_line, woken)
                .map_err(|source| LiveError::Stdin { input: input.name.clone(), source })?;
            bound.insert(input.name.clone(), piped);
            continue;
        }
        let Some(listen) = input.syslog else { continue };
        let (piped, at) =
            crate::source::syslog::listen(listen, &input.name, settings.max_line_bytes, woken)
                .map_err(|source| LiveError::Syslog {
                    input: input.name.clone(),
                    listen,
                    source,
                })?;
        tracing::info!(message = "Listening for syslog.", input = %input.name, listen = %listen, bound = %at);
        bound.insert(input.name.clone(), piped);
    }
    Ok(bound)
}

/// A pipeline for `settings` with its inputs, and each input followed (reusing `previous`
/// tailers of inputs with the same name and path, so a reload reads on where it was; syslog
/// and standard input from `listeners`).
fn build_pipeline(
    settings: &Settings,
    mut previous: Vec<Followed>,
    mut listeners: BTreeMap<String, PipedLines>,
) -> (Pipeline, Vec<Followed>) {
    let mut pipeline = Pipeline::new(settings.build_detector());
    let mut followed = Vec::new();
    for input in &settings.inputs {
        let index = pipeline.add_input(&input.name, input.parser.clone(), &input.pool);
        let kept = previous
            .iter()
            .position(|f| f.name == input.name && f.tailer.pattern() == input.path.as_path());
        let followed_input = match kept {
            // Read on where it was, a line in pieces and standard input's reader included.
            Some(at) => Followed { index, pool: input.pool.clone(), ..previous.swap_remove(at) },
            None => {
                let start_at_end = input.start_at == crate::config::StartAt::End;
                let max_line = settings.max_line_bytes;
                let tailer = Tailer::new(input.path.clone(), start_at_end, max_line);
                let unwrapper = Unwrapper::new(input.wrapping, max_line);
                let mut followed =
                    Followed::new(index, &input.name, &input.pool, tailer, unwrapper);
                followed.piped = listeners.remove(&input.name);
                followed
            }
        };
        followed.push(followed_input);
        tracing::info!(message = "Following input.", input = %input.name, path = %input.path.display(), format = %input.format_name);
    }
    (pipeline, followed)
}

/// The running sidecar: its settings, pipeline, inputs and outputs.
struct Sidecar {
    settings: Settings,
    options: RunOptions,
    pipeline: Pipeline,
    followed: Vec<Followed>,
    output: LiveOutput,
    store: StateStore,
    alert_metrics: AlertMetrics,
    health: Arc<Health>,
    /// The balancer configs the weights come from, as last read: an edit is reloaded.
    balancer_files: reload::FileStamps,
    /// Wakes the ingest loop (standard input's reader, on a reload).
    wake: mpsc::Sender<Wake>,
}

/// Runs the sidecar until `shutdown` resolves (the command line passes [`stop_signal`]; a
/// test, any future), reloading its config on SIGHUP; returns the totals once every window
/// it could close is judged, alerts are delivered (within the deadline) and state is saved.
pub fn run(
    settings: Settings,
    options: &RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Counters, LiveError> {
    check_live(&settings)?;
    let store = StateStore::open(&options.state_dir)
        .map_err(|source| LiveError::StateDirectory { dir: options.state_dir.clone(), source })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(LiveError::Runtime)?;
    let alert_metrics = AlertMetrics::default();
    let notifier = start_notifier(&settings, options, &alert_metrics, runtime.handle())?;
    if notifier.is_empty() && !options.json {
        tracing::warn!(message = "No [[sink]] configured: alerts will only appear in this log.");
    }
    let metrics = Arc::new(LiveMetrics::new(
        settings.server.metrics_max_backends,
        i64::from(settings.detector.forget_after_s) * 1000,
    ));
    let health = Arc::new(Health::default());
    if let Some(addr) = options.listen {
        let registry = metrics.registry(&alert_metrics);
        let bound =
            server::start(addr, runtime.handle(), registry, metrics.clone(), health.clone())?;
        tracing::info!(message = "Serving /metrics, /healthz, /readyz and /api/v1/alerts.", listen = %bound);
    }
    let output = LiveOutput {
        json: options
            .json
            .then(|| Report::new(std::io::BufWriter::new(std::io::stdout()), Style::Json)),
        notifier,
        metrics,
        touched_pools: Vec::new(),
        alerts_changed: true,
    };

    let (wake_tx, wake_rx) = mpsc::channel::<Wake>();
    let signals = Arc::new(Signals::default());
    listen_for_control(&runtime, shutdown, &signals, &wake_tx);

    let listeners = bind_listeners(&settings, &[], &wake_tx)?;
    let (pipeline, followed) = build_pipeline(&settings, Vec::new(), listeners);
    let mut sidecar = Sidecar {
        settings,
        options: options.clone(),
        pipeline,
        followed,
        output,
        store,
        alert_metrics,
        health,
        balancer_files: reload::FileStamps::default(),
        wake: wake_tx.clone(),
    };
    sidecar.balancer_files = reload::FileStamps::of(&sidecar.settings.balancer_files);
    sidecar.restore();
    let mut watcher = watch(&sidecar.followed, wake_tx.clone());
    sidecar.health.set_ready();
    tracing::info!(message = "Running.", state = %sidecar.store.path().display());

    let mut last_checkpoint = Instant::now();
    while !signals.shutdown.load(Ordering::SeqCst) {
        // A sidecar fed on standard input stops when its writer does (as `tail -f | ...`
        // pipelines do), so a supervisor restarts both.
        if sidecar.followed.iter().any(|f| f.ended) {
            tracing::info!(message = "Standard input ended: stopping.");
            break;
        }
        let turn_started = Instant::now();
        if signals.reload.swap(false, Ordering::SeqCst) && sidecar.reload(runtime.handle()) {
            watcher = watch(&sidecar.followed, wake_tx.clone());
        }
        let any_lines = sidecar.turn(turn_started, &signals.shutdown);
        if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            sidecar.checkpoint();
            sidecar.output.notifier.reload_silences();
            last_checkpoint = Instant::now();
            // A balancer config whose weights skewtail reads was edited: read it again, as
            // on SIGHUP (the pool keeps what it learned and records the new weights).
            let current = reload::FileStamps::of(&sidecar.settings.balancer_files);
            if current != sidecar.balancer_files {
                tracing::info!(message = "A balancer config skewtail reads changed; reloading.");
                sidecar.balancer_files = current;
                if sidecar.reload(runtime.handle()) {
                    watcher = watch(&sidecar.followed, wake_tx.clone());
                }
            }
        }
        // Rest: an idle loop until woken (a file changed, a signal) or the poll interval; a
        // busy one for MIN_TURN whatever wakes it, so line-by-line writes are read in
        // batches. A signal always ends the rest.
        let deadline = turn_started + if any_lines { MIN_TURN } else { POLL_INTERVAL };
        loop {
            match wake_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Wake::Files) if any_lines => {}
                Ok(_) | Err(_) => break,
            }
        }
    }
    drop(watcher);
    sidecar.stop()
}

impl Sidecar {
    /// One turn: every input polled and read, quiet inputs' windows closed on the idle
    /// clock, the metrics published. Returns whether any line was read.
    fn turn(&mut self, started: Instant, shutdown: &AtomicBool) -> bool {
        let idle_ms =
            i64::from(self.settings.detector.window_s + self.settings.detector.lateness_s) * 1000;
        let mut any_lines = false;
        for input in &mut self.followed {
            let files = input.piped.is_none();
            if files {
                for event in input.tailer.poll(started) {
                    log_event(&input.name, &event);
                }
            }
            let n_read = read_input(input, &mut self.pipeline, &mut self.output, shutdown);
            if files {
                for event in input.tailer.close_finished() {
                    log_event(&input.name, &event);
                }
            }
            let now = Instant::now();
            if n_read > 0 {
                any_lines = true;
                input.last_line = now;
            } else {
                let idle = now.duration_since(input.last_line);
                let idle = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
                if idle >= idle_ms {
                    self.pipeline.close_idle(input.index, idle, &mut self.output);
                }
            }
        }
        self.output.flush();
        self.publish();
        any_lines
    }

    /// Hands what changed this turn to the metrics.
    fn publish(&mut self) {
        let metrics = &self.output.metrics;
        metrics.lines(self.pipeline.input_lines());
        for input in &self.followed {
            let newest = self.pipeline.newest_event_ms(input.index);
            metrics.lag(&input.name, input.tailer.lag_bytes(), newest);
            if let Some(piped) = &input.piped {
                metrics.dropped(&input.name, piped.dropped());
            }
        }
        let detector = self.pipeline.detector();
        for pool in self.output.touched_pools.drain(..) {
            metrics.expected(&pool, &detector.expected_shares(&pool));
        }
        if std::mem::take(&mut self.output.alerts_changed) {
            metrics.firing(&detector.firing());
            metrics.backends_held(detector.backends_held());
        }
        self.health.beat(crate::clock::wall_clock_ms());
    }

    /// Delivers what is queued within a deadline, saves the state as of the last line read
    /// (open windows stay open, to go on after a restart; what was not delivered stays in
    /// the journal), then writes the summary.
    fn stop(mut self) -> Result<Counters, LiveError> {
        let finished = self.pipeline.finish(&mut self.output, OpenWindows::Keep, false);
        self.checkpoint();
        let (counters, delivery) = match finished {
            Ok((counters, delivery)) => (counters, delivery.unwrap_or_default()),
            Err(error) if error.is_broken_pipe() => (self.pipeline.counters(), Default::default()),
            Err(error) => return Err(LiveError::Summary(error)),
        };
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

    /// Saves the state: every input's positions and the pipeline, as of the same line.
    fn checkpoint(&mut self) {
        let inputs: Vec<InputCheckpoint> = self
            .followed
            .iter()
            .map(|f| InputCheckpoint { name: f.name.clone(), files: f.tailer.checkpoint() })
            .collect();
        let (alerting, mark) = self.output.notifier.state();
        let written_at_ms = crate::clock::wall_clock_ms();
        let snapshot = SnapshotRef {
            format: state::FORMAT,
            written_by: concat!("skewtail ", env!("CARGO_PKG_VERSION")),
            written_at_ms,
            inputs: &inputs,
            pipeline: self.pipeline.save(),
            alerting: Some(alerting),
        };
        match self.store.save(&snapshot) {
            Ok(_) => {
                self.output.notifier.state_saved(mark);
                self.output.metrics.checkpointed(written_at_ms);
            }
            Err(error) => {
                tracing::error!(message = "Cannot save the state; will retry.", path = %self.store.path().display(), %error);
            }
        }
    }

    /// Goes on from the saved state, if there is one.
    fn restore(&mut self) {
        let snapshot = match self.store.load::<PipelineState>(crate::clock::wall_clock_ms()) {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => {
                // No snapshot yet (a crash within seconds of the first start): deliveries
                // settled since are still in the deliveries log.
                self.output.notifier.restore(NotifierState::default());
                return;
            }
            Err(error @ (LoadError::Corrupt { .. } | LoadError::Incompatible { .. })) => {
                tracing::error!(message = "Saved state not used.", %error);
                self.output.notifier.restore(NotifierState::default());
                return;
            }
        };
        for note in self.pipeline.restore(snapshot.pipeline) {
            tracing::warn!(message = "Part of the saved state was not restored.", %note);
        }
        for saved in snapshot.inputs {
            if let Some(input) = self.followed.iter_mut().find(|f| f.name == saved.name) {
                input.tailer.resume(saved.files);
            }
        }
        self.output.notifier.restore(snapshot.alerting.unwrap_or_default());
        tracing::info!(message = "Restored the saved state.", path = %self.store.path().display(), written_by = %snapshot.written_by, written_at_ms = snapshot.written_at_ms);
    }
}
