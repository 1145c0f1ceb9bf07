//! `skewtail rehearse`: the arguments made into a plan (log, format and weights from a
//! skewtail config or from flags), the rehearsal, its report and exit status.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};

use super::{Outcome, RehearseArgs, load_settings};
use crate::alert::is_loopback;
use crate::config::{Settings, build_parser};
use crate::rehearse::load::LoadPlan;
use crate::rehearse::{Plan, human, new_mark, rehearse as run_rehearsal};

/// A rehearsal is a bounded load test, not a benchmark.
const MAX_REQUESTS: u64 = 1_000_000;

pub(super) fn rehearse(args: &RehearseArgs) -> anyhow::Result<Outcome> {
    let url = reqwest::Url::parse(&args.url).with_context(|| {
        format!("`{}` is not a URL; write e.g. http://127.0.0.1:8080/", args.url)
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("`{url}`: only http and https URLs can be rehearsed");
    }
    if !is_loopback(&url) && !args.allow_remote {
        bail!(
            "`{url}` is not on this host; a rehearsal sends real load, so pass --allow-remote to aim it elsewhere"
        );
    }
    if args.requests == 0 || args.requests > MAX_REQUESTS {
        bail!("--requests must be from 1 to {MAX_REQUESTS}");
    }
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 100_000.0) {
        bail!("--rate must be a number of requests a second, above 0 and at most 100000");
    }
    let settings = match &args.config {
        Some(path) => load_settings(path)?,
        None => Settings::defaults(),
    };
    let input = match (&args.pool, settings.inputs.as_slice()) {
        (Some(pool), inputs) => inputs.iter().find(|i| &i.pool == pool),
        (None, [only]) => Some(only),
        _ => None,
    };
    let log =
        args.log.clone().or_else(|| input.map(|i| i.path.clone())).context(
            "give the balancer's access log with --log (or --config with the pool's input)",
        )?;
    let parser = match (&args.format, &args.log_format, input) {
        (None, None, Some(input)) => input.parser.clone(),
        (format, log_format, _) => {
            let format =
                format.as_deref().or(if log_format.is_some() { None } else { Some("auto") });
            build_parser(&settings.patterns, format, log_format.as_deref(), &[], Some(&log))?.0
        }
    };
    let pool = args.pool.clone().or_else(|| input.map(|i| i.pool.clone()));
    let expected = if !args.weights.is_empty() {
        Some((parse_weights(&args.weights)?, "--weights".to_string()))
    } else if let Some(path) = &args.balancer_config {
        Some(balancer_shares(path, pool.as_deref())?)
    } else {
        pool.as_ref().and_then(|p| settings.expectations.get(p)).map(|e| {
            let total: f64 = e.weights.values().sum();
            let shares = e.weights.iter().map(|(b, w)| (b.clone(), w / total)).collect();
            (
                shares,
                format!(
                    "the weights of pool `{}` in the config",
                    pool.as_deref().unwrap_or_default()
                ),
            )
        })
    };
    let mut plan = Plan {
        load: LoadPlan {
            url: url.clone(),
            requests: args.requests,
            rate_per_s: args.rate,
            concurrency: args.concurrency.clamp(1, 256),
            mark: new_mark(),
            progress: !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        },
        log,
        parser,
        pool,
        expected,
        settle: Duration::from_secs_f64(args.settle_s.clamp(0.1, 600.0)),
        detector: settings.detector.clone(),
    };
    let result = run_rehearsal(&mut plan)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &result)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", human(&result, url.as_str(), args.rate))?;
    }
    Ok(if result.pass { Outcome::Clean } else { Outcome::Findings })
}

/// The expected shares of a pool in the balancer's config, read by the same rules as lint and
/// the weight import, and where they came from.
fn balancer_shares(
    path: &std::path::Path,
    pool: Option<&str>,
) -> anyhow::Result<(Vec<(String, f64)>, String)> {
    let config = crate::balancer::read(path, None)?;
    let name = match (pool, config.pools.as_slice()) {
        (Some(name), _) => name.to_string(),
        (None, [only]) => only.name.clone(),
        (None, pools) => {
            bail!("{} has {} pools; name one with --pool", path.display(), pools.len())
        }
    };
    let expectation = config.expectation(&name)?;
    let total: f64 = expectation.weights.values().sum();
    if total <= 0.0 {
        bail!("pool `{name}` in {} has no server expected to take traffic", path.display());
    }
    let shares = expectation.weights.into_iter().map(|(b, w)| (b, w / total)).collect();
    Ok((shares, format!("pool `{name}` in {}", path.display())))
}

/// `BACKEND=WEIGHT` pairs as shares summing to 1.
fn parse_weights(pairs: &[String]) -> anyhow::Result<Vec<(String, f64)>> {
    let mut weights = Vec::new();
    for pair in pairs {
        let (backend, weight) = pair
            .rsplit_once('=')
            .with_context(|| format!("--weights `{pair}`: write BACKEND=WEIGHT"))?;
        let weight: f64 = weight
            .parse()
            .ok()
            .filter(|w: &f64| w.is_finite() && *w >= 0.0)
            .with_context(|| format!("--weights `{pair}`: the weight must be a number >= 0"))?;
        weights.push((backend.to_string(), weight));
    }
    let total: f64 = weights.iter().map(|w| w.1).sum();
    if total <= 0.0 {
        bail!("--weights add up to 0; give at least one backend a positive weight");
    }
    Ok(weights.into_iter().map(|(b, w)| (b, w / total)).collect())
}
