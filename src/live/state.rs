//! The sidecar's state on disk: one snapshot with everything needed to go on after a restart
//! as if nothing happened: where each input's files were read up to, the open windows, the
//! detector's baselines, dispersion and trackers, and the alerts firing, all as of the same
//! line of every input.
//!
//! It is written to a temporary file, synced, and renamed over the previous one (then the
//! directory is synced), so a crash leaves the old snapshot or the new one, never half of
//! one. A snapshot that cannot be read, or was written by an incompatible version, is set
//! aside under a new name with a log line, never trusted.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::source::tailer::FileCheckpoint;

/// The snapshot layout's version: a snapshot of another version is set aside.
pub const FORMAT: u32 = 1;

/// Snapshots larger than this are refused (a sidecar's state is a few MB even with 100,000
/// backends).
const MAX_SNAPSHOT_BYTES: u64 = 2 << 30;

/// One input's files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputCheckpoint {
    /// The input's name.
    pub name: String,
    /// Its files and where each was read up to.
    pub files: Vec<FileCheckpoint>,
}

/// What is read back: the header, the inputs' files, and the pipeline's state.
#[derive(Debug, Deserialize)]
pub struct Snapshot<P> {
    /// [`FORMAT`].
    pub format: u32,
    /// The skewtail version that wrote it.
    pub written_by: String,
    /// When, Unix ms (wall clock).
    pub written_at_ms: i64,
    /// Where each input's files were read up to.
    pub inputs: Vec<InputCheckpoint>,
    /// The pipeline's state, as of exactly those positions.
    pub pipeline: P,
    /// Alert delivery: routing state and the journal of every sink.
    #[serde(default)]
    pub alerting: Option<crate::alert::NotifierState>,
}

/// What is written: the same, borrowing.
#[derive(Debug, Serialize)]
pub struct SnapshotRef<'a, P: Serialize> {
    /// [`FORMAT`].
    pub format: u32,
    /// The skewtail version writing it.
    pub written_by: &'a str,
    /// When, Unix ms (wall clock).
    pub written_at_ms: i64,
    /// Where each input's files were read up to.
    pub inputs: &'a [InputCheckpoint],
    /// The pipeline's state.
    pub pipeline: P,
    /// Alert delivery: routing state and the journal of every sink.
    pub alerting: Option<crate::alert::NotifierState>,
}

/// The state directory and its snapshot file.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

/// Why a snapshot was not used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It could not be read or parsed: it was set aside.
    #[error(
        "the saved state {path} is unreadable ({reason}); it was moved to {set_aside} and skewtail starts afresh"
    )]
    Corrupt {
        /// The snapshot.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
        /// Where it was moved.
        set_aside: PathBuf,
    },
    /// Another version wrote it: it was set aside.
    #[error(
        "the saved state {path} was written by {written_by} in layout {format} (this version reads layout {FORMAT}); it was moved to {set_aside} and skewtail starts afresh"
    )]
    Incompatible {
        /// The snapshot.
        path: PathBuf,
        /// The version that wrote it.
        written_by: String,
        /// Its layout.
        format: u32,
        /// Where it was moved.
        set_aside: PathBuf,
    },
}

/// The first bytes of a snapshot, to check its version before reading the rest.
#[derive(Debug, Deserialize)]
struct Header {
    format: u32,
    #[serde(default)]
    written_by: String,
}

impl StateStore {
    /// The store in `dir`, created if missing.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(StateStore { dir: dir.to_path_buf() })
    }

    /// The snapshot file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn set_aside(&self, why: &str, now_ms: i64) -> PathBuf {
        let target = self.dir.join(format!("state.json.{why}-{now_ms}"));
        let _ = std::fs::rename(self.path(), &target);
        target
    }

    /// Reads the snapshot: `Ok(None)` when there is none.
    pub fn load<P: serde::de::DeserializeOwned>(
        &self,
        now_ms: i64,
    ) -> Result<Option<Snapshot<P>>, LoadError> {
        let path = self.path();
        let text = match crate::source::read_capped(&path, MAX_SNAPSHOT_BYTES) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                let set_aside = self.set_aside("corrupt", now_ms);
                return Err(LoadError::Corrupt { path, reason: error.to_string(), set_aside });
            }
        };
        match serde_json::from_str::<Header>(&text) {
            Ok(header) if header.format == FORMAT => {}
            Ok(header) => {
                let set_aside = self.set_aside("incompatible", now_ms);
                return Err(LoadError::Incompatible {
                    path,
                    written_by: header.written_by,
                    format: header.format,
                    set_aside,
                });
            }
            Err(error) => {
                let set_aside = self.set_aside("corrupt", now_ms);
                return Err(LoadError::Corrupt { path, reason: error.to_string(), set_aside });
            }
        }
        serde_json::from_str(&text).map(Some).map_err(|error| {
            let set_aside = self.set_aside("corrupt", now_ms);
            LoadError::Corrupt { path, reason: error.to_string(), set_aside }
        })
    }

    /// Writes a snapshot atomically: a temporary file, synced, renamed over the old one, and
    /// the directory synced.
    pub fn save(&self, snapshot: &impl Serialize) -> io::Result<u64> {
        let temporary = self.dir.join("state.json.tmp");
        let file = File::create(&temporary)?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        serde_json::to_writer(&mut writer, snapshot).map_err(io::Error::other)?;
        writer.flush()?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let size = file.metadata()?.len();
        drop(file);
        std::fs::rename(&temporary, self.path())?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_a_bad_one_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert!(store.load::<u32>(1).unwrap().is_none(), "no snapshot yet");
        let inputs = vec![InputCheckpoint { name: "api".into(), files: Vec::new() }];
        let snapshot = SnapshotRef {
            format: FORMAT,
            written_by: "skewtail test",
            written_at_ms: 5,
            inputs: &inputs,
            pipeline: 42u32,
            alerting: None,
        };
        store.save(&snapshot).unwrap();
        let loaded = store.load::<u32>(6).unwrap().unwrap();
        assert_eq!((loaded.pipeline, loaded.inputs[0].name.as_str()), (42, "api"));

        std::fs::write(store.path(), b"{\"format\": 1, \"written_by\": \"x\", \"inputs\": [")
            .unwrap();
        let error = store.load::<u32>(7).unwrap_err();
        assert!(matches!(error, LoadError::Corrupt { .. }), "{error}");
        assert!(!store.path().exists());
        assert!(dir.path().join("state.json.corrupt-7").exists());

        std::fs::write(store.path(), br#"{"format": 99, "written_by": "skewtail 9.9"}"#).unwrap();
        let error = store.load::<u32>(8).unwrap_err().to_string();
        assert!(error.contains("skewtail 9.9") && error.contains("layout 99"), "{error}");
        assert!(dir.path().join("state.json.incompatible-8").exists());
    }
}
