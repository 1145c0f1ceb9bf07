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
}

impl Nginx {
    /// Starts nginx in `dir` balancing over `n_backends` servers with `weights` (1 each when
    /// empty), logging to `dir/access.log` in the `upstream` format.
    pub fn start(dir: &Path, n_backends: usize, weights: &[u32]) -> Self {
        let mut nginx = Nginx {
            dir: dir.to_path_buf(),
            master: None,
            front: free_port(),
            backends: (0..n_backends).map(|_| free_port()).collect(),
        };
        nginx.write_config(weights);
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        nginx.master = Some(child);
        let error_log = dir.join("error.log");
        wait_for_port(nginx.front, || std::fs::read_to_string(&error_log).unwrap_or_default());
        nginx
    }

    /// The upstream's backend names as nginx logs them.
    pub fn backend_names(&self) -> Vec<String> {
        self.backends.iter().map(|p| format!("127.0.0.1:{p}")).collect()
    }

    /// The access log.
    pub fn access_log(&self) -> PathBuf {
        self.dir.join("access.log")
    }

    fn write_config(&self, weights: &[u32]) {
        let d = self.dir.display();
        let servers: String = self
            .backends
            .iter()
            .map(|p| format!("  server {{ listen 127.0.0.1:{p}; access_log off; location / {{ return 200 \"ok {p}\\n\"; }} }}\n"))
            .collect();
        let upstream: String = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "    server 127.0.0.1:{p} weight={};\n",
                    weights.get(i).copied().unwrap_or(1)
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
                // It would not quit: kill it and its workers rather than leave them behind.
                for &pid in &workers {
                    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                }
                let _ = master.kill();
                let _ = master.wait();
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
            // Already failing: stop everything without asserting more.
            for pid in children_of(master.id()) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
            let _ = master.kill();
            let _ = master.wait();
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
