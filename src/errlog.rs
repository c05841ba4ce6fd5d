//! The `err` file's message queue: bounded, oldest dropped first; each read
//! takes one message and blocks (with a bound) while there is none.
//! Messages about targets never identified are rate-limited (`push_about`),
//! the ones held back summed up in one line a second (`report_quiet`).

use crate::clock::{Micros, RateLimit};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::time::Duration;

pub const ERRLOG_CAPACITY: usize = 1024;

/// At most this many `err` messages a second about targets never
/// identified; the rest are counted in one line a second.
const QUIET_RATE: u32 = 8;

#[derive(Default)]
pub struct ErrLog {
    q: Mutex<(VecDeque<String>, u64)>,
    cv: Condvar,
    /// The bound on messages about targets never identified (a leaf lock,
    /// never held with `q`).
    quiet: Mutex<Quiet>,
}

/// The bound on `err` messages about targets never identified.
#[derive(Debug)]
struct Quiet {
    limit: RateLimit,
    suppressed: u64,
}

impl Default for Quiet {
    fn default() -> Self {
        Quiet { limit: RateLimit::new(QUIET_RATE, QUIET_RATE), suppressed: 0 }
    }
}

impl ErrLog {
    pub fn push(&self, msg: String) {
        log::info!("{msg}");
        let mut g = self.q.lock();
        if g.0.len() >= ERRLOG_CAPACITY {
            g.0.pop_front();
            g.1 += 1;
        }
        let mut m = msg;
        if !m.ends_with('\n') {
            m.push('\n');
        }
        g.0.push_back(m);
        drop(g);
        self.cv.notify_one();
    }

    /// A message about a target: about one never identified (`known`
    /// false) at most `QUIET_RATE` a second (`now`: the initiator's clock),
    /// the rest counted and reported once a second (`report_quiet`).
    pub fn push_about(&self, known: bool, now: Micros, msg: String) {
        if !known {
            let mut q = self.quiet.lock();
            if !q.limit.take(now) {
                q.suppressed += 1;
                return;
            }
        }
        self.push(msg);
    }

    /// The count of messages `push_about` held back since the last report
    /// (called once a second).
    pub fn report_quiet(&self) {
        let n = std::mem::take(&mut self.quiet.lock().suppressed);
        if n > 0 {
            self.push(format!("aoefs: {n} more messages about targets not identified in the last second"));
        }
    }

    /// Takes one message, waiting at most `wait` for one to arrive.
    pub fn pop_timeout(&self, wait: Duration) -> Option<String> {
        let mut g = self.q.lock();
        if g.0.is_empty() {
            self.cv.wait_for(&mut g, wait);
        }
        if g.1 > 0 {
            let n = g.1;
            g.1 = 0;
            return Some(format!("aoefs: {n} messages dropped (err queue full)\n"));
        }
        g.0.pop_front()
    }

    pub fn len(&self) -> usize {
        self.q.lock().0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
