//! Config: one TOML file for inputs, pools, detector settings and sinks.
//!
//! Loading has two steps, as in ripgrep's low/high args: [`ConfigFile`] is the file as written
//! (serde, `deny_unknown_fields`, so a typo is an error rather than a silently ignored key), and
//! [`Settings`] is what the pipeline runs on: parsers compiled, weights checked, secrets
//! resolved. Every error names the file, the line and the fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::alert::schema::{
    AlertingConfig, InhibitSection, RouteSection, SilenceSection, SinkSection,
};
use crate::detect::{Detector, DetectorConfig, PoolExpectation};
use crate::located::{ConfigError, Located, MAX_CONFIG_BYTES, with_causes};
use crate::parse::{Parser, PatternSet};
use crate::source::container::Wrapping;
use crate::source::syslog::SyslogListen;

/// Where to start reading a live file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Only lines written after skewtail starts (like `tail -f`).
    #[default]
    End,
    /// The whole file, then what is appended.
    Beginning,
}

/// One `[[input]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// A name for messages; defaults to the file name.
    pub name: Option<String>,
    /// The log file (a glob, or `-` for standard input).
    #[serde(default)]
    pub path: Option<Spanned<PathBuf>>,
    /// Or a syslog address `run` listens on: `udp://127.0.0.1:5514`, `tcp://...`.
    #[serde(default)]
    pub syslog: Option<Spanned<String>>,
    /// A format name (`nginx`, `upstream`, `ingress_nginx`, ...).
    pub format: Option<Spanned<String>>,
    /// The text of the nginx `log_format` directive that writes this file.
    pub log_format: Option<Spanned<String>>,
    /// Variables from the user's own `map`/`set` blocks used in `log_format`.
    #[serde(default)]
    pub custom_variables: Vec<String>,
    /// The pool this input's backends belong to; defaults to the input's name.
    pub pool: Option<String>,
    /// Where `run` starts reading.
    #[serde(default)]
    pub start_at: StartAt,
    /// A container runtime's wrapping around each line: `auto` (default), `cri`, `docker`,
    /// `none`.
    #[serde(default)]
    pub wrapping: Wrapping,
}

/// One `[pool.NAME]`: where its expected weights come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Expected weight per backend, as the balancer is configured (`"10.0.0.1:8080" = 3`).
    #[serde(default)]
    pub weights: Option<Spanned<BTreeMap<String, f64>>>,
    /// Read the weights from an nginx `upstream` block.
    #[serde(default)]
    pub nginx_upstream: Option<Spanned<BalancerSection>>,
    /// Read the weights from a HAProxy `backend` (or `listen`) section.
    #[serde(default)]
    pub haproxy_backend: Option<Spanned<BalancerSection>>,
}

/// A section of a balancer's config: `{ file = "/etc/haproxy/haproxy.cfg", name = "be_api" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerSection {
    /// The balancer's config file (relative paths are from skewtail's config file).
    pub file: PathBuf,
    /// The upstream or backend name; defaults to the pool's name.
    #[serde(default)]
    pub name: Option<String>,
}

/// The config file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Detector settings.
    #[serde(default)]
    pub detector: DetectorConfig,
    /// Log files to read.
    #[serde(default, rename = "input")]
    pub inputs: Vec<InputConfig>,
    /// Named pools with expected weights.
    #[serde(default, rename = "pool")]
    pub pools: BTreeMap<String, PoolConfig>,
    /// Alert destinations.
    #[serde(default, rename = "sink")]
    pub sinks: Vec<Spanned<SinkSection>>,
    /// Which alerts go where.
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RouteSection>>,
    /// Alerts not to send.
    #[serde(default, rename = "silence")]
    pub silences: Vec<Spanned<SilenceSection>>,
    /// Alerts that mute others.
    #[serde(default, rename = "inhibit")]
    pub inhibits: Vec<Spanned<InhibitSection>>,
    /// A directory of extra pattern files.
    pub patterns_dir: Option<PathBuf>,
    /// Lines longer than this many bytes are skipped and counted.
    pub max_line_bytes: Option<usize>,
    /// Where `run` saves its state (relative paths are from the config file).
    pub state_dir: Option<PathBuf>,
    /// `run`'s HTTP endpoint (`/metrics`, `/healthz`, `/readyz`, `/api/v1/alerts`).
    #[serde(default)]
    pub server: ServerConfig,
}

/// `[server]`: `run`'s HTTP endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `ADDR:PORT`, or `off` (default `127.0.0.1:9187`).
    pub listen: Option<Spanned<String>>,
    /// Backends per pool with series of their own on `/metrics`; the rest are summed under
    /// `_other` (default 1,000).
    pub metrics_max_backends: Option<usize>,
}

/// Where `run` listens when nothing says: loopback only, so a sidecar exposes nothing
/// beyond its host unless told to.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";

/// Per-pool backends with series of their own on `/metrics`.
pub const DEFAULT_METRICS_MAX_BACKENDS: usize = 1000;

/// `[server]` as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Where to listen; `None`: off.
    pub listen: Option<std::net::SocketAddr>,
    /// Backends per pool with series of their own.
    pub metrics_max_backends: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: DEFAULT_LISTEN.parse().ok(),
            metrics_max_backends: DEFAULT_METRICS_MAX_BACKENDS,
        }
    }
}

/// Reads a `listen` value: `ADDR:PORT` or `off`.
pub fn parse_listen(text: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|_| {
        format!(
            "listen = {text:?} is not ADDR:PORT; write e.g. \"127.0.0.1:9187\", \"0.0.0.0:9187\" to be scraped from other hosts, or \"off\""
        )
    })
}

/// A fully resolved input.
#[derive(Debug)]
pub struct InputSettings {
    /// Display name.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The compiled parser.
    pub parser: Parser,
    /// The name of the format, for messages.
    pub format_name: String,
    /// Default pool for lines that do not name one.
    pub pool: String,
    /// Where `run` starts.
    pub start_at: StartAt,
    /// The container wrapping taken off its lines.
    pub wrapping: Wrapping,
    /// The syslog address `run` listens on, for a syslog input (its `path` then only names it).
    pub syslog: Option<SyslogListen>,
}

/// Everything a run needs, validated.
#[derive(Debug)]
pub struct Settings {
    /// Detector settings.
    pub detector: DetectorConfig,
    /// Inputs, in config order.
    pub inputs: Vec<InputSettings>,
    /// What each configured pool is expected to look like (weights, slow start).
    pub expectations: BTreeMap<String, PoolExpectation>,
    /// Sinks, routes, silences and inhibition, as written; built by `alert`.
    pub alerting: AlertingConfig,
    /// Known formats.
    pub patterns: PatternSet,
    /// Line length limit.
    pub max_line_bytes: usize,
    /// The config file, for messages.
    pub source: Option<PathBuf>,
    /// Where `run` saves its state, when the config says.
    pub state_dir: Option<PathBuf>,
    /// `run`'s HTTP endpoint.
    pub server: ServerSettings,
    /// The balancer configs the expectations were read from (`nginx_upstream`,
    /// `haproxy_backend`): `run` reloads when one changes.
    pub balancer_files: Vec<PathBuf>,
}

/// Adds every `*.toml` file in `dir` to `patterns` (in name order; a user pattern with a
/// built-in's name replaces it). Errors name the file, and its line when the pattern is bad.
pub fn load_patterns(patterns: &mut PatternSet, dir: &Path) -> Result<(), PatternsError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| PatternsError::Directory { dir: dir.to_path_buf(), source })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = crate::source::read_capped(&path, MAX_CONFIG_BYTES)
            .map_err(|source| PatternsError::File { path: path.clone(), source })?;
        patterns.add_file(&path, &text)?;
    }
    Ok(())
}

/// Why a patterns directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PatternsError {
    /// The directory cannot be listed.
    #[error("cannot read the patterns directory {}", dir.display())]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The error from the system.
        source: std::io::Error,
    },
    /// A pattern file cannot be read.
    #[error("cannot read pattern {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The error from the system.
        source: std::io::Error,
    },
    /// A pattern file is wrong (the error names its line).
    #[error(transparent)]
    Pattern(#[from] crate::parse::PatternError),
}

/// Why an input's parser could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ParserSetupError {
    /// The sample lines for `auto` could not be read.
    #[error(transparent)]
    Sample(#[from] crate::source::error::SourceError),
    /// No parser fits what was asked.
    #[error(transparent)]
    Choice(#[from] crate::parse::ChoiceError),
}

/// For serde's "unknown field `x`, expected one of `a`, `b`": the closest known key.
fn did_you_mean(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return String::new() };
    let Some((unknown, expected)) = rest.split_once('`') else { return String::new() };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|known| (strsim::levenshtein(unknown, known), known))
        .min()
        .filter(|(distance, known)| *distance <= 2.max(known.len() / 3))
        .map(|(_, known)| format!("; did you mean `{known}`?"))
        .unwrap_or_default()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// Builds a parser from a format name and/or log_format text, reading `sample`'s first lines
/// when the format is `auto` (parsing does no IO; this is where a config's files are read).
pub fn build_parser(
    patterns: &PatternSet,
    format: Option<&str>,
    log_format: Option<&str>,
    custom_variables: &[String],
    sample: Option<&Path>,
) -> Result<(Parser, String), ParserSetupError> {
    let lines = match (format, log_format, sample) {
        (Some("auto"), None, Some(path)) => {
            crate::source::once::sample_lines(path, crate::parse::AUTO_SAMPLE_LINES)?
        }
        _ => Vec::new(),
    };
    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let source = sample.map(|p| p.display().to_string()).unwrap_or_default();
    let sample = sample.map(|_| crate::parse::Sample { source: &source, lines: &lines });
    Ok(crate::parse::build_parser(patterns, format, log_format, custom_variables, sample)?)
}

/// A pool's expectation, where in the config it was given, and the balancer files it was
/// read from (none for `weights`).
struct PoolSource {
    offset: usize,
    expectation: PoolExpectation,
    files: Vec<PathBuf>,
}

/// A pool's expectation from exactly one of its sources; an error has the offset to blame.
fn pool_expectation(
    pool: &str,
    config: &PoolConfig,
    base: &Path,
) -> Result<PoolSource, (Option<usize>, String)> {
    use crate::balancer::Kind;
    let read = |section: &Spanned<BalancerSection>, kind| {
        let span = section.span().start;
        let section = section.get_ref();
        let name = section.name.as_deref().unwrap_or(pool);
        crate::balancer::read(&base.join(&section.file), Some(kind))
            .and_then(|balancer| Ok((balancer.expectation(name)?, balancer.files)))
            .map(|(expectation, files)| PoolSource { offset: span, expectation, files })
            .map_err(|e| (Some(span), format!("pool `{pool}`: {e}")))
    };
    match (&config.weights, &config.nginx_upstream, &config.haproxy_backend) {
        (Some(weights), None, None) => Ok(PoolSource {
            offset: weights.span().start,
            expectation: PoolExpectation { weights: weights.get_ref().clone(), slow_start_s: None },
            files: Vec::new(),
        }),
        (None, Some(section), None) => read(section, Kind::Nginx),
        (None, None, Some(section)) => read(section, Kind::Haproxy),
        (None, None, None) => Err((
            None,
            format!(
                "pool `{pool}` says nothing about its weights; give `weights`, `nginx_upstream` \
                 or `haproxy_backend`, or drop the section to learn a baseline"
            ),
        )),
        _ => Err((
            None,
            format!(
                "pool `{pool}` has more than one of `weights`, `nginx_upstream` and \
                 `haproxy_backend`; keep one"
            ),
        )),
    }
}

impl Settings {
    /// Defaults with no config file.
    pub fn defaults() -> Self {
        Settings {
            detector: DetectorConfig::default(),
            inputs: Vec::new(),
            expectations: BTreeMap::new(),
            alerting: AlertingConfig::default(),
            patterns: PatternSet::builtin(),
            max_line_bytes: crate::source::DEFAULT_MAX_LINE_BYTES,
            source: None,
            state_dir: None,
            server: ServerSettings::default(),
            balancer_files: Vec::new(),
        }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            crate::source::read_capped(path, MAX_CONFIG_BYTES).map_err(|error| ConfigError {
                path: path.to_path_buf(),
                line: 0,
                message: format!("cannot read the config file: {error}"),
            })?;
        Self::from_toml(path, &text)
    }

    /// Validates config text; `path` is used for messages and relative paths.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let at = |offset: usize, message: String| ConfigError {
            path: path.to_path_buf(),
            line: line_of(text, offset),
            message,
        };
        let file: ConfigFile = toml::from_str(text).map_err(|error| {
            let message = error.message().trim_end();
            at(
                error.span().map_or(0, |s| s.start),
                format!("{message}{} (see README.md, \"Configuration\")", did_you_mean(message)),
            )
        })?;
        let key_offset =
            |key: &str| text.find(&format!("{key} =")).or_else(|| text.find(key)).unwrap_or(0);

        let detector = file.detector.clone();
        if let Err(invalid) = detector.validate() {
            return Err(at(
                key_offset(invalid.key),
                format!("detector.{} {}", invalid.key, invalid.message),
            ));
        }
        if file.max_line_bytes == Some(0) {
            return Err(at(
                key_offset("max_line_bytes"),
                "max_line_bytes must be at least 1; 65536 suits every balancer log".to_string(),
            ));
        }

        let mut patterns = PatternSet::builtin();
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(dir) = &file.patterns_dir {
            load_patterns(&mut patterns, &base.join(dir))
                .map_err(|e| at(key_offset("patterns_dir"), with_causes(&e)))?;
        }

        let mut expectations = BTreeMap::new();
        let mut balancer_files: Vec<PathBuf> = Vec::new();
        for (pool, config) in &file.pools {
            let PoolSource { offset: span, expectation, files } =
                pool_expectation(pool, config, base).map_err(|(offset, message)| {
                    at(offset.unwrap_or_else(|| key_offset("pool")), message)
                })?;
            let pool_weights = &expectation.weights;
            if pool_weights.is_empty() {
                return Err(at(
                    span,
                    format!(
                        "pool `{pool}` has no weights; list each backend, e.g. \"10.0.0.1:8080\" = 1"
                    ),
                ));
            }
            for (backend, weight) in pool_weights {
                if !weight.is_finite() || *weight < 0.0 {
                    return Err(at(
                        span,
                        format!("pool `{pool}`: weight of `{backend}` must be a number >= 0"),
                    ));
                }
            }
            if pool_weights.values().sum::<f64>() <= 0.0 {
                return Err(at(
                    span,
                    format!(
                        "pool `{pool}`: weights add up to 0; give at least one backend a positive weight"
                    ),
                ));
            }
            expectations.insert(pool.clone(), expectation);
            balancer_files.extend(files);
        }

        let mut inputs = Vec::new();
        let mut pools_seen = BTreeMap::new();
        for input in &file.inputs {
            let source_span = match (&input.path, &input.syslog) {
                (Some(path), None) => path.span().start,
                (None, Some(syslog)) => syslog.span().start,
                (path, syslog) => {
                    let path_at = path.as_ref().map(|p| p.span().start);
                    let offset = path_at.or(syslog.as_ref().map(|s| s.span().start));
                    let offset = offset.or(input.format.as_ref().map(|f| f.span().start));
                    return Err(at(
                        offset.unwrap_or(0),
                        "an [[input]] reads either a file (`path = \"/var/log/nginx/access.log\"`, a glob, or `-` for standard input) or syslog (`syslog = \"udp://127.0.0.1:5514\"`): give one of them".to_string(),
                    ));
                }
            };
            let syslog = match &input.syslog {
                Some(text) => Some(
                    text.get_ref().parse::<SyslogListen>().map_err(|m| at(text.span().start, m))?,
                ),
                None => None,
            };
            let span = input.format.as_ref().map_or(source_span, |f| f.span().start);
            let log_format_span = input.log_format.as_ref().map_or(span, |f| f.span().start);
            let given = input.path.as_ref().map(|p| p.get_ref().clone());
            // `-` is standard input, read as a stream by `run` (no lines to look at before);
            // a syslog input has none either.
            let stdin = given.as_deref() == Some(Path::new("-"));
            let path = match (&given, &syslog) {
                (_, Some(listen)) => PathBuf::from(listen.to_string()),
                (Some(p), None) if !stdin => base.join(p),
                _ => PathBuf::from("-"),
            };
            let has_lines_to_look_at = !stdin && syslog.is_none();
            // A glob's lines are looked at in its first match (none yet: the path as is, so
            // `auto` says there is nothing to recognise the format from).
            let sample = has_lines_to_look_at.then(|| {
                crate::source::tailer::candidates(&path).into_iter().next().unwrap_or(path.clone())
            });
            let (parser, format_name) = build_parser(
                &patterns,
                input.format.as_ref().map(|f| f.get_ref().as_str()),
                input.log_format.as_ref().map(|f| f.get_ref().as_str()),
                &input.custom_variables,
                sample.as_deref(),
            )
            .map_err(|error| {
                let span = if input.log_format.is_some() { log_format_span } else { span };
                at(span, with_causes(&error))
            })?;
            let name = input.name.clone().unwrap_or_else(|| match (&given, &syslog) {
                (Some(p), None) => p
                    .file_name()
                    .map_or_else(|| "input".to_string(), |n| n.to_string_lossy().into_owned()),
                _ => "syslog".to_string(),
            });
            let pool = input.pool.clone().unwrap_or_else(|| name.clone());
            let mut rest = pool.clone();
            for placeholder in crate::source::container::POOL_PLACEHOLDERS {
                rest = rest.replace(placeholder, "");
            }
            if rest.contains(['{', '}']) {
                return Err(at(
                    text.find(&format!("\"{pool}\"")).unwrap_or_else(|| key_offset("pool")),
                    format!(
                        "pool `{pool}`: a pool filled from each file's path takes only {{namespace}}, {{pod}} and {{container}} (from /var/log/containers and /var/log/pods paths), e.g. pool = \"{{namespace}}/{{container}}\""
                    ),
                ));
            }
            if let Some(other) = pools_seen.insert(pool.clone(), name.clone()) {
                return Err(at(
                    source_span,
                    format!(
                        "inputs `{other}` and `{name}` both feed pool `{pool}`; each input needs its own pool for now (each input keeps its own event-time clock)"
                    ),
                ));
            }
            inputs.push(InputSettings {
                name,
                path,
                parser,
                format_name,
                pool,
                start_at: input.start_at,
                wrapping: input.wrapping,
                syslog,
            });
        }

        let mut server = ServerSettings::default();
        if let Some(listen) = &file.server.listen {
            server.listen =
                parse_listen(listen.get_ref()).map_err(|m| at(listen.span().start, m))?;
        }
        match file.server.metrics_max_backends {
            Some(0) => {
                return Err(at(
                    key_offset("metrics_max_backends"),
                    "server.metrics_max_backends must be at least 1; the default is 1000"
                        .to_string(),
                ));
            }
            Some(n) => server.metrics_max_backends = n,
            None => {}
        }

        let locate = |spanned_start: usize| line_of(text, spanned_start);
        let alerting = AlertingConfig {
            sinks: file
                .sinks
                .iter()
                .map(|s| Located { line: locate(s.span().start), value: s.get_ref().clone() })
                .collect(),
            routes: file
                .routes
                .iter()
                .map(|s| Located { line: locate(s.span().start), value: s.get_ref().clone() })
                .collect(),
            silences: file
                .silences
                .iter()
                .map(|s| Located { line: locate(s.span().start), value: s.get_ref().clone() })
                .collect(),
            inhibits: file
                .inhibits
                .iter()
                .map(|s| Located { line: locate(s.span().start), value: s.get_ref().clone() })
                .collect(),
            source: path.to_path_buf(),
        };

        Ok(Settings {
            detector,
            inputs,
            expectations,
            alerting,
            patterns,
            max_line_bytes: file.max_line_bytes.unwrap_or(crate::source::DEFAULT_MAX_LINE_BYTES),
            source: Some(path.to_path_buf()),
            state_dir: file.state_dir.as_ref().map(|dir| base.join(dir)),
            server,
            balancer_files,
        })
    }

    /// The detector these settings describe.
    pub fn build_detector(&self) -> Detector {
        Detector::new(
            self.detector.clone(),
            self.expectations.iter().map(|(pool, e)| (pool.clone(), e.clone())).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, String> {
        Settings::from_toml(Path::new("/etc/skewtail.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_misspelt_key_gets_a_suggestion() {
        let error = load("[detector]\nwindwo_s = 10\n").unwrap_err();
        assert!(
            error.contains("/etc/skewtail.toml:2:") && error.contains("did you mean `window_s`?"),
            "{error}"
        );
        let error = load("[detector]\nzzzzzzzzzz = 10\n").unwrap_err();
        assert!(!error.contains("did you mean"), "{error}");
    }

    #[test]
    fn a_full_config_loads() {
        let settings = load(
            r#"
[detector]
window_s = 5
for_s = 20

[[input]]
path = "/var/log/nginx/access.log"
format = "upstream"
pool = "api"

[[input]]
name = "edge"
path = "edge.log"
log_format = '$remote_addr [$time_local] "$request" $status $upstream_addr $my_var'
custom_variables = ["my_var"]

[pool.api]
weights = { "10.0.0.1:8080" = 3, "10.0.0.2:8080" = 1 }

[[sink]]
type = "webhook"
name = "ops"
url = "https://hooks.example.com/T000/B000/XXXX"

[[sink]]
type = "stdout"
"#,
        )
        .unwrap();
        assert_eq!(settings.detector.window_s, 5);
        assert_eq!(settings.detector.min_requests, DetectorConfig::default().min_requests);
        assert_eq!(settings.inputs.len(), 2);
        assert_eq!(settings.inputs[0].pool, "api");
        assert_eq!(settings.inputs[1].pool, "edge");
        assert_eq!(settings.inputs[1].path, Path::new("/etc/edge.log"));
        assert_eq!(settings.expectations["api"].weights["10.0.0.1:8080"], 3.0);
        assert!(
            !format!("{settings:?}").contains("hooks.example.com"),
            "secrets never reach Debug output"
        );
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let cases = [
            ("[detector]\nwindow_s = 10\nwindwo = 3\n", ":3:", "unknown field `windwo`"),
            (
                "[[input]]\npath = \"a.log\"\nformat = \"nginks\"\n",
                ":3:",
                "unknown format `nginks`; known formats: auto, nginx, combined",
            ),
            (
                "[[input]]\npath = \"a.log\"\nlog_format = '[$time_local] $stauts'\n",
                ":3:",
                "did you mean `$status`?",
            ),
            ("[detector]\n\nalpha = 2.0\n", ":3:", "detector.alpha must be between 0 and 1"),
            ("[pool.api]\nweights = { a = -1 }\n", ":2:", "weight of `a` must be a number >= 0"),
            ("[[sink]]\ntype = \"pager\"\n", ":2:", "unknown variant `pager`"),
            (
                "[[input]]\npath = \"a.log\"\npool = \"p\"\n[[input]]\npath = \"b.log\"\npool = \"p\"\n",
                ":5:",
                "both feed pool `p`",
            ),
            (
                "[[input]]\npath = \"a.log\"\n\npool = \"{namespace}/{containr}\"\n",
                ":4:",
                "takes only {namespace}, {pod} and {container}",
            ),
        ];
        for (text, line, message) in cases {
            let error = load(text).unwrap_err();
            assert!(error.starts_with("/etc/skewtail.toml"), "{error}");
            assert!(error.contains(line), "{error} should be at line {line}");
            assert!(error.contains(message), "{error} should say {message}");
        }
    }

    #[test]
    fn pool_weights_from_the_balancer_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("upstreams.conf"),
            "upstream api {\n  server 10.0.1.1:8080 weight=3;\n  server 10.0.1.2:8080;\n  server 10.0.1.9:8080 backup;\n}\n",
        )
        .unwrap();
        let config = dir.path().join("skewtail.toml");
        std::fs::write(&config, "[pool.api]\nnginx_upstream = { file = \"upstreams.conf\" }\n")
            .unwrap();
        let settings = Settings::load(&config).unwrap();
        let weights = &settings.expectations["api"].weights;
        assert_eq!(weights["10.0.1.1:8080"], 3.0);
        assert_eq!(weights["10.0.1.9:8080"], 0.0);

        // Errors name skewtail's line and the balancer config's line.
        std::fs::write(
            &config,
            "\n[pool.api]\nhaproxy_backend = { file = \"upstreams.conf\", name = \"be\" }\n",
        )
        .unwrap();
        let error = Settings::load(&config).unwrap_err().to_string();
        assert!(error.contains("skewtail.toml:3:") && error.contains("no `backend be`"), "{error}");
        std::fs::write(
            &config,
            "[pool.api]\nweights = { a = 1 }\nnginx_upstream = { file = \"upstreams.conf\" }\n",
        )
        .unwrap();
        let error = Settings::load(&config).unwrap_err().to_string();
        assert!(error.contains("more than one of"), "{error}");
    }
}
