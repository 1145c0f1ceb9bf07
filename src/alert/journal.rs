//! The delivery journal: per sink, the messages accepted and not yet settled (delivered,
//! refused or expired), and the keys of the state changes already settled. It is part of the
//! state snapshot, so a restart delivers what was pending and nothing twice.
//!
//! Between snapshots, every settlement is also appended (and synced) to `deliveries.log` in
//! the state directory. After a `kill -9`, the snapshot brings back what was pending, the log
//! says which of those were settled since, and the state changes the detector makes again
//! from the re-read lines find their keys already settled. Only a receiver whose answer was
//! lost in flight can see a key twice, which is what the key is for.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::notice::{Notice, Status, message_id};

/// One message for one sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Stable across retries and restarts (the hash of its notices' keys).
    pub id: String,
    /// The state changes it carries.
    pub notices: Vec<Notice>,
    /// When it was accepted (Unix ms, wall clock).
    pub accepted_ms: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this (Unix ms): backoff or `Retry-After`.
    pub not_before_ms: i64,
    /// Requests of it already accepted (PagerDuty takes one event per request).
    pub sent: usize,
    /// The last failure, for logs and `alert test`.
    pub last_error: Option<String>,
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// The receiver accepted it.
    Delivered,
    /// Refused for good (a 4xx).
    Failed,
    /// Not delivered within the sink's TTL.
    Expired,
    /// Dropped from a full queue.
    Dropped,
}

/// One sink's journal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SinkJournal {
    /// Accepted, not yet settled, in order.
    pub pending: VecDeque<Delivery>,
    /// Keys of settled state changes → when (Unix ms); kept a day.
    pub settled: BTreeMap<String, i64>,
    /// Firing alerts delivered and not yet resolved, by fingerprint (Alertmanager re-sends
    /// them).
    pub active: BTreeMap<String, Notice>,
}

/// Every sink's journal: the part of the snapshot that belongs to delivery.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JournalState {
    /// By sink name.
    pub sinks: BTreeMap<String, SinkJournal>,
}

/// A settlement as the log records it.
#[derive(Debug, Serialize, Deserialize)]
struct LogEntry {
    sink: String,
    id: String,
    keys: Vec<String>,
    outcome: Settled,
    at_ms: i64,
}

/// Settled keys are remembered this long: longer than any restart takes, and than the TTL.
const KEEP_SETTLED_MS: i64 = 24 * 3600 * 1000;
/// ... and at most this many per sink.
const MAX_SETTLED: usize = 100_000;

/// What [`Journal::enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued, as this delivery id.
    Queued(String),
    /// Every notice in it was already settled or pending for this sink.
    Duplicate,
    /// Queued, and the oldest pending message was dropped to make room.
    QueuedDroppingOldest(String),
}

/// The journal, shared by the router's side and the delivery tasks.
#[derive(Debug)]
pub struct Journal {
    state: Mutex<JournalState>,
    log: Option<PathBuf>,
    /// Settlements appended since the last snapshot.
    logged: Mutex<u64>,
}

impl Journal {
    /// An empty journal; `log` is the settlements log (none for a replay).
    pub fn new(log: Option<PathBuf>) -> Self {
        Journal { state: Mutex::new(JournalState::default()), log, logged: Mutex::new(0) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JournalState> {
        // Nothing panics while holding it; if something did, the data is still consistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `notices` as one message for `sink`, leaving out the ones already settled or
    /// pending there.
    pub fn enqueue(
        &self,
        sink: &str,
        notices: &[Notice],
        now_ms: i64,
        capacity: usize,
    ) -> Enqueued {
        let mut state = self.lock();
        let journal = state.sinks.entry(sink.to_string()).or_default();
        let fresh: Vec<Notice> = notices
            .iter()
            .filter(|n| {
                !journal.settled.contains_key(&n.key)
                    && !journal.pending.iter().any(|d| d.notices.iter().any(|p| p.key == n.key))
            })
            .cloned()
            .collect();
        if fresh.is_empty() {
            return Enqueued::Duplicate;
        }
        let delivery = Delivery {
            id: message_id(&fresh),
            notices: fresh,
            accepted_ms: now_ms,
            attempts: 0,
            not_before_ms: now_ms,
            sent: 0,
            last_error: None,
        };
        let id = delivery.id.clone();
        let dropped = if journal.pending.len() >= capacity.max(1) {
            journal.pending.pop_front()
        } else {
            None
        };
        journal.pending.push_back(delivery);
        drop(state);
        match dropped {
            Some(old) => {
                self.record(sink, &old, Settled::Dropped, now_ms);
                Enqueued::QueuedDroppingOldest(id)
            }
            None => Enqueued::Queued(id),
        }
    }

    /// The oldest pending message of `sink`.
    pub fn front(&self, sink: &str) -> Option<Delivery> {
        self.lock().sinks.get(sink).and_then(|j| j.pending.front().cloned())
    }

    /// Messages pending for `sink`.
    pub fn depth(&self, sink: &str) -> usize {
        self.lock().sinks.get(sink).map_or(0, |j| j.pending.len())
    }

    /// Records progress on the pending message `id` (attempts, backoff, requests sent).
    pub fn update(&self, sink: &str, id: &str, change: impl FnOnce(&mut Delivery)) {
        let mut state = self.lock();
        if let Some(delivery) =
            state.sinks.get_mut(sink).and_then(|j| j.pending.iter_mut().find(|d| d.id == id))
        {
            change(delivery);
        }
    }

    /// Settles the pending message `id`: it leaves the queue, its keys are remembered, and
    /// the settlement is logged (synced) before this returns.
    pub fn settle(&self, sink: &str, id: &str, outcome: Settled, now_ms: i64) {
        let mut state = self.lock();
        let Some(journal) = state.sinks.get_mut(sink) else { return };
        let Some(at) = journal.pending.iter().position(|d| d.id == id) else { return };
        let Some(delivery) = journal.pending.remove(at) else { return };
        drop(state);
        self.record(sink, &delivery, outcome, now_ms);
    }

    fn record(&self, sink: &str, delivery: &Delivery, outcome: Settled, now_ms: i64) {
        {
            let mut state = self.lock();
            let journal = state.sinks.entry(sink.to_string()).or_default();
            apply(journal, delivery.notices.iter().map(|n| n.key.clone()), outcome, now_ms);
            if outcome == Settled::Delivered {
                for notice in &delivery.notices {
                    match notice.status {
                        Status::Firing => {
                            journal.active.insert(notice.fingerprint.clone(), notice.clone());
                        }
                        Status::Resolved => {
                            journal.active.remove(&notice.fingerprint);
                        }
                        Status::Noted => {}
                    }
                }
            }
        }
        let Some(log) = &self.log else { return };
        let entry = LogEntry {
            sink: sink.to_string(),
            id: delivery.id.clone(),
            keys: delivery.notices.iter().map(|n| n.key.clone()).collect(),
            outcome,
            at_ms: now_ms,
        };
        let written =
            serde_json::to_string(&entry).map_err(std::io::Error::other).and_then(|line| {
                let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
                writeln!(file, "{line}")?;
                file.sync_data()
            });
        match written {
            Ok(()) => *self.logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1,
            Err(error) => {
                tracing::error!(message = "Cannot append to the deliveries log; a kill -9 now could send this message again.", log = %log.display(), %error);
            }
        }
    }

    /// The firing alerts delivered to `sink` and not resolved (Alertmanager re-sends them).
    pub fn active(&self, sink: &str) -> Vec<Notice> {
        self.lock()
            .sinks
            .get(sink)
            .map(|j| j.active.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A copy for the snapshot, and how many settlements the log had then.
    pub fn snapshot(&self) -> (JournalState, u64) {
        let state = self.lock().clone();
        let logged = *self.logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (state, logged)
    }

    /// After a snapshot taken at `logged` settlements was saved: empties the log if nothing
    /// was appended since (the snapshot holds all of it).
    pub fn snapshot_saved(&self, logged_then: u64) {
        let Some(log) = &self.log else { return };
        let mut logged = self.logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *logged == logged_then && logged_then > 0 {
            if let Err(error) = std::fs::File::create(log) {
                tracing::warn!(message = "Cannot empty the deliveries log.", %error);
                return;
            }
            *logged = 0;
        }
    }

    /// Goes on from a snapshot, then applies the settlements logged after it.
    pub fn restore(&self, state: JournalState) {
        *self.lock() = state;
        let Some(log) = &self.log else { return };
        let text = match std::fs::read_to_string(log) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(error) => {
                tracing::error!(message = "Cannot read the deliveries log.", %error);
                return;
            }
        };
        let mut state = self.lock();
        let mut applied = 0;
        for line in text.lines() {
            // A torn last line (a crash mid-write) is skipped: its message is sent again.
            let Ok(entry) = serde_json::from_str::<LogEntry>(line) else { continue };
            let journal = state.sinks.entry(entry.sink.clone()).or_default();
            if let Some(at) = journal.pending.iter().position(|d| d.id == entry.id)
                && let Some(delivery) = journal.pending.remove(at)
                && entry.outcome == Settled::Delivered
            {
                {
                    for notice in delivery.notices {
                        match notice.status {
                            Status::Firing => {
                                journal.active.insert(notice.fingerprint.clone(), notice);
                            }
                            Status::Resolved => {
                                journal.active.remove(&notice.fingerprint);
                            }
                            Status::Noted => {}
                        }
                    }
                }
            }
            apply(journal, entry.keys.into_iter(), entry.outcome, entry.at_ms);
            applied += 1;
        }
        *self.logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = applied;
        if applied > 0 {
            tracing::info!(
                message = "Deliveries settled since the snapshot applied.",
                count = applied
            );
        }
    }

    /// The sinks with something pending, and how much.
    pub fn pending_counts(&self) -> BTreeMap<String, usize> {
        self.lock()
            .sinks
            .iter()
            .filter(|(_, j)| !j.pending.is_empty())
            .map(|(name, j)| (name.clone(), j.pending.len()))
            .collect()
    }
}

fn apply(
    journal: &mut SinkJournal,
    keys: impl Iterator<Item = String>,
    outcome: Settled,
    at_ms: i64,
) {
    // Expired and dropped changes were never delivered: remembering them would stop a
    // re-made state change from trying again, which is right (it is as old as they were).
    let _ = outcome;
    for key in keys {
        journal.settled.insert(key, at_ms);
    }
    if journal.settled.len() > MAX_SETTLED || journal.settled.values().next().is_some() {
        let cutoff = at_ms - KEEP_SETTLED_MS;
        journal.settled.retain(|_, at| *at >= cutoff);
        while journal.settled.len() > MAX_SETTLED {
            let Some(oldest) =
                journal.settled.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone())
            else {
                break;
            };
            journal.settled.remove(&oldest);
        }
    }
}

/// Where the settlements log lives in a state directory.
pub fn log_in(state_dir: &Path) -> PathBuf {
    state_dir.join("deliveries.log")
}
