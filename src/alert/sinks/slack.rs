//! Slack incoming webhooks: Block Kit with a text fallback. Every value from a log is
//! escaped (`&`, `<`, `>`) after being cut to Slack's limits, so no log line can mention
//! `@channel` or disguise a link; links the operator configured are the only live ones.

use serde_json::{Value, json};

use crate::alert::notice::{Notice, Status};
use crate::alert::template::MessageTemplate;
use crate::text::slack as esc;

/// Slack allows 50 blocks; a header, a context, and two per alert.
const MAX_ALERTS: usize = 23;
/// `section.text`: 3000 characters; `fields[]`: 2000; `header`: 150; fallback kept short.
const SECTION_CHARS: usize = 3000;
const FIELD_CHARS: usize = 2000;
const HEADER_CHARS: usize = 150;
const FALLBACK_CHARS: usize = 3000;

/// The message for `notices`.
pub fn render(
    notices: &[Notice],
    dashboard_url: Option<&str>,
    template: Option<&MessageTemplate>,
    test: bool,
) -> Value {
    let firing = notices.iter().filter(|n| n.status == Status::Firing).count();
    let header = if test {
        "TEST: skewtail alert test (no action needed)".to_string()
    } else if notices.len() == 1 {
        notices[0].title()
    } else if firing == 0 && notices.iter().all(|n| n.status == Status::Noted) {
        format!("NOTED: {} changes in pool {}", notices.len(), notices[0].pool)
    } else if firing == 0 {
        format!("RESOLVED: {} alerts in pool {}", notices.len(), notices[0].pool)
    } else {
        format!("FIRING: {firing} of {} alerts in pool {}", notices.len(), notices[0].pool)
    };
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": esc(&header, HEADER_CHARS) },
    })];
    let custom = template.map(|t| t.render(notices, dashboard_url));
    match custom {
        Some(Ok(text)) => blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": crate::text::truncate(&text, SECTION_CHARS) },
        })),
        other => {
            if let Some(Err(error)) = other {
                tracing::warn!(message = "Slack template failed; sending the built-in message.", %error);
            }
            for notice in notices.iter().take(MAX_ALERTS) {
                blocks.push(json!({
                    "type": "section",
                    "text": { "type": "mrkdwn", "text": format!("*{}*\n{}", esc(&notice.title(), 300), esc(&notice.summary, SECTION_CHARS - 320)) },
                }));
                blocks.push(json!({
                    "type": "section",
                    "fields": [
                        { "type": "mrkdwn", "text": format!("*Diagnosis*\n{}: {}", esc(&notice.diagnosis, 40), esc(&notice.reason, FIELD_CHARS - 60)) },
                        { "type": "mrkdwn", "text": format!("*Severity*\n{}", esc(&notice.severity, 20)) },
                        { "type": "mrkdwn", "text": format!("*Duration*\n{}", notice.duration_text()) },
                        { "type": "mrkdwn", "text": format!("*Since*\n{}", crate::parse::time::format_rfc3339(notice.started_at_ms)) },
                    ],
                }));
            }
        }
    }
    let mut context = format!("skewtail · {} alert(s)", notices.len());
    if notices.len() > MAX_ALERTS && template.is_none() {
        context.push_str(&format!(" · {} more not shown", notices.len() - MAX_ALERTS));
    }
    if let Some(url) = dashboard_url {
        // The operator's own URL: the one link in the message. `|` and `>` would end it early.
        context.push_str(&format!(" · <{}|Dashboard>", url.replace(['|', '>'], "")));
    }
    blocks
        .push(json!({ "type": "context", "elements": [ { "type": "mrkdwn", "text": context } ] }));
    let fallback: Vec<String> =
        notices.iter().take(5).map(|n| format!("{}: {}", n.title(), n.summary)).collect();
    let fallback = if test { header.clone() } else { fallback.join("\n") };
    json!({
        "text": esc(&fallback, FALLBACK_CHARS),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}
