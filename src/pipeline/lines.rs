//! From lines to requests, the one way: a [`Batch`] of whole lines is parsed (the parser's
//! record classified: a request, not a request, unparsed, a name that cannot be one), its
//! outcome counted and sampled for the log, and its requests windowed with their names
//! resolved once per batch. A replay parses batches on worker threads and windows them on
//! its own ([`super::ahead`]); the sidecar fills a batch per turn and does both on its one
//! thread ([`Pipeline::push_batch`]). Names are numbers into the batch's own table, so a
//! parsed batch owns everything and parsing allocates nothing per line once the buffers have
//! grown.

use super::{Observer, Pipeline, Request, UNPARSED_LOG_EVERY, UNPARSED_SAMPLES};
use crate::parse::{ParseErrorKind, Parser};
use crate::source::block::LineBlock;
use crate::window::Slot;

/// A name not given (`-` backend, no pool field).
const NONE: u32 = u32::MAX;

/// A parsed request with its names as numbers of its batch's name table.
#[derive(Debug, Clone, Copy)]
pub(super) struct Compact {
    pub(super) timestamp_ms: i64,
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
pub(super) struct Sample {
    number: u64,
    text: String,
    reason: String,
}

/// A block of lines and what parsing made of it: on its way from the reader through a worker
/// to the windowing thread, and back to the reader to be filled again (replay), or filled and
/// parsed on the sidecar's one thread. The one step from lines to requests, whoever runs it.
#[derive(Debug, Default)]
pub struct Batch {
    /// The lines, as read.
    pub(super) block: LineBlock,
    // Filled by parsing.
    pub(super) requests: Vec<Compact>,
    /// The batch's distinct names, back to back, and where each ends.
    pub(super) name_bytes: Vec<u8>,
    pub(super) name_ends: Vec<usize>,
    /// Name → its number in the table, by hash: the keys are the table's own bytes, so the
    /// index outlives the lines and is reused batch after batch.
    pub(super) name_index: hashbrown::HashTable<u32>,
    /// The windower slots of the names, when this thread windows the batch itself.
    pub(super) slots: SlotCache,
    pub(super) other: u64,
    pub(super) unparsed: u64,
    pub(super) invalid_names: u64,
    pub(super) unparsed_samples: Vec<Sample>,
    pub(super) invalid_samples: Vec<(u64, String)>,
}

impl AsMut<LineBlock> for Batch {
    fn as_mut(&mut self) -> &mut LineBlock {
        &mut self.block
    }
}

impl Batch {
    /// An empty batch for the lines of input `name` (named so in the log).
    pub fn for_input(name: &str) -> Self {
        let mut batch = Batch::default();
        batch.block.file = name.into();
        batch
    }

    /// Empties it for the next lines, keeping its buffers.
    pub fn clear(&mut self) {
        let (stream, seq) = (self.block.stream, self.block.seq);
        self.block.clear(stream, seq);
        self.clear_parsed();
    }

    /// The lines it holds, to fill.
    pub fn block(&mut self) -> &mut LineBlock {
        &mut self.block
    }

    /// Forgets what parsing made of its lines.
    fn clear_parsed(&mut self) {
        self.requests.clear();
        self.name_bytes.clear();
        self.name_ends.clear();
        self.name_index.clear();
        self.other = 0;
        self.unparsed = 0;
        self.invalid_names = 0;
        self.unparsed_samples.clear();
        self.invalid_samples.clear();
    }

    /// Lines read into it, too long ones included.
    pub(super) fn lines(&self) -> u64 {
        self.block.lines()
    }

    /// Name number `id` of its table.
    fn name(&self, id: u32) -> &[u8] {
        name_at(&self.name_bytes, &self.name_ends, id)
    }

    /// Parses its lines into requests (a worker's job in a replay).
    pub(super) fn parse(&mut self, parser: &mut Parser) {
        self.clear_parsed();
        self.other = self.block.stderr;
        let Batch {
            block,
            requests,
            name_bytes,
            name_ends,
            name_index,
            other,
            unparsed,
            invalid_names,
            unparsed_samples,
            invalid_samples,
            ..
        } = self;
        for (line, number) in block.iter() {
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
            let mut id_of = |name| intern(name_index, name, name_bytes, name_ends);
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

/// Name number `id` of a table of names back to back.
fn name_at<'a>(name_bytes: &'a [u8], name_ends: &[usize], id: u32) -> &'a [u8] {
    let id = id as usize;
    let start = if id == 0 { 0 } else { name_ends[id - 1] };
    &name_bytes[start..name_ends[id]]
}

fn hash_of(name: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(name)
}

/// The number of `name` in a batch's table, adding it when new; the table keeps a copy,
/// which travels with the batch.
fn intern(
    index: &mut hashbrown::HashTable<u32>,
    name: &[u8],
    name_bytes: &mut Vec<u8>,
    name_ends: &mut Vec<usize>,
) -> u32 {
    let hash = hash_of(name);
    if let Some(&id) = index.find(hash, |&id| name_at(name_bytes, name_ends, id) == name) {
        return id;
    }
    let id = u32::try_from(name_ends.len()).unwrap_or(NONE - 1);
    name_bytes.extend_from_slice(name);
    name_ends.push(name_bytes.len());
    index.insert_unique(hash, id, |&id| hash_of(name_at(name_bytes, name_ends, id)));
    id
}

/// Logs a batch's unparsed, invalid and over-long lines as parsing in line would: the first
/// few in full, then one in [`UNPARSED_LOG_EVERY`] unparsed lines.
fn log_samples(pipeline: &Pipeline, batch: &Batch) {
    let name = &batch.block.file;
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
    for &(number, length) in &batch.block.too_long {
        log_too_long(name, number, length);
    }
}

/// Logs unparsed line number `line` (its `text` escaped), the `n_unparsed`th.
fn log_unparsed(input: &str, line: u64, text: &str, reason: &str, n_unparsed: u64) {
    tracing::warn!(message = "Unparsed line.", %input, line, %reason, %text, total_unparsed = n_unparsed);
    if n_unparsed == UNPARSED_SAMPLES {
        tracing::warn!(message = "Further unparsed lines are counted; one in 10000 is logged.", %input);
    }
}

/// Escapes the start of an unparsed line, for the log.
fn escape_unparsed_line(line: &[u8]) -> String {
    line[..line.len().min(160)].escape_ascii().to_string()
}

/// Logs a line skipped for being longer than `max_line_bytes`.
fn log_too_long(input: &str, line_number: u64, length: u64) {
    tracing::warn!(message = "Line longer than max_line_bytes skipped.", %input, line = line_number, length);
}

/// Escapes a backend or pool name that cannot be one, for the log.
fn escape_invalid_name(name: &[u8]) -> String {
    name[..name.len().min(80)].escape_ascii().to_string()
}

/// Logs a line whose backend or pool name (`text`, escaped) cannot be one; callers log only
/// the first [`UNPARSED_SAMPLES`].
fn log_invalid_name(input: &str, line_number: u64, text: &str) {
    tracing::warn!(message = "Line with an invalid backend or pool name.", %input, line = line_number, name = %text, reason = "control bytes, NUL or invalid UTF-8 in the name");
}

/// Whether a backend or pool name can be one: no control bytes (NUL included) and valid
/// UTF-8. Addresses are ASCII, so the common case is one pass over a few bytes.
fn valid_name(name: &[u8]) -> bool {
    if name.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return true;
    }
    std::str::from_utf8(name).is_ok_and(|text| !text.chars().any(char::is_control))
}

/// The windower slots of one batch's names, resolved once per batch instead of once per
/// request.
#[derive(Debug, Default)]
pub(super) struct SlotCache {
    /// Per name number: the pool index it resolved to, once used as a pool.
    pools: Vec<Option<u32>>,
    /// Per name number: (pool index, slot), once used as a backend of that pool.
    backends: Vec<Option<(u32, Slot)>>,
    /// The windower's forgotten count when filled: forgetting frees slots for reuse.
    forgotten: u64,
    /// The pool index of the batch's file, when its pool is filled from its path.
    file_pool: Option<u32>,
}

impl SlotCache {
    pub(super) fn clear(&mut self) {
        self.pools.clear();
        self.backends.clear();
        self.file_pool = None;
    }
}

impl Pipeline {
    /// Counts what became of a batch's lines (the totals, and the input's) and logs its
    /// samples: every batch goes through here once, in input order.
    pub(super) fn count_batch(&mut self, input: usize, batch: &Batch) {
        log_samples(self, batch);
        let (too_long, parsed) = (batch.block.too_long.len() as u64, batch.requests.len() as u64);
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

    /// Feeds one parsed request, its names resolved through `slots` (resolved once per batch
    /// rather than once per request).
    pub(super) fn push_compact(
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
        let pool = match (request.pool, &batch.block.pool) {
            (None, None) => self.inputs[input].default_pool,
            (None, Some(file_pool)) => {
                *slots.file_pool.get_or_insert_with(|| windower.pool(file_pool.as_bytes()))
            }
            (Some(name), _) => {
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

    /// The sidecar's way in: parses `batch`'s lines on this thread, counts and logs them, and
    /// windows their requests in order, as a replay's batches are; then empties it.
    pub fn push_batch(&mut self, input: usize, batch: &mut Batch, observer: &mut impl Observer) {
        batch.parse(&mut self.inputs[input].parser);
        self.count_batch(input, batch);
        let mut slots = std::mem::take(&mut batch.slots);
        slots.clear();
        for compact in &batch.requests {
            self.push_compact(input, compact, batch, &mut slots, observer);
        }
        batch.slots = slots;
        batch.clear();
    }
}
