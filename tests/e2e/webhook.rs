//! The webhook sink against real HTTP receivers on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use crate::util::*;

#[derive(Default)]
struct Received {
    /// (status answered, webhook-id header, body)
    requests: Vec<(u16, String, serde_json::Value)>,
}

/// A receiver that answers 500 to the very first request and 200 afterwards.
fn start_receiver(runtime: &tokio::runtime::Runtime) -> (String, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    let state = received.clone();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let app =
        axum::Router::new()
            .route(
                "/hooks/secret-token-123",
                post(
                    |State(state): State<Arc<Mutex<Received>>>,
                     headers: HeaderMap,
                     body: String| async move {
                        let mut received = state.lock().unwrap();
                        let status = if received.requests.is_empty() { 500 } else { 200 };
                        let id = headers
                            .get("webhook-id")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        received.requests.push((status, id, serde_json::from_str(&body).unwrap()));
                        StatusCode::from_u16(status).unwrap()
                    },
                ),
            )
            .with_state(state);
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hooks/secret-token-123"), received)
}

fn write_config(dir: &std::path::Path, url_line: &str) -> std::path::PathBuf {
    let path = dir.join("skewtail.toml");
    std::fs::write(
        &path,
        format!("[[input]]\npath = \"access.log\"\nformat = \"upstream\"\npool = \"api\"\n\n[[sink]]\ntype = \"webhook\"\nname = \"ops\"\n{url_line}\ntimeout_s = 2\nmax_retries = 2\nmin_backoff_ms = 50\n"),
    )
    .unwrap();
    path
}

#[test]
fn delivers_firing_and_resolved_with_one_retry_after_a_500() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (url, received) = start_receiver(&runtime);
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), "access.log", &skew_scenario());
    let config = write_config(dir.path(), "url_env = \"SKEWTAIL_TEST_WEBHOOK_URL\"");
    let output = skewtail()
        .args(["replay", "--json", "--config"])
        .arg(&config)
        .env("SKEWTAIL_TEST_WEBHOOK_URL", &url)
        .env("SKEWTAIL_LOG", "debug")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    let received = received.lock().unwrap();
    let statuses: Vec<u16> = received.requests.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [500, 200, 200], "first attempt refused, retried, then the resolve");
    let (first, retry, resolve) =
        (&received.requests[0], &received.requests[1], &received.requests[2]);
    assert_eq!(first.2, retry.2, "the retry carries the same body");
    assert_eq!(retry.2["type"], "alert");
    assert_eq!(retry.2["state"], "firing");
    assert_eq!(retry.2["backend"], "10.0.1.3:8080");
    assert_eq!(resolve.2["state"], "resolved");
    assert_eq!(first.1, resolve.1, "firing and resolved share the webhook-id");
    assert_eq!(first.1, retry.2["fingerprint"]);

    let objects = ndjson(&output);
    let delivery = &summary(&objects)["delivery"];
    assert_eq!(
        (delivery["delivered"].as_u64(), delivery["failed"].as_u64(), delivery["dropped"].as_u64()),
        (Some(2), Some(0), Some(0))
    );
    let log = stderr(&output);
    assert!(log.contains("Webhook delivery failed; retrying."), "{log}");
    assert!(
        !log.contains("secret-token-123"),
        "the webhook URL is a secret and must never be logged: {log}"
    );
}

#[test]
fn a_receiver_that_is_down_does_not_hang_the_replay() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), "access.log", &skew_scenario());
    let config = write_config(
        dir.path(),
        &format!("url = \"http://127.0.0.1:{port}/hooks/secret-token-123\""),
    );
    let started = Instant::now();
    let output = skewtail().args(["replay", "--json", "--config"]).arg(&config).output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = ndjson(&output);
    assert_eq!(of_type(&objects, "alert").len(), 2, "detection is unaffected");
    let delivery = &summary(&objects)["delivery"];
    assert_eq!(delivery["failed"], 2);
    assert_eq!(delivery["delivered"], 0);
    let log = stderr(&output);
    assert!(log.contains("Alert delivery failed."), "{log}");
    assert!(!log.contains("secret-token-123"), "{log}");
}
