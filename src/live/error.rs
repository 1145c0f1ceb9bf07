//! Why the sidecar cannot start, reload or stop cleanly: each names what to change.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::located::ConfigError;
use crate::pipeline::FinishError;

/// A sidecar that cannot start, take a new config, or finish.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Nothing to follow.
    #[error("no [[input]] to follow; add one with `path` and `format`")]
    NoInputs,
    /// An input whose format names no backend: nothing to judge.
    #[error("input `{input}`: {why}")]
    NoBackendField {
        /// The input's name.
        input: String,
        /// Why, and which formats would do.
        why: String,
    },
    /// An input's path names something that is not a regular file (a FIFO, a device).
    #[error("input `{input}`: {} {why}", path.display())]
    NotRegular {
        /// The input's name.
        input: String,
        /// Its path.
        path: PathBuf,
        /// What it is, and what to do instead.
        why: &'static str,
    },
    /// The config (or the alerting in it) is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state directory cannot be used.
    #[error(
        "cannot use the state directory {}; give a writable one with --state-dir or `state_dir`",
        dir.display()
    )]
    StateDirectory {
        /// The directory.
        dir: PathBuf,
        /// The error from the system.
        source: std::io::Error,
    },
    /// A syslog input's address cannot be listened on.
    #[error(
        "input `{input}`: cannot listen for syslog on {listen}; choose another address in `syslog`"
    )]
    Syslog {
        /// The input's name.
        input: String,
        /// The address asked for.
        listen: crate::source::syslog::SyslogListen,
        /// The error from the system.
        source: std::io::Error,
    },
    /// Standard input's reader thread could not start.
    #[error("input `{input}`: cannot start reading standard input")]
    Stdin {
        /// The input's name.
        input: String,
        /// The error from the system.
        source: std::io::Error,
    },
    /// The async runtime for delivery and the endpoint could not start.
    #[error("cannot start the async runtime for alert delivery")]
    Runtime(#[source] std::io::Error),
    /// The HTTP endpoint's address cannot be listened on.
    #[error(
        "cannot listen on {addr} for /metrics; choose another with --listen or `[server] listen`, or `off`"
    )]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The error from the system.
        source: std::io::Error,
    },
    /// The listener, once bound, could not be served.
    #[error("cannot serve the HTTP endpoint: {doing}")]
    Serve {
        /// What failed.
        doing: &'static str,
        /// The error from the system.
        source: std::io::Error,
    },
    /// A reload could not carry the pipeline's state over to the new config.
    #[error("cannot carry the pipeline's state over")]
    CarryOver(#[source] serde_json::Error),
    /// The end of the run could not be written.
    #[error("cannot write the summary")]
    Summary(#[source] FinishError),
}
