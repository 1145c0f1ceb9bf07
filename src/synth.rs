//! Synthetic access logs with a known incident, for the demo, the tests and the benchmarks.
//!
//! The generator writes any built-in format that names backends ([`LogStyle`]), so everything
//! downstream runs on exactly what that balancer writes. It is seeded, so a scenario always
//! produces the same bytes.

use std::io::{self, Write};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A scripted incident: for a while, one backend's share, errors or speed change, or the whole
/// pool's traffic does. Effects combine: the seed incident is a share, an error rate and a
/// slowdown on one backend at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Seconds after the scenario's start.
    pub start_s: u32,
    /// How long it lasts, seconds.
    pub duration_s: u32,
    /// Index of the backend it affects.
    pub backend: usize,
    /// The backend's share of the pool's traffic during the incident (the others split the
    /// rest in their weights' proportions); `Some(0.0)` is a backend dropping out; `None`
    /// leaves shares alone.
    pub share: Option<f64>,
    /// The share moves linearly from the backend's normal share to `share` over the incident
    /// (a slow drift) instead of jumping there.
    pub ramp: bool,
    /// The backend's 5xx rate during the incident (the normal rate is 0.2%).
    pub error_rate: f64,
    /// How much slower the backend answers.
    pub latency_factor: f64,
    /// The whole pool's traffic multiplier (a surge spread over the backends as usual).
    pub traffic_factor: f64,
    /// `error_rate` applies to every backend (a pool-wide outage), not just `backend`.
    pub all_backends: bool,
    /// The backend flaps: out of rotation for the first half of every period this long,
    /// seconds (a health check that fails and recovers); 0 for none.
    pub flap_period_s: u32,
}

impl Default for Incident {
    fn default() -> Self {
        Incident {
            start_s: 0,
            duration_s: 0,
            backend: 0,
            share: None,
            ramp: false,
            error_rate: 0.0,
            latency_factor: 1.0,
            traffic_factor: 1.0,
            all_backends: false,
            flap_period_s: 0,
        }
    }
}

/// Parses `90s`, `20m`, `1h30m` into seconds.
pub fn parse_duration_s(text: &str) -> Option<u32> {
    let mut total = 0u32;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let value: u32 = number.parse().ok()?;
        number.clear();
        total += value
            * match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => return None,
            };
    }
    if !number.is_empty() {
        total += number.parse::<u32>().ok()?;
    }
    Some(total)
}

impl Incident {
    /// Parses a scripted incident: `KIND@START+DURATION[:key=value,...]`, e.g.
    /// `skew@20m+25m:backend=2,share=0.45`. Kinds: `skew` (share, default 0.45), `drift`
    /// (share reached at the end, default 0.35), `drop`, `flap` (out of rotation for the first
    /// half of every `period` seconds, default 40), `errors` (rate, default 0.2), `slow`
    /// (factor, default 10), `surge` (factor, default 3), `outage` (every backend fails at
    /// `rate`, default 0.1), and `seed` (the seed postmortem's:
    /// share 0.45, 12% errors, 12x slower). `backend` is an index (default 2).
    pub fn from_spec(spec: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "incident `{spec}`: {why}; write KIND@START+DURATION[:key=value,...], e.g. skew@20m+25m:backend=2,share=0.45"
            )
        };
        let (head, options) = spec.split_once(':').unwrap_or((spec, ""));
        let (kind, when) = head.split_once('@').ok_or_else(|| bad("no `@START`"))?;
        let (start, duration) = when.split_once('+').ok_or_else(|| bad("no `+DURATION`"))?;
        let mut incident = Incident {
            start_s: parse_duration_s(start)
                .ok_or_else(|| bad("START is not like 90s, 20m or 1h"))?,
            duration_s: parse_duration_s(duration)
                .filter(|&d| d > 0)
                .ok_or_else(|| bad("DURATION is not like 90s, 20m or 1h"))?,
            backend: 2,
            ..Incident::default()
        };
        let mut values = std::collections::BTreeMap::new();
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (key, value) =
                option.split_once('=').ok_or_else(|| bad("an option is not key=value"))?;
            let number: f64 =
                value.parse().map_err(|_| bad(&format!("`{key}` is not a number")))?;
            if !number.is_finite() || number < 0.0 {
                return Err(bad(&format!("`{key}` must be a number >= 0")));
            }
            values.insert(key, number);
        }
        let mut take = |key: &str, default: f64| values.remove(key).unwrap_or(default);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        {
            incident.backend = take("backend", 2.0) as usize;
        }
        match kind {
            "skew" => incident.share = Some(take("share", 0.45)),
            "drift" => {
                incident.share = Some(take("share", 0.35));
                incident.ramp = true;
            }
            "drop" => incident.share = Some(0.0),
            "flap" => {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                {
                    incident.flap_period_s = take("period", 40.0).max(2.0) as u32;
                }
            }
            "errors" => incident.error_rate = take("rate", 0.2),
            "slow" => incident.latency_factor = take("factor", 10.0),
            "surge" => incident.traffic_factor = take("factor", 3.0),
            "outage" => {
                incident.error_rate = take("rate", 0.1);
                incident.all_backends = true;
            }
            "seed" => {
                incident.share = Some(take("share", 0.45));
                incident.error_rate = take("rate", 0.12);
                incident.latency_factor = take("factor", 12.0);
            }
            _ => {
                return Err(bad(
                    "unknown kind; use skew, drift, drop, flap, errors, slow, surge, outage or seed",
                ));
            }
        }
        if let Some(share) = incident.share.filter(|s| *s > 1.0) {
            return Err(bad(&format!("share {share} is more than 1")));
        }
        if let Some(key) = values.keys().next() {
            return Err(bad(&format!("`{key}` does not apply to `{kind}`")));
        }
        Ok(incident)
    }

    /// The alert kind a good detector raises for this incident, given the backend's normal
    /// share: a change of share is a skew (or a drop at 0), a surge a spike, otherwise errors
    /// or latency. One backend drowning with errors and slowness is one skew page.
    pub fn expected_kind(&self, normal_share: f64) -> &'static str {
        if self.all_backends {
            return "errors";
        }
        if self.flap_period_s > 0 {
            return "drop";
        }
        match self.share {
            Some(0.0) => "drop",
            Some(share) if (share - normal_share).abs() > 1e-9 => "skew",
            _ if self.traffic_factor > 1.0 => "spike",
            _ if self.error_rate > 0.0 => "errors",
            _ if self.latency_factor > 1.0 => "latency",
            _ => "none",
        }
    }

    /// Whether the alert it should raise is about the whole pool (backend `*`).
    pub fn is_pool_wide(&self) -> bool {
        self.all_backends || (self.share.is_none() && self.traffic_factor > 1.0)
    }

    fn is_active(&self, second: u32) -> bool {
        second >= self.start_s && second < self.start_s + self.duration_s
    }

    /// How far into the incident `second` is, 0 to 1.
    fn progress(&self, second: u32) -> f64 {
        f64::from(second.saturating_sub(self.start_s)) / f64::from(self.duration_s.max(1))
    }
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

/// The log layouts the generator writes: one per built-in format that names backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStyle {
    /// nginx with the built-in `upstream` log_format; backends are addresses.
    NginxUpstream,
    /// ingress-nginx's default `upstreaminfo`; the pool is the Kubernetes service.
    IngressNginx,
    /// nginx `escape=json` with the common keys.
    NginxJson,
    /// HAProxy `option httplog` behind a syslog tag; backends are `be_api/<server>`, where
    /// the server is the address with `.` and `:` replaced by `_`.
    HaproxyHttp,
    /// AWS Application Load Balancer; backends are the addresses, the pool a target group ARN.
    AwsAlb,
    /// AWS Classic ELB.
    AwsElb,
    /// Envoy's default text format (backends as `tcp://` URLs, as old Envoy writes them).
    Envoy,
    /// Envoy `json_format` with Envoy Gateway's keys; the pool is the cluster.
    EnvoyJson,
    /// Traefik's common (CLF) log; backends are service URLs.
    Traefik,
    /// Traefik's JSON log; backends are service URLs, the pool the service.
    TraefikJson,
    /// Caddy's JSON access log with `log_append upstream_host`.
    Caddy,
    /// Google Cloud load balancer entries; the pool is the backend service.
    GcpLb,
}

impl LogStyle {
    /// Every style.
    pub const ALL: [LogStyle; 12] = [
        LogStyle::NginxUpstream,
        LogStyle::IngressNginx,
        LogStyle::NginxJson,
        LogStyle::HaproxyHttp,
        LogStyle::AwsAlb,
        LogStyle::AwsElb,
        LogStyle::Envoy,
        LogStyle::EnvoyJson,
        LogStyle::Traefik,
        LogStyle::TraefikJson,
        LogStyle::Caddy,
        LogStyle::GcpLb,
    ];

    /// The built-in format that reads this style.
    pub fn format_name(self) -> &'static str {
        match self {
            LogStyle::NginxUpstream => "upstream",
            LogStyle::IngressNginx => "ingress_nginx",
            LogStyle::NginxJson => "nginx_json",
            LogStyle::HaproxyHttp => "haproxy",
            LogStyle::AwsAlb => "aws_alb",
            LogStyle::AwsElb => "aws_elb",
            LogStyle::Envoy => "envoy",
            LogStyle::EnvoyJson => "envoy_json",
            LogStyle::Traefik => "traefik",
            LogStyle::TraefikJson => "traefik_json",
            LogStyle::Caddy => "caddy",
            LogStyle::GcpLb => "gcp_lb",
        }
    }

    /// The style written for a format name (`nginx` means the `upstream` layout).
    pub fn from_format_name(name: &str) -> Option<Self> {
        let name = if name == "nginx" { "upstream" } else { name };
        Self::ALL.into_iter().find(|style| style.format_name() == name)
    }

    /// How this style writes backend `address` (as the parser will report it), and the pool.
    pub fn identity(self, address: &str) -> (String, &'static str) {
        match self {
            LogStyle::HaproxyHttp => {
                (format!("be_api/{}", address.replace(['.', ':'], "_")), "be_api")
            }
            LogStyle::Envoy => (format!("tcp://{address}"), ""),
            LogStyle::Traefik | LogStyle::TraefikJson => {
                (format!("http://{address}"), "api@docker")
            }
            LogStyle::AwsAlb => (address.to_string(), ALB_TARGET_GROUP),
            LogStyle::IngressNginx => (address.to_string(), "default-api-8080"),
            LogStyle::EnvoyJson => (address.to_string(), "httproute/default/api/rule/0"),
            LogStyle::GcpLb => (address.to_string(), "api-backend-service"),
            LogStyle::AwsElb => (address.to_string(), "api-elb"),
            LogStyle::NginxUpstream | LogStyle::NginxJson | LogStyle::Caddy => {
                (address.to_string(), "")
            }
        }
    }
}

/// The target group the ALB style logs.
pub const ALB_TARGET_GROUP: &str =
    "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/api/73e2d6bc24d8a067";

/// One generated request, before it is written in a style.
struct Request<'a> {
    /// Unix ms.
    time_ms: i64,
    /// The second's time in the layouts the styles need.
    clock: &'a Clock,
    address: &'a str,
    /// The backend tried first, when the balancer retried.
    retried_from: Option<&'a str>,
    status: u16,
    latency_s: f64,
    bytes: u32,
    order: u32,
    client: (u8, u8),
    port: u16,
}

/// One second's timestamp texts, formatted once per second rather than per line.
#[derive(Default)]
struct Clock {
    clf: String,
    haproxy: String,
    iso: String,
}

impl Clock {
    fn set(&mut self, unix_ms: i64) {
        use std::fmt::Write as _;
        let t = chrono::DateTime::from_timestamp_millis(unix_ms).unwrap_or_default();
        for (text, layout) in [
            (&mut self.clf, "%d/%b/%Y:%H:%M:%S +0000"),
            (&mut self.haproxy, "%d/%b/%Y:%H:%M:%S"),
            (&mut self.iso, "%Y-%m-%dT%H:%M:%S"),
        ] {
            text.clear();
            let _ = write!(text, "{}", t.format(layout));
        }
    }
}

impl Request<'_> {
    fn millis(&self) -> i64 {
        self.time_ms.rem_euclid(1000)
    }

    #[allow(clippy::too_many_lines)] // one arm per format, each a single line
    fn write(&self, style: LogStyle, out: &mut impl Write) -> io::Result<()> {
        let Request { clock, address, status, latency_s, bytes, order, port, .. } = *self;
        let (a, b) = self.client;
        let ms = self.millis();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // short latencies
        let latency_ms = (latency_s * 1000.0) as u64;
        let path = format_args!("/api/v1/orders/{order}");
        let (backend, pool) = style.identity(address);
        match style {
            LogStyle::NginxUpstream | LogStyle::IngressNginx => {
                let (upstream_addr, upstream_status, upstream_time) = match self.retried_from {
                    Some(first) => (
                        format!("{first}, {address}"),
                        format!("502, {status}"),
                        format!("0.001, {latency_s:.3}"),
                    ),
                    None => (address.to_string(), status.to_string(), format!("{latency_s:.3}")),
                };
                let head = format!(
                    "10.20.{a}.{b} - - [{}] \"GET {path} HTTP/1.1\" {status} {bytes} \"-\" \"Mozilla/5.0 (X11; Linux x86_64) demo-client/1.0\"",
                    clock.clf
                );
                if style == LogStyle::NginxUpstream {
                    writeln!(
                        out,
                        "{head} rt={:.3} uct=\"0.001\" uht=\"{latency_s:.3}\" urt=\"{upstream_time}\" ua=\"{upstream_addr}\" us=\"{upstream_status}\"",
                        latency_s + 0.001,
                    )
                } else {
                    writeln!(
                        out,
                        "{head} 412 {:.3} [{pool}] [] {upstream_addr} {bytes} {upstream_time} {upstream_status} 7f6b2a{order:08x}",
                        latency_s + 0.001,
                    )
                }
            }
            LogStyle::NginxJson => writeln!(
                out,
                r#"{{"time_iso8601":"{}+00:00","remote_addr":"10.20.{a}.{b}","request":"GET {path} HTTP/1.1","status":{status},"body_bytes_sent":{bytes},"request_time":{:.3},"upstream_addr":"{address}","upstream_status":"{status}","upstream_response_time":"{latency_s:.3}","http_user_agent":"demo-client/1.0"}}"#,
                clock.iso,
                latency_s + 0.001,
            ),
            LogStyle::HaproxyHttp => writeln!(
                out,
                "haproxy[4242]: 10.20.{a}.{b}:{port} [{}.{ms:03}] fe_api {backend} 0/0/1/{latency_ms}/{} {status} {bytes} - - ---- 12/12/8/1/{} 0/0 \"GET {path} HTTP/1.1\"",
                clock.haproxy,
                latency_ms + 1,
                u8::from(self.retried_from.is_some()),
            ),
            LogStyle::AwsAlb => writeln!(
                out,
                "https {}.{ms:03}{order:03}Z app/api-alb/50dc6c495c0c9188 10.20.{a}.{b}:{port} {address} 0.000 {latency_s:.3} 0.000 {status} {status} 312 {bytes} \"GET https://api.example.com:443{path} HTTP/1.1\" \"demo-client/1.0\" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 {pool} \"Root=1-58337262-36d228ad5d99923122bbe354\" \"api.example.com\" \"-\" 0 {}.000000Z \"forward\" \"-\" \"-\" \"{address}\" \"{status}\" \"-\" \"-\" TID_dc57cebed65b444ebc8177bb698fe166",
                clock.iso, clock.iso,
            ),
            LogStyle::AwsElb => writeln!(
                out,
                "{}.{ms:03}512Z {pool} 10.20.{a}.{b}:{port} {address} 0.000043 {latency_s:.6} 0.00002 {status} {status} 0 {bytes} \"GET https://api.example.com:443{path} HTTP/1.1\" \"demo-client/1.0\" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2",
                clock.iso,
            ),
            LogStyle::Envoy => writeln!(
                out,
                "[{}.{ms:03}Z] \"GET {path} HTTP/1.1\" {status} - 0 {bytes} {} {latency_ms} \"10.20.{a}.{b}\" \"demo-client/1.0\" \"a1b2c3d4-{order:08x}\" \"api.example.com\" \"{backend}\"",
                clock.iso,
                latency_ms + 1,
            ),
            LogStyle::EnvoyJson => writeln!(
                out,
                r#"{{":authority":"api.example.com","bytes_received":0,"bytes_sent":{bytes},"downstream_remote_address":"10.20.{a}.{b}:{port}","duration":{},"method":"GET","protocol":"HTTP/1.1","response_code":{status},"response_flags":"-","start_time":"{}.{ms:03}Z","upstream_cluster":"{pool}","upstream_host":"{address}","x-envoy-origin-path":"{path}","x-envoy-upstream-service-time":"{latency_ms}"}}"#,
                latency_ms + 1,
                clock.iso,
            ),
            LogStyle::Traefik => writeln!(
                out,
                "10.20.{a}.{b} - - [{}] \"GET {path} HTTP/1.1\" {status} {bytes} \"-\" \"demo-client/1.0\" {order} \"{pool}\" \"{backend}\" {}ms",
                clock.clf,
                latency_ms + 1,
            ),
            LogStyle::TraefikJson => writeln!(
                out,
                r#"{{"ClientAddr":"10.20.{a}.{b}:{port}","ClientHost":"10.20.{a}.{b}","DownstreamContentSize":{bytes},"DownstreamStatus":{status},"Duration":{},"OriginDuration":{},"OriginStatus":{status},"RequestHost":"api.example.com","RequestMethod":"GET","RequestPath":"{path}","RequestProtocol":"HTTP/1.1","RetryAttempts":{},"RouterName":"api@docker","ServiceAddr":"{address}","ServiceName":"{pool}","ServiceURL":"{backend}","StartUTC":"{}.{ms:03}000000Z","entryPointName":"web","level":"info","msg":"","time":"{}Z"}}"#,
                (latency_ms + 1) * 1_000_000,
                latency_ms * 1_000_000,
                u8::from(self.retried_from.is_some()),
                clock.iso,
                clock.iso,
            ),
            LogStyle::Caddy => writeln!(
                out,
                r#"{{"level":"info","ts":{}.{ms:03}1234,"logger":"http.log.access.log0","msg":"handled request","request":{{"remote_ip":"10.20.{a}.{b}","remote_port":"{port}","client_ip":"10.20.{a}.{b}","proto":"HTTP/1.1","method":"GET","host":"api.example.com","uri":"{path}","headers":{{"User-Agent":["demo-client/1.0"],"Accept":["*/*"]}}}},"bytes_read":0,"user_id":"","duration":{:.6},"size":{bytes},"status":{status},"resp_headers":{{"Server":["Caddy"],"Content-Type":["application/json"]}},"upstream_host":"{address}","upstream_duration_ms":{latency_ms}}}"#,
                self.time_ms.div_euclid(1000),
                latency_s + 0.001,
            ),
            LogStyle::GcpLb => writeln!(
                out,
                r#"{{"httpRequest":{{"latency":"{:.6}s","protocol":"HTTP/1.1","remoteIp":"10.20.{a}.{b}:{port}","requestMethod":"GET","requestSize":"312","requestUrl":"https://api.example.com{path}","responseSize":"{bytes}","serverIp":"{address}","status":{status},"userAgent":"demo-client/1.0"}},"insertId":"{order:x}","jsonPayload":{{"@type":"type.googleapis.com/google.cloud.loadbalancing.type.LoadBalancerLogEntry","statusDetails":"response_sent_by_backend"}},"resource":{{"labels":{{"backend_service_name":"{pool}","forwarding_rule_name":"api-fr","project_id":"demo","url_map_name":"api-map","zone":"global"}},"type":"http_load_balancer"}},"severity":"INFO","timestamp":"{}.{ms:03}123Z"}}"#,
                latency_s + 0.001,
                clock.iso,
            ),
        }
    }
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
    pub fn clean(duration_s: u32, rate_per_s: u32) -> Self {
        Scenario { duration_s, rate_per_s, incidents: Vec::new(), ..Self::seed_incident() }
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
        if !self.joins.is_empty() {
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
            let flapped_out = incident.flap_period_s > 0
                && (second - incident.start_s) % incident.flap_period_s
                    < incident.flap_period_s / 2;
            let target = if flapped_out { Some(0.0) } else { incident.share };
            if let Some(target) = target {
                let share = if incident.ramp {
                    normal[b] + (target - normal[b]) * incident.progress(second)
                } else {
                    target
                };
                let rest: f64 =
                    shares.iter().enumerate().filter(|(i, _)| *i != b).map(|(_, s)| s).sum();
                for (i, s) in shares.iter_mut().enumerate() {
                    *s = if i == b {
                        share
                    } else if rest > 0.0 {
                        *s * (1.0 - share) / rest
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
            let rate = f64::from(self.rate_per_s) * traffic * diurnal * rng.random_range(0.8..1.2);
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
                let facts = RequestFacts {
                    // Lines within a second are written in order, as a balancer would.
                    time_ms: second_ms,
                    backend,
                    retried_from: retried.then_some((backend + 1) % n_backends),
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
    use crate::parse::PatternSet;

    /// Every style's lines parse with its format and give the backend and pool it promises;
    /// retries show up where the format logs them.
    #[test]
    fn every_style_parses_with_its_format() {
        let patterns = PatternSet::builtin();
        for style in LogStyle::ALL {
            let mut log = Vec::new();
            let scenario =
                Scenario { duration_s: 5, retry_fraction: 0.5, style, ..Scenario::seed_incident() };
            let n_lines = scenario.write(&mut log).unwrap();
            assert!(n_lines > 100);
            let mut parser = patterns.get(style.format_name()).unwrap().compile(&[]).unwrap();
            let (mut n_retried, mut n_records) = (0, 0);
            for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let record = parser.parse(line).unwrap_or_else(|e| {
                    panic!("{style:?}: {}: {}", String::from_utf8_lossy(line), parser.explain(&e))
                });
                let backend = std::str::from_utf8(record.backend.unwrap()).unwrap();
                let address = scenario.backends.iter().find(|a| style.identity(a).0 == backend);
                assert!(address.is_some(), "{style:?}: backend {backend}");
                let pool = record.pool.map(|p| std::str::from_utf8(p).unwrap()).unwrap_or("");
                assert_eq!(pool, style.identity("x").1, "{style:?}");
                assert!(
                    record.status.is_some() && record.latency_s.is_some(),
                    "{style:?} {record:?}"
                );
                let end_ms = scenario.start_ms + i64::from(scenario.duration_s) * 1000;
                assert!((scenario.start_ms..end_ms).contains(&record.timestamp_ms), "{style:?}");
                n_retried += usize::from(record.attempts == 2);
                n_records += 1;
            }
            assert_eq!(n_records, n_lines);
            if matches!(
                style,
                LogStyle::NginxUpstream
                    | LogStyle::IngressNginx
                    | LogStyle::HaproxyHttp
                    | LogStyle::TraefikJson
            ) {
                assert!(n_retried > 20, "{style:?}: {n_retried}");
            }
        }
    }

    #[test]
    fn incident_specs() {
        let seed = Incident::from_spec("seed@20m+25m").unwrap();
        assert_eq!(seed, Scenario::seed_incident().incidents[0]);
        let drift = Incident::from_spec("drift@10m+40m:backend=0,share=0.35").unwrap();
        assert_eq!(
            (drift.start_s, drift.duration_s, drift.backend, drift.share, drift.ramp),
            (600, 2400, 0, Some(0.35), true)
        );
        assert_eq!(drift.expected_kind(0.125), "skew");
        assert_eq!(
            Incident::from_spec("drop@1h+90s:backend=4").unwrap().expected_kind(0.125),
            "drop"
        );
        assert_eq!(Incident::from_spec("surge@0s+10m").unwrap().expected_kind(0.125), "spike");
        assert_eq!(Incident::from_spec("errors@0s+10m").unwrap().expected_kind(0.125), "errors");
        assert_eq!(Incident::from_spec("slow@0s+10m").unwrap().expected_kind(0.125), "latency");
        for (spec, why) in [
            ("skew", "no `@START`"),
            ("skew@20m", "no `+DURATION`"),
            ("skew@20x+1m", "START is not like"),
            ("melt@0s+1m", "unknown kind"),
            ("errors@0s+1m:share=0.5", "`share` does not apply to `errors`"),
            ("skew@0s+1m:share=2", "more than 1"),
        ] {
            let error = Incident::from_spec(spec).unwrap_err();
            assert!(error.contains(why), "{spec}: {error}");
        }
    }

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
