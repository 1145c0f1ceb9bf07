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

/// An error and its causes in one line, `outer: inner: innermost` (as `anyhow` prints with
/// `{:#}`), for a message that goes into a [`ConfigError`].
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        // A transparent wrapper repeats its inner error: say it once.
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}
