//! Log trees: cloud balancer trees given as their top directory, many streams merged by time
//! with only the overlapping ones open, `--since` by file names. A test binary of its own
//! (`tests/log_trees.rs`) with the object storage tests: their replays are CPU-heavy, and the
//! sidecar's wall-clock tests in `e2e` should not share the two cores with them.

use std::path::Path;

use skewtail::synth::{LogStyle, Scenario};

use crate::util::*;

/// An AWS ALB log tree as S3 holds it, from the lines of `whole`: `nodes` nodes (a line's
/// node by its place), one gzip file per node every 5 minutes, in dated directories. Returns
/// the tree's top directory and the files' names by (interval end, node).
pub fn alb_tree(dir: &Path, whole: &Path, nodes: usize) -> (std::path::PathBuf, Vec<String>) {
    use std::io::Write;
    let text = std::fs::read_to_string(whole).unwrap();
    let mut files: std::collections::BTreeMap<(String, String), Vec<&str>> = Default::default();
    for (i, line) in text.lines().enumerate() {
        let time = line.split(' ').nth(1).unwrap();
        let (day, hour, minute) =
            (&time[8..10], &time[11..13], time[14..16].parse::<u32>().unwrap());
        let end_minute = (minute / 5 + 1) * 5;
        let end = if end_minute == 60 {
            format!("{day}T{:02}00Z", hour.parse::<u32>().unwrap() + 1)
        } else {
            format!("{day}T{hour}{end_minute:02}Z")
        };
        let node = format!("10.0.{}.7", i % nodes);
        files.entry((end, node)).or_default().push(line);
    }
    let tree = dir.join("AWSLogs");
    let day_dir = tree.join("123456789012/elasticloadbalancing/us-east-2/2023/11/15");
    std::fs::create_dir_all(&day_dir).unwrap();
    let mut names = Vec::new();
    for ((end, node), lines) in &files {
        let name = format!(
            "123456789012_elasticloadbalancing_us-east-2_app.api-alb.50dc6c495c0c9188_202311{end}_{node}_3kd9x.log.gz"
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for line in lines {
            writeln!(gz, "{line}").unwrap();
        }
        std::fs::write(day_dir.join(&name), gz.finish().unwrap()).unwrap();
        names.push(day_dir.join(name).display().to_string());
    }
    (tree, names)
}

/// An AWS ALB log tree as S3 holds it: two nodes, one gzip file per node every 5 minutes,
/// in dated directories, given as its top directory. Every line is counted, none is late, and
/// the alerts are those of the same lines as one log in time order.
#[test]
fn an_alb_log_tree_replays_as_its_lines_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario {
        style: LogStyle::AwsAlb,
        duration_s: 6 * 3600,
        rate_per_s: 10.0,
        ..skew_scenario()
    };
    let (whole, n_lines) = write_log(dir.path(), "whole.log", &scenario);
    let (tree, files) = alb_tree(dir.path(), &whole, 2);
    assert!(files.len() > 140, "{} files", files.len());
    let (expected, expected_alerts) = summary_and_alerts(&whole);
    assert!(!expected_alerts.is_empty());
    let (got, alerts) = summary_and_alerts(&tree);
    assert_eq!(got["lines"], n_lines, "{got}");
    assert_eq!(got["parsed"], n_lines, "{got}");
    assert_eq!(got["late"], 0, "{got}");
    assert_eq!(got["backends"], expected["backends"]);
    assert_eq!(alerts, expected_alerts);
}

/// Forty ALB nodes: forty streams open together (more than the 32 a replay once took), merged
/// by time into the same alerts as the one log. With `--since`, files that end before it are
/// skipped by their names alone: one that is not gzip at all is never opened.
#[test]
fn forty_alb_nodes_merge_and_since_skips_files_by_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { style: LogStyle::AwsAlb, rate_per_s: 40.0, ..skew_scenario() };
    let (whole, n_lines) = write_log(dir.path(), "whole.log", &scenario);
    let (tree, files) = alb_tree(dir.path(), &whole, 40);
    let (expected, expected_alerts) = summary_and_alerts(&whole);
    let (got, alerts) = summary_and_alerts(&tree);
    assert_eq!((&got["lines"], &got["late"]), (&n_lines.into(), &0.into()), "{got}");
    assert_eq!(got["backends"], expected["backends"]);
    assert_eq!(alerts, expected_alerts);
    // The second file of one node (the first is opened to learn where its stream begins)
    // made unreadable: it ends at 14:10, long before --since.
    let second = files.iter().find(|f| f.contains("T1410Z_10.0.3.7_")).unwrap();
    std::fs::write(second, b"\x1f\x8bnot gzip at all").unwrap();
    let output = skewtail()
        .args(["replay", "--json", "--pool", "api", "--since", "2023-11-15T14:30:00Z"])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let since = summary(&ndjson(&output)).clone();
    assert!(since["lines"].as_u64().unwrap() < n_lines / 2, "{since}");
    assert_eq!(since["late"], 0, "{since}");
    // Without --since it is read, and the replay says which file is broken.
    let output =
        skewtail().args(["replay", "--json", "--pool", "api"]).arg(&tree).output().unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("T1410Z_10.0.3.7_"), "{}", stderr(&output));
}

/// Three hundred logs one after another in time, each in a directory of its own (a host's
/// log shipped per hour, say): three hundred streams, more than may be open at once, work,
/// because a stream is opened only when the merge reaches its time and closed at its end.
#[test]
fn streams_that_follow_one_another_are_not_open_together() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, n_lines) = write_log(dir.path(), "whole.log", &skew_scenario());
    let text = std::fs::read_to_string(&whole).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let tree = dir.path().join("hosts");
    let per_host = lines.len().div_ceil(300);
    for (i, chunk) in lines.chunks(per_host).enumerate() {
        let host = tree.join(format!("host-{i:03}"));
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("access.log"), chunk.join("\n") + "\n").unwrap();
    }
    assert!(std::fs::read_dir(&tree).unwrap().count() >= 290);
    let (expected, expected_alerts) = summary_and_alerts(&whole);
    let (got, alerts) = summary_and_alerts(&tree);
    assert_eq!((&got["lines"], &got["late"]), (&n_lines.into(), &0.into()), "{got}");
    assert_eq!(got["backends"], expected["backends"]);
    assert_eq!(alerts, expected_alerts);
}
