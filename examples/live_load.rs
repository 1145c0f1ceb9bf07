//! Appends a synthetic access log to a file in real time, for the live benchmarks: each line
//! carries the wall-clock time and is written when that time comes (in 10 ms batches).
//!
//! `cargo run --release --example live_load -- --rate 5000 --seconds 300 /tmp/live/access.log`
//!
//! `--marks FILE` records, for each 10 s window, when the line that closes it in skewtail's
//! event clock (the first one at or after the window's end plus the lateness) was written:
//! `window_end_ms written_ms` per line, to measure how soon after that an alert leaves.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use skewtail::synth::{Incident, Scenario};

/// Append a synthetic log in real time.
#[derive(Debug, Parser)]
struct Args {
    /// Mean requests per second.
    #[arg(long, default_value_t = 5000)]
    rate: u32,
    /// How long to write, seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    /// Backends in the pool.
    #[arg(long, default_value_t = 8)]
    backends: usize,
    /// Replace every backend address with a new one each minute (pod churn): the pool has
    /// `--backends` addresses at a time, all new every minute.
    #[arg(long)]
    churn: bool,
    /// From this second on, backend 3 takes 45% of the traffic (with errors and latency).
    #[arg(long)]
    skew_from: Option<u32>,
    /// ... until this second.
    #[arg(long)]
    skew_to: Option<u32>,
    /// Rename the file to FILE.1 (nginx-style) every this many seconds.
    #[arg(long)]
    rotate_every: Option<u32>,
    /// skewtail's window and lateness, seconds (for `--marks`).
    #[arg(long, default_value_t = 10)]
    window_s: u32,
    #[arg(long, default_value_t = 5)]
    lateness_s: u32,
    /// Where to record when each window's closing line was written.
    #[arg(long)]
    marks: Option<PathBuf>,
    /// The log file to append to.
    out: PathBuf,
}

fn now_ms() -> i64 {
    skewtail::clock::wall_clock_ms()
}

fn open(path: &PathBuf) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut file = open(&args.out)?;
    let mut marks = args.marks.as_ref().map(std::fs::File::create).transpose()?;
    let start_ms = now_ms().div_euclid(1000) * 1000 + 1000;
    let window_ms = i64::from(args.window_s) * 1000;
    let lateness_ms = i64::from(args.lateness_s) * 1000;
    let mut next_close = (start_ms.div_euclid(window_ms) + 1) * window_ms;
    let rotate_every_ms = i64::from(args.rotate_every.unwrap_or(0)) * 1000;
    let mut next_rotation = args.rotate_every.map(|_| start_ms + rotate_every_ms);
    let mut batch_newest_ms = start_ms;
    let mut batch: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut batch_until = start_ms;
    let mut n_lines = 0u64;
    // One minute of log at a time, each minute its own scenario on the continuous clock.
    for minute in 0..args.seconds.div_ceil(60) {
        let block_start_s = minute * 60;
        let duration_s = (args.seconds - block_start_s).min(60);
        let first_backend = if args.churn { minute as usize * args.backends } else { 0 };
        let backends = skewtail::synth::backend_addresses(first_backend + args.backends)
            .split_off(first_backend);
        let incidents = match (args.skew_from, args.skew_to) {
            (Some(from), to) => {
                let to = to.unwrap_or(args.seconds);
                let start = from.max(block_start_s);
                let end = to.min(block_start_s + duration_s);
                (start < end)
                    .then(|| Incident {
                        start_s: start - block_start_s,
                        duration_s: end - start,
                        backend: 2,
                        share: Some(0.45),
                        error_rate: 0.12,
                        latency_factor: 12.0,
                        ..Incident::default()
                    })
                    .into_iter()
                    .collect()
            }
            _ => Vec::new(),
        };
        let scenario = Scenario {
            start_ms: start_ms + i64::from(block_start_s) * 1000,
            duration_s,
            rate_per_s: f64::from(args.rate),
            backends,
            incidents,
            seed: 7 + u64::from(minute),
            ..Scenario::seed_incident()
        };
        scenario.write_lines(|time_ms, line| {
            if time_ms >= batch_until {
                // Write the batch that is due; note which windows its lines close.
                file.write_all(&batch)?;
                batch.clear();
                let written = now_ms();
                while batch_newest_ms - lateness_ms >= next_close {
                    if let Some(marks) = marks.as_mut() {
                        writeln!(marks, "{next_close} {written}")?;
                    }
                    next_close += window_ms;
                }
                if next_rotation.is_some_and(|at| time_ms >= at) {
                    std::fs::rename(&args.out, args.out.with_extension("log.1"))?;
                    file = open(&args.out)?;
                    next_rotation = next_rotation.map(|at| at + rotate_every_ms);
                }
                // This line's 10 ms slot: wait for it.
                batch_until = time_ms - time_ms.rem_euclid(10) + 10;
                let wait = time_ms - now_ms();
                if wait > 0 {
                    // A real-time writer: it must wait for the wall clock.
                    #[allow(clippy::disallowed_methods)]
                    std::thread::sleep(Duration::from_millis(wait.unsigned_abs()));
                }
            }
            n_lines += 1;
            batch_newest_ms = time_ms;
            batch.extend_from_slice(line);
            Ok(())
        })?;
    }
    file.write_all(&batch)?;
    #[allow(clippy::print_stderr)]
    {
        eprintln!("wrote {n_lines} lines to {} at {} lines/s", args.out.display(), args.rate);
    }
    Ok(())
}
