//! The `err` file's message queue: bounded, oldest dropped first; each read
//! takes one message and blocks (with a bound) while there is none.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::time::Duration;

pub const ERRLOG_CAPACITY: usize = 1024;

#[derive(Default)]
pub struct ErrLog {
    q: Mutex<(VecDeque<String>, u64)>,
    cv: Condvar,
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
