//! Scripted incidents and routine operations: what happens to a scenario's pool and when,
//! written as `KIND@START+DURATION[:key=value,...]`.

/// An incident spec that does not read: which, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "incident `{spec}`: {why}; write KIND@START+DURATION[:key=value,...], e.g. skew@20m+25m:backend=2,share=0.45"
)]
pub struct SpecError {
    /// The spec as given.
    pub spec: String,
    /// What is wrong with it.
    pub why: String,
}

/// A scripted incident: for a while, one backend's share, errors or speed change, or the whole
/// pool's traffic does. Effects combine: the seed incident is a share, an error rate and a
/// slowdown on one backend at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Seconds after the scenario's start.
    pub start_s: u32,
    /// How long it lasts, seconds.
    pub duration_s: u32,
    /// Index of the backend it affects.
    pub backend: usize,
    /// The backend's share of the pool's traffic during the incident (the others split the
    /// rest in their weights' proportions); `Some(0.0)` is a backend dropping out; `None`
    /// leaves shares alone.
    pub share: Option<f64>,
    /// The share moves linearly from the backend's normal share to `share` over the incident
    /// (a slow drift) instead of jumping there.
    pub ramp: bool,
    /// The backend's 5xx rate during the incident (the normal rate is 0.2%).
    pub error_rate: f64,
    /// How much slower the backend answers.
    pub latency_factor: f64,
    /// The whole pool's traffic multiplier (a surge spread over the backends as usual).
    pub traffic_factor: f64,
    /// `error_rate` applies to every backend (a pool-wide outage), not just `backend`.
    pub all_backends: bool,
    /// The backend flaps: out of rotation for the first half of every period this long,
    /// seconds (a health check that fails and recovers); 0 for none.
    pub flap_period_s: u32,
    /// How many backends it affects, from `backend` on (a scale-in, a pinned scale-up).
    pub count: usize,
    /// The backends are not in the pool before the incident: they join with it (a canary, a
    /// scale-up).
    pub joins: bool,
    /// ... nor after it (a canary that is taken out again).
    pub leaves: bool,
    /// A rolling restart: every backend in turn is out of rotation this long, seconds ...
    pub drain_s: u32,
    /// ... with this long between one and the next.
    pub gap_s: u32,
    /// The backend refuses connections: it serves nothing, and the balancer tries it about
    /// once every this many seconds and retries elsewhere (nginx's `fail_timeout`); 0: no.
    pub refuse_every_s: u32,
}

impl Default for Incident {
    fn default() -> Self {
        Incident {
            start_s: 0,
            duration_s: 0,
            backend: 0,
            share: None,
            ramp: false,
            error_rate: 0.0,
            latency_factor: 1.0,
            traffic_factor: 1.0,
            all_backends: false,
            flap_period_s: 0,
            count: 1,
            joins: false,
            leaves: false,
            drain_s: 0,
            gap_s: 0,
            refuse_every_s: 0,
        }
    }
}

/// Parses `90s`, `20m`, `1h30m` into seconds.
pub fn parse_duration_s(text: &str) -> Option<u32> {
    let mut total = 0u32;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let value: u32 = number.parse().ok()?;
        number.clear();
        total += value
            * match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => return None,
            };
    }
    if !number.is_empty() {
        total += number.parse::<u32>().ok()?;
    }
    Some(total)
}

impl Incident {
    /// Parses a scripted incident: `KIND@START+DURATION[:key=value,...]`, e.g.
    /// `skew@20m+25m:backend=2,share=0.45`. Kinds: `skew` (share, default 0.45), `drift`
    /// (share reached at the end, default 0.35), `drop`, `flap` (out of rotation for the first
    /// half of every `period` seconds, default 40), `errors` (rate, default 0.2), `slow`
    /// (factor, default 10), `surge` (factor, default 3), `outage` (every backend fails at
    /// `rate`, default 0.1), and `seed` (the seed postmortem's:
    /// share 0.45, 12% errors, 12x slower). `backend` is an index (default 2).
    ///
    /// Routine operations and the faults that look like them: `rolling` (every backend in
    /// turn out of rotation for `drain` seconds, default 40, `gap` apart, default 10),
    /// `remove` (`count` backends from `backend` taken out, default 1), `canary` (`backend`
    /// joins at `share`, default 0.05, and leaves at the end unless `stay=1`), `pin`
    /// (`count` backends from `backend` join, default 4, each getting only `share`, default
    /// 0.005, then their share), `refuse` (`backend` refuses connections; the balancer
    /// tries it every `every` seconds, default 10, and retries elsewhere).
    pub fn from_spec(spec: &str) -> Result<Self, SpecError> {
        let bad = |why: &str| SpecError { spec: spec.to_string(), why: why.to_string() };
        let (head, options) = spec.split_once(':').unwrap_or((spec, ""));
        let (kind, when) = head.split_once('@').ok_or_else(|| bad("no `@START`"))?;
        let (start, duration) = when.split_once('+').ok_or_else(|| bad("no `+DURATION`"))?;
        let mut incident = Incident {
            start_s: parse_duration_s(start)
                .ok_or_else(|| bad("START is not like 90s, 20m or 1h"))?,
            duration_s: parse_duration_s(duration)
                .filter(|&d| d > 0)
                .ok_or_else(|| bad("DURATION is not like 90s, 20m or 1h"))?,
            backend: 2,
            ..Incident::default()
        };
        let mut values = std::collections::BTreeMap::new();
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (key, value) =
                option.split_once('=').ok_or_else(|| bad("an option is not key=value"))?;
            let number: f64 =
                value.parse().map_err(|_| bad(&format!("`{key}` is not a number")))?;
            if !number.is_finite() || number < 0.0 {
                return Err(bad(&format!("`{key}` must be a number >= 0")));
            }
            values.insert(key, number);
        }
        let mut take = |key: &str, default: f64| values.remove(key).unwrap_or(default);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        {
            incident.backend = take("backend", 2.0) as usize;
        }
        match kind {
            "skew" => incident.share = Some(take("share", 0.45)),
            "drift" => {
                incident.share = Some(take("share", 0.35));
                incident.ramp = true;
            }
            "drop" => incident.share = Some(0.0),
            "flap" => {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                {
                    incident.flap_period_s = take("period", 40.0).max(2.0) as u32;
                }
            }
            "errors" => incident.error_rate = take("rate", 0.2),
            "slow" => incident.latency_factor = take("factor", 10.0),
            "surge" => incident.traffic_factor = take("factor", 3.0),
            "outage" => {
                incident.error_rate = take("rate", 0.1);
                incident.all_backends = true;
            }
            "seed" => {
                incident.share = Some(take("share", 0.45));
                incident.error_rate = take("rate", 0.12);
                incident.latency_factor = take("factor", 12.0);
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            "rolling" => {
                incident.drain_s = take("drain", 40.0).max(1.0) as u32;
                incident.gap_s = take("gap", 10.0) as u32;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            "remove" => {
                incident.share = Some(0.0);
                incident.count = take("count", 1.0).max(1.0) as usize;
            }
            "canary" => {
                incident.share = Some(take("share", 0.05));
                incident.joins = true;
                incident.leaves = take("stay", 0.0) == 0.0;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            "pin" => {
                incident.share = Some(take("share", 0.005));
                incident.count = take("count", 4.0).max(1.0) as usize;
                incident.joins = true;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            "refuse" => {
                incident.share = Some(0.0);
                incident.refuse_every_s = take("every", 10.0).max(1.0) as u32;
            }
            _ => {
                return Err(bad(
                    "unknown kind; use skew, drift, drop, flap, errors, slow, surge, outage, seed, rolling, remove, canary, pin or refuse",
                ));
            }
        }
        if let Some(share) = incident.share.filter(|s| *s > 1.0) {
            return Err(bad(&format!("share {share} is more than 1")));
        }
        if let Some(key) = values.keys().next() {
            return Err(bad(&format!("`{key}` does not apply to `{kind}`")));
        }
        Ok(incident)
    }

    /// The alert kind a good detector raises for this incident, given the backend's normal
    /// share: a change of share is a skew (or a drop at 0), a surge a spike, otherwise errors
    /// or latency. One backend drowning with errors and slowness is one skew page.
    pub fn expected_kind(&self, normal_share: f64) -> &'static str {
        if self.all_backends {
            return "errors";
        }
        if self.flap_period_s > 0 || self.refuse_every_s > 0 {
            return "drop";
        }
        if self.is_operation() {
            return "change";
        }
        if self.joins && self.count > 1 {
            return "skew"; // pinned newcomers: one pool-wide page
        }
        match self.share {
            Some(0.0) => "drop",
            Some(share) if (share - normal_share).abs() > 1e-9 => "skew",
            _ if self.traffic_factor > 1.0 => "spike",
            _ if self.error_rate > 0.0 => "errors",
            _ if self.latency_factor > 1.0 => "latency",
            _ => "none",
        }
    }

    /// Whether the alert it should raise is about the whole pool (backend `*`).
    pub fn is_pool_wide(&self) -> bool {
        self.all_backends
            || (self.share.is_none() && self.traffic_factor > 1.0)
            || (self.joins && self.count > 1)
    }

    /// Whether it is a routine operation, which the pool absorbs (a rolling restart, a
    /// scale-in, a canary): a change to record, not a page.
    pub fn is_operation(&self) -> bool {
        self.drain_s > 0
            || (self.share == Some(0.0) && self.count > 1)
            || (self.joins && self.count == 1)
    }

    /// Where a good diagnosis puts the fault: `balancer` (the split), `backend` (one server
    /// failing or slow), `shared dependency` (every backend at once) or `load`.
    pub fn expected_diagnosis(&self) -> &'static str {
        if self.all_backends {
            "shared dependency"
        } else if self.flap_period_s > 0 {
            "balancer"
        } else if self.refuse_every_s > 0 || (self.share.is_none() && self.traffic_factor <= 1.0) {
            "backend"
        } else if self.share.is_none() {
            "load"
        } else {
            "balancer"
        }
    }

    /// Whether it concerns `backend`.
    pub(super) fn covers(&self, backend: usize) -> bool {
        (self.backend..self.backend + self.count).contains(&backend)
    }

    /// Whether it keeps `backend` out of the pool at `second`: the backend has not joined
    /// yet, or has left (another incident on it may bring it in meanwhile).
    pub(super) fn keeps_out(&self, backend: usize, second: u32) -> bool {
        self.covers(backend)
            && ((self.joins && second < self.start_s)
                || (self.leaves && second >= self.start_s + self.duration_s))
    }

    /// The backends whose share it sets at `second` (while active), and to what.
    pub(super) fn targets(
        &self,
        second: u32,
        n_backends: usize,
        normal: &[f64],
    ) -> Vec<(usize, f64)> {
        if self.drain_s > 0 {
            let period = self.drain_s + self.gap_s;
            let into = second - self.start_s;
            let turn = (into / period.max(1)) as usize;
            return if turn < n_backends && into % period.max(1) < self.drain_s {
                vec![(turn, 0.0)]
            } else {
                Vec::new()
            };
        }
        let b = self.backend.min(n_backends.saturating_sub(1));
        let flapped_out = self.flap_period_s > 0
            && (second - self.start_s) % self.flap_period_s < self.flap_period_s / 2;
        let target = if flapped_out { Some(0.0) } else { self.share };
        let Some(target) = target else { return Vec::new() };
        let share = if self.ramp {
            normal[b] + (target - normal[b]) * self.progress(second)
        } else {
            target
        };
        (b..(b + self.count).min(n_backends)).map(|i| (i, share)).collect()
    }

    pub(super) fn is_active(&self, second: u32) -> bool {
        second >= self.start_s && second < self.start_s + self.duration_s
    }

    /// How far into the incident `second` is, 0 to 1.
    pub(super) fn progress(&self, second: u32) -> f64 {
        f64::from(second.saturating_sub(self.start_s)) / f64::from(self.duration_s.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Scenario;

    #[test]
    fn incident_specs() {
        let seed = Incident::from_spec("seed@20m+25m").unwrap();
        assert_eq!(seed, Scenario::seed_incident().incidents[0]);
        let drift = Incident::from_spec("drift@10m+40m:backend=0,share=0.35").unwrap();
        assert_eq!(
            (drift.start_s, drift.duration_s, drift.backend, drift.share, drift.ramp),
            (600, 2400, 0, Some(0.35), true)
        );
        assert_eq!(drift.expected_kind(0.125), "skew");
        assert_eq!(
            Incident::from_spec("drop@1h+90s:backend=4").unwrap().expected_kind(0.125),
            "drop"
        );
        assert_eq!(Incident::from_spec("surge@0s+10m").unwrap().expected_kind(0.125), "spike");
        assert_eq!(Incident::from_spec("errors@0s+10m").unwrap().expected_kind(0.125), "errors");
        assert_eq!(Incident::from_spec("slow@0s+10m").unwrap().expected_kind(0.125), "latency");
        for (spec, why) in [
            ("skew", "no `@START`"),
            ("skew@20m", "no `+DURATION`"),
            ("skew@20x+1m", "START is not like"),
            ("melt@0s+1m", "unknown kind"),
            ("errors@0s+1m:share=0.5", "`share` does not apply to `errors`"),
            ("skew@0s+1m:share=2", "more than 1"),
        ] {
            let error = Incident::from_spec(spec).unwrap_err().to_string();
            assert!(error.contains(why), "{spec}: {error}");
        }
    }
}
