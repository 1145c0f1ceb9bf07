//! The detector's settings (`[detector]` in the config), their defaults, and the checks that
//! refuse values which would switch detection off without saying so.

/// Detector settings. Every field has a default that suits a pool of a few to a few hundred
/// servers at a few requests per second or more.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Window length, seconds.
    pub window_s: u32,
    /// How far behind the newest line a line may arrive and still count, seconds.
    pub lateness_s: u32,
    /// How long a backend must be anomalous before the alert fires, seconds. Shares are
    /// judged over this span of windows at once, which gives bursty pools the power to see a
    /// real skew through their noise.
    pub for_s: u32,
    /// How long a firing backend must look normal before the alert resolves, seconds.
    pub resolve_for_s: u32,
    /// A pool window with fewer requests than this is not judged.
    pub min_requests: u64,
    /// A pool with fewer backends than this is not judged.
    pub min_backends: usize,
    /// Family-wise significance level for the per-backend tests (Bonferroni over backends).
    pub alpha: f64,
    /// Fire only when observed/expected share is at least this (or at most its inverse).
    pub min_ratio: f64,
    /// Fire only when the share is off by at least this many percentage points (0.05 = 5 pp),
    /// or half the expected share when that is smaller (large pools).
    pub min_share_delta: f64,
    /// Resolve once the ratio is back within this factor of expected.
    pub resolve_ratio: f64,
    /// Without weights: how long the learned baseline is a running mean (starting from equal
    /// shares) before it becomes a slow moving average, seconds. Pools are judged during the
    /// warm-up too, against what they did before.
    pub warmup_s: u32,
    /// Without weights: half-life of the learned baseline after warm-up, seconds. Also the
    /// memory of the learned dispersion and volume.
    pub baseline_half_life_s: u32,
    /// Observed/expected ratio at which an "over" alert is critical rather than a warning.
    pub critical_ratio: f64,
    /// A backend new to a pool (after its first minute) may take less than its share for this
    /// long while the balancer slow-starts it, seconds. Taking too much is judged at once.
    pub new_backend_grace_s: u32,
    /// Flapping: departures from rotation are counted over this horizon, seconds ...
    pub flap_window_s: u32,
    /// ... and this many departures within it make a backend flapping ...
    pub flap_departures: u32,
    /// ... until it has stayed in rotation for this long, seconds.
    pub flap_stable_s: u32,
    /// Errors: a backend and its peers each need this many requests in a window.
    pub errors_min_requests: u64,
    /// Errors: fire only when the backend's 5xx rate is this much above its peers' (0.05 = 5 pp).
    pub errors_min_delta: f64,
    /// Errors: ... and at least this multiple of its peers' rate.
    pub errors_min_ratio: f64,
    /// Latency: a backend needs this many requests in a window to be judged.
    pub latency_min_requests: u64,
    /// Latency: a request is slow when it takes longer than the peers' p95, and at least this
    /// multiple of their median ...
    pub latency_min_ratio: f64,
    /// ... and at least this many milliseconds over their median.
    pub latency_min_delta_ms: f64,
    /// Latency: fire when at least this fraction of the backend's requests are slow (a
    /// healthy backend has about 5%) and that is significant.
    pub latency_min_slow_fraction: f64,
    /// Spike: the pool's volume over `spike_for_s` is at least this multiple of usual ...
    pub spike_min_ratio: f64,
    /// ... and this many of the pool's own learned volatilities above it ...
    pub spike_min_z: f64,
    /// ... over this span, seconds: a surge must last to be a spike, a burst is weather.
    pub spike_for_s: u32,
    /// Spike: a pool usually below this many requests per window is not judged.
    pub spike_min_baseline: f64,
    /// At most this many backends per pool are remembered; requests to more are counted
    /// under `_overflow` (logged once per pool), which is never judged.
    pub max_backends: usize,
    /// A backend that serves nothing for this long is forgotten, seconds: in a learned pool
    /// it was removed on purpose (its drop alert resolves, the baseline stops expecting it);
    /// in any pool its memory is released. Configured backends are never forgotten.
    pub forget_after_s: u32,
    /// Pool-wide errors: page when the 5xx rate over both windows is this multiple of the
    /// pool's usual rate (the SRE workbook's fast-burn 14.4x) ...
    pub burn_rate: f64,
    /// ... and at least this rate (0.01 = 1%) ...
    pub burn_min_rate: f64,
    /// ... over the short window, seconds ...
    pub burn_short_s: u32,
    /// ... and the long window, seconds ...
    pub burn_long_s: u32,
    /// ... with at least this many requests in the long window.
    pub burn_min_requests: u64,
    /// A backend that leaves rotation and returns within this long was drained or restarted
    /// (a deploy): recorded as a `change`, never paged, seconds. Longer, it pages when the
    /// weights say it should serve or the balancer still tries it and fails; in a learned
    /// pool that absorbed it cleanly, it was removed (a scale-in, recorded).
    pub departure_grace_s: u32,
    /// Backends out of rotation at once that were expected to take at least this share of
    /// the pool (0.5 = half) page after `for_s`: too much capacity gone at once.
    pub departure_max_share: f64,
    /// Restarts one after another are one operation, recorded once no backend has left or
    /// returned for this long, seconds.
    pub change_quiet_s: u32,
    /// Backends that joined together (two or more) and still take less than a quarter of
    /// their share this long after joining, while the older ones take more, are pinned
    /// (HTTP/2 and gRPC connections stay on the old backends), seconds.
    pub pin_after_s: u32,
    /// Quiet pools: a backend with fewer than `errors_min_requests` in a window is judged on
    /// its latest requests over up to this span, seconds ...
    pub quiet_span_s: u32,
    /// ... once it has at least this many requests in it ...
    pub quiet_min_requests: u64,
    /// ... and at least this many of them 5xx: one failure at night is not a page.
    pub quiet_min_errors: u64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            window_s: 10,
            lateness_s: 5,
            for_s: 30,
            resolve_for_s: 30,
            min_requests: 100,
            min_backends: 2,
            alpha: 1e-3,
            min_ratio: 1.5,
            min_share_delta: 0.05,
            resolve_ratio: 1.25,
            warmup_s: 300,
            baseline_half_life_s: 3600,
            critical_ratio: 2.5,
            new_backend_grace_s: 300,
            flap_window_s: 300,
            flap_departures: 3,
            flap_stable_s: 180,
            errors_min_requests: 30,
            errors_min_delta: 0.05,
            errors_min_ratio: 3.0,
            latency_min_requests: 30,
            latency_min_ratio: 2.0,
            latency_min_delta_ms: 50.0,
            latency_min_slow_fraction: 0.2,
            spike_min_ratio: 2.0,
            spike_min_z: 4.0,
            spike_for_s: 120,
            spike_min_baseline: 20.0,
            max_backends: 100_000,
            forget_after_s: 1800,
            burn_rate: 14.4,
            burn_min_rate: 0.01,
            burn_short_s: 30,
            burn_long_s: 300,
            burn_min_requests: 300,
            departure_grace_s: 120,
            departure_max_share: 0.5,
            change_quiet_s: 120,
            pin_after_s: 90,
            quiet_span_s: 300,
            quiet_min_requests: 10,
            quiet_min_errors: 5,
        }
    }
}

/// A setting that makes detection meaningless: the key and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSetting {
    /// The key under `[detector]`.
    pub key: &'static str,
    /// What is wrong and the fix.
    pub message: String,
}

impl DetectorConfig {
    fn floats(&self) -> [(&'static str, f64); 14] {
        [
            ("alpha", self.alpha),
            ("min_ratio", self.min_ratio),
            ("min_share_delta", self.min_share_delta),
            ("resolve_ratio", self.resolve_ratio),
            ("critical_ratio", self.critical_ratio),
            ("errors_min_delta", self.errors_min_delta),
            ("errors_min_ratio", self.errors_min_ratio),
            ("latency_min_ratio", self.latency_min_ratio),
            ("latency_min_delta_ms", self.latency_min_delta_ms),
            ("latency_min_slow_fraction", self.latency_min_slow_fraction),
            ("spike_min_ratio", self.spike_min_ratio),
            ("spike_min_z", self.spike_min_z),
            ("spike_min_baseline", self.spike_min_baseline),
            ("departure_max_share", self.departure_max_share),
        ]
    }

    /// Checks every setting; the first that would make detection meaningless is returned.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |key, message: &str| Err(InvalidSetting { key, message: message.to_string() });
        for (key, value) in self
            .floats()
            .into_iter()
            .chain([("burn_rate", self.burn_rate), ("burn_min_rate", self.burn_min_rate)])
        {
            if !value.is_finite() {
                return bad(key, "must be a finite number (not nan or inf)");
            }
            if value < 0.0 {
                return bad(key, "must not be negative");
            }
        }
        let window = self.window_s;
        let checks: [(&'static str, bool, &str); 24] = [
            ("window_s", window >= 1, "must be at least 1 second"),
            ("alpha", self.alpha > 0.0 && self.alpha < 1.0, "must be between 0 and 1, e.g. 0.001"),
            (
                "min_ratio",
                self.min_ratio > 1.0,
                "must be above 1, e.g. 1.5 (1 flags every backend)",
            ),
            (
                "resolve_ratio",
                self.resolve_ratio > 1.0 && self.resolve_ratio <= self.min_ratio,
                "must be above 1 and at most min_ratio, e.g. 1.25",
            ),
            (
                "min_share_delta",
                self.min_share_delta < 1.0,
                "must be a fraction below 1, e.g. 0.05 for 5 points",
            ),
            (
                "min_backends",
                self.min_backends >= 2,
                "must be at least 2: skew needs peers to compare",
            ),
            (
                "for_s",
                self.for_s >= window,
                "must be at least window_s: a condition cannot hold for less than one window",
            ),
            (
                "resolve_for_s",
                self.resolve_for_s >= window,
                "must be at least window_s: a condition cannot clear in less than one window",
            ),
            (
                "baseline_half_life_s",
                self.baseline_half_life_s >= window,
                "must be at least window_s",
            ),
            (
                "critical_ratio",
                self.critical_ratio >= self.min_ratio,
                "must be at least min_ratio, e.g. 2.5",
            ),
            (
                "forget_after_s",
                self.forget_after_s >= self.for_s.max(self.resolve_for_s).saturating_mul(2),
                "must be at least twice for_s and resolve_for_s, e.g. 1800",
            ),
            (
                "flap_departures",
                self.flap_departures >= 2,
                "must be at least 2: one departure is a drop",
            ),
            ("flap_window_s", self.flap_window_s >= window, "must be at least window_s"),
            ("max_backends", self.max_backends >= 2, "must be at least 2, e.g. 100000"),
            ("spike_min_ratio", self.spike_min_ratio > 1.0, "must be above 1, e.g. 2"),
            ("spike_for_s", self.spike_for_s >= window, "must be at least window_s"),
            (
                "latency_min_slow_fraction",
                self.latency_min_slow_fraction > 0.05 && self.latency_min_slow_fraction <= 1.0,
                "must be above 0.05 (a healthy backend's share of slow requests) and at most 1",
            ),
            (
                "burn_long_s",
                self.burn_long_s >= self.burn_short_s && self.burn_short_s >= window,
                "must be at least burn_short_s, which must be at least window_s",
            ),
            (
                "departure_grace_s",
                self.departure_grace_s >= self.for_s,
                "must be at least for_s, e.g. 120 (a drain and a restart)",
            ),
            (
                "departure_max_share",
                self.departure_max_share > 0.0 && self.departure_max_share <= 1.0,
                "must be a fraction above 0 and at most 1, e.g. 0.5",
            ),
            ("change_quiet_s", self.change_quiet_s >= window, "must be at least window_s"),
            ("pin_after_s", self.pin_after_s >= window, "must be at least window_s"),
            ("quiet_span_s", self.quiet_span_s >= window, "must be at least window_s"),
            (
                "quiet_min_errors",
                self.quiet_min_errors >= 2 && self.quiet_min_errors <= self.quiet_min_requests,
                "must be at least 2 and at most quiet_min_requests, e.g. 5",
            ),
        ];
        for (key, ok, message) in checks {
            if !ok {
                return bad(key, message);
            }
        }
        Ok(())
    }

    /// Legal settings that switch a part of detection off, in words, for `check`.
    pub fn disabled_parts(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let mut note = |condition: bool, text: &str| {
            if condition {
                notes.push(text.to_string());
            }
        };
        note(
            self.min_requests > 1_000_000,
            "min_requests is above a million: few pools ever have that many requests in a window, so shares are rarely judged",
        );
        note(self.alpha < 1e-12, "alpha is below 1e-12: only enormous deviations are significant");
        note(
            self.min_share_delta >= 0.5,
            "min_share_delta is 0.5 or more: a skew must move half the pool to fire",
        );
        note(
            self.errors_min_ratio.is_infinite() || self.errors_min_delta >= 1.0,
            "errors_min_delta is 1 or more: backend errors never fire",
        );
        note(
            self.latency_min_slow_fraction >= 1.0,
            "latency_min_slow_fraction is 1: latency fires only when every request is slow",
        );
        note(self.spike_min_baseline > 1e9, "spike_min_baseline is huge: spikes are never judged");
        note(
            self.burn_min_requests > 100_000_000,
            "burn_min_requests is huge: pool-wide errors are never judged",
        );
        note(
            self.warmup_s > 7 * 86_400,
            "warmup_s is over a week: learned pools keep their running mean that long",
        );
        note(
            self.new_backend_grace_s > 86_400,
            "new_backend_grace_s is over a day: new backends are not judged for taking too little for that long",
        );
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert_eq!(DetectorConfig::default().validate(), Ok(()));
        for (config, key) in [
            (DetectorConfig { alpha: f64::NAN, ..Default::default() }, "alpha"),
            (DetectorConfig { spike_min_z: f64::INFINITY, ..Default::default() }, "spike_min_z"),
            (DetectorConfig { min_ratio: 1.0, ..Default::default() }, "min_ratio"),
            (DetectorConfig { window_s: 60, for_s: 30, ..Default::default() }, "for_s"),
            (DetectorConfig { window_s: 0, ..Default::default() }, "window_s"),
            (DetectorConfig { forget_after_s: 10, ..Default::default() }, "forget_after_s"),
        ] {
            assert_eq!(config.validate().map_err(|e| e.key), Err(key));
        }
        assert!(DetectorConfig::default().disabled_parts().is_empty());
        let off = DetectorConfig { min_requests: u64::MAX, ..Default::default() };
        assert_eq!(off.disabled_parts().len(), 1);
    }
}
