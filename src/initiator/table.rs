//! The device table's bounds: new targets are admitted at a bounded rate,
//! and targets never identified (and so never opened) are evicted first
//! when the table is full (see `Documentation/design.md`, "Paths and
//! trust"); a device leaves the table when it is evicted, when it was never
//! identified and reached deadsecs, or when the `flush` control file
//! forgets it (`forget_devices`).

use super::{DeviceError, Initiator};
use crate::clock::Micros;
use crate::device::{DevState, Device};
use crate::engine::IoError;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Most targets in the device table.
pub const MAX_DEVICES: usize = 16384;
/// Most targets never identified in the table: a new one evicts the oldest
/// of them.
pub const MAX_UNIDENTIFIED: usize = 1024;
/// New targets are admitted at this rate, with bursts of up to
/// `NEW_TARGET_BURST` (a SAN of a thousand targets answers a discovery at
/// once).
pub const NEW_TARGET_RATE: u32 = 256;
pub const NEW_TARGET_BURST: u32 = 1024;
/// When new targets were turned away, discovery runs again this much later
/// (at most this often), so a SAN larger than a burst appears in waves.
const REDISCOVER_SOON: Micros = 1_000_000;

/// Which devices `forget_devices` takes out of the table: what the driver's
/// `flush` control file is written (nothing, `all`, or a target's name).
/// Forgetting a device sends nothing to it (it is not FLUSH CACHE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forget {
    /// Every device that is down and not open.
    DownUnused,
    /// Every device not open.
    AllUnused,
    /// This one; refused while it is open.
    Target { shelf: u16, slot: u8 },
}

impl Initiator {
    /// The device for `shelf.slot`, created if need be within the table's
    /// bounds: new targets at `NEW_TARGET_RATE`; at `MAX_UNIDENTIFIED`
    /// targets never identified (or `MAX_DEVICES` in all) the oldest never
    /// identified one leaves. None when the new target is turned away
    /// (discovery then runs again soon).
    pub(super) fn admit_device(&self, shelf: u16, slot: u8) -> Option<Arc<Device>> {
        if let Some(d) = self.device(shelf, slot) {
            return Some(d);
        }
        let now = self.now();
        let mut w = self.devices.write();
        if let Some(d) = w.get(&(shelf, slot)) {
            return Some(d.clone());
        }
        let mut evicted = None;
        let why = if !self.new_targets.lock().take(now) {
            Some("new targets coming too fast")
        } else if w.len() >= MAX_UNIDENTIFIED.min(MAX_DEVICES) {
            // Never identified means never opened (only identified targets
            // are listed); the oldest has the lowest id.
            let unidentified = w.values().filter(|d| !d.visible());
            if w.len() >= MAX_DEVICES || unidentified.clone().count() >= MAX_UNIDENTIFIED {
                match unidentified.filter(|d| d.open_count() == 0).min_by_key(|d| d.id).map(|d| (d.shelf, d.slot)) {
                    Some(k) => {
                        evicted = w.remove(&k);
                        None
                    }
                    None => Some("device table full"),
                }
            } else {
                None
            }
        } else {
            None
        };
        if let Some(why) = why {
            drop(w);
            self.ignored.dropped_target.fetch_add(1, Ordering::Relaxed);
            if self.discover_at.load(Ordering::Relaxed) == 0 {
                self.discover_at.store(now + REDISCOVER_SOON, Ordering::Relaxed);
            }
            self.errlog.push_about(false, self.now(), format!("e{shelf}.{slot}: not added: {why}"));
            return None;
        }
        self.last_new_device.store(now.max(1), Ordering::Relaxed);
        let d = Arc::new(Device::new(self.next_id.fetch_add(1, Ordering::Relaxed), shelf, slot, self.opts.maxout, now));
        w.insert((shelf, slot), d.clone());
        drop(w);
        if let Some(old) = evicted {
            self.end_device(&old);
            self.errlog.push_about(
                false,
                self.now(),
                format!("{}: never identified, evicted for e{shelf}.{slot}", old.name()),
            );
        }
        Some(d)
    }

    /// Takes `dev` out of the device table (if it is still the one there)
    /// and fails its I/O.
    pub(super) fn forget(&self, dev: &Arc<Device>) {
        let mut w = self.devices.write();
        if w.get(&(dev.shelf, dev.slot)).is_some_and(|d| Arc::ptr_eq(d, dev)) {
            w.remove(&(dev.shelf, dev.slot));
        }
        drop(w);
        self.end_device(dev);
    }

    /// A device left the table: it is down and its I/O fails.
    pub(super) fn end_device(&self, dev: &Device) {
        self.step(dev, |g, _| {
            g.state = DevState::Down;
            g.io.fail_all(IoError::Down);
        });
    }

    /// Takes devices out of the table (the `flush` control file): their I/O
    /// fails and they are no longer listed; a target forgotten comes back
    /// with its next config response. Returns how many were forgotten.
    pub fn forget_devices(&self, which: Forget) -> Result<usize, DeviceError> {
        let mut w = self.devices.write();
        let keys: Vec<(u16, u8)> = match which {
            Forget::Target { shelf, slot } => {
                let k = (shelf, slot);
                let d = w.get(&k).ok_or(DeviceError::NoSuchDevice)?;
                if d.open_count() > 0 {
                    return Err(DeviceError::Busy);
                }
                vec![k]
            }
            Forget::AllUnused => w.iter().filter(|(_, d)| d.open_count() == 0).map(|(k, _)| *k).collect(),
            Forget::DownUnused => w
                .iter()
                .filter(|(_, d)| d.open_count() == 0 && d.inner.lock().state == DevState::Down)
                .map(|(k, _)| *k)
                .collect(),
        };
        let removed: Vec<Arc<Device>> = keys.iter().filter_map(|k| w.remove(k)).collect();
        drop(w);
        for d in &removed {
            self.end_device(d);
        }
        Ok(removed.len())
    }
}
