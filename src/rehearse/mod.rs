//! Rehearse: the seed postmortem's "dance rehearsal". Send a bounded, paced number of marked
//! requests through a balancer ([`load`]), find exactly those in its access log
//! ([`collect`]), and test the split against the expected weights with the detector's
//! statistics ([`crate::detect::split`]).

pub mod collect;
mod error;
pub mod load;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::detect::DetectorConfig;
use crate::detect::split::{SplitVerdict, judge_split};
use crate::parse::Parser;
use collect::Found;
pub use error::RehearseError;
use load::{LoadPlan, LoadResult};

/// Everything a rehearsal needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The requests to send.
    pub load: LoadPlan,
    /// The balancer's access log.
    pub log: PathBuf,
    /// Its format.
    pub parser: Parser,
    /// Only this pool's lines (logs that name pools).
    pub pool: Option<String>,
    /// Expected shares, and where they come from; `None`: an even split over the backends seen.
    pub expected: Option<(Vec<(String, f64)>, String)>,
    /// How long to wait for the log to show the requests.
    pub settle: Duration,
    /// The statistics' thresholds.
    pub detector: DetectorConfig,
}

/// What a rehearsal found.
#[derive(Debug, Clone, Serialize)]
pub struct Rehearsal {
    /// The mark on its requests.
    pub mark: String,
    /// Requests sent.
    pub sent: u64,
    /// Answered 2xx/3xx.
    pub ok: u64,
    /// Answered 4xx/5xx.
    pub http_errors: u64,
    /// Not answered.
    pub failed: u64,
    /// Marked lines found in the log.
    pub found: u64,
    /// Marked lines that reached no backend.
    pub no_backend: u64,
    /// Marked lines the format could not read.
    pub unparsed: u64,
    /// Where the expected shares came from.
    pub expected_from: String,
    /// One verdict per backend.
    pub backends: Vec<SplitVerdict>,
    /// Whether every backend took its share.
    pub pass: bool,
}

/// A fresh mark: unlikely to appear in any log by chance.
pub fn new_mark() -> String {
    let nanos = std::time::Instant::now();
    let seed = [
        crate::clock::wall_clock_ms().to_string(),
        std::process::id().to_string(),
        format!("{nanos:?}"),
    ];
    crate::text::digest(&[&seed[0], &seed[1], &seed[2]], 16)
}

/// Runs the rehearsal.
pub fn rehearse(plan: &mut Plan) -> Result<Rehearsal, RehearseError> {
    let offset = collect::start_offset(&plan.log);
    let LoadResult { sent, ok, http_errors, failed } = load::send(&plan.load)?;
    let answered = ok + http_errors;
    let found: Found = collect::collect(
        &plan.log,
        offset,
        &plan.load.mark,
        &mut plan.parser,
        plan.pool.as_deref(),
        answered,
        plan.settle,
    )?;
    if found.lines == 0 && answered > 0 {
        return Err(RehearseError::NotLogged {
            answered,
            path: plan.log.clone(),
            parameter: load::MARK_PARAMETER,
            mark: plan.load.mark.clone(),
        });
    }
    let counts: Vec<(String, u64)> = found.per_backend.clone().into_iter().collect();
    let (expected, expected_from) = match &plan.expected {
        Some((shares, from)) => (shares.clone(), from.clone()),
        None => {
            let even = 1.0 / counts.len().max(1) as f64;
            (
                counts.iter().map(|(b, _)| (b.clone(), even)).collect(),
                format!("an even split over the {} backends seen", counts.len()),
            )
        }
    };
    let backends = judge_split(&counts, &expected, &plan.detector);
    let pass = backends.iter().all(|b| b.verdict == "ok");
    Ok(Rehearsal {
        mark: plan.load.mark.clone(),
        sent,
        ok,
        http_errors,
        failed,
        found: found.lines,
        no_backend: found.no_backend,
        unparsed: found.unparsed,
        expected_from,
        backends,
        pass,
    })
}

/// The human report: what was sent and found, a table of backends, and the verdict.
pub fn human(r: &Rehearsal, url: &str, rate: f64) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rehearsal {}: {} requests to {url} at up to {rate}/s: {} answered 2xx/3xx, {} 4xx/5xx, {} unanswered; {} found in the log",
        r.mark, r.sent, r.ok, r.http_errors, r.failed, r.found
    );
    let _ = writeln!(out, "expected: {}", r.expected_from);
    let _ = writeln!(
        out,
        "{:<32} {:>9} {:>7} {:>9}  verdict",
        "backend", "requests", "share", "expected"
    );
    for b in &r.backends {
        let expected = b.expected.map_or("-".to_string(), |e| format!("{:.1}%", e * 100.0));
        let verdict = match b.verdict {
            "ok" => "ok".to_string(),
            other => format!("{} (p = {:.1e})", other.to_uppercase(), b.p_value),
        };
        let name = crate::text::for_log(&b.backend);
        let _ = writeln!(
            out,
            "{name:<32} {:>9} {:>6.1}% {expected:>9}  {verdict}",
            b.requests,
            b.share * 100.0
        );
    }
    if r.no_backend > 0 || r.unparsed > 0 {
        let _ =
            writeln!(out, "{} reached no backend, {} could not be read", r.no_backend, r.unparsed);
    }
    let off: Vec<String> = r
        .backends
        .iter()
        .filter(|b| b.verdict != "ok")
        .map(|b| {
            let expected = b
                .expected
                .map_or("no weight".to_string(), |e| format!("{:.1}% expected", e * 100.0));
            format!(
                "{} took {:.1}% ({expected})",
                crate::text::for_log(&b.backend),
                b.share * 100.0
            )
        })
        .collect();
    if r.pass {
        let _ = writeln!(out, "PASS: the split matches the weights");
    } else {
        let _ = writeln!(out, "FAIL: the split is off: {}", off.join("; "));
    }
    out
}
