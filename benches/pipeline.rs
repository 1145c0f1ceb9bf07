//! Micro-benchmarks of the per-line hot path: parsing alone for each format, and the whole
//! parse → window → detect pipeline, on realistic generated lines.
//!
//! `cargo bench --bench pipeline`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skewtail::detect::{Detector, DetectorConfig};
use skewtail::parse::PatternSet;
use skewtail::pipeline::{Batch, Flow, Observer, Pipeline};
use skewtail::source::Line;
use skewtail::synth::{LogStyle, Scenario};
use skewtail::window::WindowSummary;

/// Ten minutes of generated log in `style`, one line per entry.
fn sample_lines(style: LogStyle) -> Vec<Vec<u8>> {
    let mut log = Vec::new();
    Scenario { duration_s: 600, style, ..Scenario::seed_incident() }
        .write(&mut log)
        .expect("generate");
    log.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

struct Discard;

impl Observer for Discard {
    fn window(&mut self, _: &WindowSummary) -> Flow {
        Flow::Continue(())
    }
    fn alert(&mut self, _: &skewtail::detect::AlertEvent) -> Flow {
        Flow::Continue(())
    }
}

fn benchmarks(c: &mut Criterion) {
    let patterns = PatternSet::builtin();
    for style in LogStyle::ALL {
        let format = style.format_name();
        let lines = sample_lines(style);
        #[allow(clippy::print_stderr)] // tells the reader what was measured
        {
            eprintln!(
                "{format}: {} lines, mean {} bytes",
                lines.len(),
                lines.iter().map(Vec::len).sum::<usize>() / lines.len()
            );
        }
        let mut group = c.benchmark_group(format);
        group.throughput(Throughput::Elements(lines.len() as u64));
        let mut parser = patterns.get(format).expect("pattern").compile(&[]).expect("compiles");
        group.bench_function("parse", |b| {
            b.iter(|| lines.iter().map(|line| u32::from(parser.parse(line).is_ok())).sum::<u32>());
        });
        if style == LogStyle::NginxUpstream {
            group.bench_function("parse+window+detect", |b| {
                b.iter(|| {
                    let parser =
                        patterns.get(format).expect("pattern").compile(&[]).expect("compiles");
                    let mut pipeline =
                        Pipeline::new(Detector::new(DetectorConfig::default(), Default::default()));
                    let input = pipeline.add_input("bench", parser, "api");
                    // The one path from lines to requests, in blocks as both replay and
                    // the sidecar feed it.
                    let mut batch = Batch::for_input("bench");
                    for (number, line) in lines.iter().enumerate() {
                        if batch.block().is_full() {
                            pipeline.push_batch(input, &mut batch, &mut Discard);
                        }
                        batch.block().push(Line { bytes: line, number: number as u64, offset: 0 });
                    }
                    pipeline.push_batch(input, &mut batch, &mut Discard);
                    let _ = pipeline.finish(
                        &mut Discard,
                        skewtail::pipeline::OpenWindows::Close,
                        false,
                    );
                    pipeline.counters().parsed
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
