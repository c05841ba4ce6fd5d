//! An in-memory Ethernet segment for tests: a hub that delivers frames to
//! every other port (by destination MAC or broadcast) from its own thread, an
//! optional seeded fault injector on the way, and `SimTarget`, a small AoE
//! target serving a disk held in memory. No kernel, no capture privileges.

use super::fault::{FaultConfig, FaultCounters, FaultInjector};
use super::{Link, LinkProvider, RxHandler, RX_BURST};
use crate::wire::{self, AtaRepr, Body, ConfigRepr, Frame, Header, Identify, Mac, Repr, SECTOR};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

struct Port {
    name: String,
    mac: Mac,
    mtu: usize,
    rx: Option<RxHandler>,
}

struct HubInner {
    ports: Mutex<Vec<Port>>,
    queue: Mutex<VecDeque<(usize, Vec<u8>)>>,
    cv: Condvar,
    stop: AtomicBool,
    faults: Mutex<Option<FaultInjector>>,
    delivered: AtomicU64,
}

/// The in-memory segment. Cloning shares it.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        let inner = Arc::new(HubInner {
            ports: Mutex::new(Vec::new()),
            queue: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            faults: Mutex::new(None),
            delivered: AtomicU64::new(0),
        });
        let i2 = inner.clone();
        std::thread::Builder::new().name("mem-hub".into()).spawn(move || hub_loop(i2)).expect("spawn hub");
        Hub { inner }
    }

    /// Adds a port (an interface) and returns its index.
    pub fn add_port(&self, name: &str, mac: Mac, mtu: usize) -> usize {
        let mut p = self.inner.ports.lock();
        p.push(Port { name: name.into(), mac, mtu, rx: None });
        p.len() - 1
    }

    fn attach(&self, port: usize, rx: Option<RxHandler>) {
        self.inner.ports.lock()[port].rx = rx;
    }

    /// Queues a frame sent from `port`.
    pub fn send_from(&self, port: usize, frame: &[u8]) {
        self.inner.queue.lock().push_back((port, frame.to_vec()));
        self.inner.cv.notify_one();
    }

    /// Applies faults to every frame from now on (None: none).
    pub fn set_faults(&self, cfg: Option<FaultConfig>, seed: u64) {
        *self.inner.faults.lock() = cfg.map(|c| FaultInjector::new(c, seed));
    }

    pub fn fault_counters(&self) -> FaultCounters {
        self.inner.faults.lock().as_ref().map(|f| f.counters).unwrap_or_default()
    }

    pub fn delivered(&self) -> u64 {
        self.inner.delivered.load(Ordering::Relaxed)
    }

    /// A provider that opens this hub's ports by name.
    pub fn provider(&self) -> Arc<MemProvider> {
        Arc::new(MemProvider { hub: self.clone() })
    }

    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.inner.cv.notify_all();
    }
}

/// Receivers that got frames since their last `idle`, like a real link's
/// capture thread: `idle` when the queue runs dry or after `RX_BURST`
/// frames, so receivers that batch see bursts here too.
#[derive(Default)]
struct Bursts {
    rx: Vec<RxHandler>,
    frames: usize,
}

impl Bursts {
    fn add(&mut self, got: Vec<RxHandler>) {
        for r in got {
            if !self.rx.iter().any(|x| Arc::ptr_eq(x, &r)) {
                self.rx.push(r);
            }
            self.frames += 1;
        }
        if self.frames >= RX_BURST {
            self.idle();
        }
    }
    fn idle(&mut self) {
        for r in self.rx.drain(..) {
            r.idle();
        }
        self.frames = 0;
    }
}

fn hub_loop(h: Arc<HubInner>) {
    let mut bursts = Bursts::default();
    loop {
        let (from, frame) = {
            let mut q = h.queue.lock();
            loop {
                if h.stop.load(Ordering::Relaxed) {
                    drop(q);
                    bursts.idle();
                    return;
                }
                if let Some(x) = q.pop_front() {
                    break x;
                }
                if !bursts.rx.is_empty() {
                    drop(q);
                    bursts.idle();
                    q = h.queue.lock();
                    continue;
                }
                // Release frames held by the fault injector when idle.
                let held = h.faults.lock().as_mut().map(|f| f.flush()).unwrap_or_default();
                if !held.is_empty() {
                    drop(q);
                    for f in held {
                        bursts.add(deliver(&h, usize::MAX, &f));
                    }
                    q = h.queue.lock();
                    continue;
                }
                h.cv.wait_for(&mut q, std::time::Duration::from_millis(20));
            }
        };
        let frames = match h.faults.lock().as_mut() {
            Some(f) => f.apply(frame),
            None => vec![frame],
        };
        for f in frames {
            bursts.add(deliver(&h, from, &f));
        }
    }
}

/// Hands `f` to every port it is addressed to; returns their receivers.
fn deliver(h: &HubInner, from: usize, f: &[u8]) -> Vec<RxHandler> {
    if f.len() < wire::ETH_HDR_LEN {
        return Vec::new();
    }
    let fr = Frame::new_unchecked(f);
    let (dst, src) = (fr.dst(), fr.src());
    let targets: Vec<RxHandler> = h
        .ports
        .lock()
        .iter()
        .enumerate()
        .filter(|(i, p)| *i != from && p.mac != src && (dst.is_broadcast() || p.mac == dst))
        .filter_map(|(_, p)| p.rx.clone())
        .collect();
    for rx in &targets {
        h.delivered.fetch_add(1, Ordering::Relaxed);
        rx.frame(f);
    }
    targets
}

/// Opens hub ports by name.
pub struct MemProvider {
    hub: Hub,
}

impl LinkProvider for MemProvider {
    fn default_names(&self) -> Vec<String> {
        self.hub.inner.ports.lock().iter().filter(|p| p.rx.is_none()).map(|p| p.name.clone()).collect()
    }
    fn exists(&self, name: &str) -> bool {
        self.hub.inner.ports.lock().iter().any(|p| p.name == name)
    }
    fn open(&self, name: &str, rx: RxHandler) -> io::Result<Arc<dyn Link>> {
        let (port, mac, mtu) = {
            let p = self.hub.inner.ports.lock();
            let i = p
                .iter()
                .position(|x| x.name == name)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no such interface: {name}")))?;
            (i, p[i].mac, p[i].mtu)
        };
        self.hub.attach(port, Some(rx));
        Ok(Arc::new(MemLink { hub: self.hub.clone(), port, name: name.into(), mac, mtu }))
    }
}

/// One hub port used as a link.
pub struct MemLink {
    hub: Hub,
    port: usize,
    name: String,
    mac: Mac,
    mtu: usize,
}

impl Link for MemLink {
    fn name(&self) -> &str {
        &self.name
    }
    fn mac(&self) -> Mac {
        self.mac
    }
    fn mtu(&self) -> usize {
        self.mtu
    }
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        if frame.len() > self.mtu + wire::ETH_HDR_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame larger than MTU"));
        }
        self.hub.send_from(self.port, frame);
        Ok(())
    }
    fn close(&self) {
        self.hub.attach(self.port, None);
    }
}

/// How a `SimTarget` misbehaves, for tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimBehaviour {
    /// Answer nothing at all (a dead target).
    pub silent: bool,
    /// Answer ATA with this AoE error code.
    pub aoe_error: Option<u8>,
}

/// A minimal AoE target serving an in-memory disk (vblade-like: LBA48,
/// FLUSH CACHE supported, reads past the end fail with IDNF).
pub struct SimTarget {
    pub shelf: u16,
    pub slot: u8,
    pub mac: Mac,
    pub disk: Mutex<Vec<u8>>,
    pub buffer_count: u16,
    pub max_sectors: u8,
    pub behaviour: Mutex<SimBehaviour>,
    pub requests: AtomicU64,
    pub flushes: AtomicU64,
    hub: Hub,
    port: usize,
}

impl SimTarget {
    /// Plugs a target into the hub and announces it.
    pub fn start(
        hub: &Hub,
        shelf: u16,
        slot: u8,
        mac: Mac,
        sectors: u64,
        buffer_count: u16,
        max_sectors: u8,
    ) -> Arc<SimTarget> {
        let port = hub.add_port(&format!("sim{shelf}.{slot}"), mac, 9000);
        let t = Arc::new(SimTarget {
            shelf,
            slot,
            mac,
            disk: Mutex::new(vec![0u8; sectors as usize * SECTOR]),
            buffer_count,
            max_sectors,
            behaviour: Mutex::new(SimBehaviour::default()),
            requests: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            hub: hub.clone(),
            port,
        });
        let t2 = Arc::downgrade(&t);
        hub.attach(
            port,
            Some(Arc::new(move |f: &[u8]| {
                if let Some(t) = t2.upgrade() {
                    t.handle(f)
                }
            })),
        );
        t.announce();
        t
    }

    fn config_reply(&self, dst: Mac, tag: u32) -> Vec<u8> {
        let r = Repr {
            header: Header { dst, src: self.mac, response: true, error: None, shelf: self.shelf, slot: self.slot, tag },
            body: Body::Config(ConfigRepr {
                buffer_count: self.buffer_count,
                firmware: 0x4019,
                max_sectors: self.max_sectors,
                aoe_version: 1,
                ccmd: 0,
                config: &[],
            }),
        };
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut b).expect("emit");
        b
    }

    pub fn announce(&self) {
        let b = self.config_reply(Mac::BROADCAST, 0);
        self.hub.send_from(self.port, &b);
    }

    fn handle(&self, f: &[u8]) {
        let Ok(fr) = Frame::new_checked(f) else { return };
        if fr.is_response() {
            return;
        }
        let Ok(r) = Repr::parse(f) else { return };
        let h = r.header;
        let for_me =
            (h.shelf == self.shelf || h.shelf == wire::SHELF_ALL) && (h.slot == self.slot || h.slot == wire::SLOT_ALL);
        if !for_me {
            return;
        }
        let b = *self.behaviour.lock();
        if b.silent {
            return;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        match r.body {
            Body::Config(_) => {
                let reply = self.config_reply(h.src, h.tag);
                self.hub.send_from(self.port, &reply);
            }
            Body::Ata(a) => {
                let reply = self.ata(h, &a, b);
                self.hub.send_from(self.port, &reply);
            }
            _ => {}
        }
    }

    fn ata(&self, h: Header, a: &AtaRepr<'_>, b: SimBehaviour) -> Vec<u8> {
        let mut hdr = Header {
            dst: h.src,
            src: self.mac,
            response: true,
            error: None,
            shelf: self.shelf,
            slot: self.slot,
            tag: h.tag,
        };
        if let Some(code) = b.aoe_error {
            hdr.error = Some(wire::AoeError::from_u8(code));
            let mut buf = vec![0u8; wire::AOE_HDR_LEN];
            Repr { header: hdr, body: Body::Error(wire::Command::Ata) }.emit(&mut buf).expect("emit");
            return buf;
        }
        if a.sector_count > self.max_sectors {
            hdr.error = Some(wire::AoeError::BadArgument);
            let mut buf = vec![0u8; wire::AOE_HDR_LEN];
            Repr { header: hdr, body: Body::Error(wire::Command::Ata) }.emit(&mut buf).expect("emit");
            return buf;
        }
        let mut disk = self.disk.lock();
        let sectors = (disk.len() / SECTOR) as u64;
        let lba = a.lba & 0xFFFF_FFFF_FFFF;
        let n = a.sector_count as u64;
        let mut status = wire::ATA_STATUS_DRDY;
        let mut err = 0u8;
        let mut data: Vec<u8> = Vec::new();
        match a.cmd_status {
            wire::ATA_IDENTIFY => {
                let id = Identify {
                    sectors,
                    lba48: true,
                    flush: true,
                    flush_ext: false,
                    model: "aoefs SimTarget".into(),
                    serial: format!("sim{}.{}", self.shelf, self.slot),
                    firmware: "V1".into(),
                };
                data = id.emit().to_vec();
            }
            wire::ATA_READ_EXT | wire::ATA_WRITE_EXT if lba + n > sectors => {
                status = 0x41;
                err = wire::ATA_ERR_IDNF;
            }
            wire::ATA_READ_EXT => {
                data = disk[lba as usize * SECTOR..(lba + n) as usize * SECTOR].to_vec();
            }
            wire::ATA_WRITE_EXT => match a.data_exact(n as usize * SECTOR) {
                Ok(d) => disk[lba as usize * SECTOR..(lba + n) as usize * SECTOR].copy_from_slice(d),
                Err(_) => {
                    status = 0x41;
                    err = wire::ATA_ERR_ABRT;
                }
            },
            wire::ATA_FLUSH => {
                self.flushes.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                status = 0x41;
                err = wire::ATA_ERR_ABRT;
            }
        }
        let r = Repr {
            header: hdr,
            body: Body::Ata(AtaRepr {
                aflags: a.aflags,
                err_feature: err,
                sector_count: 0,
                cmd_status: status,
                lba: a.lba,
                data: &data,
            }),
        };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf).expect("emit");
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::{Bursts, RX_BURST};
    use crate::link::{Receiver, RxHandler};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts `idle` calls (frames are delivered by `deliver`, not here).
    #[derive(Default)]
    struct Counting {
        idles: AtomicUsize,
    }

    impl Receiver for Counting {
        fn frame(&self, _f: &[u8]) {}
        fn idle(&self) {
            self.idles.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn receivers_are_told_idle_per_burst_not_per_frame() {
        let a = Arc::new(Counting::default());
        let b = Arc::new(Counting::default());
        let (ra, rb): (RxHandler, RxHandler) = (a.clone(), b.clone());
        let mut bursts = Bursts::default();
        // A burst shorter than RX_BURST: no idle until the queue runs dry.
        for _ in 0..RX_BURST - 2 {
            bursts.add(vec![ra.clone()]);
        }
        bursts.add(vec![rb.clone()]);
        assert_eq!((a.idles.load(Ordering::Relaxed), b.idles.load(Ordering::Relaxed)), (0, 0));
        bursts.idle();
        assert_eq!((a.idles.load(Ordering::Relaxed), b.idles.load(Ordering::Relaxed)), (1, 1));
        // A long run: idle every RX_BURST frames, each receiver once.
        for _ in 0..RX_BURST * 3 {
            bursts.add(vec![ra.clone()]);
        }
        assert_eq!(a.idles.load(Ordering::Relaxed), 4);
        assert_eq!(b.idles.load(Ordering::Relaxed), 1, "b got no frames since its idle");
        // Dry queue with nothing delivered: nobody is told.
        bursts.idle();
        assert_eq!(a.idles.load(Ordering::Relaxed), 4);
    }
}
