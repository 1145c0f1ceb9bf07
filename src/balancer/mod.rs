//! The balancer's own config, read once by one set of rules: nginx (`upstream` blocks, with
//! `include` followed wherever it appears) and HAProxy (`backend`/`listen` sections, with what
//! their `defaults` give them). `lint` judges what is read here, the config loader imports a
//! pool's weights from it ([`BalancerConfig::expectation`]), and `rehearse` takes its expected
//! split from it: a weight that lint calls bad is one the weight import refuses, never a
//! weight read as 1 in one place and an error in another.
//!
//! Which balancer wrote a file is recognised by its structure ([`recognise`]), never by one
//! keyword: nginx is `;`-terminated directives in balanced `{}` blocks, HAProxy is lines under
//! section headers. An nginx `server { listen 80; }` is not a HAProxy `listen` section.

mod haproxy;
mod nginx;
mod weights;

use std::path::{Path, PathBuf};

/// Balancer configs are small; this bounds a wrong path (a log given as the config).
const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Which balancer's config language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// nginx (`upstream NAME { server ADDRESS ...; }`).
    Nginx,
    /// HAProxy (`backend NAME` / `listen NAME` with `server NAME ADDRESS ...`).
    Haproxy,
}

impl Kind {
    /// The word used in output.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }
}

/// A balancer config that could not be read: the file, the line and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", location(path, *line))]
pub struct BalancerError {
    /// The balancer's config file.
    pub path: PathBuf,
    /// 1-based line (0 when the problem is the whole file).
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn location(path: &Path, line: usize) -> String {
    if line == 0 { path.display().to_string() } else { format!("{}:{line}", path.display()) }
}

/// How a pool picks a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// Weighted round robin (both balancers' default), least connections, random, first...
    Spread(String),
    /// A hash of a key: nginx `hash KEY [consistent]`, HAProxy `balance uri|hdr|url_param`.
    Hash {
        /// What is hashed.
        key: String,
        /// Whether servers joining or leaving move only their own keys.
        consistent: bool,
    },
    /// A hash of the client address: nginx `ip_hash`, HAProxy `balance source`.
    ClientAddress {
        /// nginx `ip_hash` hashes only the first three octets of an IPv4 address.
        first_three_octets: bool,
        /// Whether servers joining or leaving move only their own clients.
        consistent: bool,
    },
}

impl Method {
    /// Whether requests are placed by a hash (a key always lands on the same server).
    pub fn is_hashed(&self) -> bool {
        !matches!(self, Method::Spread(_))
    }
}

/// One server line.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// The file its line is in (an `include` inside an `upstream` puts it elsewhere).
    pub file: PathBuf,
    /// Its line in `file`.
    pub line: usize,
    /// The address (nginx) or the server name (HAProxy).
    pub name: String,
    /// The address it points to (the same as `name` for nginx).
    pub address: String,
    /// Its weight (default 1; the `defaults`' or `default-server`'s for HAProxy).
    pub weight: f64,
    /// Only used when the others are down.
    pub backup: bool,
    /// Marked down or disabled.
    pub down: bool,
    /// nginx `max_fails` (default 1; 0 disables failure accounting).
    pub max_fails: Option<u32>,
    /// HAProxy: whether it is health-checked (`check`); nginx: passive checks unless
    /// `max_fails=0`.
    pub checked: bool,
    /// Its slow start, whole seconds (HAProxy `slowstart`, nginx Plus `slow_start=`).
    pub slow_start_s: Option<u32>,
}

impl Server {
    /// The weight it is expected to take traffic with: none when it is a backup or down.
    pub fn expected_weight(&self) -> f64 {
        if self.backup || self.down { 0.0 } else { self.weight }
    }
}

/// A parameter the balancer itself would refuse (`weight=x`, `slowstart soon`): kept with
/// its line so lint reports it and the weight import refuses the pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The file.
    pub file: PathBuf,
    /// Its line.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// One pool: an nginx `upstream` or a HAProxy `backend`/`listen`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// The file it is in.
    pub file: PathBuf,
    /// Its line.
    pub line: usize,
    /// Its name.
    pub name: String,
    /// How it picks a server.
    pub method: Method,
    /// The line of its method directive (the pool's line when it is the default).
    pub method_line: usize,
    /// Its servers, in order.
    pub servers: Vec<Server>,
    /// Parameters the balancer would refuse.
    pub invalid: Vec<Invalid>,
}

impl Pool {
    fn new(file: &Path, line: usize, name: &str, method: &str) -> Self {
        Pool {
            file: file.to_path_buf(),
            line,
            name: name.to_string(),
            method: Method::Spread(method.to_string()),
            method_line: line,
            servers: Vec::new(),
            invalid: Vec::new(),
        }
    }

    /// The servers that take traffic in normal operation (not backup, not down, weight > 0).
    pub fn active(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().filter(|s| s.expected_weight() > 0.0)
    }
}

/// A balancer's config: its pools, whichever balancer wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerConfig {
    /// Which balancer.
    pub kind: Kind,
    /// Its pools.
    pub pools: Vec<Pool>,
    /// Whether the config takes the client address from a header or PROXY protocol
    /// (nginx `real_ip_header`/`set_real_ip_from`, HAProxy `accept-proxy`), so a
    /// client-address hash sees clients rather than the proxy in front.
    pub real_client_address: bool,
    /// Files read (the config and its includes): a change to any of them is a change.
    pub files: Vec<PathBuf>,
}

impl BalancerConfig {
    fn empty(kind: Kind) -> Self {
        BalancerConfig { kind, pools: Vec::new(), real_client_address: false, files: Vec::new() }
    }
}

/// Reads `path` (and what it includes) as `kind`, or as what its structure says it is.
pub fn read(path: &Path, kind: Option<Kind>) -> Result<BalancerConfig, BalancerError> {
    let kind = match kind {
        Some(kind) => kind,
        None => {
            let text = read_text(path)?;
            recognise(&text).map_err(|message| BalancerError {
                path: path.to_path_buf(),
                line: 0,
                message: message.to_string(),
            })?
        }
    };
    match kind {
        Kind::Nginx => nginx::read(path),
        Kind::Haproxy => haproxy::read(path),
    }
}

/// Which balancer wrote `text`, from its structure; the error says why neither fits.
pub fn recognise(text: &str) -> Result<Kind, KindUnclear> {
    match (nginx::is_well_formed(text), haproxy::is_well_formed(text)) {
        (true, false) => Ok(Kind::Nginx),
        (false, true) => Ok(Kind::Haproxy),
        (true, true) => Err(KindUnclear::Both),
        (false, false) => Err(KindUnclear::Neither),
    }
}

/// Why a config's kind could not be told from its structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KindUnclear {
    /// It is well-formed as either.
    #[error("reads as both an nginx and a HAProxy config; give --kind")]
    Both,
    /// It is well-formed as neither.
    #[error(
        "neither an nginx config (`;`-terminated directives in balanced `{{}}` blocks) nor a HAProxy one (lines under `global`/`defaults`/`backend`/... headers); give --kind nginx or --kind haproxy"
    )]
    Neither,
}

fn read_text(path: &Path) -> Result<String, BalancerError> {
    crate::source::read_capped(path, MAX_CONFIG_BYTES).map_err(|e| BalancerError {
        path: path.to_path_buf(),
        line: 0,
        message: format!("cannot read the balancer config: {e}"),
    })
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
    u32::try_from(number.checked_mul(unit_ms)?.div_ceil(1000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognised_by_structure_not_by_a_keyword() {
        // An ordinary nginx config: a server block's `listen 80;` is not a HAProxy section.
        let nginx = "user nginx;\nevents {}\nhttp {\n  upstream api {\n    server 10.0.0.1:80 weight=10;\n  }\n  server {\n    listen 80;\n    location / { proxy_pass http://api; }\n  }\n}\n";
        assert_eq!(recognise(nginx), Ok(Kind::Nginx));
        // A conf.d snippet.
        assert_eq!(recognise("server {\n listen 8080;\n}\n"), Ok(Kind::Nginx));
        // HAProxy, anonymous ACL braces and all.
        let haproxy = "global\n  maxconn 100\ndefaults\n  mode http\nlisten web\n  bind :80\n  http-request deny if { path_beg /admin }\n  server s1 10.0.0.1:80 weight 10\n";
        assert_eq!(recognise(haproxy), Ok(Kind::Haproxy));
        assert_eq!(recognise("just some words\n"), Err(KindUnclear::Neither));
        assert!(KindUnclear::Neither.to_string().contains("--kind"));
        assert!(recognise("").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time_s("1500", 1), Some(2), "HAProxy's bare milliseconds, rounded up");
        assert_eq!(parse_time_s("30s", 1000), Some(30));
        assert_eq!(parse_time_s("2m", 1), Some(120));
        assert_eq!(parse_time_s("soon", 1), None);
        assert_eq!(parse_time_s("99999999999999999999h", 1), None);
    }
}
