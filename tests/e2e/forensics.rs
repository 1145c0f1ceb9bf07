//! Forensics: a directory of rotated, compressed logs replays in time order whatever the
//! argument order; `--since/--until` slices; the Markdown and HTML reports, the HTML rendered
//! by a real headless Chromium and its charts checked pixel by pixel.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::*;

/// 60 minutes at 40 req/s; 10.0.0.3:8080 takes half the traffic from minute 20 to 35.
fn incident_log(dir: &Path) -> PathBuf {
    let path = dir.join("all.log");
    simulate(&path, &["--duration", "60m", "--incident", "skew@20m+15m:backend=2,share=0.5"]);
    path
}

/// `skewtail simulate --format upstream ARGS --out PATH`.
fn simulate(path: &Path, args: &[&str]) {
    let output = skewtail()
        .args(["simulate", "--format", "upstream"])
        .args(args)
        .arg("--out")
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

/// The log cut in three, rotated as logrotate leaves it: `.2.gz`, `.1.zst`, and the live file.
fn rotated_set(dir: &Path, log: &Path) -> PathBuf {
    let text = std::fs::read(log).unwrap();
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let third = lines.len() / 3;
    let logs = dir.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&lines[..third].concat()).unwrap();
    std::fs::write(logs.join("access.log.2.gz"), gz.finish().unwrap()).unwrap();
    let zst = zstd::encode_all(&lines[third..2 * third].concat()[..], 3).unwrap();
    std::fs::write(logs.join("access.log.1.zst"), zst).unwrap();
    std::fs::write(logs.join("access.log"), lines[2 * third..].concat()).unwrap();
    logs
}

fn alerts(objects: &[Value]) -> Vec<(String, String, String)> {
    of_type(objects, "alert")
        .iter()
        .map(|a| {
            (
                a["state"].as_str().unwrap().into(),
                a["backend"].as_str().unwrap().into(),
                a["at"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn rotated_compressed_logs_replay_in_time_order_whatever_the_argument_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = incident_log(dir.path());
    let logs = rotated_set(dir.path(), &log);
    let (_, whole) = replay_json(&log, &["--pool", "api"]);
    // Newest first, as a shell expands access.log*; a directory; and stdin, compressed.
    let newest_first: Vec<PathBuf> = ["access.log", "access.log.1.zst", "access.log.2.gz"]
        .iter()
        .map(|n| logs.join(n))
        .collect();
    let by_args = skewtail()
        .args(["replay", "--json", "--pool", "api"])
        .args(&newest_first)
        .output()
        .unwrap();
    assert!(by_args.status.success(), "{}", stderr(&by_args));
    let by_dir =
        skewtail().args(["replay", "--json", "--pool", "api"]).arg(&logs).output().unwrap();
    assert!(by_dir.status.success(), "{}", stderr(&by_dir));
    for output in [&by_args, &by_dir] {
        let objects = ndjson(output);
        assert_eq!(summary(&objects)["late"], 0, "{}", summary(&objects));
        assert_eq!(summary(&objects)["parsed"], summary(&whole)["parsed"]);
        assert_eq!(alerts(&objects), alerts(&whole));
    }
    assert_eq!(alerts(&whole).len(), 2, "one skew, fired and resolved: {:?}", alerts(&whole));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(&log).unwrap()).unwrap();
    let mut child = skewtail()
        .args(["replay", "--json", "--pool", "api", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let compressed = gz.finish().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&compressed));
    let piped = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert_eq!(alerts(&ndjson(&piped)), alerts(&whole), "gzip on stdin, format recognised");
}

#[test]
fn logs_of_two_balancers_are_merged_by_timestamp() {
    // The same traffic, shared by two balancers: each rotated its own log, one with gzip.
    let dir = tempfile::tempdir().unwrap();
    let log = incident_log(dir.path());
    let text = std::fs::read(&log).unwrap();
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (at, line) in lines.iter().enumerate() {
        if at % 3 == 0 { first.push(*line) } else { second.push(*line) }
    }
    for (name, share) in [("lb1", &first), ("lb2", &second)] {
        let logs = dir.path().join(name);
        std::fs::create_dir(&logs).unwrap();
        let half = share.len() / 2;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&share[..half].concat()).unwrap();
        std::fs::write(logs.join("access.log.1.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(logs.join("access.log"), share[half..].concat()).unwrap();
    }
    let (_, whole) = replay_json(&log, &["--pool", "api"]);
    let output = skewtail()
        .args(["replay", "--json", "--pool", "api"])
        .arg(dir.path().join("lb2"))
        .arg(dir.path().join("lb1/access.log"))
        .arg(dir.path().join("lb1/access.log.1.gz"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let merged = ndjson(&output);
    assert_eq!(summary(&merged)["late"], 0, "{}", summary(&merged));
    assert_eq!(summary(&merged)["parsed"], summary(&whole)["parsed"]);
    assert_eq!(alerts(&merged), alerts(&whole));
    assert_eq!(of_type(&merged, "window"), of_type(&whole, "window"), "the same windows");
    assert_eq!(alerts(&whole).len(), 2, "one skew, fired and resolved: {:?}", alerts(&whole));
}

#[test]
fn since_and_until_slice_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let log = incident_log(dir.path());
    let (_, whole) = replay_json(&log, &["--pool", "api"]);
    let first = of_type(&whole, "window")[0]["start"].as_str().unwrap().to_string();
    let start = chrono::DateTime::parse_from_rfc3339(&first).unwrap();
    let since = (start + chrono::Duration::minutes(15)).to_rfc3339();
    let until = (start + chrono::Duration::minutes(45)).to_rfc3339();
    let (_, slice) = replay_json(&log, &["--pool", "api", "--since", &since, "--until", &until]);
    let windows = of_type(&slice, "window");
    let starts: Vec<i64> = windows.iter().map(|w| unix_s(&w["start"])).collect();
    assert!(
        starts
            .iter()
            .all(|s| *s >= start.timestamp() + 15 * 60 && *s < start.timestamp() + 45 * 60),
        "{starts:?}"
    );
    assert!(windows.len() >= 170, "{} windows", windows.len());
    assert!(summary(&slice)["outside_range"].as_u64().unwrap() > 0);
    // The incident lies inside the slice: the same alerts.
    assert_eq!(alerts(&slice), alerts(&whole));
    let output = skewtail().args(["replay", "--since", "yesterday"]).arg(&log).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("-2h"), "{}", stderr(&output));
}

/// A PNG decoded to (width, height, RGB rows).
fn decode_png(path: &Path) -> (u32, u32, Vec<u8>, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let channels = info.color_type.samples();
    (info.width, info.height, buffer, channels)
}

fn pixel(image: &(u32, u32, Vec<u8>, usize), x: u32, y: u32) -> (u8, u8, u8) {
    let (width, _, data, channels) = image;
    let at = (y as usize * *width as usize + x as usize) * channels;
    (data[at], data[at + 1], data[at + 2])
}

fn near(a: (u8, u8, u8), b: (u8, u8, u8)) -> bool {
    a.0.abs_diff(b.0) <= 6 && a.1.abs_diff(b.1) <= 6 && a.2.abs_diff(b.2) <= 6
}

/// Renders `file` in headless Chromium at `width`×`height` to a PNG.
fn screenshot(file: &Path, width: u32, height: u32, png: &Path) {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect("chromium (apt-get install chromium)");
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", file.display()))
        .output()
        .unwrap();
    assert!(png.exists(), "chromium drew nothing: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn reports_for_a_postmortem_markdown_and_html_drawn_by_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let log = incident_log(dir.path());
    let md = dir.path().join("incident.md");
    let html = dir.path().join("report.html");
    let output = skewtail()
        .args(["replay", "--pool", "api", "--report"])
        .arg(&md)
        .arg("--html")
        .arg(&html)
        .arg(&log)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("pool api") && text.contains("10.0.0.3:8080"),
        "the per-backend table: {text}"
    );

    let draft = std::fs::read_to_string(&md).unwrap();
    for part in [
        "## Summary",
        "## Diagnosis",
        "**balancer**",
        "## Timeline (UTC)",
        "| backend | requests | share | expected | 5xx | p99 |",
        "![share](incident-api-share.svg)",
    ] {
        assert!(draft.contains(part), "{part} missing from:\n{draft}");
    }
    for kind in ["share", "rate", "errors", "p99"] {
        let svg =
            std::fs::read_to_string(dir.path().join(format!("incident-api-{kind}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("class=\"alert\""), "{kind}");
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("<script"), "no scripts");
    assert_eq!(page.matches("<svg").count(), 4);
    assert!(page.contains("@media print"));

    // The share chart alone, at its own size: the alert period (minute 20 to about 35 of 60)
    // is shaded where it should be, and the time before it is not.
    let share = dir.path().join("incident-api-share.svg");
    let png_path = dir.path().join("share.png");
    screenshot(&share, 900, 260, &png_path);
    let image = decode_png(&png_path);
    assert_eq!((image.0, image.1), (900, 260), "chart size");
    let plot = |minute: f64| (60.0 + minute / 60.0 * (900.0 - 60.0 - 170.0)) as u32;
    let shade = (0xf4, 0xc7, 0xc3);
    for minute in [22.0, 27.5, 33.0] {
        assert!(
            near(pixel(&image, plot(minute), 40), shade),
            "minute {minute}: {:?}",
            pixel(&image, plot(minute), 40)
        );
    }
    for minute in [5.0, 15.0, 45.0, 55.0] {
        assert!(
            near(pixel(&image, plot(minute), 40), (255, 255, 255)),
            "minute {minute}: {:?}",
            pixel(&image, plot(minute), 40)
        );
    }
    // The culprit's line is drawn high (about 50%) inside the period, low outside it.
    let column_has_colour = |x: u32, from_y: u32, to_y: u32| {
        (from_y..to_y).any(|y| {
            let p = pixel(&image, x, y);
            !near(p, shade) && !near(p, (255, 255, 255)) && !near(p, (0xdd, 0xdd, 0xdd))
        })
    };
    assert!(column_has_colour(plot(27.5), 110, 150), "no line near 50% during the skew");
    // The whole page renders with all four charts shaded.
    let page_png = dir.path().join("page.png");
    screenshot(&html, 1000, 2600, &page_png);
    let page_image = decode_png(&page_png);
    assert_eq!((page_image.0, page_image.1), (1000, 2600));
    let shaded = (0..page_image.1)
        .step_by(2)
        .flat_map(|y| (0..page_image.0).step_by(2).map(move |x| (x, y)))
        .filter(|(x, y)| near(pixel(&page_image, *x, *y), shade))
        .count();
    assert!(shaded > 4 * 2000, "{shaded} shaded pixels (sampled) for four charts");
}

#[test]
fn command_line_polish_pipes_completions_man_and_parse_failures() {
    let dir = tempfile::tempdir().unwrap();
    let log = incident_log(dir.path());
    // A reader that stops after one line: a quiet exit 0, not "Broken pipe".
    for args in [vec!["replay", "--json"], vec!["replay"], vec!["parse"]] {
        let mut child = skewtail()
            .args(&args)
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 64];
        std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
        drop(stdout);
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
        assert!(!stderr(&output).contains("Broken pipe"), "{args:?}: {}", stderr(&output));
    }
    for shell in ["bash", "zsh", "fish"] {
        let output = skewtail().args(["completions", shell]).output().unwrap();
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stdout).contains("rehearse"), "{shell}");
    }
    let man = skewtail().arg("man").output().unwrap();
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH skewtail 1"));
    let garbage = dir.path().join("garbage.log");
    std::fs::write(&garbage, "not a log line\nnor this\n").unwrap();
    let output = skewtail().args(["parse", "--format", "upstream"]).arg(&garbage).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("none of the 2 lines parsed"), "{}", stderr(&output));
    let output = skewtail().args(["replay", "--format", "upstrem"]).arg(&log).output().unwrap();
    assert!(stderr(&output).contains("did you mean `upstream`?"), "{}", stderr(&output));
}

#[test]
fn ctrl_c_prints_partial_results_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::read(incident_log(dir.path())).unwrap();
    let mut child = skewtail()
        .args(["replay", "--json", "--format", "upstream", "--pool", "api", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain stdout and stderr meanwhile, or a full pipe would stop the replay.
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut bytes).unwrap();
        bytes
    });
    let mut stdin = child.stdin.take().unwrap();
    let half = log.len() / 2;
    let half = half + log[half..].iter().position(|&b| b == b'\n').unwrap() + 1;
    stdin.write_all(&log[..half]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success()
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    // More input after Ctrl-C is not read (it may fail: the reader is gone).
    let _ = stdin.write_all(&log[half..]);
    drop(stdin);
    let mut output = child.wait_with_output().unwrap();
    output.stdout = reader.join().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let objects = ndjson(&output);
    let summary = summary(&objects);
    assert_eq!(summary["interrupted"], true, "{summary}");
    let lines = summary["lines"].as_u64().unwrap();
    let total = log.iter().filter(|&&b| b == b'\n').count() as u64;
    assert!(lines > 0 && lines < total, "{lines} of {total} lines");
}

#[test]
fn one_two_and_eight_threads_give_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.log");
    // Incidents, late lines, and lines that do not parse.
    simulate(
        &path,
        &[
            "--duration",
            "40m",
            "--late-fraction",
            "0.02",
            "--incident",
            "skew@10m+10m:backend=2,share=0.5",
            "--incident",
            "errors@25m+8m:backend=4,rate=0.3",
        ],
    );
    let mut text = std::fs::read(&path).unwrap();
    text.extend_from_slice(b"garbage that does not parse\n");
    std::fs::write(&path, &text).unwrap();
    let run = |threads: &str, file: &Path| {
        let output = skewtail()
            .args([
                "replay",
                "--json",
                "--format",
                "upstream",
                "--pool",
                "api",
                "--threads",
                threads,
            ])
            .arg(file)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        output.stdout
    };
    let one = run("1", &path);
    let objects: Vec<Value> =
        String::from_utf8_lossy(&one).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(summary(&objects)["late"].as_u64().unwrap() > 0, "{}", summary(&objects));
    assert_eq!(summary(&objects)["unparsed"], 1);
    assert!(of_type(&objects, "alert").len() >= 4, "both incidents fired and resolved");
    for threads in ["2", "8"] {
        assert!(run(threads, &path) == one, "{threads} threads differ from one");
    }
    // Compressed input goes through the decompressing thread too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&text).unwrap();
    let gz_path = dir.path().join("late.log.gz");
    std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();
    assert!(run("2", &gz_path) == one, "gzip with 2 threads differs");
}

#[test]
fn threads_agree_while_backends_are_forgotten_and_a_pool_overflows() {
    // Backends come and go every minute: each batch meets names the windower has forgotten
    // (and whose slots it reuses) and, past the cap, names counted under `_overflow`.
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("churn.log");
    let mut text = String::new();
    for second in 0..40 * 60u32 {
        let (minute, within) = (second / 60, second % 60);
        for request in 0..12u32 {
            let backend = format!("10.1.{}.{}:80", minute % 7, (request + within) % 9);
            text.push_str(&format!(
                "10.20.0.1 - - [15/Nov/2023:{:02}:{:02}:{:02} +0000] \"GET /x HTTP/1.1\" 200 10 \"-\" \"ua\" rt=0.010 uct=\"0.001\" uht=\"0.009\" urt=\"0.009\" ua=\"{backend}\" us=\"200\"\n",
                14 + minute / 60,
                minute % 60,
                within
            ));
        }
    }
    std::fs::write(&log_path, text).unwrap();
    let config = dir.path().join("skewtail.toml");
    std::fs::write(
        &config,
        "[detector]\nforget_after_s = 120\nmax_backends = 20\n\n[[input]]\npath = \"churn.log\"\nformat = \"upstream\"\npool = \"api\"\n",
    )
    .unwrap();
    let run = |threads: &str| {
        let output = skewtail()
            .args(["replay", "--json", "--threads", threads, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        output.stdout
    };
    let one = run("1");
    let objects: Vec<Value> =
        String::from_utf8_lossy(&one).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary = summary(&objects);
    assert!(summary["forgotten_backends"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["overflowed"].as_u64().unwrap() > 0, "{summary}");
    for threads in ["2", "8"] {
        assert!(run(threads) == one, "{threads} threads differ from one");
    }
}

/// Any number of rotated sets is merged, but those open at once are bounded: 257 balancers'
/// logs of the same minute overlap, one more than may be open together, and are refused
/// with the rule and the time; 256 are merged.
#[test]
fn too_many_overlapping_sets_are_refused_with_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let line = |minute: u32| {
        format!(
            "10.0.0.1 - - [15/Nov/2023:14:{minute:02}:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\" rt=0.010 uct=\"0.001\" uht=\"0.009\" urt=\"0.009\" ua=\"10.0.0.1:8080\" us=\"200\"\n"
        )
    };
    let mut paths = Vec::new();
    for balancer in 0..257 {
        let logs = dir.path().join(format!("lb{balancer}"));
        std::fs::create_dir(&logs).unwrap();
        std::fs::write(logs.join("access.log"), line(0) + &line(5)).unwrap();
        paths.push(logs.join("access.log"));
    }
    let output = skewtail().args(["replay", "--format", "upstream"]).args(&paths).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("257 streams overlap in time at 2023-11-15T14:00:00")
            && message.contains("more than the 256"),
        "{message}"
    );
    let output = skewtail()
        .args(["replay", "--json", "--format", "upstream"])
        .args(&paths[..256])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(summary(&ndjson(&output))["parsed"], 512);
}
