//! Parsing ahead: one thread reads and parses an input's lines into compact requests while
//! the caller's thread windows and judges them, in the same order, so a replay uses two cores
//! and gives byte-for-byte the results of parsing in line ([`Pipeline::push_line`]).

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use rustc_hash::FxHashMap;

use super::{
    Observer, Pipeline, Request, log_invalid_name, log_too_long, log_unparsed, valid_name,
};
use crate::parse::ParseErrorKind;
use crate::source::{LineReader, Next};

/// Lines per batch handed over.
const BATCH_LINES: usize = 8192;

/// Batches in flight: bounds memory whatever the input size.
const BATCHES_IN_FLIGHT: usize = 4;

/// A name not given (`-` backend, no pool field).
const NONE: u32 = u32::MAX;

/// A parsed request with its names as numbers of the batch stream's name table.
#[derive(Debug, Clone, Copy)]
struct Compact {
    timestamp_ms: i64,
    pool: u32,
    backend: u32,
    server_error: bool,
    retried: bool,
    latency_s: Option<f64>,
}

/// What the parsing thread hands over: requests in line order, the names first seen in
/// them, and what became of the other lines.
#[derive(Debug, Default)]
struct Batch {
    requests: Vec<Compact>,
    new_names: Vec<Box<[u8]>>,
    lines: u64,
    other: u64,
    unparsed: u64,
    invalid_names: u64,
    too_long: u64,
    /// Input offset after the batch's last line.
    offset: u64,
    cr_only: bool,
}

/// Reads every line of `reader` into input `input` with the parsing on another thread;
/// returns the lines and bytes read. Stops early when `stop` is set or the input is past
/// `--until` (checked per batch); `progress` gets the offset and lines so far per batch.
pub fn feed_ahead<R: Read + Send + 'static>(
    pipeline: &mut Pipeline,
    input: usize,
    reader: R,
    max_line: usize,
    observer: &mut impl Observer,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64),
) -> io::Result<(u64, u64)> {
    let mut parser = pipeline.inputs[input].parser.clone();
    let name = pipeline.inputs[input].name.clone();
    let (sender, batches) = mpsc::sync_channel::<io::Result<Batch>>(BATCHES_IN_FLIGHT);
    let producer = std::thread::spawn(move || {
        let mut lines = LineReader::new(reader, max_line);
        let mut names: FxHashMap<Box<[u8]>, u32> = FxHashMap::default();
        let mut batch = Batch::default();
        let mut unparsed_seen = 0u64;
        let mut invalid_seen = 0u64;
        let mut id_of = |name: &[u8], batch: &mut Batch| -> u32 {
            if let Some(id) = names.get(name) {
                return *id;
            }
            let id = u32::try_from(names.len()).unwrap_or(NONE - 1);
            names.insert(name.into(), id);
            batch.new_names.push(name.into());
            id
        };
        loop {
            let next = match lines.next_line(true) {
                Ok(next) => next,
                Err(error) => {
                    let _ = sender.send(Err(error));
                    return;
                }
            };
            match next {
                Next::Line(line) => {
                    batch.lines += 1;
                    match parser.parse(line.bytes) {
                        Ok(record) => {
                            let bad = [record.backend, record.pool]
                                .into_iter()
                                .flatten()
                                .find(|n| !valid_name(n));
                            if let Some(bad) = bad {
                                batch.unparsed += 1;
                                batch.invalid_names += 1;
                                invalid_seen += 1;
                                log_invalid_name(&name, line.number, bad, invalid_seen);
                                continue;
                            }
                            let pool = record.pool.map_or(NONE, |p| id_of(p, &mut batch));
                            let backend = record.backend.map_or(NONE, |b| id_of(b, &mut batch));
                            batch.requests.push(Compact {
                                timestamp_ms: record.timestamp_ms,
                                pool,
                                backend,
                                server_error: record.is_server_error(),
                                retried: record.attempts > 1,
                                latency_s: record.backend_latency_s(),
                            });
                        }
                        Err(error) if error.kind == ParseErrorKind::NotARequest => batch.other += 1,
                        Err(error) => {
                            batch.unparsed += 1;
                            unparsed_seen += 1;
                            log_unparsed(&name, &parser, &line, &error, unparsed_seen);
                        }
                    }
                }
                Next::TooLong { number, length } => {
                    batch.lines += 1;
                    batch.too_long += 1;
                    log_too_long(&name, number, length);
                }
                Next::End => {
                    batch.offset = lines.offset();
                    batch.cr_only = lines.cr_only();
                    let _ = sender.send(Ok(batch));
                    return;
                }
            }
            if batch.lines as usize >= BATCH_LINES {
                batch.offset = lines.offset();
                if sender.send(Ok(std::mem::take(&mut batch))).is_err() {
                    return;
                }
            }
        }
    });
    let mut names: Vec<Box<[u8]>> = Vec::new();
    let (mut n_lines, mut offset, mut cr_only) = (0, 0, false);
    let mut failed = None;
    for batch in &batches {
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                failed = Some(error);
                break;
            }
        };
        names.extend(batch.new_names);
        pipeline.count_lines(
            input,
            batch.lines,
            batch.other,
            batch.unparsed,
            batch.invalid_names,
            batch.too_long,
            batch.requests.len() as u64,
        );
        for c in &batch.requests {
            let name = |id: u32| (id != NONE).then(|| &*names[id as usize]);
            let request = Request {
                timestamp_ms: c.timestamp_ms,
                pool: name(c.pool),
                backend: name(c.backend),
                server_error: c.server_error,
                retried: c.retried,
                latency_s: c.latency_s,
            };
            pipeline.push_request(input, &request, observer);
        }
        n_lines += batch.lines;
        offset = batch.offset;
        cr_only |= batch.cr_only;
        progress(offset, pipeline.counters.lines);
        if stop.load(Ordering::Relaxed) || pipeline.past_range(input) {
            break;
        }
    }
    drop(batches);
    let _ = producer.join();
    if let Some(error) = failed {
        return Err(error);
    }
    if cr_only {
        tracing::warn!(
            message = "Lines end in CR only (old Mac style); read as such.",
            lines = n_lines
        );
    }
    Ok((n_lines, offset))
}
