//! Logs in object storage, read once for a replay: `s3://bucket/prefix/`, `gs://bucket/prefix/`
//! and `az://container/prefix/` (with `abfs://` and the `https://` forms `object_store` knows).
//!
//! Credentials are taken the way each cloud's own tools take them, by `object_store`'s
//! builders: the environment (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, `AWS_ENDPOINT_URL`, …;
//! `GOOGLE_SERVICE_ACCOUNT`, …; `AZURE_STORAGE_ACCOUNT_NAME`, …), a web identity or container
//! role, and the instance's metadata service. An AWS profile (`AWS_PROFILE` and
//! `~/.aws/credentials`) is read here, since `object_store` does not.
//!
//! An object is read in ranged requests of [`CHUNK_BYTES`], the next one fetched while the one
//! before is parsed, so memory stays bounded whatever the object's size and nothing is
//! downloaded to disk. The store is asked on a runtime of its own; readers are plain threads
//! that wait on it.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};

use super::error::{Result, SourceError};

/// Where a replay's files are: on disk, or in one object store tree.
#[derive(Debug, Clone, Default)]
pub enum Place {
    /// Paths on this machine.
    #[default]
    Disk,
    /// Objects of one tree, named `<url>/<rest of key>`.
    Objects(Arc<ObjectTree>),
}

impl Place {
    /// A file's bytes as stored (compressed or not) from its start; with `head`, only about
    /// its first [`HEAD_BYTES`] (enough to recognise its format or find its first time).
    pub fn open(&self, path: &Path, head: bool) -> Result<Box<dyn Read + Send>> {
        match self {
            Place::Objects(tree) if tree.holds(path) => {
                Ok(Box::new(tree.reader(path, if head { HEAD_BYTES } else { u64::MAX })))
            }
            _ => Ok(Box::new(super::open_for_replay(path)?)),
        }
    }
}

/// Bytes asked for in one request: large enough that request latency is small beside the
/// parsing of what it brings.
pub const CHUNK_BYTES: u64 = 8 << 20;

/// Bytes read from the start of an object to recognise its format or find its first time.
pub const HEAD_BYTES: u64 = 1 << 20;

/// Whether an argument names object storage rather than a path on disk.
pub fn is_object_url(text: &str) -> bool {
    ["s3://", "s3a://", "gs://", "az://", "adl://", "azure://", "abfs://", "abfss://"]
        .iter()
        .any(|scheme| text.starts_with(scheme))
}

/// One bucket (or container) and the prefix under it that a replay reads.
pub struct ObjectTree {
    /// The URL as given, without a trailing `/`: objects are named `<url>/<rest of key>`.
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The prefix inside the bucket.
    prefix: Key,
    /// Each listed object's size, by name.
    sizes: std::collections::HashMap<PathBuf, u64>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ObjectTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectTree").field("url", &self.url).finish_non_exhaustive()
    }
}

impl ObjectTree {
    /// Connects to the store a URL names, with the credentials of the environment.
    pub fn connect(url: &str) -> Result<Self> {
        let failed = |source| SourceError::Object {
            url: url.to_string(),
            doing: "cannot reach the store",
            source: Box::new(source),
        };
        let parsed = url::Url::parse(url).map_err(|e| SourceError::BadObjectUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "s3" | "s3a" => Arc::new(
                with_profile(object_store::aws::AmazonS3Builder::from_env())
                    .with_url(url)
                    .build()
                    .map_err(failed)?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(failed)?,
            ),
            _ => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(failed)?,
            ),
        };
        let prefix = Key::from(parsed.path().trim_matches('/'));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("skewtail-objects")
            .enable_all()
            .build()
            .map_err(|source| SourceError::Io {
                path: PathBuf::from(url),
                doing: "cannot start the runtime for object storage",
                source,
            })?;
        let url = url.trim_end_matches('/').to_string();
        Ok(ObjectTree { url, store, prefix, sizes: Default::default(), runtime })
    }

    /// Every object under the prefix (recursively), named `<url>/<rest of key>`, in name
    /// order; an error when there is none. Their sizes are kept for reading them.
    pub fn list(&mut self) -> Result<Vec<PathBuf>> {
        let mut listing = self.store.list(Some(&self.prefix));
        let objects = self.runtime.block_on(async {
            let mut objects = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|source| SourceError::Object {
                    url: self.url.clone(),
                    doing: "cannot list the objects",
                    source: Box::new(source),
                })?;
                objects.push((self.name_of(&meta.location), meta.size));
            }
            Ok::<_, SourceError>(objects)
        })?;
        if objects.is_empty() {
            return Err(SourceError::EmptyDirectory { path: PathBuf::from(&self.url) });
        }
        let mut names: Vec<PathBuf> = objects.iter().map(|(name, _)| name.clone()).collect();
        names.sort();
        self.sizes = objects.into_iter().collect();
        Ok(names)
    }

    /// Whether `path` names one of this tree's objects.
    pub fn holds(&self, path: &Path) -> bool {
        path.to_str().is_some_and(|p| p.starts_with(&self.url))
    }

    /// A listed object's bytes from its start, `limit` of them at most, read in ranged
    /// requests.
    pub fn reader(self: &Arc<Self>, path: &Path, limit: u64) -> ObjectReader {
        let size = self.sizes.get(path).copied().unwrap_or(0);
        ObjectReader {
            tree: self.clone(),
            key: self.key_of(path),
            name: path.to_path_buf(),
            end: size.min(limit),
            at: 0,
            chunk: bytes::Bytes::new(),
            next: None,
        }
    }

    fn name_of(&self, key: &Key) -> PathBuf {
        let below = key.as_ref().strip_prefix(self.prefix.as_ref()).unwrap_or(key.as_ref());
        PathBuf::from(format!("{}/{}", self.url, below.trim_start_matches('/')))
    }

    fn key_of(&self, path: &Path) -> Key {
        let text = path.to_string_lossy();
        let below = text.strip_prefix(&self.url).unwrap_or(&text).trim_start_matches('/');
        if self.prefix.as_ref().is_empty() {
            Key::from(below)
        } else {
            Key::from(format!("{}/{below}", self.prefix.as_ref()))
        }
    }
}

/// An AWS profile's keys when `AWS_PROFILE` (or a `default` profile) is set in the shared
/// credentials file and the environment has no keys of its own: the AWS CLI's order.
fn with_profile(builder: object_store::aws::AmazonS3Builder) -> object_store::aws::AmazonS3Builder {
    use object_store::aws::AmazonS3ConfigKey as K;
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        return builder;
    }
    let Some(home) = std::env::var_os("HOME") else { return builder };
    let credentials = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map_or_else(|| Path::new(&home).join(".aws/credentials"), PathBuf::from);
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_string());
    let Ok(text) = super::read_capped(&credentials, 1 << 20) else { return builder };
    let mut builder = builder;
    for (key, value) in profile_entries(&text, &profile) {
        let config = match key.as_str() {
            "aws_access_key_id" => K::AccessKeyId,
            "aws_secret_access_key" => K::SecretAccessKey,
            "aws_session_token" => K::Token,
            "region" => K::Region,
            _ => continue,
        };
        builder = builder.with_config(config, value);
    }
    builder
}

/// The `key = value` entries of `[profile]` in an AWS credentials file.
fn profile_entries(text: &str, profile: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut entries = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == profile;
        } else if inside && let Some((key, value)) = line.split_once('=') {
            entries.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    entries
}

/// A future that brings one range of an object.
type Fetch = tokio::task::JoinHandle<object_store::Result<bytes::Bytes>>;

/// An object's bytes as a [`Read`], fetched in ranges of [`CHUNK_BYTES`], one ahead.
pub struct ObjectReader {
    tree: Arc<ObjectTree>,
    key: Key,
    name: PathBuf,
    /// Where reading ends (the object's size, or a limit).
    end: u64,
    /// Where the next range starts.
    at: u64,
    /// What is left of the range being read.
    chunk: bytes::Bytes,
    /// The next range, under way.
    next: Option<Fetch>,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ObjectReader {
    /// Starts fetching the range at `at`, if the object goes on.
    fn fetch_ahead(&mut self) {
        if self.at >= self.end {
            return;
        }
        let range = self.at..(self.at + CHUNK_BYTES).min(self.end);
        self.at = range.end;
        let (store, key) = (self.tree.store.clone(), self.key.clone());
        self.next =
            Some(self.tree.runtime.spawn(async move { store.get_range(&key, range).await }));
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.chunk.is_empty() {
            if self.next.is_none() {
                self.fetch_ahead();
            }
            let Some(fetch) = self.next.take() else { return Ok(0) };
            let fetched = self
                .tree
                .runtime
                .block_on(fetch)
                .map_err(io::Error::other)?
                .map_err(|e| io::Error::other(format!("{}: {e}", self.name.display())))?;
            if fetched.is_empty() {
                return Ok(0);
            }
            self.chunk = fetched;
            // The next range is asked for while this one is parsed.
            self.fetch_ahead();
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        bytes::Buf::advance(&mut self.chunk, n);
        Ok(n)
    }
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        if let Some(fetch) = self.next.take() {
            fetch.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_urls_are_told_from_paths() {
        for url in ["s3://logs/alb/", "gs://b/p", "az://c/p", "abfss://c@a.dfs.core.windows.net/p"]
        {
            assert!(is_object_url(url), "{url}");
        }
        for path in ["/var/log/nginx", "s3/logs", "-", "./gs:/x"] {
            assert!(!is_object_url(path), "{path}");
        }
    }

    #[test]
    fn a_profile_is_read_from_the_shared_credentials_file() {
        let text = "[default]\naws_access_key_id = A\n\n[logs]\naws_access_key_id=B\nAWS_SECRET_ACCESS_KEY = s\n# comment\n[other]\naws_access_key_id = C\n";
        assert_eq!(
            profile_entries(text, "logs"),
            [
                ("aws_access_key_id".to_string(), "B".to_string()),
                ("aws_secret_access_key".to_string(), "s".to_string())
            ]
        );
        assert_eq!(profile_entries(text, "default").len(), 1);
        assert!(profile_entries(text, "none").is_empty());
    }
}
