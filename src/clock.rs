//! Time as the engine and the initiator see it: microseconds on a monotonic
//! clock, read through the `Clock` trait so that tests can drive it by hand;
//! and `RateLimit`, a token bucket on that clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Microseconds on some monotonic clock.
pub type Micros = u64;

/// A monotonic clock in microseconds.
pub trait Clock: Send + Sync {
    fn now(&self) -> Micros;
}

/// The real clock: microseconds since it was made.
pub struct RealClock(Instant);

impl Default for RealClock {
    fn default() -> Self {
        RealClock(Instant::now())
    }
}

impl Clock for RealClock {
    fn now(&self) -> Micros {
        self.0.elapsed().as_micros() as Micros
    }
}

/// A clock that moves only when told to (tests). It starts at 1 s, so that
/// "never" (0) stays distinguishable from its first reading.
pub struct ManualClock(AtomicU64);

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock(AtomicU64::new(1_000_000))
    }
}

impl ManualClock {
    /// Moves the clock forward by `us` microseconds.
    pub fn advance(&self, us: Micros) {
        self.0.fetch_add(us, Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Micros {
        self.0.load(Ordering::Acquire)
    }
}

/// A token bucket: `burst` at most, refilled at `per_sec`.
#[derive(Debug)]
pub struct RateLimit {
    burst: u64,
    per_sec: u64,
    /// Tokens, in millionths.
    level: u64,
    last: Micros,
}

impl RateLimit {
    pub fn new(burst: u32, per_sec: u32) -> RateLimit {
        RateLimit { burst: burst as u64, per_sec: per_sec as u64, level: burst as u64 * 1_000_000, last: 0 }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Micros) -> bool {
        let refill = now.saturating_sub(self.last).saturating_mul(self.per_sec);
        self.level = self.level.saturating_add(refill).min(self.burst * 1_000_000);
        self.last = now;
        if self.level < 1_000_000 {
            return false;
        }
        self.level -= 1_000_000;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_burst_then_its_rate() {
        let mut r = RateLimit::new(4, 2);
        assert_eq!((0..10).filter(|_| r.take(0)).count(), 4);
        assert!(!r.take(400_000));
        assert!(r.take(500_000), "one token after half a second at 2/s");
        assert!(!r.take(500_000));
        assert_eq!((0..10).filter(|_| r.take(100_000_000)).count(), 4, "never more than the burst");
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::default();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(250);
        assert_eq!(c.now(), t0 + 250);
    }
}
