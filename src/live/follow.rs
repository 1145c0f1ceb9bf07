//! Following: one input's tailer and its place in the pipeline, the events it logs, the
//! inotify watches that wake the loop, and reading a turn's worth of lines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use crate::pipeline::{Batch, Observer, Pipeline};
use crate::source::Next;
use crate::source::container::{Unwrapper, is_pool_template, pool_of_file};
use crate::source::piped::{Piped, PipedLines};

use super::Wake;
use crate::source::tailer::{TailEvent, Tailer};

/// Lines read from one input before the others get a turn.
const LINES_PER_TURN: usize = 50_000;

/// One followed input.
pub(super) struct Followed {
    /// Its index in the pipeline.
    pub index: usize,
    /// The input's name.
    pub name: String,
    /// Its files.
    pub tailer: Tailer,
    /// When it last produced a line (monotonic).
    pub last_line: Instant,
    /// The lines read this turn, parsed together.
    pub batch: Batch,
    /// Takes a container runtime's wrapping off the lines of the file being read.
    pub unwrapper: Unwrapper,
    /// The unwrappers of files left in the middle of a line in pieces (its last piece not
    /// written yet), by path: each file's pieces are joined with its own.
    pub parked: HashMap<PathBuf, Unwrapper>,
    /// The input's pool: a name, or a template filled from each file's path.
    pub pool: String,
    /// Standard input, when the input's path is `-` (its tailer then follows nothing).
    pub piped: Option<PipedLines>,
    /// Standard input ended.
    pub ended: bool,
    /// Dropped lines already logged (syslog datagrams that came while the loop was behind).
    pub dropped_logged: u64,
}

impl Followed {
    /// Input `index` of the pipeline, named `name`, read by `tailer`.
    pub fn new(index: usize, name: &str, pool: &str, tailer: Tailer, unwrapper: Unwrapper) -> Self {
        Followed {
            index,
            name: name.to_string(),
            tailer,
            last_line: Instant::now(),
            batch: Batch::for_input(name),
            unwrapper,
            parked: HashMap::new(),
            pool: pool.to_string(),
            piped: None,
            ended: false,
            dropped_logged: 0,
        }
    }
}

pub(super) fn log_event(input: &str, event: &TailEvent) {
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
pub(super) fn watch(
    inputs: &[Followed],
    wake: mpsc::Sender<Wake>,
) -> Option<notify::RecommendedWatcher> {
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

/// Reads up to [`LINES_PER_TURN`] lines of one input, rotated files first; returns how many.
pub(super) fn read_input(
    input: &mut Followed,
    pipeline: &mut Pipeline,
    output: &mut impl Observer,
    shutdown: &AtomicBool,
) -> usize {
    if input.piped.is_some() {
        return read_piped(input, pipeline, output, shutdown);
    }
    let mut n_read = 0;
    let mut file = 0;
    let mut reading = None;
    let pool_per_file = is_pool_template(&input.pool);
    while file < input.tailer.n_files() && n_read < LINES_PER_TURN {
        if shutdown.load(Ordering::Relaxed) {
            break;
        }
        if input.batch.block().is_full() {
            pipeline.push_batch(input.index, &mut input.batch, output);
        }
        if reading != Some(file) {
            switch_file(input, reading, file);
            // A pool filled from each file's path: a batch holds the lines of one file.
            if pool_per_file {
                pipeline.push_batch(input.index, &mut input.batch, output);
                let path = input.tailer.path_of(file);
                input.batch.block().pool =
                    path.and_then(|p| pool_of_file(&input.pool, p)).map(Into::into);
            }
            reading = Some(file);
        }
        match input.tailer.next_line_from(file, Instant::now()) {
            Ok(Next::Line(line)) => {
                input.batch.block().push_unwrapped(&mut input.unwrapper, line);
                n_read += 1;
            }
            Ok(Next::TooLong { number, length }) => {
                input.batch.block().push_too_long(number, length);
                n_read += 1;
            }
            Ok(Next::End) => file += 1,
            Err(error) => {
                tracing::error!(message = "Read failed; will retry.", input = %input.name, %error);
                file += 1;
            }
        }
    }
    if let Some(last) = reading {
        park(input, last);
    }
    if !input.parked.is_empty() {
        let tailer = &input.tailer;
        let followed =
            |path: &PathBuf| (0..tailer.n_files()).any(|i| tailer.path_of(i) == Some(path));
        input.parked.retain(|path, _| followed(path));
    }
    // Everything read this turn is in the pipeline before the turn ends (and before any
    // checkpoint), so offsets and counts stay together.
    pipeline.push_batch(input.index, &mut input.batch, output);
    n_read
}

/// Reading moves from file `from` to file `to`: the unwrapper of `from` is parked if it holds
/// pieces of a line, and `to`'s own is taken up (a fresh one when it had none).
fn switch_file(input: &mut Followed, from: Option<usize>, to: usize) {
    if let Some(from) = from {
        park(input, from);
    }
    if let Some(parked) = input.tailer.path_of(to).and_then(|path| input.parked.remove(path)) {
        input.unwrapper = parked;
    }
}

/// Parks file `index`'s unwrapper when it holds pieces of a line; otherwise it is reset and
/// kept for the next file.
fn park(input: &mut Followed, index: usize) {
    if input.unwrapper.is_joining()
        && let Some(path) = input.tailer.path_of(index)
    {
        let mut fresh = input.unwrapper.clone();
        fresh.reset();
        let parked = std::mem::replace(&mut input.unwrapper, fresh);
        input.parked.insert(path.to_path_buf(), parked);
    } else {
        input.unwrapper.reset();
    }
}

/// Reads up to [`LINES_PER_TURN`] lines of standard input, the blocks its thread has ready;
/// returns how many.
fn read_piped(
    input: &mut Followed,
    pipeline: &mut Pipeline,
    output: &mut impl Observer,
    shutdown: &AtomicBool,
) -> usize {
    let Some(piped) = input.piped.as_mut() else { return 0 };
    let dropped = piped.dropped();
    if dropped > input.dropped_logged {
        tracing::warn!(message = "Syslog lines dropped: they came faster than the sidecar read them (the socket cannot wait).", input = %input.name, dropped = dropped - input.dropped_logged, total = dropped, fix = "give the sidecar more CPU, or send over TCP, which waits instead");
        input.dropped_logged = dropped;
    }
    let mut n_read = 0;
    while n_read < LINES_PER_TURN && !shutdown.load(Ordering::Relaxed) {
        match piped.next_block() {
            Piped::Block(mut block) => {
                n_read += usize::try_from(block.lines()).unwrap_or(usize::MAX);
                if let Some(error) = block.error.take() {
                    tracing::error!(message = "Reading standard input failed; it is read no further.", input = %input.name, %error);
                }
                // The block becomes the batch's; the batch's empty one goes back for reuse.
                std::mem::swap(input.batch.block(), &mut block);
                pipeline.push_batch(input.index, &mut input.batch, output);
                piped.recycle(block);
            }
            Piped::Empty => break,
            Piped::Ended => {
                if !input.ended {
                    input.ended = true;
                    tracing::info!(message = "Standard input ended.", input = %input.name);
                }
                break;
            }
        }
    }
    n_read
}
