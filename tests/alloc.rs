//! The hot path does not allocate per line: after warm-up, feeding lines through
//! parse → window → detect allocates only per closed window (its summary), never per line.
//! A separate test binary, because it installs a counting global allocator (dhat).

use skewtail::detect::{AlertEvent, Detector, DetectorConfig};
use skewtail::parse::PatternSet;
use skewtail::pipeline::{Batch, Flow, Observer, Pipeline};
use skewtail::source::{LineReader, Next};
use skewtail::synth::{LogStyle, Scenario};
use skewtail::window::WindowSummary;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

struct Discard;

impl Observer for Discard {
    fn window(&mut self, _: &WindowSummary) -> Flow {
        Flow::Continue(())
    }
    fn alert(&mut self, _: &AlertEvent) -> Flow {
        Flow::Continue(())
    }
}

/// Feeds `style`'s lines through the pipeline and returns (allocations, windows) counted
/// over 30,000 lines after a 5,000-line warm-up.
fn allocations_per_window(style: LogStyle) -> (u64, u64) {
    let mut log = Vec::new();
    Scenario { duration_s: 20 * 60, retry_fraction: 0.01, style, ..Scenario::seed_incident() }
        .write(&mut log)
        .expect("generate");
    let parser = PatternSet::builtin()
        .get(style.format_name())
        .expect("pattern")
        .compile(&[])
        .expect("compile");
    let mut pipeline = Pipeline::new(Detector::new(DetectorConfig::default(), Default::default()));
    let input = pipeline.add_input("alloc", parser, "api");
    let mut reader = LineReader::new(&log[..], 1 << 20);
    // As the sidecar reads: a batch of lines a turn (here, 100), parsed and windowed.
    let mut batch = Batch::for_input("alloc");
    let mut feed = |n_lines: usize, pipeline: &mut Pipeline| {
        for n in 0..n_lines {
            match reader.next_line(true).expect("read") {
                Next::Line(line) => batch.block().push(line),
                _ => panic!("ran out of lines"),
            }
            if n % 100 == 99 {
                pipeline.push_batch(input, &mut batch, &mut Discard);
            }
        }
        pipeline.push_batch(input, &mut batch, &mut Discard);
    };
    // Warm-up: every backend interned, window slots and histograms created.
    feed(5_000, &mut pipeline);
    let before = dhat::HeapStats::get();
    let windows_before = pipeline.counters().windows;
    feed(30_000, &mut pipeline);
    let after = dhat::HeapStats::get();
    assert_eq!(pipeline.counters().unparsed, 0, "{style:?}");
    (after.total_blocks - before.total_blocks, pipeline.counters().windows - windows_before)
}

/// One test, because dhat allows one profiler per process: text and JSON formats alike.
#[test]
fn lines_do_not_allocate_after_warm_up() {
    let _profiler = dhat::Profiler::builder().testing().build();
    for style in [
        LogStyle::NginxUpstream,
        LogStyle::HaproxyHttp,
        LogStyle::Envoy,
        LogStyle::Caddy,
        LogStyle::TraefikJson,
        LogStyle::GcpLb,
    ] {
        let (n_allocations, n_windows) = allocations_per_window(style);
        assert!(n_windows > 50, "{style:?}: {n_windows}");
        // A closed window allocates its summary (8 backends, each with its latency sketch) and
        // the detector's per-window scratch, a few dozen blocks; the 30,000 lines (about 400
        // per window) allocate nothing themselves.
        assert!(
            n_allocations <= n_windows * 80,
            "{style:?}: {n_allocations} allocations for 30000 lines and {n_windows} windows"
        );
        #[allow(clippy::print_stderr)]
        {
            eprintln!("{style:?}: {n_allocations} allocations, {n_windows} windows, 30000 lines");
        }
    }
    let (n_allocations, n_windows, n_lines) = replay_allocations();
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "replay on 2 workers: {n_allocations} allocations, {n_windows} windows, {n_lines} lines"
        );
    }
    // Per window as above; per batch of up to 8192 lines a name table and the hand-over;
    // per replay the threads, channels and the batches in flight (reused after that).
    assert!(
        n_allocations <= n_windows * 80 + 5_000,
        "replay: {n_allocations} allocations for {n_lines} lines and {n_windows} windows"
    );
}

/// Replays a 60-minute log through the multi-threaded path (a reader thread, two parsing
/// workers, the windowing thread): returns (allocations, windows, lines).
fn replay_allocations() -> (u64, u64, u64) {
    use skewtail::pipeline::ahead::feed_streams;
    use skewtail::source::once::Stream;
    let mut log = Vec::new();
    Scenario::seed_incident().write(&mut log).expect("generate");
    let parser =
        PatternSet::builtin().get("upstream").expect("pattern").compile(&[]).expect("compile");
    let mut pipeline = Pipeline::new(Detector::new(DetectorConfig::default(), Default::default()));
    let input = pipeline.add_input("alloc", parser, "api");
    let stream = Stream::of_reader(input, "alloc", Box::new(std::io::Cursor::new(log)));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let before = dhat::HeapStats::get();
    let n_lines =
        feed_streams(&mut pipeline, vec![stream], 1 << 20, 2, &mut Discard, &stop, &mut |_, _| {})
            .expect("replay");
    let after = dhat::HeapStats::get();
    assert_eq!(pipeline.counters().unparsed, 0);
    (after.total_blocks - before.total_blocks, pipeline.counters().windows, n_lines)
}
