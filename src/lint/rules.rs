//! What in a balancer config skews traffic, and why each finding matters.

use std::collections::BTreeMap;

use super::{Finding, Severity};
use crate::balancer::{BalancerConfig, Kind, Method, Pool, Server};
use crate::detect::PoolExpectation;

/// A server weighted this many times its peers' median is flagged.
const OUTLIER_RATIO: f64 = 3.0;

/// Every finding for `config`.
pub fn check(config: &BalancerConfig) -> Vec<Finding> {
    let mut findings = Vec::new();
    for pool in &config.pools {
        weight_outlier(pool, &mut findings);
        single_server(pool, &mut findings);
        hash_not_consistent(pool, &mut findings);
        client_address_hash(pool, config.real_client_address, &mut findings);
        backup_in_hashed_pool(pool, config.kind, &mut findings);
        unchecked(pool, config.kind, &mut findings);
        duplicates(pool, &mut findings);
        invalid(pool, &mut findings);
    }
    // A bad `default-server` in HAProxy's `defaults` is every inheriting pool's problem,
    // but one line to fix.
    let mut seen = std::collections::HashSet::new();
    findings.retain(|f| {
        f.code != "invalid-parameter" || seen.insert((f.file.clone(), f.line, f.message.clone()))
    });
    findings
}

/// Parameters the balancer itself would refuse: the config will not load, and skewtail
/// will not import weights from it.
fn invalid(pool: &Pool, findings: &mut Vec<Finding>) {
    for invalid in &pool.invalid {
        findings.push(Finding {
            file: invalid.file.display().to_string(),
            message: invalid.message.clone(),
            why: "The balancer refuses a config with this line, and skewtail refuses to read the pool's weights from it.".into(),
            fix: "Give the parameter a value the balancer accepts (a weight is a positive number; a time is like 30s).".into(),
            ..finding(pool, invalid.line, Severity::Error, "invalid-parameter")
        });
    }
}

/// A finding about one of `pool`'s servers, at its line (which an include may put in
/// another file).
fn server_finding(pool: &Pool, server: &Server, severity: Severity, code: &'static str) -> Finding {
    Finding {
        file: server.file.display().to_string(),
        server: Some(server.name.clone()),
        ..finding(pool, server.line, severity, code)
    }
}

fn finding(pool: &Pool, line: usize, severity: Severity, code: &'static str) -> Finding {
    Finding {
        file: pool.file.display().to_string(),
        line,
        severity,
        code,
        pool: pool.name.clone(),
        server: None,
        message: String::new(),
        why: String::new(),
        fix: String::new(),
    }
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

fn weight_outlier(pool: &Pool, findings: &mut Vec<Finding>) {
    let active: Vec<_> = pool.active().collect();
    if active.len() < 2 {
        return;
    }
    let total: f64 = active.iter().map(|s| s.weight).sum();
    for (index, server) in active.iter().enumerate() {
        let mut peers: Vec<f64> = active
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(_, s)| s.weight)
            .collect();
        peers.sort_by(f64::total_cmp);
        let median = peers[peers.len() / 2];
        if server.weight < OUTLIER_RATIO * median {
            continue;
        }
        let share = server.weight / total;
        let even = 1.0 / active.len() as f64;
        let severity = if share >= 2.5 * even { Severity::Error } else { Severity::Warning };
        findings.push(Finding {
            message: format!(
                "server {} has weight {} where its peers have {}: it gets {} of the pool's traffic ({} of {}), {:.1}x an even share",
                server.name, server.weight, median, percent(share), server.weight, total, share / even
            ),
            why: "A weight far above the others sends that server most of the traffic; if it was meant for a bigger machine, check that the machine really is that much bigger, or it drowns while its peers idle (the seed incident).".into(),
            fix: format!("Set it back in line with its peers (weight {median}), or document why it is {} times their size.", server.weight / median),
            ..server_finding(pool, server, severity, "weight-outlier")
        });
    }
}

fn single_server(pool: &Pool, findings: &mut Vec<Finding>) {
    let active = pool.active().count();
    if active == 1 {
        findings.push(Finding {
            message: format!("pool {} has a single server in rotation", pool.name),
            why: "Nothing is balanced: every request goes to one server, and when it fails there is no other (a backup only takes over once it is marked down).".into(),
            fix: "Add at least one more server, or if this is deliberate, say so in a comment and leave skewtail to watch its errors.".into(),
            ..finding(pool, pool.line, Severity::Warning, "single-server")
        });
    } else if active == 0 && !pool.servers.is_empty() {
        findings.push(Finding {
            message: format!(
                "pool {} has no server in rotation (all backup, down or weight 0)",
                pool.name
            ),
            why: "Requests to this pool fail or go to backups only.".into(),
            fix: "Bring at least one server into rotation.".into(),
            ..finding(pool, pool.line, Severity::Error, "no-server")
        });
    }
}

fn hash_not_consistent(pool: &Pool, findings: &mut Vec<Finding>) {
    if let Method::Hash { key, consistent: false } = &pool.method {
        findings.push(Finding {
            message: format!("pool {} hashes `{key}` without consistent hashing", pool.name),
            why: "With a plain (map-based) hash, adding, removing or failing one server moves almost every key to a different server: caches go cold everywhere at once and load lurches. Hot keys also pin their traffic to one server.".into(),
            fix: "nginx: `hash KEY consistent;`. HAProxy: `hash-type consistent`.".into(),
            ..finding(pool, pool.method_line, Severity::Warning, "hash-not-consistent")
        });
    }
}

fn client_address_hash(pool: &Pool, real_client_address: bool, findings: &mut Vec<Finding>) {
    let Method::ClientAddress { first_three_octets, .. } = pool.method else { return };
    let (severity, seen_as) = if real_client_address {
        (
            Severity::Info,
            "the config takes the client address from a header or the PROXY protocol, so clients are told apart",
        )
    } else {
        (
            Severity::Warning,
            "nothing in this config restores the real client address, so behind a CDN, a proxy or a NAT every client looks like the same few addresses",
        )
    };
    let octets = if first_three_octets {
        " nginx's ip_hash also uses only the first three octets of an IPv4 address: a whole /24 lands on one server."
    } else {
        ""
    };
    findings.push(Finding {
        message: format!("pool {} places clients by their address; {seen_as}", pool.name),
        why: format!("A client-address hash sends everyone behind one address to one server: an office, a carrier NAT or the balancer in front becomes one giant client.{octets}"),
        fix: "Hash a key that tells clients apart (nginx `hash $http_x_forwarded_for consistent;` behind a trusted proxy, HAProxy `balance hdr(X-Forwarded-For)`), or use cookies for stickiness, or restore the client address (nginx `real_ip`, HAProxy `accept-proxy`).".into(),
        ..finding(pool, pool.method_line, severity, "client-address-hash")
    });
}

fn backup_in_hashed_pool(pool: &Pool, kind: Kind, findings: &mut Vec<Finding>) {
    if !pool.method.is_hashed() {
        return;
    }
    for server in pool.servers.iter().filter(|s| s.backup) {
        let (severity, why) = if kind == Kind::Nginx {
            (
                Severity::Error,
                "nginx refuses `backup` with hash, ip_hash and random: the config will not load (`nginx -t` fails).",
            )
        } else {
            (
                Severity::Warning,
                "When a server fails, its keys all move to the backup at once while the rest keep theirs: the backup takes a whole server's share cold.",
            )
        };
        findings.push(Finding {
            message: format!("backup server {} in hashed pool {}", server.name, pool.name),
            why: why.into(),
            fix: "Make it a normal member of the pool, or balance this pool without a hash.".into(),
            ..server_finding(pool, server, severity, "backup-in-hashed-pool")
        });
    }
}

fn unchecked(pool: &Pool, kind: Kind, findings: &mut Vec<Finding>) {
    for server in pool.servers.iter().filter(|s| !s.checked && !s.down) {
        let (message, fix) = if kind == Kind::Nginx {
            (
                format!("server {} has max_fails=0", server.name),
                "Remove `max_fails=0` (the default is 1 failure in `fail_timeout` 10s), or set a few failures.",
            )
        } else {
            (
                format!("server {} is not health-checked", server.name),
                "Add `check` to the server line (or `default-server check`).",
            )
        };
        findings.push(Finding {
            message,
            why: "A server that fails keeps its full share of requests: its errors become the pool's errors until someone notices.".into(),
            fix: fix.into(),
            ..server_finding(pool, server, Severity::Warning, "no-failure-detection")
        });
    }
}

fn duplicates(pool: &Pool, findings: &mut Vec<Finding>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for server in &pool.servers {
        let key = if server.address.is_empty() { &server.name } else { &server.address };
        if let Some(first) = seen.insert(key, server.line) {
            findings.push(Finding {
                server: Some(key.clone()),
                message: format!("{key} is listed twice in pool {} (lines {first} and {})", pool.name, server.line),
                why: "A server listed twice gets the sum of both weights: twice the traffic of its peers, which no one meant.".into(),
                fix: "Keep one line, with the weight you mean.".into(),
                ..server_finding(pool, server, Severity::Error, "duplicate-server")
            });
        }
    }
}

/// Findings where skewtail's expected weights (`[pool.NAME] weights`) disagree with the
/// balancer's: each skewtail pool against the balancer pool sharing most servers with it.
pub fn against(
    config: &BalancerConfig,
    expectations: &BTreeMap<String, PoolExpectation>,
    skewtail_config: &str,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (name, expectation) in expectations {
        let best = config
            .pools
            .iter()
            .map(|pool| {
                let keys: BTreeMap<String, f64> = pool
                    .servers
                    .iter()
                    .map(|s| (config.log_key(pool, s), s.expected_weight()))
                    .collect();
                let overlap = keys.keys().filter(|k| expectation.weights.contains_key(*k)).count();
                (overlap, pool, keys)
            })
            .max_by_key(|(overlap, _, _)| *overlap);
        let Some((overlap, pool, balancer)) = best else { continue };
        if overlap == 0 {
            continue;
        }
        let share = |weights: &BTreeMap<String, f64>, key: &str| {
            let total: f64 = weights.values().sum();
            if total > 0.0 { weights.get(key).copied().unwrap_or(0.0) / total } else { 0.0 }
        };
        let keys: std::collections::BTreeSet<&String> =
            balancer.keys().chain(expectation.weights.keys()).collect();
        for key in keys {
            let (expected, configured) = (share(&expectation.weights, key), share(&balancer, key));
            if (expected - configured).abs() < 0.01 {
                continue;
            }
            let server = pool.servers.iter().find(|s| config.log_key(pool, s) == *key);
            let at = match server {
                Some(server) => server_finding(pool, server, Severity::Warning, "weights-mismatch"),
                None => finding(pool, pool.line, Severity::Warning, "weights-mismatch"),
            };
            findings.push(Finding {
                server: Some(key.clone()),
                message: format!(
                    "{key}: skewtail's pool `{name}` ({skewtail_config}) expects {} of the traffic; balancer pool {} gives it {}",
                    percent(expected), pool.name, percent(configured)
                ),
                why: "skewtail judges the pool against its weights: when they drift from the balancer's, it pages for the balancer doing what it was told, or stays quiet when the balancer is wrong.".into(),
                fix: format!("Decide which is right; or let skewtail read the balancer's weights with `[pool.{name}] nginx_upstream`/`haproxy_backend`."),
                ..at
            });
        }
    }
    findings
}
