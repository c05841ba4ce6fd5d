//! A target's way up and back: IDENTIFY makes a discovered target up (and
//! visible) and is retried with backoff; a sign of life (a config response
//! on a verified path, a path put in use) brings a down target nobody has
//! open back; down targets are probed; and `revalidate` asks again.

use super::{retry_delay, Initiator};
use crate::clock::Micros;
use crate::device::{DevInner, DevState, Device};
use crate::engine::{IoDone, Op, Outbox};
use crate::wire::{self, Identify, Mac};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A target that is down is asked this often whether it is back.
pub const DOWN_PROBE_INTERVAL: Micros = 2_000_000;

impl Initiator {
    /// Asks a target that stopped answering whether it is alive: a unicast
    /// query config to each of its MACs (the answer is a sign of life).
    pub(super) fn probe(&self, dev: &Device) {
        for m in self.target_macs(dev) {
            self.query_config(dev.shelf, dev.slot, m);
        }
    }

    /// The target answered from `mac` on a verified path: frames it has not
    /// answered were lost, a down target nobody has open comes back, and a
    /// device not up yet is identified.
    pub(super) fn revive(&self, dev: &Arc<Device>, g: &mut DevInner, mac: Mac, now: Micros, out: &mut Outbox) {
        g.io.on_sign_of_life(now, mac);
        if g.state == DevState::Down && dev.open_count() == 0 {
            g.state = DevState::Discovered;
        }
        if g.state == DevState::Discovered && !g.identifying {
            self.start_identify(dev, g, now, out);
        }
    }

    /// Queues IDENTIFY; its answer makes the device `up` (and visible). A
    /// failure (an AoE error, or no answer) is retried with backoff
    /// (`retry_delay`) by the timer.
    pub(super) fn start_identify(&self, dev: &Arc<Device>, g: &mut DevInner, now: Micros, out: &mut Outbox) {
        self.wake_timer(dev, g);
        g.identifying = true;
        g.identify_retry_at = None;
        let d = dev.clone();
        let me = self.me.clone();
        let done: IoDone = Box::new(move |res| {
            let Some(ini) = me.upgrade() else { return };
            let mut g = d.inner.lock();
            g.identifying = false;
            match res
                .map_err(|e| e.to_string())
                .and_then(|b| Identify::parse(&b).map(|id| (id, b)).map_err(|e| e.to_string()))
            {
                Ok((id, raw)) => {
                    let changed = g.identify.as_ref().map(|o| o.sectors) != Some(id.sectors);
                    // Identified before and not up: it was down (`revive`).
                    let back = g.state == DevState::Discovered && g.identify.is_some();
                    g.io.lba48 = id.lba48;
                    if !id.lba48 && id.sectors > 0x0FFF_FFFF {
                        ini.errlog.push(format!("{}: LBA28 target larger than 128 GiB", d.name()));
                    }
                    if g.state != DevState::Down {
                        g.state = DevState::Up;
                    }
                    g.identify = Some(id);
                    g.identify_raw = Some(raw[..wire::SECTOR].into());
                    let failures = std::mem::take(&mut g.identify_failures);
                    drop(g);
                    if failures > 0 {
                        log::info!("{}: IDENTIFY answered after {failures} failures", d.name());
                    }
                    if changed {
                        d.generation.fetch_add(1, Ordering::AcqRel);
                    }
                    d.set_visible();
                    if back {
                        ini.errlog.push(format!("{}: answering again, device marked up", d.name()));
                    }
                }
                Err(e) => {
                    g.identify_failures += 1;
                    let failures = g.identify_failures;
                    if g.state == DevState::Discovered {
                        g.identify_retry_at = Some(ini.now() + retry_delay(failures));
                    }
                    drop(g);
                    // Once per run of failures: a target that starts busy
                    // would otherwise fill `err`.
                    if failures == 1 {
                        ini.errlog.push_about(
                            d.visible(),
                            ini.now(),
                            format!("{}: IDENTIFY failed: {e}; retrying", d.name()),
                        );
                    }
                }
            }
        });
        g.io.submit_cmd(now, Op::Identify, done, out, false);
    }

    /// The timer's work on a device that is not up: IDENTIFY retries, and
    /// probes of a down target. Returns true when the target should be
    /// probed.
    pub(super) fn tend(&self, dev: &Arc<Device>, g: &mut DevInner, now: Micros, out: &mut Outbox) -> bool {
        match g.state {
            DevState::Discovered if !g.identifying && g.identify_retry_at.is_some_and(|t| now >= t) => {
                self.start_identify(dev, g, now, out);
                false
            }
            DevState::Down if now >= g.next_probe => {
                g.next_probe = now + DOWN_PROBE_INTERVAL;
                true
            }
            _ => false,
        }
    }

    /// The last opener of a device closed it: a down target comes back as
    /// soon as it answers, so ask it now.
    pub fn closed(&self, dev: &Device) {
        dev.closed();
        if dev.open_count() == 0 && dev.state() == DevState::Down {
            self.probe(dev);
        }
    }

    /// Re-queries config and re-identifies a device (`revalidate`).
    pub fn revalidate(&self, dev: &Arc<Device>) {
        dev.readonly.store(false, Ordering::Release);
        // The user may have fixed the network: large frames are tried again.
        dev.inner.lock().io.lift_caps();
        let mut macs = self.target_macs(dev);
        if macs.is_empty() {
            macs = self.discovery_dests();
        }
        for m in macs {
            self.query_config(dev.shelf, dev.slot, m);
        }
        let now = self.now();
        self.step(dev, |g, fx| {
            if g.state == DevState::Up && !g.identifying {
                self.start_identify(dev, g, now, &mut fx.out);
            }
        });
    }
}
