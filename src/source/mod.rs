//! Source: reads lines from files or stdin and hands them out as byte slices with their origin.
//!
//! [`LineReader`] reads into one reusable buffer and yields slices of it, so reading a line
//! never allocates. A line longer than the limit is skipped whole and reported as
//! [`Next::TooLong`] (never split into fake lines, never silently dropped). Invalid UTF-8 is
//! not a concern here: lines are bytes, and the parser works on bytes.
//!
//! All reading happens here, through the same [`LineReader`]: following live files through
//! rotation, truncation and restarts (`tailer.rs`), and reading past logs once (`once.rs`:
//! rotated sets in time order, ranges, decompression, standard input), in [`block::LineBlock`]s
//! of whole lines for the pipeline to parse.

pub mod block;
pub mod container;
pub mod decompress;
pub mod error;
pub mod files;
pub mod objects;
pub mod once;
pub mod piped;
pub mod range;
pub mod syslog;
pub mod tailer;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Lines longer than this are skipped and counted by default (1 MiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

const READ_CHUNK: usize = 256 * 1024;

/// One line and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// The line's bytes, without `\n` or `\r\n`.
    pub bytes: &'a [u8],
    /// 1-based line number in its input.
    pub number: u64,
    /// Byte offset of the line's start in its input.
    pub offset: u64,
}

/// What [`LineReader::next_line`] found.
#[derive(Debug)]
pub enum Next<'a> {
    /// A complete line.
    Line(Line<'a>),
    /// A line longer than the limit, skipped whole.
    TooLong {
        /// 1-based line number.
        number: u64,
        /// Its length in bytes.
        length: u64,
    },
    /// No complete line is available yet (follow mode) or the input has ended.
    End,
}

/// Reads lines from any `Read` through one reusable buffer.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Input offset of `buf[start]`.
    offset: u64,
    line_number: u64,
    max_line: usize,
    /// Bytes of an over-long line discarded so far, while skipping to its end.
    skipping: Option<u64>,
    eof: bool,
    /// What ends a line: `\n`, or `\r` for a file whose lines end in CR only (old Mac
    /// style), recognised from its first bytes rather than read as one huge record.
    delimiter: u8,
    /// Whether the line ending has been settled.
    delimiter_known: bool,
}

/// Bytes looked at before deciding a file's lines end in CR only.
const CR_ONLY_PROBE: usize = 4096;

impl<R: Read> LineReader<R> {
    /// A reader that skips lines longer than `max_line` bytes.
    pub fn new(inner: R, max_line: usize) -> Self {
        LineReader {
            inner,
            buf: vec![0; READ_CHUNK.max(max_line.saturating_add(1).min(64 << 20))],
            start: 0,
            end: 0,
            offset: 0,
            line_number: 0,
            max_line,
            skipping: None,
            eof: false,
            delimiter: b'\n',
            delimiter_known: false,
        }
    }

    /// Whether the input's lines end in CR only (recognised, and read as such).
    pub fn cr_only(&self) -> bool {
        self.delimiter == b'\r'
    }

    /// Settles the line ending from the bytes at hand: LF if there is one, CR only if there
    /// is none in the first few KiB (or in the whole input, `at_end`) but there are CRs. A
    /// followed file is never at its end: a CRLF line written in two parts must not pass for
    /// a CR-only file.
    fn settle_delimiter(&mut self, at_end: bool) {
        let pending = &self.buf[self.start..self.end];
        if memchr::memchr(b'\n', pending).is_some() {
            self.delimiter_known = true;
        } else if pending.len() >= CR_ONLY_PROBE || at_end {
            if memchr::memchr(b'\r', pending).is_some() {
                self.delimiter = b'\r';
            }
            self.delimiter_known = true;
        }
    }

    /// A reader positioned at `offset` of its input (already seeked there), whose next line
    /// is number `line + 1`.
    pub fn resuming(inner: R, max_line: usize, offset: u64, line: u64) -> Self {
        let mut reader = Self::new(inner, max_line);
        reader.offset = offset;
        reader.line_number = line;
        reader
    }

    /// The input offset just past the last line handed out.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The input being read.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Lines handed out so far (the last line's number).
    pub fn line_number(&self) -> u64 {
        self.line_number
    }

    /// Bytes read from the input but not handed out yet (a partial last line).
    pub fn buffered(&self) -> u64 {
        (self.end - self.start) as u64
    }

    /// Whether a whole line is waiting in the buffer: the next [`LineReader::next_line`] hands
    /// it out without reading (and so without blocking on a pipe).
    pub fn has_buffered_line(&self) -> bool {
        self.skipping.is_none()
            && memchr::memchr(self.delimiter, &self.buf[self.start..self.end]).is_some()
    }

    /// Lets a reader that hit the end of a growing file try again.
    pub fn clear_eof(&mut self) {
        self.eof = false;
    }

    /// Whether any bytes are left to hand out, reading more if the buffer is empty.
    pub fn has_pending(&mut self) -> io::Result<bool> {
        if self.start < self.end || self.skipping.is_some() {
            return Ok(true);
        }
        self.start = 0;
        self.end = 0;
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next line. With `final_partial` set, text after the last newline is returned as a
    /// line at the end of input (replay); otherwise it waits for its newline (follow).
    pub fn next_line(&mut self, final_partial: bool) -> io::Result<Next<'_>> {
        loop {
            if !self.delimiter_known {
                self.settle_delimiter(self.eof && final_partial);
            }
            let found = if self.delimiter_known {
                memchr::memchr(self.delimiter, &self.buf[self.start..self.end])
            } else {
                None
            };
            if let Some(at) = found {
                let line_start = self.start;
                let line_end = line_start + at;
                self.start = line_end + 1;
                let line_offset = self.offset;
                self.offset += at as u64 + 1;
                self.line_number += 1;
                let skipped = self.skipping.take();
                if skipped.is_some() || at > self.max_line {
                    return Ok(Next::TooLong {
                        number: self.line_number,
                        length: skipped.unwrap_or(0) + at as u64,
                    });
                }
                let mut bytes = &self.buf[line_start..line_end];
                if let [rest @ .., b'\r'] = bytes {
                    bytes = rest;
                }
                if self.delimiter == b'\r'
                    && let [b'\n', rest @ ..] = bytes
                {
                    bytes = rest;
                }
                return Ok(Next::Line(Line {
                    bytes,
                    number: self.line_number,
                    offset: line_offset,
                }));
            }
            let pending = self.end - self.start;
            if self.eof && final_partial && !self.delimiter_known {
                self.settle_delimiter(true);
                continue;
            }
            if self.eof {
                if final_partial && (pending > 0 || self.skipping.is_some()) {
                    self.line_number += 1;
                    let line = Line {
                        bytes: &self.buf[self.start..self.end],
                        number: self.line_number,
                        offset: self.offset,
                    };
                    self.offset += pending as u64;
                    self.start = self.end;
                    let skipped = self.skipping.take();
                    if skipped.is_some() || pending > self.max_line {
                        return Ok(Next::TooLong {
                            number: self.line_number,
                            length: skipped.unwrap_or(0) + pending as u64,
                        });
                    }
                    return Ok(Next::Line(line));
                }
                return Ok(Next::End);
            }
            if pending >= self.max_line {
                // Over-long: drop what we have and skip to the next newline.
                *self.skipping.get_or_insert(0) += pending as u64;
                self.offset += pending as u64;
                self.start = 0;
                self.end = 0;
            } else if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.start = 0;
                self.end = pending;
            }
            if self.end == self.buf.len() {
                let grown = (self.buf.len() * 2).min(self.max_line + READ_CHUNK);
                self.buf.resize(grown, 0);
            }
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Why a path is not a regular file, in words, with the fix; `None` for a regular file.
pub fn not_regular(metadata: &std::fs::Metadata) -> Option<&'static str> {
    let kind = metadata.file_type();
    if kind.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Some(
                "is a FIFO (named pipe), not a regular file: a pipe has no end to read to and \
                 cannot be resumed; for a log, pipe it to standard input (`-`) instead",
            );
        }
        if kind.is_char_device() || kind.is_block_device() {
            return Some("is a device, not a regular file");
        }
        if kind.is_socket() {
            return Some("is a socket, not a regular file");
        }
    }
    if kind.is_dir() {
        return Some("is a directory; name the files inside it");
    }
    Some("is not a regular file")
}

/// Opens `path` for reading, refusing anything but a regular file (the error says what it is
/// instead, and the fix). Opened non-blocking: opening a FIFO for reading otherwise waits for
/// a writer, possibly forever, before there is a descriptor to ask what it is. Reads from a
/// regular file are unaffected by the flag.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if let Some(why) = not_regular(&file.metadata()?) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    }
    Ok(file)
}

/// Reads a small text file (a config, a pattern file), refusing anything that is not a
/// regular file or is over `limit` bytes, so a FIFO or `/dev/zero` cannot hang or exhaust it.
pub fn read_capped(path: &Path, limit: u64) -> io::Result<String> {
    let file = open_regular(path)?;
    let mut text = String::new();
    file.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is larger than {limit} bytes; is it the right file?"),
        ));
    }
    Ok(text)
}

/// Opens a log file for replay, with an error that names the file and the likely fix.
pub fn open_for_replay(path: &Path) -> error::Result<File> {
    open_regular(path).map_err(|error| error::SourceError::opening(path, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max_line: usize) -> Vec<String> {
        let mut reader = LineReader::new(input, max_line);
        let mut out = Vec::new();
        for _ in 0..10_000 {
            match reader.next_line(true).unwrap() {
                Next::Line(line) => out.push(format!(
                    "{}@{}:{}",
                    line.number,
                    line.offset,
                    String::from_utf8_lossy(line.bytes)
                )),
                Next::TooLong { number, length } => {
                    out.push(format!("{number}:too long ({length})"))
                }
                Next::End => return out,
            }
        }
        panic!("reader did not end");
    }

    #[test]
    fn splits_lines_strips_crlf_and_keeps_a_final_partial_line() {
        assert_eq!(collect(b"a\r\nbb\n\nccc", 100), ["1@0:a", "2@3:bb", "3@6:", "4@7:ccc"]);
        assert!(collect(b"", 100).is_empty());
    }

    #[test]
    fn over_long_lines_are_reported_not_split() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 5000));
        input.extend(b"\nafter\n");
        input.extend(std::iter::repeat_n(b'y', 3000));
        assert_eq!(
            collect(&input, 1000),
            ["1@0:short", "2:too long (5000)", "3@5007:after", "4:too long (3000)"]
        );
    }

    #[test]
    fn a_followed_crlf_line_written_in_two_parts_is_not_taken_for_cr_only() {
        // A reader over a file that grows: `a\r` now, `\nb\r\n` later.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"a\r").unwrap();
        let mut reader = LineReader::new(File::open(&path).unwrap(), 100);
        assert!(matches!(reader.next_line(false).unwrap(), Next::End));
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut file, b"\nb\r\n").unwrap();
        reader.clear_eof();
        let Next::Line(line) = reader.next_line(false).unwrap() else { panic!("no line") };
        assert_eq!(line.bytes, b"a");
        assert!(!reader.cr_only());
    }

    #[test]
    fn cr_only_files_are_recognised_and_crlf_is_not_mistaken_for_them() {
        assert_eq!(collect(b"a\rbb\rccc\r", 100), ["1@0:a", "2@2:bb", "3@5:ccc"]);
        let mut reader = LineReader::new(&b"one\rtwo\r"[..], 100);
        assert!(matches!(reader.next_line(true).unwrap(), Next::Line(_)));
        assert!(reader.cr_only());
        assert_eq!(collect(b"a\r\nb\r\n", 100), ["1@0:a", "2@3:b"]);
        // A long CR-only file, past the probe.
        let text: Vec<u8> = (0..2000).flat_map(|i| format!("line {i}\r").into_bytes()).collect();
        let lines = collect(&text, 1000);
        assert_eq!(lines.len(), 2000);
        assert!(lines[1999].ends_with(":line 1999"), "{}", lines[1999]);
    }

    #[test]
    fn invalid_utf8_passes_through_as_bytes() {
        let mut reader = LineReader::new(&b"\xff\xfe ok\n"[..], 100);
        let Next::Line(line) = reader.next_line(true).unwrap() else { panic!() };
        assert_eq!(line.bytes, b"\xff\xfe ok");
    }
}
