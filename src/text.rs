//! Untrusted text on its way out: backend and pool names, paths and agents come from logs
//! that anyone who can send a request writes. Each target gets its own escaping, applied
//! after truncation so a cut can never split an escape; identifiers that go into headers or
//! dedup keys are hashes, never the text itself.

use sha2::{Digest, Sha256};

/// Cuts `text` to at most `max_chars` characters, ending with `…` when it was cut.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if max_chars == 0 {
        return String::new();
    }
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some(_) => {
            let keep = text.char_indices().nth(max_chars - 1).map_or(text.len(), |(at, _)| at);
            let mut cut = text[..keep].to_string();
            cut.push('…');
            cut
        }
    }
}

/// Escapes text for Slack mrkdwn and plain_text: `&`, `<` and `>` are Slack's control
/// characters (every mention, broadcast and link is `<...>`), so escaping them neutralises
/// `<!channel>`, `<@U123>` and `<https://evil|label>`. Truncated first, then escaped.
pub fn slack(text: &str, max_chars: usize) -> String {
    let cut = truncate(&without_controls(text), max_chars);
    let mut out = String::with_capacity(cut.len());
    for c in cut.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Control characters replaced by their `\u{..}` escapes: no message or log line can be
/// broken into two, or recoloured, by text from a log.
pub fn without_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

/// Untrusted text for a log line: controls escaped, at most 200 characters.
pub fn for_log(text: &str) -> String {
    truncate(&without_controls(text), 200)
}

/// A short hex digest of `parts` (joined by NUL): ids that are safe in any header or key.
pub fn digest(parts: &[&str], hex_chars: usize) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0]);
        }
        hasher.update(part.as_bytes());
    }
    let hash = hasher.finalize();
    let mut hex = String::with_capacity(64);
    for byte in hash {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
    }
    hex.truncate(hex_chars.min(64));
    hex
}

/// A dedup key of at most `max` characters: the text itself when it is short and made of
/// safe characters, else a prefix of it and a hash of the whole (still unique, still
/// readable).
pub fn bounded_key(text: &str, max: usize) -> String {
    let safe = text.chars().all(|c| c.is_ascii_graphic());
    if safe && text.len() <= max {
        return text.to_string();
    }
    let hash = digest(&[text], 32);
    let prefix: String = text
        .chars()
        .filter(char::is_ascii_graphic)
        .take(max.saturating_sub(hash.len() + 1).min(64))
        .collect();
    format!("{prefix}#{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_mentions_and_links_are_neutralised() {
        assert_eq!(
            slack("<!channel> & <https://evil.example|click>", 100),
            "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"
        );
        assert_eq!(slack("@here", 100), "@here", "a bare @here is not a mention in API posts");
        // Truncation happens before escaping: no half entity at the cut.
        assert_eq!(slack("ab<<<<", 4), "ab&lt;…");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("héllo wörld", 5), "héll…");
        assert_eq!(truncate("short", 5), "short");
        assert_eq!(truncate(&"x".repeat(100_000), 10).chars().count(), 10);
    }

    #[test]
    fn controls_never_reach_a_log_line() {
        assert_eq!(for_log("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }

    #[test]
    fn keys_are_bounded_and_stable() {
        assert_eq!(bounded_key("skewtail/api/a:80/skew/over", 255), "skewtail/api/a:80/skew/over");
        let long = format!("skewtail/api/{}/skew/over", "x".repeat(100_000));
        let key = bounded_key(&long, 255);
        assert!(key.len() <= 255, "{}", key.len());
        assert_eq!(key, bounded_key(&long, 255));
        assert_ne!(key, bounded_key(&format!("{long}y"), 255));
        assert!(bounded_key("a b\u{0}", 255).chars().all(|c| c.is_ascii_graphic()));
    }
}
