//! An in-memory Ethernet segment for tests: a hub that delivers frames to
//! every other port (by destination MAC or broadcast) from its own thread, an
//! optional seeded fault injector on the way, and `SimTarget`, which plugs a
//! simulated AoE target (`sim`) into it. No kernel, no capture privileges.

use super::fault::{FaultConfig, FaultCounters, FaultInjector};
use super::{Link, LinkProvider, RxHandler, RX_BURST};
use crate::sim::{SimConfig, SimModel};
use crate::wire::{self, Frame, Mac};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// `Link::expect_reply` calls on any port: with at most
    /// `pcap::ADAPTIVE_AT_ONCE` requests at once (a pcap link set to
    /// `auto` would poll), and with more.
    hints_few: AtomicU64,
    hints_many: AtomicU64,
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
            hints_few: AtomicU64::new(0),
            hints_many: AtomicU64::new(0),
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

    /// Sets the MTU of the port named `name` (as `ip link set NAME mtu N`
    /// would): it sends and receives no longer frame from now on.
    pub fn set_mtu(&self, name: &str, mtu: usize) {
        if let Some(p) = self.inner.ports.lock().iter_mut().find(|p| p.name == name) {
            p.mtu = mtu;
        }
    }

    fn port_mtu(&self, port: usize) -> usize {
        self.inner.ports.lock()[port].mtu
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

    /// How many frames were sent, since the last call, with at most
    /// `pcap::ADAPTIVE_AT_ONCE` requests at once (where `--busy-poll auto`
    /// would poll for the reply) and with more (`Link::expect_reply`).
    pub fn take_reply_hints(&self) -> (u64, u64) {
        (self.inner.hints_few.swap(0, Ordering::Relaxed), self.inner.hints_many.swap(0, Ordering::Relaxed))
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
                let held = h.faults.lock().as_mut().map(|f| f.release_held()).unwrap_or_default();
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
        // A port drops frames longer than its MTU, as a NIC does.
        .filter(|(_, p)| f.len() <= p.mtu + wire::ETH_HDR_LEN)
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
        Ok(Arc::new(MemLink { hub: self.hub.clone(), port, name: name.into(), mac, mtu: AtomicUsize::new(mtu) }))
    }
}

/// One hub port used as a link.
pub struct MemLink {
    hub: Hub,
    port: usize,
    name: String,
    mac: Mac,
    /// The port's MTU when last looked at (`refresh_mtu`).
    mtu: AtomicUsize,
}

impl Link for MemLink {
    fn name(&self) -> &str {
        &self.name
    }
    fn mac(&self) -> Mac {
        self.mac
    }
    fn mtu(&self) -> usize {
        self.mtu.load(Ordering::Relaxed)
    }
    fn refresh_mtu(&self) -> io::Result<usize> {
        let mtu = self.hub.port_mtu(self.port);
        self.mtu.store(mtu, Ordering::Relaxed);
        Ok(mtu)
    }
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // As a packet socket refuses a frame longer than the interface's
        // MTU (as it is now, not as it was).
        if frame.len() > self.hub.port_mtu(self.port) + wire::ETH_HDR_LEN {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        self.hub.send_from(self.port, frame);
        Ok(())
    }
    fn expect_reply(&self, _rtt_us: u64, at_once: u32) {
        let h = &self.hub.inner;
        let n = if at_once <= super::pcap::ADAPTIVE_AT_ONCE { &h.hints_few } else { &h.hints_many };
        n.fetch_add(1, Ordering::Relaxed);
    }
    fn close(&self) {
        self.hub.attach(self.port, None);
    }
}

/// A simulated target (`sim::SimModel`) plugged into the hub: it answers
/// every frame addressed to it at once, from the hub's thread.
pub struct SimTarget {
    pub model: Mutex<SimModel>,
    hub: Hub,
    port: usize,
}

impl SimTarget {
    /// Plugs a vblade-like target with an in-memory disk into the hub and
    /// announces it.
    pub fn start(
        hub: &Hub,
        shelf: u16,
        slot: u8,
        mac: Mac,
        sectors: u64,
        buffer_count: u16,
        max_sectors: u8,
    ) -> Arc<SimTarget> {
        let cfg = SimConfig { buffer_count, max_sectors, ..SimConfig::new(shelf, slot, mac) };
        SimTarget::start_model(hub, SimModel::with_disk(cfg, sectors))
    }

    /// Plugs any simulated target into the hub and announces it.
    pub fn start_model(hub: &Hub, model: SimModel) -> Arc<SimTarget> {
        let t = SimTarget::plug(hub, model);
        t.announce();
        t
    }

    /// Plugs a simulated target into the hub without announcing it.
    pub fn plug(hub: &Hub, model: SimModel) -> Arc<SimTarget> {
        let port = hub.add_port(&format!("sim{}.{}", model.cfg.shelf, model.cfg.slot), model.cfg.mac, 9000);
        let t = Arc::new(SimTarget { model: Mutex::new(model), hub: hub.clone(), port });
        let t2 = Arc::downgrade(&t);
        hub.attach(
            port,
            Some(Arc::new(move |f: &[u8]| {
                if let Some(t) = t2.upgrade() {
                    let reply = t.model.lock().handle(f);
                    if let Some(r) = reply {
                        t.hub.send_from(t.port, &r);
                    }
                }
            })),
        );
        t
    }

    /// Sends the target's unsolicited config response.
    pub fn announce(&self) {
        let b = self.model.lock().announcement();
        self.hub.send_from(self.port, &b);
    }

    /// A copy of the target's disk.
    pub fn disk(&self) -> Vec<u8> {
        self.model.lock().disk().to_vec()
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
