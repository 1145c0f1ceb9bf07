//! What the detector says: alert state changes, their kinds, the evidence behind them and the
//! diagnosis of where the fault most likely is.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The backend name of pool-wide alerts.
pub const WHOLE_POOL: &str = "*";

/// Alert lifecycle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition has held for the configured duration.
    Firing,
    /// The condition has cleared for the configured duration.
    Resolved,
    /// A one-shot finding (a routine change, a split learned as the pool's design): recorded,
    /// never firing, so nothing resolves it.
    Noted,
}

impl AlertState {
    /// `firing`, `resolved` or `noted`.
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
            AlertState::Noted => "noted",
        }
    }
}

/// What kind of anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A backend's share of its pool is off its expected share.
    Skew,
    /// A backend that should take traffic takes none (or keeps leaving and rejoining).
    Drop,
    /// The whole pool takes far more traffic than usual (backend `*`).
    Spike,
    /// A backend's 5xx rate is far above its peers' (or the pool's above its own history).
    Errors,
    /// A backend's latency is far above its peers'.
    Latency,
    /// A backend serves traffic but has no configured weight (an `info` finding).
    Unexpected,
    /// A routine change the pool absorbed: a rolling restart, a scale-in or scale-out, a
    /// canary, new weights (an `info` event, never a page).
    Change,
}

impl AlertKind {
    /// The kind as it appears in NDJSON and fingerprints.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Skew => "skew",
            AlertKind::Drop => "drop",
            AlertKind::Spike => "spike",
            AlertKind::Errors => "errors",
            AlertKind::Latency => "latency",
            AlertKind::Unexpected => "unexpected",
            AlertKind::Change => "change",
        }
    }
}

/// Which way a backend is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// More than its share.
    Over,
    /// Less than its share.
    Under,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Info,
    /// Needs attention soon.
    Warning,
    /// Page someone.
    Critical,
}

impl Severity {
    /// `info`, `warning` or `critical`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Which routine operation a `change` event records, or which split was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Backends left rotation and came back one after another (a deploy).
    RollingRestart,
    /// One backend left rotation and came back within the grace period.
    Restart,
    /// Backends left for good, and the rest took their traffic without harm.
    ScaleIn,
    /// Backends joined and took their share.
    ScaleOut,
    /// A backend joined at a steady share well off the others' (a canary); its share is
    /// learned.
    Canary,
    /// A backend whose learned share was uneven now takes an even share (a canary promoted,
    /// weights evened out); learned.
    Evened,
    /// The pool was uneven from its first windows and its backends answer alike: the split is
    /// learned as the pool's design (severity `info`, kind `skew`).
    UnevenFromStart,
    /// The weights in a balancer config skewtail reads changed.
    WeightsChanged,
}

impl Operation {
    /// The operation as NDJSON names it.
    pub fn name(self) -> &'static str {
        match self {
            Operation::RollingRestart => "rolling_restart",
            Operation::Restart => "restart",
            Operation::ScaleIn => "scale_in",
            Operation::ScaleOut => "scale_out",
            Operation::Canary => "canary",
            Operation::Evened => "evened",
            Operation::UnevenFromStart => "uneven_from_start",
            Operation::WeightsChanged => "weights_changed",
        }
    }
}

/// What a `change` event (or a learned split) records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeEvidence {
    /// The operation.
    pub operation: Operation,
    /// The backends it concerned (at most [`ChangeEvidence::MAX_LISTED`]).
    pub backends: Vec<Arc<str>>,
    /// How many backends it concerned in all.
    pub n_backends: usize,
    /// When it began, Unix ms of event time.
    #[serde(serialize_with = "serialize_rfc3339")]
    pub started_at: i64,
    /// Restarts: the longest time one backend was out of rotation, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longest_absence_s: Option<i64>,
    /// Restarts: whether the balancer's attempts at a backend failed while it was away (it
    /// was stopped without a drain, and the balancer retried elsewhere).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused_while_away: bool,
    /// Canaries, learned splits and new weights: each backend's share before and after, in
    /// the order of `backends`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<(f64, f64)>,
    /// Backends in the pool after the change.
    pub pool_backends: usize,
}

impl ChangeEvidence {
    /// Backends named one by one; the rest are counted.
    pub const MAX_LISTED: usize = 20;
}

/// Why an alert resolved, when that is not that its condition cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The backend has served nothing and has not even been tried for `forget_after_s`: it
    /// was removed from the balancer.
    Removed,
    /// The split it was paged for has held, with no harm, for long enough to be the pool's
    /// design (an alert raised while the pool was first learned).
    Adopted,
}

/// Where the expected shares came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedFrom {
    /// Configured weights (or weights read from the balancer's config).
    Weights,
    /// The learned baseline.
    Baseline,
    /// The baseline while it is still being learned: it starts from equal shares (every
    /// balancer's default) and follows the windows that look normal.
    Warmup,
}

/// Where the fault most likely is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The balancer: one or a few backends take more or less than their share, and their
    /// errors or latency follow from that.
    Balancer,
    /// One backend is slow or failing at its normal share.
    Backend,
    /// Every backend slows down or fails together at even shares: something behind them all,
    /// a database for example.
    SharedDependency,
    /// An even surge of traffic.
    Load,
    /// A routine change the pool absorbed (a deploy, a scale event, a canary): nothing to fix.
    Change,
}

impl Verdict {
    /// The verdict as the human summary starts with it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Balancer => "balancer",
            Verdict::Backend => "backend",
            Verdict::SharedDependency => "shared dependency",
            Verdict::Load => "load",
            Verdict::Change => "change",
        }
    }
}

/// A short verdict on where the fault is, and the evidence for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in one sentence.
    pub reason: String,
}

/// The numbers behind an alert, for the on-call and for machines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// The backend's share of the pool's requests in the deciding span.
    pub observed_share: f64,
    /// Its expected share.
    pub expected_share: f64,
    /// observed / expected.
    pub ratio: f64,
    /// Where the expected share came from.
    pub expected_from: ExpectedFrom,
    /// Requests the backend served in the deciding span.
    pub backend_requests: u64,
    /// Requests the pool served in the deciding span.
    pub pool_requests: u64,
    /// Backends in the pool.
    pub pool_backends: usize,
    /// Bonferroni-adjusted two-sided p-value of the backend's count (quasi-binomial).
    pub p_value: f64,
    /// p-value of the G-test of the whole pool's split against the expected shares, with the
    /// pool's dispersion.
    pub pool_g_test_p_value: f64,
    /// How much more the pool's per-backend counts vary than a binomial model allows (1 for
    /// independent requests; tens for pools that send whole client batches to one backend),
    /// learned from the pool's own quiet windows and used to scale the tests.
    pub dispersion: f64,
    /// The backend's 5xx rate in the deciding window.
    pub error_rate: f64,
    /// The other backends' combined 5xx rate.
    pub peer_error_rate: f64,
    /// The backend's p99 latency, ms.
    pub p99_ms: Option<f64>,
    /// The median of the other backends' p99 latencies, ms.
    pub peer_p99_ms: Option<f64>,
    /// Errors alerts: the Bonferroni-adjusted one-sided binomial p-value of the backend's 5xx
    /// count at its peers' rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_p_value: Option<f64>,
    /// Latency alerts: the latency the peers' requests rarely exceed (their p95, floored), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_threshold_ms: Option<f64>,
    /// Latency alerts: the fraction of the backend's requests slower than that threshold
    /// (about 5% for a healthy backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_fraction: Option<f64>,
    /// Latency alerts: the Bonferroni-adjusted one-sided binomial p-value of that fraction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p_value: Option<f64>,
    /// Spike alerts: the pool's usual requests per window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usual_pool_requests: Option<f64>,
    /// Spike alerts: how far the pool's volume over the span is above usual, in units of its
    /// own learned volatility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_z: Option<f64>,
    /// Drop alerts: the backend keeps leaving and rejoining rotation.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub flapping: bool,
    /// Flapping alerts: how many times it left rotation within the flapping horizon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub departures: Option<u32>,
    /// Unexpected alerts: the configured backend whose name is closest (a likely typo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closest_configured: Option<String>,
    /// Drop alerts: the balancer's attempts at the backend that failed and went to another
    /// backend, in the deciding window (it is still in rotation, refusing or failing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_attempts: Option<u64>,
    /// Drop alerts: the share of the pool's expected traffic whose backends are out of
    /// rotation at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub departed_share: Option<f64>,
    /// Departures, pinning and quiet pools: what the other backends show (their 5xx rate and
    /// their slow fraction against the pool's usual), when that is what made it a page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub harm: Option<String>,
    /// Errors alerts in quiet pools: the span the counts were accumulated over, seconds
    /// (windows alone held too few requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accumulated_s: Option<i64>,
    /// Pinning alerts: the new backends that get only a trickle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_backends: Option<Vec<Arc<str>>>,
    /// Change events and learned splits: what happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeEvidence>,
    /// Window length, seconds.
    pub window_s: u32,
    /// How long the condition had lasted at this state change, seconds.
    pub duration_s: i64,
}

impl Evidence {
    /// Evidence with nothing measured yet; each judge fills in what it measured.
    pub fn blank(window_s: u32) -> Self {
        Evidence {
            observed_share: 0.0,
            expected_share: 0.0,
            ratio: 0.0,
            expected_from: ExpectedFrom::Baseline,
            backend_requests: 0,
            pool_requests: 0,
            pool_backends: 0,
            p_value: 1.0,
            pool_g_test_p_value: 1.0,
            dispersion: 1.0,
            error_rate: 0.0,
            peer_error_rate: 0.0,
            p99_ms: None,
            peer_p99_ms: None,
            errors_p_value: None,
            latency_threshold_ms: None,
            slow_fraction: None,
            latency_p_value: None,
            usual_pool_requests: None,
            volume_z: None,
            flapping: false,
            departures: None,
            closest_configured: None,
            failed_attempts: None,
            departed_share: None,
            harm: None,
            accumulated_s: None,
            pinned_backends: None,
            change: None,
            window_s,
            duration_s: 0,
        }
    }
}

/// One alert state change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// Firing or resolved.
    pub state: AlertState,
    /// The anomaly kind.
    pub kind: AlertKind,
    /// Over or under its share.
    pub direction: Direction,
    /// The backend, as logged.
    pub backend: Arc<str>,
    /// The pool it belongs to.
    pub pool: Arc<str>,
    /// Event time of the end of the window that changed the state, Unix ms.
    #[serde(rename = "at", serialize_with = "serialize_rfc3339")]
    pub at_ms: i64,
    /// Event time the anomaly began, Unix ms.
    #[serde(rename = "started_at", serialize_with = "serialize_rfc3339")]
    pub started_at_ms: i64,
    /// How urgent it is.
    pub severity: Severity,
    /// Where the fault most likely is.
    pub diagnosis: Diagnosis,
    /// One line for humans, starting with the diagnosis.
    pub summary: String,
    /// Why it resolved, when that is not that its condition cleared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// The numbers behind it.
    pub evidence: Evidence,
}

impl AlertEvent {
    /// A stable identity for this anomaly across its firing and resolved events, usable as a
    /// deduplication key by receivers.
    pub fn fingerprint(&self) -> String {
        format!("skewtail/{}/{}/{}/{:?}", self.pool, self.backend, self.kind.name(), self.direction)
            .to_lowercase()
    }
}

fn serialize_rfc3339<S: serde::Serializer>(
    unix_ms: &i64,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::parse::time::format_rfc3339(*unix_ms))
}

/// An alert as it goes on the wire as NDJSON (`replay --json`, `run --json`, file sinks,
/// webhook details): the event plus a type tag and its fingerprint.
#[derive(Debug, Serialize)]
pub struct AlertMessage<'a> {
    /// Always `"alert"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The event.
    #[serde(flatten)]
    pub event: &'a AlertEvent,
    /// Stable identity of the anomaly, shared by its firing and resolved messages.
    pub fingerprint: String,
}

impl<'a> AlertMessage<'a> {
    /// Wraps an event.
    pub fn new(event: &'a AlertEvent) -> Self {
        AlertMessage { kind: "alert", event, fingerprint: event.fingerprint() }
    }
}
