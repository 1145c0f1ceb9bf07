//! Clock: the one place skewtail reads the time of day. Detection runs on the logs' own event
//! time; only the live parts (the sidecar's idle clock, delivery, `Retry-After`, the state's
//! timestamps, `--since -2h`) ask what time it is, and they ask here.

/// Wall-clock time in Unix ms. Replay's judging never calls this.
#[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
pub fn wall_clock_ms() -> i64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// The wall clock as tokio's clock advances it: delivery's backoff, its deadlines and the
/// `Retry-After` a receiver asks for are all measured on one clock, so a test that pauses
/// tokio's time moves them together.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_start_ms: i64,
    start: tokio::time::Instant,
}

impl Clock {
    /// Starts now (call inside the runtime).
    pub fn start() -> Self {
        Clock { wall_at_start_ms: wall_clock_ms(), start: tokio::time::Instant::now() }
    }

    /// Now, in Unix ms.
    pub fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.wall_at_start_ms.saturating_add(elapsed)
    }
}
