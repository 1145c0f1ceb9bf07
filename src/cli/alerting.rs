//! `skewtail alert test` (the fire drill) and `skewtail silence add|list|expire`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::{AlertTestArgs, Outcome, SilenceCommand, SilenceDirArgs, load_settings};
use crate::alert::Matcher;
use crate::alert::silence::{self, Silence};

/// Sends a marked test message through every sink (or a route's) and prints each answer.
pub(super) fn test(args: &AlertTestArgs) -> anyhow::Result<Outcome> {
    let settings = load_settings(&args.config)?;
    if settings.alerting.sinks.is_empty() {
        bail!("{}: no [[sink]] to test; see README.md, \"Alerting\"", args.config.display());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let answers = crate::alert::send_test(&settings.alerting, args.route.as_deref(), &runtime)?;
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for (sink, answer) in &answers {
        match answer {
            Ok(said) => writeln!(out, "{sink}: OK, {said}")?,
            Err(why) => {
                failed += 1;
                writeln!(out, "{sink}: FAILED, {why}")?;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} sink(s) did not accept the test message", answers.len());
    }
    Ok(Outcome::Clean)
}

/// `silence add|list|expire`.
pub(super) fn silence(command: &SilenceCommand) -> anyhow::Result<Outcome> {
    let now_ms = crate::clock::wall_clock_ms();
    match command {
        SilenceCommand::Add(args) => {
            let path = silences_file(&args.dir)?;
            let pairs = args
                .matchers
                .iter()
                .map(|m| {
                    m.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .with_context(|| {
                            format!("`{m}`: a matcher is FIELD=PATTERN, e.g. backend=10.0.1.3:8080")
                        })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let matcher = Matcher::from_pairs(&pairs)?;
            let duration_s = crate::synth::parse_duration_s(&args.duration)
                .with_context(|| format!("--duration `{}`: use 30m, 2h or 1h30m", args.duration))?;
            let mut silences = silence::load(&path)?;
            let silence = Silence {
                id: silence::new_id(now_ms, &silences),
                matcher,
                starts_ms: now_ms,
                ends_ms: now_ms + i64::from(duration_s) * 1000,
                comment: args.comment.clone(),
            };
            writeln!(
                std::io::stdout(),
                "{} (until {}): {}",
                silence.id,
                crate::parse::time::format_rfc3339(silence.ends_ms),
                silence.matcher.describe()
            )?;
            silences.push(silence);
            silence::save(&path, &silences)?;
        }
        SilenceCommand::List(dir) => {
            let path = silences_file(dir)?;
            let mut out = std::io::stdout().lock();
            for s in silence::load(&path)? {
                let state = if now_ms >= s.ends_ms {
                    "expired"
                } else if now_ms < s.starts_ms {
                    "pending"
                } else {
                    "active"
                };
                writeln!(
                    out,
                    "{}  {state:<7}  until {}  {}  # {}",
                    s.id,
                    crate::parse::time::format_rfc3339(s.ends_ms),
                    s.matcher.describe(),
                    crate::text::for_log(&s.comment)
                )?;
            }
        }
        SilenceCommand::Expire(args) => {
            let path = silences_file(&args.dir)?;
            let mut silences = silence::load(&path)?;
            let Some(found) = silences.iter_mut().find(|s| s.id == args.id) else {
                bail!(
                    "no silence `{}` in {}; see `skewtail silence list`",
                    args.id,
                    path.display()
                );
            };
            found.ends_ms = found.ends_ms.min(now_ms);
            silence::save(&path, &silences)?;
            writeln!(std::io::stdout(), "{} expired", args.id)?;
        }
    }
    Ok(Outcome::Clean)
}

/// The silences file of the state directory `run` uses with the same arguments.
fn silences_file(dir: &SilenceDirArgs) -> anyhow::Result<PathBuf> {
    let from_config = match &dir.config {
        Some(config) => load_settings(config)?.state_dir,
        None => None,
    };
    let state_dir =
        dir.state_dir.clone().or(from_config).unwrap_or_else(crate::live::default_state_dir);
    Ok(silence::file_in(&state_dir))
}
