//! Charts for the reports: each pool's windows kept as time series (bounded: at most
//! [`MAX_POINTS`] points, halving the resolution when more come, and [`MAX_SERIES`] backends
//! of their own), and drawn as self-contained SVG with the alert periods shaded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::window::WindowSummary;

/// Points per series before pairs are merged.
pub const MAX_POINTS: usize = 720;

/// Backends per pool drawn on their own; the rest are one series.
pub const MAX_SERIES: usize = 12;

/// The name of the series of the backends beyond [`MAX_SERIES`].
const OTHERS: &str = "(others)";

/// One point: an interval of event time and what the pool's backends did in it.
#[derive(Debug, Clone, Default)]
struct Point {
    start_ms: i64,
    end_ms: i64,
    /// Per series index: requests, errors, worst p99 (ms).
    backends: Vec<(u64, u64, Option<f64>)>,
}

impl Point {
    fn merge(&mut self, other: &Point) {
        self.end_ms = other.end_ms;
        if self.backends.len() < other.backends.len() {
            self.backends.resize(other.backends.len(), (0, 0, None));
        }
        for (mine, theirs) in self.backends.iter_mut().zip(&other.backends) {
            mine.0 += theirs.0;
            mine.1 += theirs.1;
            mine.2 = match (mine.2, theirs.2) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }

    fn total(&self) -> u64 {
        self.backends.iter().map(|b| b.0).sum()
    }
}

/// One pool's series.
#[derive(Debug, Default)]
struct PoolSeries {
    names: Vec<Arc<str>>,
    points: Vec<Point>,
    /// Windows merged into one point (doubles when the points fill up).
    per_point: usize,
    pending: Option<(Point, usize)>,
}

/// An alert period to shade.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    /// When it fired, Unix ms.
    pub from_ms: i64,
    /// When it resolved (`None`: still firing at the end).
    pub to_ms: Option<i64>,
    /// What, for the tooltip.
    pub label: String,
}

/// The time series of every pool.
#[derive(Debug, Default)]
pub struct Series {
    pools: BTreeMap<Arc<str>, PoolSeries>,
}

impl Series {
    /// Adds a closed window.
    pub fn add(&mut self, window: &WindowSummary) {
        let pool = self
            .pools
            .entry(window.pool.clone())
            .or_insert_with(|| PoolSeries { per_point: 1, ..PoolSeries::default() });
        let mut point =
            Point { start_ms: window.start_ms, end_ms: window.end_ms, backends: Vec::new() };
        for b in &window.backends {
            let index = match pool.names.iter().position(|n| *n == b.backend) {
                Some(index) => index,
                None if pool.names.len() < MAX_SERIES => {
                    pool.names.push(b.backend.clone());
                    pool.names.len() - 1
                }
                None => match pool.names.iter().position(|n| &**n == OTHERS) {
                    Some(index) => index,
                    None => {
                        pool.names.push(Arc::from(OTHERS));
                        pool.names.len() - 1
                    }
                },
            };
            if point.backends.len() <= index {
                point.backends.resize(index + 1, (0, 0, None));
            }
            let slot = &mut point.backends[index];
            slot.0 += b.requests;
            slot.1 += b.errors;
            slot.2 = match (slot.2, b.p99_ms) {
                (Some(a), Some(c)) => Some(a.max(c)),
                (a, c) => a.or(c),
            };
        }
        let per_point = pool.per_point;
        match &mut pool.pending {
            Some((pending, n)) => {
                pending.merge(&point);
                *n += 1;
            }
            None => pool.pending = Some((point, 1)),
        }
        if pool.pending.as_ref().is_some_and(|(_, n)| *n >= per_point)
            && let Some((done, _)) = pool.pending.take()
        {
            pool.points.push(done);
        }
        if pool.points.len() >= MAX_POINTS {
            let merged: Vec<Point> = pool
                .points
                .chunks(2)
                .map(|pair| {
                    let mut first = pair[0].clone();
                    if let Some(second) = pair.get(1) {
                        first.merge(second);
                    }
                    first
                })
                .collect();
            pool.points = merged;
            pool.per_point *= 2;
        }
    }

    /// The pools with data.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<str>> {
        self.pools.keys()
    }

    /// The four charts of `pool` as SVG: share against expected, request rate, 5xx rate, p99.
    pub fn charts(
        &self,
        pool: &str,
        expected: &[(Arc<str>, f64)],
        periods: &[Period],
    ) -> Vec<(&'static str, String)> {
        let Some(series) = self.pools.get(pool) else { return Vec::new() };
        let mut points = series.points.clone();
        if let Some((pending, _)) = &series.pending {
            points.push(pending.clone());
        }
        if points.is_empty() {
            return Vec::new();
        }
        let names: Vec<String> = series.names.iter().map(|n| n.to_string()).collect();
        let seconds = |p: &Point| ((p.end_ms - p.start_ms).max(1) as f64) / 1000.0;
        let per_backend = |value: &dyn Fn(&Point, usize) -> Option<f64>| -> Vec<Vec<Option<f64>>> {
            (0..names.len()).map(|i| points.iter().map(|p| value(p, i)).collect()).collect()
        };
        let share = per_backend(&|p, i| {
            let total = p.total();
            (total > 0).then(|| p.backends.get(i).map_or(0, |b| b.0) as f64 / total as f64 * 100.0)
        });
        let expected_lines: Vec<Option<f64>> = series
            .names
            .iter()
            .map(|n| expected.iter().find(|(b, _)| b == n).map(|(_, s)| s * 100.0))
            .collect();
        let rate = vec![points.iter().map(|p| Some(p.total() as f64 / seconds(p))).collect()];
        let errors = per_backend(&|p, i| {
            let (requests, errors, _) = p.backends.get(i).copied().unwrap_or_default();
            (requests > 0).then(|| errors as f64 / requests as f64 * 100.0)
        });
        let p99 = per_backend(&|p, i| p.backends.get(i).and_then(|b| b.2));
        let frame = Frame {
            start_ms: points[0].start_ms,
            end_ms: points.last().map_or(points[0].end_ms, |p| p.end_ms),
            times: points.iter().map(|p| (p.start_ms + p.end_ms) / 2).collect(),
            periods,
        };
        vec![
            (
                "share",
                frame.draw(
                    "Share of the pool's requests, % (dashed: expected)",
                    &names,
                    &share,
                    &expected_lines,
                ),
            ),
            ("rate", frame.draw("Requests per second", &["pool".to_string()], &rate, &[])),
            ("errors", frame.draw("5xx, % of each backend's requests", &names, &errors, &[])),
            ("p99", frame.draw("p99 backend latency, ms", &names, &p99, &[])),
        ]
    }
}

/// Chart geometry, px.
pub const WIDTH: f64 = 900.0;
/// Chart height, px.
pub const HEIGHT: f64 = 260.0;
/// Plot area: left, top, right, bottom margins.
pub const MARGIN: (f64, f64, f64, f64) = (60.0, 30.0, 170.0, 30.0);

/// The colour of shaded alert periods.
pub const SHADE: &str = "#f4c7c3";

const COLOURS: [&str; 13] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#843c39",
];

/// XML-escapes text from logs.
pub fn xml(text: &str) -> String {
    crate::text::without_controls(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

struct Frame<'a> {
    start_ms: i64,
    end_ms: i64,
    times: Vec<i64>,
    periods: &'a [Period],
}

impl Frame<'_> {
    fn x(&self, ms: i64) -> f64 {
        let span = (self.end_ms - self.start_ms).max(1) as f64;
        MARGIN.0 + (ms - self.start_ms) as f64 / span * (WIDTH - MARGIN.0 - MARGIN.2)
    }

    fn draw(
        &self,
        title: &str,
        names: &[String],
        lines: &[Vec<Option<f64>>],
        expected: &[Option<f64>],
    ) -> String {
        let top = lines
            .iter()
            .flatten()
            .flatten()
            .chain(expected.iter().flatten())
            .fold(0.0f64, |a, b| a.max(*b));
        let top = nice_ceiling(top);
        let plot_h = HEIGHT - MARGIN.1 - MARGIN.3;
        let y = |v: f64| MARGIN.1 + plot_h - v / top * plot_h;
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="{}" y="18" font-size="13" font-weight="bold">{}</text>"#,
            MARGIN.0,
            xml(title)
        );
        for period in self.periods {
            let from = self.x(period.from_ms.max(self.start_ms));
            let to = self.x(period.to_ms.unwrap_or(self.end_ms).min(self.end_ms));
            let _ = write!(
                svg,
                r#"<rect class="alert" x="{from:.1}" y="{}" width="{:.1}" height="{plot_h}" fill="{SHADE}"><title>{}</title></rect>"#,
                MARGIN.1,
                (to - from).max(1.0),
                xml(&period.label)
            );
        }
        for i in 0..=4 {
            let value = top * f64::from(i) / 4.0;
            let _ = write!(
                svg,
                r##"<line x1="{}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                MARGIN.0,
                WIDTH - MARGIN.2,
                MARGIN.0 - 5.0,
                y(value) + 4.0,
                short_number(value),
                y = y(value)
            );
        }
        for i in 0..=5 {
            let ms = self.start_ms + (self.end_ms - self.start_ms) * i / 5;
            let label = crate::parse::time::format_rfc3339(ms);
            let label = label.get(11..16).unwrap_or(&label);
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{label}</text>"#,
                self.x(ms),
                HEIGHT - 10.0
            );
        }
        for (index, (name, line)) in names.iter().zip(lines).enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let mut path = String::new();
            let mut pen_down = false;
            for (t, v) in self.times.iter().zip(line) {
                match v {
                    Some(v) => {
                        let _ = write!(
                            path,
                            "{}{:.1},{:.1} ",
                            if pen_down { "L" } else { "M" },
                            self.x(*t),
                            y(*v)
                        );
                        pen_down = true;
                    }
                    None => pen_down = false,
                }
            }
            let _ = write!(
                svg,
                r#"<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#
            );
            if let Some(Some(e)) = expected.get(index) {
                let _ = write!(
                    svg,
                    r#"<line x1="{}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="{colour}" stroke-dasharray="5,4"/>"#,
                    MARGIN.0,
                    WIDTH - MARGIN.2,
                    y = y(*e)
                );
            }
            let ly = MARGIN.1 + 14.0 * index as f64 + 8.0;
            let _ = write!(
                svg,
                r#"<rect x="{}" y="{}" width="10" height="3" fill="{colour}"/><text x="{}" y="{:.1}">{}</text>"#,
                WIDTH - MARGIN.2 + 10.0,
                ly - 3.0,
                WIDTH - MARGIN.2 + 25.0,
                ly + 1.0,
                xml(&crate::text::truncate(name, 22))
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if value <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn short_number(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.1}k", value / 1000.0)
    } else if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}").trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{BackendSummary, LatencySketch};

    fn window(start_ms: i64, counts: &[u64]) -> WindowSummary {
        WindowSummary {
            pool: Arc::from("api"),
            start_ms,
            end_ms: start_ms + 10_000,
            backends: counts
                .iter()
                .enumerate()
                .map(|(i, c)| BackendSummary {
                    backend: Arc::from(format!("<b{i}>")),
                    id: i as u32,
                    requests: *c,
                    errors: 0,
                    retried: 0,
                    failed_attempts: 0,
                    p50_ms: None,
                    p99_ms: Some(20.0),
                    latency: LatencySketch::default(),
                })
                .collect(),
            no_backend: 0,
        }
    }

    #[test]
    fn points_stay_bounded_and_charts_shade_alerts_and_escape_names() {
        let mut series = Series::default();
        for i in 0..3000 {
            series.add(&window(i * 10_000, &[10, 10, 20]));
        }
        let pool = series.pools.get("api").unwrap();
        assert!(pool.points.len() < MAX_POINTS && pool.points.len() > MAX_POINTS / 4);
        let periods =
            [Period { from_ms: 100_000, to_ms: Some(200_000), label: "skew <b2>".into() }];
        let charts = series.charts("api", &[(Arc::from("<b0>"), 0.25)], &periods);
        assert_eq!(charts.len(), 4);
        for (kind, svg) in &charts {
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
            assert!(svg.contains(r#"class="alert""#));
            assert!(!svg.contains("<b0>") && !svg.contains("<b2>"));
            if *kind != "rate" {
                assert!(svg.contains("&lt;b0&gt;"), "{kind}");
            }
        }
        assert!(charts[0].1.contains("stroke-dasharray"), "expected share drawn");
    }
}
