//! Prometheus Alertmanager, `POST /api/v2/alerts`: labels are the identity (never a changing
//! value), annotations carry the rest. Firing alerts are re-sent every `resend_s` with
//! `endsAt` four resends ahead, as Prometheus does, so Alertmanager never times them out; a
//! resolve sends `endsAt` = when it resolved.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::alert::notice::{Notice, Status};
use crate::alert::template::MessageTemplate;
use crate::parse::time::format_rfc3339;
use crate::text::{bounded_key, truncate, without_controls};

/// Label values from logs are cut to this.
const LABEL_CHARS: usize = 1024;

/// The body for `notices`, sent at `now_ms`.
pub fn render(
    notices: &[Notice],
    now_ms: i64,
    resend_s: u64,
    extra_labels: &BTreeMap<String, String>,
    dashboard_url: Option<&str>,
    template: Option<&MessageTemplate>,
) -> Value {
    let plain = |text: &str| truncate(&without_controls(text), LABEL_CHARS);
    let alerts: Vec<Value> = notices
        .iter()
        .map(|n| {
            let mut labels: BTreeMap<String, String> = extra_labels.clone();
            labels.insert("alertname".into(), alert_name(&n.kind));
            labels.insert("pool".into(), plain(&n.pool));
            labels.insert("backend".into(), plain(&n.backend));
            labels.insert("kind".into(), n.kind.clone());
            labels.insert("direction".into(), n.direction.clone());
            labels.insert("severity".into(), n.severity.clone());
            // Four values: a label, so that inhibit rules can match on it.
            labels.insert("diagnosis".into(), plain(&n.diagnosis));
            labels.insert("fingerprint".into(), bounded_key(&n.fingerprint, 255));
            labels.insert("source".into(), "skewtail".into());
            let mut annotations = BTreeMap::new();
            annotations.insert("summary", plain(&n.summary));
            annotations.insert("diagnosis", plain(&n.diagnosis));
            annotations.insert("reason", plain(&n.reason));
            annotations.insert("duration", n.duration_text());
            if let Some(template) = template {
                match template.render(std::slice::from_ref(n), dashboard_url) {
                    Ok(text) => {
                        annotations.insert("description", truncate(&text, 4000));
                    }
                    Err(error) => {
                        tracing::warn!(message = "Alertmanager template failed; no description.", %error)
                    }
                }
            }
            let resend_ms = i64::try_from(resend_s).unwrap_or(60).saturating_mul(1000);
            let ends_at = match n.status {
                Status::Resolved | Status::Noted => n.at_ms.min(now_ms),
                Status::Firing => now_ms + 4 * resend_ms,
            };
            let mut alert = json!({
                "labels": labels,
                "annotations": annotations,
                "startsAt": format_rfc3339(n.started_at_ms),
                "endsAt": format_rfc3339(ends_at),
            });
            if let Some(url) = dashboard_url {
                alert["generatorURL"] = json!(url);
            }
            alert
        })
        .collect();
    Value::Array(alerts)
}

/// `SkewtailSkew`, `SkewtailDrop`, ...
fn alert_name(kind: &str) -> String {
    let camel: String = kind
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map_or_else(String::new, |c| c.to_ascii_uppercase().to_string() + chars.as_str())
        })
        .collect();
    format!("Skewtail{camel}")
}
