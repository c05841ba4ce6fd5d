//! The initiator: the allowed interfaces and sending (`links`), the device
//! table's bounds (`table`), discovery (`discovery`), IDENTIFY, signs of
//! life, probes of down targets and `revalidate` (`liveness`), who may
//! become a path and new paths' verification (`trust`), frame dispatch from
//! the capture threads into the per-target engines (`rx`), the commands to
//! targets other than ATA and discovery (`commands`), and here the device
//! table, I/O submission and the timer's work (`tick`: retransmission, dead
//! detection, rediscovery). `effects` is a leaf: what a step leaves to do.
//! `demand` is another leaf: the application's requests in progress, which
//! adaptive busy-polling goes by (`links` passes them to the links).
//! No file imports another in a circle: each uses this module's
//! `Initiator`; besides, `discovery` uses `trust`, `links` uses `rx`, and
//! `discovery`, `rx` and `trust` use `effects`.
//!
//! Every change of a device's engine is one step (`step`, or on a capture
//! thread its halves `collect` and `apply`): lock the device, call the
//! engine, report its events and take its completions; then, with the lock
//! dropped, send the frames and queries and run the completions.
//!
//! Locks, in the order they may be taken (never the other way):
//! `link_config` (reconfiguring interfaces; no I/O thread takes it) →
//! `devices` → `Device::inner` → leaf locks (`pending_commands`,
//! `config_retries`, `new_targets`, `timer_list`, the `err` queue and its
//! bound on messages, never held together). The link table is an immutable
//! snapshot behind a lock held only to clone or replace it. No frame is sent,
//! no interface opened and no completion runs while `devices`,
//! `Device::inner` or a leaf lock is held; only `link_config` may be
//! (interfaces are opened under it, a reopened interface rediscovers, and
//! `shutdown` fails the I/O).

mod commands;
mod demand;
mod discovery;
mod effects;
mod links;
mod liveness;
mod rx;
mod table;
mod trust;

pub use commands::{CommandReply, TargetCommand};
pub use demand::{Demand, Ticket, OVERLAP_MEMORY};
pub use links::LinkError;
pub use table::{Forget, MAX_DEVICES, MAX_UNIDENTIFIED};
pub use trust::{parse_macs, MacListError};

use crate::clock::{Clock, Micros, RateLimit};
use crate::device::{DevInner, DevState, Device};
use crate::engine::{IoDone, IoError, Op, PathState, TimerOutcome};
use crate::errlog::ErrLog;
use crate::link::LinkProvider;
use crate::wire::Mac;
use effects::{run_completions, with_effects, Effects};
use links::LinkTable;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// Bit 30 marks the tags of the initiator's commands other than ATA (query
/// config, MAC mask list, reserve); the engine's ATA tags have it clear.
/// Bit 31 is left to the userland tools (`wire::TAG_USER_TOOLS`), as the
/// kernel driver leaves it.
pub const NON_ATA_TAG: u32 = 1 << 30;

/// Tag of our query-config broadcasts and probes.
pub const DISCOVER_TAG: u32 = NON_ATA_TAG;

/// The driver's rediscovery interval.
pub const REDISCOVER_INTERVAL: Micros = 60_000_000;

/// How often the timer looks at every device while one needs it (IDENTIFY
/// retries, probes of down targets, new paths' verifications); with none,
/// once a second (`REPORT_INTERVAL`).
pub const SWEEP_INTERVAL: Micros = 100_000;

/// Interfaces are looked at (MTUs, vanished ones), `err` reports go out,
/// old paths leave, and every device is looked at, this often.
pub const REPORT_INTERVAL: Micros = 1_000_000;

/// While a target has requests in flight, its timer runs this often (an
/// answer can make a transmission lost before its timeout: fast
/// retransmit, tail-loss probes).
pub const BUSY_TICK: Micros = 5_000;

/// ... and for this long after its last answer: requests that come one at
/// a time (QD1) find the timer ticking already, and wake no thread.
pub const BUSY_LINGER: Micros = 200_000;

/// Wakes the timer thread before its next deadline: new work for an
/// engine, or the timer stopping. It knows when the timer will tick next
/// at the latest, so new work that can wait until then wakes no thread.
pub struct TimerWake {
    woken: Mutex<bool>,
    cv: parking_lot::Condvar,
    /// The latest the timer will tick next (initiator clock): `Micros::MAX`
    /// while it is ticking (it may have taken its list already) or before
    /// its first sleep.
    until: AtomicU64,
    /// How many times new work woke the timer (`wakes`).
    wakes: AtomicU64,
}

impl Default for TimerWake {
    fn default() -> Self {
        TimerWake {
            woken: Mutex::new(false),
            cv: parking_lot::Condvar::new(),
            until: AtomicU64::new(Micros::MAX),
            wakes: AtomicU64::new(0),
        }
    }
}

impl TimerWake {
    /// Wakes the timer thread now.
    pub fn wake(&self) {
        *self.woken.lock() = true;
        self.cv.notify_one();
    }

    /// Wakes the timer thread unless it will tick by `at` anyway.
    pub fn wake_before(&self, at: Micros) {
        if self.until.load(Ordering::SeqCst) > at {
            self.wakes.fetch_add(1, Ordering::Relaxed);
            self.wake();
        }
    }

    /// How many times new work has woken the timer.
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    /// The timer begins a tick: until it sleeps again, new work wakes it
    /// (its next wait then returns at once).
    pub fn ticking(&self) {
        self.until.store(Micros::MAX, Ordering::SeqCst);
    }

    /// Sleeps for `d`, until `at` on the initiator's clock, unless woken
    /// first (or already woken since the last wait).
    pub fn wait(&self, at: Micros, d: std::time::Duration) {
        let mut w = self.woken.lock();
        self.until.store(at, Ordering::SeqCst);
        if !*w {
            self.cv.wait_for(&mut w, d);
        }
        *w = false;
    }
}

/// IDENTIFY, config queries and new paths' verifications that failed are
/// retried after this, doubled per failure in a row...
const RETRY_FIRST: Micros = 250_000;
/// ... up to this, so a target that was busy when it started appears within
/// about this long of being ready.
const RETRY_MAX: Micros = 2_000_000;

/// The wait before the next try after `failures` failures in a row.
fn retry_delay(failures: u32) -> Micros {
    RETRY_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(RETRY_MAX)
}

/// Why the initiator did not do what a control file or an attribute asked
/// of a device: forget it (`forget_devices`) or send it a `TargetCommand`
/// (`command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// No such device, or (a command) no verified path to it.
    #[error("no such device")]
    NoSuchDevice,
    /// The device is open (it is not forgotten).
    #[error("device is open")]
    Busy,
    /// No answer from the target after the retries.
    #[error("no answer from the target")]
    Timeout,
}

/// What the timer's look at one device found.
struct DeviceTick {
    /// On the timer's list: when to look at it again.
    next: Option<Micros>,
    /// It needs the next sweep soon (see `SWEEP_INTERVAL`).
    wants_sweep: bool,
}

/// Initiator parameters (the driver's module parameters, and `--macs`).
#[derive(Debug, Clone)]
pub struct Options {
    pub deadsecs: u32,
    pub maxout: u16,
    /// The only target MACs that may become paths (`--macs`); empty: any.
    /// When set, discovery asks these MACs (unicast) instead of
    /// broadcasting.
    pub macs: Vec<Mac>,
}

impl Default for Options {
    fn default() -> Self {
        Options { deadsecs: 180, maxout: 128, macs: Vec::new() }
    }
}

/// Ignored-frame counters (hostile or broken input).
#[derive(Debug, Default)]
pub struct Ignored {
    pub malformed: AtomicU64,
    pub not_response: AtomicU64,
    pub unknown_target: AtomicU64,
    pub unknown_source: AtomicU64,
    /// Replies with a tag we did not send: config responses to another
    /// initiator's queries, an error reply to one.
    pub unexpected_tag: AtomicU64,
    /// Replies in the userland tools' tag space (bit 31: aoeping, aoecfg),
    /// ignored as the kernel driver ignores them.
    pub foreign_tag: AtomicU64,
    pub stale_link: AtomicU64,
    /// Config responses from a MAC not in `--macs`.
    pub untrusted_mac: AtomicU64,
    /// Config responses of new targets not added (device table full, or new
    /// targets coming faster than `table::NEW_TARGET_RATE`).
    pub dropped_target: AtomicU64,
}

/// The AoE initiator.
pub struct Initiator {
    provider: Arc<dyn LinkProvider>,
    /// The open links: replaced as a whole (copy on write) under
    /// `link_config`, read by cloning the `Arc`.
    links: RwLock<Arc<LinkTable>>,
    /// Serializes changes to the link table (interfaces written, vanished
    /// interfaces reopened, shutdown). I/O threads never take it.
    link_config: Mutex<()>,
    next_link: AtomicUsize,
    devices: RwLock<HashMap<(u16, u8), Arc<Device>>>,
    next_id: AtomicU32,
    pub opts: Options,
    pub clock: Arc<dyn Clock>,
    pub errlog: ErrLog,
    pub ignored: Ignored,
    last_discover: AtomicU64,
    last_new_device: AtomicU64,
    last_link_check: AtomicU64,
    last_report: AtomicU64,
    last_sweep: AtomicU64,
    /// A discovery is due then (0: none): new targets were turned away.
    discover_at: AtomicU64,
    /// Admits new targets at a bounded rate.
    new_targets: Mutex<RateLimit>,
    /// The devices the timer looks at every tick (`wake_timer`).
    timer_list: Mutex<Vec<Arc<Device>>>,
    /// Some device needs a sweep every `SWEEP_INTERVAL` (see
    /// `Initiator::tick`).
    sweep_wanted: AtomicBool,
    /// The timer thread's wake-up.
    pub timer_wake: Arc<TimerWake>,
    /// The application's requests in progress (the filesystem counts
    /// them): with the targets' commands in flight, what adaptive
    /// busy-polling goes by (`Link::expect_reply`).
    pub demand: Arc<Demand>,
    pending_commands: Mutex<HashMap<u32, std::sync::mpsc::Sender<CommandReply>>>,
    config_retries: Mutex<HashMap<(u16, u8, Mac), discovery::ConfigRetry>>,
    command_seq: AtomicU32,
    me: Weak<Initiator>,
}

impl Initiator {
    /// Creates the initiator and opens the interfaces (`names` empty: the
    /// provider's defaults).
    pub fn new(
        provider: Arc<dyn LinkProvider>,
        clock: Arc<dyn Clock>,
        opts: Options,
        names: &[String],
    ) -> Result<Arc<Initiator>, LinkError> {
        let ini = Arc::new_cyclic(|me| Initiator {
            provider,
            links: RwLock::new(Arc::new(LinkTable::default())),
            link_config: Mutex::new(()),
            next_link: AtomicUsize::new(0),
            devices: RwLock::new(HashMap::new()),
            next_id: AtomicU32::new(1),
            opts,
            clock,
            errlog: ErrLog::default(),
            ignored: Ignored::default(),
            last_discover: AtomicU64::new(0),
            last_new_device: AtomicU64::new(0),
            last_link_check: AtomicU64::new(0),
            last_report: AtomicU64::new(0),
            last_sweep: AtomicU64::new(0),
            discover_at: AtomicU64::new(0),
            new_targets: Mutex::new(RateLimit::new(table::NEW_TARGET_BURST, table::NEW_TARGET_RATE)),
            timer_list: Mutex::new(Vec::new()),
            sweep_wanted: AtomicBool::new(true),
            timer_wake: Arc::default(),
            demand: Arc::default(),
            pending_commands: Mutex::new(HashMap::new()),
            config_retries: Mutex::new(HashMap::new()),
            command_seq: AtomicU32::new(1),
            me: me.clone(),
        });
        ini.set_interfaces(names)?;
        Ok(ini)
    }

    pub fn now(&self) -> Micros {
        self.clock.now()
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

    /// One step on a device, the sequence every change of a device's engine
    /// follows: under the device's lock `step` calls the engine (queueing
    /// frames and queries in the `Effects` it is given), then the engine's
    /// events go to `err` and its finished requests are taken; with the lock
    /// dropped the frames are sent, then the queries, then `then` runs with
    /// what `step` returned, and the completions run last. No frame is sent
    /// and no completion runs under the lock.
    fn step_then<R, T>(
        &self,
        dev: &Device,
        step: impl FnOnce(&mut DevInner, &mut Effects) -> R,
        then: impl FnOnce(R) -> T,
    ) -> T {
        with_effects(|fx| {
            let r = self.collect(dev, fx, step);
            self.apply_then(fx, || then(r))
        })
    }

    /// `step_then` with nothing to do between the sends and the completions.
    fn step<R>(&self, dev: &Device, step: impl FnOnce(&mut DevInner, &mut Effects) -> R) -> R {
        self.step_then(dev, step, |r| r)
    }

    /// The locked half of a step: runs `step` under the device's lock and
    /// adds what it left to do to `fx` (the engine's events reported, its
    /// finished requests taken). A capture thread collects a burst of
    /// frames this way and carries out the batch at its end (`apply`).
    fn collect<R>(&self, dev: &Device, fx: &mut Effects, step: impl FnOnce(&mut DevInner, &mut Effects) -> R) -> R {
        let mut g = dev.inner.lock();
        let r = step(&mut g, fx);
        self.report_events(dev, &mut g);
        fx.done.extend(g.io.take_completed());
        r
    }

    /// Carries out collected effects with no lock held: the frames, the
    /// queries, then the completions.
    fn apply(&self, fx: &mut Effects) {
        self.apply_then(fx, || ())
    }

    /// `apply`, with `then` run between the queries and the completions.
    fn apply_then<T>(&self, fx: &mut Effects, then: impl FnOnce() -> T) -> T {
        self.send(&mut fx.out);
        self.send_queries(&mut fx.queries);
        let t = then();
        run_completions(fx.done.drain(..));
        t
    }

    /// Submits I/O to a device; `done` runs exactly once (never under a lock).
    pub fn submit(&self, dev: &Arc<Device>, op: Op, lba: u64, nsect: u32, data: Vec<u8>, done: IoDone) {
        let now = self.now();
        self.step(dev, |g, fx| {
            if g.state != DevState::Up {
                fx.done.push((done, Err(IoError::Down)));
                return;
            }
            self.wake_timer(dev, g);
            let out = &mut fx.out;
            match op {
                Op::Read => g.io.submit_read(now, lba, nsect, done, out),
                Op::Write => g.io.submit_write(now, lba, data, done, out),
                Op::Flush => {
                    let ext = g.identify.as_ref().is_some_and(|i| i.flush_ext);
                    g.io.submit_cmd(now, Op::Flush, done, out, ext)
                }
                Op::Identify => g.io.submit_cmd(now, Op::Identify, done, out, false),
            }
        });
    }

    /// Retransmits, detects dead targets, rediscovers every 60 s, and once
    /// a second reopens interfaces that vanished and came back. It looks at
    /// the devices with work for their engine (every `BUSY_TICK` while they
    /// have requests in flight, else at their engine's next deadline), at
    /// every device each `SWEEP_INTERVAL` while one needs it (IDENTIFY
    /// retries, probes of down targets, new paths' verifications, the
    /// engines of targets not up) and once a second in any case (old paths
    /// leaving, the `err` reports). So an idle SAN of a thousand targets
    /// wakes the timer about once a second. Returns when it must run next.
    pub fn tick(&self) -> Micros {
        let now = self.now();
        let last_check = self.last_link_check.load(Ordering::Relaxed);
        if now.saturating_sub(last_check) >= REPORT_INTERVAL {
            self.last_link_check.store(now, Ordering::Relaxed);
            // MTUs first: `revive_links` then reopens a link whose MTU grew
            // past what its capture takes.
            self.follow_mtus();
            self.revive_links();
        }
        let last = self.last_discover.load(Ordering::Relaxed);
        let soon = self.discover_at.load(Ordering::Relaxed);
        if (last != 0 && now.saturating_sub(last) >= REDISCOVER_INTERVAL) || (soon != 0 && now >= soon) {
            self.discover_at.store(0, Ordering::Relaxed);
            self.discover();
        }
        // Retransmissions are summed per target and reported once a second
        // (one line per retransmission would flood `err` under loss).
        let report = now.saturating_sub(self.last_report.load(Ordering::Relaxed)) >= REPORT_INTERVAL;
        if report {
            self.last_report.store(now, Ordering::Relaxed);
            self.errlog.report_quiet();
        }
        let last_sweep = self.last_sweep.load(Ordering::Relaxed);
        let sweep_wanted = self.sweep_wanted.load(Ordering::Relaxed) || !self.config_retries.lock().is_empty();
        let sweep = report || (sweep_wanted && now.saturating_sub(last_sweep) >= SWEEP_INTERVAL);
        if sweep {
            self.last_sweep.store(now, Ordering::Relaxed);
            self.retry_config_queries(now);
        }
        // Devices not on the timer's list are looked at only on a sweep
        // (listed before the list is taken, so none is looked at twice).
        let others: Vec<Arc<Device>> = if sweep {
            self.devices.read().values().filter(|d| !d.timer_wanted()).cloned().collect()
        } else {
            Vec::new()
        };
        let listed = std::mem::take(&mut *self.timer_list.lock());
        let mut next = Micros::MAX;
        let mut wanted = false;
        for (dev, on_list) in listed.into_iter().map(|d| (d, true)).chain(others.into_iter().map(|d| (d, false))) {
            let t = self.tick_device(&dev, on_list, now, sweep, report);
            wanted |= t.wants_sweep;
            if let Some(at) = t.next {
                next = next.min(at);
                self.timer_list.lock().push(dev);
            }
        }
        // A sweep learns whether any device needs the next one; between
        // sweeps only the devices looked at can add to that.
        if sweep {
            self.sweep_wanted.store(wanted, Ordering::Relaxed);
        } else if wanted {
            self.sweep_wanted.store(true, Ordering::Relaxed);
        }
        let sweep_every = if wanted || sweep_wanted { SWEEP_INTERVAL } else { REPORT_INTERVAL };
        let mut due = [
            next,
            self.last_sweep.load(Ordering::Relaxed) + sweep_every,
            self.last_report.load(Ordering::Relaxed) + REPORT_INTERVAL,
            self.last_link_check.load(Ordering::Relaxed) + REPORT_INTERVAL,
        ]
        .into_iter()
        .min()
        .unwrap_or(now);
        if last != 0 {
            due = due.min(self.last_discover.load(Ordering::Relaxed) + REDISCOVER_INTERVAL);
        }
        let soon = self.discover_at.load(Ordering::Relaxed);
        if soon != 0 {
            due = due.min(soon);
        }
        due
    }

    /// The timer's work on one device (see `tick`). `on_list`: it was taken
    /// off the timer's list (its flag is set). It goes (back) on the list
    /// when it is up and its engine has work: then `next` is when the timer
    /// must look at it again. The flag changes under the device's lock, as
    /// `wake_timer` sets it, so a device with work is never off the list.
    fn tick_device(&self, dev: &Arc<Device>, on_list: bool, now: Micros, sweep: bool, report: bool) -> DeviceTick {
        let step = |g: &mut DevInner, fx: &mut Effects| {
            let mut probe = false;
            if sweep {
                probe = self.tend(dev, g, now, &mut fx.out);
                self.verify_paths(dev, g, now, fx);
                if report {
                    g.io.expire_paths(now);
                }
            }
            let mut t = TimerOutcome::default();
            // A down target's only commands are new paths' verifications:
            // it is not declared dead again.
            let deadsecs = if g.state == DevState::Down { 0 } else { self.opts.deadsecs };
            if g.io.needs_timer() || g.unreported_retransmits > 0 {
                t = g.io.on_timer(now, deadsecs, &mut fx.out);
            }
            t.probe |= probe;
            g.unreported_retransmits += t.retransmitted;
            if t.dead {
                g.state = DevState::Down;
                g.identifying = false;
                g.io.fail_all(IoError::Dead);
            }
            let n = if report { std::mem::take(&mut g.unreported_retransmits) } else { 0 };
            // Only a target that is up needs the timer between sweeps
            // (tail-loss probes; and for `BUSY_LINGER` after its last
            // answer, so the next request finds the timer ticking);
            // IDENTIFY and verifications of the others start at an RTO of
            // 200 ms or more.
            let last = g.io.last_progress();
            let lingering = last > 0 && now.saturating_sub(last) < BUSY_LINGER;
            let wanted = g.state == DevState::Up && (g.io.needs_timer() || lingering);
            let listed = if on_list {
                dev.set_timer_wanted(wanted);
                wanted
            } else {
                wanted && dev.claim_timer()
            };
            let next = listed.then(|| {
                let at = g.io.poll_timeout(deadsecs).unwrap_or(now + REPORT_INTERVAL);
                if g.io.busy() || lingering {
                    at.min(now + BUSY_TICK)
                } else {
                    at
                }
            });
            let wants_sweep = g.state != DevState::Up
                || g.identify_retry_at.is_some()
                || g.io.paths().iter().any(|p| p.state == PathState::Unverified);
            (t, n, DeviceTick { next, wants_sweep })
        };
        // After the frames and queries went out, before the completions.
        let then = |(t, unreported, tick): (TimerOutcome, u32, DeviceTick)| {
            if t.probe {
                self.probe(dev);
            }
            let known = dev.visible();
            if unreported > 0 {
                self.errlog.push_about(
                    known,
                    self.now(),
                    format!("{}: {unreported} retransmits in the last second", dev.name()),
                );
            }
            if t.dead && !known {
                // Never identified: nothing to keep it for (a config response
                // brings it back).
                self.forget(dev);
                self.errlog.push_about(
                    false,
                    self.now(),
                    format!("{}: no answer to IDENTIFY for {} s, forgotten", dev.name(), self.opts.deadsecs),
                );
            } else if t.dead {
                self.errlog.push(format!(
                    "{}: no response for {} s, device marked down",
                    dev.name(),
                    self.opts.deadsecs
                ));
            }
            tick
        };
        self.step_then(dev, step, then)
    }

    /// Writes what the device's engine reported (a path falling back to
    /// smaller frames) to `err`; called under the device's lock.
    pub(super) fn report_events(&self, dev: &Device, g: &mut crate::device::DevInner) {
        for e in g.io.take_events() {
            self.errlog.push(format!("{}: {e}", dev.name()));
        }
    }

    /// Puts `dev` on the timer's list (it has work for its engine) and
    /// makes sure the timer looks at it within `BUSY_TICK` (the cadence of
    /// a target with requests in flight): it wakes the timer only when
    /// the timer would sleep longer (an idle mount; a device on the list
    /// already whose engine was idle, with only ghosts or pinned commands
    /// to time). A target that is kept busy wakes no thread per request.
    /// Called under the device's lock, before the work is queued.
    pub(super) fn wake_timer(&self, dev: &Arc<Device>, g: &DevInner) {
        let claimed = dev.claim_timer();
        if claimed {
            self.timer_list.lock().push(dev.clone());
        }
        if claimed || !g.io.busy() {
            self.timer_wake.wake_before(self.now() + BUSY_TICK);
        }
    }
}
