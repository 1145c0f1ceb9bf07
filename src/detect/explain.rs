//! Explain: turns the judges' findings into alerts people can act on: a diagnosis of where the
//! fault most likely is (the seed incident cost an hour because everyone blamed the database),
//! and a one-line summary that starts with it.

use std::fmt::Write as _;

use super::event::{Diagnosis, Verdict};
use super::{
    AlertEvent, AlertKind, AlertState, Coverage, DetectorConfig, Direction, Evidence, Finding,
    PoolState, WHOLE_POOL,
};
use crate::window::WindowSummary;

/// Why an alert resolved, when that is not simply "back to normal".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Note {
    /// The backend served nothing for `forget_after_s` and was forgotten.
    Forgotten,
}

/// Formats a duration in seconds as `1h02m`, `25m10s` or `40s`.
pub fn fmt_duration(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

fn fmt_pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn fmt_ms(ms: Option<f64>) -> String {
    match ms {
        Some(ms) if ms >= 1000.0 => format!("{:.2} s", ms / 1000.0),
        Some(ms) => format!("{ms:.0} ms"),
        None => "n/a".to_string(),
    }
}

/// Fills in a backend's health in `window` against its peers': 5xx rates and p99s.
pub(super) fn add_health(evidence: &mut Evidence, backend: &str, window: &WindowSummary) {
    let (mut peer_errors, mut peer_requests) = (0u64, 0u64);
    let mut peer_p99: Vec<f64> = Vec::new();
    for summary in &window.backends {
        if &*summary.backend == backend {
            evidence.error_rate = super::stats::ratio(summary.errors, summary.requests);
            evidence.p99_ms = summary.p99_ms;
        } else {
            peer_errors += summary.errors;
            peer_requests += summary.requests;
            peer_p99.extend(summary.p99_ms);
        }
    }
    evidence.peer_error_rate = super::stats::ratio(peer_errors, peer_requests);
    peer_p99.sort_by(f64::total_cmp);
    evidence.peer_p99_ms = (!peer_p99.is_empty()).then(|| super::stats::median(&peer_p99));
}

/// Whether a backend's errors or latency stand out from its peers'.
fn unhealthy(e: &Evidence) -> bool {
    e.error_rate > 2.0 * e.peer_error_rate + 0.01 || e.p99_ms > e.peer_p99_ms.map(|p| p * 2.0)
}

fn health_text(e: &Evidence) -> String {
    format!(
        "its 5xx rate is {} (peers {}), p99 {} (peers {})",
        fmt_pct(e.error_rate),
        fmt_pct(e.peer_error_rate),
        fmt_ms(e.p99_ms),
        fmt_ms(e.peer_p99_ms)
    )
}

fn diagnose(finding: &Finding) -> Diagnosis {
    let e = &finding.evidence;
    let (verdict, reason) = match (finding.kind, finding.direction) {
        (AlertKind::Skew, Direction::Over) if unhealthy(e) => (
            Verdict::Balancer,
            format!(
                "the balancer sends it {:.1}x its share, and its errors and latency follow from \
                 that load: {}",
                e.ratio,
                health_text(e)
            ),
        ),
        (AlertKind::Skew, Direction::Over) => (
            Verdict::Balancer,
            format!(
                "the balancer sends it {:.1}x its share; it still answers like its peers",
                e.ratio
            ),
        ),
        (AlertKind::Skew, Direction::Under) => (
            Verdict::Balancer,
            "the balancer sends it less than its share (a weight, a hash, or a health check \
             holding it back)"
                .to_string(),
        ),
        (AlertKind::Drop, _) if e.flapping => (
            Verdict::Balancer,
            "it keeps leaving and rejoining rotation: its health checks flap".to_string(),
        ),
        (AlertKind::Drop, _) => (
            Verdict::Balancer,
            "the balancer sends it nothing: it is down, failing its health checks, or out of \
             the balancer's config"
                .to_string(),
        ),
        (AlertKind::Unexpected, _) => (
            Verdict::Balancer,
            format!(
                "the balancer sends traffic to a backend the weights do not name: the balancer's \
                 config and skewtail's weights disagree{}",
                e.closest_configured
                    .as_ref()
                    .map(|c| format!(" (closest configured: {c})"))
                    .unwrap_or_default()
            ),
        ),
        (AlertKind::Spike, _) => (
            Verdict::Load,
            "an even surge: every backend's share is as usual, so the balancer splits it right"
                .to_string(),
        ),
        (AlertKind::Errors | AlertKind::Latency, _) if &*finding.backend == WHOLE_POOL => (
            Verdict::SharedDependency,
            "every backend fails alike at even shares: look behind them, at what they all \
             depend on (a database, a shared service)"
                .to_string(),
        ),
        (AlertKind::Errors | AlertKind::Latency, _) => (
            Verdict::Backend,
            format!(
                "it is {} at its normal share ({} of the pool's requests): the fault is in that \
                 server, not in the balancer",
                if finding.kind == AlertKind::Errors { "failing" } else { "slow" },
                fmt_pct(e.observed_share)
            ),
        ),
    };
    Diagnosis { verdict, reason }
}

fn describe(finding: &Finding, pool: &str, config: &DetectorConfig) -> String {
    let (backend, e) = (&*finding.backend, &finding.evidence);
    let duration = fmt_duration(e.duration_s);
    let firing = finding.state == AlertState::Firing;
    let span = format!("{}s", config.for_s.max(config.window_s));
    match (finding.state, finding.kind, finding.direction, finding.note) {
        (AlertState::Resolved, _, _, Some(Note::Forgotten)) => format!(
            "{backend} has served nothing in pool {pool} for {}: treated as removed on purpose \
             and forgotten",
            fmt_duration(i64::from(config.forget_after_s))
        ),
        (_, AlertKind::Drop, _, _) if e.flapping && firing => format!(
            "{backend} keeps leaving pool {pool}'s rotation: {} departures in {}; flapping for \
             {duration}",
            e.departures.unwrap_or(0),
            fmt_duration(i64::from(config.flap_window_s))
        ),
        (_, AlertKind::Drop, _, _) if firing => format!(
            "{backend} has dropped out of pool {pool}: 0 of {} requests in {span}, expected {}; \
             for {duration}",
            e.pool_requests,
            fmt_pct(e.expected_share),
        ),
        (_, AlertKind::Errors, _, _) if backend == WHOLE_POOL && firing => format!(
            "pool {pool} is failing {} of its requests over {} against {} usually, on every \
             backend alike; for {duration}",
            fmt_pct(e.error_rate),
            fmt_duration(i64::from(config.burn_long_s)),
            fmt_pct(e.peer_error_rate),
        ),
        (_, AlertKind::Errors, _, _) if backend == WHOLE_POOL => format!(
            "pool {pool}'s 5xx rate is back to {} over {} after {duration}",
            fmt_pct(e.error_rate),
            fmt_duration(i64::from(config.burn_long_s)),
        ),
        (_, AlertKind::Errors, _, _) if firing => format!(
            "{backend} is failing {} of its requests in pool {pool} against {} on its peers \
             ({} requests in {}s, p = {:.1e}); for {duration}",
            fmt_pct(e.error_rate),
            fmt_pct(e.peer_error_rate),
            e.backend_requests,
            e.window_s,
            e.errors_p_value.unwrap_or(1.0),
        ),
        (_, AlertKind::Latency, _, _) if firing => format!(
            "{backend} answers slowly in pool {pool}: {} of its requests take over {} (its \
             peers' p95), p99 {} against {} on its peers; for {duration}",
            fmt_pct(e.slow_fraction.unwrap_or(0.0)),
            fmt_ms(e.latency_threshold_ms),
            fmt_ms(e.p99_ms),
            fmt_ms(e.peer_p99_ms),
        ),
        (_, AlertKind::Errors, _, _) => format!(
            "{backend}'s 5xx rate in pool {pool} is back to {} (peers {}) after {duration}",
            fmt_pct(e.error_rate),
            fmt_pct(e.peer_error_rate),
        ),
        (_, AlertKind::Latency, _, _) => format!(
            "{backend}'s latency in pool {pool} is back to its peers' (p99 {}, peers {}) after \
             {duration}",
            fmt_ms(e.p99_ms),
            fmt_ms(e.peer_p99_ms),
        ),
        (_, AlertKind::Spike, _, _) if firing => format!(
            "pool {pool} is taking {:.1}x its usual traffic: {} requests in {}s against {:.0} \
             usually (z {:.1}); for {duration}",
            e.ratio,
            e.pool_requests,
            config.window_s,
            e.usual_pool_requests.unwrap_or(0.0),
            e.volume_z.unwrap_or(0.0),
        ),
        (_, AlertKind::Spike, _, _) => {
            format!("pool {pool}'s traffic is back to {:.1}x its usual after {duration}", e.ratio)
        }
        (_, AlertKind::Unexpected, _, _) if firing => format!(
            "{backend} serves {} of pool {pool}'s traffic but has no configured weight{}; for \
             {duration}",
            fmt_pct(e.observed_share),
            e.closest_configured
                .as_ref()
                .map(|c| format!(": did you mean {c}?"))
                .unwrap_or_default(),
        ),
        (_, AlertKind::Unexpected, _, _) => {
            format!("{backend} has stopped serving pool {pool} after {duration}")
        }
        (_, _, Direction::Over, _) if firing => format!(
            "{backend} is taking {} of pool {pool}'s traffic, expected {} ({:.1}x): {} of {} \
             requests in {span}; skewed for {duration}",
            fmt_pct(e.observed_share),
            fmt_pct(e.expected_share),
            e.ratio,
            e.backend_requests,
            e.pool_requests,
        ),
        (_, _, Direction::Under, _) if firing => format!(
            "{backend} is getting only {} of pool {pool}'s traffic, expected {}: {} of {} \
             requests in {span}; for {duration}",
            fmt_pct(e.observed_share),
            fmt_pct(e.expected_share),
            e.backend_requests,
            e.pool_requests,
        ),
        (_, _, _, _) => format!(
            "{backend} is back to {} of pool {pool}'s traffic (expected {}) after {duration}",
            fmt_pct(e.observed_share),
            fmt_pct(e.expected_share),
        ),
    }
}

/// Explains each finding and appends the alert it makes.
pub(super) fn explain(
    pool: &PoolState,
    window: &WindowSummary,
    config: &DetectorConfig,
    findings: Vec<Finding>,
    alerts: &mut Vec<AlertEvent>,
) {
    for mut finding in findings {
        // A resolve is decided after `resolve_for_s` of normal windows: the incident ended
        // when they began, so its duration leaves that hold out.
        if finding.state == AlertState::Resolved && finding.note.is_none() {
            let hold = i64::from(config.resolve_for_s);
            let e = &mut finding.evidence;
            e.duration_s = (e.duration_s - hold).max(i64::from(config.window_s));
        }
        let diagnosis = diagnose(&finding);
        let mut summary =
            format!("{}: {}", diagnosis.verdict.label(), describe(&finding, &pool.name, config));
        if finding.state == AlertState::Firing
            && finding.kind == AlertKind::Skew
            && finding.direction == Direction::Over
            && unhealthy(&finding.evidence)
        {
            let _ = write!(summary, "; {}", health_text(&finding.evidence));
        }
        alerts.push(AlertEvent {
            state: finding.state,
            kind: finding.kind,
            direction: finding.direction,
            backend: finding.backend,
            pool: window.pool.clone(),
            at_ms: window.end_ms,
            started_at_ms: finding.started_at_ms,
            severity: finding.severity,
            diagnosis,
            summary,
            evidence: finding.evidence,
        });
    }
}

/// Why a pool's shares were never judged.
pub(super) fn unjudged_reason(coverage: &Coverage, config: &DetectorConfig) -> String {
    if coverage.max_backends < config.min_backends {
        format!(
            "at most {} backend(s) served in a window; judging a split needs at least {} \
             (detector.min_backends)",
            coverage.max_backends, config.min_backends
        )
    } else if coverage.max_requests < config.min_requests {
        format!(
            "no {}s window had {} requests (detector.min_requests; the busiest had {}): too \
             little traffic to judge, lower min_requests or lengthen window_s",
            config.window_s, config.min_requests, coverage.max_requests
        )
    } else {
        format!(
            "no window had both {} requests and {} backends",
            config.min_requests, config.min_backends
        )
    }
}
