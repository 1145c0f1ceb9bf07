//! JSON access logs (Envoy `json_format`, Traefik, Caddy, Google Cloud, nginx `escape=json`):
//! one object per line, with record fields found by path.
//!
//! The scanner walks the line once and never builds a document: at each key it keeps only the
//! wanted paths that still match (a bit mask), skips whole subtrees nobody asked for (request
//! headers, TLS details) and notes where each wanted value lies. Values stay borrowed from the
//! line; string values keep their JSON escapes as logged (`\u0026`, `\"`), the way text formats
//! keep nginx's `\xHH`.
//!
//! A pattern lists, for each record field, one path or several (the first one present wins):
//! Traefik logs `ServiceURL` as a string in recent versions and as a Go `url.URL` object in
//! older ones, so its backend is `["ServiceURL", "ServiceURL.Host"]`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::template::{CompileError, Field, apply_field};
use super::{ParseError, ParseErrorKind, Record};

/// The most paths one format may name (the scanner tracks them in a `u64` mask).
const MAX_PATHS: usize = 64;

/// A `[json]` entry in a pattern file: where a record field is, and how it is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum JsonFieldSpec {
    /// One path: `status = "status"`.
    Path(String),
    /// Alternatives, the first present wins: `backend = ["ServiceURL", "ServiceURL.Host"]`.
    Paths(Vec<String>),
    /// With a unit or layout: `latency = { path = "Duration", unit = "ns" }`.
    Detailed(DetailedSpec),
}

/// The table form of a [`JsonFieldSpec`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailedSpec {
    /// One path.
    #[serde(default)]
    path: Option<String>,
    /// Alternatives, the first present wins.
    #[serde(default)]
    paths: Vec<String>,
    /// For `latency`/`upstream_latency`: `s`, `ms`, `us`, `ns` or `duration` (`"0.005s"`).
    #[serde(default)]
    unit: Option<String>,
    /// For `timestamp`: `iso8601`, `clf`, `epoch_s`, `epoch_ms`, `epoch_us` or `epoch_ns`.
    #[serde(default)]
    layout: Option<String>,
}

impl JsonFieldSpec {
    fn paths(&self) -> Vec<&str> {
        match self {
            JsonFieldSpec::Path(path) => vec![path.as_str()],
            JsonFieldSpec::Paths(paths) => paths.iter().map(String::as_str).collect(),
            JsonFieldSpec::Detailed(d) => {
                d.path.iter().chain(d.paths.iter()).map(String::as_str).collect()
            }
        }
    }

    /// The `field:modifier` spec understood by [`Field::from_spec`].
    fn field_spec(&self, field: &str) -> String {
        match self {
            JsonFieldSpec::Detailed(DetailedSpec { unit: Some(m), .. })
            | JsonFieldSpec::Detailed(DetailedSpec { layout: Some(m), .. }) => {
                format!("{field}:{m}")
            }
            _ => field.to_string(),
        }
    }
}

/// Where a value lies in the line and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    /// A string: the span is its content, without the quotes.
    String,
    /// A number, `true` or `false`.
    Scalar,
    /// `null`: the field exists but has no value.
    Null,
    /// An object or array.
    Compound,
}

#[derive(Debug, Clone, Copy)]
struct Found {
    start: u32,
    end: u32,
    kind: ValueKind,
}

/// One record field and the paths (indexes into `JsonFormat::paths`) that may hold it.
#[derive(Debug, Clone)]
struct FieldSource {
    field: Field,
    name: String,
    paths: Vec<usize>,
}

/// A condition a line must meet to be a request (Caddy's `logger` must be an access logger);
/// lines that fail it are valid non-requests.
#[derive(Debug, Clone)]
struct Requirement {
    path: usize,
    value: Box<[u8]>,
    prefix: bool,
}

/// A compiled JSON format.
#[derive(Debug, Clone)]
pub struct JsonFormat {
    /// Each wanted path, split into its keys.
    paths: Vec<Box<[Box<[u8]>]>>,
    /// Per depth and first byte of a key, the paths whose key at that depth starts with it:
    /// most keys of a line (headers, TLS details) are ruled out by one lookup.
    first_byte_masks: Vec<[u64; 256]>,
    /// The record fields in the order they are applied.
    sources: Vec<FieldSource>,
    requirements: Vec<Requirement>,
    has_pool: bool,
    has_backend: bool,
    /// Lines that are not JSON but are known not to be requests (a plugin's debug output in
    /// the same stream): counted as `other`; every other non-JSON line is unparsed.
    other_lines: Option<regex::bytes::RegexSet>,
}

/// What the JSON scanner did not find where it looked: the column of a syntax error.
#[derive(Debug, Clone, Copy)]
struct SyntaxError(usize);

/// `segment` of a [`ParseError`] for a line that is not valid JSON.
const SYNTAX_SEGMENT: u16 = u16::MAX;
/// `segment` of a [`ParseError`] for an entry that fails a requirement.
const REQUIREMENT_SEGMENT: u16 = u16::MAX - 1;

impl JsonFormat {
    /// Compiles `fields` (record field name to paths) and `require` (path to required value;
    /// a value ending in `*` is a prefix).
    pub fn compile(
        fields: &BTreeMap<String, JsonFieldSpec>,
        require: &BTreeMap<String, String>,
    ) -> Result<Self, CompileError> {
        let mut paths: Vec<Box<[Box<[u8]>]>> = Vec::new();
        let mut intern = |path: &str| -> Result<usize, CompileError> {
            let keys: Box<[Box<[u8]>]> =
                path.split('.').map(|key| key.as_bytes().to_vec().into_boxed_slice()).collect();
            if keys.iter().any(|key| key.is_empty()) {
                return Err(CompileError::Malformed {
                    column: 1,
                    problem: "a JSON path has an empty key; write keys separated by single dots",
                });
            }
            if let Some(index) = paths.iter().position(|p| *p == keys) {
                return Ok(index);
            }
            if paths.len() == MAX_PATHS {
                return Err(CompileError::Malformed {
                    column: 1,
                    problem: "a JSON format may name at most 64 paths",
                });
            }
            paths.push(keys);
            Ok(paths.len() - 1)
        };
        let mut sources = Vec::new();
        for (name, spec) in fields {
            let field = Field::from_spec(name, &spec.field_spec(name))?;
            let spec_paths = spec.paths();
            if spec_paths.is_empty() {
                return Err(CompileError::Malformed {
                    column: 1,
                    problem: "a [json] entry has no path; give `path` or `paths`",
                });
            }
            let paths = spec_paths.into_iter().map(&mut intern).collect::<Result<_, _>>()?;
            sources.push(FieldSource { field, name: name.clone(), paths });
        }
        if !sources.iter().any(|s| matches!(s.field, Field::Timestamp(_))) {
            return Err(CompileError::NoTimestamp { suggestion: "a `timestamp` entry in [json]" });
        }
        // Pools first, so a backend's `Retries` and list handling see a settled record; the
        // rest in name order.
        sources.sort_by_key(|s| !matches!(s.field, Field::Pool));
        let mut requirements = Vec::new();
        for (path, value) in require {
            let (value, prefix) = match value.strip_suffix('*') {
                Some(prefix) => (prefix, true),
                None => (value.as_str(), false),
            };
            requirements.push(Requirement {
                path: intern(path)?,
                value: value.as_bytes().into(),
                prefix,
            });
        }
        let has = |wanted: fn(Field) -> bool| sources.iter().any(|s| wanted(s.field));
        let max_depth = paths.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut first_byte_masks = vec![[0u64; 256]; max_depth];
        for (index, keys) in paths.iter().enumerate() {
            for (depth, key) in keys.iter().enumerate() {
                first_byte_masks[depth][usize::from(key[0])] |= 1 << index;
            }
        }
        Ok(JsonFormat {
            first_byte_masks,
            has_pool: has(|f| matches!(f, Field::Pool)),
            has_backend: has(|f| matches!(f, Field::Backend)),
            paths,
            sources,
            requirements,
            other_lines: None,
        })
    }

    /// Whether the format names a pool.
    pub fn has_pool_field(&self) -> bool {
        self.has_pool
    }

    /// Whether the format names the backend.
    pub fn has_backend_field(&self) -> bool {
        self.has_backend
    }

    /// Counts non-JSON lines matching any of `other_lines` as valid non-requests (`other`).
    pub(super) fn with_other_lines(mut self, other_lines: Option<regex::bytes::RegexSet>) -> Self {
        self.other_lines = other_lines;
        self
    }

    /// How many record fields the format fills.
    pub fn n_fields(&self) -> usize {
        self.sources.len()
    }

    /// Parses one line.
    pub fn parse<'a>(&mut self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        #[allow(clippy::cast_possible_truncation)] // lines are far shorter than 4 GiB
        let error =
            |column: usize, segment: u16, kind| ParseError { column: column as u32, segment, kind };
        let start = skip_whitespace(line, 0);
        if line.get(start) != Some(&b'{') {
            // Not JSON: unparsed, so that a wrong format or random bytes show as such, unless
            // the pattern knows the line for another program's.
            let known = self.other_lines.as_ref().is_some_and(|other| other.is_match(line));
            let kind =
                if known { ParseErrorKind::NotARequest } else { ParseErrorKind::LiteralMismatch };
            return Err(error(start, SYNTAX_SEGMENT, kind));
        }
        let mut found = [None; MAX_PATHS];
        let all =
            if self.paths.len() == MAX_PATHS { u64::MAX } else { (1u64 << self.paths.len()) - 1 };
        let end =
            self.scan_object(line, start, 0, all, &mut found).map_err(|SyntaxError(column)| {
                error(column, SYNTAX_SEGMENT, ParseErrorKind::LiteralMismatch)
            })?;
        // One record per line: anything after the object but whitespace (a second object,
        // a torn write) makes the line unparsed rather than half-read.
        let rest = skip_whitespace(line, end);
        if rest < line.len() {
            return Err(error(rest, SYNTAX_SEGMENT, ParseErrorKind::LiteralMismatch));
        }
        for requirement in &self.requirements {
            let value =
                found[requirement.path].map(|f: Found| &line[f.start as usize..f.end as usize]);
            let met = value.is_some_and(|value| {
                if requirement.prefix {
                    value.starts_with(&requirement.value)
                } else {
                    *value == *requirement.value
                }
            });
            if !met {
                return Err(error(start, REQUIREMENT_SEGMENT, ParseErrorKind::NotARequest));
            }
        }
        let mut record = Record::default();
        let mut has_time = false;
        for (index, source) in self.sources.iter().enumerate() {
            #[allow(clippy::cast_possible_truncation)] // at most 64 paths
            let segment = index as u16;
            // The first path with a value; `null` counts as "logged, but empty".
            let Some(value) = source
                .paths
                .iter()
                .find_map(|&path| found[path].filter(|f| f.kind != ValueKind::Compound))
            else {
                continue;
            };
            let text = match value.kind {
                ValueKind::Null => &b""[..],
                _ => &line[value.start as usize..value.end as usize],
            };
            if let Field::Timestamp(layout) = source.field {
                record.timestamp_ms = layout.parse(text).ok_or_else(|| {
                    error(value.start as usize, segment, ParseErrorKind::BadTimestamp)
                })?;
                has_time = true;
            } else {
                apply_field(source.field, text, &mut record).ok_or_else(|| {
                    error(value.start as usize, segment, ParseErrorKind::BadNumber)
                })?;
            }
        }
        if !has_time {
            return Err(error(start, self.timestamp_segment(), ParseErrorKind::NoTimestamp));
        }
        Ok(record)
    }

    fn timestamp_segment(&self) -> u16 {
        let index = self.sources.iter().position(|s| matches!(s.field, Field::Timestamp(_)));
        u16::try_from(index.unwrap_or(0)).unwrap_or(0)
    }

    /// Scans the object starting at `pos` (a `{`), noting the wanted values under it. `mask`
    /// holds the paths whose first `depth` keys led here. Returns the position after the `}`.
    fn scan_object(
        &self,
        line: &[u8],
        pos: usize,
        depth: usize,
        mask: u64,
        found: &mut [Option<Found>; MAX_PATHS],
    ) -> Result<usize, SyntaxError> {
        let mut pos = skip_whitespace(line, pos + 1);
        if line.get(pos) == Some(&b'}') {
            return Ok(pos + 1);
        }
        loop {
            if line.get(pos) != Some(&b'"') {
                return Err(SyntaxError(pos));
            }
            let key_end = string_end(line, pos + 1).ok_or(SyntaxError(pos))?;
            let key = &line[pos + 1..key_end];
            pos = skip_whitespace(line, key_end + 1);
            if line.get(pos) != Some(&b':') {
                return Err(SyntaxError(pos));
            }
            pos = skip_whitespace(line, pos + 1);
            let matching = self.paths_with_key(mask, depth, key);
            pos = if matching == 0 {
                skip_value(line, pos)?
            } else {
                self.scan_value(line, pos, depth + 1, matching, found)?
            };
            pos = skip_whitespace(line, pos);
            match line.get(pos) {
                Some(b',') => pos = skip_whitespace(line, pos + 1),
                Some(b'}') => return Ok(pos + 1),
                _ => return Err(SyntaxError(pos)),
            }
        }
    }

    /// The paths in `mask` whose key at `depth` is `key`.
    #[inline]
    fn paths_with_key(&self, mask: u64, depth: usize, key: &[u8]) -> u64 {
        let Some(&first) = key.first() else { return 0 };
        let mut mask = mask & self.first_byte_masks.get(depth).map_or(0, |m| m[usize::from(first)]);
        let mut matching = 0;
        while mask != 0 {
            let index = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if self.paths[index].get(depth).is_some_and(|k| **k == *key) {
                matching |= 1 << index;
            }
        }
        matching
    }

    /// Reads the value at `pos` for the paths in `mask`, whose first `depth` keys led here:
    /// records it for the paths that end here and descends for the others.
    fn scan_value(
        &self,
        line: &[u8],
        pos: usize,
        depth: usize,
        mask: u64,
        found: &mut [Option<Found>; MAX_PATHS],
    ) -> Result<usize, SyntaxError> {
        let mut deeper = 0u64;
        let mut ending = 0u64;
        let mut bits = mask;
        while bits != 0 {
            let index = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if self.paths[index].len() > depth {
                deeper |= 1 << index;
            } else {
                ending |= 1 << index;
            }
        }
        let (end, value) = match line.get(pos) {
            Some(b'"') => {
                let close = string_end(line, pos + 1).ok_or(SyntaxError(pos))?;
                (close + 1, (pos + 1, close, ValueKind::String))
            }
            Some(b'{') if deeper != 0 => {
                let end = self.scan_object(line, pos, depth, deeper, found)?;
                (end, (pos, end, ValueKind::Compound))
            }
            Some(b'{' | b'[') => {
                let end = skip_value(line, pos)?;
                (end, (pos, end, ValueKind::Compound))
            }
            Some(_) => {
                let end = skip_value(line, pos)?;
                let kind =
                    if &line[pos..end] == b"null" { ValueKind::Null } else { ValueKind::Scalar };
                (end, (pos, end, kind))
            }
            None => return Err(SyntaxError(pos)),
        };
        #[allow(clippy::cast_possible_truncation)] // lines are far shorter than 4 GiB
        let value = Found { start: value.0 as u32, end: value.1 as u32, kind: value.2 };
        while ending != 0 {
            let index = ending.trailing_zeros() as usize;
            ending &= ending - 1;
            found[index] = Some(value);
        }
        Ok(end)
    }

    /// Describes a [`ParseError`] for a human.
    pub fn explain(&self, error: &ParseError) -> String {
        let column = error.column + 1;
        let field = |segment: u16| {
            self.sources.get(usize::from(segment)).map_or_else(
                || "a field".to_string(),
                |s| {
                    let paths: Vec<String> = s
                        .paths
                        .iter()
                        .map(|&p| {
                            let keys: Vec<_> =
                                self.paths[p].iter().map(|k| String::from_utf8_lossy(k)).collect();
                            format!("`{}`", keys.join("."))
                        })
                        .collect();
                    format!("{} ({})", s.name, paths.join(" or "))
                },
            )
        };
        match (error.kind, error.segment) {
            (ParseErrorKind::NotARequest, SYNTAX_SEGMENT) => {
                "not JSON, and known for another program's line (the pattern's `other`)".to_string()
            }
            (ParseErrorKind::NotARequest, _) => format!(
                "a JSON entry that is not an access-log entry (it does not have {})",
                self.requirements
                    .iter()
                    .map(|r| format!(
                        "{} = `{}{}`",
                        self.paths[r.path]
                            .iter()
                            .map(|k| String::from_utf8_lossy(k))
                            .collect::<Vec<_>>()
                            .join("."),
                        String::from_utf8_lossy(&r.value),
                        if r.prefix { "*" } else { "" }
                    ))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            (ParseErrorKind::LiteralMismatch, _) => format!(
                "column {column}: not valid JSON here (each line must be exactly one JSON \
                 object)"
            ),
            (ParseErrorKind::NoTimestamp, segment) => {
                format!("the entry has no {}", field(segment))
            }
            (ParseErrorKind::BadTimestamp, segment) => {
                format!(
                    "column {column}: {} is not a timestamp in the pattern's layout",
                    field(segment)
                )
            }
            (_, segment) => format!("column {column}: {} is not a number or empty", field(segment)),
        }
    }
}

#[inline]
fn skip_whitespace(line: &[u8], mut pos: usize) -> usize {
    while line.get(pos).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
        pos += 1;
    }
    pos
}

/// The position of the quote that closes a string whose content starts at `pos`.
#[inline(always)]
fn string_end(line: &[u8], mut pos: usize) -> Option<usize> {
    // Most keys and values are short: a plain scan beats setting up a SIMD search.
    for (offset, &b) in line.get(pos..)?.iter().take(16).enumerate() {
        match b {
            b'"' => return Some(pos + offset),
            b'\\' => {
                pos += offset + 2;
                return string_end_long(line, pos);
            }
            _ => {}
        }
    }
    string_end_long(line, pos + 16)
}

#[inline(never)]
fn string_end_long(line: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let at = pos + memchr::memchr2(b'"', b'\\', &line[pos.min(line.len())..])?;
        if line[at] == b'"' {
            return Some(at);
        }
        pos = at + 2; // skip the escaped byte
    }
}

/// The position after the value starting at `pos`, without looking inside it.
fn skip_value(line: &[u8], pos: usize) -> Result<usize, SyntaxError> {
    match line.get(pos) {
        Some(b'"') => string_end(line, pos + 1).map(|close| close + 1).ok_or(SyntaxError(pos)),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut at = pos;
            while at < line.len() {
                match line[at] {
                    // Strings are most of a skipped subtree (headers): jump over them.
                    b'"' => at = string_end(line, at + 1).ok_or(SyntaxError(at))?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
            Err(SyntaxError(line.len()))
        }
        Some(_) => {
            let len = line[pos..]
                .iter()
                .take_while(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
                .count();
            if len == 0 { Err(SyntaxError(pos)) } else { Ok(pos + len) }
        }
        None => Err(SyntaxError(pos)),
    }
}

#[cfg(test)]
mod tests;
