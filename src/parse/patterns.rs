//! Named formats: data files in `patterns/`, built into the binary, plus any the user drops
//! into a patterns directory.
//!
//! A pattern file is TOML: `name`, `kind` (the compiler to use), a one-line `description`,
//! and what that compiler reads:
//! - `nginx`, `envoy`, `haproxy`: a format string, `log_format`, in that balancer's own
//!   language (HAProxy without one means its built-in httplog/httpslog/tcplog layouts), with
//!   optional `variants` (other layouts the same product writes), `other` (regexes for valid
//!   non-request lines in the same stream) and, for nginx, `[fields]` mapping the user's own
//!   variables to record fields (`server = "backend"`, `upstream_ms = "upstream_latency:ms"`);
//! - `json`: a `[json]` table from record field to path (`latency = { path = "duration",
//!   unit = "s" }`, `timestamp = { path = "ts", layout = "epoch_s" }`) and an optional
//!   `[require]` table of values an access entry must have;
//! - `aws_alb`, `aws_elb`, `traefik`: fixed layouts read by hand-written parsers.
//!
//! Keeping formats as data means adding one needs no recompiling and each can be tested alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::json::JsonFieldSpec;
use super::{
    AwsKind, AwsLog, CompileError, HaproxyLog, JsonFormat, Parser, Template, TraefikClf, Variants,
};

/// The pattern files compiled into the binary.
const BUILTIN: &[(&str, &str)] = &[
    ("patterns/nginx_combined.toml", include_str!("../../patterns/nginx_combined.toml")),
    ("patterns/nginx_main.toml", include_str!("../../patterns/nginx_main.toml")),
    ("patterns/nginx_common.toml", include_str!("../../patterns/nginx_common.toml")),
    ("patterns/nginx_upstream.toml", include_str!("../../patterns/nginx_upstream.toml")),
    ("patterns/ingress_nginx.toml", include_str!("../../patterns/ingress_nginx.toml")),
    ("patterns/haproxy.toml", include_str!("../../patterns/haproxy.toml")),
    ("patterns/aws_alb.toml", include_str!("../../patterns/aws_alb.toml")),
    ("patterns/aws_elb.toml", include_str!("../../patterns/aws_elb.toml")),
    ("patterns/traefik.toml", include_str!("../../patterns/traefik.toml")),
    ("patterns/nginx_proxy_manager.toml", include_str!("../../patterns/nginx_proxy_manager.toml")),
    ("patterns/nginx_json.toml", include_str!("../../patterns/nginx_json.toml")),
    ("patterns/envoy.toml", include_str!("../../patterns/envoy.toml")),
    ("patterns/envoy_json.toml", include_str!("../../patterns/envoy_json.toml")),
    ("patterns/traefik_json.toml", include_str!("../../patterns/traefik_json.toml")),
    ("patterns/caddy.toml", include_str!("../../patterns/caddy.toml")),
    ("patterns/gcp_lb.toml", include_str!("../../patterns/gcp_lb.toml")),
];

/// One named format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// The name used with `--format` and in the config.
    pub name: String,
    /// Which compiler reads `log_format`.
    pub kind: PatternKind,
    /// One line for `skewtail patterns` listings.
    pub description: String,
    /// The format text (nginx patterns).
    #[serde(default)]
    pub log_format: Option<String>,
    /// Other layouts the same product writes, tried in order when `log_format` does not match.
    #[serde(default)]
    pub variants: Vec<String>,
    /// Variables that feed record fields (`server = "backend"`), for nginx patterns.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Regexes for valid lines that are not requests (format-string patterns).
    #[serde(default)]
    pub other: Vec<String>,
    /// Record field to JSON path(s), for `json` patterns.
    #[serde(default)]
    pub json: BTreeMap<String, JsonFieldSpec>,
    /// JSON path to the value an access entry must have (`*` at the end for a prefix).
    #[serde(default)]
    pub require: BTreeMap<String, String>,
    /// Where the pattern came from (a file path, or `patterns/...` for built-ins).
    #[serde(skip)]
    pub origin: PathBuf,
}

/// The format languages a pattern can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternKind {
    /// An nginx `log_format`.
    Nginx,
    /// An Envoy access-log format string.
    Envoy,
    /// A HAProxy `log-format`, or without one the built-in HTTP, HTTPS and TCP log layouts.
    Haproxy,
    /// One JSON object per line.
    Json,
    /// AWS Application Load Balancer access logs.
    AwsAlb,
    /// AWS Classic Load Balancer access logs.
    AwsElb,
    /// Traefik's common (CLF) access log.
    Traefik,
}

/// A pattern file that could not be used, with the file and line to fix.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// The file is not a valid pattern.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The pattern file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// All named formats known to this run.
#[derive(Debug, Clone)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

fn parse_pattern_file(path: &Path, text: &str) -> Result<Pattern, PatternError> {
    let mut pattern: Pattern = toml::from_str(text).map_err(|error| PatternError::Invalid {
        path: path.to_path_buf(),
        line: error.span().map_or(1, |span| line_of(text, span.start)),
        message: error.message().to_string(),
    })?;
    pattern.origin = path.to_path_buf();
    let misplaced = match pattern.kind {
        PatternKind::Nginx | PatternKind::Envoy | PatternKind::Haproxy
            if !pattern.json.is_empty() || !pattern.require.is_empty() =>
        {
            Some((
                "[json]",
                "`[json]` and `[require]` are for `kind = \"json\"` patterns; a format-string pattern names its fields in `log_format`",
            ))
        }
        PatternKind::Envoy | PatternKind::Haproxy | PatternKind::Json
            if !pattern.fields.is_empty() =>
        {
            Some((
                "[fields]",
                "`[fields]` maps nginx variables and applies to `kind = \"nginx\"` patterns only",
            ))
        }
        PatternKind::Json | PatternKind::AwsAlb | PatternKind::AwsElb | PatternKind::Traefik
            if pattern.log_format.is_some() || !pattern.variants.is_empty() =>
        {
            Some((
                "log_format",
                "this kind has a fixed layout (or `[json]` paths); `log_format` and `variants` go with nginx, envoy and haproxy patterns",
            ))
        }
        _ => None,
    };
    if let Some((key, message)) = misplaced {
        return Err(PatternError::Invalid {
            path: path.to_path_buf(),
            line: text.find(key).map_or(1, |offset| line_of(text, offset)),
            message: message.to_string(),
        });
    }
    // Compile once now so a broken format is reported at load time with its line.
    pattern.compile(&[]).map_err(|error| {
        let key = match pattern.kind {
            _ if matches!(error, CompileError::BadRegex { .. }) => "other",
            PatternKind::Json if matches!(error, CompileError::Malformed { .. }) => "[require]",
            PatternKind::Json => "[json]",
            _ if matches!(error, CompileError::BadRegex { .. }) => "other",
            _ if matches!(error, CompileError::BadFieldSpec { .. }) => "[fields]",
            _ => "log_format",
        };
        PatternError::Invalid {
            path: path.to_path_buf(),
            line: text.find(key).map_or(1, |offset| line_of(text, offset)),
            message: format!("{}: {error}", key.trim_matches(['[', ']'])),
        }
    })?;
    Ok(pattern)
}

impl Pattern {
    /// Builds a parser from this pattern.
    pub fn compile(&self, custom_variables: &[String]) -> Result<Parser, CompileError> {
        let format_text = self.log_format.as_deref();
        let templates = |compile: &dyn Fn(&str) -> Result<Template, CompileError>| {
            let other = (!self.other.is_empty())
                .then(|| regex::bytes::RegexSet::new(&self.other))
                .transpose()
                .map_err(|error| CompileError::BadRegex { problem: error.to_string() })?;
            let mut templates = Vec::with_capacity(1 + self.variants.len());
            for text in format_text.into_iter().chain(self.variants.iter().map(String::as_str)) {
                templates.push(compile(text)?.with_other_lines(other.clone()));
            }
            Ok(if templates.len() == 1 {
                Parser::Template(templates.remove(0))
            } else {
                Parser::Variants(Variants::new(templates).ok_or(CompileError::Empty)?)
            })
        };
        match self.kind {
            PatternKind::Nginx => templates(&|text| {
                super::nginx::compile_with_fields(text, custom_variables, &self.fields)
            }),
            PatternKind::Envoy => templates(&super::envoy::compile),
            PatternKind::Haproxy if format_text.is_some() => {
                templates(&super::haproxy_format::compile)
            }
            PatternKind::Haproxy => Ok(Parser::Haproxy(HaproxyLog::new())),
            PatternKind::Json => {
                let other = (!self.other.is_empty())
                    .then(|| regex::bytes::RegexSet::new(&self.other))
                    .transpose()
                    .map_err(|error| CompileError::BadRegex { problem: error.to_string() })?;
                Ok(Parser::Json(
                    JsonFormat::compile(&self.json, &self.require)?.with_other_lines(other),
                ))
            }
            PatternKind::AwsAlb => Ok(Parser::Aws(AwsLog::new(AwsKind::Alb))),
            PatternKind::AwsElb => Ok(Parser::Aws(AwsLog::new(AwsKind::Elb))),
            PatternKind::Traefik => Ok(Parser::Traefik(TraefikClf::new())),
        }
    }
}

impl PatternSet {
    /// The patterns built into the binary.
    pub fn builtin() -> Self {
        let patterns = BUILTIN
            .iter()
            .map(|(path, text)| {
                parse_pattern_file(Path::new(path), text)
                    .unwrap_or_else(|error| unreachable!("built-in pattern is tested: {error}"))
            })
            .collect();
        PatternSet { patterns }
    }

    /// Adds the pattern file `path` holding `text` (read by whoever loads the config: parsing
    /// does no IO); a user pattern with a built-in's name replaces it.
    pub fn add_file(&mut self, path: &Path, text: &str) -> Result<(), PatternError> {
        let pattern = parse_pattern_file(path, text)?;
        self.patterns.retain(|p| p.name != pattern.name);
        self.patterns.push(pattern);
        Ok(())
    }

    /// Finds a pattern by name.
    pub fn get(&self, name: &str) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.name == name)
    }

    /// All pattern names, for error messages and listings.
    pub fn names(&self) -> Vec<&str> {
        self.patterns.iter().map(|p| p.name.as_str()).collect()
    }

    /// All patterns.
    pub fn iter(&self) -> impl Iterator<Item = &Pattern> {
        self.patterns.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_pattern_loads() {
        let set = PatternSet::builtin();
        assert_eq!(
            set.names(),
            [
                "combined",
                "main",
                "common",
                "upstream",
                "ingress_nginx",
                "haproxy",
                "aws_alb",
                "aws_elb",
                "traefik",
                "nginx_proxy_manager",
                "nginx_json",
                "envoy",
                "envoy_json",
                "traefik_json",
                "caddy",
                "gcp_lb"
            ]
        );
    }

    #[test]
    fn broken_user_pattern_names_file_and_line() {
        let mut set = PatternSet::builtin();
        let add = |set: &mut PatternSet, text: &str| {
            set.add_file(Path::new("/etc/skewtail/patterns/zbad.toml"), text)
                .map_err(|e| e.to_string())
        };
        add(&mut set, "name = \"mine\"\nkind = \"nginx\"\ndescription = \"x\"\nlog_format = '[$time_local] $status'\n").unwrap();
        assert!(set.get("mine").is_some());

        let error = add(&mut set, "name = \"bad\"\nkind = \"nginx\"\ndescription = \"x\"\nlog_format = '[$time_local] $nope'\n").unwrap_err();
        assert!(error.contains("zbad.toml:4:"), "{error}");
        assert!(error.contains("unknown variable `$nope`"), "{error}");

        let error = add(&mut set, "name = \"bad\"\nkind = \"apache\"\n").unwrap_err();
        assert!(error.contains("zbad.toml:2:"), "{error}");

        // JSON patterns: a bad unit names the [json] table's line.
        let error = add(
            &mut set,
            "name = \"bad\"\nkind = \"json\"\ndescription = \"x\"\n\n[json]\ntimestamp = \"t\"\nlatency = { path = \"d\", unit = \"hours\" }\n",
        )
        .unwrap_err();
        assert!(
            error.contains(
                "zbad.toml:5: json: `latency` is mapped to `latency:hours`: unknown unit `hours`"
            ),
            "{error}"
        );
        // A table that does not belong to the kind.
        let error = add(
            &mut set,
            "name = \"bad\"\nkind = \"envoy\"\ndescription = \"x\"\nlog_format = '[%START_TIME%] %UPSTREAM_HOST%'\n[fields]\nx = \"backend\"\n",
        )
        .unwrap_err();
        assert!(error.contains("zbad.toml:5: `[fields]` maps nginx variables"), "{error}");
        // A user JSON pattern works without recompiling.
        add(
            &mut set,
            "name = \"gw\"\nkind = \"json\"\ndescription = \"x\"\n[json]\ntimestamp = { path = \"ts\", layout = \"epoch_ms\" }\nbackend = \"up.addr\"\n",
        )
        .unwrap();
        let mut parser = set.get("gw").unwrap().compile(&[]).unwrap();
        let record = parser.parse(br#"{"ts":1700000000000,"up":{"addr":"10.0.0.9:80"}}"#).unwrap();
        assert_eq!(record.backend, Some(&b"10.0.0.9:80"[..]));
    }
}
