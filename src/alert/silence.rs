//! Silences: alerts that match are not sent while the silence lasts. They come from the
//! config (`[[silence]]`) and from `skewtail silence add`, which writes `silences.json` in the
//! state directory; a running sidecar reads that file again when it changes.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::matcher::Matcher;
use super::notice::Notice;

/// One silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Its id (`expire` takes it).
    pub id: String,
    /// Which alerts.
    pub matcher: Matcher,
    /// From (Unix ms).
    pub starts_ms: i64,
    /// Until (Unix ms).
    pub ends_ms: i64,
    /// Why, and who.
    pub comment: String,
}

impl Silence {
    /// Whether it silences `notice` at `at_ms`.
    pub fn silences(&self, notice: &Notice, at_ms: i64) -> bool {
        (self.starts_ms..self.ends_ms).contains(&at_ms) && self.matcher.matches(notice)
    }
}

/// The file `silence add` writes, in the state directory.
pub fn file_in(state_dir: &Path) -> PathBuf {
    state_dir.join("silences.json")
}

/// Reads the silences file (an absent file is no silences).
pub fn load(path: &Path) -> Result<Vec<Silence>, SilenceFileError> {
    match crate::source::read_capped(path, crate::located::MAX_CONFIG_BYTES) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|source| SilenceFileError::Malformed { path: path.to_path_buf(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(SilenceFileError::Io { path: path.to_path_buf(), source }),
    }
}

/// The silences file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SilenceFileError {
    /// Reading, writing or renaming failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or its directory, or the temporary file beside it).
        path: PathBuf,
        /// The error from the system.
        source: std::io::Error,
    },
    /// The file is not a list of silences.
    #[error("{}: not a silences file ({source}); fix or remove it", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where it is wrong.
        source: serde_json::Error,
    },
}

/// Writes the silences file atomically.
pub fn save(path: &Path, silences: &[Silence]) -> Result<(), SilenceFileError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SilenceFileError::Io { path, source }
    };
    let text = serde_json::to_string_pretty(silences)
        .map_err(|source| SilenceFileError::Malformed { path: path.to_path_buf(), source })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, text).map_err(io(&temp))?;
    std::fs::rename(&temp, path).map_err(io(path))
}

/// The silences in force: the config's, and the file's (read again when it changes).
#[derive(Debug, Default)]
pub struct Silences {
    configured: Vec<Silence>,
    file: Option<PathBuf>,
    from_file: Vec<Silence>,
    file_modified: Option<SystemTime>,
}

impl Silences {
    /// The config's silences, and the file to watch.
    pub fn new(configured: Vec<Silence>, file: Option<PathBuf>) -> Self {
        let mut silences = Silences { configured, file, ..Silences::default() };
        silences.reload_if_changed();
        silences
    }

    /// Reads the file again if it changed; a bad file keeps the previous silences (logged).
    pub fn reload_if_changed(&mut self) {
        let Some(path) = &self.file else { return };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified == self.file_modified {
            return;
        }
        self.file_modified = modified;
        match load(path) {
            Ok(silences) => {
                if silences != self.from_file {
                    tracing::info!(message = "Silences loaded.", file = %path.display(), count = silences.len());
                }
                self.from_file = silences;
            }
            Err(error) => {
                tracing::error!(message = "Cannot read the silences file; keeping the previous silences.", %error);
            }
        }
    }

    /// The silence that mutes `notice`, if any.
    pub fn find(&self, notice: &Notice) -> Option<&Silence> {
        self.configured.iter().chain(&self.from_file).find(|s| s.silences(notice, notice.at_ms))
    }
}

/// A new silence id: time and a counter are enough for a hand-run command.
pub fn new_id(now_ms: i64, existing: &[Silence]) -> String {
    let mut n = existing.len();
    loop {
        let id = format!("s{}", crate::text::digest(&[&now_ms.to_string(), &n.to_string()], 8));
        if existing.iter().all(|s| s.id != id) {
            return id;
        }
        n += 1;
    }
}
