//! Explain: turns the judges' findings into alerts people can act on: a diagnosis of where the
//! fault most likely is (the seed incident cost an hour because everyone blamed the database),
//! and a one-line summary that starts with it.

use std::fmt::Write as _;

use super::event::{ChangeEvidence, Diagnosis, Operation, Verdict};
use super::{
    AlertEvent, AlertKind, AlertState, Coverage, DetectorConfig, Direction, Evidence, ExpectedFrom,
    Finding, PoolState, Resolution, WHOLE_POOL,
};
use crate::window::WindowSummary;

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
        (AlertKind::Change, _) => {
            (Verdict::Change, "a routine change the pool absorbed: recorded, not paged".to_string())
        }
        (AlertKind::Skew, _) if finding.state == AlertState::Noted => (
            Verdict::Balancer,
            "uneven from the start, with every backend answering alike: a weighting by design \
             or a misconfiguration; skewtail learns it and pages only if it changes"
                .to_string(),
        ),
        (AlertKind::Skew, Direction::Under) if e.pinned_backends.is_some() => (
            Verdict::Balancer,
            "long-lived connections (HTTP/2, gRPC, keep-alive) stay on the older backends, so \
             the new ones get only a trickle: recycle the connections (max connection age, \
             a GOAWAY) or balance per request"
                .to_string(),
        ),
        (AlertKind::Drop, _) if e.failed_attempts.is_some() => (
            Verdict::Backend,
            format!(
                "the balancer still tries it and its attempts fail ({} in the last window), so \
                 it retries them on the others: the backend refuses or fails, look at it",
                e.failed_attempts.unwrap_or(0)
            ),
        ),
        (AlertKind::Drop, _) if e.harm.is_some() => (
            Verdict::Balancer,
            format!(
                "the others cannot carry its traffic: {}",
                e.harm.as_deref().unwrap_or_default()
            ),
        ),
        (AlertKind::Drop, _)
            if e.departed_share.is_some_and(|s| s >= 0.5 - 1e-9) && !e.flapping =>
        {
            (
                Verdict::Balancer,
                format!(
                    "backends expected to take {} of the pool are out of rotation at once: too much \
                 capacity gone",
                    fmt_pct(e.departed_share.unwrap_or(0.0))
                ),
            )
        }
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
        // In a pool that is uneven with no weights to say so, a backend taking far more than an
        // even share and failing is more likely drowning than broken.
        #[allow(clippy::cast_precision_loss)]
        (AlertKind::Errors | AlertKind::Latency, _)
            if e.expected_from != ExpectedFrom::Weights
                && e.accumulated_s.is_none()
                && e.pool_requests >= 100
                && e.pool_backends >= 2
                && e.observed_share >= 2.0 / e.pool_backends as f64 =>
        {
            (
                Verdict::Balancer,
                format!(
                    "it takes {} of the pool's requests, {:.1}x an even share, and {} under that \
                     load: the balancer sends it more than it can carry (if the split is by design, \
                     set weights)",
                    fmt_pct(e.observed_share),
                    e.observed_share * e.pool_backends as f64,
                    if finding.kind == AlertKind::Errors { "fails" } else { "slows down" },
                ),
            )
        }
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
    if let Some(change) = &e.change {
        return describe_change(backend, pool, change, e);
    }
    match (finding.state, finding.kind, finding.direction, finding.resolution) {
        (AlertState::Resolved, _, _, Some(Resolution::Removed)) => format!(
            "{backend} has served nothing in pool {pool}, and has not been tried, for {}: it \
             was removed from the balancer",
            fmt_duration(i64::from(config.forget_after_s))
        ),
        (AlertState::Resolved, _, _, Some(Resolution::Adopted)) => format!(
            "{backend} takes {} of pool {pool}'s traffic and answers like its peers again: the \
             split it has held since the start is learned as the pool's design; if it is not, \
             set weights",
            fmt_pct(e.observed_share),
        ),
        (_, AlertKind::Skew, Direction::Under, _) if e.pinned_backends.is_some() && firing => {
            let pinned = e.pinned_backends.as_deref().unwrap_or_default();
            format!(
                "{} new backends of pool {pool} ({}) get only {} of its traffic, expected {}: \
                 connections stay pinned to the older backends; for {duration}",
                pinned.len(),
                list_names(pinned, pinned.len()),
                fmt_pct(e.observed_share),
                fmt_pct(e.expected_share),
            )
        }
        (_, AlertKind::Skew, Direction::Under, _) if e.pinned_backends.is_some() => format!(
            "the new backends of pool {pool} take {} of its traffic again (expected {}) after \
             {duration}",
            fmt_pct(e.observed_share),
            fmt_pct(e.expected_share),
        ),
        (_, AlertKind::Drop, _, _) if firing && e.failed_attempts.is_some() => format!(
            "{backend} has served nothing in pool {pool} for {duration}: the balancer's attempts \
             at it fail ({} in the last {}s) and go to its peers",
            e.failed_attempts.unwrap_or(0),
            e.window_s,
        ),
        (_, AlertKind::Drop, _, _) if firing && e.departed_share.is_some() && !e.flapping => {
            format!(
                "{backend} has been out of pool {pool}'s rotation for {duration}, expected {}{}",
                fmt_pct(e.expected_share),
                match (&e.harm, e.departed_share) {
                    (Some(harm), _) => format!("; {harm}"),
                    (None, Some(share)) if share >= 0.5 - 1e-9 => format!(
                        "; backends expected to take {} of the pool are out at once",
                        fmt_pct(share)
                    ),
                    _ => "; its weight says it should serve".to_string(),
                }
            )
        }
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
             ({} requests in {}s{}, p = {:.1e}); for {duration}",
            fmt_pct(e.error_rate),
            fmt_pct(e.peer_error_rate),
            e.backend_requests,
            e.accumulated_s.unwrap_or(i64::from(e.window_s)),
            if e.accumulated_s.is_some() { ", a quiet pool" } else { "" },
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

/// Up to `n` of `names`, comma-separated, and how many more.
fn list_names(names: &[std::sync::Arc<str>], n: usize) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(|n| &**n).collect();
    if n > shown.len() {
        format!("{} and {} more", shown.join(", "), n - shown.len())
    } else {
        shown.join(", ")
    }
}

/// What a `change` event (or a learned split) says.
fn describe_change(backend: &str, pool: &str, change: &ChangeEvidence, e: &Evidence) -> String {
    let names = list_names(&change.backends, change.n_backends);
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let share = |i: usize| change.shares.get(i).copied().unwrap_or((0.0, 0.0));
    match change.operation {
        Operation::RollingRestart => format!(
            "rolling restart of pool {pool}: {} backends ({names}) left rotation and came back \
             one after another over {}, each away at most {}{}; the others carried the traffic",
            change.n_backends,
            fmt_duration(e.duration_s),
            fmt_duration(change.longest_absence_s.unwrap_or(0)),
            if change.refused_while_away {
                " (refusing while stopped, retried elsewhere)"
            } else {
                ""
            },
        ),
        Operation::Restart => format!(
            "{backend} left pool {pool}'s rotation for {} and came back (a restart){}",
            fmt_duration(change.longest_absence_s.unwrap_or(0)),
            if change.refused_while_away {
                "; while stopped it refused, and the balancer retried elsewhere"
            } else {
                ""
            },
        ),
        Operation::ScaleIn => format!(
            "scale-in of pool {pool}: {} backend{} ({names}) left and did not come back; the other \
             {} took the traffic with no rise in errors or latency, so skewtail no longer expects \
             {}",
            change.n_backends,
            plural(change.n_backends),
            change.pool_backends,
            if change.n_backends == 1 { "it" } else { "them" },
        ),
        Operation::ScaleOut => format!(
            "scale-out of pool {pool}: {} backend{} joined ({names}) and took {} share; {} \
             backends now",
            change.n_backends,
            plural(change.n_backends),
            if change.n_backends == 1 { "its" } else { "their" },
            change.pool_backends,
        ),
        Operation::Canary => format!(
            "canary in pool {pool}: {backend} joined {} ago and takes a steady {} (it was welcomed \
             at {}), answering like its peers; learned as its share",
            fmt_duration(e.duration_s),
            fmt_pct(share(0).1),
            fmt_pct(share(0).0),
        ),
        Operation::Evened => format!(
            "{backend} now takes an even share of pool {pool}: {} (learned at {} before); learned",
            fmt_pct(share(0).1),
            fmt_pct(share(0).0),
        ),
        Operation::UnevenFromStart => format!(
            "pool {pool} is uneven from the start: {backend} takes {} where {} would be even, and \
             every backend answers alike; learned as the pool's design, and only a change from it \
             pages. If that is by design, set weights ([pool.{pool}] weights or nginx_upstream / \
             haproxy_backend)",
            fmt_pct(e.observed_share),
            fmt_pct(e.expected_share),
        ),
        Operation::WeightsChanged => {
            let moves: Vec<String> = change
                .backends
                .iter()
                .zip(&change.shares)
                .take(5)
                .map(|(b, (before, after))| {
                    format!("{b} {} → {}", fmt_pct(*before), fmt_pct(*after))
                })
                .collect();
            format!(
                "the weights of pool {pool} changed in its balancer config: {}{}",
                moves.join(", "),
                if change.n_backends > 5 {
                    format!(" and {} more", change.n_backends - 5)
                } else {
                    String::new()
                }
            )
        }
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
        if finding.state == AlertState::Resolved && finding.resolution.is_none() {
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
            resolution: finding.resolution,
            evidence: finding.evidence,
        });
    }
}

/// Why a pool's shares were never judged (and what was judged instead).
pub(super) fn unjudged_reason(coverage: &Coverage, config: &DetectorConfig) -> String {
    let why = unjudged_shares(coverage, config);
    if coverage.quiet_judged_windows > 0 {
        format!(
            "{why}; errors were judged on requests accumulated over up to {} ({} windows)",
            fmt_duration(i64::from(config.quiet_span_s)),
            coverage.quiet_judged_windows
        )
    } else {
        why
    }
}

fn unjudged_shares(coverage: &Coverage, config: &DetectorConfig) -> String {
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
