//! Shares: skew against learned and configured weights, spikes, pairs, warm-up, bursty
//! traffic, and the cost of judging a large pool.

use super::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

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
