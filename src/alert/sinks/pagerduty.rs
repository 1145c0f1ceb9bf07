//! PagerDuty Events API v2: one event per state change, `trigger` then `resolve` with the
//! same `dedup_key` (the fingerprint, at most 255 characters).

use serde_json::{Value, json};

use crate::alert::notice::{Notice, Status};
use crate::alert::template::MessageTemplate;
use crate::text::{bounded_key, truncate, without_controls};

/// PagerDuty's public endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// `payload.summary` limit.
const SUMMARY_CHARS: usize = 1024;
/// Whole-event limit (512 KB).
const MAX_EVENT_BYTES: usize = 512_000;

/// Where PagerDuty takes change events, beside its Events v2 endpoint `url`
/// (`.../v2/enqueue` → `.../v2/change/enqueue`).
pub fn change_url(url: &str) -> String {
    let base = url.trim_end_matches('/');
    match base.strip_suffix("/enqueue") {
        Some(root) => format!("{root}/change/enqueue"),
        None => format!("{base}/change/enqueue"),
    }
}

/// A routine change as a PagerDuty change event: it shows on the service's timeline beside
/// any incident, and never pages.
fn change_event(
    notice: &Notice,
    routing_key: &str,
    source: &str,
    dashboard_url: Option<&str>,
) -> Value {
    let plain = |text: &str, max: usize| truncate(&without_controls(text), max);
    let mut event = json!({
        "routing_key": routing_key,
        "payload": {
            "summary": plain(&format!("{}: {}", notice.title(), notice.summary), SUMMARY_CHARS),
            "timestamp": crate::parse::time::format_rfc3339(notice.at_ms),
            "source": plain(source, 255),
            "custom_details": custom_details(notice),
        },
    });
    if let Some(url) = dashboard_url {
        event["links"] = json!([{ "href": url, "text": "Dashboard" }]);
    }
    event
}

/// The event for one notice.
pub fn render(
    notice: &Notice,
    routing_key: &str,
    source: &str,
    dashboard_url: Option<&str>,
    template: Option<&MessageTemplate>,
) -> Value {
    let dedup_key = bounded_key(&notice.fingerprint, 255);
    if notice.status == Status::Noted {
        return change_event(notice, routing_key, source, dashboard_url);
    }
    if notice.status == Status::Resolved {
        return json!({ "routing_key": routing_key, "dedup_key": dedup_key, "event_action": "resolve" });
    }
    let summary = match template.map(|t| t.render(std::slice::from_ref(notice), dashboard_url)) {
        Some(Ok(text)) => text,
        Some(Err(error)) => {
            tracing::warn!(message = "PagerDuty template failed; sending the built-in summary.", %error);
            format!("{}: {}", notice.title(), notice.summary)
        }
        None => format!("{}: {}", notice.title(), notice.summary),
    };
    let severity = match notice.severity.as_str() {
        "critical" | "error" | "warning" | "info" => notice.severity.as_str(),
        _ => "warning",
    };
    let plain = |text: &str, max: usize| truncate(&without_controls(text), max);
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": plain(&summary, SUMMARY_CHARS),
            "source": plain(source, 255),
            "severity": severity,
            "timestamp": crate::parse::time::format_rfc3339(notice.at_ms),
            "component": plain(&notice.backend, 255),
            "group": plain(&notice.pool, 255),
            "class": notice.kind,
            "custom_details": custom_details(notice),
        },
        "client": "skewtail",
    });
    if let Some(url) = dashboard_url {
        event["client_url"] = json!(url);
        event["links"] = json!([{ "href": url, "text": "Dashboard" }]);
    }
    if serde_json::to_vec(&event).map_or(0, |b| b.len()) > MAX_EVENT_BYTES {
        event["payload"]["custom_details"] = json!({
            "error": "custom details removed: the event exceeded PagerDuty's 512 KB limit",
        });
    }
    event
}

fn custom_details(notice: &Notice) -> Value {
    let mut details = super::bounded_strings(&notice.details, 1024);
    if let Value::Object(map) = &mut details {
        map.insert("diagnosis".into(), json!(truncate(&notice.diagnosis, 100)));
        map.insert("reason".into(), json!(truncate(&notice.reason, 2000)));
        map.insert("duration".into(), json!(notice.duration_text()));
        map.insert("reminder".into(), json!(notice.repeat));
    }
    details
}
