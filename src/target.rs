//! The initiator: the allowed interfaces (links), the device table, discovery,
//! frame dispatch from capture threads into the per-target engines, and the
//! timer that drives retransmission, dead detection and rediscovery.

pub use crate::clock::{Clock, RealClock};
use crate::engine::{Counters, IoDone, IoError, Micros, Op, Path, PathChange, ReplyOutcome, TargetIo};
use crate::errlog::ErrLog;
use crate::link::{Link, LinkProvider, Receiver, RxHandler};
use crate::wire::{
    self, AoeError, Body, ConfigRepr, Directive, Frame, Header, Identify, Mac, MacMaskRepr, Repr, ReserveRepr,
};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Tag of our query-config broadcasts (bit 31 set, as userland initiators do).
pub const DISCOVER_TAG: u32 = 0x8000_0000;

/// The driver's rediscovery interval.
pub const REDISCOVER_INTERVAL: Micros = 60_000_000;

/// Initiator parameters (the driver's module parameters).
#[derive(Debug, Clone)]
pub struct Options {
    pub deadsecs: u32,
    pub maxout: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options { deadsecs: 180, maxout: 128 }
    }
}

/// Device state as the `state` attribute shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevState {
    /// Answered query config; IDENTIFY not yet done.
    Discovered,
    Up,
    Down,
}

/// What is known of one target and its engine.
pub struct DevInner {
    pub state: DevState,
    pub identify: Option<Identify>,
    pub firmware: u16,
    pub io: TargetIo,
    identifying: bool,
}

/// One AoE target, `e{shelf}.{slot}`.
pub struct Device {
    /// Unique for the life of the mount (never reused, also after flush).
    pub id: u32,
    pub shelf: u16,
    pub slot: u8,
    pub inner: Mutex<DevInner>,
    open: AtomicU32,
    /// Set once IDENTIFY succeeded: from then on the device is listed.
    visible: AtomicBool,
    /// The target refused a write with ABRT (vblade -r): shown 0444, writes EROFS.
    pub readonly: AtomicBool,
    /// Frames for this shelf.slot that were not applied: malformed, from a
    /// MAC that is not one of the target's, or without our tag bit.
    pub ignored: AtomicU64,
    /// Bumped whenever the size may have changed (revalidate).
    pub generation: AtomicU64,
}

impl Device {
    pub fn name(&self) -> String {
        format!("e{}.{}", self.shelf, self.slot)
    }
    pub fn visible(&self) -> bool {
        self.visible.load(Ordering::Acquire)
    }
    pub fn open_count(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::AcqRel);
    }
    pub fn closed(&self) {
        let _ = self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
    }
    /// Size in 512-byte sectors (0 before IDENTIFY).
    pub fn sectors(&self) -> u64 {
        self.inner.lock().identify.as_ref().map(|i| i.sectors).unwrap_or(0)
    }
    /// The `state` attribute.
    pub fn state_string(&self) -> String {
        let st = self.inner.lock().state;
        match st {
            DevState::Up => "up".into(),
            DevState::Discovered => "down".into(),
            DevState::Down if self.open_count() > 0 => "down,closewait".into(),
            DevState::Down => "down".into(),
        }
    }
    pub fn is_up(&self) -> bool {
        self.inner.lock().state == DevState::Up
    }
}

/// Ignored-frame counters (hostile or broken input).
#[derive(Debug, Default)]
pub struct Ignored {
    pub malformed: AtomicU64,
    pub not_response: AtomicU64,
    pub unknown_target: AtomicU64,
    pub unknown_source: AtomicU64,
    pub unexpected_tag: AtomicU64,
    pub foreign_tag: AtomicU64,
    pub stale_link: AtomicU64,
}

struct LinkTable {
    /// Indexed by link id; ids are never reused.
    links: Vec<Option<Arc<dyn Link>>>,
    /// Names of the allowed interfaces, in order.
    names: Vec<String>,
}

/// The AoE initiator.
pub struct Initiator {
    provider: Arc<dyn LinkProvider>,
    links: RwLock<LinkTable>,
    devices: RwLock<HashMap<(u16, u8), Arc<Device>>>,
    next_id: AtomicU32,
    pub opts: Options,
    pub clock: Arc<dyn Clock>,
    pub errlog: ErrLog,
    pub ignored: Ignored,
    last_discover: AtomicU64,
    last_new_device: AtomicU64,
    last_link_check: AtomicU64,
    pending_ctl: Mutex<HashMap<u32, std::sync::mpsc::Sender<CtlReply>>>,
    ctl_seq: AtomicU32,
    me: Weak<Initiator>,
}

fn tx_fn<'a>(links: &'a LinkTable) -> impl FnMut(&Path, &[u8], &[u8]) + 'a {
    move |p: &Path, head: &[u8], data: &[u8]| send_now(links, p.link, head, data)
}

/// Header-only frames (read commands) built under a device's lock, sent
/// after the lock is dropped: a send is a system call that on a veth pair
/// also runs the target's receive path, and holding the lock through it
/// made the FUSE threads and the capture thread spin on each other at high
/// queue depth (QD32: 98k sched_yield calls in 3 s before, 10k after).
/// Frames carrying write data are still sent at once: their data is
/// borrowed from the request, which only lives under the lock.
type Outbox = Vec<(usize, [u8; wire::ATA_HDR_LEN])>;

thread_local! {
    /// One reusable outbox per thread, so the hot path does not allocate.
    static OUTBOX: std::cell::RefCell<Outbox> = const { std::cell::RefCell::new(Vec::new()) };
}

fn send_now(links: &LinkTable, link: usize, head: &[u8], data: &[u8]) {
    if let Some(Some(l)) = links.links.get(link) {
        if let Err(e) = l.send_parts(head, data) {
            log::debug!("send on {}: {e}", l.name());
        }
    }
}

fn tx_deferred<'a>(links: &'a LinkTable, out: &'a mut Outbox) -> impl FnMut(&Path, &[u8], &[u8]) + 'a {
    move |p: &Path, head: &[u8], data: &[u8]| {
        if data.is_empty() && head.len() == wire::ATA_HDR_LEN {
            let mut h = [0u8; wire::ATA_HDR_LEN];
            h.copy_from_slice(head);
            out.push((p.link, h));
        } else {
            send_now(links, p.link, head, data);
        }
    }
}

/// Sends what `tx_deferred` kept, in order.
fn flush_outbox(links: &LinkTable, out: &mut Outbox) {
    for (link, h) in out.drain(..) {
        send_now(links, link, &h, &[]);
    }
}

/// Runs `f` with this thread's (empty) outbox and puts it back after.
fn with_outbox<R>(f: impl FnOnce(&mut Outbox) -> R) -> R {
    let mut out = OUTBOX.with(|o| std::mem::take(&mut *o.borrow_mut()));
    let r = f(&mut out);
    out.clear();
    OUTBOX.with(|o| *o.borrow_mut() = out);
    r
}

thread_local! {
    /// On a capture thread, between a link's frames and its `idle`: the
    /// read-command frames replies freed up, then the completed requests.
    static RX_BATCH: std::cell::RefCell<(Outbox, crate::engine::Completions)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The initiator's side of a link: frames go to `handle_frame`; while a
/// burst of frames lasts, the read commands their replies free up and the
/// requests they complete are collected, and `idle` sends the commands in
/// one go and then answers the requests. The target then gets several
/// commands per wake-up and the FUSE caller several replies per wake-up,
/// where before each frame cost a wake-up of both (at QD32 about a third of
/// the machine's time went to wake-ups).
struct FrameSink {
    ini: Weak<Initiator>,
    link: usize,
}

impl Receiver for FrameSink {
    fn frame(&self, f: &[u8]) {
        if let Some(ini) = self.ini.upgrade() {
            ini.handle_frame(self.link, f);
        }
    }
    fn idle(&self) {
        let (mut out, done) = RX_BATCH.with(|b| std::mem::take(&mut *b.borrow_mut()));
        if !out.is_empty() {
            match self.ini.upgrade() {
                Some(ini) => flush_outbox(&ini.links.read(), &mut out),
                None => out.clear(),
            }
        }
        // Commands first (the target works while we answer), then replies.
        run_completions(done);
        // The outbox keeps its allocation for the next burst.
        RX_BATCH.with(|b| b.borrow_mut().0 = out);
    }
}

/// Closes links taken out of the link table, after its lock is dropped:
/// `close` waits for the capture thread, which may itself be waiting for
/// that lock to handle a frame (or to send what a burst held back).
fn close_links(links: impl IntoIterator<Item = Arc<dyn Link>>) {
    for l in links {
        l.close();
    }
}

/// Runs finished requests' callbacks (outside every lock).
fn run_completions(c: crate::engine::Completions) {
    for (done, res) in c {
        done(res);
    }
}

impl Initiator {
    /// Creates the initiator and opens the interfaces (`names` empty: the
    /// provider's defaults).
    pub fn new(
        provider: Arc<dyn LinkProvider>,
        clock: Arc<dyn Clock>,
        opts: Options,
        names: &[String],
    ) -> Result<Arc<Initiator>, String> {
        let ini = Arc::new_cyclic(|me| Initiator {
            provider,
            links: RwLock::new(LinkTable { links: Vec::new(), names: Vec::new() }),
            devices: RwLock::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            opts,
            clock,
            errlog: ErrLog::default(),
            ignored: Ignored::default(),
            last_discover: AtomicU64::new(0),
            last_new_device: AtomicU64::new(0),
            last_link_check: AtomicU64::new(0),
            pending_ctl: Mutex::new(HashMap::new()),
            ctl_seq: AtomicU32::new(1),
            me: me.clone(),
        });
        ini.set_interfaces(names)?;
        Ok(ini)
    }

    pub fn now(&self) -> Micros {
        self.clock.now()
    }

    /// The allowed interfaces, as `interfaces` shows them.
    pub fn interfaces(&self) -> Vec<String> {
        self.links.read().names.clone()
    }

    /// Replaces the allowed interfaces. Every name must exist; on error
    /// nothing changes. An empty list means every up non-loopback interface.
    pub fn set_interfaces(&self, names: &[String]) -> Result<(), String> {
        let names: Vec<String> = if names.is_empty() { self.provider.default_names() } else { names.to_vec() };
        for n in &names {
            if !self.provider.exists(n) {
                return Err(format!("unknown interface: {n}"));
            }
        }
        let mut table = self.links.write();
        // Open the new ones first, so a failure changes nothing.
        let mut opened: Vec<(String, Arc<dyn Link>)> = Vec::new();
        for n in &names {
            if table.names.contains(n) {
                continue;
            }
            let id = table.links.len() + opened.len();
            match self.open_link(id, n) {
                Ok(l) => opened.push((n.clone(), l)),
                Err(e) => {
                    drop(table);
                    close_links(opened.into_iter().map(|(_, l)| l));
                    return Err(format!("{n}: {e}"));
                }
            }
        }
        for (_, l) in opened {
            table.links.push(Some(l));
        }
        // Take out the ones no longer allowed (closed below).
        let mut removed = Vec::new();
        let mut gone = Vec::new();
        for (id, slot) in table.links.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|l| !names.iter().any(|n| n == l.name())) {
                gone.extend(slot.take());
                removed.push(id);
            }
        }
        table.names = names;
        drop(table);
        close_links(gone);
        if !removed.is_empty() {
            for d in self.devices() {
                let mut g = d.inner.lock();
                for &id in &removed {
                    g.io.remove_link(id);
                }
            }
        }
        Ok(())
    }

    /// Opens interface `name` as link `id`: its frames go to `handle_frame`.
    fn open_link(&self, id: usize, name: &str) -> std::io::Result<Arc<dyn Link>> {
        let rx: RxHandler = Arc::new(FrameSink { ini: self.me.clone(), link: id });
        self.provider.open(name, rx)
    }

    /// An allowed interface that vanished (its capture ended: deleted,
    /// renamed, driver unloaded) is closed and its paths dropped; once an
    /// interface of that name exists again it is reopened and discovery
    /// runs, so targets come back without a remount.
    fn revive_links(&self) {
        let dead: Vec<(usize, String)> = {
            let t = self.links.read();
            t.links
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.as_ref().filter(|l| !l.alive()).map(|l| (i, l.name().to_string())))
                .collect()
        };
        if !dead.is_empty() {
            let mut t = self.links.write();
            let gone: Vec<Arc<dyn Link>> = dead.iter().filter_map(|(id, _)| t.links[*id].take()).collect();
            drop(t);
            close_links(gone);
            for d in self.devices() {
                let mut g = d.inner.lock();
                for (id, _) in &dead {
                    g.io.remove_link(*id);
                }
            }
            for (_, name) in &dead {
                self.errlog.push(format!("{name}: interface gone; it is reopened when it is back"));
            }
        }
        let missing: Vec<String> = {
            let t = self.links.read();
            t.names.iter().filter(|n| !t.links.iter().flatten().any(|l| l.name() == n.as_str())).cloned().collect()
        };
        let mut back = false;
        for name in missing.into_iter().filter(|n| self.provider.exists(n)) {
            let mut t = self.links.write();
            let id = t.links.len();
            match self.open_link(id, &name) {
                Ok(l) => {
                    t.links.push(Some(l));
                    back = true;
                    drop(t);
                    self.errlog.push(format!("{name}: interface back"));
                }
                Err(e) => log::debug!("{name}: reopen: {e}"),
            }
        }
        if back {
            self.discover();
        }
    }

    /// Closes every interface (at unmount).
    pub fn shutdown(&self) {
        let mut t = self.links.write();
        let gone: Vec<Arc<dyn Link>> = t.links.iter_mut().filter_map(|l| l.take()).collect();
        drop(t);
        close_links(gone);
        for d in self.devices() {
            let c = {
                let mut g = d.inner.lock();
                g.io.fail_all(IoError::Down);
                g.io.take_completed()
            };
            run_completions(c);
        }
    }

    /// Every known device, ordered by shelf and slot.
    pub fn devices(&self) -> Vec<Arc<Device>> {
        let mut v: Vec<Arc<Device>> = self.devices.read().values().cloned().collect();
        v.sort_by_key(|d| (d.shelf, d.slot));
        v
    }

    pub fn device(&self, shelf: u16, slot: u8) -> Option<Arc<Device>> {
        self.devices.read().get(&(shelf, slot)).cloned()
    }

    pub fn device_by_id(&self, id: u32) -> Option<Arc<Device>> {
        self.devices.read().values().find(|d| d.id == id).cloned()
    }

    /// Broadcasts query config on every allowed interface.
    pub fn discover(&self) {
        self.query_config(wire::SHELF_ALL, wire::SLOT_ALL, Mac::BROADCAST);
        self.last_discover.store(self.now().max(1), Ordering::Relaxed);
    }

    fn query_config(&self, shelf: u16, slot: u8, dst: Mac) {
        let t = self.links.read();
        let mut buf = [0u8; 64];
        for l in t.links.iter().flatten() {
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

    /// Entry point of the capture threads, only through `FrameSink` (whose
    /// `idle` sends and answers what replies leave in `RX_BATCH`).
    fn handle_frame(&self, link: usize, bytes: &[u8]) {
        let f = match Frame::new_checked(bytes) {
            Ok(f) => f,
            Err(_) => {
                self.ignored.malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if !f.is_response() {
            // Another initiator's request: not for us.
            self.ignored.not_response.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let repr = match Repr::parse(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.ignored.malformed.fetch_add(1, Ordering::Relaxed);
                self.count_ignored(f.shelf(), f.slot());
                log::debug!("ignored frame from {}: {e}", f.src());
                return;
            }
        };
        let h = repr.header;
        let ctl_reply = h.tag & 0x8000_0000 != 0
            && !matches!(repr.body, Body::Ata(_) | Body::Error(wire::Command::Ata))
            && self.deliver_ctl(&h, &repr.body);
        match &repr.body {
            // Config responses count when unsolicited (announcements, tag 0)
            // or answering our discovery or a control command; others (a
            // damaged ATA reply, a stray) would rewrite the target's settings.
            Body::Config(c) if h.tag == 0 || h.tag == DISCOVER_TAG || ctl_reply => self.on_config(link, &h, c),
            Body::Config(_) => {
                self.ignored.unexpected_tag.fetch_add(1, Ordering::Relaxed);
                self.count_ignored(h.shelf, h.slot);
            }
            Body::Ata(a) => self.on_ata(link, &h, Ok(a)),
            Body::Error(wire::Command::Ata) => self.on_ata(link, &h, Err(h.error.expect("error body has an error"))),
            Body::Error(cmd) => {
                if h.tag & 0x8000_0000 != 0 {
                    self.errlog.push(format!(
                        "e{}.{}: {:?} error: {}",
                        h.shelf,
                        h.slot,
                        cmd,
                        h.error.map(|e| e.describe()).unwrap_or("?")
                    ));
                }
            }
            Body::MacMask(_) | Body::Reserve(_) => {}
        }
    }

    fn on_config(&self, link: usize, h: &Header, c: &ConfigRepr<'_>) {
        if h.shelf == wire::SHELF_ALL || h.slot == wire::SLOT_ALL || h.src.is_multicast() {
            self.ignored.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let links = self.links.read();
        let Some(Some(l)) = links.links.get(link) else {
            self.ignored.stale_link.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let dev = {
            let existing = self.devices.read().get(&(h.shelf, h.slot)).cloned();
            match existing {
                Some(d) => d,
                None => {
                    let mut w = self.devices.write();
                    w.entry((h.shelf, h.slot))
                        .or_insert_with(|| {
                            self.last_new_device.store(self.now().max(1), Ordering::Relaxed);
                            Arc::new(Device {
                                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                                shelf: h.shelf,
                                slot: h.slot,
                                inner: Mutex::new(DevInner {
                                    state: DevState::Discovered,
                                    identify: None,
                                    firmware: 0,
                                    io: TargetIo::new(h.shelf, h.slot, self.opts.maxout),
                                    identifying: false,
                                }),
                                open: AtomicU32::new(0),
                                visible: AtomicBool::new(false),
                                readonly: AtomicBool::new(false),
                                ignored: AtomicU64::new(0),
                                generation: AtomicU64::new(0),
                            })
                        })
                        .clone()
                }
            }
        };
        let now = self.now();
        let mut tx = tx_fn(&links);
        let completions = {
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
                self.start_identify(&dev, &mut g, now, &mut tx);
            }
            g.io.take_completed()
        };
        drop(tx);
        drop(links);
        run_completions(completions);
    }

    fn start_identify(&self, dev: &Arc<Device>, g: &mut DevInner, now: Micros, tx: &mut crate::engine::Tx<'_>) {
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
                    d.visible.store(true, Ordering::Release);
                }
                Err(e) => {
                    drop(g);
                    ini.errlog.push(format!("{}: IDENTIFY failed: {e}", d.name()));
                }
            }
        });
        g.io.submit_cmd(now, Op::Identify, done, tx, false);
    }

    fn on_ata(&self, link: usize, h: &Header, reply: Result<&wire::AtaRepr<'_>, wire::AoeError>) {
        if h.tag & 0x8000_0000 == 0 {
            // Not one of ours (a kernel initiator's tag).
            self.ignored.foreign_tag.fetch_add(1, Ordering::Relaxed);
            self.count_ignored(h.shelf, h.slot);
            return;
        }
        let Some(dev) = self.device(h.shelf, h.slot) else {
            self.ignored.unknown_target.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let links = self.links.read();
        if !matches!(links.links.get(link), Some(Some(_))) {
            self.ignored.stale_link.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = self.now();
        // Commands and completions wait for the link's idle (`FrameSink`).
        // (Taken out while in use, so nothing can find it borrowed.)
        let (mut out, mut done) = RX_BATCH.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let outcome = {
            let mut tx = tx_deferred(&links, &mut out);
            let mut g = dev.inner.lock();
            let o = g.io.on_reply(now, h.src, h.tag, reply, &mut tx);
            done.extend(g.io.take_completed());
            o
        };
        RX_BATCH.with(|b| {
            let mut b = b.borrow_mut();
            out.append(&mut b.0);
            done.append(&mut b.1);
            *b = (out, done);
        });
        drop(links);
        match outcome {
            ReplyOutcome::Accepted => {
                if let Err(e) = reply {
                    self.errlog.push(format!("{}: AoE error {}: {}", dev.name(), e.to_u8(), e.describe()));
                }
            }
            ReplyOutcome::Unexpected => {
                self.ignored.unexpected_tag.fetch_add(1, Ordering::Relaxed);
                self.errlog.push(format!(
                    "unexpected rsp e{}.{} tag={:08x} s={} d={}",
                    h.shelf,
                    h.slot,
                    h.tag,
                    h.src.hex12(),
                    h.dst.hex12()
                ));
            }
            ReplyOutcome::Short => {
                self.ignored.malformed.fetch_add(1, Ordering::Relaxed);
                dev.ignored.fetch_add(1, Ordering::Relaxed);
            }
            ReplyOutcome::UnknownSource => {
                self.ignored.unknown_source.fetch_add(1, Ordering::Relaxed);
                dev.ignored.fetch_add(1, Ordering::Relaxed);
                self.errlog.push(format!("e{}.{}: reply from unknown MAC {} ignored", h.shelf, h.slot, h.src.hex12()));
            }
        }
    }

    /// Submits I/O to a device; `done` runs exactly once.
    pub fn submit(&self, dev: &Arc<Device>, op: Op, lba: u64, nsect: u32, data: Vec<u8>, done: IoDone) {
        let links = self.links.read();
        let now = self.now();
        let c = with_outbox(|out| {
            let c = {
                let mut tx = tx_deferred(&links, out);
                let mut g = dev.inner.lock();
                if g.state != DevState::Up {
                    vec![(done, Err(IoError::Down))]
                } else {
                    match op {
                        Op::Read => g.io.submit_read(now, lba, nsect, done, &mut tx),
                        Op::Write => g.io.submit_write(now, lba, data, done, &mut tx),
                        Op::Flush => {
                            let ext = g.identify.as_ref().is_some_and(|i| i.flush_ext);
                            g.io.submit_cmd(now, Op::Flush, done, &mut tx, ext)
                        }
                        Op::Identify => g.io.submit_cmd(now, Op::Identify, done, &mut tx, false),
                    }
                    g.io.take_completed()
                }
            };
            flush_outbox(&links, out);
            c
        });
        drop(links);
        run_completions(c);
    }

    /// Re-queries config and re-identifies a device (`revalidate`).
    pub fn revalidate(&self, dev: &Arc<Device>) {
        dev.readonly.store(false, Ordering::Release);
        let macs: Vec<Mac> = dev.inner.lock().io.paths.iter().map(|p| p.mac).collect();
        if macs.is_empty() {
            self.query_config(dev.shelf, dev.slot, Mac::BROADCAST);
        }
        for m in macs {
            self.query_config(dev.shelf, dev.slot, m);
        }
        let links = self.links.read();
        let mut tx = tx_fn(&links);
        let now = self.now();
        let c = {
            let mut g = dev.inner.lock();
            if g.state == DevState::Up && !g.identifying {
                self.start_identify(dev, &mut g, now, &mut tx);
            }
            g.io.take_completed()
        };
        drop(tx);
        drop(links);
        run_completions(c);
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
        let mut removed = Vec::new();
        for k in &keys {
            if let Some(d) = w.remove(k) {
                removed.push(d);
            }
        }
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

    /// Retransmits, detects dead targets, rediscovers every 60 s, and once
    /// a second reopens interfaces that vanished and came back.
    pub fn tick(&self) {
        let now = self.now();
        if now.saturating_sub(self.last_link_check.load(Ordering::Relaxed)) >= 1_000_000 {
            self.last_link_check.store(now, Ordering::Relaxed);
            self.revive_links();
        }
        let last = self.last_discover.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) >= REDISCOVER_INTERVAL {
            self.discover();
        }
        for dev in self.devices() {
            let links = self.links.read();
            let mut tx = tx_fn(&links);
            let mut diags = Vec::new();
            let (dead, c) = {
                let mut g = dev.inner.lock();
                if g.state == DevState::Down || !g.io.busy() {
                    continue;
                }
                let dead = g.io.on_timer(now, self.opts.deadsecs, &mut |m| diags.push(m), &mut tx);
                if dead {
                    g.state = DevState::Down;
                    g.identifying = false;
                    g.io.fail_all(IoError::Dead);
                }
                (dead, g.io.take_completed())
            };
            drop(tx);
            drop(links);
            for m in diags {
                self.errlog.push(m);
            }
            if dead {
                self.errlog.push(format!(
                    "{}: no response for {} s, device marked down",
                    dev.name(),
                    self.opts.deadsecs
                ));
            }
            run_completions(c);
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

    fn count_ignored(&self, shelf: u16, slot: u8) {
        if let Some(d) = self.device(shelf, slot) {
            d.ignored.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands a reply to the control command waiting for its tag; true if
    /// one was.
    fn deliver_ctl(&self, h: &Header, body: &Body<'_>) -> bool {
        let reply = match body {
            Body::Config(c) => CtlReply::Config(c.config.to_vec()),
            Body::MacMask(m) => {
                CtlReply::Masks { merror: m.merror, macs: m.directives.iter().map(|d| d.mac).collect() }
            }
            Body::Reserve(r) => CtlReply::Reserve(r.macs.clone()),
            Body::Error(_) => CtlReply::Error(h.error.unwrap_or(AoeError::Other(0))),
            Body::Ata(_) => return false,
        };
        if !self.pending_ctl.lock().contains_key(&h.tag) {
            return false;
        }
        // Only a reply from one of the device's target MACs counts.
        let known =
            self.device(h.shelf, h.slot).is_some_and(|d| d.inner.lock().io.paths.iter().any(|p| p.mac == h.src));
        if !known {
            self.ignored.unknown_source.fetch_add(1, Ordering::Relaxed);
            self.count_ignored(h.shelf, h.slot);
            return false;
        }
        match self.pending_ctl.lock().remove(&h.tag) {
            Some(tx) => {
                let _ = tx.send(reply);
                true
            }
            None => false,
        }
    }

    /// Sends a control command to every target MAC of the device (reads: to
    /// the first) and waits for the answers (blocking: worker threads only).
    pub fn control(&self, dev: &Device, req: &CtlRequest) -> Result<Vec<CtlReply>, CtlFailure> {
        let mut dests: Vec<(usize, Mac)> = Vec::new();
        for p in dev.inner.lock().io.paths.iter() {
            if !dests.iter().any(|(_, m)| *m == p.mac) {
                dests.push((p.link, p.mac));
            }
        }
        let reads = matches!(req, CtlRequest::ConfigRead | CtlRequest::MaskRead | CtlRequest::ReserveRead);
        if reads {
            dests.truncate(1);
        }
        if dests.is_empty() {
            return Err(CtlFailure::NoPath);
        }
        let mut out = Vec::new();
        for (link, mac) in dests {
            out.push(self.control_one(dev, link, mac, req)?);
        }
        Ok(out)
    }

    fn control_one(&self, dev: &Device, link: usize, dst: Mac, req: &CtlRequest) -> Result<CtlReply, CtlFailure> {
        for _try in 0..3 {
            let tag = 0x8000_0000 | (self.ctl_seq.fetch_add(1, Ordering::Relaxed) & 0x7FFF_FFFF);
            let (tx, rx) = std::sync::mpsc::channel();
            self.pending_ctl.lock().insert(tag, tx);
            {
                let links = self.links.read();
                let Some(Some(l)) = links.links.get(link) else {
                    self.pending_ctl.lock().remove(&tag);
                    return Err(CtlFailure::NoPath);
                };
                let body = match req {
                    CtlRequest::ConfigRead => Body::Config(ConfigRepr {
                        buffer_count: 0,
                        firmware: 0,
                        max_sectors: 0,
                        aoe_version: 0,
                        ccmd: wire::CCMD_READ,
                        config: &[],
                    }),
                    CtlRequest::ConfigSet { value, force } => Body::Config(ConfigRepr {
                        buffer_count: 0,
                        firmware: 0,
                        max_sectors: 0,
                        aoe_version: 0,
                        ccmd: if *force { wire::CCMD_FORCE_SET } else { wire::CCMD_SET },
                        config: value,
                    }),
                    CtlRequest::MaskRead => Body::MacMask(MacMaskRepr { mcmd: 0, merror: 0, directives: Vec::new() }),
                    CtlRequest::MaskEdit(d) => Body::MacMask(MacMaskRepr { mcmd: 1, merror: 0, directives: d.clone() }),
                    CtlRequest::ReserveRead => Body::Reserve(ReserveRepr { rcmd: 0, macs: Vec::new() }),
                    CtlRequest::ReserveSet { macs, force } => {
                        Body::Reserve(ReserveRepr { rcmd: if *force { 2 } else { 1 }, macs: macs.clone() })
                    }
                };
                let repr = Repr {
                    header: Header {
                        dst,
                        src: l.mac(),
                        response: false,
                        error: None,
                        shelf: dev.shelf,
                        slot: dev.slot,
                        tag,
                    },
                    body,
                };
                let mut buf = vec![0u8; repr.buffer_len().max(60)];
                if repr.emit(&mut buf).is_err() {
                    self.pending_ctl.lock().remove(&tag);
                    return Err(CtlFailure::NoPath);
                }
                if let Err(e) = l.send(&buf) {
                    log::debug!("control send on {}: {e}", l.name());
                }
            }
            match rx.recv_timeout(Duration::from_millis(1000)) {
                Ok(r) => return Ok(r),
                Err(_) => {
                    self.pending_ctl.lock().remove(&tag);
                }
            }
        }
        Err(CtlFailure::Timeout)
    }

    /// Our MAC on each interface the device is reached through.
    pub fn local_macs(&self, dev: &Device) -> Vec<Mac> {
        let mut v: Vec<Mac> = Vec::new();
        for p in dev.inner.lock().io.paths.iter() {
            if !v.contains(&p.local_mac) {
                v.push(p.local_mac);
            }
        }
        v
    }

    /// Per-target statistics snapshot.
    pub fn stats(&self, dev: &Device) -> (Counters, Vec<Path>, u32, u32, u32, Micros, Micros) {
        let g = dev.inner.lock();
        (g.io.counters, g.io.paths.clone(), g.io.cwnd, g.io.maxwin, g.io.nout, g.io.srtt(), g.io.rttvar())
    }
}

/// A non-ATA command to a target (config string, MAC mask list, reservation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlRequest {
    ConfigRead,
    /// Set the config string; `force` overrides a different one.
    ConfigSet {
        value: Vec<u8>,
        force: bool,
    },
    MaskRead,
    MaskEdit(Vec<Directive>),
    ReserveRead,
    /// Reserve for these MACs (none: release); `force` overrides another's.
    ReserveSet {
        macs: Vec<Mac>,
        force: bool,
    },
}

/// A target's answer to a `CtlRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlReply {
    Config(Vec<u8>),
    /// MAC mask list and its error code (0 ok, 1 unspecified, 2 bad dcmd, 3 full).
    Masks {
        merror: u8,
        macs: Vec<Mac>,
    },
    Reserve(Vec<Mac>),
    Error(AoeError),
}

/// Why a control command got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlFailure {
    /// The device has no path (down, or its interfaces were removed).
    NoPath,
    /// No answer after the retries.
    Timeout,
}

/// Why `flush` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushError {
    NoSuchDevice,
    Busy,
}
