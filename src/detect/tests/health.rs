//! Health against peers: refusing, failing, slow and flapping backends, quiet pools, and
//! pool-wide trouble.

use super::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

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
