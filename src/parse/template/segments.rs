//! The front ends' side of the engine: a format as segments (literals and placeholders), how
//! they are built, and why a format cannot be compiled.

use super::field::Field;

/// Why a format string could not be compiled. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A placeholder the dialect (as far as skewtail knows) does not have.
    #[error("unknown {kind} `{name}` at column {column} of the format{hint}; {advice}")]
    UnknownVariable {
        /// What the dialect calls its placeholders ("variable", "operator", "alias").
        kind: &'static str,
        /// The placeholder as written (`$stauts`).
        name: String,
        /// 1-based column in the format text.
        column: usize,
        /// ", did you mean `$x`?" or empty.
        hint: String,
        /// How to make it known.
        advice: &'static str,
    },
    /// Two placeholders with nothing between them cannot be told apart.
    #[error(
        "`{first}` and `{second}` follow each other with no text between them at column \
         {column}, so skewtail cannot tell where one ends; the balancer writes them glued \
         together too - put a separator (a space, quote or `|`) between them in the format"
    )]
    AdjacentVariables {
        /// The first placeholder.
        first: String,
        /// The second placeholder.
        second: String,
        /// 1-based column of the second one.
        column: usize,
    },
    /// Without a time placeholder there is no event time to window on.
    #[error("the format has no time field; add {suggestion} to it")]
    NoTimestamp {
        /// The dialect's time placeholders.
        suggestion: &'static str,
    },
    /// A placeholder that is not closed or has no name.
    #[error("malformed placeholder at column {column} of the format: {problem}")]
    Malformed {
        /// 1-based column.
        column: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// The format is empty.
    #[error("the format is empty; pass the text of your balancer's log format")]
    Empty,
    /// A quoted string of a pasted directive is never closed.
    #[error(
        "the quote at column {column} of the pasted format is never closed; paste the whole directive, or only the format between its quotes"
    )]
    UnclosedQuote {
        /// 1-based column of the opening quote.
        column: usize,
    },
    /// An `other` regex that does not compile.
    #[error("an `other` regex is invalid: {problem}")]
    BadRegex {
        /// The regex crate's explanation.
        problem: String,
    },
    /// A `[fields]` entry that does not name a record field, or has a bad unit or layout.
    #[error("`{placeholder}` is mapped to `{spec}`: {problem}")]
    BadFieldSpec {
        /// The placeholder or JSON path.
        placeholder: String,
        /// The spec as written.
        spec: String,
        /// What is wrong and what would be right.
        problem: String,
    },
}

/// One piece of a format: fixed text, or a placeholder and the field it feeds.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    /// Text the line must contain as is.
    Literal(Box<[u8]>),
    /// A placeholder, named as the user wrote it (for error messages).
    Variable {
        /// `$status`, `%ST`, `%UPSTREAM_HOST%`.
        name: Box<str>,
        /// What it feeds.
        field: Field,
    },
}

/// Dialect details the engine needs beyond the segments.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// The final quoted value may lack its closing quote (HAProxy cuts request lines at
    /// 1024 bytes).
    pub cut_final_quote: bool,
    /// The dialect's time placeholders, for the "no time field" error.
    pub time_suggestion: &'static str,
}

/// Builds the segment list while a front end tokenises a format: merges adjacent literals and
/// refuses two placeholders with nothing between them.
#[derive(Debug, Default)]
pub(crate) struct SegmentsBuilder {
    segments: Vec<Segment>,
    literal: Vec<u8>,
}

impl SegmentsBuilder {
    /// Appends fixed text.
    pub fn literal(&mut self, text: &[u8]) {
        self.literal.extend_from_slice(text);
    }

    /// Appends a placeholder found at 1-based `column`.
    pub fn variable(
        &mut self,
        name: &str,
        field: Field,
        column: usize,
    ) -> Result<(), CompileError> {
        if self.literal.is_empty() {
            if let Some(Segment::Variable { name: first, .. }) = self.segments.last() {
                return Err(CompileError::AdjacentVariables {
                    first: first.to_string(),
                    second: name.to_string(),
                    column,
                });
            }
        } else {
            let text = std::mem::take(&mut self.literal).into_boxed_slice();
            self.segments.push(Segment::Literal(text));
        }
        self.segments.push(Segment::Variable { name: name.into(), field });
        Ok(())
    }

    /// The finished segments.
    pub fn finish(mut self) -> Vec<Segment> {
        if !self.literal.is_empty() {
            self.segments.push(Segment::Literal(self.literal.into_boxed_slice()));
        }
        self.segments
    }
}

/// Splits a format into literals and placeholders: every dialect marks a placeholder with one
/// sigil byte (`$`, `%`). `placeholder` reads the one starting at the given index (the sigil),
/// pushes what it stands for, and returns the index after it.
pub(crate) fn split_placeholders(
    text: &str,
    sigil: u8,
    mut placeholder: impl FnMut(&mut SegmentsBuilder, usize) -> Result<usize, CompileError>,
) -> Result<Vec<Segment>, CompileError> {
    let bytes = text.as_bytes();
    let mut segments = SegmentsBuilder::default();
    let mut i = 0;
    while i < bytes.len() {
        let Some(at) = memchr::memchr(sigil, &bytes[i..]) else {
            segments.literal(&bytes[i..]);
            break;
        };
        segments.literal(&bytes[i..i + at]);
        i = placeholder(&mut segments, i + at)?;
    }
    Ok(segments.finish())
}
