//! Which parser an input gets: a built-in or user pattern by name, the user's own format
//! string, or `auto` (recognised from sample lines the caller read). The choice is the
//! parser's; reading the sample is the caller's (parsing does no IO).

use super::{CompileError, Parser, PatternSet};

/// Why no parser could be built.
#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    /// `auto` with nothing to look at.
    #[error("format `auto` needs lines to look at (not standard input); pass --format")]
    NoSample,
    /// The format string does not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// A format string given with a named format that takes none.
    #[error(
        "`log_format` goes with format `nginx`, `haproxy` or `envoy`, not `{0}`; drop one of them"
    )]
    FormatStringWithNamedFormat(String),
    /// No format by that name.
    #[error("unknown format `{name}`; {closest}known formats: auto, nginx, {known}")]
    Unknown {
        /// The name given.
        name: String,
        /// `did you mean ...? ` or nothing.
        closest: String,
        /// The known names.
        known: String,
    },
    /// `auto` found no format that fits, or two that fit equally well.
    #[error("{origin}: {why}")]
    NotRecognised {
        /// Where the lines come from.
        origin: String,
        /// Why.
        why: super::auto::Unrecognised,
    },
}

/// Sample lines of an input, for `auto`: where they come from (for messages) and the lines.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// A file name, `stdin`.
    pub source: &'a str,
    /// Its first lines.
    pub lines: &'a [&'a [u8]],
}

/// Builds a parser from a format name and/or format string (`log_format`). Format `auto`
/// recognises the format from `sample` and logs which it picked and why. Returns the parser
/// and the format's name for messages.
pub fn build_parser(
    patterns: &PatternSet,
    format: Option<&str>,
    log_format: Option<&str>,
    custom_variables: &[String],
    sample: Option<Sample<'_>>,
) -> Result<(Parser, String), ChoiceError> {
    match (format, log_format) {
        (Some("auto"), None) => {
            let sample = sample.ok_or(ChoiceError::NoSample)?;
            recognise(patterns, sample, custom_variables)
        }
        (None | Some("nginx"), Some(text)) => Ok((
            Parser::Template(super::nginx::compile(text, custom_variables)?),
            "nginx (log_format)".to_string(),
        )),
        (Some("haproxy"), Some(text)) => Ok((
            Parser::Template(super::haproxy_format::compile(text)?),
            "haproxy (log-format)".to_string(),
        )),
        (Some("envoy"), Some(text)) => Ok((
            Parser::Template(super::envoy::compile(text)?),
            "envoy (format string)".to_string(),
        )),
        (Some(name), Some(_)) => Err(ChoiceError::FormatStringWithNamedFormat(name.to_string())),
        (None | Some("nginx"), None) => {
            build_parser(patterns, Some("combined"), None, custom_variables, None)
        }
        (Some(name), None) => match patterns.get(name) {
            Some(pattern) => Ok((pattern.compile(custom_variables)?, name.to_string())),
            None => {
                let names = patterns.names();
                let closest = names
                    .iter()
                    .map(|known| (strsim::levenshtein(name, known), known))
                    .min()
                    .filter(|(distance, _)| *distance <= 3)
                    .map(|(_, known)| format!("did you mean `{known}`? "))
                    .unwrap_or_default();
                Err(ChoiceError::Unknown {
                    name: name.to_string(),
                    closest,
                    known: names.join(", "),
                })
            }
        },
    }
}

/// Recognises the format of `sample` and builds its parser.
pub fn recognise(
    patterns: &PatternSet,
    sample: Sample<'_>,
    custom_variables: &[String],
) -> Result<(Parser, String), ChoiceError> {
    let ranked = super::auto::rank(patterns, sample.lines);
    let (best, why) = super::auto::choose(&ranked)
        .map_err(|why| ChoiceError::NotRecognised { origin: sample.source.to_string(), why })?;
    tracing::info!(message = "Format recognised.", file = %sample.source, format = %best.name, reason = %why);
    build_parser(patterns, Some(&best.name), None, custom_variables, None)
}

/// The message for a format that cannot name backends, used by `replay` and `run`.
pub fn no_backend_message(format_name: &str) -> String {
    format!(
        "format `{format_name}` has no backend field, so skew cannot be judged; use `--format upstream`, \
         `--format ingress_nginx`, or `--log-format` with your nginx log_format including `$upstream_addr`"
    )
}
