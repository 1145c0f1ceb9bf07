//! `skewtail lint`: a balancer config's findings, for humans or as JSON, with an exit status
//! that fits CI.

use std::io::Write;

use super::{LintArgs, Outcome, load_settings};
use crate::lint;

pub(super) fn lint(args: &LintArgs) -> anyhow::Result<Outcome> {
    let config = crate::balancer::read(&args.config, args.kind)?;
    let mut findings = lint::rules::check(&config);
    if let Some(path) = &args.against {
        let settings = load_settings(path)?;
        let name = path.display().to_string();
        findings.extend(lint::rules::against(&config, &settings.expectations, &name));
    }
    let findings = lint::sorted(findings);
    let mut out = std::io::stdout().lock();
    if args.json {
        let document = serde_json::json!({
            "kind": config.kind,
            "files": config.files,
            "pools": config.pools.iter().map(|p| &p.name).collect::<Vec<_>>(),
            "findings": findings,
        });
        serde_json::to_writer_pretty(&mut out, &document)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", lint::human(&findings, config.pools.len()))?;
    }
    let failing = findings.iter().any(|f| f.severity >= args.fail_on);
    Ok(if failing { Outcome::Findings } else { Outcome::Clean })
}
