//! How many requests the application has in progress at once: what tells
//! a capture thread's adaptive busy-poll (`--busy-poll auto`) whether a
//! reply is awaited by a caller with nothing else to do. A request counts
//! from when the filesystem takes it until just before it is answered
//! (`Demand::begin`, the `Ticket` dropped).
//!
//! A target with few commands in flight does not say that: at QD32 a quick
//! target often has one or two, because it answers faster than FUSE hands
//! requests over; polling there takes the CPU that FUSE and the application
//! need. The application's own concurrency does say it, and it is
//! remembered: after a request arrived while another was in progress, the
//! most seen at once counts until [`OVERLAP_MEMORY`] requests in a row
//! have arrived alone, so a queue that empties for a moment does not start
//! the polling.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// After a request arrived while others were in progress, this many
/// requests in a row must arrive alone (the last of them included) before
/// the application counts as doing one request at a time again.
pub const OVERLAP_MEMORY: u32 = 64;

/// The application's requests in progress, and the most seen at once
/// lately.
#[derive(Debug, Default)]
pub struct Demand {
    outstanding: AtomicU32,
    /// The most requests in progress at once when one arrived, over the
    /// arrivals since the latest concurrent one (at least 1 once any came).
    recent_max: AtomicU32,
    /// Arrivals alone still to come before `recent_max` is forgotten.
    memory: AtomicU32,
}

/// One request in progress; it ends when dropped.
#[derive(Debug)]
pub struct Ticket(Arc<Demand>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Demand {
    /// A request arrives; it is in progress until the ticket is dropped
    /// (drop it before answering, so the caller's next request finds it
    /// ended).
    pub fn begin(self: &Arc<Self>) -> Ticket {
        let now = self.outstanding.fetch_add(1, Ordering::Relaxed) + 1;
        if now > 1 {
            self.recent_max.fetch_max(now, Ordering::Relaxed);
            self.memory.store(OVERLAP_MEMORY, Ordering::Relaxed);
        } else if self.memory.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| m.checked_sub(1)) == Ok(1) {
            // The last arrival alone that the overlap was remembered for.
            self.recent_max.store(1, Ordering::Relaxed);
        } else {
            self.recent_max.fetch_max(1, Ordering::Relaxed);
        }
        Ticket(self.clone())
    }

    /// Requests in progress now.
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// How many requests the application has in progress at once: now, or
    /// the most seen lately, whichever is more (see the module's text).
    pub fn concurrency(&self) -> u32 {
        self.recent_max.load(Ordering::Relaxed).max(self.outstanding())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_one_at_a_time_count_as_one() {
        let d = Arc::new(Demand::default());
        assert_eq!(d.concurrency(), 0, "nothing yet");
        for _ in 0..3 * OVERLAP_MEMORY {
            let t = d.begin();
            assert_eq!(d.concurrency(), 1);
            drop(t);
        }
        assert_eq!(d.outstanding(), 0);
        assert_eq!(d.concurrency(), 1);
    }

    #[test]
    fn requests_at_once_count_as_many_until_enough_came_alone() {
        let d = Arc::new(Demand::default());
        let held: Vec<Ticket> = (0..4).map(|_| d.begin()).collect();
        assert_eq!((d.outstanding(), d.concurrency()), (4, 4));
        drop(held);
        assert_eq!(d.outstanding(), 0);
        // Remembered for OVERLAP_MEMORY arrivals alone, forgotten at the last.
        for i in 1..=OVERLAP_MEMORY {
            drop(d.begin());
            let want = if i < OVERLAP_MEMORY { 4 } else { 1 };
            assert_eq!(d.concurrency(), want, "after {i} requests alone");
        }
        // A new overlap starts the memory again, in full.
        let a = d.begin();
        let b = d.begin();
        drop((a, b));
        for _ in 1..OVERLAP_MEMORY {
            drop(d.begin());
        }
        assert_eq!(d.concurrency(), 2);
        drop(d.begin());
        assert_eq!(d.concurrency(), 1);
    }

    #[test]
    fn a_ticket_ends_its_request_when_dropped_anywhere() {
        let d = Arc::new(Demand::default());
        let t = d.begin();
        let u = d.begin();
        std::thread::spawn(move || drop(t)).join().unwrap();
        assert_eq!(d.outstanding(), 1);
        drop(u);
        assert_eq!(d.outstanding(), 0);
    }
}
