//! Which files a replay reads, and in what order: arguments expanded (files, globs,
//! directories), each file opened through its compression, and a rotated set put in time
//! order by each file's first timestamp, whatever order the shell gave
//! (`access.log access.log.1 access.log.2.gz` expands newest first).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::decompress::{Compression, decompressed};
use super::error::{Result, SourceError};
use super::objects::Place;
use super::{LineReader, Next};
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
    /// What its name says of its interval and stream (cloud balancers, log exports).
    pub named: Option<NamedSpan>,
}

impl ReplayFile {
    /// A file known only by its path.
    pub fn at(path: PathBuf) -> Self {
        let named = NamedSpan::read(&path);
        ReplayFile { path, first_ms: None, compression: Compression::Plain, named }
    }
}

/// Whether an argument is a glob pattern rather than a path.
fn is_pattern(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// How deep [`expand`] goes into directories by default: enough for a cloud log tree
/// (`AWSLogs/<account>/elasticloadbalancing/<region>/YYYY/MM/DD/`).
pub const DEFAULT_MAX_DEPTH: usize = 12;

/// Arguments made into files: `-` as is, a directory's regular files (recursively, down to
/// `max_depth` levels; hidden ones and symlinked directories left out, in name order), a
/// glob's matches, a path as is.
pub fn expand(arguments: &[PathBuf], max_depth: usize) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for argument in arguments {
        let text = argument.to_string_lossy();
        if argument == Path::new("-") {
            files.push(argument.clone());
        } else if argument.is_dir() {
            let mut found = Vec::new();
            files_under(argument, max_depth, &mut found)?;
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

/// The regular files under `dir`, `depth` levels down at most (1: the directory's own).
fn files_under(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> Result<()> {
    if depth == 0 {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| SourceError::Io {
        path: dir.to_path_buf(),
        doing: "cannot list the directory",
        source,
    })?;
    for entry in entries.filter_map(std::result::Result::ok) {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // A symlinked directory could lead back up the tree: not followed. A symlinked file
        // (Kubernetes' /var/log/containers) is read.
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            files_under(&path, depth - 1, found)?;
        } else if path.is_file() {
            found.push(path);
        }
    }
    Ok(())
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
pub fn first_timestamp(
    place: &Place,
    path: &Path,
    parser: &mut Parser,
) -> Result<(Option<i64>, Compression)> {
    let file = place.open(path, true)?;
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
/// input stays first (it cannot be looked at twice). A file whose name gives its interval is
/// not opened: it begins where its name says, or where the one before it in its stream ended;
/// only a stream's first file without a named start is opened for its first timestamp.
pub fn in_time_order(
    paths: Vec<PathBuf>,
    place: &Place,
    parser: &Parser,
) -> Result<Vec<ReplayFile>> {
    let mut parser = parser.clone();
    let mut files: Vec<ReplayFile> = paths.into_iter().map(ReplayFile::at).collect();
    // Named files in the order of their ends, so that each learns where the one before it in
    // its stream ended; the others keep their place (the sort is stable).
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| files[i].named.as_ref().map(|n| n.end_ms));
    let mut stream_ends: std::collections::HashMap<String, i64> = Default::default();
    for index in order {
        let file = &mut files[index];
        if file.path == Path::new("-") {
            file.first_ms = Some(i64::MIN);
            continue;
        }
        let named_start = file.named.as_ref().and_then(|named| {
            let start = named.start_ms.or_else(|| stream_ends.get(&named.stream).copied());
            stream_ends.insert(named.stream.clone(), named.end_ms);
            start
        });
        if let Some(start) = named_start {
            file.first_ms = Some(start);
            file.compression = Compression::from_name(&file.path);
            continue;
        }
        let (first_ms, compression) = first_timestamp(place, &file.path, &mut parser)?;
        // A named file whose first lines hold no time: no later than its interval allows.
        file.first_ms =
            first_ms.or(file.named.as_ref().map(|n| n.end_ms - NamedSpan::LONGEST_INTERVAL_MS));
        file.compression = compression;
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

/// A cloud load balancer's log file, from its name: AWS ALB and NLB
/// (`<account>_elasticloadbalancing_<region>_app.<name>.<id>_<end>_<node ip>_<random>.log.gz`)
/// and Classic ELB (`<account>_elasticloadbalancing_<region>_<name>_<end>_<node ip>_<random>.log`).
/// Each balancer node writes one file every 5 (or 60) minutes into dated directories, so a
/// node's files, wherever they are in the tree, follow one another in time: one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudLogName {
    /// The load balancer (`app.my-alb.50dc6c495c0c9188`, or a Classic ELB's name).
    pub balancer: String,
    /// The node that wrote it (its IP address).
    pub node: String,
    /// When the file's interval ends, `YYYYMMDDTHHMMZ`.
    pub end: String,
}

impl CloudLogName {
    /// Reads a file name; `None` when it is not one of a cloud balancer's.
    pub fn read(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        let name = name.strip_suffix(".gz").unwrap_or(name).strip_suffix(".log")?;
        let fields: Vec<&str> = name.split('_').collect();
        // account, "elasticloadbalancing", region, balancer..., end, node ip, random.
        if fields.len() < 7
            || fields[1] != "elasticloadbalancing"
            || !fields[0].bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let n = fields.len();
        let (end, node) = (fields[n - 3], fields[n - 2]);
        let is_time = end.len() == 14 && end.as_bytes()[8] == b'T' && end.ends_with('Z');
        if !is_time || node.parse::<std::net::IpAddr>().is_err() {
            return None;
        }
        Some(CloudLogName {
            balancer: fields[3..n - 3].join("_"),
            node: node.to_string(),
            end: end.to_string(),
        })
    }
}

/// What a file's name says of its lines' times: cloud balancers and log exports name each
/// file's interval and the stream it continues (a balancer's node, an export's shard), so a
/// tree of them is put in order, and cut by `--since`/`--until`, without opening a file.
///
/// - AWS ALB, NLB and Classic ELB ([`CloudLogName`]): the end of a 5 (or 60) minute interval;
///   the stream is the balancer's node.
/// - Google Cloud Logging exports to Cloud Storage: `<log>/YYYY/MM/DD/HH:MM:SS_HH:MM:SS_S<n>.json`,
///   the hour's interval; the stream is the log and the shard.
/// - Azure Monitor diagnostic logs in a storage account: `<resourceId path>/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`;
///   the stream is the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSpan {
    /// The stream the file continues: a stream's files follow one another in time.
    pub stream: String,
    /// When its interval begins, when the name says so.
    pub start_ms: Option<i64>,
    /// When its interval ends, Unix ms.
    pub end_ms: i64,
}

impl NamedSpan {
    /// The longest interval a named file covers (a Classic ELB's 60 minutes): how early the
    /// lines of a file named only by its end may begin.
    pub const LONGEST_INTERVAL_MS: i64 = 60 * 60 * 1000;

    /// Reads a path; `None` when its name says nothing of its times.
    pub fn read(path: &Path) -> Option<Self> {
        if let Some(cloud) = CloudLogName::read(path) {
            let end = format!(
                "{}-{}-{}T{}:{}:00Z",
                &cloud.end[..4],
                &cloud.end[4..6],
                &cloud.end[6..8],
                &cloud.end[9..11],
                &cloud.end[11..13]
            );
            let end_ms = crate::parse::time::parse_iso8601(end.as_bytes())?;
            let stream = format!("{} {}", cloud.balancer, cloud.node);
            return Some(NamedSpan { stream, start_ms: None, end_ms });
        }
        Self::gcp(path).or_else(|| Self::azure(path))
    }

    /// `<log>/YYYY/MM/DD/HH:MM:SS_HH:MM:SS_S<n>.json`.
    fn gcp(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.strip_suffix(".json")?;
        let (times, shard) = name.rsplit_once('_')?;
        let (start, end) = times.split_once('_')?;
        let is_clock = |t: &str| t.len() == 8 && t.as_bytes()[2] == b':' && t.as_bytes()[5] == b':';
        if !shard.starts_with('S') || !is_clock(start) || !is_clock(end) {
            return None;
        }
        let day = path.parent()?;
        let month = day.parent()?;
        let year = month.parent()?;
        let part = |p: &Path| p.file_name().and_then(|n| n.to_str()).map(str::to_string);
        let (y, m, d) = (part(year)?, part(month)?, part(day)?);
        let date = format!("{y}-{m}-{d}");
        let at =
            |clock: &str| crate::parse::time::parse_iso8601(format!("{date}T{clock}Z").as_bytes());
        let start_ms = at(start)?;
        // `HH:59:59` ends the hour: the interval is up to the next second.
        let end_ms = at(end)? + 1000;
        let log = year.parent().map(|p| p.display().to_string()).unwrap_or_default();
        Some(NamedSpan { stream: format!("{log} {shard}"), start_ms: Some(start_ms), end_ms })
    }

    /// `<resource>/y=YYYY/m=MM/d=DD/h=HH/m=MM/PT1H.json`.
    fn azure(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        if name != "PT1H.json" {
            return None;
        }
        let mut parts = Vec::new();
        let mut dir = path.parent()?;
        for key in ["m=", "h=", "d=", "m=", "y="] {
            let value = dir.file_name()?.to_str()?.strip_prefix(key)?;
            parts.push(value.to_string());
            dir = dir.parent()?;
        }
        let [minute, hour, day, month, year] = <[String; 5]>::try_from(parts).ok()?;
        let start = format!("{year}-{month}-{day}T{hour}:{minute}:00Z");
        let start_ms = crate::parse::time::parse_iso8601(start.as_bytes())?;
        Some(NamedSpan {
            stream: dir.display().to_string(),
            start_ms: Some(start_ms),
            end_ms: start_ms + 60 * 60 * 1000,
        })
    }
}

/// Files in time order grouped into rotated sets (same directory and [`set_name`]; for a
/// cloud balancer, the same node of the same balancer wherever its files are), each still
/// in time order; sets in order of their first file. The files of a set follow one another
/// in time and are read in turn; different sets (several balancers, or several logs of one)
/// overlap in time, so their lines are merged by timestamp.
pub fn rotated_sets(files: Vec<ReplayFile>) -> Vec<Vec<ReplayFile>> {
    /// A set's directory and name.
    type Key = (Option<PathBuf>, String);
    let mut sets: Vec<(Key, Vec<ReplayFile>)> = Vec::new();
    for file in files {
        let key = match &file.named {
            Some(named) => (None, named.stream.clone()),
            None => (file.path.parent().map(Path::to_path_buf), set_name(&file.path)),
        };
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
        let file = |path: &str| ReplayFile::at(PathBuf::from(path));
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
        let expanded = expand(&[dir.path().to_path_buf()], DEFAULT_MAX_DEPTH).unwrap();
        assert_eq!(expanded.len(), 3);
        let ordered = in_time_order(expanded, &Place::Disk, &parser).unwrap();
        let names: Vec<String> = ordered
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["access.log.2.gz", "access.log.1", "access.log"]);
        assert_eq!(ordered[0].compression, Compression::Gzip);
        let pattern = dir.path().join("access.log*");
        assert_eq!(expand(&[pattern], DEFAULT_MAX_DEPTH).unwrap().len(), 3);
        assert!(
            expand(&[dir.path().join("nothing*")], DEFAULT_MAX_DEPTH)
                .unwrap_err()
                .to_string()
                .contains("no file matches")
        );
    }

    #[test]
    fn cloud_balancer_file_names_are_read_and_a_node_is_one_set_across_directories() {
        let alb = "123456789012_elasticloadbalancing_us-east-2_app.my-alb.50dc6c495c0c9188_20231115T1405Z_10.0.1.7_2sdfds9a.log.gz";
        let name = CloudLogName::read(Path::new(alb)).unwrap();
        assert_eq!(name.balancer, "app.my-alb.50dc6c495c0c9188");
        assert_eq!((name.node.as_str(), name.end.as_str()), ("10.0.1.7", "20231115T1405Z"));
        let elb =
            "123456789012_elasticloadbalancing_us-west-2_my-elb_20231115T1400Z_172.31.4.2_5rz.log";
        assert_eq!(CloudLogName::read(Path::new(elb)).unwrap().balancer, "my-elb");
        for other in ["access.log", "123_elasticloadbalancing_x.log", "access.log.2.gz"] {
            assert_eq!(CloudLogName::read(Path::new(other)), None, "{other}");
        }
        let file = |day: u32, hhmm: &str, node: &str| {
            ReplayFile::at(PathBuf::from(format!(
                "AWSLogs/1/elasticloadbalancing/us-east-2/2023/11/{day}/1_elasticloadbalancing_us-east-2_app.a.b_202311{day}T{hhmm}Z_{node}_x.log.gz"
            )))
        };
        let sets = rotated_sets(vec![
            file(15, "2355", "10.0.0.1"),
            file(15, "2355", "10.0.0.2"),
            file(16, "0000", "10.0.0.1"),
            file(16, "0000", "10.0.0.2"),
        ]);
        assert_eq!(sets.len(), 2, "one stream per node: {sets:?}");
        assert!(sets.iter().all(|set| set.len() == 2));
    }

    #[test]
    fn export_names_give_their_interval_and_stream() {
        let at = |t: &str| crate::parse::time::parse_iso8601(t.as_bytes()).unwrap();
        let alb = NamedSpan::read(Path::new(
            "1_elasticloadbalancing_us-east-2_app.a.b_20231115T1405Z_10.0.0.1_x.log.gz",
        ))
        .unwrap();
        assert_eq!((alb.start_ms, alb.end_ms), (None, at("2023-11-15T14:05:00Z")));
        assert_eq!(alb.stream, "app.a.b 10.0.0.1");
        let gcp =
            NamedSpan::read(Path::new("bucket/requests/2023/11/15/14:00:00_14:59:59_S1.json"))
                .unwrap();
        assert_eq!(gcp.start_ms, Some(at("2023-11-15T14:00:00Z")));
        assert_eq!(gcp.end_ms, at("2023-11-15T15:00:00Z"));
        assert_eq!(gcp.stream, "bucket/requests S1");
        let azure = NamedSpan::read(Path::new(
            "insights-logs-applicationgatewayaccesslog/resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.NETWORK/APPLICATIONGATEWAYS/GW/y=2023/m=11/d=15/h=14/m=00/PT1H.json",
        ))
        .unwrap();
        assert_eq!(azure.start_ms, Some(at("2023-11-15T14:00:00Z")));
        assert_eq!(azure.end_ms, at("2023-11-15T15:00:00Z"));
        assert!(azure.stream.ends_with("APPLICATIONGATEWAYS/GW"), "{}", azure.stream);
        for other in ["access.log", "2023/11/15/notes.json", "a/PT1H.json", "x/14:00:00_S1.json"] {
            assert_eq!(NamedSpan::read(Path::new(other)), None, "{other}");
        }
    }

    #[test]
    fn named_files_are_ordered_without_being_opened_but_a_streams_first() {
        // Neither exists: only the first of each stream would be opened, and it is named
        // with its start, so nothing is.
        let files = vec![
            PathBuf::from("logs/2023/11/15/15:00:00_15:59:59_S0.json"),
            PathBuf::from("logs/2023/11/15/14:00:00_14:59:59_S0.json"),
            PathBuf::from("logs/2023/11/15/14:00:00_14:59:59_S1.json"),
        ];
        let patterns = crate::parse::PatternSet::builtin();
        let parser =
            crate::config::build_parser(&patterns, Some("upstream"), None, &[], None).unwrap().0;
        let ordered = in_time_order(files, &Place::Disk, &parser).unwrap();
        let sets = rotated_sets(ordered);
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].len(), 2);
        assert!(sets[0][0].path.ends_with("14:00:00_14:59:59_S0.json"));
        assert!(sets[0][0].first_ms < sets[0][1].first_ms);
    }

    #[test]
    fn directories_are_read_recursively_down_to_the_depth_asked() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("lb1/2023/11/15");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::create_dir_all(dir.path().join("lb2")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        for file in [deep.join("a.log"), dir.path().join("lb2/b.log"), dir.path().join(".git/x")] {
            std::fs::write(file, "x\n").unwrap();
        }
        let names = |depth| -> Vec<String> {
            expand(&[dir.path().to_path_buf()], depth)
                .map(|files| {
                    let relative =
                        |p: &PathBuf| p.strip_prefix(dir.path()).unwrap().display().to_string();
                    files.iter().map(relative).collect()
                })
                .unwrap_or_else(|e| vec![e.to_string()])
        };
        assert_eq!(names(DEFAULT_MAX_DEPTH), ["lb1/2023/11/15/a.log", "lb2/b.log"]);
        assert_eq!(names(2), ["lb2/b.log"]);
        assert!(names(1)[0].contains("the directory holds no files"), "{:?}", names(1));
    }
}
