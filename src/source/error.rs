//! Why a source could not be read: each error names the file and, where there is one, the fix.

use std::io;
use std::path::{Path, PathBuf};

/// A file or an argument that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The path does not exist.
    #[error("{}: no such file; check the path", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The file exists but this user may not read it.
    #[error("{}: permission denied; run as a user that can read the log (often group `adm`)", path.display())]
    PermissionDenied {
        /// The path given.
        path: PathBuf,
    },
    /// Not a file that can be read once (a FIFO, a device, a directory where a file was meant).
    #[error("{}: {source}", path.display())]
    NotRegular {
        /// The path given.
        path: PathBuf,
        /// What it is, and what to do instead.
        source: io::Error,
    },
    /// Opening, listing or reading failed.
    #[error("{}: {doing}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done: "cannot open", "read failed", "cannot list the directory".
        doing: &'static str,
        /// The error from the system.
        source: io::Error,
    },
    /// A directory was given that holds no files (they are searched recursively).
    #[error("{}: the directory holds no files", path.display())]
    EmptyDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// A glob pattern that is not one.
    #[error("{pattern}: not a valid pattern")]
    BadPattern {
        /// The pattern given.
        pattern: String,
        /// Where it is wrong.
        source: glob::PatternError,
    },
    /// Object storage refused or failed a request.
    #[error(
        "{url}: {doing}; check the URL, the credentials in the environment (AWS_*, GOOGLE_*, AZURE_*) and the network"
    )]
    Object {
        /// The object or the tree's URL.
        url: String,
        /// What was being done.
        doing: &'static str,
        /// The store's error (boxed: it is large, and a block of lines carries a source error).
        source: Box<object_store::Error>,
    },
    /// An object storage URL that is not one.
    #[error(
        "{url}: not an object storage URL ({reason}); write it as s3://bucket/prefix/, gs://bucket/prefix/ or az://container/prefix/"
    )]
    BadObjectUrl {
        /// The URL given.
        url: String,
        /// Why it is not one.
        reason: String,
    },
    /// More streams overlap in time than may be open at once.
    #[error(
        "{streams} streams overlap in time at {}, more than the {limit} that may be open at once; replay fewer logs together (each rotated set, cloud balancer node or export shard is a stream)",
        crate::parse::time::format_rfc3339(*at_ms)
    )]
    TooManyOverlapping {
        /// Streams that would be open.
        streams: usize,
        /// The most that may be.
        limit: usize,
        /// Where in the logs' time, Unix ms.
        at_ms: i64,
    },
    /// A glob pattern that matches no file.
    #[error("{pattern}: no file matches")]
    NoMatch {
        /// The pattern given.
        pattern: String,
    },
}

impl SourceError {
    /// An error opening `path` for reading once, with the likely fix.
    pub fn opening(path: &Path, error: io::Error) -> Self {
        let path = path.to_path_buf();
        match error.kind() {
            io::ErrorKind::NotFound => Self::NotFound { path },
            io::ErrorKind::PermissionDenied => Self::PermissionDenied { path },
            io::ErrorKind::InvalidInput => Self::NotRegular { path, source: error },
            _ => Self::Io { path, doing: "cannot open", source: error },
        }
    }

    /// A read of `path` that failed.
    pub fn reading(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io { path: path.into(), doing: "read failed", source }
    }
}

/// A source's result.
pub type Result<T> = std::result::Result<T, SourceError>;
