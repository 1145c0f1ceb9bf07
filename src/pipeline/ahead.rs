//! Parsing ahead, on every core: a reader thread cuts an input into batches of whole lines,
//! worker threads parse the batches into compact requests, and the caller's thread windows
//! and judges them in batch order. A replay so uses every core and still gives, byte for
//! byte, the results of parsing in line ([`Pipeline::push_line`]), whatever the number of
//! workers: windows, names and alerts only ever change on the caller's thread, in line order.
//!
//! Batches are recycled (reader → worker → caller → reader), so memory is bounded by the
//! number of batches in flight, and the hot path allocates nothing per line.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

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
    /// Its place in the input.
    seq: u64,
    // Filled by the reader.
    /// The lines, back to back.
    bytes: Vec<u8>,
    /// Where each line ends in `bytes`, and its number in the input.
    lines_at: Vec<(usize, u64)>,
    /// Lines over the length limit: (number, length).
    too_long: Vec<(u64, u64)>,
    /// Input offset after the batch's last line.
    offset: u64,
    cr_only: bool,
    /// A read error after the batch's lines: the input ends here.
    error: Option<io::Error>,
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
    fn clear(&mut self, seq: u64) {
        self.seq = seq;
        self.bytes.clear();
        self.lines_at.clear();
        self.too_long.clear();
        self.offset = 0;
        self.cr_only = false;
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
                Ok(Next::End) => {
                    self.offset = lines.offset();
                    self.cr_only = lines.cr_only();
                    return true;
                }
                Err(error) => {
                    self.offset = lines.offset();
                    self.error = Some(error);
                    return true;
                }
            }
        }
        self.offset = lines.offset();
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
            requests.push(Compact {
                timestamp_ms: record.timestamp_ms,
                pool,
                backend,
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

/// Reads every line of `reader` into input `input`, parsed on `workers` threads; returns the
/// lines and bytes read. Stops early when `stop` is set or the input is past `--until`
/// (checked per batch); `progress` gets the offset and lines so far per batch.
#[allow(clippy::too_many_arguments)]
pub fn feed_ahead<R: Read + Send>(
    pipeline: &mut Pipeline,
    input: usize,
    reader: R,
    max_line: usize,
    workers: usize,
    observer: &mut impl Observer,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64),
) -> io::Result<(u64, u64)> {
    let workers = workers.clamp(1, MAX_WORKERS);
    // One batch being read, one per worker, and as many waiting their turn or being windowed.
    let in_flight = 2 * workers + 2;
    let parser = pipeline.inputs[input].parser.clone();
    let (to_parse, work) = mpsc::channel::<Batch>();
    let work = Mutex::new(work);
    std::thread::scope(|scope| {
        let (parsed, done) = mpsc::channel::<Batch>();
        let (recycle, free) = mpsc::channel::<Batch>();
        scope.spawn(move || read_batches(reader, max_line, in_flight, &to_parse, &free));
        for _ in 0..workers {
            let (work, parsed, mut parser) = (&work, parsed.clone(), parser.clone());
            scope.spawn(move || {
                loop {
                    // The lock is held only while taking a batch.
                    let next = match work.lock() {
                        Ok(work) => work.recv(),
                        Err(_) => return,
                    };
                    let Ok(mut batch) = next else { return };
                    if batch.error.is_none() {
                        batch.parse(&mut parser);
                    }
                    if parsed.send(batch).is_err() {
                        return;
                    }
                }
            });
        }
        drop(parsed);
        let result = window_in_order(pipeline, input, &done, &recycle, observer, stop, progress);
        // Closing both ends stops the reader (and so the workers), also when stopping early.
        drop((done, recycle));
        result
    })
}

/// The reader thread: fills batches, recycled through `free` once `in_flight` exist.
fn read_batches<R: Read>(
    reader: R,
    max_line: usize,
    in_flight: usize,
    to_parse: &mpsc::Sender<Batch>,
    free: &mpsc::Receiver<Batch>,
) {
    let mut lines = LineReader::new(reader, max_line);
    let mut made = 0;
    for seq in 0.. {
        let mut batch = match free.try_recv() {
            Ok(batch) => batch,
            Err(_) if made < in_flight => {
                made += 1;
                Batch::default()
            }
            Err(_) => match free.recv() {
                Ok(batch) => batch,
                Err(_) => return,
            },
        };
        batch.clear(seq);
        let ended = batch.fill(&mut lines);
        if to_parse.send(batch).is_err() || ended {
            return;
        }
    }
}

/// The caller's thread: takes parsed batches in input order and windows their requests.
fn window_in_order(
    pipeline: &mut Pipeline,
    input: usize,
    done: &mpsc::Receiver<Batch>,
    recycle: &mpsc::Sender<Batch>,
    observer: &mut impl Observer,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64),
) -> io::Result<(u64, u64)> {
    let mut waiting: BTreeMap<u64, Batch> = BTreeMap::new();
    let mut next_seq = 0;
    let (mut n_lines, mut offset, mut cr_only) = (0, 0, false);
    let mut slots = SlotCache::default();
    'batches: for batch in done {
        waiting.insert(batch.seq, batch);
        while let Some(mut batch) = waiting.remove(&next_seq) {
            next_seq += 1;
            log_samples(pipeline, input, &batch);
            pipeline.count_lines(
                input,
                batch.lines(),
                batch.other,
                batch.unparsed,
                batch.invalid_names,
                batch.too_long.len() as u64,
                batch.requests.len() as u64,
            );
            slots.clear();
            for request in &batch.requests {
                pipeline.push_compact(input, request, &batch, &mut slots, observer);
            }
            n_lines += batch.lines();
            offset = batch.offset;
            cr_only |= batch.cr_only;
            progress(offset, pipeline.counters.lines);
            if let Some(error) = batch.error.take() {
                return Err(error);
            }
            let _ = recycle.send(batch);
            if stop.load(Ordering::Relaxed) || pipeline.past_range(input) {
                break 'batches;
            }
        }
    }
    if cr_only {
        tracing::warn!(
            message = "Lines end in CR only (old Mac style); read as such.",
            lines = n_lines
        );
    }
    Ok((n_lines, offset))
}

/// Logs a batch's unparsed, invalid and over-long lines as parsing in line would: the first
/// few in full, then one in [`UNPARSED_LOG_EVERY`] unparsed lines.
fn log_samples(pipeline: &Pipeline, input: usize, batch: &Batch) {
    let name = &pipeline.inputs[input].name;
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
