//! Sector range locks: a read-modify-write of partial sectors must not
//! interleave with another write to the same sectors.

use parking_lot::{Condvar, Mutex};

/// Held ranges as (device id, first sector, end sector).
#[derive(Default)]
pub struct RangeLocks {
    held: Mutex<Vec<(u32, u64, u64)>>,
    cv: Condvar,
}

pub struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    key: (u32, u64, u64),
}

fn overlaps(held: &[(u32, u64, u64)], dev: u32, start: u64, end: u64) -> bool {
    held.iter().any(|&(d, s, e)| d == dev && s < end && start < e)
}

impl RangeLocks {
    /// Waits until no held range of `dev` overlaps, then holds this one.
    pub fn lock(&self, dev: u32, start: u64, end: u64) -> RangeGuard<'_> {
        let mut g = self.held.lock();
        while overlaps(&g, dev, start, end) {
            self.cv.wait(&mut g);
        }
        g.push((dev, start, end));
        RangeGuard { locks: self, key: (dev, start, end) }
    }

    /// Holds the range if nothing overlaps it now; the caller must `unlock`.
    pub fn try_lock(&self, dev: u32, start: u64, end: u64) -> bool {
        let mut g = self.held.lock();
        if overlaps(&g, dev, start, end) {
            return false;
        }
        g.push((dev, start, end));
        true
    }

    pub fn unlock(&self, dev: u32, start: u64, end: u64) {
        let mut g = self.held.lock();
        if let Some(i) = g.iter().position(|k| *k == (dev, start, end)) {
            g.swap_remove(i);
        }
        drop(g);
        self.cv.notify_all();
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let (d, s, e) = self.key;
        self.locks.unlock(d, s, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn range_locks_exclude_overlaps_only() {
        let l = Arc::new(RangeLocks::default());
        assert!(l.try_lock(9, 0, 4));
        assert!(!l.try_lock(9, 3, 5));
        assert!(l.try_lock(9, 4, 5));
        l.unlock(9, 0, 4);
        assert!(l.try_lock(9, 0, 4));
        l.unlock(9, 0, 4);
        l.unlock(9, 4, 5);
        let g1 = l.lock(1, 0, 10);
        let _g2 = l.lock(1, 10, 20); // adjacent: no conflict
        let _g3 = l.lock(2, 0, 10); // other device
        let l2 = l.clone();
        let t = std::thread::spawn(move || {
            let _g = l2.lock(1, 5, 6);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished());
        drop(g1);
        t.join().unwrap();
    }
}
