//! From the config's `[[sink]]`, `[[route]]`, `[[silence]]` and `[[inhibit]]` sections to
//! sinks, routes, silences and rules: each key checked for the sink's type, secrets read
//! from env or files (and only when the sinks will really be used), URLs held to https,
//! templates compiled. Every error names the config line and the fix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use super::http;
use super::matcher::Matcher;
use super::route::{InhibitRule, Route};
use super::silence::Silence;
use super::sinks::{Sink, Target, pagerduty, webhook};
use super::template::{Escape, MessageTemplate};
use crate::alert::schema::{AlertingConfig, Secret, SinkSection, SinkType};
use crate::located::{ConfigError, Located};

/// Default time per HTTP attempt.
const DEFAULT_TIMEOUT_S: f64 = 10.0;
/// Default message TTL: an alert an hour old is history, not a page.
const DEFAULT_TTL_S: u64 = 3600;
/// Default pending messages per sink.
const DEFAULT_CAPACITY: usize = 1024;

/// The sinks as built: each sink, and the names routes may use for them (an Alertmanager
/// sink with several URLs is one sink per URL under one name).
#[derive(Debug, Default)]
pub struct BuiltSinks {
    /// Every sink instance.
    pub sinks: Vec<Sink>,
    /// Route name → instance names.
    pub names: BTreeMap<String, Vec<String>>,
}

fn type_name(kind: SinkType) -> &'static str {
    match kind {
        SinkType::Slack => "slack",
        SinkType::Pagerduty => "pagerduty",
        SinkType::Webhook => "webhook",
        SinkType::Alertmanager => "alertmanager",
        SinkType::Stdout => "stdout",
        SinkType::File => "file",
    }
}

/// The sinks' names, in config order (a sink without `name` is called by its type, then
/// `type#2`, ...).
pub fn sink_names(config: &AlertingConfig) -> Result<Vec<String>, ConfigError> {
    let mut names = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, sink) in config.sinks.iter().enumerate() {
        let name = match &sink.value.name {
            Some(name) => name.clone(),
            None => {
                let base = type_name(sink.value.kind);
                if seen.contains(base) { format!("{base}#{}", index + 1) } else { base.to_string() }
            }
        };
        if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(config.error(
                sink.line,
                format!("sink name `{}` must be a word without spaces", name.escape_debug()),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(config.error(
                sink.line,
                format!("two sinks are named `{name}`; give each its own `name`"),
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// Checks every section without reading any secret (for `replay` without `--notify`, which
/// contacts no sink) and returns the routes, silences and inhibition rules.
pub fn check(config: &AlertingConfig) -> Result<Checked, ConfigError> {
    let names = sink_names(config)?;
    for (sink, name) in config.sinks.iter().zip(&names) {
        check_keys(config, sink, name)?;
        template_of(config, sink, name)?;
    }
    let records: Vec<String> = config
        .sinks
        .iter()
        .zip(&names)
        .filter(|(sink, _)| matches!(sink.value.kind, SinkType::Stdout | SinkType::File))
        .map(|(_, name)| name.clone())
        .collect();
    let routes = routes(config, &names, &records)?;
    let silences = silences(config)?;
    let inhibit = inhibit_rules(config)?;
    Ok(Checked { routes, silences, inhibit })
}

/// What [`check`] returns.
#[derive(Debug)]
pub struct Checked {
    /// The routes (when none is configured: pages, `warning` and `critical`, to every sink;
    /// `info` findings and routine changes to the `file` and `stdout` sinks only).
    pub routes: Vec<Route>,
    /// The config's silences.
    pub silences: Vec<Silence>,
    /// Inhibition rules (the built-in one when none is configured).
    pub inhibit: Vec<InhibitRule>,
}

/// Builds the sinks, reading their secrets. `with_stdout`: whether `stdout` sinks print
/// (`replay` prints its own report instead).
pub fn build_sinks(config: &AlertingConfig, with_stdout: bool) -> Result<BuiltSinks, ConfigError> {
    let names = sink_names(config)?;
    let mut built = BuiltSinks::default();
    for (section, name) in config.sinks.iter().zip(&names) {
        let sink = &section.value;
        let at = |message: String| config.error(section.line, format!("sink `{name}`: {message}"));
        let timeout = Duration::from_secs_f64(sink.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S));
        let template = template_of(config, section, name)?;
        let dashboard_url = sink.dashboard_url.clone();
        let base = config.base_dir();
        let targets: Vec<Target> = match sink.kind {
            SinkType::Slack => vec![Target::Slack { url: url_secret(sink, base).map_err(at)? }],
            SinkType::Pagerduty => {
                let url = match (&sink.url, &sink.url_env, &sink.url_file) {
                    (None, None, None) => Secret::new(pagerduty::DEFAULT_URL.to_string()),
                    _ => url_secret(sink, base).map_err(at)?,
                };
                let routing_key = secret(
                    "routing_key",
                    &sink.routing_key,
                    &sink.routing_key_env,
                    &sink.routing_key_file,
                    base,
                )
                .map_err(at)?
                .ok_or_else(|| at("needs `routing_key_env` (or `routing_key_file`, `routing_key`): the Events API v2 integration key".to_string()))?;
                let source = sink.source.clone().unwrap_or_else(hostname);
                vec![Target::PagerDuty { url, routing_key, source }]
            }
            SinkType::Webhook => {
                let url = url_secret(sink, base).map_err(at)?;
                let key = secret("secret", &sink.secret, &sink.secret_env, &sink.secret_file, base)
                    .map_err(at)?;
                if let Some(key) = &key {
                    webhook::decode_secret(key.expose()).map_err(at)?;
                } else {
                    tracing::warn!(message = "Webhook sink is not signed; set `secret_env` so the receiver can verify messages.", sink = %name);
                }
                vec![Target::Webhook { url, key }]
            }
            SinkType::Alertmanager => sink
                .urls
                .iter()
                .flatten()
                .map(|url| Target::Alertmanager {
                    url: alertmanager_url(url),
                    resend_s: sink.resend_s.unwrap_or(60),
                    labels: sink.labels.clone().unwrap_or_default(),
                })
                .collect(),
            SinkType::Stdout if !with_stdout => Vec::new(),
            SinkType::Stdout => vec![Target::Stdout],
            SinkType::File => {
                let path = sink
                    .path
                    .as_ref()
                    .map(|p| base.join(p))
                    .ok_or_else(|| at("needs `path`".to_string()))?;
                vec![Target::File { path }]
            }
        };
        let n_targets = targets.len();
        let mut instance_names = Vec::new();
        for (i, target) in targets.into_iter().enumerate() {
            let instance = if n_targets > 1 { format!("{name}@{}", i + 1) } else { name.clone() };
            let client = match target {
                Target::Stdout | Target::File { .. } => None,
                _ => Some(http::client(timeout).map_err(|e| {
                    at(format!("cannot build the HTTP client: {}", e.without_url()))
                })?),
            };
            let default_rate = match sink.kind {
                SinkType::Slack => 1.0,
                SinkType::Pagerduty => 2.0,
                SinkType::Webhook | SinkType::Alertmanager => 10.0,
                SinkType::Stdout | SinkType::File => 10_000.0,
            };
            built.sinks.push(Sink {
                name: instance.clone(),
                target,
                client,
                rate_per_s: sink.rate_per_s.unwrap_or(default_rate),
                ttl_ms: i64::try_from(sink.ttl_s.unwrap_or(DEFAULT_TTL_S))
                    .unwrap_or(i64::MAX / 2000)
                    * 1000,
                capacity: sink.queue_capacity.unwrap_or(DEFAULT_CAPACITY),
                template: template.clone(),
                dashboard_url: dashboard_url.clone(),
            });
            instance_names.push(instance);
        }
        built.names.insert(name.clone(), instance_names);
    }
    Ok(built)
}

fn check_keys(
    config: &AlertingConfig,
    section: &Located<SinkSection>,
    name: &str,
) -> Result<(), ConfigError> {
    let sink = &section.value;
    let at = |message: String| config.error(section.line, format!("sink `{name}`: {message}"));
    let kind = type_name(sink.kind);
    let present = [
        ("url", sink.url.is_some() || sink.url_env.is_some() || sink.url_file.is_some()),
        ("urls", sink.urls.is_some()),
        (
            "routing_key",
            sink.routing_key.is_some()
                || sink.routing_key_env.is_some()
                || sink.routing_key_file.is_some(),
        ),
        (
            "secret",
            sink.secret.is_some() || sink.secret_env.is_some() || sink.secret_file.is_some(),
        ),
        ("path", sink.path.is_some()),
        ("source", sink.source.is_some()),
        ("resend_s", sink.resend_s.is_some()),
        ("labels", sink.labels.is_some()),
        ("insecure_http", sink.insecure_http.is_some()),
        ("template", sink.template.is_some()),
        ("timeout_s", sink.timeout_s.is_some()),
        ("rate_per_s", sink.rate_per_s.is_some()),
    ];
    let allowed: &[&str] = match sink.kind {
        SinkType::Slack => &["url", "template", "timeout_s", "rate_per_s"],
        SinkType::Pagerduty => &[
            "url",
            "routing_key",
            "source",
            "template",
            "timeout_s",
            "rate_per_s",
            "insecure_http",
        ],
        SinkType::Webhook => &["url", "secret", "timeout_s", "rate_per_s", "insecure_http"],
        SinkType::Alertmanager => {
            &["urls", "resend_s", "labels", "template", "timeout_s", "rate_per_s", "insecure_http"]
        }
        SinkType::Stdout => &[],
        SinkType::File => &["path"],
    };
    for (key, is_set) in present {
        if is_set && !allowed.contains(&key) {
            return Err(at(format!("`{key}` does not apply to a {kind} sink; remove it")));
        }
    }
    let sources = [sink.url.is_some(), sink.url_env.is_some(), sink.url_file.is_some()];
    let n_url_sources = sources.iter().filter(|b| **b).count();
    if n_url_sources > 1 {
        return Err(at("give one of `url`, `url_env`, `url_file`".to_string()));
    }
    if matches!(sink.kind, SinkType::Slack | SinkType::Webhook) && n_url_sources == 0 {
        return Err(at("needs `url_env` (or `url_file`, `url`): the URL to post to".to_string()));
    }
    let insecure = sink.insecure_http.unwrap_or(false);
    if let Some(url) = &sink.url {
        http::check_url(url.expose(), insecure).map_err(|e| at(e.to_string()))?;
    }
    if sink.kind == SinkType::Alertmanager {
        let urls = sink.urls.as_deref().unwrap_or_default();
        if urls.is_empty() {
            return Err(at("needs `urls`: every Alertmanager of the cluster, e.g. [\"http://127.0.0.1:9093\"]; never one behind a balancer".to_string()));
        }
        for url in urls {
            http::check_url(&alertmanager_url(url), insecure).map_err(|e| at(e.to_string()))?;
        }
    }
    if let Some(timeout) = sink.timeout_s
        && !(timeout > 0.0 && timeout <= 300.0)
    {
        return Err(at("timeout_s must be between 0 and 300 seconds".to_string()));
    }
    if let Some(rate) = sink.rate_per_s
        && !(rate > 0.0 && rate.is_finite())
    {
        return Err(at("rate_per_s must be a positive number".to_string()));
    }
    if sink.ttl_s == Some(0) || sink.queue_capacity == Some(0) || sink.resend_s == Some(0) {
        return Err(at("ttl_s, queue_capacity and resend_s must be at least 1".to_string()));
    }
    if let Some(url) = &sink.dashboard_url {
        // Only a link in messages, never fetched: plain http is fine.
        http::check_url(url, true).map_err(|e| at(format!("dashboard_url: {e}")))?;
    }
    Ok(())
}

fn template_of(
    config: &AlertingConfig,
    section: &Located<SinkSection>,
    name: &str,
) -> Result<Option<MessageTemplate>, ConfigError> {
    let Some(source) = &section.value.template else { return Ok(None) };
    let escape = if section.value.kind == SinkType::Slack { Escape::Slack } else { Escape::Plain };
    MessageTemplate::compile(source, escape)
        .map(Some)
        .map_err(|e| config.error(section.line, format!("sink `{name}`: {e}")))
}

/// `http://host:9093` → `http://host:9093/api/v2/alerts` (a full path is kept).
fn alertmanager_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with("/api/v2/alerts") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/api/v2/alerts")
    }
}

fn url_secret(sink: &SinkSection, base: &Path) -> Result<Secret, String> {
    let url = secret("url", &sink.url, &sink.url_env, &sink.url_file, base)?
        .ok_or_else(|| "needs `url_env` (or `url_file`, `url`)".to_string())?;
    http::check_url(url.expose(), sink.insecure_http.unwrap_or(false))
        .map_err(|e| e.to_string())?;
    Ok(url)
}

/// A secret from the config, an environment variable or a file (never in a message).
fn secret(
    key: &str,
    value: &Option<Secret>,
    env: &Option<String>,
    file: &Option<std::path::PathBuf>,
    base: &Path,
) -> Result<Option<Secret>, String> {
    if let Some(value) = value {
        return Ok(Some(value.clone()));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(text) if !text.trim().is_empty() => Ok(Some(Secret::new(text.trim().to_string()))),
            _ => Err(format!(
                "environment variable `{var}` (the {key}) is not set; export it before starting skewtail"
            )),
        };
    }
    if let Some(file) = file {
        let path = base.join(file);
        let text = crate::source::read_capped(&path, 64 * 1024)
            .map_err(|e| format!("cannot read the {key} from {}: {e}", path.display()))?;
        return Ok(Some(Secret::new(text.trim().to_string())));
    }
    Ok(None)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skewtail".to_string())
}

/// The routes of the config; without any, the default ones: pages (`warning` and `critical`)
/// to every sink, and `info` (routine changes, learned splits, unexpected backends) only to
/// the sinks that keep records (`records`: `file`, `stdout`). A page means something; a
/// channel that hears about every deploy is muted on the first day.
fn routes(
    config: &AlertingConfig,
    names: &[String],
    records: &[String],
) -> Result<Vec<Route>, ConfigError> {
    if config.routes.is_empty() {
        let by_severity = |severities: &[&str]| {
            let pairs: Vec<(String, String)> =
                severities.iter().map(|s| ("severity".to_string(), (*s).to_string())).collect();
            Matcher::from_pairs(&pairs).unwrap_or_default()
        };
        let route = |name: &str, sinks: &[String], matcher| Route {
            name: name.into(),
            sinks: sinks.to_vec(),
            matcher,
            group_wait_ms: 0,
            repeat_ms: None,
            send_resolved: true,
            continue_matching: false,
        };
        let mut defaults = vec![route("default", names, by_severity(&["warning", "critical"]))];
        if !records.is_empty() {
            defaults.push(route("default-records", records, by_severity(&["info"])));
        }
        return Ok(defaults);
    }
    let mut routes = Vec::new();
    for (index, section) in config.routes.iter().enumerate() {
        let route = &section.value;
        let name = route.name.clone().unwrap_or_else(|| format!("route#{}", index + 1));
        let at = |message: String| config.error(section.line, format!("route `{name}`: {message}"));
        if route.sinks.is_empty() {
            return Err(at("needs `sinks = [...]`".to_string()));
        }
        for sink in &route.sinks {
            if !names.contains(sink) {
                return Err(at(format!(
                    "no sink is named `{sink}`; the sinks are: {}",
                    names.join(", ")
                )));
            }
        }
        let matcher = Matcher::from_section(&route.matchers).map_err(|e| at(e.to_string()))?;
        let group_wait_s = route.group_wait_s.unwrap_or(0.0);
        if !(0.0..=3600.0).contains(&group_wait_s) {
            return Err(at("group_wait_s must be between 0 and 3600".to_string()));
        }
        if route.repeat_interval_s == Some(0) {
            return Err(at(
                "repeat_interval_s must be at least 1 (leave it out for no reminders)".to_string()
            ));
        }
        #[allow(clippy::cast_possible_truncation)] // at most an hour
        routes.push(Route {
            name,
            sinks: route.sinks.clone(),
            matcher,
            group_wait_ms: (group_wait_s * 1000.0) as i64,
            repeat_ms: route
                .repeat_interval_s
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX / 1000) * 1000),
            send_resolved: route.send_resolved.unwrap_or(true),
            continue_matching: route.continue_matching.unwrap_or(false),
        });
    }
    Ok(routes)
}

fn silences(config: &AlertingConfig) -> Result<Vec<Silence>, ConfigError> {
    let time = |line: usize, text: &Option<String>, default: i64| -> Result<i64, ConfigError> {
        match text {
            None => Ok(default),
            Some(text) => chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_millis())
                .map_err(|e| {
                    config.error(
                        line,
                        format!(
                            "silence time `{text}`: {e}; use RFC 3339, e.g. 2026-12-24T18:00:00Z"
                        ),
                    )
                }),
        }
    };
    config
        .silences
        .iter()
        .enumerate()
        .map(|(index, section)| {
            let silence = &section.value;
            let matcher = Matcher::from_section(&silence.matchers)
                .map_err(|e| config.error(section.line, format!("silence: {e}")))?;
            if matcher.fields.is_empty() {
                return Err(config.error(
                    section.line,
                    "a silence needs a `match` (it would silence everything)".to_string(),
                ));
            }
            Ok(Silence {
                id: format!("config#{}", index + 1),
                matcher,
                starts_ms: time(section.line, &silence.starts, i64::MIN)?,
                ends_ms: time(section.line, &silence.ends, i64::MAX)?,
                comment: silence.comment.clone().unwrap_or_default(),
            })
        })
        .collect()
}

fn inhibit_rules(config: &AlertingConfig) -> Result<Vec<InhibitRule>, ConfigError> {
    if config.inhibits.is_empty() {
        return Ok(InhibitRule::defaults());
    }
    config
        .inhibits
        .iter()
        .map(|section| {
            let rule = &section.value;
            let at = |e: String| config.error(section.line, format!("inhibit: {e}"));
            let equal = rule.equal.clone().unwrap_or_else(|| vec!["pool".to_string()]);
            for field in &equal {
                if !super::matcher::FIELDS.contains(&field.as_str()) {
                    return Err(at(format!(
                        "unknown field `{field}` in `equal`; use {}",
                        super::matcher::FIELDS.join(", ")
                    )));
                }
            }
            Ok(InhibitRule {
                source: Matcher::from_section(&rule.source).map_err(|e| at(e.to_string()))?,
                target: Matcher::from_section(&rule.target).map_err(|e| at(e.to_string()))?,
                equal,
            })
        })
        .collect()
}
