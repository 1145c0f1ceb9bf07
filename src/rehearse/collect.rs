//! Finding the rehearsal's requests in the balancer's access log: the lines written after the
//! rehearsal began that carry its mark, counted per backend.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use super::RehearseError;
use crate::parse::Parser;
use crate::source::{LineReader, Next};

/// The rehearsal's lines as found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Marked lines found.
    pub lines: u64,
    /// Requests per backend.
    pub per_backend: BTreeMap<String, u64>,
    /// Marked lines that reached no backend (`-`).
    pub no_backend: u64,
    /// Marked lines the format could not read.
    pub unparsed: u64,
}

/// The log's size now: where the rehearsal's lines will start.
pub fn start_offset(log: &Path) -> u64 {
    std::fs::metadata(log).map_or(0, |m| m.len())
}

/// Reads `log` from `offset` until `expected` marked lines are found or `settle` passes
/// without a new one; lines of pools other than `pool` (when given) are left out.
pub fn collect(
    log: &Path,
    offset: u64,
    mark: &str,
    parser: &mut Parser,
    pool: Option<&str>,
    expected: u64,
    settle: Duration,
) -> Result<Found, RehearseError> {
    let failed = |source| RehearseError::Log { path: log.to_path_buf(), source };
    let mut file = crate::source::open_regular(log).map_err(failed)?;
    // Rotated or truncated since: the rehearsal's lines start at the beginning.
    let offset = if file.metadata().map_err(failed)?.len() < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(offset)).map_err(failed)?;
    let mut reader = LineReader::new(file, crate::source::DEFAULT_MAX_LINE_BYTES);
    let finder = memchr::memmem::Finder::new(mark.as_bytes());
    let mut found = Found::default();
    let mut last_progress = Instant::now();
    while found.lines < expected && last_progress.elapsed() < settle {
        match reader.next_line(false).map_err(failed)? {
            Next::Line(line) => {
                if finder.find(line.bytes).is_none() {
                    continue;
                }
                last_progress = Instant::now();
                let Ok(record) = parser.parse(line.bytes) else {
                    found.unparsed += 1;
                    found.lines += 1;
                    continue;
                };
                let in_pool = match (pool, record.pool) {
                    (Some(wanted), Some(name)) => name == wanted.as_bytes(),
                    _ => true,
                };
                if !in_pool {
                    continue;
                }
                found.lines += 1;
                match record.backend {
                    Some(backend) => {
                        let name = String::from_utf8_lossy(backend).into_owned();
                        *found.per_backend.entry(name).or_default() += 1;
                    }
                    None => found.no_backend += 1,
                }
            }
            Next::TooLong { .. } => {}
            Next::End => {
                // The balancer may still be writing (nginx buffers, HAProxy's syslog): this
                // waits on a real balancer in real time, bounded by `settle`.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(Duration::from_millis(50));
                reader.clear_eof();
            }
        }
    }
    Ok(found)
}
