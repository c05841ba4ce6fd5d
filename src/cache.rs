//! LRU sector cache for reads, in 4 KiB blocks. Writes invalidate the blocks
//! they touch once the target acknowledged them; a read only inserts what it
//! fetched if no write to the same device completed while it was in flight
//! (per-device epoch, checked and updated under the cache's lock), so the
//! cache never serves data older than an acknowledged write.

use lru::LruCache;
use parking_lot::Mutex;
use std::collections::HashMap;

pub const BLOCK: usize = 4096;
pub const BLOCK_SECTORS: u64 = (BLOCK / 512) as u64;

struct Inner {
    lru: LruCache<(u32, u64), Box<[u8]>>,
    epochs: HashMap<u32, u64>,
    /// The block buffer the last insert displaced, reused by the next one
    /// (a full cache then inserts without allocating or freeing).
    spare: Option<Box<[u8]>>,
}

pub struct Cache {
    inner: Option<Mutex<Inner>>,
}

impl Cache {
    /// A cache of `bytes` (0 disables it).
    pub fn new(bytes: usize) -> Cache {
        let blocks = bytes / BLOCK;
        let inner = std::num::NonZeroUsize::new(blocks)
            .map(|n| Mutex::new(Inner { lru: LruCache::new(n), epochs: HashMap::new(), spare: None }));
        Cache { inner }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The epoch to pass to `insert` for a read starting now.
    pub fn epoch(&self, dev: u32) -> u64 {
        match &self.inner {
            Some(m) => *m.lock().epochs.get(&dev).unwrap_or(&0),
            None => 0,
        }
    }

    /// Copies cached blocks `first..first+n` into `out` if all are present.
    pub fn get(&self, dev: u32, first: u64, n: u64, out: &mut [u8]) -> bool {
        let Some(m) = &self.inner else { return false };
        let mut g = m.lock();
        for i in 0..n {
            if !g.lru.contains(&(dev, first + i)) {
                return false;
            }
        }
        for i in 0..n {
            let b = g.lru.get(&(dev, first + i)).expect("present");
            let o = i as usize * BLOCK;
            out[o..o + BLOCK].copy_from_slice(b);
        }
        true
    }

    /// Inserts whole blocks read from the target, unless a write completed
    /// since `epoch` was taken.
    pub fn insert(&self, dev: u32, first: u64, data: &[u8], epoch: u64) {
        let Some(m) = &self.inner else { return };
        let mut g = m.lock();
        if *g.epochs.get(&dev).unwrap_or(&0) != epoch {
            return;
        }
        for (i, chunk) in data.chunks_exact(BLOCK).enumerate() {
            let buf = match g.spare.take() {
                Some(mut b) => {
                    b.copy_from_slice(chunk);
                    b
                }
                None => chunk.into(),
            };
            // The displaced buffer (the evicted block's, or this block's
            // older copy) becomes the next insert's.
            if let Some((_, old)) = g.lru.push((dev, first + i as u64), buf) {
                g.spare = Some(old);
            }
        }
    }

    /// Drops the blocks covering sectors `lba..lba+nsect` and bumps the epoch.
    pub fn invalidate(&self, dev: u32, lba: u64, nsect: u64) {
        let Some(m) = &self.inner else { return };
        let mut g = m.lock();
        *g.epochs.entry(dev).or_insert(0) += 1;
        let first = lba / BLOCK_SECTORS;
        let last = (lba + nsect).div_ceil(BLOCK_SECTORS);
        if last - first > g.lru.len() as u64 {
            let keys: Vec<(u32, u64)> =
                g.lru.iter().map(|(k, _)| *k).filter(|k| k.0 == dev && k.1 >= first && k.1 < last).collect();
            for k in keys {
                g.lru.pop(&k);
            }
        } else {
            for b in first..last {
                g.lru.pop(&(dev, b));
            }
        }
    }

    /// Forgets a device entirely.
    pub fn drop_device(&self, dev: u32) {
        let Some(m) = &self.inner else { return };
        let mut g = m.lock();
        *g.epochs.entry(dev).or_insert(0) += 1;
        let keys: Vec<(u32, u64)> = g.lru.iter().map(|(k, _)| *k).filter(|k| k.0 == dev).collect();
        for k in keys {
            g.lru.pop(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_miss_and_invalidate() {
        let c = Cache::new(16 * BLOCK);
        let mut out = vec![0u8; 2 * BLOCK];
        assert!(!c.get(1, 0, 2, &mut out));
        let e = c.epoch(1);
        let data: Vec<u8> = (0..2 * BLOCK).map(|i| i as u8).collect();
        c.insert(1, 0, &data, e);
        assert!(c.get(1, 0, 2, &mut out));
        assert_eq!(out, data);
        c.invalidate(1, 9, 1); // sector 9 is in block 1
        assert!(!c.get(1, 0, 2, &mut out));
        assert!(c.get(1, 0, 1, &mut out[..BLOCK]));
    }

    #[test]
    fn stale_read_is_not_inserted() {
        let c = Cache::new(16 * BLOCK);
        let e = c.epoch(3);
        c.invalidate(3, 0, 8); // a write completed during the read
        c.insert(3, 0, &[7u8; BLOCK], e);
        let mut out = vec![0u8; BLOCK];
        assert!(!c.get(3, 0, 1, &mut out));
        // Another device's epoch is independent.
        let e4 = c.epoch(4);
        c.insert(4, 0, &[7u8; BLOCK], e4);
        assert!(c.get(4, 0, 1, &mut out));
    }

    #[test]
    fn disabled_cache_never_hits() {
        let c = Cache::new(0);
        assert!(!c.enabled());
        c.insert(1, 0, &[1u8; BLOCK], c.epoch(1));
        let mut out = vec![0u8; BLOCK];
        assert!(!c.get(1, 0, 1, &mut out));
    }

    #[test]
    fn lru_evicts_oldest() {
        let c = Cache::new(2 * BLOCK);
        let e = c.epoch(1);
        c.insert(1, 0, &[1u8; BLOCK], e);
        c.insert(1, 1, &[2u8; BLOCK], e);
        c.insert(1, 2, &[3u8; BLOCK], e);
        let mut out = vec![0u8; BLOCK];
        assert!(!c.get(1, 0, 1, &mut out));
        assert!(c.get(1, 2, 1, &mut out));
        assert_eq!(out[0], 3);
    }

    #[test]
    fn reused_buffers_hold_only_their_own_block() {
        // A full cache recycles the evicted block's buffer, and a block
        // inserted again recycles its older copy: every hit must still be
        // exactly the data last inserted for that block.
        let c = Cache::new(4 * BLOCK);
        let e = c.epoch(1);
        let fill = |b: u64, gen: u8| -> Vec<u8> { (0..BLOCK).map(|i| (i as u64 * 7 + b * 13) as u8 ^ gen).collect() };
        for round in 0..3u8 {
            for b in 0..10u64 {
                c.insert(1, b, &fill(b, round), e);
                // Insert the previous block again, newer data.
                if b > 0 {
                    c.insert(1, b - 1, &fill(b - 1, round + 100), e);
                }
            }
        }
        let mut out = vec![0u8; BLOCK];
        for b in 0..10u64 {
            if c.get(1, b, 1, &mut out) {
                let want = if b == 9 { fill(9, 2) } else { fill(b, 102) };
                assert_eq!(out, want, "block {b}");
            } else {
                assert!(b < 6, "block {b} should still be cached");
            }
        }
        // Several blocks at once.
        let two: Vec<u8> = [fill(20, 5), fill(21, 5)].concat();
        c.insert(1, 20, &two, e);
        let mut out2 = vec![0u8; 2 * BLOCK];
        assert!(c.get(1, 20, 2, &mut out2));
        assert_eq!(out2, two);
    }
}
