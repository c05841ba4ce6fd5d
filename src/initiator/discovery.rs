//! Finding targets: query-config broadcasts (or unicasts to the `--macs`),
//! config responses (announcements included) that create devices and paths,
//! and config queries answered with an AoE error, asked again with backoff.

use super::effects::{ConfigQuery, Effects};
use super::trust::new_path_state;
use super::{retry_delay, Initiator, DISCOVER_TAG, REDISCOVER_INTERVAL};
use crate::clock::Micros;
use crate::device::DevState;
use crate::engine::{PathChange, PathOffer, PathState};
use crate::wire::{self, Body, ConfigRepr, Header, Mac, Repr};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Most targets with a config query retry pending (answers with an AoE
/// error to our discovery), so a flood of them costs bounded memory.
const MAX_CONFIG_RETRIES: usize = 256;

/// A config query to retry: a target answered our discovery with an AoE
/// error (3, device unavailable, while it starts).
#[derive(Debug, Clone, Copy)]
pub(super) struct ConfigRetry {
    at: Micros,
    failures: u32,
    since: Micros,
}

impl Initiator {
    /// Asks every target on every allowed interface for its config: a
    /// broadcast query config, or with `--macs` a unicast one to each MAC
    /// listed.
    pub fn discover(&self) {
        for dst in self.discovery_dests() {
            self.query_config(wire::SHELF_ALL, wire::SLOT_ALL, dst);
        }
        self.last_discover.store(self.now().max(1), Ordering::Relaxed);
    }

    /// Sends a query config for `shelf.slot` to `dst` on every link.
    pub(super) fn query_config(&self, shelf: u16, slot: u8, dst: Mac) {
        for l in self.links().iter() {
            self.query_config_on(l.as_ref(), shelf, slot, dst);
        }
    }

    fn query_config_on(&self, l: &dyn crate::link::Link, shelf: u16, slot: u8, dst: Mac) {
        let mut buf = [0u8; 64];
        let repr = Repr {
            header: Header { dst, src: l.mac(), response: false, error: None, shelf, slot, tag: DISCOVER_TAG },
            body: Body::Config(ConfigRepr::query(wire::CCMD_READ, &[])),
        };
        // Pad to the Ethernet minimum (60 bytes without FCS).
        let n = repr.emit(&mut buf).expect("config query fits").max(60);
        if let Err(e) = l.send(&buf[..n]) {
            self.errlog.push(format!("discover: send on {}: {e}", l.name()));
        }
    }

    /// Sends the queued unicast config queries, each on its link, and
    /// empties `queries`.
    pub(super) fn send_queries(&self, queries: &mut Vec<ConfigQuery>) {
        if queries.is_empty() {
            return;
        }
        let links = self.links();
        for q in queries.drain(..) {
            if let Some(l) = links.get(q.link) {
                self.query_config_on(l.as_ref(), q.shelf, q.slot, q.dst);
            }
        }
    }

    /// A config response (announcement, or an answer to discovery or to a
    /// `TargetCommand`). From a MAC not in `--macs`: ignored. From a
    /// verified path: creates the device (within the table's bounds) or
    /// updates its path, and starts IDENTIFY when the device is not up yet.
    /// From a new MAC of a known target: an unverified path, checked before
    /// it carries anything (`trust`).
    pub(super) fn on_config(&self, link: usize, h: &Header, c: &ConfigRepr<'_>, batch: &mut Effects) {
        if h.shelf == wire::SHELF_ALL || h.slot == wire::SLOT_ALL || h.src.is_multicast() {
            self.ignored.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !self.mac_allowed(h.src) {
            self.ignored.untrusted_mac.fetch_add(1, Ordering::Relaxed);
            self.count_ignored(h.shelf, h.slot);
            return;
        }
        let links = self.links();
        let Some(l) = links.get(link) else {
            self.ignored.stale_link.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(dev) = self.admit_device(h.shelf, h.slot) else { return };
        let now = self.now();
        let added = self.collect(&dev, batch, |g, fx| {
            let state = new_path_state(g, h.src);
            let offer = PathOffer {
                link,
                ifname: l.name(),
                local_mac: l.mac(),
                mac: h.src,
                mtu: l.mtu(),
                buffer_count: c.buffer_count,
                max_sectors: c.effective_max_sectors(),
            };
            let (id, state) = match g.io.add_path(now, offer, state) {
                PathChange::Added { id, state } => {
                    log::info!("{}: path {} via {} ({state})", dev.name(), h.src, l.name());
                    (id, state)
                }
                PathChange::Updated { id, state } => (id, state),
                PathChange::Full | PathChange::Refused => return false,
            };
            match state {
                PathState::Unverified => self.candidate_config(&dev, g, id, h, c, now, fx),
                PathState::Refused => {
                    dev.ignored.fetch_add(1, Ordering::Relaxed);
                }
                PathState::InUse | PathState::Failed => {
                    g.firmware = c.firmware;
                    if g.config != c.config {
                        g.config = c.config.to_vec();
                    }
                    if self.config_retries.lock().remove(&(h.shelf, h.slot, h.src)).is_some() {
                        log::info!("{}: query config answered after retries", dev.name());
                    }
                    self.revive(&dev, g, h.src, now, &mut fx.out);
                }
            }
            true
        });
        if !added {
            self.ignored.unknown_source.fetch_add(1, Ordering::Relaxed);
            dev.ignored.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A target answered our discovery with an AoE error: ask it again later
    /// (unicast), with backoff, until it answers with its config.
    pub(super) fn config_failed(&self, h: &Header) {
        if !self.mac_allowed(h.src) {
            self.ignored.untrusted_mac.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut retries = self.config_retries.lock();
        let key = (h.shelf, h.slot, h.src);
        if !retries.contains_key(&key) && retries.len() >= MAX_CONFIG_RETRIES {
            return;
        }
        let now = self.now();
        let r = retries.entry(key).or_insert(ConfigRetry { at: 0, failures: 0, since: now });
        r.failures += 1;
        r.at = now + retry_delay(r.failures);
        let first = r.failures == 1;
        drop(retries);
        if first {
            let e = h.error.map_or("?", |e| e.describe());
            let known = self.device(h.shelf, h.slot).is_some_and(|d| d.visible());
            self.errlog.push_about(
                known,
                self.now(),
                format!("e{}.{}: query config failed: {e}; retrying", h.shelf, h.slot),
            );
        }
    }

    /// Sends the config queries whose retry is due.
    pub(super) fn retry_config_queries(&self, now: Micros) {
        let due: Vec<(u16, u8, Mac)> = {
            let mut r = self.config_retries.lock();
            // After a minute the 60 s rediscovery takes over.
            r.retain(|_, v| now.saturating_sub(v.since) < REDISCOVER_INTERVAL);
            r.iter_mut()
                .filter(|(_, v)| now >= v.at)
                .map(|(k, v)| {
                    // Asked again; the next failure (or silence) backs off further.
                    v.at = now + retry_delay(v.failures + 1);
                    *k
                })
                .collect()
        };
        for (shelf, slot, mac) in due {
            self.query_config(shelf, slot, mac);
        }
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
}
