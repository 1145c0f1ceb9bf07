//! The detector end to end over synthetic windows: each judge in order, with the alerts and
//! diagnoses they make.

use super::*;
use crate::window::{BackendSummary, LatencySketch};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A backend's line with `requests` latencies spread evenly from 0.5x to 1.5x `latency_ms`.
#[allow(clippy::cast_precision_loss)]
fn backend(name: &str, requests: u64, errors: u64, latency_ms: f64) -> BackendSummary {
    let latencies: Vec<f64> =
        (0..requests).map(|i| latency_ms * (0.5 + i as f64 / requests as f64)).collect();
    let latency = LatencySketch::from_latencies_ms(&latencies);
    BackendSummary {
        backend: name.into(),
        id: 0,
        requests,
        errors,
        retried: 0,
        failed_attempts: 0,
        p50_ms: latency.quantile_ms(0.5),
        p99_ms: latency.quantile_ms(0.99),
        latency,
    }
}

fn name(i: usize) -> String {
    format!("10.0.0.{i}:80")
}

fn window(start_s: i64, counts: &[u64]) -> WindowSummary {
    WindowSummary {
        pool: "api".into(),
        start_ms: start_s * 1000,
        end_ms: (start_s + 10) * 1000,
        backends: counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &requests)| backend(&name(i), requests, 0, 20.0))
            .collect(),
        no_backend: 0,
    }
}

fn run(
    detector: &mut Detector,
    windows: impl IntoIterator<Item = WindowSummary>,
) -> Vec<AlertEvent> {
    let mut alerts = Vec::new();
    for w in windows {
        detector.observe(&w, &mut alerts);
    }
    alerts
}

fn learned() -> Detector {
    Detector::new(DetectorConfig::default(), FxHashMap::default())
}

fn weighted(weights: &[(&str, f64)], slow_start_s: Option<u32>) -> Detector {
    let weights = weights.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let expectations = [("api".to_string(), PoolExpectation { weights, slow_start_s })];
    Detector::new(DetectorConfig::default(), expectations.into_iter().collect())
}

/// (state, kind, backend, at in s) of each alert.
fn brief(alerts: &[AlertEvent]) -> Vec<(AlertState, AlertKind, &str, i64)> {
    alerts.iter().map(|a| (a.state, a.kind, &*a.backend, a.at_ms / 1000)).collect()
}

/// Windows from `counts_at(second)` every 10 s for `duration_s`.
fn windows(duration_s: i64, mut counts_at: impl FnMut(i64) -> Vec<u64>) -> Vec<WindowSummary> {
    (0..duration_s / 10).map(|i| window(i * 10, &counts_at(i * 10))).collect()
}

#[test]
fn sustained_skew_fires_once_then_resolves_once() {
    let alerts = run(
        &mut learned(),
        windows(1000, |t| {
            if (600..800).contains(&t) { vec![600, 100, 100, 100] } else { vec![100; 4] }
        }),
    );
    assert_eq!(
        brief(&alerts),
        [
            (AlertState::Firing, AlertKind::Skew, "10.0.0.0:80", 630),
            (AlertState::Resolved, AlertKind::Skew, "10.0.0.0:80", 850),
        ],
        "{:?}",
        brief(&alerts)
    );
    let fired = &alerts[0];
    assert_eq!((fired.direction, fired.severity), (Direction::Over, Severity::Critical));
    assert_eq!(fired.started_at_ms, 600_000);
    assert!((fired.evidence.observed_share - 6.0 / 9.0).abs() < 1e-9);
    assert!((fired.evidence.expected_share - 0.25).abs() < 0.01);
    assert_eq!(fired.diagnosis.verdict, Verdict::Balancer);
    assert!(
        fired.summary.starts_with("balancer: 10.0.0.0:80 is taking 66.7%"),
        "{}",
        fired.summary
    );
    assert!(fired.evidence.dispersion >= 1.0);
}

#[test]
fn short_blips_and_low_volume_do_not_fire() {
    let alerts = run(
        &mut learned(),
        windows(600, |t| match t {
            400 => vec![400, 100, 100, 100],       // one window only
            t if t >= 420 => vec![40, 10, 10, 10], // 70 requests: too few
            _ => vec![100; 4],
        }),
    );
    assert!(alerts.is_empty(), "{:?}", brief(&alerts));
}

#[test]
fn configured_weights_are_normal_and_equal_split_is_not() {
    let weights = [(name(0), 3.0), (name(1), 1.0), (name(2), 1.0), (name(3), 1.0)];
    let weights: Vec<(&str, f64)> = weights.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    let alerts = run(&mut weighted(&weights, None), windows(200, |_| vec![300, 100, 100, 100]));
    assert!(alerts.is_empty(), "{:?}", brief(&alerts));
    let alerts = run(&mut weighted(&weights, None), windows(200, |_| vec![150; 4]));
    assert_eq!(alerts.len(), 1, "{:?}", brief(&alerts));
    assert_eq!(
        (alerts[0].direction, alerts[0].evidence.expected_from),
        (Direction::Under, ExpectedFrom::Weights)
    );
}

#[test]
fn a_configured_backend_that_never_serves_is_a_drop() {
    let weights = [(name(0), 1.0), (name(1), 1.0), (name(2), 1.0), (name(3), 1.0)];
    let weights: Vec<(&str, f64)> = weights.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    // 10.0.0.3 is dead from the start: the log never names it.
    // A young pool's noise is not known yet, so the first windows are judged cautiously.
    let alerts = run(&mut weighted(&weights, None), windows(200, |_| vec![133, 133, 134]));
    assert_eq!(brief(&alerts).len(), 1, "{:?}", brief(&alerts));
    assert_eq!((alerts[0].kind, &*alerts[0].backend), (AlertKind::Drop, "10.0.0.3:80"));
    assert!(alerts[0].at_ms <= 60_000, "{:?}", brief(&alerts));
    // With a known slow start, it gets that long (plus the time to judge) first.
    let alerts = run(&mut weighted(&weights, Some(60)), windows(200, |_| vec![133, 133, 134]));
    assert_eq!(
        brief(&alerts),
        [(AlertState::Firing, AlertKind::Drop, "10.0.0.3:80", 110)],
        "{:?}",
        brief(&alerts)
    );
}

#[test]
fn a_backend_without_a_weight_is_one_finding_and_its_peers_are_not_paged() {
    let weights =
        [("10.0.0.0:80", 1.0), ("10.0.0.1:80", 1.0), ("10.0.0.2:80", 1.0), ("10.0.0.31:80", 1.0)];
    // The config says 10.0.0.31 (a typo); the balancer sends to 10.0.0.3.
    let alerts = run(&mut weighted(&weights, None), windows(200, |_| vec![100; 4]));
    assert_eq!(
        brief(&alerts),
        [(AlertState::Firing, AlertKind::Unexpected, "10.0.0.3:80", 30)],
        "{:?}",
        brief(&alerts)
    );
    let finding = &alerts[0];
    assert_eq!(finding.severity, Severity::Info);
    assert_eq!(finding.evidence.closest_configured.as_deref(), Some("10.0.0.31:80"));
    assert!(finding.summary.contains("did you mean 10.0.0.31:80?"), "{}", finding.summary);
}

#[test]
fn a_backend_that_leaves_a_learned_pool_for_good_is_a_scale_in_not_a_page() {
    let alerts = run(
        &mut learned(),
        windows(800, |t| if t < 400 { vec![100; 4] } else { vec![133, 133, 134, 0] }),
    );
    // Out from 400 s; after the 120 s grace the pool has carried it cleanly: removed.
    assert_eq!(brief(&alerts), [(AlertState::Noted, AlertKind::Change, "10.0.0.3:80", 520)]);
    let change = alerts[0].evidence.change.as_ref().unwrap();
    assert_eq!(change.operation, Operation::ScaleIn);
    assert_eq!(alerts[0].severity, Severity::Info);
    assert_eq!(alerts[0].diagnosis.verdict, Verdict::Change);
    assert!(alerts[0].summary.contains("scale-in of pool api"), "{}", alerts[0].summary);
    // Configured, the same departure pages after the grace: its weight says it should serve.
    let weights: Vec<(String, f64)> = (0..4).map(|i| (name(i), 1.0)).collect();
    let weights: Vec<(&str, f64)> = weights.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    let alerts = run(
        &mut weighted(&weights, None),
        windows(800, |t| if t < 400 { vec![100; 4] } else { vec![133, 133, 134, 0] }),
    );
    assert_eq!(brief(&alerts), [(AlertState::Firing, AlertKind::Drop, "10.0.0.3:80", 520)]);
    assert_eq!(alerts[0].fingerprint(), "skewtail/api/10.0.0.3:80/drop/under");
    assert_eq!(alerts[0].severity, Severity::Warning);
}

/// `counts` with backend `i` failing: it serves nothing and the balancer's attempts at it
/// (`failed` a window) go to the others.
fn refusing(start_s: i64, counts: &[u64], i: usize, failed: u64) -> WindowSummary {
    let mut w = window(start_s, counts);
    let mut tried = backend(&name(i), 0, 0, 20.0);
    tried.failed_attempts = failed;
    w.backends.push(tried);
    w
}

#[test]
fn a_refusing_backend_pages_after_the_grace_and_forgetting_never_resolves_it() {
    // Backend 3 refuses from 600 s for an hour: nginx tries it now and then and retries
    // elsewhere. Then it answers again.
    let alerts = run(
        &mut learned(),
        (0..600).map(|i| {
            let t = i * 10;
            if (600..4200).contains(&t) {
                refusing(t, &[133, 133, 134, 0], 3, 2)
            } else {
                window(t, &[100; 4])
            }
        }),
    );
    let seen = brief(&alerts);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], (AlertState::Firing, AlertKind::Drop, "10.0.0.3:80", 720));
    assert_eq!(alerts[0].diagnosis.verdict, Verdict::Backend, "{}", alerts[0].summary);
    assert_eq!(alerts[0].evidence.failed_attempts, Some(2));
    assert!(alerts[0].summary.contains("attempts at it fail"), "{}", alerts[0].summary);
    // Not resolved by forgetting (30 minutes), only once it serves again.
    assert_eq!((seen[1].0, seen[1].1), (AlertState::Resolved, AlertKind::Drop));
    assert!((4200..=4300).contains(&seen[1].3), "{seen:?}");
    assert_eq!(alerts[1].resolution, None);
}

#[test]
fn a_rolling_restart_is_one_change_and_no_page() {
    // Eight backends; every two hours each is drained for 40 s in turn.
    let alerts = run(
        &mut learned(),
        windows(4 * 3600, |t| {
            let into = t % 7200;
            let mut counts = vec![100u64; 8];
            if (1800..1800 + 8 * 50).contains(&into) && (into - 1800) % 50 < 40 {
                let drained = ((into - 1800) / 50) as usize;
                counts[drained] = 0;
                for (i, c) in counts.iter_mut().enumerate() {
                    if i != drained {
                        *c = 800 / 7;
                    }
                }
            }
            counts
        }),
    );
    let seen = brief(&alerts);
    assert_eq!(seen.len(), 2, "{seen:?}");
    for alert in &alerts {
        assert_eq!(
            (alert.state, alert.kind, alert.severity),
            (AlertState::Noted, AlertKind::Change, Severity::Info)
        );
        let change = alert.evidence.change.as_ref().unwrap();
        assert_eq!((change.operation, change.n_backends), (Operation::RollingRestart, 8));
        assert!(change.longest_absence_s.unwrap() <= 40, "{change:?}");
        assert!(
            alert.summary.starts_with("change: rolling restart of pool api: 8 backends"),
            "{}",
            alert.summary
        );
    }
}

#[test]
fn a_departure_that_hurts_the_rest_or_takes_half_the_pool_pages_at_once() {
    // One of four leaves and the others start failing: they cannot carry its traffic.
    let alerts = run(
        &mut learned(),
        (0..80).map(|i| {
            let t = i * 10;
            let mut w =
                window(t, if t < 400 { &[100, 100, 100, 100] } else { &[133, 133, 134, 0] });
            if t >= 400 {
                for b in &mut w.backends {
                    b.errors = 20;
                }
            }
            w
        }),
    );
    let drops: Vec<_> = alerts.iter().filter(|a| a.kind == AlertKind::Drop).collect();
    assert_eq!(drops.len(), 1, "{:?}", brief(&alerts));
    assert_eq!((drops[0].state, drops[0].severity), (AlertState::Firing, Severity::Critical));
    assert!(drops[0].at_ms / 1000 <= 440, "{:?}", brief(&alerts));
    assert!(drops[0].evidence.harm.as_deref().unwrap().contains("fail"), "{:?}", drops[0].evidence);
    // Two of four leave at once: half the capacity.
    let alerts = run(
        &mut learned(),
        windows(800, |t| if t < 400 { vec![100; 4] } else { vec![200, 200, 0, 0] }),
    );
    let drops: Vec<_> = alerts.iter().filter(|a| a.state == AlertState::Firing).collect();
    assert_eq!(drops.len(), 2, "{:?}", brief(&alerts));
    assert!(drops.iter().all(|a| a.kind == AlertKind::Drop && a.at_ms / 1000 <= 440));
}

/// Windows of four equal backends where backend 2 has `errors` 5xx and a latency of
/// `latency_ms` from `from_s` to `to_s`.
fn peers_windows(errors: u64, latency_ms: f64, from_s: i64, to_s: i64) -> Vec<WindowSummary> {
    (0..60)
        .map(|i| {
            let mut w = window(i * 10, &[100, 100, 100, 100]);
            if (from_s..to_s).contains(&(i * 10)) {
                w.backends[2] = backend(&name(2), 100, errors, latency_ms);
            }
            w
        })
        .collect()
}

#[test]
fn a_backend_failing_a_fifth_of_its_requests_fires_errors_once_then_resolves() {
    let alerts = run(&mut learned(), peers_windows(20, 20.0, 100, 300));
    assert_eq!(
        brief(&alerts),
        [
            (AlertState::Firing, AlertKind::Errors, "10.0.0.2:80", 130),
            (AlertState::Resolved, AlertKind::Errors, "10.0.0.2:80", 330),
        ]
    );
    let fired = &alerts[0];
    assert!(fired.evidence.errors_p_value.is_some_and(|p| p < 1e-6));
    assert_eq!(fired.diagnosis.verdict, Verdict::Backend);
    assert!(
        fired.summary.starts_with("backend: 10.0.0.2:80 is failing 20.0% of its requests in pool api against 0.0% on its peers"),
        "{}",
        fired.summary
    );
}

#[test]
fn a_slow_backend_with_an_unchanged_share_fires_latency() {
    let alerts = run(&mut learned(), peers_windows(0, 400.0, 100, 300));
    assert_eq!(alerts.len(), 2, "{:?}", brief(&alerts));
    assert_eq!((alerts[0].kind, alerts[0].state), (AlertKind::Latency, AlertState::Firing));
    assert_eq!(alerts[1].state, AlertState::Resolved);
    assert!(alerts[0].evidence.slow_fraction.is_some_and(|f| f > 0.9));
    assert_eq!(alerts[0].diagnosis.verdict, Verdict::Backend);
    // A skewed backend that is also slow and failing gets one page, the skew one.
    let alerts = run(
        &mut learned(),
        (0..60).map(|i| {
            let t = i * 10;
            if (300..500).contains(&t) {
                let mut w = window(t, &[60, 60, 220, 60]);
                w.backends[2] = backend(&name(2), 220, 40, 900.0);
                w
            } else {
                window(t, &[100; 4])
            }
        }),
    );
    let kinds: Vec<_> = alerts.iter().map(|a| (a.state, a.kind)).collect();
    assert_eq!(
        kinds,
        [(AlertState::Firing, AlertKind::Skew), (AlertState::Resolved, AlertKind::Skew)]
    );
    assert!(
        alerts[0].summary.contains("its 5xx rate is 18.2% (peers 0.0%)"),
        "{}",
        alerts[0].summary
    );
    assert!(
        alerts[0].diagnosis.reason.contains("follow from that load"),
        "{:?}",
        alerts[0].diagnosis
    );
}

#[test]
fn a_removed_backend_is_a_scale_in_and_an_added_one_a_scale_out() {
    // Four, then one is removed for good at 600 s, and a new one joins at 3000 s and takes
    // its fair share.
    let alerts = run(
        &mut learned(),
        (0..400).map(|i| {
            let t = i * 10;
            if t < 600 {
                window(t, &[100, 100, 100, 100])
            } else if t < 3000 {
                window(t, &[133, 133, 134, 0])
            } else {
                window(t, &[100, 100, 100, 0, 100])
            }
        }),
    );
    let seen = brief(&alerts);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], (AlertState::Noted, AlertKind::Change, "10.0.0.3:80", 720));
    assert_eq!(alerts[0].evidence.change.as_ref().unwrap().operation, Operation::ScaleIn);
    // The newcomer is welcomed, and recorded once its grace has ended at its share.
    assert_eq!((seen[1].0, seen[1].1, seen[1].2), (AlertState::Noted, AlertKind::Change, "*"));
    assert!((3300..=3330).contains(&seen[1].3), "{seen:?}");
    let change = alerts[1].evidence.change.as_ref().unwrap();
    assert_eq!(change.operation, Operation::ScaleOut);
    assert_eq!(&*change.backends[0], "10.0.0.4:80");
}

#[test]
fn the_detector_forgets_silent_backends() {
    let mut detector = learned();
    // Pod-IP churn: 20 new backends every window, each serving for one minute.
    let windows = (0..600i64).map(|i| WindowSummary {
        pool: "api".into(),
        start_ms: i * 10_000,
        end_ms: (i + 1) * 10_000,
        backends: (0..120)
            .map(|j| {
                backend(
                    &format!("10.1.{}.{}:80", (i * 20 + j) / 250 % 250, (i * 20 + j) % 250),
                    5,
                    0,
                    20.0,
                )
            })
            .collect(),
        no_backend: 0,
    });
    run(&mut detector, windows);
    assert!(detector.forgotten_backends() > 8000, "{}", detector.forgotten_backends());
    // Held: those seen within forget_after_s (30 min = 180 windows of 20 new ones), plus up
    // to a minute more until the next once-a-minute pass.
    assert!(detector.backends_held() <= (181 + 6) * 20 + 120, "{}", detector.backends_held());
}

#[test]
fn a_pair_pages_once() {
    for (skewed, want) in [
        ([300, 100], (AlertKind::Skew, Direction::Over, "10.0.0.0:80")),
        ([100, 300], (AlertKind::Skew, Direction::Over, "10.0.0.1:80")),
        ([0, 400], (AlertKind::Drop, Direction::Under, "10.0.0.0:80")),
    ] {
        let alerts = run(
            &mut learned(),
            windows(
                600,
                |t| if (400..500).contains(&t) { skewed.to_vec() } else { vec![200, 200] },
            ),
        );
        let firing: Vec<_> = alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .map(|a| (a.kind, a.direction, &*a.backend))
            .collect();
        assert_eq!(firing, [want], "{skewed:?}");
    }
}

#[test]
fn an_even_flash_crowd_is_a_spike_and_a_burst_is_not() {
    let alerts = run(
        &mut learned(),
        windows(1200, |t| vec![if (400..1000).contains(&t) { 300 } else { 100 }; 4]),
    );
    assert_eq!(alerts.len(), 2, "{:?}", brief(&alerts));
    let (fired, resolved) = (&alerts[0], &alerts[1]);
    assert_eq!(
        (fired.kind, fired.state, &*fired.backend),
        (AlertKind::Spike, AlertState::Firing, WHOLE_POOL)
    );
    assert!(
        fired.at_ms / 1000 - 400 <= 120,
        "a 3x surge is a spike within 2 minutes: {}",
        fired.at_ms
    );
    assert_eq!(resolved.state, AlertState::Resolved);
    assert_eq!(fired.diagnosis.verdict, Verdict::Load);
    assert!(
        fired.summary.starts_with("load: pool api is taking 3.0x its usual traffic"),
        "{}",
        fired.summary
    );
    // Thirty seconds at 3x, again and again: weather.
    let alerts = run(
        &mut learned(),
        windows(7200, |t| vec![if t % 600 < 30 && t > 600 { 300 } else { 100 }; 4]),
    );
    assert!(alerts.is_empty(), "{:?}", brief(&alerts));
}

#[test]
fn a_gap_restarts_persistence() {
    let mut ws: Vec<_> = (0..40).map(|i| window(i * 10, &[100; 4])).collect();
    ws.push(window(400, &[400, 100, 100, 100]));
    ws.push(window(410, &[400, 100, 100, 100]));
    ws.push(window(1000, &[400, 100, 100, 100])); // after a gap
    assert!(run(&mut learned(), ws).is_empty());
}

#[test]
fn a_skew_during_the_warm_up_is_caught_and_resolves_on_restore() {
    // The real-nginx story: equal at start, one server at weight 10 after three minutes,
    // restored three minutes later. Nothing was learned before: the warm-up is 5 minutes.
    let alerts = run(
        &mut learned(),
        windows(
            600,
            |t| if (180..360).contains(&t) { vec![770, 77, 77, 77] } else { vec![250; 4] },
        ),
    );
    assert_eq!(
        brief(&alerts),
        [
            (AlertState::Firing, AlertKind::Skew, "10.0.0.0:80", 210),
            (AlertState::Resolved, AlertKind::Skew, "10.0.0.0:80", 410),
        ],
        "{:?}",
        brief(&alerts)
    );
    assert_eq!(alerts[0].evidence.expected_from, ExpectedFrom::Warmup);
    assert!((alerts[0].evidence.expected_share - 0.25).abs() < 0.02, "{:?}", alerts[0].evidence);
}

/// Windows of a pool that sends whole client batches of `batch` requests to one backend.
fn bursty(
    seed: u64,
    duration_s: i64,
    weights: &[f64],
    rate_per_window: u64,
    batch: u64,
) -> Vec<WindowSummary> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let total: f64 = weights.iter().sum();
    windows(duration_s, |_| {
        let mut counts = vec![0u64; weights.len()];
        for _ in 0..rate_per_window / batch {
            let mut pick = rng.random::<f64>() * total;
            let chosen = weights
                .iter()
                .position(|w| {
                    pick -= w;
                    pick < 0.0
                })
                .unwrap_or(0);
            counts[chosen] += batch;
        }
        counts
    })
}

#[test]
fn a_bursty_pool_is_silent_and_a_real_skew_on_it_is_found() {
    // Batches of 20: counts are 20x more dispersed than binomial. A day of it, learned.
    let clean = bursty(3, 86_400, &[1.0; 8], 800, 20);
    let alerts = run(&mut learned(), clean);
    assert!(alerts.is_empty(), "{:#?}", brief(&alerts));
    // The same pool, with backend 2 at 45% from the second hour for 20 minutes.
    let mut detector = learned();
    let mut ws = bursty(4, 7200, &[1.0; 8], 800, 20);
    let skewed = bursty(5, 1200, &[1.0, 1.0, 5.73, 1.0, 1.0, 1.0, 1.0, 1.0], 800, 20);
    for (offset, w) in skewed.into_iter().enumerate() {
        let index = 360 + offset;
        ws[index].backends = w.backends;
    }
    let alerts = run(&mut detector, ws);
    let firing: Vec<_> = alerts.iter().filter(|a| a.state == AlertState::Firing).collect();
    assert_eq!(firing.len(), 1, "{:#?}", brief(&alerts));
    assert_eq!((firing[0].kind, &*firing[0].backend), (AlertKind::Skew, "10.0.0.2:80"));
    assert!(firing[0].at_ms / 1000 - 3600 <= 60, "{}", firing[0].at_ms);
    assert!(firing[0].evidence.dispersion > 10.0, "{:?}", firing[0].evidence);
}

#[test]
fn a_new_backend_ramps_up_without_a_page_and_one_taking_too_much_at_once_is_paged() {
    // A fifth backend joins at 1800 s and ramps from 0 to its share over two minutes.
    let ramp = |t: i64| {
        if t < 1800 {
            vec![250, 250, 250, 250]
        } else {
            let progress = ((t - 1800) as f64 / 120.0).min(1.0);
            let new = (200.0 * progress) as u64;
            let rest = (1000 - new) / 4;
            vec![rest, rest, rest, rest, new.max(1)]
        }
    };
    let alerts = run(&mut learned(), windows(3600, ramp));
    // No page: one scale-out once its grace is over.
    assert_eq!(brief(&alerts), [(AlertState::Noted, AlertKind::Change, "*", 2110)]);
    // A newcomer at a steady high share that answers like its peers is a canary: learned.
    let alerts = run(
        &mut learned(),
        windows(3600, |t| if t < 1800 { vec![250; 4] } else { vec![150, 150, 150, 150, 400] }),
    );
    assert_eq!(brief(&alerts), [(AlertState::Noted, AlertKind::Change, "10.0.0.4:80", 2110)]);
    assert_eq!(alerts[0].evidence.change.as_ref().unwrap().operation, Operation::Canary);
    // One that takes too much and fails for it is paged at once.
    let alerts = run(
        &mut learned(),
        (0..360).map(|i| {
            let t = i * 10;
            let mut w = window(t, if t < 1800 { &[250; 4] } else { &[150, 150, 150, 150, 400] });
            if t >= 1800 {
                w.backends[4].errors = 60;
            }
            w
        }),
    );
    let firing: Vec<_> = alerts.iter().filter(|a| a.state == AlertState::Firing).collect();
    assert_eq!(firing.len(), 1, "{:?}", brief(&alerts));
    assert_eq!((firing[0].kind, &*firing[0].backend), (AlertKind::Skew, "10.0.0.4:80"));
    assert!(firing[0].at_ms / 1000 <= 1860, "{:?}", brief(&alerts));
}

#[test]
fn a_canary_is_learned_and_its_promotion_is_a_change() {
    // Nine backends; a canary joins at 1800 s at 5%; at 5400 s it is promoted to an even
    // share.
    let alerts = run(
        &mut learned(),
        windows(9000, |t| {
            if t < 1800 {
                vec![100; 9]
            } else if t < 5400 {
                let mut counts = vec![106; 9];
                counts.push(50);
                counts
            } else {
                vec![100; 10]
            }
        }),
    );
    let operations: Vec<_> =
        alerts.iter().map(|a| (a.state, a.evidence.change.as_ref().map(|c| c.operation))).collect();
    assert_eq!(
        operations,
        [
            (AlertState::Noted, Some(Operation::Canary)),
            (AlertState::Noted, Some(Operation::Evened))
        ],
        "{:?}",
        brief(&alerts)
    );
}

#[test]
fn a_pool_uneven_from_the_start_is_learned_unless_its_hot_backend_suffers() {
    // 3:1:1:1 from the first line, no weights: one finding, then only changes page.
    let alerts = run(
        &mut learned(),
        windows(
            7200,
            |t| if t < 5400 { vec![300, 100, 100, 100] } else { vec![300, 300, 100, 100] },
        ),
    );
    assert_eq!(alerts[0].state, AlertState::Noted, "{:?}", brief(&alerts));
    assert_eq!((alerts[0].kind, alerts[0].severity), (AlertKind::Skew, Severity::Info));
    assert_eq!(&*alerts[0].backend, "10.0.0.0:80");
    assert!(alerts[0].summary.contains("uneven from the start"), "{}", alerts[0].summary);
    // Said when the split is significant, or at the latest when the warm-up ends.
    assert!(alerts[0].at_ms / 1000 <= 310, "{:?}", brief(&alerts));
    let pages: Vec<_> = alerts.iter().filter(|a| a.state == AlertState::Firing).collect();
    assert_eq!(pages.len(), 1, "{:?}", brief(&alerts));
    assert_eq!((&*pages[0].backend, pages[0].at_ms / 1000 <= 5460), ("10.0.0.1:80", true));
    // The same split, busier, with the hot backend failing: a page, which resolves once it
    // stops failing.
    let alerts = run(
        &mut learned(),
        (0..360).map(|i| {
            let t = i * 10;
            let mut w = window(t, &[3000, 1000, 1000, 1000]);
            if t < 1800 {
                w.backends[0].errors = 450;
            }
            w
        }),
    );
    let seen = brief(&alerts);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].0, seen[0].1, seen[0].2),
        (AlertState::Firing, AlertKind::Skew, "10.0.0.0:80")
    );
    assert_eq!((seen[1].0, seen[1].1), (AlertState::Resolved, AlertKind::Skew));
    assert_eq!(alerts[1].resolution, Some(Resolution::Adopted));
    assert!((1800..=1900).contains(&seen[1].3), "{seen:?}");
}

#[test]
fn new_backends_pinned_after_a_scale_up_are_one_page_within_three_minutes() {
    // Four backends; four more join at 1800 s but get a trickle for 20 minutes.
    let alerts = run(
        &mut learned(),
        windows(5400, |t| {
            if t < 1800 {
                vec![200; 4]
            } else if t < 3000 {
                vec![195, 195, 195, 195, 5, 5, 5, 5]
            } else {
                vec![100; 8]
            }
        }),
    );
    let firing: Vec<_> = alerts.iter().filter(|a| a.state == AlertState::Firing).collect();
    assert_eq!(firing.len(), 1, "{:?}", brief(&alerts));
    let pin = firing[0];
    assert_eq!((pin.kind, pin.direction, &*pin.backend), (AlertKind::Skew, Direction::Under, "*"));
    assert!(pin.at_ms / 1000 - 1800 <= 180, "{:?}", brief(&alerts));
    assert_eq!(pin.evidence.pinned_backends.as_ref().unwrap().len(), 4);
    assert!(pin.summary.contains("pinned"), "{}", pin.summary);
    let resolved: Vec<_> = alerts.iter().filter(|a| a.state == AlertState::Resolved).collect();
    assert_eq!(resolved.len(), 1, "{:?}", brief(&alerts));
    assert!(resolved[0].at_ms / 1000 >= 3000);
}

#[test]
fn a_quiet_pool_failing_backend_is_found_within_five_minutes_and_one_failure_is_not() {
    // 0.3 requests/s over 4 backends: about one request per backend every 13 s.
    let mut rng = SmallRng::seed_from_u64(7);
    let quiet = |rng: &mut SmallRng, t: i64, failing: bool| {
        let mut w = window(t, &[0; 4]);
        for i in 0..4 {
            let requests = u64::from(rng.random_bool(0.75));
            if requests > 0 {
                let errors = u64::from(failing && i == 1);
                w.backends.push(backend(&name(i), requests, errors, 20.0));
            }
        }
        w
    };
    let mut detector = learned();
    let alerts = run(
        &mut detector,
        (0..360).map(|i| {
            let t = i * 10;
            quiet(&mut rng, t, (1800..3000).contains(&t))
        }),
    );
    let firing: Vec<_> = alerts.iter().filter(|a| a.state == AlertState::Firing).collect();
    assert_eq!(firing.len(), 1, "{:?}", brief(&alerts));
    assert_eq!((firing[0].kind, &*firing[0].backend), (AlertKind::Errors, "10.0.0.1:80"));
    assert!(firing[0].at_ms / 1000 - 1800 <= 300, "{:?}", brief(&alerts));
    assert!(firing[0].evidence.accumulated_s.is_some());
    assert!(firing[0].summary.contains("a quiet pool"), "{}", firing[0].summary);
    // Shares are still too thin to judge, and the summary says what was judged.
    assert!(
        detector.unjudged()[0].reason.contains("errors were judged"),
        "{:?}",
        detector.unjudged()
    );
    // One failure (or four) at night is not a page.
    let alerts = run(
        &mut learned(),
        (0..360).map(|i| {
            let t = i * 10;
            quiet(&mut rng, t, (1800..1840).contains(&t))
        }),
    );
    assert!(alerts.is_empty(), "{:?}", brief(&alerts));
}

#[test]
fn a_flapping_backend_is_a_flapping_drop_within_two_minutes_and_resolves_when_stable() {
    // From 1200 s to 1800 s, backend 3 is out for 20 s and back for 20 s.
    let alerts = run(
        &mut learned(),
        windows(3000, |t| {
            if (1200..1800).contains(&t) && (t - 1200) % 40 < 20 {
                vec![133, 133, 134, 0]
            } else {
                vec![100; 4]
            }
        }),
    );
    let firing: Vec<_> = alerts.iter().filter(|a| a.state == AlertState::Firing).collect();
    assert_eq!(firing.len(), 1, "{:?}", brief(&alerts));
    assert_eq!((firing[0].kind, &*firing[0].backend), (AlertKind::Drop, "10.0.0.3:80"));
    assert!(firing[0].evidence.flapping, "{:?}", firing[0].evidence);
    assert!(firing[0].at_ms / 1000 - 1200 <= 120, "{}", firing[0].at_ms);
    assert_eq!(firing[0].diagnosis.verdict, Verdict::Balancer);
    let resolved: Vec<_> = alerts.iter().filter(|a| a.state == AlertState::Resolved).collect();
    assert_eq!(resolved.len(), 1, "{:?}", brief(&alerts));
    // Its last departure ended at 1780 s: stable 3 minutes later.
    assert_eq!(resolved[0].at_ms / 1000, 1780 + 180);
    assert!(detector_is_quiet(&alerts));
}

fn detector_is_quiet(alerts: &[AlertEvent]) -> bool {
    let fired = alerts.iter().filter(|a| a.state == AlertState::Firing).count();
    let resolved = alerts.iter().filter(|a| a.state == AlertState::Resolved).count();
    fired == resolved
}

#[test]
fn a_pool_too_quiet_to_judge_says_why() {
    let mut detector = learned();
    let alerts = run(&mut detector, windows(600, |_| vec![10; 4]));
    assert!(alerts.is_empty());
    let unjudged = detector.unjudged();
    assert_eq!(unjudged.len(), 1);
    assert!(unjudged[0].reason.contains("no 10s window had 100 requests"), "{unjudged:?}");
    assert!(unjudged[0].reason.contains("the busiest had 40"), "{unjudged:?}");
    let mut detector = learned();
    run(&mut detector, windows(600, |_| vec![100; 4]));
    assert!(detector.unjudged().is_empty());
}

#[test]
fn a_pool_wide_error_burst_is_a_shared_dependency() {
    let alerts = run(
        &mut learned(),
        (0..720).map(|i| {
            let mut w = window(i * 10, &[100; 4]);
            if i >= 400 {
                for b in &mut w.backends {
                    b.errors = 10;
                }
            }
            w
        }),
    );
    let fired = alerts.iter().find(|a| a.state == AlertState::Firing).expect("a page");
    assert_eq!((fired.kind, &*fired.backend), (AlertKind::Errors, WHOLE_POOL));
    assert_eq!(fired.diagnosis.verdict, Verdict::SharedDependency);
    assert!(
        fired.summary.starts_with("shared dependency: pool api is failing"),
        "{}",
        fired.summary
    );
}

#[test]
fn judging_a_large_pool_is_linear() {
    // 20,000 backends in one pool, each with a request or two per window: every window must
    // be judged without pairwise work (this would take minutes if it were quadratic).
    let mut detector = learned();
    let mut alerts = Vec::new();
    for i in 0..30i64 {
        let w = WindowSummary {
            pool: "big".into(),
            start_ms: i * 10_000,
            end_ms: (i + 1) * 10_000,
            backends: (0..20_000)
                .map(|j| backend(&format!("b{j}"), 1 + (j % 2) as u64, 0, 20.0))
                .collect(),
            no_backend: 0,
        };
        detector.observe(&w, &mut alerts);
    }
    assert!(alerts.is_empty(), "{}", alerts.len());
    assert_eq!(detector.backends_held(), 20_000);
}

#[test]
fn durations_read_naturally() {
    assert_eq!(fmt_duration(40), "40s");
    assert_eq!(fmt_duration(1500), "25m");
    assert_eq!(fmt_duration(1510), "25m10s");
    assert_eq!(fmt_duration(3720), "1h02m");
}

#[test]
fn new_weights_in_the_balancer_config_are_one_change_and_are_judged_from_then_on() {
    let even: Vec<(String, f64)> = (0..4).map(|i| (name(i), 1.0)).collect();
    let even: Vec<(&str, f64)> = even.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    let mut detector = weighted(&even, None);
    assert!(run(&mut detector, windows(600, |_| vec![100; 4])).is_empty());
    // The config is edited to weight=3 on the first backend, and reloaded: the learned state
    // carries over to a detector with the new weights.
    let saved = serde_json::to_value(detector.save()).unwrap();
    let mut reweighted: Vec<(String, f64)> = (0..4).map(|i| (name(i), 1.0)).collect();
    reweighted[0].1 = 3.0;
    let reweighted: Vec<(&str, f64)> = reweighted.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    let mut detector = weighted(&reweighted, None);
    let dropped = detector.restore(serde_json::from_value(saved).unwrap(), true);
    assert!(dropped.is_empty(), "{dropped:?}");
    let alerts = run(
        &mut detector,
        (60..120).map(|i| window(i * 10, if i < 90 { &[300, 100, 100, 100] } else { &[100; 4] })),
    );
    assert_eq!(alerts[0].state, AlertState::Noted, "{:?}", brief(&alerts));
    let change = alerts[0].evidence.change.as_ref().unwrap();
    assert_eq!(change.operation, Operation::WeightsChanged);
    assert_eq!(&*change.backends[0], "10.0.0.0:80");
    assert!((change.shares[0].1 - 0.5).abs() < 1e-9, "{change:?}");
    // The split as configured raises nothing; back to even against weight 3 pages.
    let pages: Vec<_> = alerts.iter().filter(|a| a.state == AlertState::Firing).collect();
    assert_eq!(pages.len(), 1, "{:?}", brief(&alerts));
    assert!(pages[0].at_ms >= 900_000, "{:?}", brief(&alerts));
}
/// Every backend of a pool holds this state, so it stays small: what is rare (alerts,
/// departures, newcomers settling, learned uneven shares) lives in boxes or pool-wide sets.
#[test]
fn a_backend_costs_the_detector_about_a_hundred_bytes() {
    assert!(std::mem::size_of::<Option<BackendState>>() <= 104);
    assert!(std::mem::size_of::<shares::BackendShares>() <= 32);
}
