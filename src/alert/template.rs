//! Custom message templates: minijinja (no code execution, no file access), checked when the
//! config loads, and every value it prints escaped for the sink it goes to, so a template
//! cannot let a backend name from a log page `@channel`.

use minijinja::{Environment, Value, context};

use super::notice::Notice;
use crate::text as escape;

/// How printed values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Slack mrkdwn: `&`, `<`, `>`.
    Slack,
    /// Plain text (JSON escapes it): control characters only.
    Plain,
}

/// A checked template.
#[derive(Debug, Clone)]
pub struct MessageTemplate {
    source: String,
    escape: Escape,
}

/// Longest text a single printed value may add (a name from a log can be huge).
const MAX_VALUE_CHARS: usize = 1000;

impl MessageTemplate {
    /// Compiles `source`; the error gives the template's own line.
    pub fn compile(source: &str, escape: Escape) -> Result<Self, TemplateError> {
        let env = environment(escape);
        env.template_from_str(source).map_err(|e| describe(&e))?;
        Ok(MessageTemplate { source: source.to_string(), escape })
    }

    /// Renders it for the notices of one message.
    pub fn render(
        &self,
        notices: &[Notice],
        dashboard_url: Option<&str>,
    ) -> Result<String, TemplateError> {
        let env = environment(self.escape);
        let template = env.template_from_str(&self.source).map_err(|e| describe(&e))?;
        let status = if notices.iter().all(|n| n.status == super::notice::Status::Resolved) {
            "resolved"
        } else {
            "firing"
        };
        let alerts: Vec<Value> = notices
            .iter()
            .map(|n| {
                context! {
                    status => n.status.name(),
                    kind => &n.kind,
                    severity => &n.severity,
                    pool => &n.pool,
                    backend => &n.backend,
                    diagnosis => &n.diagnosis,
                    reason => &n.reason,
                    summary => &n.summary,
                    title => n.title(),
                    duration => n.duration_text(),
                    started_at => crate::parse::time::format_rfc3339(n.started_at_ms),
                    at => crate::parse::time::format_rfc3339(n.at_ms),
                    fingerprint => &n.fingerprint,
                    repeat => n.repeat,
                }
            })
            .collect();
        template
            .render(context! {
                status => status,
                count => notices.len(),
                alerts => alerts,
                dashboard_url => dashboard_url,
            })
            .map_err(|e| describe(&e))
    }
}

fn environment(escape: Escape) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_formatter(move |out, _state, value| {
        let text = value.to_string();
        let escaped = match escape {
            Escape::Slack => escape::slack(&text, MAX_VALUE_CHARS),
            Escape::Plain => escape::truncate(&escape::without_controls(&text), MAX_VALUE_CHARS),
        };
        out.write_str(&escaped).map_err(minijinja::Error::from)
    });
    env
}

/// A message template that does not compile or render: the template's own line, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template{}: {detail}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct TemplateError {
    /// The template's line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub detail: String,
}

fn describe(error: &minijinja::Error) -> TemplateError {
    let detail = error.detail().map_or_else(|| error.kind().to_string(), str::to_string);
    TemplateError { line: error.line(), detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::notice::Status;

    fn notice(backend: &str) -> Notice {
        Notice {
            key: "k".into(),
            fingerprint: "f".into(),
            status: Status::Firing,
            kind: "skew".into(),
            direction: "over".into(),
            severity: "critical".into(),
            pool: "api".into(),
            backend: backend.into(),
            diagnosis: "balancer".into(),
            reason: "r".into(),
            summary: "s".into(),
            started_at_ms: 0,
            at_ms: 65_000,
            repeat: 0,
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn values_are_escaped_for_the_target_and_errors_have_lines() {
        let template = MessageTemplate::compile(
            "{{ count }} alert(s)\n{% for a in alerts %}{{ a.backend }} for {{ a.duration }}{% endfor %}",
            Escape::Slack,
        )
        .unwrap();
        let text = template.render(&[notice("<!channel>")], None).unwrap();
        assert_eq!(text, "1 alert(s)\n&lt;!channel&gt; for 1m 5s");
        let error =
            MessageTemplate::compile("ok\n{% for %}", Escape::Plain).unwrap_err().to_string();
        assert!(error.starts_with("template line 2:"), "{error}");
    }
}
