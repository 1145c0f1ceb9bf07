//! Routine operations: departures, rolling restarts, scaling, canaries, pools uneven from
//! the start, pinned newcomers, and weights changed in the balancer config.

use super::*;

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
