//! Reading a HAProxy config for lint: every `backend` and `listen` section, its `balance` and
//! `hash-type` (inherited from the `defaults` before it), and its servers.

use std::path::Path;

use super::model::{BalancerConfig, Method, Pool, Server};
use crate::balancer_config::HAPROXY_SECTIONS;

/// What a `defaults` section gives the sections after it.
#[derive(Debug, Clone, Default)]
struct Defaults {
    balance: Option<(usize, Vec<String>)>,
    consistent: bool,
}

/// Settings of the section being read.
#[derive(Debug, Default)]
struct Section {
    pool: Option<Pool>,
    balance: Option<(usize, Vec<String>)>,
    consistent: Option<bool>,
    default_weight: f64,
    default_checked: bool,
}

/// Reads `path`.
pub fn read(path: &Path) -> Result<BalancerConfig, String> {
    let text = crate::source::read_capped(path, 64 << 20)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut config = BalancerConfig {
        kind: "haproxy",
        files: vec![path.to_path_buf()],
        ..BalancerConfig::default()
    };
    let mut defaults = Defaults::default();
    let mut in_defaults = false;
    let mut section = Section::default();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let words: Vec<&str> =
            line.split('#').next().unwrap_or_default().split_whitespace().collect();
        let Some((&keyword, args)) = words.split_first() else { continue };
        if HAPROXY_SECTIONS.contains(&keyword) {
            finish(&mut section, &defaults, &mut config);
            in_defaults = keyword == "defaults";
            if matches!(keyword, "backend" | "listen") {
                section.pool = Some(Pool {
                    file: path.to_path_buf(),
                    line: line_no,
                    name: args.first().copied().unwrap_or_default().to_string(),
                    method: Method::Spread("roundrobin".into()),
                    method_line: line_no,
                    servers: Vec::new(),
                });
                section.default_weight = 1.0;
            }
            continue;
        }
        if args.contains(&"accept-proxy")
            || keyword == "tcp-request" && args.contains(&"expect-proxy")
        {
            config.real_client_address = true;
        }
        let owned = || args.iter().map(|a| (*a).to_string()).collect::<Vec<_>>();
        match keyword {
            "balance" if in_defaults => defaults.balance = Some((line_no, owned())),
            "balance" => section.balance = Some((line_no, owned())),
            "hash-type" => {
                let consistent = args.first() == Some(&"consistent");
                if in_defaults {
                    defaults.consistent = consistent;
                } else {
                    section.consistent = Some(consistent);
                }
            }
            "default-server" if section.pool.is_some() => {
                if let Some(weight) = weight_of(args) {
                    section.default_weight = weight;
                }
                section.default_checked |= args.contains(&"check");
            }
            "server" => {
                if let Some(pool) = &mut section.pool {
                    pool.servers.push(Server {
                        line: line_no,
                        name: args.first().copied().unwrap_or_default().to_string(),
                        address: args.get(1).copied().unwrap_or_default().to_string(),
                        weight: weight_of(args).unwrap_or(section.default_weight),
                        backup: args.contains(&"backup"),
                        down: args.contains(&"disabled"),
                        max_fails: None,
                        checked: section.default_checked || args.contains(&"check"),
                    });
                }
            }
            _ => {}
        }
    }
    finish(&mut section, &defaults, &mut config);
    Ok(config)
}

fn weight_of(args: &[&str]) -> Option<f64> {
    let at = args.iter().position(|a| *a == "weight")?;
    args.get(at + 1)?.parse().ok()
}

/// Closes the section being read: its method from its own `balance` or the defaults'.
fn finish(section: &mut Section, defaults: &Defaults, config: &mut BalancerConfig) {
    let Some(mut pool) = section.pool.take() else {
        *section = Section::default();
        return;
    };
    let consistent = section.consistent.unwrap_or(defaults.consistent);
    if let Some((line, words)) = section.balance.take().or_else(|| defaults.balance.clone()) {
        pool.method_line = line;
        let algorithm = words.first().cloned().unwrap_or_default();
        pool.method = match algorithm.split('(').next().unwrap_or_default() {
            "source" => Method::ClientAddress { first_three_octets: false, consistent },
            "uri" | "url_param" | "hdr" | "rdp-cookie" => {
                Method::Hash { key: algorithm, consistent }
            }
            _ => Method::Spread(algorithm),
        };
    }
    config.pools.push(pool);
    *section = Section::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_inherit_balance_and_read_servers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(
            &path,
            "defaults\n  mode http\n  balance source\nfrontend fe\n  bind :80 accept-proxy\n  default_backend be_api\nbackend be_api\n  default-server check\n  server s1 10.0.0.1:80 weight 10\n  server s2 10.0.0.2:80\nbackend be_web\n  balance uri\n  hash-type consistent\n  server w1 10.1.0.1:80 backup\n",
        )
        .unwrap();
        let config = read(&path).unwrap();
        assert!(config.real_client_address);
        let api = &config.pools[0];
        assert_eq!(api.name, "be_api");
        assert_eq!(
            api.method,
            Method::ClientAddress { first_three_octets: false, consistent: false }
        );
        assert_eq!(api.method_line, 3);
        assert_eq!((api.servers[0].weight, api.servers[0].checked), (10.0, true));
        let web = &config.pools[1];
        assert_eq!(web.method, Method::Hash { key: "uri".into(), consistent: true });
        assert!(web.servers[0].backup && !web.servers[0].checked);
    }
}
