//! Logs in object storage: an ALB log tree uploaded to a real S3-compatible server (moto's,
//! from PyPI, started on 127.0.0.1) and replayed as `s3://bucket/prefix/`: the same NDJSON as
//! the same files on disk, `--since` picking objects by their names, and a clear error for a
//! bucket that is not there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use object_store::ObjectStoreExt;
use skewtail::synth::{LogStyle, Scenario};

use crate::util::*;

/// A moto S3 server on a free loopback port, stopped when dropped.
struct S3Server {
    _process: KillOnDrop,
    port: u16,
    log: PathBuf,
}

impl S3Server {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let log = dir.join("moto.log");
        let process = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(std::fs::File::create(dir.join("moto.err")).unwrap()))
            .spawn()
            .expect(
                "moto_server (pip install 'moto[server]') is needed for the object storage tests",
            );
        let server = S3Server { _process: KillOnDrop(process), port, log };
        wait_for_port(port, || std::fs::read_to_string(dir.join("moto.err")).unwrap_or_default());
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a replay takes its credentials and endpoint from, as in production.
    fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// Creates `bucket` (a plain S3 `PUT /bucket`) and uploads every file under `tree`, keyed
    /// `prefix/<path below tree>`.
    fn upload(&self, bucket: &str, prefix: &str, tree: &Path) {
        use std::io::{Read, Write};
        let mut http = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            http,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut answer = String::new();
        http.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .unwrap();
        let store = Arc::new(store);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut files = Vec::new();
        collect_files(tree, &mut files);
        runtime.block_on(async {
            for file in files {
                let key = format!("{prefix}/{}", file.strip_prefix(tree).unwrap().display());
                let bytes = std::fs::read(&file).unwrap();
                store.put(&object_store::path::Path::from(key), bytes.into()).await.unwrap();
            }
        });
    }

    fn replay(&self, args: &[&str]) -> std::process::Output {
        let mut command = skewtail();
        command.args(["replay", "--json", "--pool", "api"]).args(args);
        for (key, value) in self.environment() {
            command.env(key, value);
        }
        command.output().unwrap()
    }
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

#[test]
fn an_alb_tree_in_s3_replays_as_the_same_files_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path());
    let scenario = Scenario { style: LogStyle::AwsAlb, rate_per_s: 20.0, ..skew_scenario() };
    let (whole, n_lines) = write_log(dir.path(), "whole.log", &scenario);
    let (tree, files) = crate::trees::alb_tree(dir.path(), &whole, 3);
    std::fs::remove_file(&whole).unwrap();
    server.upload("elb-logs", "AWSLogs", &tree);

    let on_disk =
        skewtail().args(["replay", "--json", "--pool", "api"]).arg(&tree).output().unwrap();
    assert!(on_disk.status.success(), "{}", stderr(&on_disk));
    let in_s3 = server.replay(&["s3://elb-logs/AWSLogs/"]);
    assert!(
        in_s3.status.success(),
        "{}\n{:?}",
        stderr(&in_s3),
        std::fs::read_to_string(&server.log)
    );
    let objects = ndjson(&in_s3);
    assert_eq!(summary(&objects)["lines"], n_lines);
    assert!(!of_type(&objects, "alert").is_empty());
    assert_eq!(
        String::from_utf8_lossy(&in_s3.stdout),
        String::from_utf8_lossy(&on_disk.stdout),
        "the same NDJSON from S3 as from disk ({} files)",
        files.len()
    );

    // --since picks objects by their names: the same as on disk, and fewer lines.
    let since = ["--since", "2023-11-15T14:20:00Z"];
    let disk_since = skewtail()
        .args(["replay", "--json", "--pool", "api"])
        .args(since)
        .arg(&tree)
        .output()
        .unwrap();
    let s3_since = server.replay(&[since[0], since[1], "s3://elb-logs/AWSLogs"]);
    assert!(s3_since.status.success(), "{}", stderr(&s3_since));
    assert_eq!(s3_since.stdout, disk_since.stdout);
    assert!(summary(&ndjson(&s3_since))["lines"].as_u64().unwrap() < n_lines * 3 / 4);

    // A bucket that is not there: a clear error naming it, exit 2.
    let missing = server.replay(&["s3://no-such-bucket/AWSLogs/"]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    let error = stderr(&missing);
    assert!(error.contains("s3://no-such-bucket/AWSLogs: cannot list the objects"), "{error}");
    assert!(error.contains("NoSuchBucket"), "{error}");
}
