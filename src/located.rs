//! Where a setting is in the config file, and an error that says so: every module that owns
//! settings reports its problems as `file:line: problem` with the fix.

use std::path::{Path, PathBuf};

/// Config files are refused above this size (1 MiB): a config is a page of TOML, and a
/// wrong path (`/dev/zero`, a log) must not be read until memory runs out.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A config section and the line it starts on.
#[derive(Debug, Clone)]
pub struct Located<T> {
    /// 1-based line.
    pub line: usize,
    /// The section.
    pub value: T,
}

/// A config problem, located.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", located(path, *line))]
pub struct ConfigError {
    /// The config file.
    pub path: PathBuf,
    /// 1-based line; 0 when the problem is the file as a whole.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// `path:line`, or just the path for a problem with the whole file.
fn located(path: &Path, line: usize) -> String {
    if line == 0 { path.display().to_string() } else { format!("{}:{line}", path.display()) }
}
