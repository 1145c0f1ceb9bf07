//! `--format auto` and `skewtail patterns test`: try every known format on sample lines,
//! rank them, and say which fits and why.

use super::{ParseErrorKind, PatternSet, Record};

/// Lines read from the start of an input to recognise its format.
pub const AUTO_SAMPLE_LINES: usize = 50;

/// How many of the sample lines each record field was filled on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldFill {
    /// Lines that parsed as requests.
    pub records: u64,
    /// With a backend.
    pub backend: u64,
    /// With a pool named by the line.
    pub pool: u64,
    /// With a client status.
    pub status: u64,
    /// With a backend status.
    pub upstream_status: u64,
    /// With a total latency.
    pub latency: u64,
    /// With a backend latency.
    pub upstream_latency: u64,
    /// With a byte count.
    pub bytes: u64,
    /// With a method and path.
    pub request: u64,
}

impl FieldFill {
    /// Counts the fields of one record.
    pub fn add(&mut self, record: &Record<'_>) {
        self.records += 1;
        self.backend += u64::from(record.backend.is_some());
        self.pool += u64::from(record.pool.is_some());
        self.status += u64::from(record.status.is_some());
        self.upstream_status += u64::from(record.upstream_status.is_some());
        self.latency += u64::from(record.latency_s.is_some());
        self.upstream_latency += u64::from(record.upstream_latency_s.is_some());
        self.bytes += u64::from(record.bytes.is_some());
        self.request += u64::from(record.method.is_some() && record.path.is_some());
    }

    /// Total fields filled, the timestamp included: a format that reads more of each line
    /// scores higher.
    pub fn total(&self) -> u64 {
        self.records
            + self.backend
            + self.pool
            + self.status
            + self.upstream_status
            + self.latency
            + self.upstream_latency
            + self.bytes
            + self.request
    }

    /// (field name, lines filled) for reports.
    pub fn rows(&self) -> [(&'static str, u64); 8] {
        [
            ("backend", self.backend),
            ("pool", self.pool),
            ("status", self.status),
            ("upstream_status", self.upstream_status),
            ("latency", self.latency),
            ("upstream_latency", self.upstream_latency),
            ("bytes", self.bytes),
            ("method+path", self.request),
        ]
    }
}

/// How well one format fits the sample.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The format's name.
    pub name: String,
    /// Sample lines that parsed as requests.
    pub matched: usize,
    /// Sample lines recognised as valid non-requests.
    pub other: usize,
    /// Sample lines tried.
    pub sampled: usize,
    /// Field fill counts over the matched lines.
    pub fill: FieldFill,
    /// How much of a line the format describes; breaks ties between a format and a prefix of it.
    pub specificity: usize,
    /// Why the first failing line failed, for reports.
    pub first_error: Option<String>,
}

impl Candidate {
    fn key(&self) -> (usize, u64, usize) {
        // Recognised non-requests only count for a format that also reads requests: a JSON
        // format calls every text line "not JSON, another program's", which says nothing.
        let fitting = if self.matched > 0 { self.matched + self.other } else { 0 };
        (fitting, self.fill.total(), self.specificity)
    }
}

/// Tries every pattern on the sample; best first.
pub fn rank(patterns: &PatternSet, lines: &[&[u8]]) -> Vec<Candidate> {
    let mut ranked: Vec<Candidate> = patterns
        .iter()
        .filter_map(|pattern| {
            let mut parser = pattern.compile(&[]).ok()?;
            let mut candidate = Candidate {
                name: pattern.name.clone(),
                matched: 0,
                other: 0,
                sampled: lines.len(),
                fill: FieldFill::default(),
                specificity: parser.specificity(),
                first_error: None,
            };
            for (index, line) in lines.iter().enumerate() {
                match parser.parse(line) {
                    Ok(record) => {
                        candidate.matched += 1;
                        candidate.fill.add(&record);
                    }
                    Err(error) if error.kind == ParseErrorKind::NotARequest => candidate.other += 1,
                    Err(error) => {
                        if candidate.first_error.is_none() {
                            candidate.first_error = Some(format!(
                                "sample line {}: {}",
                                index + 1,
                                parser.explain(&error)
                            ));
                        }
                    }
                }
            }
            Some(candidate)
        })
        .collect();
    ranked.sort_by_key(|c| std::cmp::Reverse(c.key()));
    ranked
}

/// Why `auto` picked no format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrecognised {
    /// No pattern is loaded at all.
    #[error("no formats are known")]
    NoFormats,
    /// The sample is empty.
    #[error("the input has no lines to recognise a format from")]
    NoLines,
    /// Nothing parses half the sample.
    #[error(
        "no known format fits at least half of the first {sampled} lines (best: {best}); pass --format or --log-format, or add a pattern file"
    )]
    NoFit {
        /// Lines looked at.
        sampled: usize,
        /// The best few, described.
        best: String,
    },
    /// Two formats fit as well as each other.
    #[error(
        "formats {best} and {second} fit the first {sampled} lines equally well; pass --format to choose"
    )]
    Tie {
        /// The first, described.
        best: String,
        /// The other, described.
        second: String,
        /// Lines looked at.
        sampled: usize,
    },
}

/// Picks the best candidate, or explains why none can be picked: nothing fits at least half
/// the sample, or two formats fit it equally well.
pub fn choose(ranked: &[Candidate]) -> Result<(&Candidate, String), Unrecognised> {
    let Some(best) = ranked.first() else {
        return Err(Unrecognised::NoFormats);
    };
    let describe = |c: &Candidate| {
        format!("`{}` ({} of {} parsed, {} fields)", c.name, c.matched, c.sampled, c.fill.total())
    };
    if best.sampled == 0 {
        return Err(Unrecognised::NoLines);
    }
    if best.matched == 0 || 2 * (best.matched + best.other) < best.sampled {
        let tried: Vec<String> = ranked.iter().take(4).map(describe).collect();
        return Err(Unrecognised::NoFit { sampled: best.sampled, best: tried.join(", ") });
    }
    if let Some(second) = ranked.get(1).filter(|second| second.key() == best.key()) {
        return Err(Unrecognised::Tie {
            best: describe(best),
            second: describe(second),
            sampled: best.sampled,
        });
    }
    let runner_up = ranked
        .get(1)
        .map_or_else(String::new, |second| format!("; next best {}", describe(second)));
    Ok((best, format!("picked {} out of {} formats{runner_up}", describe(best), ranked.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str) -> Vec<&[u8]> {
        text.lines().map(str::as_bytes).collect()
    }

    #[test]
    fn picks_the_format_that_reads_the_most() {
        let patterns = PatternSet::builtin();
        let mut log = Vec::new();
        crate::synth::Scenario { duration_s: 2, ..crate::synth::Scenario::seed_incident() }
            .write(&mut log)
            .unwrap();
        let text = String::from_utf8(log).unwrap();
        let ranked = rank(&patterns, &sample(&text));
        let (best, why) = choose(&ranked).unwrap();
        assert_eq!(best.name, "upstream", "{why}");
        assert!(why.contains("next best `"), "{why}");
        let combined_only: Vec<&[u8]> =
            vec![br#"1.2.3.4 - - [04/Oct/2022:03:07:27 +0000] "GET / HTTP/1.1" 200 5 "-" "curl""#];
        assert_eq!(choose(&rank(&patterns, &combined_only)).unwrap().0.name, "combined");
    }

    /// `--format auto` recognises every format from its conformance vectors alone.
    #[test]
    fn every_format_is_recognised_from_its_vectors() {
        let patterns = PatternSet::builtin();
        let cases: &[(&str, &[&str], &str)] = &[
            ("envoy.jsonl", &["envoy_text", "envoy_app_log"], "envoy"),
            ("envoy.jsonl", &["envoy_json"], "envoy_json"),
            ("traefik_json.jsonl", &[], "traefik_json"),
            ("traefik_clf.jsonl", &[], "traefik"),
            ("caddy.jsonl", &[], "caddy"),
            ("gcp_lb.jsonl", &[], "gcp_lb"),
            ("aws_alb.jsonl", &[], "aws_alb"),
            ("aws_elb_classic.jsonl", &[], "aws_elb"),
            ("haproxy.jsonl", &[], "haproxy"),
        ];
        for (file, formats, want) in cases {
            let text =
                std::fs::read_to_string(crate::parse::vectors::vectors_dir().join(file)).unwrap();
            let lines: Vec<String> = text
                .lines()
                .map(|row| serde_json::from_str::<serde_json::Value>(row).unwrap())
                .filter(|v| formats.is_empty() || formats.contains(&v["format"].as_str().unwrap()))
                .map(|v| v["line"].as_str().unwrap().to_string())
                .collect();
            let sample: Vec<&[u8]> = lines.iter().map(String::as_bytes).collect();
            let ranked = rank(&patterns, &sample);
            let (best, why) = choose(&ranked).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(best.name, *want, "{file}: {why}");
        }
    }

    #[test]
    fn haproxy_lines_and_their_events() {
        let patterns = PatternSet::builtin();
        let text = "Feb  6 12:12:09 localhost haproxy[14385]: Connect from 10.0.1.2:33312 to 10.0.3.31:8012 (www/HTTP)\n\
                    haproxy[674]: 127.0.0.1:33318 [15/Oct/2003:08:31:57.130] px-http px-http/srv1 6559/0/7/147/6723 200 243 - - ---- 5/3/3/1/0 0/0 \"HEAD / HTTP/1.0\"";
        let ranked = rank(&patterns, &sample(text));
        assert_eq!(choose(&ranked).unwrap().0.name, "haproxy");
    }

    #[test]
    fn refuses_garbage_and_ties() {
        let patterns = PatternSet::builtin();
        let error = choose(&rank(&patterns, &sample("hello\nworld\n"))).unwrap_err();
        assert!(matches!(error, Unrecognised::NoFit { sampled: 2, .. }), "{error}");
        assert!(error.to_string().contains("no known format fits"), "{error}");
        let tied_with = |name: &str| Candidate {
            name: name.into(),
            matched: 2,
            other: 0,
            sampled: 2,
            fill: FieldFill::default(),
            specificity: 3,
            first_error: None,
        };
        let tied = [tied_with("a"), tied_with("b")];
        let error = choose(&tied).unwrap_err();
        assert!(matches!(error, Unrecognised::Tie { sampled: 2, .. }), "{error}");
        assert!(error.to_string().contains("fit the first 2 lines equally well"), "{error}");
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// Every built-in format must give a record, or an error that points inside the line and
    /// can be explained.
    fn every_format_handles(line: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
        // Compiled once: proptest runs hundreds of cases.
        static PARSERS: std::sync::OnceLock<Vec<(String, crate::parse::Parser)>> =
            std::sync::OnceLock::new();
        let parsers = PARSERS.get_or_init(|| {
            PatternSet::builtin()
                .iter()
                .map(|pattern| (pattern.name.clone(), pattern.compile(&[]).unwrap()))
                .collect()
        });
        for (name, parser) in parsers {
            let mut parser = parser.clone();
            if let Err(error) = parser.parse(line) {
                proptest::prop_assert!(error.column as usize <= line.len(), "{name}: {error:?}");
                let _ = parser.explain(&error);
            }
        }
        Ok(())
    }

    proptest::proptest! {
        /// Every built-in format gives a record or a counted error on any bytes: no panic.
        #[test]
        fn every_format_survives_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            every_format_handles(&bytes)?;
        }

        /// Real lines of every format, cut short or with one byte changed.
        #[test]
        fn every_format_survives_truncated_and_mutated_lines(cut in 0usize..600, at in 0usize..600, byte in proptest::prelude::any::<u8>()) {
            let samples: [&[u8]; 6] = [
                br#"10.20.1.2 - - [15/Nov/2023:14:30:00 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl/8" rt=0.024 uct="0.001" uht="0.020" urt="0.022" ua="10.0.1.2:8080" us="200""#,
                br#"[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/2" 204 - 154 0 226 100 "10.0.35.28" "nsq2http" "cc21d9b0" "locations" "tcp://10.0.2.1:80""#,
                br#"{"level":"info","ts":1693840791.7564995,"logger":"http.log.access","msg":"handled request","request":{"remote_ip":"172.17.0.1","proto":"HTTP/1.0","method":"GET","uri":"/","headers":{"Accept":["*/*"]}},"duration":0.000002701,"size":0,"status":0,"upstream_host":"10.0.0.1:80"}"#,
                br#"Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html HTTP/1.1""#,
                br#"http 2018-07-02T22:23:00.186641Z app/lb/1 1.2.3.4:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "GET http://x:80/ HTTP/1.1" "curl" - - arn:tg "Root=1""#,
                br#"172.17.0.1 - - [08/Dec/2021:09:16:05 +0000] "GET / HTTP/1.1" 200 405 "-" "-" 502 "test@docker" "http://172.17.0.3:80" 0ms"#,
            ];
            for sample in samples {
                let mut line = sample.to_vec();
                let at = at % line.len();
                line[at] = byte;
                line.truncate((cut % line.len()).max(at + 1));
                every_format_handles(&line)?;
            }
        }
    }
}
