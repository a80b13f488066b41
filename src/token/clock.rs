//! The clock tokens are minted and refreshed by: the system's, or tokio's (pausable) in tests.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock seconds since the Unix epoch, injectable so tests control time.
pub trait Clock: Send + Sync + 'static {
    /// Now, in whole seconds since the epoch.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// A clock that follows tokio's (pausable) time from a fixed start: tests advance it with
/// `tokio::time::advance` and background refreshes fire deterministically.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start_unix: i64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start_unix` now.
    pub fn starting_at(start_unix: i64) -> TokioClock {
        TokioClock {
            start_unix,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> i64 {
        self.start_unix + self.start.elapsed().as_secs() as i64
    }
}
