//! HAProxy: every `backend` and `listen` section, with what it inherits from its `defaults`
//! (the last one before it, or the named one in `backend NAME from DEFAULTS`): `balance`,
//! `hash-type`, and the `default-server` parameters its servers start from.

use std::collections::HashMap;
use std::path::Path;

use super::{BalancerConfig, BalancerError, Invalid, Kind, Method, Pool, Server, parse_time_s};

/// HAProxy sections: each header ends the section before it.
const SECTIONS: &[&str] = &[
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
    "crt-store",
    "traces",
];

/// The parameters a `server` starts from (`default-server`).
#[derive(Debug, Clone, Default)]
struct ServerDefaults {
    weight: Option<f64>,
    checked: bool,
    slow_start_s: Option<u32>,
}

/// What a section has set, starting from what its `defaults` set.
#[derive(Debug, Clone, Default)]
struct Settings {
    balance: Option<(usize, Vec<String>)>,
    consistent: Option<bool>,
    server: ServerDefaults,
    /// Parameters HAProxy would refuse, in this section or the defaults it inherits.
    invalid: Vec<Invalid>,
}

/// The section being read.
enum Section {
    /// `defaults [NAME]`.
    Defaults(Option<String>),
    /// `backend NAME` or `listen NAME`.
    Pool(Pool),
    /// Any other: nothing in it is read, except the PROXY protocol.
    Other,
}

/// A line's words, comment dropped.
fn words(line: &str) -> Vec<&str> {
    line.split('#').next().unwrap_or_default().split_whitespace().collect()
}

/// Whether `text` has HAProxy's shape: its first statement is a section header, and no line
/// ends like an nginx directive (`;`, `{`).
pub(super) fn is_well_formed(text: &str) -> bool {
    let mut statements = text.lines().map(words).filter(|w| !w.is_empty()).peekable();
    let starts_with_section = statements.peek().is_some_and(|w| SECTIONS.contains(&w[0]));
    starts_with_section
        && statements.all(|w| !w.last().is_some_and(|last| last.ends_with([';', '{'])))
}

/// Reads `path`.
pub(super) fn read(path: &Path) -> Result<BalancerConfig, BalancerError> {
    let text = super::read_text(path)?;
    let mut config = BalancerConfig::empty(Kind::Haproxy);
    config.files.push(path.to_path_buf());
    let mut named_defaults: HashMap<String, Settings> = HashMap::new();
    let mut last_defaults = Settings::default();
    let mut section = Section::Other;
    let mut settings = Settings::default();
    for (index, text_line) in text.lines().enumerate() {
        let line = index + 1;
        let words = words(text_line);
        let Some((&keyword, args)) = words.split_first() else { continue };
        if SECTIONS.contains(&keyword) {
            let ended = std::mem::replace(&mut section, Section::Other);
            let ended_settings = std::mem::take(&mut settings);
            match ended {
                Section::Defaults(name) => {
                    if let Some(name) = name {
                        named_defaults.insert(name, ended_settings.clone());
                    }
                    last_defaults = ended_settings;
                }
                Section::Pool(pool) => config.pools.push(finish(pool, ended_settings)),
                Section::Other => {}
            }
            (section, settings) = match (keyword, args) {
                // Each `defaults` starts from HAProxy's own defaults.
                ("defaults", _) => {
                    (Section::Defaults(args.first().map(|n| n.to_string())), Settings::default())
                }
                ("backend" | "listen", [name, rest @ ..]) => {
                    let inherited = match rest {
                        ["from", parent, ..] => named_defaults.get(*parent).cloned(),
                        _ => None,
                    };
                    let pool = Pool::new(path, line, name, "roundrobin");
                    (Section::Pool(pool), inherited.unwrap_or_else(|| last_defaults.clone()))
                }
                _ => (Section::Other, Settings::default()),
            };
            continue;
        }
        if args.contains(&"accept-proxy")
            || keyword == "tcp-request" && args.contains(&"expect-proxy")
        {
            config.real_client_address = true;
        }
        if matches!(section, Section::Other) {
            continue;
        }
        match keyword {
            "balance" => {
                settings.balance = Some((line, args.iter().map(|a| a.to_string()).collect()));
            }
            "hash-type" => settings.consistent = Some(args.first() == Some(&"consistent")),
            "default-server" => {
                let own = parameters(path, line, args, &mut settings.invalid);
                let server = &mut settings.server;
                server.weight = own.weight.or(server.weight);
                server.slow_start_s = own.slow_start_s.or(server.slow_start_s);
                server.checked |= own.checked;
            }
            "server" => {
                let Section::Pool(pool) = &mut section else { continue };
                let own = parameters(path, line, args, &mut settings.invalid);
                let inherited = &settings.server;
                pool.servers.push(Server {
                    file: path.to_path_buf(),
                    line,
                    name: args.first().copied().unwrap_or_default().to_string(),
                    address: args.get(1).copied().unwrap_or_default().to_string(),
                    weight: own.weight.or(inherited.weight).unwrap_or(1.0),
                    backup: args.contains(&"backup"),
                    down: args.contains(&"disabled"),
                    max_fails: None,
                    checked: inherited.checked || own.checked,
                    slow_start_s: own.slow_start_s.or(inherited.slow_start_s),
                });
            }
            _ => {}
        }
    }
    if let Section::Pool(pool) = section {
        config.pools.push(finish(pool, settings));
    }
    Ok(config)
}

/// `weight N`, `slowstart T` and `check` on a `server` or `default-server` line; a value
/// HAProxy would refuse is kept in `invalid`.
fn parameters(
    path: &Path,
    line: usize,
    args: &[&str],
    invalid: &mut Vec<Invalid>,
) -> ServerDefaults {
    let value_after = |keyword: &str| {
        args.iter().position(|a| *a == keyword).map(|at| args.get(at + 1).copied().unwrap_or(""))
    };
    let mut refuse = |message: String| {
        invalid.push(Invalid { file: path.to_path_buf(), line, message });
    };
    let weight = value_after("weight").and_then(|value| {
        let weight = value.parse::<f64>().ok().filter(|w| (0.0..=256.0).contains(w));
        if weight.is_none() {
            refuse(format!("`weight {value}` is not a number from 0 to 256; HAProxy refuses it"));
        }
        weight
    });
    // HAProxy times without a unit are milliseconds.
    let slow_start_s = value_after("slowstart").and_then(|value| {
        let seconds = parse_time_s(value, 1);
        if seconds.is_none() {
            refuse(format!("`slowstart {value}` is not a time like 30s or 2m"));
        }
        seconds
    });
    ServerDefaults { weight, checked: args.contains(&"check"), slow_start_s }
}

/// A pool at the end of its section: its method from its own `balance` or its defaults'.
fn finish(mut pool: Pool, settings: Settings) -> Pool {
    let consistent = settings.consistent.unwrap_or(false);
    if let Some((line, words)) = settings.balance {
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
    pool.invalid = settings.invalid;
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> BalancerConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, text).unwrap();
        read(&path).unwrap()
    }

    #[test]
    fn backends_inherit_balance_and_read_servers() {
        let config = read_text(
            "defaults\n  mode http\n  balance source\nfrontend fe\n  bind :80 accept-proxy\n  default_backend be_api\nbackend be_api\n  default-server check\n  server s1 10.0.0.1:80 weight 10\n  server s2 10.0.0.2:80\nbackend be_web\n  balance uri\n  hash-type consistent\n  server w1 10.1.0.1:80 backup\n",
        );
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

    #[test]
    fn default_server_in_defaults_and_named_defaults() {
        let config = read_text(
            "defaults base\n  default-server weight 4 slowstart 30s check\ndefaults\n  mode tcp\nbackend plain\n  server a 10.0.0.1:80\nbackend from_base from base\n  default-server weight 2\n  server b 10.0.0.2:80\n  server c 10.0.0.3:80 weight 9\n",
        );
        let plain = &config.pools[0].servers[0];
        assert_eq!((plain.weight, plain.checked, plain.slow_start_s), (1.0, false, None));
        let servers = &config.pools[1].servers;
        assert_eq!(
            (servers[0].weight, servers[0].checked, servers[0].slow_start_s),
            (2.0, true, Some(30))
        );
        assert_eq!(servers[1].weight, 9.0);
    }

    #[test]
    fn bad_parameters_are_kept_with_their_line() {
        let config = read_text(
            "defaults\n  default-server slowstart soon\nbackend be\n  server a 1.1.1.1:80 weight nine\n",
        );
        let lines: Vec<usize> = config.pools[0].invalid.iter().map(|i| i.line).collect();
        assert_eq!(lines, [2, 4]);
        assert!(config.pools[0].invalid[1].message.contains("weight nine"));
    }
}
