//! Which files a replay reads, and in what order: arguments expanded (files, globs,
//! directories), each file opened through its compression, and a rotated set put in time
//! order by each file's first timestamp, whatever order the shell gave
//! (`access.log access.log.1 access.log.2.gz` expands newest first).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::decompress::{Compression, decompressed};
use super::error::{Result, SourceError};
use super::{LineReader, Next, open_for_replay};
use crate::parse::Parser;

/// Lines looked at for a file's first timestamp.
const SAMPLE_LINES: usize = 200;

/// A file to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayFile {
    /// Its path (`-`: standard input).
    pub path: PathBuf,
    /// Its first timestamp, Unix ms, when a line of its first ones parsed.
    pub first_ms: Option<i64>,
    /// How it is compressed.
    pub compression: Compression,
}

/// Whether an argument is a glob pattern rather than a path.
fn is_pattern(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Arguments made into files: `-` as is, a directory's regular files (not hidden, not
/// recursive), a glob's matches, a path as is.
pub fn expand(arguments: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for argument in arguments {
        let text = argument.to_string_lossy();
        if argument == Path::new("-") {
            files.push(argument.clone());
        } else if argument.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(argument)
                .map_err(|source| SourceError::Io {
                    path: argument.clone(),
                    doing: "cannot list the directory",
                    source,
                })?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
                .collect();
            if found.is_empty() {
                return Err(SourceError::EmptyDirectory { path: argument.clone() });
            }
            found.sort();
            files.extend(found);
        } else if is_pattern(&text) && !argument.exists() {
            let mut found: Vec<PathBuf> = glob::glob(&text)
                .map_err(|source| SourceError::BadPattern { pattern: text.to_string(), source })?
                .filter_map(std::result::Result::ok)
                .filter(|p| p.is_file())
                .collect();
            if found.is_empty() {
                return Err(SourceError::NoMatch { pattern: text.to_string() });
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(argument.clone());
        }
    }
    Ok(files)
}

/// The rotation number of a logrotate name (`access.log.2.gz` → 2, `access.log` → 0), so that
/// files with the same first timestamp (or none) still go oldest first.
fn rotation_number(path: &Path) -> u32 {
    rotation_parts(path).1
}

/// A logrotate name split into the name before its rotation number and the number
/// (`access.log.2.gz` → (`access.log`, 2), `access.log` → (`access.log`, 0)), without its
/// compression suffix.
fn rotation_parts(path: &Path) -> (String, u32) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = name.trim_end_matches(".gz").trim_end_matches(".zst");
    match name.rsplit_once('.') {
        Some((base, number))
            if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (base.to_string(), number.parse().unwrap_or(u32::MAX))
        }
        _ => (name.to_string(), 0),
    }
}

/// The first timestamp among a file's first lines, and its compression.
pub fn first_timestamp(path: &Path, parser: &mut Parser) -> Result<(Option<i64>, Compression)> {
    let file = open_for_replay(path)?;
    let (reader, compression) =
        decompressed(file).map_err(|error| SourceError::reading(path, error))?;
    Ok((first_of(reader, parser), compression))
}

fn first_of(reader: impl Read, parser: &mut Parser) -> Option<i64> {
    let mut lines = LineReader::new(reader, super::DEFAULT_MAX_LINE_BYTES);
    for _ in 0..SAMPLE_LINES {
        match lines.next_line(true) {
            Ok(Next::Line(line)) => {
                if let Ok(record) = parser.parse(line.bytes) {
                    return Some(record.timestamp_ms);
                }
            }
            Ok(Next::TooLong { .. }) => {}
            Ok(Next::End) | Err(_) => return None,
        }
    }
    None
}

/// Files in time order: by first timestamp, then oldest rotation first, then name. Standard
/// input stays first (it cannot be looked at twice).
pub fn in_time_order(paths: Vec<PathBuf>, parser: &Parser) -> Result<Vec<ReplayFile>> {
    let mut parser = parser.clone();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        if path == Path::new("-") {
            files.push(ReplayFile {
                path,
                first_ms: Some(i64::MIN),
                compression: Compression::Plain,
            });
            continue;
        }
        let (first_ms, compression) = first_timestamp(&path, &mut parser)?;
        files.push(ReplayFile { path, first_ms, compression });
    }
    files.sort_by(|a, b| {
        let key = |f: &ReplayFile| {
            (f.first_ms.unwrap_or(i64::MAX), std::cmp::Reverse(rotation_number(&f.path)))
        };
        key(a).cmp(&key(b)).then_with(|| a.path.cmp(&b.path))
    });
    for file in &mut files {
        if file.first_ms == Some(i64::MIN) {
            file.first_ms = None;
        }
    }
    Ok(files)
}

/// The name a rotated set shares: a file's name without its compression suffix, its
/// logrotate number (`.3`) and its date extension (`-20231115`, `-2023111514`).
fn set_name(path: &Path) -> String {
    let (name, _) = rotation_parts(path);
    let mut name = name.as_str();
    if let Some((base, date)) = name.rsplit_once('-')
        && (8..=10).contains(&date.len())
        && date.bytes().all(|b| b.is_ascii_digit())
    {
        name = base;
    }
    name.to_string()
}

/// Files in time order grouped into rotated sets (same directory and [`set_name`]), each
/// still in time order; sets in order of their first file. The files of a set follow one
/// another in time and are read in turn; different sets (several balancers, or several
/// logs of one) overlap in time, so their lines are merged by timestamp.
pub fn rotated_sets(files: Vec<ReplayFile>) -> Vec<Vec<ReplayFile>> {
    /// A set's directory and name.
    type Key = (Option<PathBuf>, String);
    let mut sets: Vec<(Key, Vec<ReplayFile>)> = Vec::new();
    for file in files {
        let key = (file.path.parent().map(Path::to_path_buf), set_name(&file.path));
        match sets.iter_mut().find(|(k, _)| *k == key) {
            Some((_, set)) => set.push(file),
            None => sets.push((key, vec![file])),
        }
    }
    sets.into_iter().map(|(_, set)| set).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn rotation_numbers() {
        assert_eq!(rotation_number(Path::new("/var/log/nginx/access.log")), 0);
        assert_eq!(rotation_number(Path::new("access.log.1")), 1);
        assert_eq!(rotation_number(Path::new("access.log.12.gz")), 12);
        assert_eq!(rotation_number(Path::new("access.log.3.zst")), 3);
    }

    #[test]
    fn files_are_grouped_into_rotated_sets_by_directory_and_name() {
        let file = |path: &str| ReplayFile {
            path: PathBuf::from(path),
            first_ms: None,
            compression: Compression::Plain,
        };
        let files = vec![
            file("lb1/access.log.2.gz"),
            file("lb2/access.log.1"),
            file("lb1/access.log.1"),
            file("lb1/access.log-20231115.zst"),
            file("lb2/access.log"),
            file("lb1/error.log"),
            file("lb1/access.log"),
            file("-"),
        ];
        let sets: Vec<Vec<String>> = rotated_sets(files)
            .into_iter()
            .map(|set| set.iter().map(|f| f.path.display().to_string()).collect())
            .collect();
        assert_eq!(
            sets,
            [
                vec![
                    "lb1/access.log.2.gz",
                    "lb1/access.log.1",
                    "lb1/access.log-20231115.zst",
                    "lb1/access.log"
                ],
                vec!["lb2/access.log.1", "lb2/access.log"],
                vec!["lb1/error.log"],
                vec!["-"],
            ]
        );
    }

    #[test]
    fn a_rotated_set_is_put_in_time_order_whatever_the_argument_order() {
        let dir = tempfile::tempdir().unwrap();
        let line = |minute: u32| {
            format!(
                "10.0.0.1 - - [15/Nov/2023:14:{minute:02}:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\" rt=0.010 uct=\"0.001\" uht=\"0.009\" urt=\"0.009\" ua=\"10.0.0.1:8080\" us=\"200\"\n"
            )
        };
        std::fs::write(dir.path().join("access.log"), line(30)).unwrap();
        std::fs::write(dir.path().join("access.log.1"), line(20)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(line(10).as_bytes()).unwrap();
        std::fs::write(dir.path().join("access.log.2.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(dir.path().join(".hidden"), "x").unwrap();
        let patterns = crate::parse::PatternSet::builtin();
        let parser =
            crate::config::build_parser(&patterns, Some("upstream"), None, &[], None).unwrap().0;
        let expanded = expand(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(expanded.len(), 3);
        let ordered = in_time_order(expanded, &parser).unwrap();
        let names: Vec<String> = ordered
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["access.log.2.gz", "access.log.1", "access.log"]);
        assert_eq!(ordered[0].compression, Compression::Gzip);
        let pattern = dir.path().join("access.log*");
        assert_eq!(expand(&[pattern]).unwrap().len(), 3);
        assert!(
            expand(&[dir.path().join("nothing*")])
                .unwrap_err()
                .to_string()
                .contains("no file matches")
        );
    }
}
