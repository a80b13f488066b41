//! The generic cell rate algorithm (GCRA), the same arithmetic locally and in Redis: a limit keeps
//! one number, the theoretical arrival time (TAT) of the next request. A request at `now` may go
//! at `max(tat, now) - tolerance`, where the tolerance lets `burst` requests through at once; it
//! is admitted when that is at most `max_wait` away, and pushes the TAT one emission interval
//! further. Over any window of length W at most `burst + W / interval` requests are admitted.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Rate;

/// A rate as GCRA needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Time between requests at the steady rate.
    pub interval: Duration,
    /// How far ahead of the TAT a request may still go: `(burst - 1) × interval`.
    pub tolerance: Duration,
}

impl Params {
    /// The parameters of `rate` (`n` per period, `burst` at once).
    pub fn of(rate: Rate) -> Params {
        let interval = rate.interval();
        Params {
            interval,
            tolerance: interval * rate.burst.get().saturating_sub(1),
        }
    }
}

/// What a limit says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go after waiting this long (zero: at once).
    Admit(Duration),
    /// Not within the allowed wait; a request could go after this long.
    Refuse(Duration),
}

/// The arithmetic on a TAT (nanoseconds on one clock): the verdict and the new TAT.
pub fn decide(tat: u64, now: u64, p: Params, max_wait: Duration) -> (Verdict, u64) {
    let interval = nanos(p.interval);
    let tolerance = nanos(p.tolerance);
    let tat = tat.max(now);
    let allowed_at = tat.saturating_sub(tolerance);
    let wait = allowed_at.saturating_sub(now);
    if wait > nanos(max_wait) {
        return (Verdict::Refuse(Duration::from_nanos(wait)), tat);
    }
    (
        Verdict::Admit(Duration::from_nanos(wait)),
        tat.saturating_add(interval),
    )
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds since this process's first look at the clock (monotonic; tokio's, so tests that
/// pause time see limits follow it).
pub fn now_nanos() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    nanos(ORIGIN.get_or_init(Instant::now).elapsed())
}

/// A limit's state in this process.
#[derive(Debug, Default)]
pub struct Local {
    tat: AtomicU64,
}

impl Local {
    /// Decide a request now; an admitted one takes its turn (the TAT moves on).
    pub fn reserve(&self, p: Params, max_wait: Duration) -> Verdict {
        let now = now_nanos();
        let mut current = self.tat.load(Ordering::Relaxed);
        loop {
            let (verdict, next) = decide(current, now, p, max_wait);
            if matches!(verdict, Verdict::Refuse(_)) {
                return verdict;
            }
            match self
                .tat
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return verdict,
                Err(seen) => current = seen,
            }
        }
    }

    /// Give a reserved turn back (its request was dropped while waiting).
    pub fn release(&self, p: Params) {
        let interval = nanos(p.interval);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |tat| {
                Some(tat.saturating_sub(interval))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n: u32, burst: u32, per_secs: u64) -> Params {
        let interval = Duration::from_secs(per_secs) / n;
        Params {
            interval,
            tolerance: interval * (burst - 1),
        }
    }

    /// Admitted requests over a window never exceed burst + window / interval.
    #[test]
    fn bursts_then_paces() {
        let p = params(10, 3, 1); // 10/s, burst 3
        let mut tat = 0;
        let now = 1_000_000_000;
        let mut admitted = 0;
        for _ in 0..10 {
            let (v, next) = decide(tat, now, p, Duration::ZERO);
            if let Verdict::Admit(w) = v {
                assert_eq!(w, Duration::ZERO);
                admitted += 1;
                tat = next;
            }
        }
        assert_eq!(admitted, 3, "the burst");
        // 100 ms later exactly one more fits.
        let later = now + 100_000_000;
        let (v, next) = decide(tat, later, p, Duration::ZERO);
        assert_eq!(v, Verdict::Admit(Duration::ZERO));
        let (v, _) = decide(next, later, p, Duration::ZERO);
        assert_eq!(v, Verdict::Refuse(Duration::from_millis(100)));
    }

    #[test]
    fn waiting_admits_in_turn_up_to_the_allowed_wait() {
        let p = params(10, 1, 1); // one every 100 ms, no burst
        let now = 5_000_000_000;
        let wait = Duration::from_millis(250);
        let mut tat = 0;
        let mut waits = Vec::new();
        loop {
            match decide(tat, now, p, wait) {
                (Verdict::Admit(w), next) => {
                    waits.push(w.as_millis());
                    tat = next;
                }
                (Verdict::Refuse(after), _) => {
                    assert_eq!(after, Duration::from_millis(300));
                    break;
                }
            }
        }
        assert_eq!(waits, [0, 100, 200]);
    }

    #[test]
    fn a_released_turn_is_free_again() {
        let p = params(1, 1, 1);
        let l = Local::default();
        assert_eq!(l.reserve(p, Duration::ZERO), Verdict::Admit(Duration::ZERO));
        assert!(matches!(l.reserve(p, Duration::ZERO), Verdict::Refuse(_)));
        l.release(p);
        assert_eq!(l.reserve(p, Duration::ZERO), Verdict::Admit(Duration::ZERO));
    }
}
