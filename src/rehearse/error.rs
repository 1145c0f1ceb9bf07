//! Why a rehearsal could not be run or judged.

use std::path::PathBuf;

/// A rehearsal that could not be run or judged.
#[derive(Debug, thiserror::Error)]
pub enum RehearseError {
    /// The load could not be sent (no runtime, no HTTP client).
    #[error("cannot send the rehearsal's requests")]
    Load(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The balancer's access log could not be read.
    #[error("{}: cannot read the balancer's access log", path.display())]
    Log {
        /// The access log.
        path: PathBuf,
        /// The error from the system.
        source: std::io::Error,
    },
    /// The requests were answered but none of them is in the log.
    #[error(
        "none of the {answered} answered requests appear in {} (marked `{parameter}={mark}-N`); is it this balancer's access log, and does its format log the query string?",
        path.display()
    )]
    NotLogged {
        /// Requests the balancer answered.
        answered: u64,
        /// The access log read.
        path: PathBuf,
        /// The query parameter carrying the mark.
        parameter: &'static str,
        /// This rehearsal's mark.
        mark: String,
    },
}
