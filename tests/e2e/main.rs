//! End-to-end tests: they run the real `skewtail` binary on real files, against real HTTP
//! receivers on 127.0.0.1 and a real nginx. Every wait is bounded in count and time.

// Test helpers may unwrap; and waiting on real processes and files needs real (short, bounded) sleeps.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod alerting;
// Shared with tests/rolling_restart.rs, which uses what this binary does not.
#[allow(dead_code)]
mod balancers;
mod deploy;
mod errors;
mod fleet;
mod forensics;
mod haproxy;
mod hostile;
mod inputs;
mod lint;
mod live;
mod live_sidecar;
mod nginx;
mod operations;
mod receivers;
mod rehearsal;
mod replay;
mod sidecar;
mod simulate;
mod util;
