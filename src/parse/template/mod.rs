//! The format-string engine shared by nginx `log_format`, Envoy access-log formats and HAProxy
//! `log-format`.
//!
//! All three describe a line as fixed text ("literals") with placeholders between them. Each
//! dialect's front end (`nginx.rs`, `envoy.rs`, `haproxy_format.rs`) turns its own placeholder
//! syntax into [`Segment`]s and says which record [`Field`] each one feeds; this module compiles
//! the segments into a flat list of steps and matches lines against it. A placeholder's value
//! runs up to the next literal, found with `memchr`: no regex, no backtracking, no allocation.
//!
//! Two habits of real logs need care:
//! - nginx `$upstream_*` variables hold lists (`a:80, b:80 : c:80`) whose separators contain
//!   spaces, so a list value followed by a space does not end at a space inside the list.
//! - With nginx `escape=json` (and Envoy, Traefik) a quoted value can contain `\"`; a quote
//!   preceded by an odd number of backslashes is therefore never taken as the end of a value.

//!
//! `segments.rs` is what front ends build, `field.rs` what each placeholder feeds, `scan.rs`
//! how a value's end is found, `number.rs` how values are read.

mod field;
mod number;
mod scan;
mod segments;

pub(crate) use field::{Field, TimeLayout, TimeUnit, apply_field};
pub use segments::CompileError;
pub(crate) use segments::{Options, Segment, split_placeholders};

use crate::parse::{ParseError, ParseErrorKind, Record};
use scan::{Terminator, find_value_end, same_bytes};

/// A compiled format string.
#[derive(Debug, Clone)]
pub struct Template {
    /// The format as written, for error messages.
    segments: Vec<Segment>,
    /// The literal the format starts with (often empty).
    prefix: Box<[u8]>,
    /// The placeholders in order, each with the literal that ends it: the per-line loop walks
    /// this one flat array.
    steps: Vec<Step>,
    /// The first time placeholder, as (step, segment), when everything before it is skipped
    /// text (remote address, user...). Lines whose prefix differs from the format (a vhost, an
    /// X-Forwarded-For list, a syslog header in front, a missing ident column) are then
    /// re-synchronised on the literal just before the time, as robust log parsers do.
    resync_anchor: Option<(usize, usize)>,
    has_pool: bool,
    has_backend: bool,
    time_cache: TimeCache,
    /// Valid lines that are not requests (Envoy's own application log in the same stream),
    /// tried only on lines that fail to match.
    other_lines: Option<regex::bytes::RegexSet>,
}

/// One placeholder and what ends it.
#[derive(Debug, Clone)]
struct Step {
    field: Field,
    is_list: bool,
    /// The literal after the placeholder; empty when it runs to the end of the line.
    terminator: Terminator,
    /// Whether the value may run to the end of the line without its terminator.
    may_be_cut: bool,
    /// The placeholder's index in `segments`, for error messages.
    segment: u16,
}

/// The last timestamp text parsed and its value: consecutive lines nearly always share the
/// same second, so this skips most timestamp parsing.
#[derive(Debug, Clone)]
struct TimeCache {
    text: [u8; 40],
    len: usize,
    unix_ms: i64,
}

impl TimeCache {
    fn parse(&mut self, layout: TimeLayout, value: &[u8]) -> Option<i64> {
        if value.len() == self.len && same_bytes(&self.text[..value.len()], value) {
            return Some(self.unix_ms);
        }
        let ms = layout.parse(value)?;
        if value.len() <= self.text.len() {
            self.text[..value.len()].copy_from_slice(value);
            self.len = value.len();
            self.unix_ms = ms;
        }
        Some(ms)
    }
}

impl Template {
    /// Compiles segments from a dialect front end.
    pub(super) fn from_segments(
        segments: Vec<Segment>,
        options: Options,
    ) -> Result<Self, CompileError> {
        if segments.is_empty() {
            return Err(CompileError::Empty);
        }
        let fields = || {
            segments.iter().filter_map(|s| {
                if let Segment::Variable { field, .. } = s { Some(*field) } else { None }
            })
        };
        if !fields().any(|f| matches!(f, Field::Timestamp(_))) {
            return Err(CompileError::NoTimestamp { suggestion: options.time_suggestion });
        }
        let has_pool = fields().any(|f| matches!(f, Field::Pool | Field::BackendServer));
        let has_backend = fields().any(|f| matches!(f, Field::Backend | Field::BackendServer));
        let resync_anchor = segments
            .iter()
            .position(|s| matches!(s, Segment::Variable { field: Field::Timestamp(_), .. }))
            .filter(|&anchor| {
                anchor > 1
                    && matches!(segments[anchor - 1], Segment::Literal(_))
                    && segments[..anchor].iter().all(|s| {
                        matches!(
                            s,
                            Segment::Literal(_)
                                | Segment::Variable { field: Field::Ignored { .. }, .. }
                        )
                    })
            });
        let prefix = match segments.first() {
            Some(Segment::Literal(text)) => text.clone(),
            _ => Box::default(),
        };
        let last_variable = segments.iter().rposition(|s| matches!(s, Segment::Variable { .. }));
        #[allow(clippy::cast_possible_truncation)] // formats have far fewer than 65536 segments
        let steps: Vec<Step> = segments
            .iter()
            .enumerate()
            .filter_map(|(index, segment)| match segment {
                Segment::Variable { field, .. } => {
                    let terminator = match segments.get(index + 1) {
                        Some(Segment::Literal(text)) => text.clone(),
                        _ => Box::default(),
                    };
                    Some(Step {
                        field: *field,
                        is_list: field.is_list(),
                        may_be_cut: options.cut_final_quote
                            && Some(index) == last_variable
                            && terminator.first() == Some(&b'"'),
                        terminator: Terminator::new(terminator),
                        segment: index as u16,
                    })
                }
                Segment::Literal(_) => None,
            })
            .collect();
        let resync_anchor = resync_anchor.and_then(|segment| {
            steps
                .iter()
                .position(|step| usize::from(step.segment) == segment)
                .map(|step| (step, segment))
        });
        Ok(Template {
            segments,
            prefix,
            steps,
            resync_anchor,
            has_pool,
            has_backend,
            time_cache: TimeCache { text: [0; 40], len: usize::MAX, unix_ms: 0 },
            other_lines: None,
        })
    }

    /// Counts lines matching any of `other_lines` as valid non-requests (`other`) instead of
    /// errors.
    pub(super) fn with_other_lines(mut self, other_lines: Option<regex::bytes::RegexSet>) -> Self {
        self.other_lines = other_lines;
        self
    }

    /// Whether the format carries a pool name.
    pub fn has_pool_field(&self) -> bool {
        self.has_pool
    }

    /// How many placeholders the format has.
    pub fn n_variables(&self) -> usize {
        self.steps.len()
    }

    /// Whether the format names the backend.
    pub fn has_backend_field(&self) -> bool {
        self.has_backend
    }

    /// Parses one line.
    #[inline]
    pub fn parse<'a>(&mut self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        self.parse_with_end(line).map(|(record, _)| record)
    }

    /// Parses one line and also returns where the format's text ended in it, for formats
    /// that read a variable tail by hand (Traefik).
    #[inline]
    pub fn parse_with_end<'a>(
        &mut self,
        line: &'a [u8],
    ) -> Result<(Record<'a>, usize), ParseError> {
        let mut record = Record::default();
        let result = if self.prefix.is_empty() || line.starts_with(&self.prefix) {
            self.match_steps(line, self.prefix.len(), 0, &mut record)
        } else {
            Err(ParseError { column: 0, segment: 0, kind: ParseErrorKind::LiteralMismatch })
        };
        match result {
            Ok(end) => Ok((record, end)),
            Err(error) => match self.resync_anchor {
                Some((step, segment)) if usize::from(error.segment) < segment => {
                    self.resync(line, step, error).map_err(|error| self.classify(line, error))
                }
                _ => Err(self.classify(line, error)),
            },
        }
    }

    /// Turns the error for a line that is a known non-request into `NotARequest`.
    #[cold]
    fn classify(&self, line: &[u8], error: ParseError) -> ParseError {
        match &self.other_lines {
            Some(other) if other.is_match(line) => {
                ParseError { kind: ParseErrorKind::NotARequest, ..error }
            }
            _ => error,
        }
    }

    /// Retries a line whose prefix did not match by searching for the literal before the time
    /// placeholder, at most a few times.
    #[cold]
    fn resync<'a>(
        &mut self,
        line: &'a [u8],
        anchor_step: usize,
        error: ParseError,
    ) -> Result<(Record<'a>, usize), ParseError> {
        const MAX_TRIES: usize = 8;
        let literal = self.steps[anchor_step - 1].terminator.clone();
        let mut from = 0;
        for _ in 0..MAX_TRIES {
            let Some(at) = literal.find_in(&line[from..]) else {
                return Err(error);
            };
            let start = from + at + literal.text.len();
            let mut record = Record::default();
            if let Ok(end) = self.match_steps(line, start, anchor_step, &mut record) {
                return Ok((record, end));
            }
            from = from + at + 1;
        }
        Err(error)
    }

    fn match_steps<'a>(
        &mut self,
        line: &'a [u8],
        mut pos: usize,
        first_step: usize,
        record: &mut Record<'a>,
    ) -> Result<usize, ParseError> {
        let mut has_time = false;
        let Self { steps, time_cache, .. } = self;
        for step in &steps[first_step..] {
            #[allow(clippy::cast_possible_truncation)] // lines are far shorter than 4 GiB
            let error = |kind, column: usize| ParseError {
                column: column as u32,
                segment: step.segment,
                kind,
            };
            let (end, next) = if step.terminator.text.is_empty() {
                // The last field takes the rest of the line: only as far as a value of its
                // kind can go (a format cut short must not pass for a fit).
                if let Some(at) = step.field.overrun(&line[pos..]) {
                    return Err(error(ParseErrorKind::GoesOn, pos + at));
                }
                (line.len(), line.len())
            } else {
                match find_value_end(&line[pos..], &step.terminator, step.is_list) {
                    Some(end) => (pos + end, pos + end + step.terminator.text.len()),
                    None if step.may_be_cut => (line.len(), line.len()),
                    None => return Err(error(ParseErrorKind::MissingDelimiter, pos)),
                }
            };
            let value = &line[pos..end];
            if let Field::Timestamp(layout) = step.field {
                record.timestamp_ms = time_cache
                    .parse(layout, value)
                    .ok_or_else(|| error(ParseErrorKind::BadTimestamp, pos))?;
                has_time = true;
            } else {
                apply_field(step.field, value, record)
                    .ok_or_else(|| error(ParseErrorKind::BadNumber, pos))?;
            }
            pos = next;
        }
        if has_time {
            Ok(pos)
        } else {
            #[allow(clippy::cast_possible_truncation)]
            Err(ParseError {
                column: pos as u32,
                segment: self.segments.len() as u16,
                kind: ParseErrorKind::NoTimestamp,
            })
        }
    }

    /// Describes a [`ParseError`] in words: the column, the field and what was expected.
    pub fn explain(&self, error: &ParseError) -> String {
        let column = error.column + 1;
        let describe = |index: usize| match self.segments.get(index) {
            Some(Segment::Literal(text)) => {
                format!("the text `{}`", String::from_utf8_lossy(text))
            }
            Some(Segment::Variable { name, .. }) => format!("`{name}`"),
            None => "the end of the line".to_string(),
        };
        let segment = usize::from(error.segment);
        match error.kind {
            ParseErrorKind::LiteralMismatch => {
                format!("column {column}: expected {}", describe(segment))
            }
            ParseErrorKind::MissingDelimiter => format!(
                "column {column}: {} never ends: expected {} after it",
                describe(segment),
                describe(segment + 1)
            ),
            ParseErrorKind::BadTimestamp => format!(
                "column {column}: {} is not a timestamp in the format's layout",
                describe(segment)
            ),
            ParseErrorKind::BadNumber => {
                format!("column {column}: {} is not a number or `-`", describe(segment))
            }
            ParseErrorKind::NoTimestamp => format!("column {column}: the line has no timestamp"),
            ParseErrorKind::NotARequest => format!("column {column}: not a request line"),
            ParseErrorKind::GoesOn => format!(
                "column {column}: the line goes on past the end of the format ({} cannot hold the rest); is the format shorter than the lines?",
                describe(segment)
            ),
        }
    }
}
