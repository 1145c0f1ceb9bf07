//! Source: reads lines from files or stdin and hands them out as byte slices with their origin.
//!
//! [`LineReader`] reads into one reusable buffer and yields slices of it, so reading a line
//! never allocates. A line longer than the limit is skipped whole and reported as
//! [`Next::TooLong`] (never split into fake lines, never silently dropped). Invalid UTF-8 is
//! not a concern here: lines are bytes, and the parser works on bytes.
//!
//! [`Follower`] is the live variant: it keeps reading a file as it grows, reopens it when it
//! is replaced (rotation) and starts over when it shrinks (truncation). It is a simple
//! poller; rotation-proof tailing with checkpoints is a later piece of work.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

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
}

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
        }
    }

    /// The input offset just past the last line handed out.
    pub fn offset(&self) -> u64 {
        self.offset
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
            if let Some(at) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
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
                return Ok(Next::Line(Line {
                    bytes,
                    number: self.line_number,
                    offset: line_offset,
                }));
            }
            let pending = self.end - self.start;
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

/// Opens a log file for replay, with an error that names the file and the likely fix.
pub fn open_for_replay(path: &Path) -> anyhow::Result<File> {
    let file = File::open(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => {
            anyhow::anyhow!("{}: no such file; check the path", path.display())
        }
        io::ErrorKind::PermissionDenied => {
            anyhow::anyhow!(
                "{}: permission denied; run as a user that can read the log (often group `adm`)",
                path.display()
            )
        }
        _ => anyhow::anyhow!("{}: cannot open: {error}", path.display()),
    })?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        anyhow::bail!("{}: is a directory; pass the log files inside it", path.display());
    }
    Ok(file)
}

/// What a [`Follower`] noticed about its file on a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileEvent {
    /// Nothing unusual.
    None,
    /// The file shrank: it was truncated in place, so reading starts over.
    Truncated,
    /// The path now names a different file: it was rotated, so the new file is read from its start.
    Rotated,
    /// The path does not exist (yet, or any more).
    Missing,
}

/// Follows one growing file by polling.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    reader: Option<LineReader<File>>,
    /// The previous file after a rotation, read to its end before the new one so the lines
    /// written just before the rename are not lost.
    rotated: Option<LineReader<File>>,
    identity: Option<(u64, u64)>,
    max_line: usize,
}

#[cfg(unix)]
fn identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

impl Follower {
    /// Starts following `path`, from its end when `from_start` is false (like `tail -f`).
    pub fn new(path: PathBuf, from_start: bool, max_line: usize) -> Self {
        let mut follower = Follower { path, reader: None, rotated: None, identity: None, max_line };
        if let Ok(mut file) = File::open(&follower.path) {
            let start = if from_start { 0 } else { file.seek(SeekFrom::End(0)).unwrap_or(0) };
            follower.identity = file.metadata().ok().map(|m| identity(&m));
            let mut reader = LineReader::new(file, max_line);
            reader.offset = start;
            follower.reader = Some(reader);
        }
        follower
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the path for rotation or truncation and prepares to read what is new.
    pub fn poll(&mut self) -> FileEvent {
        let Ok(metadata) = std::fs::metadata(&self.path) else {
            return FileEvent::Missing;
        };
        let current = identity(&metadata);
        let event = match (&mut self.reader, self.identity) {
            (Some(reader), Some(known)) if known == current => {
                if metadata.len() < reader.offset() {
                    FileEvent::Truncated
                } else {
                    reader.clear_eof();
                    return FileEvent::None;
                }
            }
            (Some(_), _) => FileEvent::Rotated,
            (None, _) => FileEvent::None,
        };
        // (Re)open from the start: a new file, a truncated one, or one that appeared.
        match File::open(&self.path) {
            Ok(file) => {
                self.identity = Some(current);
                let previous = self.reader.replace(LineReader::new(file, self.max_line));
                if event == FileEvent::Rotated {
                    self.rotated = previous.map(|mut reader| {
                        reader.clear_eof();
                        reader
                    });
                }
                event
            }
            Err(_) => FileEvent::Missing,
        }
    }

    /// The next complete line, if one has been written.
    pub fn next_line(&mut self) -> io::Result<Next<'_>> {
        let drain_rotated = match &mut self.rotated {
            Some(rotated) => rotated.has_pending()?,
            None => false,
        };
        if !drain_rotated {
            self.rotated = None;
        }
        let reader = if drain_rotated { self.rotated.as_mut() } else { self.reader.as_mut() };
        match reader {
            // The rotated file is complete: its last line counts even without a newline.
            Some(reader) => reader.next_line(drain_rotated),
            None => Ok(Next::End),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max_line: usize) -> Vec<String> {
        let mut reader = LineReader::new(input, max_line);
        let mut out = Vec::new();
        for _ in 0..1000 {
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
    fn invalid_utf8_passes_through_as_bytes() {
        let mut reader = LineReader::new(&b"\xff\xfe ok\n"[..], 100);
        let Next::Line(line) = reader.next_line(true).unwrap() else { panic!() };
        assert_eq!(line.bytes, b"\xff\xfe ok");
    }

    #[test]
    fn follower_sees_appends_truncation_and_rotation() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut follower = Follower::new(path.clone(), false, 1000);
        let read_all = |follower: &mut Follower| {
            let mut lines = Vec::new();
            while let Next::Line(line) = follower.next_line().unwrap() {
                lines.push(String::from_utf8_lossy(line.bytes).into_owned());
            }
            lines
        };
        assert!(read_all(&mut follower).is_empty(), "starts at the end");
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"one\ntw").unwrap();
        assert_eq!(follower.poll(), FileEvent::None);
        assert_eq!(read_all(&mut follower), ["one"]);
        file.write_all(b"o\n").unwrap();
        follower.poll();
        assert_eq!(read_all(&mut follower), ["two"]);
        std::fs::write(&path, "").unwrap();
        assert_eq!(follower.poll(), FileEvent::Truncated);
        // Lines written just before a rotation are read from the old file first.
        std::fs::write(&path, "last\nunterminated").unwrap();
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(follower.poll(), FileEvent::Rotated);
        assert_eq!(read_all(&mut follower), ["last", "unterminated", "new"]);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(follower.poll(), FileEvent::Missing);
    }
}
