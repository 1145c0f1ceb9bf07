//! Log trees and object storage, in a test binary of their own: cargo runs test binaries one
//! after another, so these CPU-heavy replays (and moto's S3 server) never share the two cores
//! with the wall-clock tests of the sidecar in `e2e`.

// Test helpers may unwrap; and waiting on real processes and files needs real (short, bounded) sleeps.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

#[path = "e2e/objects.rs"]
mod objects;
#[path = "e2e/trees.rs"]
mod trees;
#[allow(dead_code)]
#[path = "e2e/util.rs"]
mod util;
