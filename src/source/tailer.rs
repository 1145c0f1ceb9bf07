//! The tailer: follows one input's files (a path or a glob) for months without losing a line.
//!
//! - **Identity** is the device and inode plus a fingerprint of the first bytes, so a reused
//!   inode is not mistaken for the file it replaced.
//! - **Rename rotation**: the renamed file is kept open and drained to its end (the balancer
//!   may write to it until it reopens its log), and the new file is read from its start.
//! - **copytruncate**: when the file shrinks (or its first bytes change), the copy logrotate
//!   made is found among its siblings (same fingerprint, at least as long as what was read)
//!   and read from where reading stopped; then the truncated file is read from 0. When no copy
//!   is found, a log line says so and how many bytes were lost.
//! - A partial last line waits for its newline; a drained rotated file's last line counts
//!   without one.
//! - Globs are re-expanded on every poll, so files that appear later and directories that
//!   vanish and come back are picked up; only regular files are followed.
//! - [`Tailer::checkpoint`] says where each file was read up to; [`Tailer::resume`] starts from
//!   there, finding the files again by identity wherever rotation moved them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::source::{LineReader, Next, not_regular, open_regular};

/// Bytes at the head of a file that make its fingerprint.
const FINGERPRINT_BYTES: usize = 256;

/// How long a renamed file is still read after it stops growing: the balancer may keep
/// writing to it until it reopens its log.
pub const ROTATE_WAIT: Duration = Duration::from_secs(5);

/// A file's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Hash of the first `fp_len` bytes.
    pub fingerprint: u64,
    /// How many bytes the fingerprint covers (fewer than 256 while the file is shorter).
    pub fp_len: u32,
}

/// Where one file was read up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    /// The path it had when last seen.
    pub path: PathBuf,
    /// Its identity.
    pub id: FileId,
    /// Bytes consumed: just past the last complete line handed out.
    pub offset: u64,
    /// Lines handed out.
    pub line: u64,
}

/// What a tailer noticed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // every variant's `path` is the file it is about
pub enum TailEvent {
    /// A file is being read, from this offset.
    Opened { path: PathBuf, offset: u64 },
    /// The path names a new file; the old one is drained first.
    Rotated { path: PathBuf },
    /// The file was truncated (copytruncate). The lines written since the last read were read
    /// from `recovered_from` (`recovered` bytes); `lost` bytes could not be found.
    Truncated { path: PathBuf, recovered_from: Option<PathBuf>, recovered: u64, lost: u64 },
    /// A rotated file was read to its end and closed.
    Finished { path: PathBuf },
    /// A checkpointed file is gone: what was left unread in it is lost.
    Gone { path: PathBuf },
    /// Nothing matches the input's path (yet).
    Missing { path: PathBuf },
    /// A path matches but is not a regular file (`why`); it is not followed.
    NotRegular { path: PathBuf, why: &'static str },
    /// A file could not be read.
    Failed { path: PathBuf, error: String },
    /// A file's lines end in CR only (old Mac style); they are read as such.
    CrOnly { path: PathBuf },
}

/// One file being read.
#[derive(Debug)]
struct Tailed {
    path: PathBuf,
    id: FileId,
    reader: LineReader<File>,
    /// When the path stopped naming this file: it is drained, then closed.
    detached_at: Option<Instant>,
    /// When reading last found nothing new.
    quiet_since: Option<Instant>,
    /// Drained and quiet: its last line counts without a newline, then it closes.
    finishing: bool,
    /// Finished and read to the end: closed after this turn.
    done: bool,
    /// Its size when last looked at.
    last_size: u64,
    /// Whether its CR-only line endings have been reported.
    cr_only_reported: bool,
}

/// Follows the files of one input.
#[derive(Debug)]
pub struct Tailer {
    pattern: PathBuf,
    is_glob: bool,
    max_line: usize,
    /// Start at the end of files found at start-up (`start_at = "end"`), unless checkpointed.
    start_at_end: bool,
    /// Whether the first poll has happened (later files are read from their start).
    started: bool,
    /// Checkpoints to resume from, applied on the first poll.
    resume_from: Vec<FileCheckpoint>,
    /// Whether it resumes a previous run: every file not checkpointed is then new since, and
    /// read from its start whatever `start_at` says.
    resumed: bool,
    files: Vec<Tailed>,
    missing_reported: bool,
    /// Paths already reported as not regular files: said once, not on every poll.
    not_regular_reported: Vec<PathBuf>,
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    // FNV-1a: stable across versions and platforms (a checkpoint must mean the same later).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Reads up to `len` bytes from the start of `file` without moving its position.
fn head(file: &File, len: usize) -> io::Result<Vec<u8>> {
    let mut reader = file.try_clone()?;
    let position = reader.stream_position()?;
    reader.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::with_capacity(len);
    (&mut reader).take(len as u64).read_to_end(&mut bytes)?;
    reader.seek(SeekFrom::Start(position))?;
    Ok(bytes)
}

#[cfg(unix)]
fn dev_ino(metadata: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

#[cfg(not(unix))]
fn dev_ino(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// The identity of an open file.
fn identify(file: &File) -> io::Result<FileId> {
    let metadata = file.metadata()?;
    let (dev, ino) = dev_ino(&metadata);
    let bytes = head(file, FINGERPRINT_BYTES)?;
    #[allow(clippy::cast_possible_truncation)] // at most 256
    let fp_len = bytes.len() as u32;
    Ok(FileId { dev, ino, fingerprint: hash_bytes(&bytes), fp_len })
}

/// Whether `file` starts with the bytes `id` fingerprinted.
fn same_head(file: &File, id: &FileId) -> bool {
    head(file, id.fp_len as usize).is_ok_and(|bytes| {
        bytes.len() == id.fp_len as usize && hash_bytes(&bytes) == id.fingerprint
    })
}

/// The paths an input's `path` names now, in name order: a glob's matches (files that appear
/// later are picked up on a later poll), or the path itself.
pub fn candidates(pattern: &Path) -> Vec<PathBuf> {
    if !has_glob(pattern) {
        return vec![pattern.to_path_buf()];
    }
    let mut paths: Vec<PathBuf> = match glob::glob(&pattern.to_string_lossy()) {
        Ok(paths) => paths.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    };
    paths.sort();
    paths
}

fn has_glob(pattern: &Path) -> bool {
    pattern.to_string_lossy().contains(['*', '?', '['])
}

/// The siblings of `path` that rotation may have produced (`access.log.1`, `access.log-2024`),
/// uncompressed, newest first.
fn rotated_siblings(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return Vec::new() };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let name = name.to_string_lossy();
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut siblings: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let other = entry.file_name().to_string_lossy().into_owned();
            other != name
                && other.starts_with(&*name)
                && !other.ends_with(".gz")
                && !other.ends_with(".zst")
        })
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .collect();
    siblings.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    siblings.into_iter().map(|(_, path)| path).collect()
}

impl Tailer {
    /// Follows `pattern` (a path or a glob), with lines up to `max_line` bytes.
    pub fn new(pattern: PathBuf, start_at_end: bool, max_line: usize) -> Self {
        Tailer {
            is_glob: has_glob(&pattern),
            pattern,
            max_line,
            start_at_end,
            started: false,
            resume_from: Vec::new(),
            resumed: false,
            files: Vec::new(),
            missing_reported: false,
            not_regular_reported: Vec::new(),
        }
    }

    /// Resumes from checkpoints (applied on the first poll); `start_at` no longer applies.
    pub fn resume(&mut self, checkpoints: Vec<FileCheckpoint>) {
        self.resume_from = checkpoints;
        self.resumed = true;
    }

    /// The followed path or glob.
    pub fn pattern(&self) -> &Path {
        &self.pattern
    }

    /// Where each open file was read up to.
    pub fn checkpoint(&self) -> Vec<FileCheckpoint> {
        self.files
            .iter()
            .map(|t| FileCheckpoint {
                path: t.path.clone(),
                id: t.id,
                offset: t.reader.offset(),
                line: t.reader.line_number(),
            })
            .collect()
    }

    /// Bytes written to the followed files and not read yet (the tail lag).
    pub fn lag_bytes(&self) -> u64 {
        self.files.iter().map(|t| t.last_size.saturating_sub(t.reader.offset())).sum()
    }

    /// The paths the pattern names now: regular files only (others are reported).
    fn current_paths(&mut self, events: &mut Vec<TailEvent>) -> Vec<(PathBuf, std::fs::Metadata)> {
        let mut found = Vec::new();
        for path in candidates(&self.pattern) {
            let Ok(metadata) = std::fs::metadata(&path) else { continue };
            match not_regular(&metadata) {
                None => found.push((path, metadata)),
                Some(why) if !self.is_glob || !metadata.is_dir() => {
                    if !self.not_regular_reported.contains(&path) {
                        self.not_regular_reported.push(path.clone());
                        events.push(TailEvent::NotRegular { path, why });
                    }
                }
                Some(_) => {}
            }
        }
        found
    }

    /// Checks the files for rotation, truncation and new files; returns what happened.
    pub fn poll(&mut self, now: Instant) -> Vec<TailEvent> {
        let mut events = Vec::new();
        if !self.started {
            let checkpoints = std::mem::take(&mut self.resume_from);
            for checkpoint in checkpoints {
                self.resume_one(checkpoint, now, &mut events);
            }
        }
        for tailed in &mut self.files {
            if tailed.reader.cr_only() && !tailed.cr_only_reported {
                tailed.cr_only_reported = true;
                events.push(TailEvent::CrOnly { path: tailed.path.clone() });
            }
        }
        let paths = self.current_paths(&mut events);
        // Files whose path now names something else (or nothing) are drained, then closed.
        for index in 0..self.files.len() {
            let tailed = &mut self.files[index];
            if tailed.detached_at.is_some() {
                continue;
            }
            let still_here =
                paths.iter().find(|(path, _)| *path == tailed.path).and_then(|(_, m)| {
                    let (dev, ino) = dev_ino(m);
                    (dev == tailed.id.dev && ino == tailed.id.ino).then_some(m.len())
                });
            match still_here {
                None => {
                    tailed.detached_at = Some(now);
                    events.push(TailEvent::Rotated { path: tailed.path.clone() });
                }
                Some(size) => {
                    let seen_before = tailed.last_size;
                    tailed.last_size = size;
                    let shrunk = size < tailed.reader.offset();
                    let rewritten = !shrunk && !same_head(tailed.reader_file(), &tailed.id);
                    if shrunk || rewritten {
                        self.truncated(index, seen_before, now, &mut events);
                    } else if (tailed.id.fp_len as usize) < FINGERPRINT_BYTES
                        && size > u64::from(tailed.id.fp_len)
                        && let Ok(id) = identify(tailed.reader_file())
                    {
                        tailed.id = id;
                    }
                }
            }
        }
        // New files: read from their start, or from their end at start-up with `start_at =
        // "end"` and no checkpoint.
        let from_end = !self.started && self.start_at_end && !self.resumed;
        for (path, metadata) in &paths {
            let (dev, ino) = dev_ino(metadata);
            let followed = self
                .files
                .iter()
                .any(|t| t.detached_at.is_none() && t.id.dev == dev && t.id.ino == ino);
            if !followed {
                self.open(path, from_end, now, &mut events);
            }
        }
        if paths.is_empty() && self.files.is_empty() {
            if !self.missing_reported {
                self.missing_reported = true;
                events.push(TailEvent::Missing { path: self.pattern.clone() });
            }
        } else {
            self.missing_reported = false;
        }
        // A detached file that has stopped growing for ROTATE_WAIT is finished.
        for tailed in &mut self.files {
            if tailed.detached_at.is_some()
                && tailed.quiet_since.is_some_and(|since| now.duration_since(since) >= ROTATE_WAIT)
            {
                tailed.finishing = true;
            }
        }
        // Rotated files hold older lines: read them first.
        self.files.sort_by_key(|t| t.detached_at.is_none());
        self.started = true;
        events
    }

    fn open(&mut self, path: &Path, from_end: bool, now: Instant, events: &mut Vec<TailEvent>) {
        let opened = open_regular(path).and_then(|mut file| {
            let id = identify(&file)?;
            let offset = if from_end { file.seek(SeekFrom::End(0))? } else { 0 };
            let size = file.metadata()?.len();
            Ok((file, id, offset, size))
        });
        match opened {
            Ok((file, id, offset, size)) => {
                events.push(TailEvent::Opened { path: path.to_path_buf(), offset });
                self.files.push(Tailed {
                    path: path.to_path_buf(),
                    id,
                    reader: LineReader::resuming(file, self.max_line, offset, 0),
                    detached_at: None,
                    quiet_since: Some(now),
                    finishing: false,
                    done: false,
                    last_size: size,
                    cr_only_reported: false,
                });
            }
            Err(error) => {
                events
                    .push(TailEvent::Failed { path: path.to_path_buf(), error: error.to_string() });
            }
        }
    }

    /// The file at `index` was truncated in place: recover what was written since the last
    /// read from logrotate's copy, then read the file again from its start.
    /// `seen_before` is the size it had before it shrank: what was written and unread is lost
    /// unless the copy has it.
    fn truncated(
        &mut self,
        index: usize,
        seen_before: u64,
        now: Instant,
        events: &mut Vec<TailEvent>,
    ) {
        let tailed = &self.files[index];
        let (path, id, offset, line, last_size) = (
            tailed.path.clone(),
            tailed.id,
            tailed.reader.offset(),
            tailed.reader.line_number(),
            seen_before,
        );
        let copy = self.recover_copy(&path, &id, offset, line, now);
        let (recovered_from, recovered, lost) = match &copy {
            Some(copy) => (Some(copy.path.clone()), copy.last_size - offset, 0),
            None => (None, 0, last_size.saturating_sub(offset)),
        };
        events.push(TailEvent::Truncated { path: path.clone(), recovered_from, recovered, lost });
        // The truncated file itself, from 0.
        self.files.remove(index);
        if let Some(copy) = copy {
            self.files.insert(0, copy);
        }
        self.open(&path, false, now, events);
    }

    /// Finds logrotate's copy of a file fingerprinted `id` that reaches `offset`, positioned
    /// there and marked as detached (drained, then closed).
    fn recover_copy(
        &self,
        path: &Path,
        id: &FileId,
        offset: u64,
        line: u64,
        now: Instant,
    ) -> Option<Tailed> {
        rotated_siblings(path).into_iter().find_map(|candidate| {
            let mut file = open_regular(&candidate).ok()?;
            let metadata = file.metadata().ok()?;
            if not_regular(&metadata).is_some() || metadata.len() < offset || !same_head(&file, id)
            {
                return None;
            }
            let (dev, ino) = dev_ino(&metadata);
            if dev == id.dev && ino == id.ino {
                return None; // the truncated file itself under another name
            }
            file.seek(SeekFrom::Start(offset)).ok()?;
            Some(Tailed {
                path: candidate,
                id: FileId { dev, ino, ..*id },
                reader: LineReader::resuming(file, self.max_line, offset, line),
                detached_at: Some(now),
                quiet_since: Some(now),
                finishing: false,
                done: false,
                last_size: metadata.len(),
                cr_only_reported: false,
            })
        })
    }

    /// Finds a checkpointed file again, wherever rotation moved it, and reads on from its
    /// checkpoint.
    fn resume_one(
        &mut self,
        checkpoint: FileCheckpoint,
        now: Instant,
        events: &mut Vec<TailEvent>,
    ) {
        let mut candidates = vec![checkpoint.path.clone()];
        candidates.extend(rotated_siblings(&checkpoint.path));
        if self.is_glob
            && let Ok(paths) = glob::glob(&self.pattern.to_string_lossy())
        {
            candidates.extend(paths.filter_map(Result::ok));
        }
        let by_inode = candidates.iter().find_map(|path| {
            let file = open_regular(path).ok()?;
            let metadata = file.metadata().ok()?;
            let (dev, ino) = dev_ino(&metadata);
            (dev == checkpoint.id.dev && ino == checkpoint.id.ino && metadata.is_file())
                .then(|| (path.clone(), file, metadata.len()))
        });
        let active = |path: &Path| -> bool {
            if self.is_glob {
                glob::Pattern::new(&self.pattern.to_string_lossy())
                    .is_ok_and(|p| p.matches_path(path))
            } else {
                path == self.pattern
            }
        };
        match by_inode {
            Some((path, mut file, size))
                if size >= checkpoint.offset && same_head(&file, &checkpoint.id) =>
            {
                if file.seek(SeekFrom::Start(checkpoint.offset)).is_err() {
                    return;
                }
                let detached = !active(&path);
                events.push(TailEvent::Opened { path: path.clone(), offset: checkpoint.offset });
                self.files.push(Tailed {
                    path,
                    id: checkpoint.id,
                    reader: LineReader::resuming(
                        file,
                        self.max_line,
                        checkpoint.offset,
                        checkpoint.line,
                    ),
                    detached_at: detached.then_some(now),
                    quiet_since: Some(now),
                    finishing: false,
                    done: false,
                    last_size: size,
                    cr_only_reported: false,
                });
            }
            found => {
                // Truncated while skewtail was away (or the inode was reused): the lines after
                // the checkpoint are in logrotate's copy, if there is one.
                let copy = self.recover_copy(
                    &checkpoint.path,
                    &checkpoint.id,
                    checkpoint.offset,
                    checkpoint.line,
                    now,
                );
                match copy {
                    Some(copy) => {
                        events.push(TailEvent::Truncated {
                            path: checkpoint.path.clone(),
                            recovered_from: Some(copy.path.clone()),
                            recovered: copy.last_size - checkpoint.offset,
                            lost: 0,
                        });
                        self.files.push(copy);
                    }
                    None if found.is_some() => events.push(TailEvent::Truncated {
                        path: checkpoint.path.clone(),
                        recovered_from: None,
                        recovered: 0,
                        lost: 0,
                    }),
                    None => events.push(TailEvent::Gone { path: checkpoint.path }),
                }
            }
        }
    }

    /// Files open now (read them in order: rotated files come before the current one).
    pub fn n_files(&self) -> usize {
        self.files.len()
    }

    /// The path file `index` was found at.
    pub fn path_of(&self, index: usize) -> Option<&Path> {
        self.files.get(index).map(|tailed| tailed.path.as_path())
    }

    /// The next complete line of file `index`, or [`Next::End`] when it has none yet.
    pub fn next_line_from(&mut self, index: usize, now: Instant) -> io::Result<Next<'_>> {
        let Some(tailed) = self.files.get_mut(index) else { return Ok(Next::End) };
        tailed.reader.clear_eof();
        let finishing = tailed.finishing;
        let next = tailed.reader.next_line(finishing)?;
        match next {
            Next::End => {
                tailed.quiet_since.get_or_insert(now);
                if finishing {
                    tailed.done = true;
                }
            }
            _ => tailed.quiet_since = None,
        }
        Ok(next)
    }

    /// Closes the rotated files that have been read to their end; returns them.
    pub fn close_finished(&mut self) -> Vec<TailEvent> {
        let mut events = Vec::new();
        self.files.retain(|tailed| {
            if tailed.done {
                events.push(TailEvent::Finished { path: tailed.path.clone() });
            }
            !tailed.done
        });
        events
    }
}

impl Tailed {
    fn reader_file(&self) -> &File {
        self.reader.get_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Reads every line the tailer has now, rotated files first, as strings.
    fn read_all(tailer: &mut Tailer, now: Instant) -> Vec<String> {
        let mut lines = Vec::new();
        for _ in 0..10_000 {
            let mut progressed = false;
            for file in 0..tailer.n_files() {
                while let Next::Line(line) = tailer.next_line_from(file, now).unwrap() {
                    lines.push(String::from_utf8_lossy(line.bytes).into_owned());
                    progressed = true;
                }
            }
            tailer.close_finished();
            if !progressed {
                return lines;
            }
        }
        panic!("the tailer never ran dry");
    }

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn appends_partial_lines_and_files_that_appear_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut tailer = Tailer::new(path.clone(), false, 1000);
        let t0 = Instant::now();
        assert!(matches!(tailer.poll(t0)[..], [TailEvent::Missing { .. }]));
        append(&path, "one\ntw");
        tailer.poll(t0);
        assert_eq!(read_all(&mut tailer, t0), ["one"], "a partial line waits for its newline");
        append(&path, "o\nthree\n");
        tailer.poll(t0);
        assert_eq!(read_all(&mut tailer, t0), ["two", "three"]);
    }

    #[test]
    fn a_renamed_file_is_drained_before_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, "a\n");
        let mut tailer = Tailer::new(path.clone(), false, 1000);
        let t0 = Instant::now();
        tailer.poll(t0);
        assert_eq!(read_all(&mut tailer, t0), ["a"]);
        // nginx-style: rename, keep writing to the old descriptor, then reopen.
        let mut old = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        old.write_all(b"b\nc").unwrap();
        append(&path, "new\n");
        let events = tailer.poll(t0);
        assert!(events.iter().any(|e| matches!(e, TailEvent::Rotated { .. })), "{events:?}");
        old.write_all(b"\n").unwrap();
        assert_eq!(read_all(&mut tailer, t0), ["b", "c", "new"]);
        // After ROTATE_WAIT of quiet, the old file is closed.
        let later = t0 + ROTATE_WAIT + Duration::from_secs(1);
        tailer.poll(later);
        read_all(&mut tailer, later);
        assert_eq!(tailer.n_files(), 1);
    }

    #[test]
    fn copytruncate_is_recovered_from_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, "first line of the file\n");
        let mut tailer = Tailer::new(path.clone(), false, 1000);
        let t0 = Instant::now();
        tailer.poll(t0);
        assert_eq!(read_all(&mut tailer, t0), ["first line of the file"]);
        // Written after the last read, then logrotate copies and truncates.
        append(&path, "unread 1\nunread 2\n");
        std::fs::copy(&path, dir.path().join("access.log.1")).unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
        append(&path, "after\n");
        let events = tailer.poll(t0);
        assert!(
            events.iter().any(|e| matches!(
                e,
                TailEvent::Truncated { recovered_from: Some(_), lost: 0, .. }
            )),
            "{events:?}"
        );
        assert_eq!(read_all(&mut tailer, t0), ["unread 1", "unread 2", "after"]);
    }

    #[test]
    fn copytruncate_without_a_copy_says_what_was_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, "first\n");
        let mut tailer = Tailer::new(path.clone(), false, 1000);
        let t0 = Instant::now();
        tailer.poll(t0);
        read_all(&mut tailer, t0);
        append(&path, "gone\n");
        tailer.poll(t0); // sees 12 bytes, reads nothing yet
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
        let events = tailer.poll(t0);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, TailEvent::Truncated { recovered_from: None, lost: 5, .. })),
            "{events:?}"
        );
    }

    #[test]
    fn a_file_rewritten_in_place_is_read_again_from_its_start() {
        // Same inode, new content longer than what was read: the fingerprint catches it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, "aaaa\n");
        let mut tailer = Tailer::new(path.clone(), false, 1000);
        let t0 = Instant::now();
        tailer.poll(t0);
        read_all(&mut tailer, t0);
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all(b"bbbb\ncccc\n").unwrap();
        drop(file);
        tailer.poll(t0);
        assert_eq!(read_all(&mut tailer, t0), ["bbbb", "cccc"]);
    }

    #[test]
    fn a_glob_gains_files_and_a_vanished_directory_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let mut tailer = Tailer::new(logs.join("*.log"), true, 1000);
        let t0 = Instant::now();
        append(&logs.join("a.log"), "old\n");
        tailer.poll(t0);
        assert!(read_all(&mut tailer, t0).is_empty(), "start_at = end at start-up");
        append(&logs.join("b.log"), "b1\n");
        tailer.poll(t0);
        assert_eq!(read_all(&mut tailer, t0), ["b1"], "a file that appears later is read whole");
        std::fs::remove_dir_all(&logs).unwrap();
        tailer.poll(t0);
        read_all(&mut tailer, t0);
        std::fs::create_dir(&logs).unwrap();
        append(&logs.join("a.log"), "back\n");
        tailer.poll(t0);
        assert_eq!(read_all(&mut tailer, t0), ["back"]);
    }

    #[test]
    fn a_fifo_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe.log");
        let status = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(status.success());
        let mut tailer = Tailer::new(path, false, 1000);
        let events = tailer.poll(Instant::now());
        assert!(events.iter().any(|e| matches!(e, TailEvent::NotRegular { .. })), "{events:?}");
        assert_eq!(tailer.n_files(), 0);
    }

    #[test]
    fn resuming_finds_files_wherever_rotation_moved_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, "one\ntwo\n");
        let mut tailer = Tailer::new(path.clone(), false, 1000);
        let t0 = Instant::now();
        tailer.poll(t0);
        assert_eq!(read_all(&mut tailer, t0), ["one", "two"]);
        let checkpoint = tailer.checkpoint();
        drop(tailer);
        // While skewtail is away: more lines, a rename rotation, a new file.
        append(&path, "three\n");
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        append(&path, "four\n");
        let mut tailer = Tailer::new(path.clone(), true, 1000);
        tailer.resume(checkpoint);
        tailer.poll(t0);
        assert_eq!(read_all(&mut tailer, t0), ["three", "four"], "start_at no longer applies");
        // And a copytruncate while away.
        let checkpoint = tailer.checkpoint();
        drop(tailer);
        append(&path, "five\n");
        std::fs::copy(&path, dir.path().join("access.log.2")).unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
        append(&path, "six\n");
        let mut tailer = Tailer::new(path.clone(), true, 1000);
        tailer.resume(checkpoint.into_iter().filter(|c| c.path == path).collect());
        tailer.poll(t0);
        assert_eq!(read_all(&mut tailer, t0), ["five", "six"]);
    }

    #[test]
    fn a_reused_inode_is_not_taken_for_the_checkpointed_file() {
        // While skewtail is away, the file is replaced by one that has the same device and
        // inode (as after delete and create) but other content: its fingerprint differs, so
        // it is read from its start, not from the old offset.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, "old line one\nold line two\n");
        let mut tailer = Tailer::new(path.clone(), false, 1000);
        let t0 = Instant::now();
        tailer.poll(t0);
        assert_eq!(read_all(&mut tailer, t0).len(), 2);
        let checkpoint = tailer.checkpoint();
        drop(tailer);
        let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
        file.write_all(b"NEW 1\nNEW 2\nNEW 3\nNEW 4\nNEW 5\n").unwrap();
        drop(file);
        let mut tailer = Tailer::new(path.clone(), true, 1000);
        tailer.resume(checkpoint);
        tailer.poll(t0);
        assert_eq!(read_all(&mut tailer, t0), ["NEW 1", "NEW 2", "NEW 3", "NEW 4", "NEW 5"]);
    }

    #[test]
    fn a_line_longer_than_the_maximum_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, &format!("before\n{}\nafter\n", "x".repeat(5000)));
        let mut tailer = Tailer::new(path, false, 1000);
        let t0 = Instant::now();
        tailer.poll(t0);
        let mut seen = Vec::new();
        for _ in 0..10 {
            match tailer.next_line_from(0, t0).unwrap() {
                Next::Line(line) => seen.push(String::from_utf8_lossy(line.bytes).into_owned()),
                Next::TooLong { number, length } => {
                    seen.push(format!("too long: #{number}, {length} bytes"))
                }
                Next::End => break,
            }
        }
        assert_eq!(seen, ["before", "too long: #2, 5000 bytes", "after"]);
    }

    #[test]
    fn a_followed_cr_only_file_is_read_line_by_line_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let text: String = (0..500).map(|i| format!("line {i}\r")).collect();
        append(&path, &text);
        let mut tailer = Tailer::new(path, false, 1000);
        let t0 = Instant::now();
        tailer.poll(t0);
        let lines = read_all(&mut tailer, t0);
        assert_eq!(lines.len(), 500, "the last line too: its CR ends it");
        assert_eq!(lines[499], "line 499");
        let events = tailer.poll(t0);
        assert!(events.iter().any(|e| matches!(e, TailEvent::CrOnly { .. })), "{events:?}");
        assert!(!tailer.poll(t0).iter().any(|e| matches!(e, TailEvent::CrOnly { .. })), "once");
    }
}
