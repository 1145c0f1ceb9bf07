//! The destinations: what each one is sent (its wire format) and how. Rendering is pure;
//! sending is [`Sink::send`].

pub mod alertmanager;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::http::{self, Attempt, Request};
use super::journal::Delivery;
use super::notice::{Notice, Status};
use super::template::MessageTemplate;
use crate::alert::schema::Secret;

/// Where a sink's messages go.
#[derive(Debug)]
pub enum Target {
    /// A Slack incoming webhook.
    Slack {
        /// The webhook URL.
        url: Secret,
    },
    /// PagerDuty Events v2.
    PagerDuty {
        /// The endpoint.
        url: Secret,
        /// The integration key.
        routing_key: Secret,
        /// `payload.source`.
        source: String,
    },
    /// A signed JSON webhook.
    Webhook {
        /// The URL.
        url: Secret,
        /// The HMAC key, decoded from `whsec_...` (unsigned without one).
        key: Option<Secret>,
    },
    /// One Alertmanager instance.
    Alertmanager {
        /// Its `/api/v2/alerts` URL.
        url: String,
        /// How often firing alerts are re-sent.
        resend_s: u64,
        /// Extra labels.
        labels: BTreeMap<String, String>,
    },
    /// NDJSON lines to standard output.
    Stdout,
    /// NDJSON lines appended to a file.
    File {
        /// The file.
        path: PathBuf,
    },
}

/// A built sink.
#[derive(Debug)]
pub struct Sink {
    /// Its name (routes use it; logs show it; never its URL).
    pub name: String,
    /// Where to.
    pub target: Target,
    /// HTTP client (none for stdout and files).
    pub client: Option<reqwest::Client>,
    /// Messages a second at most.
    pub rate_per_s: f64,
    /// A message not delivered within this expires, ms.
    pub ttl_ms: i64,
    /// Pending messages kept.
    pub capacity: usize,
    /// Message template.
    pub template: Option<MessageTemplate>,
    /// Dashboard link.
    pub dashboard_url: Option<String>,
}

impl Sink {
    /// The requests that carry `delivery`, in order (PagerDuty: one per state change).
    pub fn requests(&self, delivery: &Delivery, now_ms: i64) -> Vec<Request> {
        let test = delivery.notices.iter().any(|n| n.kind == "test");
        let dashboard = self.dashboard_url.as_deref();
        let json = |value: &Value| serde_json::to_vec(value).unwrap_or_default();
        match &self.target {
            Target::Slack { .. } => vec![Request {
                body: json(&slack::render(
                    &delivery.notices,
                    dashboard,
                    self.template.as_ref(),
                    test,
                )),
                headers: Vec::new(),
                url: None,
            }],
            Target::PagerDuty { routing_key, source, url } => delivery
                .notices
                .iter()
                .map(|notice| Request {
                    body: json(&pagerduty::render(
                        notice,
                        routing_key.expose(),
                        source,
                        dashboard,
                        self.template.as_ref(),
                    )),
                    headers: Vec::new(),
                    // A routine change is a PagerDuty change event: context on the service's
                    // timeline, never an incident.
                    url: (notice.status == Status::Noted)
                        .then(|| pagerduty::change_url(url.expose())),
                })
                .collect(),
            Target::Webhook { key, .. } => {
                let body = json(&webhook::render(&delivery.id, &delivery.notices, test));
                let timestamp = now_ms.div_euclid(1000);
                let mut headers = vec![
                    ("webhook-id", delivery.id.clone()),
                    ("webhook-timestamp", timestamp.to_string()),
                ];
                // The secret was checked when the sink was built, so it decodes.
                if let Some(key) =
                    key.as_ref().and_then(|k| webhook::decode_secret(k.expose()).ok())
                {
                    headers.push((
                        "webhook-signature",
                        webhook::signature(&key, &delivery.id, timestamp, &body),
                    ));
                }
                vec![Request { body, headers, url: None }]
            }
            Target::Alertmanager { resend_s, labels, .. } => {
                // Alertmanager has alerts, not events: a noted change is not sent there.
                let alerts: Vec<Notice> = delivery
                    .notices
                    .iter()
                    .filter(|n| n.status != Status::Noted)
                    .cloned()
                    .collect();
                if alerts.is_empty() {
                    return Vec::new();
                }
                vec![Request {
                    body: json(&alertmanager::render(
                        &alerts,
                        now_ms,
                        *resend_s,
                        labels,
                        dashboard,
                        self.template.as_ref(),
                    )),
                    headers: Vec::new(),
                    url: None,
                }]
            }
            Target::Stdout | Target::File { .. } => {
                let mut lines = Vec::new();
                for notice in &delivery.notices {
                    let mut line = json(&notice.details);
                    line.push(b'\n');
                    lines.extend(line);
                }
                vec![Request { body: lines, headers: Vec::new(), url: None }]
            }
        }
    }

    /// Sends one request.
    pub async fn send(&self, request: &Request, clock: crate::clock::Clock) -> Attempt {
        let (url, ok_body) = match &self.target {
            Target::Slack { url } => (url.expose(), Some("ok")),
            Target::PagerDuty { url, .. } | Target::Webhook { url, .. } => (url.expose(), None),
            Target::Alertmanager { url, .. } => (url.as_str(), None),
            Target::Stdout => return write_lines(&mut std::io::stdout().lock(), &request.body),
            Target::File { path } => {
                return match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                    Ok(mut file) => write_lines(&mut file, &request.body),
                    Err(error) => Attempt::Retry {
                        cause: format!("cannot open {}: {error}", path.display()),
                        reason: "io",
                        after: None,
                    },
                };
            }
        };
        let Some(client) = &self.client else {
            return Attempt::Permanent {
                cause: "no HTTP client".into(),
                reason: "client_error",
                endpoint_dead: true,
            };
        };
        http::send(client, request.url.as_deref().unwrap_or(url), request, ok_body, clock).await
    }

    /// Alertmanager only: how often firing alerts are re-sent.
    pub fn resend_every(&self) -> Option<Duration> {
        match &self.target {
            Target::Alertmanager { resend_s, .. } => Some(Duration::from_secs((*resend_s).max(1))),
            _ => None,
        }
    }

    /// The body that re-sends `active` firing alerts (Alertmanager).
    pub fn resend_request(&self, active: &[super::notice::Notice], now_ms: i64) -> Option<Request> {
        let Target::Alertmanager { resend_s, labels, .. } = &self.target else { return None };
        let body = alertmanager::render(
            active,
            now_ms,
            *resend_s,
            labels,
            self.dashboard_url.as_deref(),
            self.template.as_ref(),
        );
        Some(Request {
            body: serde_json::to_vec(&body).unwrap_or_default(),
            headers: Vec::new(),
            url: None,
        })
    }
}

/// One write per message, so concurrent writers do not interleave mid-line.
fn write_lines(out: &mut impl std::io::Write, lines: &[u8]) -> Attempt {
    match out.write_all(lines).and_then(|()| out.flush()) {
        Ok(()) => Attempt::Delivered { status: 0 },
        Err(error) => {
            Attempt::Retry { cause: format!("write failed: {error}"), reason: "io", after: None }
        }
    }
}

/// A copy of `value` with every string cut to `max_chars` (names from logs can be huge).
pub fn bounded_strings(value: &Value, max_chars: usize) -> Value {
    match value {
        Value::String(text) => Value::String(crate::text::truncate(text, max_chars)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| bounded_strings(v, max_chars)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| (k.clone(), bounded_strings(v, max_chars))).collect(),
        ),
        other => other.clone(),
    }
}
