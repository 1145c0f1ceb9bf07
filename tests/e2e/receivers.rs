//! Strict stand-ins for Slack, PagerDuty and a Standard Webhooks receiver on 127.0.0.1: each
//! checks every request against the vendor's documented shape and limits, answers as the
//! vendor does (200 `ok`, 202, 400 with the reason, 429 with `Retry-After`), and records
//! what it got. Faults on demand: not listening yet, hanging, rate limiting.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

/// Which service it imitates.
#[derive(Debug, Clone)]
pub enum Vendor {
    /// A Slack incoming webhook.
    Slack,
    /// PagerDuty Events API v2.
    PagerDuty,
    /// A Standard Webhooks receiver with this key.
    Signed(Vec<u8>),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// When.
    pub at: Instant,
    /// Headers (lower-case names).
    pub headers: BTreeMap<String, String>,
    /// The JSON body.
    pub body: Value,
    /// What it answered.
    pub status: u16,
    /// Contract violations found (a strict receiver answers 400 for them).
    pub problems: Vec<String>,
}

/// Faults to inject.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Answer 429 (with `Retry-After: 1`) to this many requests first.
    pub rate_limit_first: usize,
    /// Hold the first request this long before answering.
    pub hang_first: Option<Duration>,
}

struct Inner {
    vendor: Vendor,
    faults: Faults,
    hits: Vec<Hit>,
    requests: usize,
}

/// A running receiver.
pub struct Receiver {
    /// Its URL.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    /// Starts one on `port` (0: any) of 127.0.0.1.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        vendor: Vendor,
        faults: Faults,
        port: u16,
    ) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            vendor: vendor.clone(),
            faults,
            hits: Vec::new(),
            requests: 0,
        }));
        let listener =
            runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))).unwrap();
        let address = listener.local_addr().unwrap();
        let path = match vendor {
            Vendor::Slack => "/services/T000/B000/XXXXXXXX",
            Vendor::PagerDuty => "/v2/enqueue",
            Vendor::Signed(_) => "/hooks/incoming",
        };
        let app =
            axum::Router::new().route(path, axum::routing::post(handle)).with_state(inner.clone());
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url: format!("http://{address}{path}"), inner }
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.inner.lock().unwrap().hits.clone()
    }

    /// The accepted requests' bodies.
    pub fn accepted(&self) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| (200..300).contains(&h.status)).collect()
    }

    /// Waits until `done(accepted hits)` or `within` passes; returns whether it happened.
    pub fn wait_for(&self, within: Duration, done: impl Fn(&[Hit]) -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if done(&self.accepted()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        done(&self.accepted())
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (vendor, hang, limited) = {
        let mut inner = inner.lock().unwrap();
        inner.requests += 1;
        let n = inner.requests;
        (
            inner.vendor.clone(),
            inner.faults.hang_first.filter(|_| n == 1),
            n <= inner.faults.rate_limit_first,
        )
    };
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_lowercase(), v.to_str().unwrap_or("<non-ascii>").to_string()))
        .collect();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let problems = match &vendor {
        Vendor::Slack => slack_problems(&json),
        Vendor::PagerDuty => pagerduty_problems(&json, body.len()),
        Vendor::Signed(key) => signature_problems(key, &headers, &body),
    };
    if let Some(hang) = hang {
        // Recorded on arrival with status 0: a client that gives up cancels this handler.
        let index = {
            let mut inner = inner.lock().unwrap();
            inner.hits.push(Hit {
                at: Instant::now(),
                headers: headers.clone(),
                body: json.clone(),
                status: 0,
                problems: problems.clone(),
            });
            inner.hits.len() - 1
        };
        tokio::time::sleep(hang).await;
        inner.lock().unwrap().hits[index].status = 204;
        return StatusCode::NO_CONTENT.into_response();
    }
    let (status, response) = if limited {
        let body = match vendor {
            Vendor::Slack => {
                json!({"retry_after": 1, "ok": false, "error": "rate_limited"}).to_string()
            }
            _ => json!({"status": "throttled", "message": "Too many requests"}).to_string(),
        };
        (429, ([("retry-after", "1")], body).into_response())
    } else if !problems.is_empty() {
        let body = match vendor {
            Vendor::Slack => "invalid_payload".to_string(),
            Vendor::PagerDuty => json!({"status": "invalid event", "message": "Event object is invalid", "errors": problems}).to_string(),
            Vendor::Signed(_) => json!({"error": problems.join("; ")}).to_string(),
        };
        let status = if matches!(vendor, Vendor::Signed(_)) { 401 } else { 400 };
        (status, body.into_response())
    } else {
        match vendor {
            Vendor::Slack => (200, "ok".into_response()),
            Vendor::PagerDuty => (
                202,
                json!({"status": "success", "message": "Event processed", "dedup_key": json["dedup_key"]}).to_string().into_response(),
            ),
            Vendor::Signed(_) => (204, ().into_response()),
        }
    };
    inner.lock().unwrap().hits.push(Hit {
        at: Instant::now(),
        headers,
        body: json,
        status,
        problems,
    });
    let mut response = response;
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

/// Every string in a JSON value.
pub fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn chars(value: &Value) -> usize {
    value.as_str().map_or(0, |s| s.chars().count())
}

fn slack_problems(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let text = body["text"].as_str().unwrap_or_default();
    if text.is_empty() {
        problems.push("no_text".into());
    }
    if text.chars().count() > 40_000 {
        problems.push("text over 40000".into());
    }
    let blocks = body["blocks"].as_array().cloned().unwrap_or_default();
    if blocks.len() > 50 {
        problems.push(format!("{} blocks (max 50)", blocks.len()));
    }
    for block in &blocks {
        match block["type"].as_str() {
            Some("header") => {
                if block["text"]["type"] != "plain_text" || chars(&block["text"]["text"]) > 150 {
                    problems.push("invalid header".into());
                }
            }
            Some("section") => {
                if chars(&block["text"]["text"]) > 3000 {
                    problems.push("section text over 3000".into());
                }
                let fields = block["fields"].as_array().cloned().unwrap_or_default();
                if fields.len() > 10 || fields.iter().any(|f| chars(&f["text"]) > 2000) {
                    problems.push("invalid fields".into());
                }
                if block.get("text").is_none() && fields.is_empty() {
                    problems.push("empty section".into());
                }
            }
            Some("context") => {
                if body["blocks"].as_array().is_none()
                    || block["elements"].as_array().map_or(0, Vec::len) > 10
                {
                    problems.push("invalid context".into());
                }
            }
            other => problems.push(format!("unknown block {other:?}")),
        }
    }
    // Live tokens: mentions, broadcasts, and links other than the configured dashboard.
    let mut texts = Vec::new();
    strings(body, &mut texts);
    for text in texts {
        for (at, _) in text.match_indices('<') {
            let rest = &text[at..];
            if !rest.starts_with("<https://dashboard.example.com/") {
                problems.push(format!(
                    "live Slack token in `{}`",
                    rest.chars().take(40).collect::<String>()
                ));
            }
        }
    }
    if body["unfurl_links"] != false {
        problems.push("unfurl_links not false".into());
    }
    problems
}

fn pagerduty_problems(body: &Value, size: usize) -> Vec<String> {
    let mut problems = Vec::new();
    if size > 512_000 {
        problems.push("event over 512 KB".into());
    }
    if chars(&body["routing_key"]) != 32 {
        problems.push("Length of 'routing_key' is incorrect (should be 32 characters)".into());
    }
    let action = body["event_action"].as_str().unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        problems.push(format!("invalid event_action `{action}`"));
    }
    let dedup = chars(&body["dedup_key"]);
    if dedup == 0 || dedup > 255 {
        problems.push("dedup_key missing or over 255".into());
    }
    if action == "trigger" {
        let payload = &body["payload"];
        let summary = chars(&payload["summary"]);
        if summary == 0 || summary > 1024 {
            problems.push("payload.summary missing or over 1024".into());
        }
        if chars(&payload["source"]) == 0 {
            problems.push("payload.source missing".into());
        }
        if !["critical", "error", "warning", "info"]
            .contains(&payload["severity"].as_str().unwrap_or_default())
        {
            problems.push("payload.severity invalid".into());
        }
    }
    problems
}

fn signature_problems(key: &[u8], headers: &BTreeMap<String, String>, body: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    let id = headers.get("webhook-id").cloned().unwrap_or_default();
    if id.is_empty() || id.len() > 255 || !id.chars().all(|c| c.is_ascii_graphic()) {
        problems.push(format!("bad webhook-id `{id}`"));
    }
    let timestamp: i64 = headers.get("webhook-timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    if (now - timestamp).abs() > 300 {
        problems.push(format!("webhook-timestamp {timestamp} outside 5 minutes of now"));
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let given = headers.get("webhook-signature").cloned().unwrap_or_default();
    if !given.split(' ').any(|s| s == expected) {
        problems.push("signature does not verify".into());
    }
    problems
}
