//! Sending the rehearsal's requests: paced so the rate is never exceeded, a bounded number in
//! flight, each marked so its access-log line can be found again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::RehearseError;

/// Where requests go, and how many.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The balancer URL.
    pub url: reqwest::Url,
    /// How many requests.
    pub requests: u64,
    /// At most this many a second (on average two thirds of it: the gaps are random).
    pub rate_per_s: f64,
    /// At most this many in flight.
    pub concurrency: usize,
    /// The query parameter value that marks this rehearsal's requests.
    pub mark: String,
    /// Whether to draw a progress bar.
    pub progress: bool,
}

/// What the balancer answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadResult {
    /// Requests sent.
    pub sent: u64,
    /// Answered with a 2xx or 3xx.
    pub ok: u64,
    /// Answered with a 4xx or 5xx.
    pub http_errors: u64,
    /// Not answered (refused, reset, timed out).
    pub failed: u64,
}

/// The query parameter name that carries the mark.
pub const MARK_PARAMETER: &str = "skewtail_rehearsal";

/// Sends the plan's requests; returns what came back.
pub fn send(plan: &LoadPlan) -> Result<LoadResult, RehearseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RehearseError::Load(e.into()))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| RehearseError::Load(e.into()))?;
    let bar = if plan.progress { ProgressBar::new(plan.requests) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} requests, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    runtime.block_on(async {
        let slots = Arc::new(tokio::sync::Semaphore::new(plan.concurrency.max(1)));
        // Gaps of 1 to 2 times 1/rate, at random: never faster than the rate, and never in
        // step with a round-robin balancer's other traffic (a fixed period can lock onto the
        // rotation and land on some servers more than others).
        let base = Duration::from_secs_f64(1.0 / plan.rate_per_s);
        let mut jitter = SmallRng::seed_from_u64(
            plan.mark.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
        );
        let mut next = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for n in 0..plan.requests {
            tokio::time::sleep_until(next).await;
            next = tokio::time::Instant::now() + base.mul_f64(1.0 + jitter.random::<f64>());
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let mut url = plan.url.clone();
            url.query_pairs_mut().append_pair(MARK_PARAMETER, &format!("{}-{n}", plan.mark));
            let (client, counts, bar) = (client.clone(), counts.clone(), bar.clone());
            tasks.push(tokio::spawn(async move {
                let outcome = match client.get(url).send().await {
                    Ok(response) if response.status().as_u16() < 400 => 0,
                    Ok(_) => 1,
                    Err(_) => 2,
                };
                counts[outcome].fetch_add(1, Ordering::Relaxed);
                bar.inc(1);
                drop(permit);
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    bar.finish_and_clear();
    let [ok, http_errors, failed] = [0, 1, 2].map(|i| counts[i].load(Ordering::Relaxed));
    Ok(LoadResult { sent: ok + http_errors + failed, ok, http_errors, failed })
}
