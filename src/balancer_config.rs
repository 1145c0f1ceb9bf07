//! Expected weights read from the balancer's own config: nginx `upstream` blocks and HAProxy
//! `backend`/`listen` sections. Reading them beats copying them into skewtail's config, where
//! they drift the first time someone edits the balancer.
//!
//! Keys are what the access log will name: nginx logs `$upstream_addr` (the address as
//! configured, with nginx's default port 80 when none is given), HAProxy logs `backend/server`.
//! `backup` servers and `down`/`disabled` ones get weight 0: they are expected to take no
//! traffic, so they are reported but never judged. The balancer's slow start (HAProxy
//! `slowstart`, nginx Plus `slow_start=`) is read too: a new server's grace period.

use std::collections::BTreeMap;
use std::path::Path;

use crate::detect::PoolExpectation;

/// A balancer config that could not be read for weights: the file, the line and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct BalancerConfigError {
    /// The balancer's config file.
    pub path: String,
    /// 1-based line (0 when the problem is the whole file).
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Which balancer's config language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalancerKind {
    /// An nginx `upstream NAME { server ...; }` block.
    NginxUpstream,
    /// A HAProxy `backend NAME` (or `listen NAME`) section.
    HaproxyBackend,
}

/// Reads the weights and slow start of upstream/backend `name` from `path`.
pub fn read_pool(
    kind: BalancerKind,
    path: &Path,
    name: &str,
) -> Result<PoolExpectation, BalancerConfigError> {
    // A balancer config with every include inlined is still far below 64 MiB.
    let text = crate::source::read_capped(path, 64 << 20).map_err(|e| BalancerConfigError {
        path: path.display().to_string(),
        line: 0,
        message: format!("cannot read the balancer config: {e}"),
    })?;
    let pool = match kind {
        BalancerKind::NginxUpstream => nginx_upstream(&text, name),
        BalancerKind::HaproxyBackend => haproxy_backend(&text, name),
    };
    pool.map_err(|(line, message)| BalancerConfigError {
        path: path.display().to_string(),
        line,
        message,
    })
}

type Located<T> = Result<T, (usize, String)>;

/// nginx config as (line, token) pairs, comments removed; `{`, `}` and `;` are tokens.
pub(crate) fn nginx_tokens(text: &str) -> Vec<(usize, &str)> {
    let mut tokens = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let mut start = None;
        for (i, c) in line.char_indices() {
            let is_punct = matches!(c, '{' | '}' | ';');
            if c.is_whitespace() || is_punct {
                if let Some(s) = start.take() {
                    tokens.push((index + 1, &line[s..i]));
                }
                if is_punct {
                    tokens.push((index + 1, &line[i..i + 1]));
                }
            } else if start.is_none() {
                start = Some(i);
            }
        }
        if let Some(s) = start {
            tokens.push((index + 1, &line[s..]));
        }
    }
    tokens
}

/// A time in a balancer config: `30s`, `2m`, `1h`, `500ms`, or a bare number in
/// `bare_unit_ms` milliseconds; whole seconds, rounded up.
fn parse_time_s(value: &str, bare_unit_ms: u64) -> Option<u32> {
    let digits = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let number: u64 = value[..digits].parse().ok()?;
    let unit_ms = match &value[digits..] {
        "" => bare_unit_ms,
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    u32::try_from((number * unit_ms).div_ceil(1000)).ok()
}

fn nginx_upstream(text: &str, name: &str) -> Located<PoolExpectation> {
    let tokens = nginx_tokens(text);
    let block = tokens
        .windows(3)
        .position(|w| w[0].1 == "upstream" && w[1].1 == name && w[2].1 == "{")
        .ok_or_else(|| {
            (0, format!("no `upstream {name} {{ ... }}` block; name the upstream the pool uses"))
        })?;
    let mut weights = BTreeMap::new();
    let mut slow_start_s: Option<u32> = None;
    let mut directive: Vec<(usize, &str)> = Vec::new();
    for &(line, token) in &tokens[block + 3..] {
        match token {
            "}" => {
                if weights.is_empty() {
                    return Err((line, format!("`upstream {name}` has no `server` lines")));
                }
                return Ok(PoolExpectation { weights, slow_start_s });
            }
            ";" => {
                if let Some((&(line, "server"), rest)) = directive.split_first() {
                    let (address, weight, slow_start) = nginx_server(line, rest)?;
                    weights.insert(address, weight);
                    slow_start_s = slow_start_s.max(slow_start);
                }
                directive.clear();
            }
            _ => directive.push((line, token)),
        }
    }
    Err((tokens.last().map_or(0, |t| t.0), format!("`upstream {name}` is never closed with `}}`")))
}

/// One `server ADDRESS [weight=N] [backup] [down] [slow_start=T] ...;` line.
fn nginx_server(line: usize, args: &[(usize, &str)]) -> Located<(String, f64, Option<u32>)> {
    let Some(&(_, address)) = args.first() else {
        return Err((line, "`server` without an address".to_string()));
    };
    let mut weight = 1.0;
    let mut slow_start_s = None;
    for &(_, parameter) in &args[1..] {
        match parameter.split_once('=') {
            Some(("slow_start", value)) => {
                slow_start_s = Some(parse_time_s(value, 1000).ok_or_else(|| {
                    (line, format!("`slow_start={value}` is not a time like 30s or 2m"))
                })?);
            }
            Some(("weight", value)) => {
                weight =
                    value.parse().ok().filter(|w: &f64| *w > 0.0).ok_or_else(|| {
                        (line, format!("`weight={value}` is not a positive number"))
                    })?;
            }
            None if parameter == "backup" || parameter == "down" => weight = 0.0,
            _ => {}
        }
    }
    if address.starts_with("unix:") {
        return Ok((address.to_string(), weight, slow_start_s));
    }
    let (host, has_port) = match address.rsplit_once(':') {
        // `[::1]:8080` or `10.0.0.1:8080`; a bare IPv6 address has `:` but no port.
        Some((host, port)) if port.parse::<u16>().is_ok() && !host.ends_with(':') => (host, true),
        _ => (address, false),
    };
    let host_is_ip = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok();
    if !host_is_ip {
        return Err((
            line,
            format!(
                "server `{address}` is a host name; nginx logs the address it resolves to, so \
                 skewtail cannot match it: list this pool's weights by address in \
                 `[pool.NAME] weights` instead"
            ),
        ));
    }
    // nginx's default port.
    let address = if has_port { address.to_string() } else { format!("{address}:80") };
    Ok((address, weight, slow_start_s))
}

/// HAProxy sections that end the previous one.
pub(crate) const HAPROXY_SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
];

fn haproxy_backend(text: &str, name: &str) -> Located<PoolExpectation> {
    let mut in_section = false;
    let mut found = false;
    let mut default_weight = 1.0;
    let mut default_slow_start: Option<u32> = None;
    let mut slow_start_s: Option<u32> = None;
    let mut weights = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let words: Vec<&str> =
            line.split('#').next().unwrap_or_default().split_whitespace().collect();
        let Some((&keyword, args)) = words.split_first() else { continue };
        if HAPROXY_SECTIONS.contains(&keyword) {
            in_section = matches!(keyword, "backend" | "listen") && args.first() == Some(&name);
            found |= in_section;
            continue;
        }
        if !in_section {
            continue;
        }
        let parse_weight = |args: &[&str]| -> Located<Option<f64>> {
            let Some(at) = args.iter().position(|a| *a == "weight") else { return Ok(None) };
            let value = args.get(at + 1).copied().unwrap_or_default();
            value.parse::<f64>().ok().filter(|w| (0.0..=256.0).contains(w)).map(Some).ok_or_else(
                || (index + 1, format!("`weight {value}` is not a number from 0 to 256")),
            )
        };
        let parse_slow_start = |args: &[&str]| -> Located<Option<u32>> {
            let Some(at) = args.iter().position(|a| *a == "slowstart") else { return Ok(None) };
            let value = args.get(at + 1).copied().unwrap_or_default();
            // HAProxy times without a unit are milliseconds.
            parse_time_s(value, 1).map(Some).ok_or_else(|| {
                (index + 1, format!("`slowstart {value}` is not a time like 30s or 2m"))
            })
        };
        match keyword {
            "default-server" => {
                if let Some(weight) = parse_weight(args)? {
                    default_weight = weight;
                }
                if let Some(slow_start) = parse_slow_start(args)? {
                    default_slow_start = Some(slow_start);
                }
            }
            "server" => {
                let Some(&server) = args.first() else {
                    return Err((index + 1, "`server` without a name".to_string()));
                };
                let mut weight = parse_weight(args)?.unwrap_or(default_weight);
                slow_start_s = slow_start_s.max(parse_slow_start(args)?.or(default_slow_start));
                if args.iter().any(|a| matches!(*a, "backup" | "disabled")) {
                    weight = 0.0;
                }
                weights.insert(format!("{name}/{server}"), weight);
            }
            _ => {}
        }
    }
    if !found {
        return Err((0, format!("no `backend {name}` or `listen {name}` section")));
    }
    if weights.is_empty() {
        return Err((0, format!("`backend {name}` has no `server` lines")));
    }
    Ok(PoolExpectation { weights, slow_start_s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_upstream_blocks() {
        let conf = "
            http {
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
            }";
        let pool = nginx_upstream(conf, "api").unwrap();
        assert_eq!(pool.slow_start_s, Some(30));
        let weights = pool.weights;
        let expect: BTreeMap<String, f64> = [
            ("10.0.0.1:8080", 3.0),
            ("10.0.0.2:8080", 1.0),
            ("10.0.0.3:80", 2.0),
            ("[::1]:9000", 1.0),
            ("10.0.0.4:8080", 0.0),
            ("10.0.0.5:8080", 0.0),
            ("unix:/run/app.sock", 1.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(weights, expect);
    }

    #[test]
    fn nginx_errors_name_the_line_and_the_fix() {
        let (line, message) =
            nginx_upstream("upstream api {\n server app1.internal:80;\n}", "api").unwrap_err();
        assert_eq!(line, 2);
        assert!(
            message.contains("host name") && message.contains("[pool.NAME] weights"),
            "{message}"
        );
        let (line, message) =
            nginx_upstream("upstream api {\n server 10.0.0.1 weight=x;\n}", "api").unwrap_err();
        assert_eq!((line, message.contains("weight=x")), (2, true));
        assert!(
            nginx_upstream("upstream web { server 10.0.0.1; }", "api")
                .unwrap_err()
                .1
                .contains("no `upstream api")
        );
        assert!(
            nginx_upstream("upstream api { server 10.0.0.1;", "api")
                .unwrap_err()
                .1
                .contains("never closed")
        );
    }

    #[test]
    fn haproxy_backend_sections() {
        let conf = "
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
";
        let pool = haproxy_backend(conf, "be_api").unwrap();
        assert_eq!(pool.slow_start_s, Some(60));
        assert_eq!(parse_time_s("1500", 1), Some(2), "HAProxy's bare milliseconds, rounded up");
        let weights = pool.weights;
        let expect: BTreeMap<String, f64> =
            [("be_api/s1", 5.0), ("be_api/s2", 2.0), ("be_api/s3", 0.0), ("be_api/s4", 0.0)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        assert_eq!(weights, expect);
        let (line, message) =
            haproxy_backend("backend be_api\n  server s1 1.2.3.4:80 weight lots\n", "be_api")
                .unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("weight lots"));
        assert!(haproxy_backend(conf, "be_nope").unwrap_err().1.contains("no `backend be_nope`"));
    }

    #[test]
    fn read_weights_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, "backend be\n server a 1.1.1.1:80 weight nine\n").unwrap();
        let error = read_pool(BalancerKind::HaproxyBackend, &path, "be").unwrap_err();
        assert!(error.to_string().starts_with(&format!("{}:2: ", path.display())), "{error}");
    }
}
