//! The `skewtail` binary: parse the command line, set up logging, run, map the outcome to an
//! exit code (0 success, 1 alerts with `--fail-on-alert`, 2 usage or config error).

use std::process::ExitCode;

use clap::Parser as _;
use skewtail::cli::{Cli, Command, LogFormat, Outcome, execute};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run(_)) { "info" } else { "warn" };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SKEWTAIL_LOG")
                .unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format() {
        LogFormat::Human => {
            logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
        }
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
    }
    match execute(cli) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::AlertsFired | Outcome::Findings) => ExitCode::from(1),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(error) => {
            // `replay | head` closing the pipe is not a failure (as ripgrep does).
            let broken_pipe = error.chain().any(|cause| {
                let io = cause.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
                let json =
                    cause.downcast_ref::<serde_json::Error>().and_then(|e| e.io_error_kind());
                io.or(json) == Some(std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            #[allow(clippy::print_stderr)] // the one place errors reach the user
            {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(2)
        }
    }
}
