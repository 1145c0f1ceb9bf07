//! Synthetic access logs with a known incident, for the demo, the tests and the benchmarks.
//!
//! The generator writes any built-in format that names backends ([`LogStyle`]), so everything
//! downstream runs on exactly what that balancer writes. It is seeded, so a scenario always
//! produces the same bytes.

use std::io::{self, Write};

mod incident;
mod style;

pub use incident::{Incident, SpecError, parse_duration_s};
pub use style::{ALB_TARGET_GROUP, LogStyle};
use style::{Clock, Request};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A synthetic log.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Unix ms of the first line.
    pub start_ms: i64,
    /// Length, seconds.
    pub duration_s: u32,
    /// Mean requests per second (each second varies by ±20%).
    pub rate_per_s: f64,
    /// Backend addresses.
    pub backends: Vec<String>,
    /// The balancer's weights, one per backend; empty means equal.
    pub weights: Vec<f64>,
    /// Scripted incidents.
    pub incidents: Vec<Incident>,
    /// Traffic follows the day: half the mean rate at 04:00 UTC, one and a half at 16:00.
    pub diurnal: bool,
    /// Fraction of lines written late (a slow request logged after faster ones).
    pub late_fraction: f64,
    /// How late such a line can be, seconds.
    pub max_lateness_s: u32,
    /// Fraction of lines replaced by garbage (random bytes, invalid UTF-8 included).
    pub garbage_fraction: f64,
    /// Fraction of requests the balancer retried on a second backend.
    pub retry_fraction: f64,
    /// Random seed.
    pub seed: u64,
    /// Which balancer's log to write.
    pub style: LogStyle,
    /// How much more per-backend counts vary than for independent requests: requests come in
    /// client keep-alive batches (geometric, mean `(d+1)/2`) that land on one backend, which
    /// makes counts about `d` times as dispersed. 1 is independent requests.
    pub batch_dispersion: f64,
    /// Hashed or sticky pools: each of a few hundred clients keeps its backend for this many
    /// seconds on average (0: every batch is placed anew).
    pub sticky_s: u32,
    /// Backends that join during the run and ramp up (the balancer's slow start).
    pub joins: Vec<Join>,
    /// With `diurnal`, the rate at the quietest hour as a fraction of the mean.
    pub night_ratio: f64,
    /// Latencies with a realistic heavy tail: 1% of requests 5 to 50 times slower.
    pub latency_tail: bool,
}

/// A backend that joins the pool during a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Join {
    /// Index of the backend; it takes nothing before it joins.
    pub backend: usize,
    /// When it joins, seconds after the start.
    pub at_s: u32,
    /// Its share ramps linearly from 0 over this long, seconds.
    pub ramp_s: u32,
}

/// Clients of a hashed or sticky pool.
const STICKY_CLIENTS: usize = 200;

/// 2023-11-15T14:00:00Z, the day of the seed incident.
pub const SEED_INCIDENT_DAY_MS: i64 = 1_700_056_800_000;

impl Scenario {
    /// The seed postmortem's incident: 8 API servers; for 25 minutes one of them takes 45% of
    /// the traffic, answers slowly and errors; then the balancer is fixed.
    pub fn seed_incident() -> Self {
        Scenario {
            start_ms: SEED_INCIDENT_DAY_MS,
            duration_s: 60 * 60,
            rate_per_s: 40.0,
            backends: (1..=8).map(|i| format!("10.0.1.{i}:8080")).collect(),
            weights: Vec::new(),
            incidents: vec![Incident {
                start_s: 20 * 60,
                duration_s: 25 * 60,
                backend: 2,
                share: Some(0.45),
                error_rate: 0.12,
                latency_factor: 12.0,
                ..Incident::default()
            }],
            diurnal: false,
            late_fraction: 0.0,
            max_lateness_s: 0,
            garbage_fraction: 0.0,
            retry_fraction: 0.002,
            seed: 20_231_115,
            style: LogStyle::NginxUpstream,
            batch_dispersion: 1.0,
            sticky_s: 0,
            joins: Vec::new(),
            night_ratio: 0.5,
            latency_tail: false,
        }
    }

    /// The same servers with no incident.
    pub fn clean(duration_s: u32, rate_per_s: f64) -> Self {
        Scenario { duration_s, rate_per_s, incidents: Vec::new(), ..Self::seed_incident() }
    }

    /// Adds a backend every `every_s`, half-way through each period, ramping up over
    /// `ramp_s` (the hourly scale-ups of `simulate --scale-up 1h/90s`): the backends are
    /// appended to the scenario's.
    pub fn scale_up(&mut self, every_s: u32, ramp_s: u32) {
        let first = self.backends.len();
        let joins: Vec<Join> = (0..self.duration_s / every_s.max(1))
            .map(|i| Join {
                backend: first + i as usize,
                at_s: (i + 1) * every_s - every_s / 2,
                ramp_s,
            })
            .collect();
        self.backends = backend_addresses(first + joins.len());
        if !self.weights.is_empty() {
            self.weights.resize(self.backends.len(), 1.0);
        }
        self.joins = joins;
    }

    /// Each backend's normal share: the weights, normalised (equal without weights).
    pub fn normal_shares(&self) -> Vec<f64> {
        let n = self.backends.len();
        if self.weights.len() != n || self.weights.iter().sum::<f64>() <= 0.0 {
            #[allow(clippy::cast_precision_loss)]
            return vec![1.0 / n.max(1) as f64; n];
        }
        let total: f64 = self.weights.iter().sum();
        self.weights.iter().map(|w| w / total).collect()
    }

    /// The traffic split, traffic multiplier, and each backend's (error rate, latency factor)
    /// at `second`, with the active incidents applied.
    fn conditions_at(&self, second: u32, normal: &[f64]) -> (Vec<f64>, f64, Vec<(f64, f64)>) {
        let mut shares = normal.to_vec();
        for join in &self.joins {
            if let Some(share) = shares.get_mut(join.backend) {
                let since = f64::from(second.saturating_sub(join.at_s));
                let ramp = f64::from(join.ramp_s.max(1));
                *share *= if second < join.at_s { 0.0 } else { (since / ramp).min(1.0) };
            }
        }
        // Backends that have not joined yet, or have left for good.
        let mut kept_out = false;
        for (backend, share) in shares.iter_mut().enumerate() {
            let out = self.incidents.iter().any(|i| i.keeps_out(backend, second))
                && !self.incidents.iter().any(|i| i.covers(backend) && i.is_active(second));
            if out {
                *share = 0.0;
                kept_out = true;
            }
        }
        if !self.joins.is_empty() || kept_out {
            let total: f64 = shares.iter().sum();
            for share in &mut shares {
                *share /= total.max(f64::MIN_POSITIVE);
            }
        }
        let mut traffic = 1.0;
        let mut health = vec![(NORMAL_ERROR_RATE, 1.0); normal.len()];
        for incident in self.incidents.iter().filter(|i| i.is_active(second)) {
            traffic *= incident.traffic_factor;
            let b = incident.backend.min(normal.len().saturating_sub(1));
            let targets = incident.targets(second, normal.len(), normal);
            if !targets.is_empty() {
                let set: f64 = targets.iter().map(|t| t.1).sum();
                let rest: f64 = shares
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !targets.iter().any(|t| t.0 == *i))
                    .map(|(_, s)| s)
                    .sum();
                for (i, s) in shares.iter_mut().enumerate() {
                    *s = if let Some(&(_, share)) = targets.iter().find(|t| t.0 == i) {
                        share
                    } else if rest > 0.0 {
                        *s * (1.0 - set) / rest
                    } else {
                        0.0
                    };
                }
            }
            if incident.all_backends {
                for h in &mut health {
                    h.0 = incident.error_rate;
                }
            } else if incident.error_rate > 0.0 {
                health[b].0 = incident.error_rate;
            }
            health[b].1 *= incident.latency_factor;
        }
        (shares, traffic, health)
    }

    /// Generates the requests (and garbage lines) in the order the balancer writes them and
    /// hands each to `visit`; returns the number of lines. [`Scenario::write`] formats them;
    /// the evaluation suite feeds them to the detector as records.
    pub fn generate(&self, mut visit: impl FnMut(&Generated) -> io::Result<()>) -> io::Result<u64> {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let n_backends = self.backends.len();
        let normal = self.normal_shares();
        let mut n_lines = 0u64;
        // Lines written late wait here, keyed by (the second they are written, sequence).
        let mut late: std::collections::BTreeMap<(u32, u64), Generated> = Default::default();
        let mut cumulative = Vec::with_capacity(n_backends);
        let mut placement = Placement::default();
        for second in 0..self.duration_s {
            let second_ms = self.start_ms + i64::from(second) * 1000;
            while let Some(entry) = late.first_entry() {
                if entry.key().0 > second {
                    break;
                }
                visit(&entry.remove())?;
            }
            let (shares, traffic, health) = self.conditions_at(second, &normal);
            cumulative.clear();
            let mut sum = 0.0;
            for share in &shares {
                sum += share;
                cumulative.push(sum);
            }
            let diurnal = if self.diurnal {
                #[allow(clippy::cast_precision_loss)]
                let hour = (second_ms.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
                let wave = (1.0 + (std::f64::consts::TAU * (hour - 10.0) / 24.0).sin()) / 2.0;
                self.night_ratio + (2.0 - 2.0 * self.night_ratio) * wave
            } else {
                1.0
            };
            placement.new_second(self, second, &shares, &cumulative, &mut rng);
            let rate = self.rate_per_s * traffic * diurnal * rng.random_range(0.8..1.2);
            // Below a request a second, rounding would round most seconds to none: each second
            // gets one with the rate's probability instead.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n_requests = if rate < 1.0 {
                u32::from(rng.random_bool(rate.max(0.0)))
            } else {
                rate.round() as u32
            };
            // A backend that refuses connections is tried now and then (nginx tries a failed
            // server again after `fail_timeout`); the request is retried on another.
            let mut refused: Vec<usize> = Vec::new();
            for incident in
                self.incidents.iter().filter(|i| i.refuse_every_s > 0 && i.is_active(second))
            {
                if rng.random_bool(1.0 / f64::from(incident.refuse_every_s)) {
                    refused.push(incident.backend.min(n_backends.saturating_sub(1)));
                }
            }
            for _ in 0..n_requests {
                n_lines += 1;
                if rng.random_bool(self.garbage_fraction) {
                    let len = rng.random_range(1..200);
                    let garbage: Vec<u8> = (0..len)
                        .map(|_| rng.random_range(0..=255u8))
                        .filter(|&b| b != b'\n')
                        .collect();
                    visit(&Generated::Garbage(garbage))?;
                    continue;
                }
                let backend = placement.backend(self, &cumulative, &mut rng);
                let (error_rate, latency_factor) = health[backend];
                let latency_s = self.latency_s(&mut rng) * latency_factor;
                let status = if rng.random_bool(error_rate.clamp(0.0, 1.0)) {
                    if error_rate > NORMAL_ERROR_RATE { 503 } else { 502 }
                } else {
                    200
                };
                let retried = rng.random_bool(self.retry_fraction);
                // A transient failure on the next backend in rotation, or an attempt at a
                // refusing one.
                let retried_from = refused.pop().or_else(|| {
                    retried
                        .then(|| {
                            (1..n_backends)
                                .map(|step| (backend + step) % n_backends)
                                .find(|&b| shares[b] > 0.0)
                        })
                        .flatten()
                });
                let facts = RequestFacts {
                    // Lines within a second are written in order, as a balancer would.
                    time_ms: second_ms,
                    backend,
                    retried_from,
                    status,
                    latency_s,
                    bytes: rng.random_range(200..4000),
                    order: rng.random_range(1..100_000),
                    client: (rng.random_range(0..255), rng.random_range(1..255)),
                    port: rng.random_range(1024..65535),
                };
                if self.max_lateness_s > 0 && rng.random_bool(self.late_fraction) {
                    let written_at = second + rng.random_range(1..=self.max_lateness_s);
                    late.insert((written_at, n_lines), Generated::Request(facts));
                } else {
                    visit(&Generated::Request(facts))?;
                }
            }
        }
        for item in late.into_values() {
            visit(&item)?;
        }
        Ok(n_lines)
    }

    /// A healthy backend's latency, seconds.
    fn latency_s(&self, rng: &mut SmallRng) -> f64 {
        if !self.latency_tail {
            return 0.015 * (-rng.random::<f64>().max(1e-9).ln()) + 0.005;
        }
        // A log-normal body around 15 ms, and 1% of requests 5 to 50 times slower (a GC
        // pause, a cold cache, a slow query).
        let normal = (-2.0 * rng.random::<f64>().max(1e-12).ln()).sqrt()
            * (std::f64::consts::TAU * rng.random::<f64>()).cos();
        let body = 0.005 + (0.015f64.ln() + 0.7 * normal).exp();
        if rng.random_bool(0.01) { body * rng.random_range(5.0..50.0) } else { body }
    }

    /// Writes the log; returns the number of lines.
    pub fn write(&self, out: &mut impl Write) -> io::Result<u64> {
        self.write_lines(|_, line| out.write_all(line))
    }

    /// Formats the log line by line: `each` gets a line's time (Unix ms; that of the line
    /// before for a garbage line) and its text with its newline. For writers that pace lines
    /// to the wall clock. Returns the number of lines.
    pub fn write_lines(
        &self,
        mut each: impl FnMut(i64, &[u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        let mut clock = Clock::default();
        let mut clock_second = None;
        let mut line = Vec::with_capacity(512);
        let mut last_ms = self.start_ms;
        self.generate(|item| match item {
            Generated::Garbage(bytes) => {
                line.clear();
                line.extend_from_slice(bytes);
                line.push(b'\n');
                each(last_ms, &line)
            }
            Generated::Request(facts) => {
                let second = facts.time_ms.div_euclid(1000);
                if clock_second != Some(second) {
                    clock.set(second * 1000);
                    clock_second = Some(second);
                }
                line.clear();
                Request {
                    time_ms: facts.time_ms,
                    clock: &clock,
                    address: &self.backends[facts.backend],
                    retried_from: facts.retried_from.map(|b| self.backends[b].as_str()),
                    status: facts.status,
                    latency_s: facts.latency_s,
                    bytes: facts.bytes,
                    order: facts.order,
                    client: facts.client,
                    port: facts.port,
                }
                .write(self.style, &mut line)?;
                last_ms = facts.time_ms;
                each(facts.time_ms, &line)
            }
        })
    }
}

/// Which backend each request goes to: independently by share, or in client batches, or to
/// the backend a (hashed, sticky) client is pinned to.
#[derive(Debug, Default)]
struct Placement {
    /// Requests left in the current client batch, and where it goes.
    batch_left: u32,
    batch_backend: usize,
    /// Sticky clients' backends.
    clients: Vec<usize>,
    /// Which incidents were active last second: a change re-hashes the clients.
    active: Vec<bool>,
}

impl Placement {
    fn pick(cumulative: &[f64], rng: &mut SmallRng) -> usize {
        let sum = cumulative.last().copied().unwrap_or(1.0);
        let pick = rng.random::<f64>() * sum;
        cumulative.partition_point(|&c| c <= pick).min(cumulative.len().saturating_sub(1))
    }

    fn new_second(
        &mut self,
        scenario: &Scenario,
        second: u32,
        shares: &[f64],
        cumulative: &[f64],
        rng: &mut SmallRng,
    ) {
        if shares.get(self.batch_backend).is_none_or(|s| *s <= 0.0) {
            self.batch_left = 0;
        }
        if scenario.sticky_s == 0 {
            return;
        }
        let active: Vec<bool> = scenario.incidents.iter().map(|i| i.is_active(second)).collect();
        let rehash = self.clients.is_empty() || active != self.active;
        self.active = active;
        if rehash {
            self.clients = (0..STICKY_CLIENTS).map(|_| Self::pick(cumulative, rng)).collect();
            return;
        }
        let renew = 1.0 / f64::from(scenario.sticky_s);
        for client in &mut self.clients {
            if shares[*client] <= 0.0 || rng.random_bool(renew) {
                *client = Self::pick(cumulative, rng);
            }
        }
    }

    fn backend(&mut self, scenario: &Scenario, cumulative: &[f64], rng: &mut SmallRng) -> usize {
        if scenario.batch_dispersion <= 1.0 && scenario.sticky_s == 0 {
            return Self::pick(cumulative, rng);
        }
        if self.batch_left == 0 {
            // Geometric batch sizes with mean (d+1)/2 make counts d times as dispersed.
            let mean = (scenario.batch_dispersion.max(1.0) + 1.0) / 2.0;
            let p = 1.0 / mean;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let size = if p >= 1.0 {
                1
            } else {
                1 + (rng.random::<f64>().max(1e-12).ln() / (1.0 - p).ln()) as u32
            };
            self.batch_left = size.min(10_000);
            self.batch_backend = if self.clients.is_empty() {
                Self::pick(cumulative, rng)
            } else {
                self.clients[rng.random_range(0..self.clients.len())]
            };
        }
        self.batch_left -= 1;
        self.batch_backend
    }
}

/// One generated log entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Generated {
    /// A request.
    Request(RequestFacts),
    /// A line of random bytes.
    Garbage(Vec<u8>),
}

/// What the balancer knows about one generated request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestFacts {
    /// Event time, Unix ms.
    pub time_ms: i64,
    /// Index into the scenario's backends of the server that answered.
    pub backend: usize,
    /// The backend tried first, when the balancer retried.
    pub retried_from: Option<usize>,
    /// Status sent to the client.
    pub status: u16,
    /// Backend latency, seconds.
    pub latency_s: f64,
    bytes: u32,
    order: u32,
    client: (u8, u8),
    port: u16,
}

/// `n` backend addresses, `10.0.0.1:8080` upwards (250 per /24), for generated pools.
pub fn backend_addresses(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.{}.{}.{}:8080", i / 62_500, i / 250 % 250, i % 250 + 1)).collect()
}

/// A healthy backend's 5xx rate.
const NORMAL_ERROR_RATE: f64 = 0.002;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_incidents_shape_the_traffic() {
        let count = |scenario: &Scenario, from_s: i64, to_s: i64| {
            let mut per_backend = vec![0u64; scenario.backends.len()];
            let mut errors = 0;
            scenario
                .generate(|item| {
                    if let Generated::Request(f) = item {
                        let t = (f.time_ms - scenario.start_ms) / 1000;
                        if (from_s..to_s).contains(&t) {
                            per_backend[f.backend] += 1;
                            errors += u64::from(f.status >= 500);
                        }
                    }
                    Ok(())
                })
                .unwrap();
            (per_backend, errors)
        };
        let weighted = Scenario {
            duration_s: 600,
            weights: vec![3.0, 1.0, 1.0, 1.0],
            backends: (0..4).map(|i| format!("10.0.0.{i}:80")).collect(),
            incidents: vec![Incident::from_spec("drop@300s+300s:backend=1").unwrap()],
            ..Scenario::seed_incident()
        };
        let (before, _) = count(&weighted, 0, 300);
        let share0 = before[0] as f64 / before.iter().sum::<u64>() as f64;
        assert!((share0 - 0.5).abs() < 0.02, "{share0}");
        let (during, _) = count(&weighted, 300, 600);
        assert_eq!(during[1], 0);
        let surge = Scenario {
            duration_s: 600,
            incidents: vec![Incident::from_spec("surge@300s+300s:factor=3").unwrap()],
            ..Scenario::seed_incident()
        };
        let (a, _) = count(&surge, 0, 300);
        let (b, _) = count(&surge, 300, 600);
        let ratio = b.iter().sum::<u64>() as f64 / a.iter().sum::<u64>() as f64;
        assert!((ratio - 3.0).abs() < 0.1, "{ratio}");
        let late = Scenario {
            duration_s: 120,
            late_fraction: 0.1,
            max_lateness_s: 30,
            incidents: vec![],
            ..Scenario::seed_incident()
        };
        let mut previous = late.start_ms;
        let mut n_out_of_order = 0;
        late.generate(|item| {
            if let Generated::Request(f) = item {
                n_out_of_order += u64::from(f.time_ms < previous);
                assert!(previous - f.time_ms <= 30_000);
                previous = previous.max(f.time_ms);
            }
            Ok(())
        })
        .unwrap();
        assert!(n_out_of_order > 100, "{n_out_of_order}");
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
