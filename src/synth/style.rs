//! How each balancer writes a generated request: one layout per built-in format that names
//! backends.

use std::io::{self, Write};

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
pub(super) struct Request<'a> {
    /// Unix ms.
    pub(super) time_ms: i64,
    /// The second's time in the layouts the styles need.
    pub(super) clock: &'a Clock,
    pub(super) address: &'a str,
    /// The backend tried first, when the balancer retried.
    pub(super) retried_from: Option<&'a str>,
    pub(super) status: u16,
    pub(super) latency_s: f64,
    pub(super) bytes: u32,
    pub(super) order: u32,
    pub(super) client: (u8, u8),
    pub(super) port: u16,
}

/// One second's timestamp texts, formatted once per second rather than per line.
#[derive(Default)]
pub(super) struct Clock {
    pub(super) clf: String,
    pub(super) haproxy: String,
    pub(super) iso: String,
}

impl Clock {
    pub(super) fn set(&mut self, unix_ms: i64) {
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
    pub(super) fn write(&self, style: LogStyle, out: &mut impl Write) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::PatternSet;
    use crate::synth::Scenario;

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
}
