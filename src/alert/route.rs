//! Which sinks hear about an alert, and when: routes (first match, unless `continue`),
//! `group_wait` (a pool's alerts of one incident in one message), `repeat_interval`,
//! `send_resolved`, silences and inhibition. Time is the alerts' own (event) time, so replay
//! routes exactly as the sidecar would have.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::matcher::Matcher;
use super::notice::{Notice, Status};
use super::silence::Silences;
use crate::text::for_log;

/// One route, validated.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its name.
    pub name: String,
    /// Sink names.
    pub sinks: Vec<String>,
    /// Which alerts.
    pub matcher: Matcher,
    /// How long a pool's first alert waits for the others of its incident, ms.
    pub group_wait_ms: i64,
    /// Reminders of a firing alert this often, ms (`None`: never).
    pub repeat_ms: Option<i64>,
    /// Whether resolves are sent.
    pub send_resolved: bool,
    /// Whether later routes are tried after this one matched.
    pub continue_matching: bool,
}

/// While a `source` alert fires, `target` alerts equal on `equal` are not sent.
#[derive(Debug, Clone)]
pub struct InhibitRule {
    /// The muting alerts.
    pub source: Matcher,
    /// The muted alerts.
    pub target: Matcher,
    /// Fields that must be equal.
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// The default: a pool-wide failure with a shared cause (every backend failing or slow
    /// alike) mutes the per-backend alerts of that pool, which are its symptoms.
    pub fn defaults() -> Vec<InhibitRule> {
        let pairs = |p: &[(&str, &str)]| {
            Matcher::from_pairs(
                &p.iter().map(|(a, b)| ((*a).to_string(), (*b).to_string())).collect::<Vec<_>>(),
            )
            .unwrap_or_default()
        };
        vec![InhibitRule {
            source: pairs(&[("backend", "[*]"), ("diagnosis", "shared dependency")]),
            target: pairs(&[("backend", "![*]")]),
            equal: vec!["pool".to_string()],
        }]
    }
}

/// Notices ready to go to sinks, as one message per sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The route's sinks.
    pub sinks: Vec<String>,
    /// The notices of one message.
    pub notices: Vec<Notice>,
}

/// A pool's notices waiting for `group_wait`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    route: String,
    pool: String,
    due_ms: i64,
    notices: Vec<Notice>,
}

/// A firing notice a route has sent, for its reminders and its resolve.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sent {
    notice: Notice,
    last_ms: i64,
}

/// What the router remembers across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouterState {
    groups: Vec<Group>,
    /// Route name → fingerprint → the firing it sent.
    sent: BTreeMap<String, BTreeMap<String, Sent>>,
    /// Every alert firing now (for inhibition), by fingerprint.
    firing: BTreeMap<String, Notice>,
}

/// Counts of what the router held back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Held {
    /// Muted by a silence.
    pub silenced: u64,
    /// Muted by an inhibition rule.
    pub inhibited: u64,
    /// Matched no route.
    pub unrouted: u64,
}

/// The router.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    inhibit: Vec<InhibitRule>,
    silences: Silences,
    state: RouterState,
    held: Held,
}

impl Router {
    /// A router over validated routes.
    pub fn new(routes: Vec<Route>, inhibit: Vec<InhibitRule>, silences: Silences) -> Self {
        Router { routes, inhibit, silences, state: RouterState::default(), held: Held::default() }
    }

    /// What it held back so far.
    pub fn held(&self) -> Held {
        self.held
    }

    /// Its state, for the snapshot.
    pub fn state(&self) -> &RouterState {
        &self.state
    }

    /// Goes on from a snapshot.
    pub fn restore(&mut self, state: RouterState) {
        self.state = state;
    }

    /// Reads the silences file again if it changed.
    pub fn reload_silences(&mut self) {
        self.silences.reload_if_changed();
    }

    /// Routes one state change; what is ready goes to `out`.
    pub fn accept(&mut self, notice: Notice, out: &mut Vec<Outgoing>) {
        match notice.status {
            Status::Firing => {
                self.state.firing.insert(notice.fingerprint.clone(), notice.clone());
            }
            Status::Resolved => {
                self.state.firing.remove(&notice.fingerprint);
            }
            Status::Noted => {}
        }
        if notice.status != Status::Resolved {
            if let Some(silence) = self.silences.find(&notice) {
                self.held.silenced += 1;
                tracing::info!(message = "Alert silenced.", fingerprint = %for_log(&notice.fingerprint), silence = %silence.id);
                return;
            }
            if self.is_inhibited(&notice) {
                self.held.inhibited += 1;
                tracing::info!(message = "Alert inhibited by a pool-wide alert.", fingerprint = %for_log(&notice.fingerprint));
                return;
            }
        }
        let mut matched = false;
        for route in &self.routes {
            if !route.matcher.matches(&notice) {
                continue;
            }
            matched = true;
            let sent = self.state.sent.entry(route.name.clone()).or_default();
            let go = match notice.status {
                Status::Firing => {
                    sent.insert(
                        notice.fingerprint.clone(),
                        Sent { notice: notice.clone(), last_ms: notice.at_ms },
                    );
                    true
                }
                // A resolve goes only where its firing went (a silenced or inhibited firing
                // was never sent, so neither is its resolve).
                Status::Resolved => {
                    sent.remove(&notice.fingerprint).is_some() && route.send_resolved
                }
                // A one-shot record: sent once, never repeated, nothing to resolve.
                Status::Noted => true,
            };
            if go {
                if route.group_wait_ms <= 0 {
                    out.push(Outgoing {
                        sinks: route.sinks.clone(),
                        notices: vec![notice.clone()],
                    });
                } else {
                    let group = self
                        .state
                        .groups
                        .iter_mut()
                        .find(|g| g.route == route.name && g.pool == notice.pool);
                    match group {
                        Some(group) => group.notices.push(notice.clone()),
                        None => self.state.groups.push(Group {
                            route: route.name.clone(),
                            pool: notice.pool.clone(),
                            due_ms: notice.at_ms + route.group_wait_ms,
                            notices: vec![notice.clone()],
                        }),
                    }
                }
            }
            if !route.continue_matching {
                break;
            }
        }
        if !matched {
            self.held.unrouted += 1;
        }
    }

    fn is_inhibited(&self, notice: &Notice) -> bool {
        self.inhibit.iter().any(|rule| {
            rule.target.matches(notice)
                && self.state.firing.values().any(|source| {
                    source.fingerprint != notice.fingerprint
                        && rule.source.matches(source)
                        && rule.equal.iter().all(|f| source.field(f) == notice.field(f))
                })
        })
    }

    /// Event time has reached `now_ms`: due groups go out, and reminders.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Outgoing>) {
        let mut index = 0;
        while index < self.state.groups.len() {
            if self.state.groups[index].due_ms <= now_ms {
                let group = self.state.groups.remove(index);
                out.push(Outgoing { sinks: self.sinks_of(&group.route), notices: group.notices });
            } else {
                index += 1;
            }
        }
        for route in &self.routes {
            let Some(repeat_ms) = route.repeat_ms else { continue };
            let Some(sent) = self.state.sent.get_mut(&route.name) else { continue };
            for entry in sent.values_mut() {
                if now_ms - entry.last_ms >= repeat_ms {
                    let repeat = entry.notice.repeat + 1;
                    entry.notice = entry.notice.repeated(repeat, now_ms);
                    entry.last_ms = now_ms;
                    out.push(Outgoing {
                        sinks: route.sinks.clone(),
                        notices: vec![entry.notice.clone()],
                    });
                }
            }
        }
    }

    /// Sends every waiting group now (the end of a replay).
    pub fn flush(&mut self, out: &mut Vec<Outgoing>) {
        for group in std::mem::take(&mut self.state.groups) {
            out.push(Outgoing { sinks: self.sinks_of(&group.route), notices: group.notices });
        }
    }

    fn sinks_of(&self, route: &str) -> Vec<String> {
        self.routes.iter().find(|r| r.name == route).map(|r| r.sinks.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::notice::change_key;

    fn notice(backend: &str, kind: &str, status: Status, at_s: i64) -> Notice {
        let fingerprint = format!("skewtail/api/{backend}/{kind}/over");
        Notice {
            key: change_key(&fingerprint, 0, status, 0),
            fingerprint,
            status,
            kind: kind.into(),
            direction: "over".into(),
            severity: "critical".into(),
            pool: "api".into(),
            backend: backend.into(),
            diagnosis: if backend == "*" { "shared dependency".into() } else { "balancer".into() },
            reason: String::new(),
            summary: String::new(),
            started_at_ms: 0,
            at_ms: at_s * 1000,
            repeat: 0,
            details: serde_json::Value::Null,
        }
    }

    fn route(group_wait_s: i64, repeat_s: Option<i64>, send_resolved: bool) -> Route {
        Route {
            name: "r".into(),
            sinks: vec!["s".into()],
            matcher: Matcher::default(),
            group_wait_ms: group_wait_s * 1000,
            repeat_ms: repeat_s.map(|s| s * 1000),
            send_resolved,
            continue_matching: false,
        }
    }

    #[test]
    fn group_wait_folds_an_incident_into_one_message() {
        let mut router = Router::new(vec![route(30, None, true)], vec![], Silences::default());
        let mut out = Vec::new();
        router.accept(notice("a:80", "skew", Status::Firing, 100), &mut out);
        router.accept(notice("a:80", "errors", Status::Firing, 110), &mut out);
        router.tick(120, &mut out);
        assert!(out.is_empty());
        router.tick(130_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].notices.len(), 2);
    }

    #[test]
    fn reminders_and_resolves_follow_what_was_sent() {
        let mut router =
            Router::new(vec![route(0, Some(3600), false)], vec![], Silences::default());
        let mut out = Vec::new();
        router.accept(notice("a:80", "skew", Status::Firing, 0), &mut out);
        router.tick(3_599_000, &mut out);
        assert_eq!(out.len(), 1);
        router.tick(3_600_000, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].notices[0].repeat, 1);
        assert_ne!(
            out[1].notices[0].key, out[0].notices[0].key,
            "a reminder is a change of its own"
        );
        router.accept(notice("a:80", "skew", Status::Resolved, 4000), &mut out);
        assert_eq!(out.len(), 2, "send_resolved = false");
    }

    #[test]
    fn a_shared_failure_inhibits_the_per_backend_alerts_of_its_pool() {
        let mut router =
            Router::new(vec![route(0, None, true)], InhibitRule::defaults(), Silences::default());
        let mut out = Vec::new();
        router.accept(notice("*", "errors", Status::Firing, 0), &mut out);
        router.accept(notice("a:80", "errors", Status::Firing, 10), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(router.held().inhibited, 1);
        // Its resolve is not sent either: its firing never was.
        router.accept(notice("a:80", "errors", Status::Resolved, 20), &mut out);
        assert_eq!(out.len(), 1);
        router.accept(notice("*", "errors", Status::Resolved, 30), &mut out);
        router.accept(notice("b:80", "skew", Status::Firing, 40), &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_silence_mutes_the_firing_and_its_resolve() {
        let silence = crate::alert::silence::Silence {
            id: "s1".into(),
            matcher: Matcher::from_pairs(&[("backend".into(), "a:*".into())]).unwrap(),
            starts_ms: 0,
            ends_ms: 100_000,
            comment: "maintenance".into(),
        };
        let mut router =
            Router::new(vec![route(0, None, true)], vec![], Silences::new(vec![silence], None));
        let mut out = Vec::new();
        router.accept(notice("a:80", "skew", Status::Firing, 10), &mut out);
        router.accept(notice("a:80", "skew", Status::Resolved, 20), &mut out);
        router.accept(notice("b:80", "skew", Status::Firing, 30), &mut out);
        router.accept(notice("a:80", "skew", Status::Firing, 200), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(router.held().silenced, 1);
    }
}
