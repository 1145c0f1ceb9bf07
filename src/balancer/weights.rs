//! A pool's expected weights as the access log will name its servers: nginx logs
//! `$upstream_addr` (the address as configured, with nginx's default port 80 when none is
//! given), HAProxy logs `backend/server`. Backups and servers marked down get weight 0: they
//! are expected to take no traffic, so they are reported but never judged.

use std::collections::BTreeMap;

use super::{BalancerConfig, BalancerError, Kind, Pool, Server};
use crate::detect::PoolExpectation;

impl BalancerConfig {
    /// How the access log names `server` of `pool`.
    pub fn log_key(&self, pool: &Pool, server: &Server) -> String {
        match self.kind {
            Kind::Haproxy => format!("{}/{}", pool.name, server.name),
            Kind::Nginx if server.address.starts_with("unix:") => server.address.clone(),
            Kind::Nginx => match split_port(&server.address) {
                (_, true) => server.address.clone(),
                (_, false) => format!("{}:80", server.address),
            },
        }
    }

    /// Pool `name`'s weights and slow start, keyed as its access log names servers. Refused
    /// when the balancer would refuse the pool, or when its servers cannot be matched to log
    /// lines (an nginx server given by host name).
    pub fn expectation(&self, name: &str) -> Result<PoolExpectation, BalancerError> {
        let whole_file = |message: String| BalancerError {
            path: self.files.first().cloned().unwrap_or_default(),
            line: 0,
            message,
        };
        let pool = self.pools.iter().find(|p| p.name == name).ok_or_else(|| {
            whole_file(match self.kind {
                Kind::Nginx => {
                    format!("no `upstream {name} {{ ... }}` block; name the upstream the pool uses")
                }
                Kind::Haproxy => format!("no `backend {name}` or `listen {name}` section"),
            })
        })?;
        if let Some(invalid) = pool.invalid.first() {
            return Err(BalancerError {
                path: invalid.file.clone(),
                line: invalid.line,
                message: invalid.message.clone(),
            });
        }
        if pool.servers.is_empty() {
            return Err(BalancerError {
                path: pool.file.clone(),
                line: pool.line,
                message: format!("`{name}` has no `server` lines"),
            });
        }
        let mut weights = BTreeMap::new();
        for server in &pool.servers {
            if self.kind == Kind::Nginx && !server.address.starts_with("unix:") {
                let (host, _) = split_port(&server.address);
                if host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_err() {
                    return Err(BalancerError {
                        path: server.file.clone(),
                        line: server.line,
                        message: format!(
                            "server `{}` is a host name; nginx logs the address it resolves \
                             to, so skewtail cannot match it: list this pool's weights by \
                             address in `[pool.NAME] weights` instead",
                            server.address
                        ),
                    });
                }
            }
            weights.insert(self.log_key(pool, server), server.expected_weight());
        }
        let slow_start_s = pool.servers.iter().filter_map(|s| s.slow_start_s).max();
        Ok(PoolExpectation { weights, slow_start_s })
    }
}

/// An address's host, and whether it gives a port: `[::1]:8080` and `10.0.0.1:8080` do; a
/// bare IPv6 address (`::1`) has `:` but no port.
fn split_port(address: &str) -> (&str, bool) {
    match address.rsplit_once(':') {
        Some((host, port))
            if port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']')) =>
        {
            (host, true)
        }
        _ => (address, false),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, read};
    use std::collections::BTreeMap;

    fn read_text(name: &str, text: &str) -> super::BalancerConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        read(&path, None).unwrap()
    }

    fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn nginx_upstream_weights() {
        let config = read_text(
            "nginx.conf",
            "http {
              upstream other { server 10.9.9.9:80; }
              upstream api {   # the API servers
                zone api 64k;
                server 10.0.0.1:8080 weight=3 max_fails=2 slow_start=30s;
                server 10.0.0.2:8080;
                server 10.0.0.3 weight=2;
                server [::1]:9000;
                server 10.0.0.4:8080 backup;
                server 10.0.0.5:8080 down;
                server unix:/run/app.sock;
              }
            }",
        );
        let pool = config.expectation("api").unwrap();
        assert_eq!(pool.slow_start_s, Some(30));
        let expect = map(&[
            ("10.0.0.1:8080", 3.0),
            ("10.0.0.2:8080", 1.0),
            ("10.0.0.3:80", 2.0),
            ("[::1]:9000", 1.0),
            ("10.0.0.4:8080", 0.0),
            ("10.0.0.5:8080", 0.0),
            ("unix:/run/app.sock", 1.0),
        ]);
        assert_eq!(pool.weights, expect);
    }

    #[test]
    fn nginx_refusals_name_the_line_and_the_fix() {
        let config = read_text("nginx.conf", "upstream api {\n server app1.internal:80;\n}\n");
        let error = config.expectation("api").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(
            error.message.contains("host name") && error.message.contains("[pool.NAME] weights")
        );
        let config = read_text("nginx.conf", "upstream api {\n server 10.0.0.1 weight=x;\n}\n");
        let error = config.expectation("api").unwrap_err();
        assert_eq!((error.line, error.message.contains("weight=x")), (2, true));
        assert!(config.expectation("web").unwrap_err().message.contains("no `upstream web"));
    }

    #[test]
    fn haproxy_backend_weights() {
        let config = read_text(
            "haproxy.cfg",
            "
global
    maxconn 100
backend be_web
    server w1 10.1.0.1:80 weight 7
backend be_api
    balance roundrobin
    default-server weight 2 check slowstart 60s
    server s1 10.0.0.1:8080 check weight 5
    server s2 10.0.0.2:8080 check
    server s3 10.0.0.3:8080 backup
    server s4 10.0.0.4:8080 disabled
frontend fe
    default_backend be_api
",
        );
        assert_eq!(config.kind, Kind::Haproxy);
        let pool = config.expectation("be_api").unwrap();
        assert_eq!(pool.slow_start_s, Some(60));
        let expect =
            map(&[("be_api/s1", 5.0), ("be_api/s2", 2.0), ("be_api/s3", 0.0), ("be_api/s4", 0.0)]);
        assert_eq!(pool.weights, expect);
        assert!(
            config.expectation("be_nope").unwrap_err().message.contains("no `backend be_nope`")
        );
    }

    #[test]
    fn a_refusal_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, "backend be\n server a 1.1.1.1:80 weight nine\n").unwrap();
        let error = read(&path, Some(Kind::Haproxy)).unwrap().expectation("be").unwrap_err();
        assert!(error.to_string().starts_with(&format!("{}:2: ", path.display())), "{error}");
    }
}
