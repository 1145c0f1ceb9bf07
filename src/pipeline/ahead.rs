//! Replay on every core: per [`Stream`] (a rotated set of files) a reader thread cuts the
//! files into batches of whole lines, worker threads parse the batches into compact requests,
//! and the caller's thread takes each stream's batches in order, merges the streams by
//! timestamp and windows and judges the requests. Windows, names and alerts only ever change
//! on the caller's thread, in an order that depends on the logs alone, so the results are
//! the same byte for byte whatever the number of workers.
//!
//! Batches are recycled (reader → worker → caller → reader), so memory is bounded by the
//! number of batches in flight, and the hot path allocates nothing per line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use super::lines::{Batch, SlotCache};
use super::{Observer, Pipeline};
use crate::parse::Parser;
use crate::source::error::SourceError;
use crate::source::once::{Stream, read_blocks};

/// Parsing workers, at most: more cannot help the one windowing thread keep up, and the
/// batches in flight grow with them.
pub const MAX_WORKERS: usize = 16;

/// Streams open at once, at most: each has a reader thread and two batches (about 2 MiB) in
/// flight. Streams are opened only when the merge reaches their first time and closed at
/// their end, so this bounds the streams that overlap in time, never how many there are.
pub const MAX_OPEN_STREAMS: usize = 256;

/// Replays `streams`, merged by timestamp into one event-time stream, with the parsing on
/// `workers` threads; returns the lines read. A stream is opened when the merge reaches its
/// [`Stream::starts_ms`], so only streams that overlap in time are open together. Stops early
/// when `stop` is set; stops reading an input once it is past `--until`. `progress` gets the
/// bytes and lines read per batch.
#[allow(clippy::too_many_arguments)]
pub fn feed_streams(
    pipeline: &mut Pipeline,
    streams: Vec<Stream>,
    max_line: usize,
    workers: usize,
    observer: &mut impl Observer,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, SourceError> {
    let workers = workers.clamp(1, MAX_WORKERS);
    // Per stream: one batch being read and, with a single stream, one per worker and as many
    // waiting their turn or being windowed. Streams open together share a total about that
    // size, but each needs two: the one being windowed and the next.
    let open_at_once = streams.iter().filter(|s| s.starts_ms.is_none()).count().max(1);
    let in_flight = ((2 * workers + 2) / open_at_once).max(2);
    let parsers: Vec<Parser> =
        streams.iter().map(|s| pipeline.inputs[s.input].parser.clone()).collect();
    let (to_parse, work) = mpsc::channel::<Batch>();
    let work = Mutex::new(work);
    std::thread::scope(|scope| {
        let (parsed, done) = mpsc::channel::<Batch>();
        let mut heads = Vec::with_capacity(streams.len());
        let mut unopened = Vec::with_capacity(streams.len());
        for stream in streams {
            let (recycle, free) = mpsc::channel::<Batch>();
            heads.push(Head::new(stream.input, stream.starts_ms, recycle));
            unopened.push(Some((stream, free)));
        }
        // Opens stream `index`: its reader thread starts filling batches.
        let mut open = move |index: usize| {
            let Some((stream, free)) = unopened[index].take() else { return };
            let to_parse = to_parse.clone();
            scope.spawn(move || {
                read_blocks(
                    index,
                    stream.files,
                    stream.wrapping,
                    max_line,
                    in_flight,
                    &to_parse,
                    &free,
                );
            });
        };
        for (index, head) in heads.iter().enumerate() {
            if head.opens_at_ms.is_none() {
                open(index);
            }
        }
        for _ in 0..workers {
            let (work, parsed, mut parsers) = (&work, parsed.clone(), parsers.clone());
            scope.spawn(move || {
                loop {
                    // Idle workers queue on the lock; the one holding it takes the next batch.
                    let next = match work.lock() {
                        Ok(work) => work.recv(),
                        Err(_) => return,
                    };
                    let Ok(mut batch) = next else { return };
                    if batch.block.error.is_none() {
                        batch.parse(&mut parsers[batch.block.stream]);
                    }
                    if parsed.send(batch).is_err() {
                        return;
                    }
                }
            });
        }
        drop(parsed);
        let result = merge(pipeline, &mut heads, &mut open, &done, observer, stop, progress);
        // Closing every end stops the readers (and so the workers), also when stopping early;
        // the workers wait on `to_parse`, which `open` holds.
        drop((done, heads, open));
        result
    })
}

/// Where the windowing thread is in one stream: its batch under way and those parsed ahead.
#[derive(Debug)]
struct Head {
    input: usize,
    /// When it is to be opened (the earliest time of its lines), while it is not open yet.
    opens_at_ms: Option<i64>,
    current: Option<Batch>,
    /// The next request of `current`.
    at: usize,
    /// Parsed batches that came before their turn.
    waiting: BTreeMap<u64, Batch>,
    next_seq: u64,
    /// Whether the stream's last batch was taken (or it was given up).
    ended: bool,
    slots: SlotCache,
    recycle: mpsc::Sender<Batch>,
}

impl Head {
    fn new(input: usize, opens_at_ms: Option<i64>, recycle: mpsc::Sender<Batch>) -> Self {
        Head {
            input,
            opens_at_ms,
            current: None,
            at: 0,
            waiting: BTreeMap::new(),
            next_seq: 0,
            ended: false,
            slots: SlotCache::default(),
            recycle,
        }
    }

    /// The event time of its next request, if it has one at hand; for a stream not open yet,
    /// the time it opens at.
    fn next_ms(&self) -> Option<i64> {
        self.opens_at_ms.or_else(|| {
            self.current.as_ref().and_then(|b| b.requests.get(self.at)).map(|r| r.timestamp_ms)
        })
    }

    /// Whether it needs its next batch: it is open, its current batch is used up and more
    /// will come.
    fn needs_batch(&self) -> bool {
        !self.ended && self.opens_at_ms.is_none() && self.next_ms().is_none()
    }

    /// Whether it holds memory: opened, and its reader at work or its lines not all merged.
    fn is_open(&self) -> bool {
        self.opens_at_ms.is_none() && (!self.ended || self.next_ms().is_some())
    }
}

/// The windowing thread: takes each stream's parsed batches in order and windows their
/// requests merged by timestamp (ties to the earlier stream), so that the order depends on
/// the logs alone, never on which thread finished first.
fn merge(
    pipeline: &mut Pipeline,
    heads: &mut [Head],
    open: &mut dyn FnMut(usize),
    done: &mpsc::Receiver<Batch>,
    observer: &mut impl Observer,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, SourceError> {
    let mut n_lines = 0;
    loop {
        for index in 0..heads.len() {
            while heads[index].needs_batch() {
                let batch = match heads[index].waiting.remove(&heads[index].next_seq) {
                    Some(batch) => batch,
                    None => {
                        // About to wait for lines (a slow pipe's, perhaps): what is decided
                        // goes out first, and a reader that is gone stops the run.
                        if pipeline.poll(observer) {
                            return Ok(n_lines);
                        }
                        let Ok(batch) = done.recv() else { return Ok(n_lines) };
                        heads[batch.block.stream].waiting.insert(batch.block.seq, batch);
                        continue;
                    }
                };
                let head = &mut heads[index];
                head.next_seq += 1;
                if let Some(old) = head.current.take() {
                    let _ = head.recycle.send(old);
                }
                head.at = 0;
                head.slots.clear();
                head.ended = batch.block.last;
                pipeline.count_batch(head.input, &batch);
                n_lines += batch.lines();
                progress(batch.block.bytes_read, pipeline.counters.lines);
                let mut batch = batch;
                if let Some(error) = batch.block.error.take() {
                    return Err(error);
                }
                head.current = Some(batch);
                // Ctrl-C, or an output whose reader is gone: stop reading.
                if stop.load(Ordering::Relaxed) || pipeline.poll(observer) {
                    return Ok(n_lines);
                }
            }
        }
        // The stream whose next request is oldest goes on until another's is older. Ties go to
        // the earlier stream, by comparing (time, stream) pairs.
        let mut nexts = heads.iter().enumerate().filter_map(|(i, h)| Some((h.next_ms()?, i)));
        let Some(mut best) = nexts.next() else { return Ok(n_lines) };
        let mut bound = (i64::MAX, usize::MAX);
        for next in nexts {
            if next < best {
                bound = best;
                best = next;
            } else {
                bound = bound.min(next);
            }
        }
        let index = best.1;
        if heads[index].opens_at_ms.is_some() {
            // The merge has reached a stream's first time: it opens, and the others wait
            // for its first lines.
            let open_now = heads.iter().filter(|h| h.is_open()).count();
            if open_now >= MAX_OPEN_STREAMS {
                return Err(SourceError::TooManyOverlapping {
                    streams: open_now + 1,
                    limit: MAX_OPEN_STREAMS,
                    at_ms: best.0,
                });
            }
            heads[index].opens_at_ms = None;
            open(index);
            continue;
        }
        let Head { input, current, at, slots, .. } = &mut heads[index];
        let (input, Some(batch)) = (*input, current.as_ref()) else { continue };
        while let Some(request) = batch.requests.get(*at) {
            if (request.timestamp_ms, index) > bound {
                break;
            }
            pipeline.push_compact(input, request, batch, slots, observer);
            *at += 1;
        }
        if pipeline.stopped() {
            return Ok(n_lines);
        }
        if pipeline.past_range(input) {
            // The rest of this input is after --until: give its streams up, those not open
            // yet too (they are never opened).
            for head in heads.iter_mut().filter(|h| h.input == input) {
                head.ended = true;
                head.at = usize::MAX;
                head.opens_at_ms = None;
            }
        }
    }
}
