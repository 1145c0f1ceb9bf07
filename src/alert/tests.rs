//! The notifier against real HTTP receivers on 127.0.0.1, with tokio's clock paused where an
//! outage lasts minutes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::alert::schema::{AlertingConfig, SinkSection, SinkType};
use crate::detect::{AlertKind, AlertState, Diagnosis, Direction, Evidence, Severity, Verdict};
use crate::located::Located;

fn event(backend: &str, state: AlertState) -> AlertEvent {
    AlertEvent {
        state,
        kind: AlertKind::Skew,
        direction: Direction::Over,
        backend: backend.into(),
        pool: "api".into(),
        at_ms: 1_700_000_000_000,
        started_at_ms: 1_699_999_970_000,
        severity: Severity::Critical,
        summary: "test".into(),
        diagnosis: Diagnosis { verdict: Verdict::Balancer, reason: "test".into() },
        resolution: None,
        evidence: Evidence { duration_s: 30, ..Evidence::blank(10) },
    }
}

fn webhook_config(url: &str, ttl_s: Option<u64>, capacity: Option<usize>) -> AlertingConfig {
    let section = SinkSection {
        name: Some("hook".into()),
        kind: SinkType::Webhook,
        url: Some(crate::alert::schema::Secret::new(url.to_string())),
        url_env: None,
        url_file: None,
        urls: None,
        routing_key: None,
        routing_key_env: None,
        routing_key_file: None,
        secret: None,
        secret_env: None,
        secret_file: None,
        path: None,
        timeout_s: Some(2.0),
        rate_per_s: None,
        ttl_s,
        queue_capacity: capacity,
        template: None,
        dashboard_url: None,
        source: None,
        resend_s: None,
        labels: None,
        insecure_http: None,
    };
    AlertingConfig {
        sinks: vec![Located { line: 1, value: section }],
        source: "/etc/skewtail.toml".into(),
        ..AlertingConfig::default()
    }
}

/// A receiver on `listener` that counts requests and answers 200 after `delay`.
fn serve(listener: tokio::net::TcpListener, delay: Duration) -> Arc<AtomicUsize> {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    hits
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn sent(notifier: &Notifier) -> u64 {
    notifier.metrics().totals(&["hook".to_string()]).delivered
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_receiver_down_for_ten_minutes_gets_the_message_once_it_is_back() {
    let port = closed_port();
    let config = webhook_config(&format!("http://127.0.0.1:{port}/hook"), None, None);
    let mut notifier =
        Notifier::start(&config, &NotifierOptions::default(), &tokio::runtime::Handle::current())
            .unwrap();
    notifier.accept(&event("a:80", AlertState::Firing));
    notifier.accept(&event("a:80", AlertState::Resolved));
    // Ten minutes of refused connections, on the paused clock.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let retried: u64 = metrics::REASONS
        .iter()
        .map(|r| {
            notifier
                .metrics()
                .retried
                .get_or_create(&metrics::SinkReason { sink: "hook".into(), reason: (*r).into() })
                .get()
        })
        .sum();
    assert!(retried >= 8, "it kept trying: {retried} retries");
    assert_eq!(sent(&notifier), 0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let hits = serve(listener, Duration::ZERO);
    // Past the longest wait (a backoff of a minute plus up to as much jitter; the circuit
    // pause is at most a minute too), then real time again.
    tokio::time::advance(Duration::from_secs(125)).await;
    tokio::time::resume();
    for _ in 0..400 {
        if sent(&notifier) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sent(&notifier), 2, "both, after the outage");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "each once");
    let totals = notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!((totals.expired, totals.undelivered), (0, 0));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_message_not_delivered_within_its_ttl_expires_and_is_counted() {
    let config =
        webhook_config(&format!("http://127.0.0.1:{}/hook", closed_port()), Some(300), None);
    let mut notifier =
        Notifier::start(&config, &NotifierOptions::default(), &tokio::runtime::Handle::current())
            .unwrap();
    notifier.accept(&event("a:80", AlertState::Firing));
    tokio::time::sleep(Duration::from_secs(600)).await;
    let totals = notifier.shutdown(Duration::from_secs(1)).await;
    assert_eq!((totals.delivered, totals.expired, totals.undelivered), (0, 1, 0), "{totals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_never_waits_for_a_hung_receiver_and_a_full_queue_drops_the_oldest() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let _hits = serve(listener, Duration::from_secs(30));
    let config = webhook_config(&url, None, Some(10));
    let mut notifier =
        Notifier::start(&config, &NotifierOptions::default(), &tokio::runtime::Handle::current())
            .unwrap();
    let started = std::time::Instant::now();
    for i in 0..100 {
        notifier.accept(&event(&format!("b{i}:80"), AlertState::Firing));
    }
    assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
    let totals = notifier.shutdown(Duration::from_millis(300)).await;
    assert_eq!(totals.dropped, 90, "{totals:?}");
    assert_eq!(totals.undelivered, 10);
}

#[test]
fn a_restart_delivers_what_was_pending_and_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let log = journal::log_in(dir.path());
    let first = Notice::from_event(&event("a:80", AlertState::Firing));
    let second = Notice::from_event(&event("b:80", AlertState::Firing));
    let journal = journal::Journal::new(Some(log.clone()));
    journal.enqueue("hook", std::slice::from_ref(&first), 1, 10);
    journal.enqueue("hook", std::slice::from_ref(&second), 2, 10);
    let (snapshot, _) = journal.snapshot();
    // Delivered after the snapshot, then kill -9.
    let id = journal.front("hook").unwrap().id;
    journal.settle("hook", &id, journal::Settled::Delivered, 3);
    drop(journal);
    let restarted = journal::Journal::new(Some(log));
    restarted.restore(snapshot);
    assert_eq!(restarted.depth("hook"), 1, "the second is still pending");
    assert_eq!(restarted.front("hook").unwrap().notices, [second]);
    // The detector makes the first change again from the re-read lines: not queued.
    assert_eq!(
        restarted.enqueue("hook", std::slice::from_ref(&first), 4, 10),
        journal::Enqueued::Duplicate
    );
}

#[test]
fn without_routes_pages_reach_every_sink_and_routine_changes_only_the_records() {
    let mut config = webhook_config("http://127.0.0.1:9/hook", None, None);
    let mut file = config.sinks[0].value.clone();
    file.name = Some("archive".into());
    file.kind = SinkType::File;
    file.url = None;
    file.path = Some("/tmp/skewtail-alerts.ndjson".into());
    file.timeout_s = None;
    config.sinks.push(Located { line: 2, value: file });
    let routes = settings::check(&config).unwrap().routes;
    let sinks_for = |severity: Severity, state: AlertState| -> Vec<String> {
        let event = AlertEvent { severity, ..event("a:80", state) };
        let notice = Notice::from_event(&event);
        routes.iter().filter(|r| r.matcher.matches(&notice)).flat_map(|r| r.sinks.clone()).collect()
    };
    assert_eq!(sinks_for(Severity::Critical, AlertState::Firing), ["hook", "archive"]);
    assert_eq!(sinks_for(Severity::Warning, AlertState::Resolved), ["hook", "archive"]);
    assert_eq!(sinks_for(Severity::Info, AlertState::Noted), ["archive"]);
}

#[test]
fn a_noted_change_is_a_pagerduty_change_event_and_skips_alertmanager() {
    let event = AlertEvent {
        kind: AlertKind::Change,
        severity: Severity::Info,
        summary: "change: rolling restart of pool api".into(),
        ..event("*", AlertState::Noted)
    };
    let notice = Notice::from_event(&event);
    assert_eq!(notice.status, Status::Noted);
    assert_eq!(notice.title(), "NOTED change: pool api");
    let body = sinks::pagerduty::render(&notice, "key", "lb1", None, None);
    assert!(body.get("event_action").is_none(), "{body}");
    assert!(body["payload"]["summary"].as_str().unwrap().contains("rolling restart"), "{body}");
    assert_eq!(
        sinks::pagerduty::change_url("https://events.pagerduty.com/v2/enqueue"),
        "https://events.pagerduty.com/v2/change/enqueue"
    );
    assert_eq!(
        sinks::pagerduty::change_url("http://127.0.0.1:9/pd/"),
        "http://127.0.0.1:9/pd/change/enqueue"
    );
    // Routed once, never remembered as firing: nothing to remind of or to resolve.
    let mut router = route::Router::new(
        vec![route::Route {
            name: "all".into(),
            sinks: vec!["s".into()],
            matcher: Matcher::default(),
            group_wait_ms: 0,
            repeat_ms: Some(1000),
            send_resolved: true,
            continue_matching: false,
        }],
        vec![],
        silence::Silences::default(),
    );
    let mut out = Vec::new();
    router.accept(notice, &mut out);
    router.tick(event.at_ms + 10_000, &mut out);
    assert_eq!(out.len(), 1, "{out:?}");
}
