//! The sidecar's HTTP endpoint: `/metrics` (OpenMetrics text), `/healthz` (the ingest loop
//! is turning), `/readyz` (inputs open and state loaded) and `/api/v1/alerts` (what is
//! firing). It runs on the delivery runtime and only reads what the ingest loop publishes, so
//! a slow or hostile client cannot slow ingestion.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

use super::LiveError;
use super::metrics::LiveMetrics;

/// A loop that has not turned for this long is reported unhealthy (a turn takes at most a
/// few hundred milliseconds; a snapshot write on a slow disk a few seconds).
const STALLED_AFTER_MS: i64 = 60_000;

/// What the probes report, set by the ingest loop.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    /// Wall-clock ms of the ingest loop's last turn.
    heartbeat_ms: AtomicI64,
}

impl Health {
    /// The inputs are open and the state is loaded.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// The ingest loop turned at `now_ms`.
    pub fn beat(&self, now_ms: i64) {
        self.heartbeat_ms.store(now_ms, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
struct Shared {
    registry: Arc<Registry>,
    metrics: Arc<LiveMetrics>,
    health: Arc<Health>,
}

/// Binds `addr` now (so that a port in use is an error at start, not a log line later) and
/// serves on `runtime`; returns the address bound (the port chosen when 0 was asked).
pub fn start(
    addr: SocketAddr,
    runtime: &tokio::runtime::Handle,
    registry: Registry,
    metrics: Arc<LiveMetrics>,
    health: Arc<Health>,
) -> Result<SocketAddr, LiveError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| LiveError::Listen { addr, source })?;
    let serve = |doing| move |source| LiveError::Serve { doing, source };
    listener.set_nonblocking(true).map_err(serve("cannot make the listener non-blocking"))?;
    let bound = listener.local_addr().map_err(serve("cannot read the address listened on"))?;
    let shared = Shared { registry: Arc::new(registry), metrics, health };
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/alerts", get(alerts))
        .with_state(shared);
    let _guard = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(serve("cannot hand the listener to the async runtime"))?;
    runtime.spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(message = "The HTTP endpoint stopped.", %error);
        }
    });
    Ok(bound)
}

async fn metrics_page(State(shared): State<Shared>) -> Response {
    let mut text = String::with_capacity(64 * 1024);
    match prometheus_client::encoding::text::encode(&mut text, &shared.registry) {
        Ok(()) => (
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n").into_response()
        }
    }
}

async fn healthz(State(shared): State<Shared>) -> Response {
    let beat = shared.health.heartbeat_ms.load(Ordering::Relaxed);
    let since = crate::clock::wall_clock_ms() - beat;
    if beat == 0 || since <= STALLED_AFTER_MS {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let text = format!("the ingest loop has not turned for {} s\n", since / 1000);
        (StatusCode::SERVICE_UNAVAILABLE, text).into_response()
    }
}

async fn readyz(State(shared): State<Shared>) -> Response {
    if shared.health.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting: opening inputs and loading the state\n")
            .into_response()
    }
}

async fn alerts(State(shared): State<Shared>) -> Response {
    axum::Json(serde_json::json!({ "alerts": shared.metrics.alerts() })).into_response()
}
