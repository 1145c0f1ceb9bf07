//! Synthetic access logs with a known incident, for the demo, the tests and the benchmarks.
//!
//! The generator writes the built-in `upstream` nginx format, so everything downstream runs
//! on exactly what a real nginx with that `log_format` writes. It is seeded, so a scenario
//! always produces the same bytes.

use std::io::{self, Write};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A period in which one backend takes too much traffic, answers slowly and errors.
#[derive(Debug, Clone)]
pub struct Incident {
    /// Seconds after the scenario's start.
    pub start_s: u32,
    /// How long it lasts, seconds.
    pub duration_s: u32,
    /// Index of the backend that drowns.
    pub backend: usize,
    /// Its share of the traffic during the incident (the others split the rest evenly).
    pub share: f64,
    /// Its 5xx rate during the incident.
    pub error_rate: f64,
    /// How much slower it answers.
    pub latency_factor: f64,
}

/// A synthetic log.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Unix ms of the first line.
    pub start_ms: i64,
    /// Length, seconds.
    pub duration_s: u32,
    /// Mean requests per second (each second varies by ±20%).
    pub rate_per_s: u32,
    /// Backend addresses.
    pub backends: Vec<String>,
    /// The incident, if any.
    pub incident: Option<Incident>,
    /// Fraction of lines replaced by garbage (random bytes, invalid UTF-8 included).
    pub garbage_fraction: f64,
    /// Fraction of requests the balancer retried on a second backend.
    pub retry_fraction: f64,
    /// Random seed.
    pub seed: u64,
    /// Which balancer's log to write.
    pub style: LogStyle,
}

/// The log layouts the generator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStyle {
    /// nginx with the built-in `upstream` log_format; backends are addresses.
    NginxUpstream,
    /// HAProxy `option httplog` behind a syslog tag; backends are `be_api/<server>`, where
    /// the server is the address with `.` and `:` replaced by `_`.
    HaproxyHttp,
    /// AWS Application Load Balancer; backends are the addresses, the pool a target group ARN.
    AwsAlb,
}

/// 2023-11-15T14:00:00Z, the day of the seed incident.
pub const SEED_INCIDENT_DAY_MS: i64 = 1_700_056_800_000;

impl Scenario {
    /// The seed postmortem's incident: 8 API servers; for 25 minutes one of them takes 45% of
    /// the traffic, answers slowly and errors; then the balancer is fixed.
    pub fn seed_incident() -> Self {
        Scenario {
            start_ms: SEED_INCIDENT_DAY_MS,
            duration_s: 60 * 60,
            rate_per_s: 40,
            backends: (1..=8).map(|i| format!("10.0.1.{i}:8080")).collect(),
            incident: Some(Incident {
                start_s: 20 * 60,
                duration_s: 25 * 60,
                backend: 2,
                share: 0.45,
                error_rate: 0.12,
                latency_factor: 12.0,
            }),
            garbage_fraction: 0.0,
            retry_fraction: 0.002,
            seed: 20_231_115,
            style: LogStyle::NginxUpstream,
        }
    }

    /// The same servers with no incident.
    pub fn clean(duration_s: u32, rate_per_s: u32) -> Self {
        Scenario { duration_s, rate_per_s, incident: None, ..Self::seed_incident() }
    }

    fn in_incident(&self, second: u32) -> Option<&Incident> {
        self.incident.as_ref().filter(|i| second >= i.start_s && second < i.start_s + i.duration_s)
    }

    /// Writes the log; returns the number of lines.
    pub fn write(&self, out: &mut impl Write) -> io::Result<u64> {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let n_backends = self.backends.len();
        let mut n_lines = 0u64;
        let mut time_text = String::new();
        for second in 0..self.duration_s {
            let t =
                chrono::DateTime::from_timestamp_millis(self.start_ms + i64::from(second) * 1000)
                    .unwrap_or_default();
            time_text.clear();
            use std::fmt::Write as _;
            let layout = match self.style {
                LogStyle::NginxUpstream => "%d/%b/%Y:%H:%M:%S +0000",
                LogStyle::HaproxyHttp => "%d/%b/%Y:%H:%M:%S",
                LogStyle::AwsAlb => "%Y-%m-%dT%H:%M:%S",
            };
            let _ = write!(time_text, "{}", t.format(layout));
            let incident = self.in_incident(second);
            let rate = f64::from(self.rate_per_s) * rng.random_range(0.8..1.2);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n_requests = rate.round() as u32;
            for _ in 0..n_requests {
                n_lines += 1;
                if rng.random_bool(self.garbage_fraction) {
                    let len = rng.random_range(1..200);
                    let garbage: Vec<u8> = (0..len)
                        .map(|_| rng.random_range(0..=255u8))
                        .filter(|&b| b != b'\n')
                        .collect();
                    out.write_all(&garbage)?;
                    out.write_all(b"\n")?;
                    continue;
                }
                let backend = match incident {
                    Some(incident) if rng.random_bool(incident.share) => incident.backend,
                    Some(incident) => {
                        let other = rng.random_range(0..n_backends - 1);
                        if other >= incident.backend { other + 1 } else { other }
                    }
                    None => rng.random_range(0..n_backends),
                };
                let drowning = incident.filter(|i| i.backend == backend);
                let mut latency = 0.015 * (-rng.random::<f64>().max(1e-9).ln()) + 0.005;
                let mut status = if rng.random_bool(0.002) { 502 } else { 200 };
                if let Some(incident) = drowning {
                    latency *= incident.latency_factor;
                    if rng.random_bool(incident.error_rate) {
                        status = 503;
                    }
                }
                let retried = rng.random_bool(self.retry_fraction);
                let addr = &self.backends[backend];
                let order = rng.random_range(1..100_000);
                let (client_a, client_b) = (rng.random_range(0..255), rng.random_range(1..255));
                let bytes = rng.random_range(200..4000);
                if self.style == LogStyle::HaproxyHttp {
                    let server = addr.replace(['.', ':'], "_");
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    // ms of a short latency
                    let (tr, ta) = ((latency * 1000.0) as u64, (latency * 1000.0) as u64 + 1);
                    writeln!(
                        out,
                        "haproxy[4242]: 10.20.{client_a}.{client_b}:{} [{time_text}.{:03}] fe_api be_api/{server} 0/0/1/{tr}/{ta} {status} {bytes} - - ---- 12/12/8/1/{} 0/0 \"GET /api/v1/orders/{order} HTTP/1.1\"",
                        rng.random_range(1024..65535),
                        rng.random_range(0..1000),
                        u8::from(retried),
                    )?;
                    continue;
                }
                if self.style == LogStyle::AwsAlb {
                    writeln!(
                        out,
                        "https {time_text}.{:06}Z app/api-alb/50dc6c495c0c9188 10.20.{client_a}.{client_b}:{} {addr} 0.000 {latency:.3} 0.000 {status} {status} 312 {bytes} \"GET https://api.example.com:443/api/v1/orders/{order} HTTP/1.1\" \"demo-client/1.0\" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/api/73e2d6bc24d8a067 \"Root=1-58337262-36d228ad5d99923122bbe354\" \"api.example.com\" \"-\" 0 {time_text}.000000Z \"forward\" \"-\" \"-\" \"{addr}\" \"{status}\" \"-\" \"-\" TID_dc57cebed65b444ebc8177bb698fe166",
                        rng.random_range(0..1_000_000),
                        rng.random_range(1024..65535),
                    )?;
                    continue;
                }
                let (upstream_addr, upstream_status, upstream_time) = if retried {
                    let first = &self.backends[(backend + 1) % n_backends];
                    (
                        format!("{first}, {addr}"),
                        format!("502, {status}"),
                        format!("0.001, {latency:.3}"),
                    )
                } else {
                    (addr.clone(), status.to_string(), format!("{latency:.3}"))
                };
                writeln!(
                    out,
                    "10.20.{client_a}.{client_b} - - [{time_text}] \"GET /api/v1/orders/{order} HTTP/1.1\" {status} {bytes} \"-\" \"Mozilla/5.0 (X11; Linux x86_64) demo-client/1.0\" rt={:.3} uct=\"0.001\" uht=\"{latency:.3}\" urt=\"{upstream_time}\" ua=\"{upstream_addr}\" us=\"{upstream_status}\"",
                    latency + 0.001,
                )?;
            }
        }
        Ok(n_lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::PatternSet;

    #[test]
    fn generated_lines_parse_with_the_upstream_pattern() {
        let mut log = Vec::new();
        let scenario = Scenario { duration_s: 5, retry_fraction: 0.5, ..Scenario::seed_incident() };
        let n_lines = scenario.write(&mut log).unwrap();
        assert!(n_lines > 100);
        let mut parser = PatternSet::builtin().get("upstream").unwrap().compile(&[]).unwrap();
        let mut n_retried = 0;
        for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let record = parser.parse(line).unwrap_or_else(|e| {
                panic!("{}: {}", String::from_utf8_lossy(line), parser.explain(&e))
            });
            assert!(record.backend.is_some());
            n_retried += usize::from(record.attempts == 2);
        }
        assert!(n_retried > 20, "{n_retried}");
    }

    #[test]
    fn haproxy_lines_parse_with_the_haproxy_pattern() {
        let mut log = Vec::new();
        let scenario = Scenario {
            duration_s: 5,
            retry_fraction: 0.5,
            style: LogStyle::HaproxyHttp,
            ..Scenario::seed_incident()
        };
        scenario.write(&mut log).unwrap();
        let mut parser = PatternSet::builtin().get("haproxy").unwrap().compile(&[]).unwrap();
        let mut n_retried = 0;
        for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let record = parser.parse(line).unwrap_or_else(|e| {
                panic!("{}: {}", String::from_utf8_lossy(line), parser.explain(&e))
            });
            assert!(record.backend.is_some_and(|b| b.starts_with(b"be_api/10_0_1_")));
            n_retried += usize::from(record.attempts == 2);
        }
        assert!(n_retried > 20, "{n_retried}");
    }

    #[test]
    fn same_seed_same_bytes() {
        let scenario = Scenario { duration_s: 3, ..Scenario::seed_incident() };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        scenario.write(&mut a).unwrap();
        scenario.write(&mut b).unwrap();
        assert_eq!(a, b);
    }
}
