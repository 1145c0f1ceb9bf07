//! `/metrics` encoding with 1,000 backends (BENCHMARKS.md §6): the work a scrape costs, once
//! the sidecar has seen every backend with a latency histogram.

// A benchmark fails loudly, and says the size of what it measures.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use skewtail::alert::AlertMetrics;
use skewtail::live::metrics::LiveMetrics;
use skewtail::window::{BackendSummary, LatencySketch, WindowSummary};

fn window(backends: usize, end_ms: i64) -> WindowSummary {
    WindowSummary {
        pool: Arc::from("api"),
        start_ms: end_ms - 10_000,
        end_ms,
        backends: (0..backends)
            .map(|i| BackendSummary {
                backend: Arc::from(format!("10.0.{}.{}:8080", i / 250, i % 250)),
                id: i as u32,
                requests: 20,
                errors: 1,
                retried: 0,
                failed_attempts: 0,
                p50_ms: None,
                p99_ms: None,
                latency: LatencySketch::from_latencies_ms(&[3.0, 12.0, 30.0, 80.0, 200.0, 700.0]),
            })
            .collect(),
        no_backend: 0,
    }
}

fn scrape(c: &mut Criterion) {
    let metrics = Arc::new(LiveMetrics::new(1000, 1_800_000));
    for minute in 1..=3 {
        metrics.window(&window(1000, minute * 60_000));
    }
    let expected: Vec<(Arc<str>, f64)> =
        window(1000, 0).backends.iter().map(|b| (b.backend.clone(), 0.001)).collect();
    metrics.expected(&Arc::from("api"), &expected);
    let registry = metrics.registry(&AlertMetrics::default());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    eprintln!("one scrape: {} bytes, {} lines", text.len(), text.lines().count());
    c.bench_function("encode /metrics, 1,000 backends", |b| {
        b.iter(|| {
            let mut text = String::with_capacity(1 << 20);
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        });
    });
}

criterion_group!(benches, scrape);
criterion_main!(benches);
