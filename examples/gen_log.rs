//! Writes a synthetic access log in any built-in format (nginx `upstream` by default) for
//! benchmarks and experiments.
//!
//! `cargo run --release --example gen_log -- --hours 30 --rate 40 bench-data/access.log`
//! writes about 1 GB with one injected skew incident per 3 hours; `--format caddy` writes
//! Caddy's JSON instead.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::Parser;
use skewtail::synth::{Incident, LogStyle, Scenario};

/// Generate a synthetic access log.
#[derive(Debug, Parser)]
struct Args {
    /// Hours of log to write.
    #[arg(long, default_value_t = 3)]
    hours: u32,
    /// Mean requests per second.
    #[arg(long, default_value_t = 40)]
    rate: u32,
    /// Format to write (a built-in format name that names backends).
    #[arg(long, default_value = "upstream")]
    format: String,
    /// Distinct backends in the pool (each takes an equal share).
    #[arg(long, default_value_t = 8)]
    backends: usize,
    /// Minutes of log instead of hours (no incident): for scale benchmarks.
    #[arg(long)]
    minutes: Option<u32>,
    /// Output file.
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let style = LogStyle::from_format_name(&args.format)
        .ok_or_else(|| anyhow::anyhow!("no generator for format `{}`", args.format))?;
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&args.out)?);
    let mut n_lines = 0;
    if let Some(minutes) = args.minutes {
        let scenario = Scenario {
            duration_s: minutes * 60,
            rate_per_s: f64::from(args.rate),
            backends: skewtail::synth::backend_addresses(args.backends),
            incidents: Vec::new(),
            style,
            ..Scenario::seed_incident()
        };
        n_lines = scenario.write(&mut out)?;
        out.flush()?;
        #[allow(clippy::print_stderr)]
        {
            eprintln!("wrote {n_lines} lines to {}", args.out.display());
        }
        return Ok(());
    }
    // One 3-hour scenario after another, each with its own incident, on a continuous clock.
    for block in 0..args.hours.div_ceil(3) {
        let hours = (args.hours - block * 3).min(3);
        let scenario = Scenario {
            start_ms: skewtail::synth::SEED_INCIDENT_DAY_MS + i64::from(block) * 3 * 3_600_000,
            duration_s: hours * 3600,
            rate_per_s: f64::from(args.rate),
            seed: u64::from(block),
            incidents: vec![Incident {
                start_s: 90 * 60,
                duration_s: 20 * 60,
                backend: block as usize % 8,
                share: Some(0.45),
                error_rate: 0.1,
                latency_factor: 10.0,
                ..Incident::default()
            }],
            style,
            backends: skewtail::synth::backend_addresses(args.backends),
            ..Scenario::seed_incident()
        };
        n_lines += scenario.write(&mut out)?;
    }
    out.flush()?;
    #[allow(clippy::print_stderr)]
    {
        eprintln!("wrote {n_lines} lines to {}", args.out.display());
    }
    Ok(())
}
