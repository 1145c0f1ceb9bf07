//! What a notification is about: one state change of one alert (or of skewtail's own
//! delivery, or a test), in the one shape every sink, route and template reads.

use serde::{Deserialize, Serialize};

use crate::detect::{AlertEvent, AlertState};
use crate::text as escape;

/// Whether the alert is firing or has resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The condition holds.
    Firing,
    /// It has cleared.
    Resolved,
    /// A one-shot finding (a routine change): sent once, never resolved or repeated.
    Noted,
}

impl Status {
    /// `firing`, `resolved` or `noted`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
            Status::Noted => "noted",
        }
    }
}

/// One state change to notify. The strings are raw (from logs): sinks escape them for their
/// target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Idempotency key of this state change: the same for every attempt, sink and restart,
    /// different for the firing, its resolve and each repeat.
    pub key: String,
    /// Identity of the anomaly, shared by its firing and its resolve.
    pub fingerprint: String,
    /// Firing or resolved.
    pub status: Status,
    /// `skew`, `drop`, `spike`, `errors`, `latency`, `unexpected`; `delivery` for skewtail's
    /// own meta-alert about a failing sink; `test` for `skewtail alert test`.
    pub kind: String,
    /// `over`, `under` or `none`.
    pub direction: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// The pool.
    pub pool: String,
    /// The backend, or `*` for the whole pool.
    pub backend: String,
    /// Where the fault most likely is: `balancer`, `backend`, `shared dependency`, `load`.
    pub diagnosis: String,
    /// Why.
    pub reason: String,
    /// One line for people.
    pub summary: String,
    /// When the anomaly began (Unix ms, event time).
    pub started_at_ms: i64,
    /// When this state change was decided (Unix ms, event time).
    pub at_ms: i64,
    /// 0 for the first notification of a firing; n for the n-th reminder.
    pub repeat: u32,
    /// The alert as `replay --json` prints it (evidence included), for payloads that carry
    /// details.
    pub details: serde_json::Value,
}

impl Notice {
    /// The notice for a detector state change.
    pub fn from_event(event: &AlertEvent) -> Self {
        let status = match event.state {
            AlertState::Firing => Status::Firing,
            AlertState::Resolved => Status::Resolved,
            AlertState::Noted => Status::Noted,
        };
        let fingerprint = event.fingerprint();
        let details = serde_json::to_value(crate::detect::AlertMessage::new(event))
            .unwrap_or(serde_json::Value::Null);
        let direction = serde_json::to_value(event.direction)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let severity = serde_json::to_value(event.severity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        Notice {
            key: change_key(&fingerprint, event.started_at_ms, status, 0),
            fingerprint,
            status,
            kind: event.kind.name().to_string(),
            direction,
            severity,
            pool: event.pool.to_string(),
            backend: event.backend.to_string(),
            diagnosis: event.diagnosis.verdict.label().to_string(),
            reason: event.diagnosis.reason.clone(),
            summary: event.summary.clone(),
            started_at_ms: event.started_at_ms,
            at_ms: event.at_ms,
            repeat: 0,
            details,
        }
    }

    /// The n-th reminder of a firing notice, decided at `at_ms`.
    pub fn repeated(&self, repeat: u32, at_ms: i64) -> Self {
        Notice {
            key: change_key(&self.fingerprint, self.started_at_ms, self.status, repeat),
            repeat,
            at_ms,
            ..self.clone()
        }
    }

    /// A field by the name routes, silences and inhibition rules use.
    pub fn field(&self, name: &str) -> Option<&str> {
        Some(match name {
            "kind" => &self.kind,
            "severity" => &self.severity,
            "pool" => &self.pool,
            "backend" => &self.backend,
            "diagnosis" => &self.diagnosis,
            "direction" => &self.direction,
            _ => return None,
        })
    }

    /// A one-line title: `FIRING skew: 10.0.1.3:8080 in pool api` (raw text).
    pub fn title(&self) -> String {
        let state = match (self.status, self.repeat) {
            (Status::Resolved, _) => "RESOLVED".to_string(),
            (Status::Noted, _) => "NOTED".to_string(),
            (Status::Firing, 0) => "FIRING".to_string(),
            (Status::Firing, n) => format!("STILL FIRING (reminder {n})"),
        };
        let subject = if self.backend == crate::detect::WHOLE_POOL {
            format!("pool {}", self.pool)
        } else {
            format!("{} in pool {}", self.backend, self.pool)
        };
        format!("{state} {}: {subject}", self.kind)
    }

    /// How long the anomaly has lasted at this change, `1h 5m` style.
    pub fn duration_text(&self) -> String {
        let seconds = (self.at_ms - self.started_at_ms).max(0) / 1000;
        let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
        match (h, m) {
            (0, 0) => format!("{s}s"),
            (0, _) => format!("{m}m {s}s"),
            _ => format!("{h}h {m}m"),
        }
    }
}

/// The idempotency key of one state change: a hash, so it is safe in any header.
pub fn change_key(fingerprint: &str, started_at_ms: i64, status: Status, repeat: u32) -> String {
    let started = started_at_ms.to_string();
    let repeat = repeat.to_string();
    format!("st_{}", escape::digest(&[fingerprint, &started, status.name(), &repeat], 32))
}

/// The id of a message carrying `notices` (the hash of their keys).
pub fn message_id(notices: &[Notice]) -> String {
    let keys: Vec<&str> = notices.iter().map(|n| n.key.as_str()).collect();
    format!("msg_{}", escape::digest(&keys, 32))
}
