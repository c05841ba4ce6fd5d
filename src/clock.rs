//! Time as the engine and the initiator see it: microseconds on a monotonic
//! clock, read through the `Clock` trait so that tests can drive it by hand.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::default();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(250);
        assert_eq!(c.now(), t0 + 250);
    }
}
