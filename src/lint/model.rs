//! What lint reads from a balancer config, whichever balancer wrote it: pools, how they pick a
//! server, and their servers.

use std::path::PathBuf;

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
    /// Its line in `file`.
    pub line: usize,
    /// The address (nginx) or the server name (HAProxy).
    pub name: String,
    /// The address it points to (HAProxy; the same as `name` for nginx).
    pub address: String,
    /// Its weight (default 1).
    pub weight: f64,
    /// Only used when the others are down.
    pub backup: bool,
    /// Marked down or disabled.
    pub down: bool,
    /// nginx `max_fails` (default 1; 0 disables failure accounting).
    pub max_fails: Option<u32>,
    /// HAProxy: whether it is health-checked (`check`); nginx: always passive checks.
    pub checked: bool,
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
    /// Its line of the method directive (the pool's line when it is the default).
    pub method_line: usize,
    /// Its servers, in order.
    pub servers: Vec<Server>,
}

impl Pool {
    /// The servers that take traffic in normal operation (not backup, not down, weight > 0).
    pub fn active(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().filter(|s| !s.backup && !s.down && s.weight > 0.0)
    }
}

/// A balancer's config as lint sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BalancerConfig {
    /// Which balancer: `nginx` or `haproxy`.
    pub kind: &'static str,
    /// Its pools.
    pub pools: Vec<Pool>,
    /// Whether the config takes the client address from a header or PROXY protocol
    /// (nginx `real_ip_header`/`set_real_ip_from`, HAProxy `accept-proxy`), so a
    /// client-address hash sees clients rather than the proxy in front.
    pub real_client_address: bool,
    /// Files read (the config and its includes).
    pub files: Vec<PathBuf>,
}
