//! Guards the detector's floors on the labelled scenario suite (EVALUATION.md): a change that
//! loses an incident, adds a false alarm, or slows detection of the seed incident fails here.

use skewtail::evaluate::{CaseResult, run_case, suite, summarize};

#[test]
fn the_suite_meets_its_floors() {
    let cases = suite(24);
    // Two threads: the suite is about 100 simulated hours.
    let results: Vec<CaseResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(2))
            .map(|chunk| scope.spawn(move || chunk.iter().map(run_case).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("case panicked")).collect()
    });
    let summary = summarize(&results);
    let report: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "{}: {}/{} detected, alerts {:?}",
                r.name, r.detected, r.incidents, r.alert_lines
            )
        })
        .collect();
    let report = report.join("\n");
    assert!(summary.recall >= 0.95, "recall {:.2}\n{report}", summary.recall);
    assert!(summary.precision >= 0.95, "precision {:.2}\n{report}", summary.precision);
    for result in &results {
        assert_eq!(
            result.detected, result.incidents,
            "{}: missed an incident\n{report}",
            result.name
        );
        if result.incidents == 0 {
            assert_eq!(result.alerts, 0, "{}: false alarm on clean traffic\n{report}", result.name);
            assert!(result.hours >= 24.0);
        }
    }
    let seed = results.iter().find(|r| r.name == "seed incident").expect("the seed case");
    assert!(seed.delays_s.iter().all(|&d| d <= 60), "seed detection delay {:?}", seed.delays_s);
    assert!(summary.clean_hours >= 120.0);
}
