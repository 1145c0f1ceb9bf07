//! The hot path does not allocate per line: after warm-up, feeding lines through
//! parse → window → detect allocates only per closed window (its summary), never per line.
//! A separate test binary, because it installs a counting global allocator (dhat).

use skewtail::detect::{AlertEvent, DetectorConfig, SkewDetector};
use skewtail::parse::PatternSet;
use skewtail::pipeline::{Observer, Pipeline};
use skewtail::source::{LineReader, Next};
use skewtail::synth::Scenario;
use skewtail::window::WindowSummary;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

struct Discard;

impl Observer for Discard {
    fn window(&mut self, _: &WindowSummary) {}
    fn alert(&mut self, _: &AlertEvent) {}
}

#[test]
fn lines_do_not_allocate_after_warm_up() {
    let mut log = Vec::new();
    Scenario { duration_s: 20 * 60, retry_fraction: 0.01, ..Scenario::seed_incident() }
        .write(&mut log)
        .expect("generate");
    let parser =
        PatternSet::builtin().get("upstream").expect("pattern").compile(&[]).expect("compile");
    let mut pipeline =
        Pipeline::new(SkewDetector::new(DetectorConfig::default(), Default::default()));
    let input = pipeline.add_input("alloc", parser, "api");
    let mut reader = LineReader::new(&log[..], 1 << 20);

    let _profiler = dhat::Profiler::builder().testing().build();
    let mut feed = |n_lines: usize, pipeline: &mut Pipeline| {
        for _ in 0..n_lines {
            match reader.next_line(true).expect("read") {
                Next::Line(line) => pipeline.push_line(input, line, &mut Discard),
                _ => panic!("ran out of lines"),
            }
        }
    };
    // Warm-up: every backend interned, window slots and histograms created.
    feed(5_000, &mut pipeline);
    let before = dhat::HeapStats::get();
    let windows_before = pipeline.counters().windows;
    let n_lines = 30_000;
    feed(n_lines, &mut pipeline);
    let after = dhat::HeapStats::get();
    let n_windows = pipeline.counters().windows - windows_before;
    let n_allocations = after.total_blocks - before.total_blocks;
    assert!(n_windows > 50, "{n_windows}");
    // A closed window allocates its summary (a Vec of 8 backends) and the detector's
    // per-window scratch; lines allocate nothing.
    assert!(
        n_allocations <= n_windows * 12,
        "{n_allocations} allocations for {n_lines} lines and {n_windows} windows"
    );
}
