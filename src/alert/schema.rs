//! The alerting sections of the config as written (`[[sink]]`, `[[route]]`, `[[silence]]`,
//! `[[inhibit]]`), each with the line it starts on: alerting's own settings, deserialized by
//! the config loader and checked here (`settings.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::located::{ConfigError, Located};

/// A secret string (a webhook URL, a routing key): usable, but never printed or logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The kind of a `[[sink]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkType {
    /// A Slack incoming webhook (Block Kit).
    Slack,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// A JSON webhook signed as Standard Webhooks says.
    Webhook,
    /// Prometheus Alertmanager's `POST /api/v2/alerts`, to every URL given.
    Alertmanager,
    /// NDJSON on standard output (`run`).
    Stdout,
    /// NDJSON appended to a file.
    File,
}

/// One `[[sink]]` as written. Which keys apply depends on `type`; `alert` checks that and
/// builds the sink. Secrets (URLs, routing keys, signing secrets) come from `_env` or
/// `_file` keys by preference: config files get shared.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    /// The name routes use, and logs show (never the URL).
    pub name: Option<String>,
    /// The kind of destination.
    #[serde(rename = "type")]
    pub kind: SinkType,
    /// The URL (slack, webhook; pagerduty defaults to its public endpoint).
    pub url: Option<Secret>,
    /// An environment variable holding the URL.
    pub url_env: Option<String>,
    /// A file holding the URL (a mounted secret).
    pub url_file: Option<PathBuf>,
    /// Alertmanager: every instance of the cluster (each gets every alert).
    pub urls: Option<Vec<String>>,
    /// PagerDuty: the Events API v2 integration key.
    pub routing_key: Option<Secret>,
    /// PagerDuty: an environment variable holding the routing key.
    pub routing_key_env: Option<String>,
    /// PagerDuty: a file holding the routing key.
    pub routing_key_file: Option<PathBuf>,
    /// Webhook: the signing secret (`whsec_...`).
    pub secret: Option<Secret>,
    /// Webhook: an environment variable holding the signing secret.
    pub secret_env: Option<String>,
    /// Webhook: a file holding the signing secret.
    pub secret_file: Option<PathBuf>,
    /// File: where to append.
    pub path: Option<PathBuf>,
    /// Total time allowed per HTTP attempt, seconds.
    pub timeout_s: Option<f64>,
    /// At most this many messages a second (Slack: 1).
    pub rate_per_s: Option<f64>,
    /// An alert not delivered within this many seconds expires (counted and logged).
    pub ttl_s: Option<u64>,
    /// Pending messages kept while the receiver is down; the oldest is dropped beyond.
    pub queue_capacity: Option<usize>,
    /// A minijinja template for the message text (Slack), summary (PagerDuty) or
    /// description (Alertmanager).
    pub template: Option<String>,
    /// A dashboard linked from every message.
    pub dashboard_url: Option<String>,
    /// PagerDuty: `payload.source` (default: this host's name).
    pub source: Option<String>,
    /// Alertmanager: re-send firing alerts this often, seconds (default 60).
    pub resend_s: Option<u64>,
    /// Alertmanager: extra labels on every alert (`cluster = "eu1"`).
    pub labels: Option<BTreeMap<String, String>>,
    /// Allow plain `http://` to a host that is not loopback (a receiver on a trusted
    /// network, such as an in-cluster Alertmanager); alerts then travel unencrypted.
    pub insecure_http: Option<bool>,
}

/// One or several values: `kind = "skew"` or `kind = ["skew", "drop"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values.
    pub fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

/// Matchers on alert fields: each field's value must match one of the glob patterns given
/// (a leading `!` negates; `[*]` is a literal `*`, the whole-pool backend).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSection {
    /// `skew`, `drop`, `spike`, `errors`, `latency`, `unexpected`.
    pub kind: Option<OneOrMany>,
    /// `critical`, `warning`, `info`.
    pub severity: Option<OneOrMany>,
    /// Pool names.
    pub pool: Option<OneOrMany>,
    /// Backend names (`*` is the whole pool).
    pub backend: Option<OneOrMany>,
    /// `balancer`, `backend`, `shared dependency`, `load`.
    pub diagnosis: Option<OneOrMany>,
}

/// One `[[route]]`: which alerts go to which sinks, and how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// A name for `alert test --route` and logs.
    pub name: Option<String>,
    /// The sinks, by name.
    pub sinks: Vec<String>,
    /// Which alerts (all when absent).
    #[serde(default, rename = "match")]
    pub matchers: MatchSection,
    /// Wait this long after a pool's first alert to send it with the others of the incident.
    pub group_wait_s: Option<f64>,
    /// Remind about a firing alert this often.
    pub repeat_interval_s: Option<u64>,
    /// Send the resolve (default true).
    pub send_resolved: Option<bool>,
    /// Go on to the next routes after this one matched (default false).
    #[serde(rename = "continue")]
    pub continue_matching: Option<bool>,
}

/// One `[[silence]]`: alerts that match are not sent between `starts` and `ends`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceSection {
    /// Which alerts.
    #[serde(rename = "match")]
    pub matchers: MatchSection,
    /// RFC 3339; default: always.
    pub starts: Option<String>,
    /// RFC 3339; default: never ends.
    pub ends: Option<String>,
    /// Why.
    pub comment: Option<String>,
}

/// One `[[inhibit]]`: while a `source` alert fires, `target` alerts with the same `equal`
/// fields are not sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitSection {
    /// The alerts that mute others.
    pub source: MatchSection,
    /// The alerts they mute.
    pub target: MatchSection,
    /// Fields that must be equal (default `["pool"]`).
    pub equal: Option<Vec<String>>,
}

/// The alerting sections, as written and located; `alert` checks and builds them.
#[derive(Debug, Clone, Default)]
pub struct AlertingConfig {
    /// `[[sink]]`.
    pub sinks: Vec<Located<SinkSection>>,
    /// `[[route]]`.
    pub routes: Vec<Located<RouteSection>>,
    /// `[[silence]]`.
    pub silences: Vec<Located<SilenceSection>>,
    /// `[[inhibit]]`.
    pub inhibits: Vec<Located<InhibitSection>>,
    /// The config file (for messages; relative paths are from its directory).
    pub source: PathBuf,
}

impl AlertingConfig {
    /// An error at `line` of the config file.
    pub fn error(&self, line: usize, message: String) -> ConfigError {
        ConfigError { path: self.source.clone(), line, message }
    }

    /// The directory relative paths are taken from.
    pub fn base_dir(&self) -> &Path {
        self.source.parent().unwrap_or(Path::new("."))
    }
}
