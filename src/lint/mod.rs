//! Lint: `skewtail lint CONFIG` checks an nginx or HAProxy config for what skews traffic,
//! before it is deployed (the seed postmortem's "automated load balancer configuration
//! checks"). The config is read by [`crate::balancer`], the same reading the weight import
//! uses; `rules.rs` says what is wrong, why it matters and what to do.

pub mod rules;

use serde::Serialize;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Likely to skew traffic.
    Warning,
    /// Skews traffic, or will not load.
    Error,
}

impl Severity {
    /// The word used in output.
    pub fn word(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One finding, located.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The balancer config file.
    pub file: String,
    /// Its line.
    pub line: usize,
    /// How much it matters.
    pub severity: Severity,
    /// A stable code (`weight-outlier`, `single-server`, ...).
    pub code: &'static str,
    /// The pool.
    pub pool: String,
    /// The server, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// What was found.
    pub message: String,
    /// Why it matters.
    pub why: String,
    /// What to do.
    pub fix: String,
}

/// Findings sorted by file, line and code.
pub fn sorted(mut findings: Vec<Finding>) -> Vec<Finding> {
    findings.sort_by(|a, b| (&a.file, a.line, a.code).cmp(&(&b.file, b.line, b.code)));
    findings
}

/// The human report: one block per finding, then a count.
pub fn human(findings: &[Finding], pools: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for f in findings {
        let _ = writeln!(
            out,
            "{}:{}: {} [{}] {}",
            f.file,
            f.line,
            f.severity.word(),
            f.code,
            f.message
        );
        let _ = writeln!(out, "    why: {}", f.why);
        let _ = writeln!(out, "    fix: {}", f.fix);
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let _ = writeln!(
        out,
        "{} pool(s) checked: {} error(s), {} warning(s), {} note(s)",
        pools,
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint_text(name: &str, text: &str) -> Vec<Finding> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        rules::check(&crate::balancer::read(&path, None).unwrap())
    }

    fn codes(findings: &[Finding]) -> Vec<(&'static str, usize)> {
        findings.iter().map(|f| (f.code, f.line)).collect()
    }

    #[test]
    fn nginx_findings_each_with_its_line() {
        let findings = lint_text(
            "nginx.conf",
            "http {\n upstream api {\n  server 10.0.0.1:80 weight=10;\n  server 10.0.0.2:80;\n  server 10.0.0.3:80;\n  server 10.0.0.2:80;\n }\n upstream one { server 10.1.0.1:80 max_fails=0; }\n upstream sticky {\n  ip_hash;\n  server 10.2.0.1;\n  server 10.2.0.2 backup;\n }\n upstream cache { hash $request_uri; server 10.3.0.1; server 10.3.0.2; }\n}\n",
        );
        let found = codes(&findings);
        for expected in [
            ("weight-outlier", 3),
            ("duplicate-server", 6),
            ("single-server", 8),
            ("no-failure-detection", 8),
            ("client-address-hash", 10),
            ("backup-in-hashed-pool", 12),
            ("single-server", 9),
            ("hash-not-consistent", 14),
        ] {
            assert!(found.contains(&expected), "{expected:?} not in {found:?}");
        }
        let outlier = findings.iter().find(|f| f.code == "weight-outlier").unwrap();
        // 10 of 10 + 1 + 1 + 1 (the duplicate counts): 77%.
        assert!(outlier.message.contains("77%"), "{}", outlier.message);
        assert_eq!(outlier.severity, Severity::Error);
    }

    #[test]
    fn a_clean_pool_has_no_findings() {
        let findings = lint_text(
            "nginx.conf",
            "upstream api {\n least_conn;\n server 10.0.0.1:80 weight=2;\n server 10.0.0.2:80 weight=2;\n server 10.0.0.3:80 weight=3;\n}\n",
        );
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn haproxy_findings() {
        let findings = lint_text(
            "haproxy.cfg",
            "defaults\n  mode http\nbackend be_api\n  balance source\n  server s1 10.0.0.1:80 check weight 10\n  server s2 10.0.0.2:80 check\n  server s3 10.0.0.3:80\n",
        );
        let found = codes(&findings);
        assert!(found.contains(&("client-address-hash", 4)), "{found:?}");
        assert!(found.contains(&("weight-outlier", 5)), "{found:?}");
        assert!(found.contains(&("no-failure-detection", 7)), "{found:?}");
    }

    #[test]
    fn weights_that_disagree_with_skewtail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nginx.conf");
        std::fs::write(
            &path,
            "upstream api {\n server 10.0.0.1:8080 weight=3;\n server 10.0.0.2:8080;\n}\n",
        )
        .unwrap();
        let config = crate::balancer::read(&path, Some(crate::balancer::Kind::Nginx)).unwrap();
        let expectation = crate::detect::PoolExpectation {
            weights: [("10.0.0.1:8080".to_string(), 1.0), ("10.0.0.2:8080".to_string(), 1.0)]
                .into_iter()
                .collect(),
            slow_start_s: None,
        };
        let expectations = [("api".to_string(), expectation)].into_iter().collect();
        let findings = rules::against(&config, &expectations, "skewtail.toml");
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(
            findings[0].message.contains("expects 50%")
                && findings[0].message.contains("gives it 75%")
        );
        assert_eq!(findings[0].line, 2);
    }
}
