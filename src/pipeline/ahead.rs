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
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use rustc_hash::FxHashMap;

use super::{
    Observer, Pipeline, Request, UNPARSED_LOG_EVERY, UNPARSED_SAMPLES, escape_invalid_name,
    escape_unparsed_line, log_invalid_name, log_too_long, log_unparsed, valid_name,
};
use crate::parse::{ParseErrorKind, Parser};
use crate::source::{LineReader, Next};
use crate::window::Slot;

/// Lines per batch, at most.
const BATCH_LINES: usize = 8192;

/// Bytes per batch, about (a batch ends after the line that reaches this): with the batches
/// in flight, this bounds memory whatever the input size.
const BATCH_BYTES: usize = 1 << 20;

/// Parsing workers, at most: more cannot help the one windowing thread keep up, and the
/// batches in flight grow with them.
pub const MAX_WORKERS: usize = 16;

/// A name not given (`-` backend, no pool field).
const NONE: u32 = u32::MAX;

/// A parsed request with its names as numbers of its batch's name table.
#[derive(Debug, Clone, Copy)]
struct Compact {
    timestamp_ms: i64,
    pool: u32,
    backend: u32,
    /// The backend tried first, whose attempt failed ([`NONE`] for most requests).
    first_attempt: u32,
    server_error: bool,
    retried: bool,
    latency_s: Option<f64>,
}

/// A line that did not parse, kept to be logged by the windowing thread (which alone knows
/// how many came before it).
#[derive(Debug)]
struct Sample {
    number: u64,
    text: String,
    reason: String,
}

/// A batch of lines on its way from the reader through a worker to the windowing thread, and
/// back to the reader to be filled again.
#[derive(Debug, Default)]
struct Batch {
    /// The stream it belongs to, and its place in it.
    stream: usize,
    seq: u64,
    // Filled by the reader.
    /// The file its lines come from.
    file: Arc<str>,
    /// Bytes of the file read into it.
    bytes_read: u64,
    /// Whether it is the stream's last.
    last: bool,
    /// The lines, back to back.
    bytes: Vec<u8>,
    /// Where each line ends in `bytes`, and its number in the input.
    lines_at: Vec<(usize, u64)>,
    /// Lines over the length limit: (number, length).
    too_long: Vec<(u64, u64)>,
    /// An error after the batch's lines: the replay ends here.
    error: Option<anyhow::Error>,
    // Filled by a worker.
    requests: Vec<Compact>,
    /// The batch's distinct names, back to back, and where each ends.
    name_bytes: Vec<u8>,
    name_ends: Vec<usize>,
    other: u64,
    unparsed: u64,
    invalid_names: u64,
    unparsed_samples: Vec<Sample>,
    invalid_samples: Vec<(u64, String)>,
}

impl Batch {
    /// Empties it for the reader, keeping its buffers.
    fn clear(&mut self, stream: usize, seq: u64) {
        self.stream = stream;
        self.seq = seq;
        self.bytes_read = 0;
        self.last = false;
        self.bytes.clear();
        self.lines_at.clear();
        self.too_long.clear();
        self.error = None;
        self.requests.clear();
        self.name_bytes.clear();
        self.name_ends.clear();
        self.other = 0;
        self.unparsed = 0;
        self.invalid_names = 0;
        self.unparsed_samples.clear();
        self.invalid_samples.clear();
    }

    /// Lines read into it, too long ones included.
    fn lines(&self) -> u64 {
        (self.lines_at.len() + self.too_long.len()) as u64
    }

    /// Name number `id` of its table.
    fn name(&self, id: u32) -> &[u8] {
        let id = id as usize;
        let start = if id == 0 { 0 } else { self.name_ends[id - 1] };
        &self.name_bytes[start..self.name_ends[id]]
    }

    /// Reads lines until the batch is full or the input ends; returns whether it ended.
    fn fill<R: Read>(&mut self, lines: &mut LineReader<R>) -> bool {
        while self.lines_at.len() < BATCH_LINES && self.bytes.len() < BATCH_BYTES {
            match lines.next_line(true) {
                Ok(Next::Line(line)) => {
                    self.bytes.extend_from_slice(line.bytes);
                    self.lines_at.push((self.bytes.len(), line.number));
                }
                Ok(Next::TooLong { number, length }) => self.too_long.push((number, length)),
                Ok(Next::End) => return true,
                Err(error) => {
                    let context = format!("{}: read failed", self.file);
                    self.error = Some(anyhow::Error::from(error).context(context));
                    return true;
                }
            }
        }
        false
    }

    /// Parses its lines into requests (a worker's job).
    fn parse(&mut self, parser: &mut Parser) {
        let Batch {
            bytes,
            lines_at,
            requests,
            name_bytes,
            name_ends,
            other,
            unparsed,
            invalid_names,
            unparsed_samples,
            invalid_samples,
            ..
        } = self;
        let mut ids: FxHashMap<&[u8], u32> = FxHashMap::default();
        let mut start = 0;
        for &(end, number) in lines_at.iter() {
            let line = &bytes[start..end];
            start = end;
            let record = match parser.parse(line) {
                Ok(record) => record,
                Err(error) if error.kind == ParseErrorKind::NotARequest => {
                    *other += 1;
                    continue;
                }
                Err(error) => {
                    *unparsed += 1;
                    if unparsed_samples.len() < UNPARSED_SAMPLES as usize {
                        unparsed_samples.push(Sample {
                            number,
                            text: escape_unparsed_line(line),
                            reason: parser.explain(&error),
                        });
                    }
                    continue;
                }
            };
            if let Some(bad) =
                [record.backend, record.pool].into_iter().flatten().find(|n| !valid_name(n))
            {
                *unparsed += 1;
                *invalid_names += 1;
                if invalid_samples.len() < UNPARSED_SAMPLES as usize {
                    invalid_samples.push((number, escape_invalid_name(bad)));
                }
                continue;
            }
            let mut id_of = |name| intern(&mut ids, name, name_bytes, name_ends);
            let pool = record.pool.map_or(NONE, &mut id_of);
            let backend = record.backend.map_or(NONE, &mut id_of);
            let first_attempt = record.first_attempt.map_or(NONE, &mut id_of);
            requests.push(Compact {
                timestamp_ms: record.timestamp_ms,
                pool,
                backend,
                first_attempt,
                server_error: record.is_server_error(),
                retried: record.attempts > 1,
                latency_s: record.backend_latency_s(),
            });
        }
    }
}

/// The number of `name` in a batch's table, adding it when new. The map's keys borrow the
/// batch's lines; the table keeps a copy, which travels with the batch.
fn intern<'b>(
    ids: &mut FxHashMap<&'b [u8], u32>,
    name: &'b [u8],
    name_bytes: &mut Vec<u8>,
    name_ends: &mut Vec<usize>,
) -> u32 {
    if let Some(&id) = ids.get(name) {
        return id;
    }
    let id = u32::try_from(name_ends.len()).unwrap_or(NONE - 1);
    name_bytes.extend_from_slice(name);
    name_ends.push(name_bytes.len());
    ids.insert(name, id);
    id
}

/// A file of a [`Stream`], opened.
pub struct Opened {
    /// Its name, for messages.
    pub name: Arc<str>,
    /// Its lines' bytes, decompressed, from where reading starts.
    pub reader: Box<dyn Read + Send>,
    /// Called on the reader thread once it was read to its end, with the lines and bytes read.
    pub finished: Box<dyn FnOnce(u64, u64) + Send>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Files read one after another into pipeline input `input`: a rotated set, in time order.
/// Streams are merged by timestamp; each is opened and read on a reader thread of its own.
pub struct Stream {
    /// The pipeline input its requests go to.
    pub input: usize,
    /// Its files, opened in turn on the reader thread; an error ends the replay.
    pub files: Box<dyn Iterator<Item = anyhow::Result<Opened>> + Send>,
}

impl Stream {
    /// A stream of one reader already open (the demo, tests).
    pub fn of_reader(input: usize, name: &str, reader: Box<dyn Read + Send>) -> Self {
        let opened = Opened { name: name.into(), reader, finished: Box::new(|_, _| {}) };
        Stream { input, files: Box::new(std::iter::once(Ok(opened))) }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("input", &self.input).finish_non_exhaustive()
    }
}

/// Streams merged at most: each has a reader thread and batches in flight.
pub const MAX_STREAMS: usize = 32;

/// Replays `streams`, merged by timestamp into one event-time stream, with the parsing on
/// `workers` threads; returns the lines read. Stops early when `stop` is set; stops reading
/// an input once it is past `--until`. `progress` gets the bytes and lines read per batch.
#[allow(clippy::too_many_arguments)]
pub fn feed_streams(
    pipeline: &mut Pipeline,
    streams: Vec<Stream>,
    max_line: usize,
    workers: usize,
    observer: &mut impl Observer,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<u64> {
    let workers = workers.clamp(1, MAX_WORKERS);
    // Per stream: one batch being read and, with a single stream, one per worker and as many
    // waiting their turn or being windowed. Many streams share a total about that size, but
    // each needs two: the one being windowed and the next.
    let in_flight = ((2 * workers + 2) / streams.len().max(1)).max(2);
    let parsers: Vec<Parser> =
        streams.iter().map(|s| pipeline.inputs[s.input].parser.clone()).collect();
    let (to_parse, work) = mpsc::channel::<Batch>();
    let work = Mutex::new(work);
    std::thread::scope(|scope| {
        let (parsed, done) = mpsc::channel::<Batch>();
        let mut heads = Vec::with_capacity(streams.len());
        for (index, stream) in streams.into_iter().enumerate() {
            let (recycle, free) = mpsc::channel::<Batch>();
            let to_parse = to_parse.clone();
            scope.spawn(move || {
                read_batches(index, stream.files, max_line, in_flight, &to_parse, &free);
            });
            heads.push(Head::new(stream.input, recycle));
        }
        drop(to_parse);
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
                    if batch.error.is_none() {
                        batch.parse(&mut parsers[batch.stream]);
                    }
                    if parsed.send(batch).is_err() {
                        return;
                    }
                }
            });
        }
        drop(parsed);
        let result = merge(pipeline, &mut heads, &done, observer, stop, progress);
        // Closing every end stops the readers (and so the workers), also when stopping early.
        drop((done, heads));
        result
    })
}

/// A reader thread: fills batches from the stream's files, recycled through `free` once
/// `in_flight` exist. A batch holds lines of one file.
fn read_batches(
    stream: usize,
    files: Box<dyn Iterator<Item = anyhow::Result<Opened>> + Send>,
    max_line: usize,
    in_flight: usize,
    to_parse: &mpsc::Sender<Batch>,
    free: &mpsc::Receiver<Batch>,
) {
    let mut files = files.peekable();
    let mut made = 0;
    let mut seq = 0;
    let mut sent = false;
    let mut next_batch = || -> Option<Batch> {
        let mut batch = match free.try_recv() {
            Ok(batch) => batch,
            Err(_) if made < in_flight => {
                made += 1;
                Batch::default()
            }
            Err(_) => free.recv().ok()?,
        };
        batch.clear(stream, seq);
        seq += 1;
        Some(batch)
    };
    while let Some(opened) = files.next() {
        let opened = match opened {
            Ok(opened) => opened,
            Err(error) => {
                let Some(mut batch) = next_batch() else { return };
                batch.error = Some(error);
                batch.last = true;
                let _ = to_parse.send(batch);
                return;
            }
        };
        let mut lines = LineReader::new(opened.reader, max_line);
        let (mut n_lines, mut offset) = (0, 0);
        loop {
            let Some(mut batch) = next_batch() else { return };
            batch.file = opened.name.clone();
            let ended = batch.fill(&mut lines);
            n_lines += batch.lines();
            batch.bytes_read = lines.offset() - offset;
            offset = lines.offset();
            let failed = batch.error.is_some();
            batch.last = failed || (ended && files.peek().is_none());
            sent = true;
            if to_parse.send(batch).is_err() || failed {
                return;
            }
            if ended {
                break;
            }
        }
        if lines.cr_only() {
            tracing::warn!(message = "Lines end in CR only (old Mac style); read as such.", file = %opened.name, lines = n_lines);
        }
        (opened.finished)(n_lines, offset);
    }
    // No file at all (or every one skipped): an empty last batch ends the stream.
    if !sent && let Some(mut batch) = next_batch() {
        batch.last = true;
        let _ = to_parse.send(batch);
    }
}

/// Where the windowing thread is in one stream: its batch under way and those parsed ahead.
#[derive(Debug)]
struct Head {
    input: usize,
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
    fn new(input: usize, recycle: mpsc::Sender<Batch>) -> Self {
        Head {
            input,
            current: None,
            at: 0,
            waiting: BTreeMap::new(),
            next_seq: 0,
            ended: false,
            slots: SlotCache::default(),
            recycle,
        }
    }

    /// The event time of its next request, if it has one at hand.
    fn next_ms(&self) -> Option<i64> {
        self.current.as_ref().and_then(|b| b.requests.get(self.at)).map(|r| r.timestamp_ms)
    }

    /// Whether it needs its next batch: the current one is used up and more will come.
    fn needs_batch(&self) -> bool {
        !self.ended && self.next_ms().is_none()
    }
}

/// The windowing thread: takes each stream's parsed batches in order and windows their
/// requests merged by timestamp (ties to the earlier stream), so that the order depends on
/// the logs alone, never on which thread finished first.
fn merge(
    pipeline: &mut Pipeline,
    heads: &mut [Head],
    done: &mpsc::Receiver<Batch>,
    observer: &mut impl Observer,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<u64> {
    let mut n_lines = 0;
    loop {
        for index in 0..heads.len() {
            while heads[index].needs_batch() {
                let batch = match heads[index].waiting.remove(&heads[index].next_seq) {
                    Some(batch) => batch,
                    None => {
                        let Ok(batch) = done.recv() else { return Ok(n_lines) };
                        heads[batch.stream].waiting.insert(batch.seq, batch);
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
                head.ended = batch.last;
                log_samples(pipeline, &batch);
                pipeline.count_batch(head.input, &batch);
                n_lines += batch.lines();
                progress(batch.bytes_read, pipeline.counters.lines);
                let mut batch = batch;
                if let Some(error) = batch.error.take() {
                    return Err(error);
                }
                head.current = Some(batch);
                if stop.load(Ordering::Relaxed) {
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
        let Head { input, current, at, slots, .. } = &mut heads[index];
        let (input, Some(batch)) = (*input, current.as_ref()) else { continue };
        while let Some(request) = batch.requests.get(*at) {
            if (request.timestamp_ms, index) > bound {
                break;
            }
            pipeline.push_compact(input, request, batch, slots, observer);
            *at += 1;
        }
        if pipeline.past_range(input) {
            // The rest of this input is after --until: give its streams up.
            for head in heads.iter_mut().filter(|h| h.input == input) {
                head.ended = true;
                head.at = usize::MAX;
            }
        }
    }
}
/// Logs a batch's unparsed, invalid and over-long lines as parsing in line would: the first
/// few in full, then one in [`UNPARSED_LOG_EVERY`] unparsed lines.
fn log_samples(pipeline: &Pipeline, batch: &Batch) {
    let name = &batch.file;
    let before = pipeline.counters.unparsed;
    let crosses_every =
        (before + batch.unparsed) / UNPARSED_LOG_EVERY > before / UNPARSED_LOG_EVERY;
    for (index, sample) in batch.unparsed_samples.iter().enumerate() {
        let ordinal = before + index as u64 + 1;
        if ordinal <= UNPARSED_SAMPLES || (index == 0 && crosses_every) {
            log_unparsed(name, sample.number, &sample.text, &sample.reason, ordinal);
        }
    }
    let before = pipeline.counters.invalid_names;
    for (index, (number, text)) in batch.invalid_samples.iter().enumerate() {
        let ordinal = before + index as u64 + 1;
        if ordinal <= UNPARSED_SAMPLES {
            log_invalid_name(name, *number, text);
        }
    }
    for &(number, length) in &batch.too_long {
        log_too_long(name, number, length);
    }
}

/// The windower slots of one batch's names, resolved once per batch instead of once per
/// request.
#[derive(Debug, Default)]
struct SlotCache {
    /// Per name number: the pool index it resolved to, once used as a pool.
    pools: Vec<Option<u32>>,
    /// Per name number: (pool index, slot), once used as a backend of that pool.
    backends: Vec<Option<(u32, Slot)>>,
    /// The windower's forgotten count when filled: forgetting frees slots for reuse.
    forgotten: u64,
}

impl SlotCache {
    fn clear(&mut self) {
        self.pools.clear();
        self.backends.clear();
    }
}

impl Pipeline {
    /// Counts what became of a batch's lines: the totals, and the input's.
    fn count_batch(&mut self, input: usize, batch: &Batch) {
        let (too_long, parsed) = (batch.too_long.len() as u64, batch.requests.len() as u64);
        let c = &mut self.counters;
        c.lines += batch.lines();
        c.other += batch.other;
        c.unparsed += batch.unparsed;
        c.invalid_names += batch.invalid_names;
        c.too_long += too_long;
        c.parsed += parsed;
        let l = &mut self.inputs[input].lines;
        l.other += batch.other;
        l.unparsed += batch.unparsed;
        l.too_long += too_long;
        l.parsed += parsed;
    }

    /// Feeds one request parsed on a worker, its names resolved through `slots`. Resolving
    /// as [`Pipeline::push_request`] does, in the same order, interns the same names in the
    /// same slots; only the lookups are saved.
    fn push_compact(
        &mut self,
        input: usize,
        compact: &Compact,
        batch: &Batch,
        slots: &mut SlotCache,
        observer: &mut impl Observer,
    ) {
        let name = |id: u32| (id != NONE).then(|| batch.name(id));
        let request = Request {
            timestamp_ms: compact.timestamp_ms,
            pool: name(compact.pool),
            backend: name(compact.backend),
            first_attempt: name(compact.first_attempt),
            server_error: compact.server_error,
            retried: compact.retried,
            latency_s: compact.latency_s,
        };
        if !self.in_range(input, request.timestamp_ms) {
            return;
        }
        let windower = &mut self.inputs[input].windower;
        if slots.forgotten != windower.forgotten() {
            slots.clear();
            slots.forgotten = windower.forgotten();
        }
        let n_names = batch.name_ends.len();
        if slots.pools.len() < n_names {
            slots.pools.resize(n_names, None);
            slots.backends.resize(n_names, None);
        }
        let pool = match request.pool {
            None => self.inputs[input].default_pool,
            Some(name) => {
                *slots.pools[compact.pool as usize].get_or_insert_with(|| windower.pool(name))
            }
        };
        let slot = match slots.backends.get(compact.backend as usize) {
            Some(&Some((cached_pool, slot))) if cached_pool == pool => slot,
            _ => {
                let slot = self.resolve_slot(input, pool, request.backend);
                // The overflow slot is not kept: each of its requests must be counted.
                if request.backend.is_some() && !self.inputs[input].windower.is_overflow(slot) {
                    slots.backends[compact.backend as usize] = Some((pool, slot));
                }
                slot
            }
        };
        self.push_slot(input, slot, &request, observer);
    }
}
