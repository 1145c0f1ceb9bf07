//! Reading an nginx config for lint: every `upstream` block (in the file and the files it
//! `include`s), its method and servers, and whether the client address comes from
//! `real_ip`.

use std::path::{Path, PathBuf};

use super::model::{BalancerConfig, Method, Pool, Server};
use crate::balancer_config::nginx_tokens;

/// Includes nested deeper than this are a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Balancer configs are small; this bounds a wrong path.
const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Reads `path` and what it includes.
pub fn read(path: &Path) -> Result<BalancerConfig, String> {
    let mut config = BalancerConfig { kind: "nginx", ..BalancerConfig::default() };
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    read_file(path, &base, 0, &mut config)?;
    Ok(config)
}

fn read_file(
    path: &Path,
    base: &Path,
    depth: usize,
    config: &mut BalancerConfig,
) -> Result<(), String> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(format!(
            "{}: includes nest deeper than {MAX_INCLUDE_DEPTH}: a loop?",
            path.display()
        ));
    }
    let text = crate::source::read_capped(path, MAX_CONFIG_BYTES)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    config.files.push(path.to_path_buf());
    let tokens = nginx_tokens(&text);
    let mut directive: Vec<(usize, &str)> = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        let (line, token) = tokens[at];
        at += 1;
        match token {
            "{" => {
                if let [(_, "upstream"), (_, name)] = directive.as_slice() {
                    let (pool, next) = upstream(path, line, name, &tokens, at)?;
                    config.pools.push(pool);
                    at = next;
                }
                directive.clear();
            }
            "}" => directive.clear(),
            ";" => {
                match directive.as_slice() {
                    [(_, "include"), (_, pattern)] => {
                        for file in expand(base, pattern) {
                            read_file(&file, base, depth + 1, config)?;
                        }
                    }
                    [(_, "real_ip_header" | "set_real_ip_from"), ..] => {
                        config.real_client_address = true;
                    }
                    _ => {}
                }
                directive.clear();
            }
            _ => directive.push((line, token)),
        }
    }
    Ok(())
}

/// The files an `include` names, sorted (nginx includes a glob's matches in order).
fn expand(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let pattern = pattern.trim_matches(['"', '\'']);
    let full =
        if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { base.join(pattern) };
    let mut files: Vec<PathBuf> = glob::glob(&full.to_string_lossy())
        .map(|paths| paths.filter_map(Result::ok).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Reads `upstream NAME { ... }` from the token after `{`; returns it and the token after
/// its `}`.
fn upstream(
    file: &Path,
    line: usize,
    name: &str,
    tokens: &[(usize, &str)],
    mut at: usize,
) -> Result<(Pool, usize), String> {
    let mut pool = Pool {
        file: file.to_path_buf(),
        line,
        name: name.to_string(),
        method: Method::Spread("round-robin".into()),
        method_line: line,
        servers: Vec::new(),
    };
    let mut directive: Vec<(usize, &str)> = Vec::new();
    while at < tokens.len() {
        let (_, token) = tokens[at];
        at += 1;
        match token {
            "}" => return Ok((pool, at)),
            ";" => {
                if let Some((&(line, keyword), args)) = directive.split_first() {
                    let words: Vec<&str> = args.iter().map(|a| a.1).collect();
                    match keyword {
                        "server" => pool.servers.push(server(line, &words)),
                        "hash" => {
                            pool.method = Method::Hash {
                                key: words.first().copied().unwrap_or_default().to_string(),
                                consistent: words.contains(&"consistent"),
                            };
                            pool.method_line = line;
                        }
                        "ip_hash" => {
                            pool.method = Method::ClientAddress {
                                first_three_octets: true,
                                consistent: false,
                            };
                            pool.method_line = line;
                        }
                        "least_conn" | "random" | "least_time" => {
                            pool.method = Method::Spread(keyword.to_string());
                            pool.method_line = line;
                        }
                        _ => {}
                    }
                }
                directive.clear();
            }
            _ => directive.push(tokens[at - 1]),
        }
    }
    Err(format!("{}:{line}: `upstream {name}` is never closed with `}}`", file.display()))
}

fn server(line: usize, words: &[&str]) -> Server {
    let address = words.first().copied().unwrap_or_default().to_string();
    let mut server = Server {
        line,
        name: address.clone(),
        address,
        weight: 1.0,
        backup: false,
        down: false,
        max_fails: None,
        // nginx counts failures of real requests (passive checks) unless max_fails=0.
        checked: true,
    };
    for word in &words[1.min(words.len())..] {
        match word.split_once('=') {
            Some(("weight", value)) => server.weight = value.parse().unwrap_or(1.0),
            Some(("max_fails", value)) => server.max_fails = value.parse().ok(),
            None if *word == "backup" => server.backup = true,
            None if *word == "down" => server.down = true,
            _ => {}
        }
    }
    if server.max_fails == Some(0) {
        server.checked = false;
    }
    server
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_methods_servers_and_includes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(
            dir.path().join("conf.d/api.conf"),
            "upstream api {\n  hash $request_uri;\n  server 10.0.0.1:80 weight=10;\n  server 10.0.0.2:80 max_fails=0;\n  server 10.0.0.3:80 backup;\n}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("nginx.conf"),
            "http {\n  set_real_ip_from 10.0.0.0/8;\n  include conf.d/*.conf;\n  upstream web { ip_hash; server 10.1.0.1; }\n}\n",
        )
        .unwrap();
        let config = read(&dir.path().join("nginx.conf")).unwrap();
        assert!(config.real_client_address);
        assert_eq!(config.files.len(), 2);
        let api = &config.pools[0];
        assert_eq!((api.name.as_str(), api.line, api.method_line), ("api", 1, 2));
        assert_eq!(api.method, Method::Hash { key: "$request_uri".into(), consistent: false });
        assert_eq!(api.servers[0].weight, 10.0);
        assert!(!api.servers[1].checked);
        assert!(api.servers[2].backup);
        let web = &config.pools[1];
        assert!(matches!(web.method, Method::ClientAddress { .. }));
        assert_eq!(web.servers[0].line, 4);
    }

    #[test]
    fn an_unclosed_upstream_is_an_error_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nginx.conf"), "http {\n upstream api {\n server a;\n")
            .unwrap();
        let error = read(&dir.path().join("nginx.conf")).unwrap_err();
        assert!(error.contains("nginx.conf:2: `upstream api` is never closed"), "{error}");
    }
}
