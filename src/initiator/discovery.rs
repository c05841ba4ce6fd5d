//! Finding targets and keeping the device table: query-config broadcasts,
//! config responses (announcements included) that create devices and paths,
//! IDENTIFY, `revalidate` and `flush`.

use super::rx::RxBatch;
use super::{run_completions, with_outbox, Initiator, DISCOVER_TAG};
use crate::clock::Micros;
use crate::device::{DevInner, DevState, Device};
use crate::engine::{IoDone, IoError, Op, Outbox, PathChange};
use crate::wire::{self, Body, ConfigRepr, Header, Identify, Mac, Repr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Why `flush` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    #[error("no such device")]
    NoSuchDevice,
    #[error("device is open")]
    Busy,
}

impl Initiator {
    /// Broadcasts query config on every allowed interface.
    pub fn discover(&self) {
        self.query_config(wire::SHELF_ALL, wire::SLOT_ALL, Mac::BROADCAST);
        self.last_discover.store(self.now().max(1), Ordering::Relaxed);
    }

    fn query_config(&self, shelf: u16, slot: u8, dst: Mac) {
        let mut buf = [0u8; 64];
        for l in self.links().iter() {
            let repr = Repr {
                header: Header { dst, src: l.mac(), response: false, error: None, shelf, slot, tag: DISCOVER_TAG },
                body: Body::Config(ConfigRepr {
                    buffer_count: 0,
                    firmware: 0,
                    max_sectors: 0,
                    aoe_version: 0,
                    ccmd: wire::CCMD_READ,
                    config: &[],
                }),
            };
            // Pad to the Ethernet minimum (60 bytes without FCS).
            let n = repr.emit(&mut buf).expect("config query fits").max(60);
            if let Err(e) = l.send(&buf[..n]) {
                self.errlog.push(format!("discover: send on {}: {e}", l.name()));
            }
        }
    }

    /// A config response (announcement, or an answer to discovery or to a
    /// control command): creates the device or updates its path, and starts
    /// IDENTIFY when the device is not up yet.
    pub(super) fn on_config(&self, link: usize, h: &Header, c: &ConfigRepr<'_>, batch: &mut RxBatch) {
        if h.shelf == wire::SHELF_ALL || h.slot == wire::SLOT_ALL || h.src.is_multicast() {
            self.ignored.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let links = self.links();
        let Some(l) = links.get(link) else {
            self.ignored.stale_link.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let dev = self.device_or_new(h.shelf, h.slot);
        let now = self.now();
        let mut g = dev.inner.lock();
        match g.io.add_path(link, l.name(), l.mac(), h.src, l.mtu(), c.buffer_count, c.effective_max_sectors()) {
            PathChange::Added => log::info!("{}: path {} via {}", dev.name(), h.src, l.name()),
            PathChange::Updated => {}
            PathChange::Full => {
                drop(g);
                self.ignored.unknown_source.fetch_add(1, Ordering::Relaxed);
                dev.ignored.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        g.firmware = c.firmware;
        if g.state == DevState::Down && dev.open_count() == 0 {
            g.state = DevState::Discovered;
        }
        if g.state == DevState::Discovered && !g.identifying {
            self.start_identify(&dev, &mut g, now, &mut batch.out);
        }
        batch.done.extend(g.io.take_completed());
    }

    fn device_or_new(&self, shelf: u16, slot: u8) -> Arc<Device> {
        if let Some(d) = self.device(shelf, slot) {
            return d;
        }
        let mut w = self.devices.write();
        w.entry((shelf, slot))
            .or_insert_with(|| {
                self.last_new_device.store(self.now().max(1), Ordering::Relaxed);
                Arc::new(Device::new(self.next_id.fetch_add(1, Ordering::Relaxed), shelf, slot, self.opts.maxout))
            })
            .clone()
    }

    /// Queues IDENTIFY; its answer makes the device `up` (and visible).
    fn start_identify(&self, dev: &Arc<Device>, g: &mut DevInner, now: Micros, out: &mut Outbox) {
        g.identifying = true;
        let d = dev.clone();
        let me = self.me.clone();
        let done: IoDone = Box::new(move |res| {
            let Some(ini) = me.upgrade() else { return };
            let mut g = d.inner.lock();
            g.identifying = false;
            match res.map_err(|e| e.to_string()).and_then(|b| Identify::parse(&b).map_err(|e| e.to_string())) {
                Ok(id) => {
                    let changed = g.identify.as_ref().map(|o| o.sectors) != Some(id.sectors);
                    g.io.lba48 = id.lba48;
                    if !id.lba48 && id.sectors > 0x0FFF_FFFF {
                        ini.errlog.push(format!("{}: LBA28 target larger than 128 GiB", d.name()));
                    }
                    if g.state != DevState::Down {
                        g.state = DevState::Up;
                    }
                    g.identify = Some(id);
                    drop(g);
                    if changed {
                        d.generation.fetch_add(1, Ordering::AcqRel);
                    }
                    d.set_visible();
                }
                Err(e) => {
                    drop(g);
                    ini.errlog.push(format!("{}: IDENTIFY failed: {e}", d.name()));
                }
            }
        });
        g.io.submit_cmd(now, Op::Identify, done, out, false);
    }

    /// Waits for the first discovery: returns once no target is being
    /// identified and none appeared for a while, or after `max`.
    pub fn wait_discovery(&self, max: Duration) {
        let start = self.now();
        let quiet: Micros = 300_000;
        let max = max.as_micros() as Micros;
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.now();
            if now - start >= max {
                return;
            }
            let last_new = self.last_new_device.load(Ordering::Relaxed).max(start);
            let busy = self.devices().iter().any(|d| {
                let g = d.inner.lock();
                g.identifying || g.state == DevState::Discovered
            });
            if now - start >= quiet && now - last_new >= quiet && !busy {
                return;
            }
        }
    }

    /// Re-queries config and re-identifies a device (`revalidate`).
    pub fn revalidate(&self, dev: &Arc<Device>) {
        dev.readonly.store(false, Ordering::Release);
        let macs = self.target_macs(dev);
        if macs.is_empty() {
            self.query_config(dev.shelf, dev.slot, Mac::BROADCAST);
        }
        for m in macs {
            self.query_config(dev.shelf, dev.slot, m);
        }
        let now = self.now();
        with_outbox(|out| {
            let c = {
                let mut g = dev.inner.lock();
                if g.state == DevState::Up && !g.identifying {
                    self.start_identify(dev, &mut g, now, out);
                }
                g.io.take_completed()
            };
            self.send(out);
            run_completions(c);
        });
    }

    /// `flush`: forget devices. `None`: those down and unused; `Some(None)`:
    /// all unused; `Some(Some(dev))`: that one (EBUSY while open).
    pub fn flush(&self, which: Option<Option<(u16, u8)>>) -> Result<usize, FlushError> {
        let mut w = self.devices.write();
        let keys: Vec<(u16, u8)> = match which {
            Some(Some(k)) => {
                let d = w.get(&k).ok_or(FlushError::NoSuchDevice)?;
                if d.open_count() > 0 {
                    return Err(FlushError::Busy);
                }
                vec![k]
            }
            Some(None) => w.iter().filter(|(_, d)| d.open_count() == 0).map(|(k, _)| *k).collect(),
            None => w
                .iter()
                .filter(|(_, d)| d.open_count() == 0 && d.inner.lock().state == DevState::Down)
                .map(|(k, _)| *k)
                .collect(),
        };
        let removed: Vec<Arc<Device>> = keys.iter().filter_map(|k| w.remove(k)).collect();
        drop(w);
        for d in &removed {
            let c = {
                let mut g = d.inner.lock();
                g.state = DevState::Down;
                g.io.fail_all(IoError::Down);
                g.io.take_completed()
            };
            run_completions(c);
        }
        Ok(removed.len())
    }
}
