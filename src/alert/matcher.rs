//! Does an alert match? Routes, silences and inhibition rules all ask with the same matchers:
//! per field, glob patterns (a leading `!` negates; `[*]` is the literal `*` of a whole-pool
//! alert), any of which may match.

use serde::{Deserialize, Serialize};

use super::notice::Notice;
use crate::alert::schema::MatchSection;

/// The fields a matcher may name.
pub const FIELDS: [&str; 5] = ["kind", "severity", "pool", "backend", "diagnosis"];

/// One field's patterns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldMatcher {
    /// The field.
    pub field: String,
    /// Patterns as written; any may match.
    pub patterns: Vec<String>,
}

/// All of its fields must match (an empty matcher matches everything).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Matcher {
    /// The fields.
    pub fields: Vec<FieldMatcher>,
}

impl Matcher {
    /// From a config section; the error says which pattern is wrong.
    pub fn from_section(section: &MatchSection) -> Result<Self, MatcherError> {
        let named = [
            ("kind", &section.kind),
            ("severity", &section.severity),
            ("pool", &section.pool),
            ("backend", &section.backend),
            ("diagnosis", &section.diagnosis),
        ];
        let mut fields = Vec::new();
        for (field, values) in named {
            let Some(values) = values else { continue };
            let patterns = values.values();
            for pattern in &patterns {
                compile(pattern).map_err(|source| MatcherError::Pattern {
                    field: field.to_string(),
                    pattern: pattern.clone(),
                    source,
                })?;
            }
            fields.push(FieldMatcher { field: field.to_string(), patterns });
        }
        Ok(Matcher { fields })
    }

    /// From `field=pattern` pairs (the `silence add` command line).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, MatcherError> {
        let mut matcher = Matcher::default();
        for (field, pattern) in pairs {
            if !FIELDS.contains(&field.as_str()) {
                return Err(MatcherError::UnknownField { field: field.clone() });
            }
            compile(pattern).map_err(|source| MatcherError::Pattern {
                field: field.clone(),
                pattern: pattern.clone(),
                source,
            })?;
            match matcher.fields.iter_mut().find(|f| &f.field == field) {
                Some(existing) => existing.patterns.push(pattern.clone()),
                None => matcher
                    .fields
                    .push(FieldMatcher { field: field.clone(), patterns: vec![pattern.clone()] }),
            }
        }
        Ok(matcher)
    }

    /// Whether `notice` matches.
    pub fn matches(&self, notice: &Notice) -> bool {
        self.fields.iter().all(|f| {
            let value = notice.field(&f.field).unwrap_or_default();
            f.patterns.iter().any(|p| pattern_matches(p, value))
        })
    }

    /// `kind=skew pool=api*`, for `silence list` and logs.
    pub fn describe(&self) -> String {
        if self.fields.is_empty() {
            return "(every alert)".to_string();
        }
        self.fields
            .iter()
            .map(|f| format!("{}={}", f.field, f.patterns.join("|")))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A matcher that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// Not a field alerts have.
    #[error("unknown field `{field}`; use one of {}", FIELDS.join(", "))]
    UnknownField {
        /// The field given.
        field: String,
    },
    /// A glob that is not one.
    #[error("{field} pattern `{pattern}`: {source}")]
    Pattern {
        /// The field.
        field: String,
        /// The pattern given.
        pattern: String,
        /// Where it is wrong.
        source: glob::PatternError,
    },
}

fn compile(pattern: &str) -> Result<glob::Pattern, glob::PatternError> {
    glob::Pattern::new(pattern.strip_prefix('!').unwrap_or(pattern))
}

fn pattern_matches(pattern: &str, value: &str) -> bool {
    let (negated, glob) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let matched = glob::Pattern::new(glob).is_ok_and(|p| p.matches(value));
    matched != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(kind: &str, backend: &str) -> Notice {
        Notice {
            key: "k".into(),
            fingerprint: "f".into(),
            status: super::super::notice::Status::Firing,
            kind: kind.into(),
            direction: "over".into(),
            severity: "critical".into(),
            pool: "api-eu".into(),
            backend: backend.into(),
            diagnosis: "balancer".into(),
            reason: String::new(),
            summary: String::new(),
            started_at_ms: 0,
            at_ms: 0,
            repeat: 0,
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn globs_negation_and_the_whole_pool() {
        let pairs = |p: &[(&str, &str)]| {
            Matcher::from_pairs(
                &p.iter().map(|(a, b)| ((*a).to_string(), (*b).to_string())).collect::<Vec<_>>(),
            )
            .unwrap()
        };
        assert!(Matcher::default().matches(&notice("skew", "a:80")));
        assert!(pairs(&[("pool", "api*"), ("kind", "skew")]).matches(&notice("skew", "a:80")));
        assert!(!pairs(&[("kind", "drop")]).matches(&notice("skew", "a:80")));
        assert!(pairs(&[("kind", "drop"), ("kind", "skew")]).matches(&notice("skew", "a:80")));
        assert!(pairs(&[("backend", "[*]")]).matches(&notice("errors", "*")));
        assert!(!pairs(&[("backend", "[*]")]).matches(&notice("errors", "a:80")));
        assert!(pairs(&[("backend", "![*]")]).matches(&notice("errors", "a:80")));
        assert!(Matcher::from_pairs(&[("colour".into(), "red".into())]).is_err());
        assert!(Matcher::from_pairs(&[("pool".into(), "[".into())]).is_err());
    }
}
