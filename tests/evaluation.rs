//! Guards the detector's floors on the labelled scenario suite (EVALUATION.md): a change that
//! loses an incident, pages on a routine operation, misplaces a fault, or slows detection fails
//! here.

use skewtail::evaluate::{CaseResult, run_case, suite, summarize};

#[test]
fn the_suite_meets_its_floors() {
    let cases = suite(24);
    // Two threads: the suite is over 450 simulated hours.
    let results: Vec<CaseResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|part| {
                let cases = &cases;
                scope.spawn(move || {
                    cases.iter().skip(part).step_by(2).map(run_case).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("case panicked")).collect()
    });
    let summary = summarize(&results);
    let report: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "{}: {}/{} detected in {:?} s ({} diagnosed), changes {}/{}, alerts {:#?}",
                r.name,
                r.detected,
                r.incidents,
                r.delays_s,
                r.diagnosed,
                r.changes_recorded,
                r.changes_expected,
                r.alert_lines
            )
        })
        .collect();
    let report = report.join("\n");
    assert!(summary.recall >= 0.95, "recall {:.2}\n{report}", summary.recall);
    assert!(summary.precision >= 0.95, "precision {:.2}\n{report}", summary.precision);
    assert!(summary.median_delay_s <= 40, "median delay {} s\n{report}", summary.median_delay_s);
    assert!(summary.max_delay_s <= 180, "longest delay {} s\n{report}", summary.max_delay_s);
    assert!(
        summary.diagnosis_accuracy >= 0.9,
        "diagnosis right on {:.0}%\n{report}",
        summary.diagnosis_accuracy * 100.0
    );
    for result in &results {
        assert_eq!(
            result.detected, result.incidents,
            "{}: missed an incident\n{report}",
            result.name
        );
        if result.incidents == 0 {
            // Clean days and routine operations: no page, and nothing left firing.
            assert_eq!(result.alerts, 0, "{}: false alarm on clean traffic\n{report}", result.name);
            assert_eq!(result.left_firing, 0, "{}: left firing\n{report}", result.name);
            assert!(result.hours >= 24.0 || result.changes_expected > 0, "{}", result.name);
        }
        assert_eq!(
            result.changes_recorded, result.changes_expected,
            "{}: a routine change was not recorded\n{report}",
            result.name
        );
    }
    // The real-traffic shapes are what they claim to be.
    for name in ["bursty pool, clean", "hashed pool, clean"] {
        let result = results.iter().find(|r| r.name == name).expect(name);
        let dispersion = result.dispersion.expect("busy enough to measure");
        assert!(dispersion >= 20.0, "{name}: dispersion {dispersion:.1}, not 20x binomial");
    }
    let seed = results.iter().find(|r| r.name == "seed incident").expect("the seed case");
    assert!(seed.delays_s.iter().all(|&d| d <= 60), "seed detection delay {:?}", seed.delays_s);
    let quiet = results.iter().find(|r| r.name == "quiet pool, failing backend").expect("quiet");
    assert!(
        quiet.delays_s.iter().all(|&d| d <= 300),
        "quiet pool found after {:?}",
        quiet.delays_s
    );
    for operation in [
        "rolling restarts, clean",
        "scale-in and scale-out, clean",
        "canaries, clean",
        "uneven by design, clean",
    ] {
        let result = results.iter().find(|r| r.name == operation).expect(operation);
        assert!(result.hours >= 24.0 && result.changes_expected > 0, "{operation}");
    }
    assert!(summary.clean_hours >= 14.0 * 24.0);
}
