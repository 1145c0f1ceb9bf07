//! Reading once: a replay's inputs as [`Stream`]s of files read one after another (a rotated
//! set in time order), each file opened as it comes: skipped whole when outside
//! `--since`/`--until`, decompressed on a thread of its own, a plain one entered at `--since`
//! by binary search, checked for shrinking while it was read; standard input with its first
//! lines put back after recognising its format. A reader thread per stream cuts the files
//! into [`LineBlock`]s ([`read_blocks`]).

use std::io::{self, Read, Seek};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use super::block::LineBlock;
use super::container::{Unwrapped, Unwrapper, Wrapping, pool_of_file};
use super::decompress::{Compression, ThreadedReader, decompressed};
use super::error::{Result, SourceError};
use super::files::ReplayFile;
use super::objects::Place;
use super::range::{TimeRange, start_offset};
use super::{LineReader, Next};
use crate::parse::{AUTO_SAMPLE_LINES, Parser};

/// A file of a [`Stream`], opened.
pub struct Opened {
    /// Its name, for messages.
    pub name: Arc<str>,
    /// Its lines' bytes, decompressed, from where reading starts.
    pub reader: Box<dyn Read + Send>,
    /// Called on the reader thread once it was read to its end, with the lines and bytes read.
    pub finished: Box<dyn FnOnce(u64, u64) + Send>,
    /// A pipe (standard input): its lines go on as they come, not once a block is full.
    pub streaming: bool,
    /// The pool of its lines that name none, when filled from its path.
    pub pool: Option<Arc<str>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Files read one after another into pipeline input `input`: a rotated set, in time order.
/// Streams are merged by timestamp; each is opened and read on a reader thread of its own,
/// once the merge reaches [`Stream::starts_ms`].
pub struct Stream {
    /// The pipeline input its requests go to.
    pub input: usize,
    /// The earliest time its lines may hold, when known: the stream is opened only once the
    /// merge gets there, so that streams which do not overlap in time are never open
    /// together. `None`: opened at once.
    pub starts_ms: Option<i64>,
    /// Its files, opened in turn on the reader thread; an error ends the replay.
    pub files: Box<dyn Iterator<Item = Result<Opened>> + Send>,
    /// The container wrapping to take off its lines.
    pub wrapping: Wrapping,
}

impl Stream {
    /// A stream of one reader already open (the demo, tests).
    pub fn of_reader(input: usize, name: &str, reader: Box<dyn Read + Send>) -> Self {
        let opened = Opened {
            name: name.into(),
            reader,
            finished: Box::new(|_, _| {}),
            streaming: false,
            pool: None,
        };
        Stream {
            input,
            starts_ms: None,
            files: Box::new(std::iter::once(Ok(opened))),
            wrapping: Wrapping::Auto,
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("input", &self.input).finish_non_exhaustive()
    }
}

/// A reader thread's work: fills blocks (or anything that holds one, such as the pipeline's
/// batches with their parsing buffers) from the stream's files, recycled through `free` once
/// `in_flight` exist, and sends them on `to_parse`. A block holds lines of one file. Returns
/// when the stream ends, an error ends it, or nobody takes blocks any more.
pub fn read_blocks<B: AsMut<LineBlock> + Default>(
    stream: usize,
    files: Box<dyn Iterator<Item = Result<Opened>> + Send>,
    wrapping: Wrapping,
    max_line: usize,
    in_flight: usize,
    to_parse: &mpsc::Sender<B>,
    free: &mpsc::Receiver<B>,
) {
    let mut files = files.peekable();
    let mut unwrapper = Unwrapper::new(wrapping, max_line);
    let mut made = 0;
    let mut seq = 0;
    let mut sent = false;
    let mut next_batch = || -> Option<B> {
        let mut batch = match free.try_recv() {
            Ok(batch) => batch,
            Err(_) if made < in_flight => {
                made += 1;
                B::default()
            }
            Err(_) => free.recv().ok()?,
        };
        batch.as_mut().clear(stream, seq);
        seq += 1;
        Some(batch)
    };
    while let Some(opened) = files.next() {
        let opened = match opened {
            Ok(opened) => opened,
            Err(error) => {
                let Some(mut batch) = next_batch() else { return };
                let block = batch.as_mut();
                block.error = Some(error);
                block.last = true;
                let _ = to_parse.send(batch);
                return;
            }
        };
        let mut lines = LineReader::new(opened.reader, max_line);
        unwrapper.reset();
        let (mut n_lines, mut offset) = (0, 0);
        loop {
            let Some(mut batch) = next_batch() else { return };
            let block = batch.as_mut();
            block.file = opened.name.clone();
            block.pool = opened.pool.clone();
            let ended = block.fill(&mut lines, &mut unwrapper, opened.streaming);
            n_lines += block.lines();
            block.bytes_read = lines.offset() - offset;
            offset = lines.offset();
            let failed = block.error.is_some();
            block.last = failed || (ended && files.peek().is_none());
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
        batch.as_mut().last = true;
        let _ = to_parse.send(batch);
    }
}

/// How a replayed file is named in messages: its file name, `stdin` for `-`.
pub fn display_name(path: &Path) -> String {
    if path == Path::new("-") {
        return "stdin".to_string();
    }
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// A stream of log bytes, decompressed.
pub type AnyReader = Box<dyn Read + Send>;

/// Standard input's first lines (decompressed), to recognise its format: the whole stream
/// (those lines put back in front) and the lines.
pub fn stdin_head(stdin: io::Stdin) -> Result<(AnyReader, Vec<Vec<u8>>)> {
    let failed = |error| SourceError::reading("-", error);
    let (mut reader, _) = decompressed(stdin).map_err(failed)?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while head.iter().filter(|&&b| b == b'\n').count() < AUTO_SAMPLE_LINES && head.len() < 4 << 20 {
        let n = reader.read(&mut chunk).map_err(failed)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let lines = unwrapped_sample(head.split(|&b| b == b'\n'), AUTO_SAMPLE_LINES);
    Ok((Box::new(io::Cursor::new(head).chain(reader)), lines))
}

/// Whether a whole file lies outside `range`: it starts after its end, or it ends (as its name
/// says, or where the next file begins) before its beginning.
fn outside(file: &ReplayFile, next_first: Option<i64>, range: TimeRange, margin_ms: i64) -> bool {
    let starts_after = matches!((file.first_ms, range.until_ms), (Some(first), Some(until)) if first > until + margin_ms);
    let ends_ms = file.named.as_ref().map(|n| n.end_ms).or(next_first);
    let ends_before =
        matches!((ends_ms, range.since_ms), (Some(end), Some(since)) if end < since - margin_ms);
    starts_after || ends_before
}

/// One rotated set's files, opened in turn on its reader thread: skipped whole when outside
/// `--since`/`--until`, decompressed as they need, plain ones from where `--since` begins
/// (binary search).
#[allow(missing_debug_implementations)] // readers and a parser: nothing worth printing
pub struct SetFiles {
    /// The set's files, in time order.
    pub files: std::iter::Peekable<std::vec::IntoIter<ReplayFile>>,
    /// Standard input, when its first lines were already read.
    pub stdin: Option<AnyReader>,
    /// `--since`/`--until`.
    pub range: TimeRange,
    /// How far out of order lines may be around a boundary, ms.
    pub margin_ms: i64,
    /// The input's parser, to find `--since` in a plain file by its timestamps.
    pub parser: Parser,
    /// Files that shrank while they were read, in words.
    pub shrunk: Arc<Mutex<Vec<String>>>,
    /// Where the files are.
    pub place: Place,
    /// The input's pool: a name, or a template filled from each file's path.
    pub pool: String,
}

impl Iterator for SetFiles {
    type Item = Result<Opened>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let file = self.files.next()?;
            let next_first = self.files.peek().and_then(|f| f.first_ms);
            if outside(&file, next_first, self.range, self.margin_ms) {
                tracing::info!(message = "File outside --since/--until: skipped.", file = %file.path.display());
                continue;
            }
            return Some(self.open(&file));
        }
    }
}

/// A file as stored: plain on disk (entered at `--since` by binary search), or to be read
/// whole (compressed, or an object).
enum Stored {
    Plain(std::fs::File),
    Whole(AnyReader),
}

impl SetFiles {
    /// Opens `path` where it is stored and tells, by its magic bytes (a file known only by
    /// its name was not looked into yet), how it is to be read.
    fn stored(&self, path: &Path) -> Result<Stored> {
        if let Place::Objects(_) = &self.place {
            return Ok(Stored::Whole(self.place.open(path, false)?));
        }
        let failed = |error| SourceError::reading(path, error);
        let mut opened = super::open_for_replay(path)?;
        let mut magic = [0u8; 4];
        let n = opened.read(&mut magic).map_err(failed)?;
        opened.rewind().map_err(failed)?;
        Ok(match Compression::sniff(&magic[..n]) {
            Compression::Plain => Stored::Plain(opened),
            _ => Stored::Whole(Box::new(opened)),
        })
    }

    fn open(&mut self, file: &ReplayFile) -> Result<Opened> {
        let path = file.path.clone();
        let failed = |error| SourceError::reading(&file.path, error);
        let name: Arc<str> = display_name(&path).into();
        let pool: Option<Arc<str>> = pool_of_file(&self.pool, &path).map(Into::into);
        let empty_warning = {
            let path = path.clone();
            move |lines: u64, bytes: u64| {
                if lines == 0 && bytes == 0 {
                    tracing::warn!(message = "Empty input: nothing to replay from it.", file = %path.display());
                }
            }
        };
        if path == Path::new("-") {
            let reader = match self.stdin.take() {
                Some(reader) => reader,
                None => decompressed(io::stdin()).map_err(failed)?.0,
            };
            let reader = Box::new(ThreadedReader::spawn(reader));
            return Ok(Opened {
                name,
                reader,
                finished: Box::new(empty_warning),
                streaming: true,
                pool: None,
            });
        }
        let mut opened = match self.stored(&path)? {
            Stored::Plain(file) => file,
            // Read whole, decompressed on a thread of its own.
            Stored::Whole(stored) => {
                let reader =
                    Box::new(ThreadedReader::spawn(decompressed(stored).map_err(failed)?.0));
                return Ok(Opened {
                    name,
                    reader,
                    finished: Box::new(empty_warning),
                    streaming: false,
                    pool,
                });
            }
        };
        let size = opened.metadata().map_err(failed)?.len();
        let start = match self.range.since_ms {
            Some(since) => start_offset(&mut opened, size, since, self.margin_ms, &mut self.parser)
                .map_err(failed)?,
            None => 0,
        };
        opened.seek(io::SeekFrom::Start(start)).map_err(failed)?;
        let shrunk = self.shrunk.clone();
        let finished = move |lines: u64, bytes: u64| {
            empty_warning(lines, bytes);
            if let Ok(metadata) = std::fs::metadata(&path)
                && metadata.len() < start + bytes
            {
                tracing::warn!(message = "The file shrank while it was read: the replay is incomplete.", file = %path.display(), read_bytes = start + bytes, size_now = metadata.len());
                if let Ok(mut shrunk) = shrunk.lock() {
                    shrunk.push(format!(
                        "{} ({} bytes read, {} now)",
                        path.display(),
                        start + bytes,
                        metadata.len()
                    ));
                }
            }
        };
        Ok(Opened {
            name,
            reader: Box::new(opened),
            finished: Box::new(finished),
            streaming: false,
            pool,
        })
    }
}

/// Reads up to `n` lines from the start of a file (decompressed), for format recognition.
pub fn sample_lines(path: &Path, n: usize) -> Result<Vec<Vec<u8>>> {
    sample_lines_in(&Place::Disk, path, n)
}

/// [`sample_lines`] of a file wherever it is.
pub fn sample_lines_in(place: &Place, path: &Path, n: usize) -> Result<Vec<Vec<u8>>> {
    let failed = |error| SourceError::reading(path, error);
    let file = place.open(path, true)?;
    let (file, _) = decompressed(file).map_err(failed)?;
    let mut reader = LineReader::new(file, super::DEFAULT_MAX_LINE_BYTES);
    let mut unwrapper = Unwrapper::new(Wrapping::Auto, super::DEFAULT_MAX_LINE_BYTES);
    let mut lines = Vec::new();
    while lines.len() < n {
        // A head cut from a compressed object ends in the middle of its stream: what came
        // before is the sample.
        let next = match reader.next_line(true) {
            Err(_) if !lines.is_empty() => break,
            next => next.map_err(failed)?,
        };
        match next {
            Next::Line(line) => {
                if let Unwrapped::Line(bytes) = unwrapper.take_off(line.bytes) {
                    lines.push(bytes.to_vec());
                }
            }
            Next::TooLong { .. } => {}
            Next::End => break,
        }
    }
    Ok(lines)
}

/// Up to `n` of `lines` as format recognition should see them: container wrappings taken off,
/// pieces joined, a container's stderr left out (so it cannot tip the choice).
fn unwrapped_sample<'a>(lines: impl Iterator<Item = &'a [u8]>, n: usize) -> Vec<Vec<u8>> {
    let mut unwrapper = Unwrapper::new(Wrapping::Auto, super::DEFAULT_MAX_LINE_BYTES);
    let mut sample = Vec::new();
    for line in lines {
        if sample.len() >= n {
            break;
        }
        if let Unwrapped::Line(bytes) = unwrapper.take_off(line) {
            sample.push(bytes.to_vec());
        }
    }
    sample
}
