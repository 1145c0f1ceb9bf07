//! Real balancers for the end-to-end tests: a real nginx started on 127.0.0.1 in a temporary
//! prefix, reloaded with new configs, and stopped gracefully (`nginx -s quit`), then checked
//! gone, its workers included; and paced real traffic through it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::{free_port, wait_for_port};

fn nginx_binary() -> &'static str {
    for candidate in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"] {
        if Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("nginx is not installed: run `apt-get install nginx-light` (.ci/run does)");
}

/// skewtail's built-in `upstream` log format, as nginx writes it.
pub const UPSTREAM_FORMAT: &str = r#"'$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status"'"#;

/// The pids of `parent`'s children, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                // Fields after the command name, which is in parentheses: state, ppid, ...
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

/// Whether a process is alive (a zombie awaiting its parent counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// A real nginx with an upstream of local servers (served by the same nginx).
pub struct Nginx {
    dir: PathBuf,
    master: Option<Child>,
    /// The port clients connect to.
    pub front: u16,
    /// The upstream servers' ports.
    pub backends: Vec<u16>,
    /// Whether this nginx also serves the upstream servers (else they are someone else's).
    serves_backends: bool,
    /// Extra parameters of every upstream `server` line (`max_fails=1 fail_timeout=2s`).
    server_parameters: &'static str,
}

impl Nginx {
    /// Starts nginx in `dir` balancing over servers that already listen on `backends` (shared
    /// with other balancers), logging to `dir/access.log` in the `upstream` format.
    pub fn start_over(dir: &Path, backends: &[u16], weights: &[u32]) -> Self {
        let nginx = Nginx {
            dir: dir.to_path_buf(),
            master: None,
            front: free_port(),
            backends: backends.to_vec(),
            serves_backends: false,
            server_parameters: "",
        };
        nginx.launch(weights)
    }

    /// As [`Nginx::start_over`], with `parameters` on every upstream `server` line.
    pub fn start_over_with(
        dir: &Path,
        backends: &[u16],
        weights: &[u32],
        parameters: &'static str,
    ) -> Self {
        let nginx = Nginx {
            dir: dir.to_path_buf(),
            master: None,
            front: free_port(),
            backends: backends.to_vec(),
            serves_backends: false,
            server_parameters: parameters,
        };
        nginx.launch(weights)
    }

    /// Starts nginx in `dir` balancing over `n_backends` servers with `weights` (1 each when
    /// empty), logging to `dir/access.log` in the `upstream` format.
    pub fn start(dir: &Path, n_backends: usize, weights: &[u32]) -> Self {
        let nginx = Nginx {
            dir: dir.to_path_buf(),
            master: None,
            front: free_port(),
            backends: (0..n_backends).map(|_| free_port()).collect(),
            serves_backends: true,
            server_parameters: "",
        };
        nginx.launch(weights)
    }

    fn launch(mut self, weights: &[u32]) -> Self {
        self.write_config(weights);
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.master = Some(child);
        let error_log = self.dir.join("error.log");
        wait_for_port(self.front, || std::fs::read_to_string(&error_log).unwrap_or_default());
        self
    }

    /// The upstream's backend names as nginx logs them.
    pub fn backend_names(&self) -> Vec<String> {
        self.backends.iter().map(|p| format!("127.0.0.1:{p}")).collect()
    }

    /// The access log.
    /// Its config file.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }

    pub fn access_log(&self) -> PathBuf {
        self.dir.join("access.log")
    }

    fn write_config(&self, weights: &[u32]) {
        let d = self.dir.display();
        let servers: String = self
            .backends
            .iter()
            .filter(|_| self.serves_backends)
            .map(|p| format!("  server {{ listen 127.0.0.1:{p}; access_log off; location / {{ return 200 \"ok {p}\\n\"; }} }}\n"))
            .collect();
        let upstream: String = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "    server 127.0.0.1:{p} weight={} {};\n",
                    weights.get(i).copied().unwrap_or(1),
                    self.server_parameters
                )
            })
            .collect();
        let config = format!(
            "worker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\nevents {{ worker_connections 512; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n  log_format upstream {UPSTREAM_FORMAT};\n  upstream api {{\n{upstream}    keepalive 16;\n  }}\n{servers}  server {{\n    listen 127.0.0.1:{};\n    access_log {d}/access.log upstream;\n    location / {{ proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n",
            self.front
        );
        std::fs::write(self.dir.join("nginx.conf"), config).unwrap();
    }

    /// Rewrites the config with new weights and reloads it (`nginx -s reload`), waiting for
    /// the old worker to hand over.
    pub fn reload(&self, weights: &[u32]) {
        let old_workers = self.master.as_ref().map(|m| children_of(m.id())).unwrap_or_default();
        self.write_config(weights);
        let status = Command::new(nginx_binary())
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .args(["-s", "reload"])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "nginx -s reload failed");
        let started = Instant::now();
        while old_workers.iter().any(|&pid| alive(pid)) {
            assert!(started.elapsed() < Duration::from_secs(10), "the old nginx worker lingers");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops nginx gracefully (`nginx -s quit`: workers finish and log their requests) and
    /// checks that the master and its workers are gone.
    pub fn stop(mut self) {
        self.quit();
    }

    fn quit(&mut self) {
        let Some(mut master) = self.master.take() else { return };
        let workers = children_of(master.id());
        let _ = Command::new(nginx_binary())
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .args(["-s", "quit"])
            .stderr(Stdio::null())
            .status();
        let started = Instant::now();
        while master.try_wait().ok().flatten().is_none() {
            if started.elapsed() > Duration::from_secs(10) {
                // It would not quit: kill it and its workers rather than leave them behind
                // (the master first, or it replaces each worker killed).
                let _ = master.kill();
                let _ = master.wait();
                for &pid in &workers {
                    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                }
                panic!("nginx did not quit within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let started = Instant::now();
        while workers.iter().any(|&pid| alive(pid)) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "an nginx worker outlived its master"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.quit();
        } else if let Some(mut master) = self.master.take() {
            // Already failing: stop everything without asserting more. The master first, or
            // it replaces each worker killed, and the replacement outlives it.
            let workers = children_of(master.id());
            let _ = master.kill();
            let _ = master.wait();
            for pid in workers {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

/// Real HTTP traffic at a steady rate from a few keep-alive clients, until stopped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    /// Starts `rate_per_s` requests a second to `port`, from 4 clients.
    pub fn start(port: u16, rate_per_s: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (stop_flag, sent_count) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let url = format!("http://127.0.0.1:{port}/api/orders");
                let clients: Vec<_> = (0..4)
                    .map(|_| {
                        let (url, stop, sent) =
                            (url.clone(), stop_flag.clone(), sent_count.clone());
                        tokio::spawn(async move {
                            let client = reqwest::Client::new();
                            let mut tick = tokio::time::interval(Duration::from_secs_f64(
                                4.0 / f64::from(rate_per_s),
                            ));
                            // At most an hour of traffic, whatever happens.
                            for _ in 0..(rate_per_s as usize * 3600) {
                                tick.tick().await;
                                if stop.load(Ordering::Relaxed) {
                                    break;
                                }
                                if client
                                    .get(&url)
                                    .send()
                                    .await
                                    .is_ok_and(|r| r.status().is_success())
                                {
                                    sent.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        })
                    })
                    .collect();
                for client in clients {
                    let _ = client.await;
                }
            });
        });
        Traffic { stop, sent, thread: Some(thread) }
    }

    /// Stops the traffic; returns how many requests succeeded.
    pub fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Local HTTP servers that a test stops and starts again on the same port, as a deploy
/// restarts application servers: each runs on a runtime of its own, so stopping it closes its
/// listener and every connection at once (the balancer's next attempt is refused).
pub struct Upstreams {
    /// The servers' ports.
    pub ports: Vec<u16>,
    running: Vec<Option<tokio::runtime::Runtime>>,
}

impl Upstreams {
    /// Starts `n` servers on free ports.
    pub fn start(n: usize) -> Self {
        let mut upstreams = Upstreams { ports: Vec::new(), running: Vec::new() };
        for _ in 0..n {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            upstreams.ports.push(listener.local_addr().unwrap().port());
            upstreams.running.push(Some(Self::serve(listener)));
        }
        upstreams
    }

    fn serve(listener: std::net::TcpListener) -> tokio::runtime::Runtime {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().fallback(|| async { "ok\n" });
            let _ = axum::serve(listener, app).await;
        });
        runtime
    }

    /// Stops server `i`: its listener and connections close.
    pub fn stop(&mut self, i: usize) {
        if let Some(runtime) = self.running[i].take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }

    /// Starts server `i` again on its port (retrying for at most 5 s while the port is
    /// released).
    pub fn restart(&mut self, i: usize) {
        let started = Instant::now();
        let listener = loop {
            match std::net::TcpListener::bind(("127.0.0.1", self.ports[i])) {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(started.elapsed() < Duration::from_secs(5), "cannot rebind: {error}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        self.running[i] = Some(Self::serve(listener));
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        for runtime in self.running.iter_mut().filter_map(Option::take) {
            runtime.shutdown_background();
        }
    }
}

fn haproxy_binary() -> &'static str {
    for candidate in ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"] {
        if Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("haproxy is not installed: run `apt-get install haproxy` (.ci/run does)");
}

/// A real HAProxy in front of four local HTTP servers (axum on the test's runtime), logging
/// `option httplog` lines to `dir/haproxy.log`; reloaded like its own init scripts do
/// (a new process with `-sf OLD`, which soft-stops the old one), stopped with SIGUSR1.
pub struct Haproxy {
    dir: PathBuf,
    process: Option<Child>,
    _servers: tokio::runtime::Runtime,
    /// The port clients connect to.
    pub front: u16,
    /// The servers' ports.
    pub backends: Vec<u16>,
}

impl Haproxy {
    /// Starts it with `weights` (1 each when empty) over `n_backends` servers.
    pub fn start(dir: &Path, n_backends: usize, weights: &[u32]) -> Self {
        let servers = tokio::runtime::Runtime::new().unwrap();
        let mut backends = Vec::new();
        for _ in 0..n_backends {
            let listener = servers.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
            backends.push(listener.local_addr().unwrap().port());
            let app = axum::Router::new().fallback(|| async { "ok\n" });
            servers.spawn(async move { axum::serve(listener, app).await.unwrap() });
        }
        let mut haproxy = Haproxy {
            dir: dir.to_path_buf(),
            process: None,
            _servers: servers,
            front: free_port(),
            backends,
        };
        haproxy.spawn(weights, None);
        let log = dir.join("haproxy.log");
        wait_for_port(haproxy.front, || std::fs::read_to_string(&log).unwrap_or_default());
        haproxy
    }

    /// The access log.
    /// Its config file.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("haproxy.cfg")
    }

    pub fn access_log(&self) -> PathBuf {
        self.dir.join("haproxy.log")
    }

    /// The servers as HAProxy logs them.
    pub fn backend_names(&self) -> Vec<String> {
        (1..=self.backends.len()).map(|i| format!("be_api/s{i}")).collect()
    }

    fn spawn(&mut self, weights: &[u32], old: Option<u32>) {
        let servers: String = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, port)| {
                format!(
                    "  server s{} 127.0.0.1:{port} weight {}\n",
                    i + 1,
                    weights.get(i).copied().unwrap_or(1)
                )
            })
            .collect();
        let config = format!(
            "global\n  log stdout format raw local0\n  maxconn 512\ndefaults\n  mode http\n  log global\n  option httplog\n  option dontlognull\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\nfrontend fe\n  bind 127.0.0.1:{}\n  default_backend be_api\nbackend be_api\n  balance roundrobin\n{servers}",
            self.front
        );
        let path = self.dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("haproxy.log"))
            .unwrap();
        let mut command = Command::new(haproxy_binary());
        command.arg("-db").arg("-f").arg(&path);
        if let Some(old) = old {
            command.arg("-sf").arg(old.to_string());
        }
        let child = command.stdout(log).stderr(Stdio::null()).spawn().unwrap();
        self.process = Some(child);
    }

    /// Reloads with new weights: a new process takes over the port and the old one finishes
    /// its requests and exits.
    pub fn reload(&mut self, weights: &[u32]) {
        let mut old = self.process.take().unwrap();
        self.spawn(weights, Some(old.id()));
        let started = Instant::now();
        while old.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(10), "the old haproxy lingers");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Soft-stops it (SIGUSR1: requests finish and are logged) and waits for it to exit.
    pub fn stop(mut self) {
        self.quit();
    }

    fn quit(&mut self) {
        let Some(mut child) = self.process.take() else { return };
        let _ = Command::new("kill").args(["-USR1", &child.id().to_string()]).status();
        let started = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("haproxy did not stop on SIGUSR1");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
