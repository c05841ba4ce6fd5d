//! One AoE target, `e{shelf}.{slot}`, as the initiator knows it: its state,
//! what IDENTIFY said, its engine, and a snapshot of all that for the status
//! files. Only the initiator locks `Device::inner`; everything above it reads
//! through the methods here.

use crate::clock::Micros;
use crate::engine::{Counters, PathState, TargetIo};
use crate::wire::{Identify, Mac};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Device state as the `state` attribute shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevState {
    /// Answered query config; IDENTIFY not yet done.
    Discovered,
    Up,
    Down,
}

/// How far a new path's verification got (the initiator's trust rules,
/// `initiator::trust`, keep it here, by path id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verification {
    /// When the unicast query config and the pinned IDENTIFY went out.
    pub started: Option<Micros>,
    /// Unicast config queries sent, and when the next one is due.
    pub queries: u32,
    pub next_query: Micros,
    /// The MAC answered a query config.
    pub config_answered: bool,
    /// Its IDENTIFY matched the target's.
    pub identify_matched: bool,
    /// IDENTIFY answered with an AoE error (or cut short by a flush) this
    /// many times; not tried again before `not_before`.
    pub failures: u32,
    pub not_before: Micros,
}

/// What is known of one target and its engine (under `Device::inner`).
pub(crate) struct DevInner {
    pub(crate) state: DevState,
    pub(crate) identify: Option<Identify>,
    /// The IDENTIFY block as the target sent it (512 bytes).
    pub(crate) identify_raw: Option<Arc<[u8]>>,
    pub(crate) firmware: u16,
    pub(crate) io: TargetIo,
    pub(crate) identifying: bool,
    /// Retransmissions not yet reported on `err` (a summary per second).
    pub(crate) unreported_retransmits: u32,
    /// IDENTIFY failures in a row, and when to try again.
    pub(crate) identify_failures: u32,
    pub(crate) identify_retry_at: Option<Micros>,
    /// When a down target is next asked whether it is back.
    pub(crate) next_probe: Micros,
    /// The config string from the target's latest config response on a
    /// verified path: a new path must report the same.
    pub(crate) config: Vec<u8>,
    /// The verifications of the unverified paths, by path id.
    pub(crate) verifications: HashMap<u32, Verification>,
    /// New paths refused so far, and when the next verification may start.
    pub(crate) refused_paths: u64,
    pub(crate) next_verify: Micros,
}

/// One AoE target, `e{shelf}.{slot}`.
pub struct Device {
    /// Unique for the life of the mount (never reused, also after flush).
    pub id: u32,
    pub shelf: u16,
    pub slot: u8,
    pub(crate) inner: Mutex<DevInner>,
    /// On the timer's list: it looks at this device every tick, at the
    /// others only on its slower sweep. Set (under `inner`) by whoever
    /// queues work for the engine, cleared by the timer.
    timer: AtomicBool,
    open: AtomicU32,
    /// Set once IDENTIFY succeeded: from then on the device is listed.
    visible: AtomicBool,
    /// The target refused a write with ABRT (vblade -r): shown 0444, writes EROFS.
    pub readonly: AtomicBool,
    /// Frames for this shelf.slot that were not applied: malformed, from a
    /// MAC that is not one of the target's.
    pub ignored: AtomicU64,
    /// Bumped whenever the size may have changed (revalidate).
    pub generation: AtomicU64,
    /// When the initiator found the target (on its clock): its counters
    /// count from here.
    pub created: Micros,
}

/// One path of a device as the status files show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub ifname: String,
    pub local_mac: Mac,
    pub mac: Mac,
    pub state: PathState,
    pub counters: Counters,
}

/// A consistent copy of what the status files show of a device.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: DevState,
    pub open_count: u32,
    pub identify: Option<Identify>,
    /// The IDENTIFY block as the target sent it (512 bytes).
    pub identify_raw: Option<Arc<[u8]>>,
    pub firmware: u16,
    /// Bytes of data per frame.
    pub payload: usize,
    pub paths: Vec<PathInfo>,
    pub counters: Counters,
    pub cwnd: u32,
    pub max_window: u32,
    pub outstanding: u32,
    /// Transmissions the target may still hold (not answered, not presumed lost).
    pub held: u32,
    /// Frames waiting for room in the window (or for a ghost to clear).
    pub queued: usize,
    /// Completed commands with transmissions still unanswered.
    pub ghosts: usize,
    pub rto: Micros,
    pub srtt: Micros,
    pub rttvar: Micros,
    pub ignored: u64,
    /// `Device::created`.
    pub created: Micros,
    /// New paths refused so far (their verification failed).
    pub refused_paths: u64,
}

impl Snapshot {
    /// The `state` attribute, as the driver words it.
    pub fn state_string(&self) -> &'static str {
        match self.state {
            DevState::Up => "up",
            DevState::Discovered => "down",
            DevState::Down if self.open_count > 0 => "down,closewait",
            DevState::Down => "down",
        }
    }
}

impl Device {
    pub(crate) fn new(id: u32, shelf: u16, slot: u8, maxout: u16, now: Micros) -> Device {
        Device {
            id,
            shelf,
            slot,
            inner: Mutex::new(DevInner {
                state: DevState::Discovered,
                identify: None,
                identify_raw: None,
                firmware: 0,
                io: TargetIo::new(shelf, slot, maxout),
                identifying: false,
                unreported_retransmits: 0,
                identify_failures: 0,
                identify_retry_at: None,
                next_probe: 0,
                config: Vec::new(),
                verifications: HashMap::new(),
                refused_paths: 0,
                next_verify: 0,
            }),
            timer: AtomicBool::new(false),
            open: AtomicU32::new(0),
            visible: AtomicBool::new(false),
            readonly: AtomicBool::new(false),
            ignored: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            created: now,
        }
    }

    pub fn name(&self) -> String {
        format!("e{}.{}", self.shelf, self.slot)
    }
    pub fn visible(&self) -> bool {
        self.visible.load(Ordering::Acquire)
    }
    pub(crate) fn set_visible(&self) {
        self.visible.store(true, Ordering::Release);
    }
    /// Sets the flag that says the device is on the timer's list; true if
    /// it was not set (the caller puts it on the list).
    pub(crate) fn claim_timer(&self) -> bool {
        !self.timer.swap(true, Ordering::AcqRel)
    }
    pub(crate) fn timer_wanted(&self) -> bool {
        self.timer.load(Ordering::Acquire)
    }
    pub(crate) fn set_timer_wanted(&self, wanted: bool) {
        self.timer.store(wanted, Ordering::Release);
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
    pub fn is_readonly(&self) -> bool {
        self.readonly.load(Ordering::Acquire)
    }
    /// Size in 512-byte sectors (0 before IDENTIFY).
    pub fn sectors(&self) -> u64 {
        self.inner.lock().identify.as_ref().map(|i| i.sectors).unwrap_or(0)
    }
    pub fn state(&self) -> DevState {
        self.inner.lock().state
    }
    pub fn is_up(&self) -> bool {
        self.state() == DevState::Up
    }
    /// Bytes of data per frame (the `payload` attribute).
    pub fn payload(&self) -> usize {
        self.inner.lock().io.payload()
    }
    /// Whether the target takes FLUSH CACHE (or FLUSH CACHE EXT), per IDENTIFY.
    pub fn can_flush(&self) -> bool {
        self.inner.lock().identify.as_ref().is_some_and(|i| i.flush || i.flush_ext)
    }

    /// Everything the status files show, read under one lock.
    pub fn snapshot(&self) -> Snapshot {
        let open_count = self.open_count();
        let g = self.inner.lock();
        Snapshot {
            state: g.state,
            open_count,
            identify: g.identify.clone(),
            identify_raw: g.identify_raw.clone(),
            firmware: g.firmware,
            payload: g.io.payload(),
            paths: g
                .io
                .paths()
                .iter()
                .map(|p| PathInfo {
                    ifname: p.ifname.clone(),
                    local_mac: p.local_mac,
                    mac: p.mac,
                    state: p.state,
                    counters: p.counters,
                })
                .collect(),
            counters: g.io.counters,
            cwnd: g.io.window(),
            max_window: g.io.max_window(),
            outstanding: g.io.outstanding(),
            held: g.io.held(),
            queued: g.io.pending_frames(),
            ghosts: g.io.ghosts(),
            rto: g.io.rto(),
            srtt: g.io.srtt(),
            rttvar: g.io.rttvar(),
            ignored: self.ignored.load(Ordering::Relaxed),
            created: self.created,
            refused_paths: g.refused_paths,
        }
    }
}
