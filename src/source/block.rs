//! Blocks of lines: what one read hands on, whole lines back to back in one buffer with
//! their numbers, for the pipeline to parse. A block is refilled again and again, so reading
//! allocates nothing once its buffer has grown.

use std::io::Read;
use std::sync::Arc;

use super::container::{Unwrapped, Unwrapper};
use super::error::SourceError;
use super::{Line, LineReader, Next};

/// Lines per block, at most.
pub const BLOCK_LINES: usize = 8192;

/// Bytes per block, about (a block ends after the line that reaches this): with the blocks
/// in flight, this bounds memory whatever the input size.
pub const BLOCK_BYTES: usize = 1 << 20;

/// Whole lines of one file, as read.
#[derive(Debug, Default)]
pub struct LineBlock {
    /// The stream it belongs to, and its place in it.
    pub stream: usize,
    /// Its place in the stream.
    pub seq: u64,
    /// The file its lines come from.
    pub file: Arc<str>,
    /// The pool of that file's lines that name none, when the input's pool is filled per
    /// file from its path (`{namespace}/{container}`); `None`: the input's own.
    pub pool: Option<Arc<str>>,
    /// Bytes of the file read into it.
    pub bytes_read: u64,
    /// Whether it is the stream's last.
    pub last: bool,
    /// The lines, back to back.
    bytes: Vec<u8>,
    /// Where each line ends in `bytes`, and its number in the input.
    lines_at: Vec<(usize, u64)>,
    /// Lines over the length limit: (number, length).
    pub too_long: Vec<(u64, u64)>,
    /// Lines of a container's stderr (not access traffic): counted as `other`.
    pub stderr: u64,
    /// An error after the block's lines: reading ends here.
    pub error: Option<super::error::SourceError>,
}

impl LineBlock {
    /// Empties it for stream `stream`'s block `seq`, keeping its buffers.
    pub fn clear(&mut self, stream: usize, seq: u64) {
        self.stream = stream;
        self.seq = seq;
        self.bytes_read = 0;
        self.last = false;
        self.bytes.clear();
        self.lines_at.clear();
        self.too_long.clear();
        self.stderr = 0;
        self.error = None;
    }

    /// Lines in it, too long ones and a container's stderr included (a line a runtime cut in
    /// pieces is one).
    pub fn lines(&self) -> u64 {
        (self.lines_at.len() + self.too_long.len()) as u64 + self.stderr
    }

    /// Whether it is full.
    pub fn is_full(&self) -> bool {
        self.lines_at.len() >= BLOCK_LINES || self.bytes.len() >= BLOCK_BYTES
    }

    /// Adds one line.
    pub fn push(&mut self, line: Line<'_>) {
        self.bytes.extend_from_slice(line.bytes);
        self.lines_at.push((self.bytes.len(), line.number));
    }

    /// Adds one physical line with its container wrapping taken off: a piece of a longer line
    /// is held by `unwrapper` until its last piece, a container's stderr only counted.
    pub fn push_unwrapped(&mut self, unwrapper: &mut Unwrapper, line: Line<'_>) {
        match unwrapper.take_off(line.bytes) {
            Unwrapped::Line(bytes) => {
                self.bytes.extend_from_slice(bytes);
                self.lines_at.push((self.bytes.len(), line.number));
            }
            Unwrapped::Held => {}
            Unwrapped::Stderr => self.stderr += 1,
            Unwrapped::TooLong(length) => self.too_long.push((line.number, length)),
        }
    }

    /// Notes a line over the length limit.
    pub fn push_too_long(&mut self, number: u64, length: u64) {
        self.too_long.push((number, length));
    }

    /// Its lines with their numbers.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        let mut start = 0;
        self.lines_at.iter().map(move |&(end, number)| {
            let line = &self.bytes[start..end];
            start = end;
            (line, number)
        })
    }

    /// Reads lines until it is full or the input ends; returns whether it ended. A read error
    /// ends it, kept in [`LineBlock::error`]. With `streaming` (a pipe), it is also handed on
    /// once it holds lines and no whole line waits in the reader's buffer, rather than when
    /// it fills: a slow writer's lines go on at once.
    pub fn fill<R: Read>(
        &mut self,
        lines: &mut LineReader<R>,
        unwrapper: &mut Unwrapper,
        streaming: bool,
    ) -> bool {
        while !self.is_full() {
            if streaming && self.lines() > 0 && !lines.has_buffered_line() {
                return false;
            }
            match lines.next_line(true) {
                Ok(Next::Line(line)) => self.push_unwrapped(unwrapper, line),
                Ok(Next::TooLong { number, length }) => self.push_too_long(number, length),
                Ok(Next::End) => return true,
                Err(error) => {
                    self.error = Some(SourceError::reading(&*self.file, error));
                    return true;
                }
            }
        }
        false
    }
}
