//! The incident documents: a Markdown postmortem draft (`--report incident.md`, its charts as
//! SVG files beside it) and one self-contained HTML page (`--html report.html`, charts
//! inline, no scripts, readable in print). Both say the same things: what happened and where
//! the fault most likely is, the timeline, each pool's backends, and the charts with the
//! alert periods shaded. Every string from a log is escaped for its target.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::charts::{Period, xml};
use super::totals::BackendRow;
use crate::detect::{AlertEvent, AlertState, fmt_duration};
use crate::parse::time::format_rfc3339;

/// At most this many state changes are kept for the timeline.
pub const MAX_EVENTS: usize = 10_000;

/// One line of the timeline.
#[derive(Debug, Clone)]
pub struct Event {
    /// When, Unix ms.
    pub at_ms: i64,
    /// When the condition began, Unix ms.
    pub started_at_ms: i64,
    /// Firing or resolved.
    pub firing: bool,
    /// `skew over`, `drop`, ...
    pub what: String,
    /// Severity word.
    pub severity: String,
    /// The pool.
    pub pool: String,
    /// The backend.
    pub backend: String,
    /// `balancer`, `backend`, ...
    pub diagnosis: String,
    /// The detector's sentence.
    pub summary: String,
    /// Identity across firing and resolve.
    pub fingerprint: String,
    /// How long it lasted (resolves: the incident, without the resolve hold), seconds.
    pub duration_s: i64,
}

impl Event {
    /// From a detector state change.
    pub fn from_alert(alert: &AlertEvent) -> Self {
        let what = match alert.kind {
            crate::detect::AlertKind::Skew => format!(
                "skew {}",
                match alert.direction {
                    crate::detect::Direction::Over => "over",
                    crate::detect::Direction::Under => "under",
                }
            ),
            kind => kind.name().to_string(),
        };
        Event {
            at_ms: alert.at_ms,
            started_at_ms: alert.started_at_ms,
            firing: alert.state == AlertState::Firing,
            what,
            severity: format!("{:?}", alert.severity).to_lowercase(),
            pool: alert.pool.to_string(),
            backend: alert.backend.to_string(),
            diagnosis: alert.diagnosis.verdict.label().to_string(),
            summary: alert.summary.clone(),
            fingerprint: alert.fingerprint(),
            duration_s: alert.evidence.duration_s,
        }
    }
}

/// The alert periods of `pool`: from when each condition began to its resolve.
pub fn periods(events: &[Event], pool: &str) -> Vec<Period> {
    let mut periods = Vec::new();
    for (i, e) in events.iter().enumerate().filter(|(_, e)| e.firing && e.pool == pool) {
        let resolve = events[i + 1..].iter().find(|r| !r.firing && r.fingerprint == e.fingerprint);
        periods.push(Period {
            from_ms: e.started_at_ms,
            to_ms: resolve.map(|r| r.at_ms),
            label: format!("{} {}", e.what, e.backend),
        });
    }
    periods
}

/// What a document shows for one pool.
#[derive(Debug, Clone)]
pub struct PoolSection {
    /// Its name.
    pub pool: String,
    /// Its backends over the whole input.
    pub rows: Vec<BackendRow>,
    /// Its charts: (kind, SVG).
    pub charts: Vec<(&'static str, String)>,
}

/// Everything a document shows.
#[derive(Debug, Clone)]
pub struct Incident {
    /// The input's time span, Unix ms.
    pub span_ms: (i64, i64),
    /// Lines read and parsed.
    pub lines: (u64, u64),
    /// The state changes, in order.
    pub events: Vec<Event>,
    /// Each pool.
    pub pools: Vec<PoolSection>,
}

impl Incident {
    fn headline(&self) -> String {
        let fired: Vec<&Event> = self.events.iter().filter(|e| e.firing).collect();
        match fired.first() {
            None => "No alert fired: every pool kept to its expected split.".to_string(),
            Some(first) => format!(
                "{} alert(s) fired. The first, at {}: {}",
                fired.len(),
                format_rfc3339(first.at_ms),
                first.summary
            ),
        }
    }

    fn diagnoses(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for e in self.events.iter().filter(|e| e.firing) {
            match counts.iter_mut().find(|(d, _)| *d == e.diagnosis) {
                Some((_, n)) => *n += 1,
                None => counts.push((e.diagnosis.clone(), 1)),
            }
        }
        counts
    }

    fn timeline_lines(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .map(|e| {
                let time = format_rfc3339(e.at_ms);
                let what = if e.firing {
                    format!(
                        "{} {} started on {} in pool {}: {}",
                        e.severity, e.what, e.backend, e.pool, e.summary
                    )
                } else {
                    format!(
                        "{} on {} in pool {} resolved after {}",
                        e.what,
                        e.backend,
                        e.pool,
                        fmt_duration(e.duration_s)
                    )
                };
                (time, what)
            })
            .collect()
    }
}

/// Markdown table cell text: no pipes or newlines from logs.
fn md(text: &str) -> String {
    crate::text::without_controls(text)
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Markdown draft, and the SVG files it links (names relative to the document).
pub fn markdown(incident: &Incident, stem: &str) -> (String, Vec<(String, String)>) {
    let mut out = String::new();
    let mut files = Vec::new();
    let _ = writeln!(out, "# Incident draft: load-balancer traffic\n");
    let _ = writeln!(
        out,
        "_Generated by skewtail from {} log lines ({} parsed), {} to {}. Edit before publishing._\n",
        incident.lines.0,
        incident.lines.1,
        format_rfc3339(incident.span_ms.0),
        format_rfc3339(incident.span_ms.1)
    );
    let _ = writeln!(out, "## Summary\n\n{}\n", md(&incident.headline()));
    let _ = writeln!(out, "## Diagnosis\n");
    let diagnoses = incident.diagnoses();
    if diagnoses.is_empty() {
        let _ = writeln!(out, "Nothing to diagnose.\n");
    }
    for (diagnosis, n) in diagnoses {
        let _ = writeln!(
            out,
            "- **{}**: {n} alert(s). {}",
            md(&diagnosis),
            diagnosis_meaning(&diagnosis)
        );
    }
    let _ = writeln!(out, "\n## Timeline (UTC)\n");
    for (time, what) in incident.timeline_lines() {
        let _ = writeln!(out, "- `{time}` {}", md(&what));
    }
    for section in &incident.pools {
        let _ = writeln!(out, "\n## Pool {}\n", md(&section.pool));
        let _ = writeln!(
            out,
            "| backend | requests | share | expected | 5xx | p99 |\n|---|---:|---:|---:|---:|---:|"
        );
        for r in &section.rows {
            let p99 = r.p99_text();
            let _ = writeln!(
                out,
                "| {} | {} | {:.1}% | {} | {} | {p99} |",
                md(&r.backend),
                r.requests,
                r.share * 100.0,
                r.expected_text(),
                r.errors
            );
        }
        for (kind, svg) in &section.charts {
            let name = format!("{stem}-{}-{kind}.svg", file_safe(&section.pool));
            let _ = writeln!(out, "\n![{kind}]({name})");
            files.push((name, svg.clone()));
        }
    }
    (out, files)
}

/// The HTML page.
pub fn html(incident: &Incident) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>skewtail incident report</title>\n<style>\nbody{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}\ntable{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}\n.off{background:#fdecea}.chart{margin:1em 0;break-inside:avoid}li{margin:.3em 0}code{font-size:90%}\n@media print{body{margin:0;max-width:none}h2{break-before:auto}.chart{break-inside:avoid}}\n</style></head><body>\n",
    );
    let _ = writeln!(out, "<h1>Incident report: load-balancer traffic</h1>");
    let _ = writeln!(
        out,
        "<p><em>skewtail, {} log lines ({} parsed), {} to {}.</em></p>",
        incident.lines.0,
        incident.lines.1,
        format_rfc3339(incident.span_ms.0),
        format_rfc3339(incident.span_ms.1)
    );
    let _ = writeln!(out, "<h2>Summary</h2><p>{}</p>", xml(&incident.headline()));
    let _ = writeln!(out, "<h2>Diagnosis</h2><ul>");
    for (diagnosis, n) in incident.diagnoses() {
        let _ = writeln!(
            out,
            "<li><strong>{}</strong>: {n} alert(s). {}</li>",
            xml(&diagnosis),
            diagnosis_meaning(&diagnosis)
        );
    }
    let _ = writeln!(out, "</ul><h2>Timeline (UTC)</h2><ul>");
    for (time, what) in incident.timeline_lines() {
        let _ = writeln!(out, "<li><code>{time}</code> {}</li>", xml(&what));
    }
    let _ = writeln!(out, "</ul>");
    for section in &incident.pools {
        let _ = writeln!(out, "<h2>Pool {}</h2>", xml(&section.pool));
        let _ = writeln!(
            out,
            "<table><tr><th>backend</th><th>requests</th><th>share</th><th>expected</th><th>5xx</th><th>p99</th></tr>"
        );
        for r in &section.rows {
            let off = r
                .expected
                .is_some_and(|e| e > 0.0 && (r.share / e >= 1.5 || r.share / e <= 1.0 / 1.5));
            let p99 = r.p99_text();
            let _ = writeln!(
                out,
                "<tr{}><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{p99}</td></tr>",
                if off { " class=\"off\"" } else { "" },
                xml(&r.backend),
                r.requests,
                r.share * 100.0,
                r.expected_text(),
                r.errors
            );
        }
        let _ = writeln!(out, "</table>");
        for (kind, svg) in &section.charts {
            let _ = writeln!(
                out,
                "<div class=\"chart\" id=\"{}-{kind}\">{svg}</div>",
                file_safe(&section.pool)
            );
        }
    }
    out.push_str("<p><small>Shaded: alert periods, from when each condition began to its resolve.</small></p>\n</body></html>\n");
    out
}

fn diagnosis_meaning(diagnosis: &str) -> &'static str {
    match diagnosis {
        "balancer" => {
            "One or a few backends took more or less than their share: look at the balancer's config and health checks first."
        }
        "backend" => "One backend failed or slowed at its normal share: look at that server.",
        "shared dependency" => {
            "Every backend failed alike at even shares: look behind them (a database, a cache)."
        }
        "load" => "The whole pool received more traffic, evenly spread.",
        _ => "",
    }
}

/// A pool name made safe for a file name and an HTML id.
pub fn file_safe(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .take(60)
        .collect();
    if safe.is_empty() { "pool".into() } else { safe }
}

/// Writes the Markdown draft to `path` and its charts beside it.
pub fn write_markdown(incident: &Incident, path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let stem = path.file_stem().map_or("incident".into(), |s| s.to_string_lossy().into_owned());
    let (text, files) = markdown(incident, &stem);
    std::fs::write(path, text)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut written = vec![path.to_path_buf()];
    for (name, svg) in files {
        let file = dir.join(name);
        std::fs::write(&file, svg)?;
        written.push(file);
    }
    Ok(written)
}
