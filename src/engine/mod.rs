//! Per-target I/O engine: `TargetIo`, the state machine of one target's
//! commands. It performs no I/O and reads no clock: callers pass `now` (in
//! microseconds) and take the frames it queues (`Outbox`), so it runs the
//! same under the real clock and a simulated one. Its parts, each the owner
//! of its rules:
//!
//! - `request`: the requests, the frames (`Job`s) they are cut into, and
//!   their answers.
//! - `inflight`: tags, the table of commands in flight and their
//!   transmissions, the count of transmissions the target holds, ghosts.
//! - `paths`: the path table and its bounds, path states, round-robin, the
//!   per-path marks of fast retransmit and probes, frame sizes and caps.
//! - `frame_size`: re-planning frames to a smaller size (lost jumbo
//!   frames, a lower MTU) and what is reported of it (`Event`).
//! - `window`: the congestion window.
//! - `recovery`: presumed loss, reordering, probes, ghost lifetime.
//! - `rtt`: round-trip estimation and the RTO; `stats`: the counters.
//!
//! What stays here is what ties them together: submitting, sending
//! (`pump`, `transmit`), answers (`on_reply`), the timer (`on_timer`:
//! retransmission, dead detection, probes), and failing everything.
//!
//! The rules are told in `Documentation/design.md` ("Retransmission",
//! "Frame size", "Paths and trust"), each beside the code that keeps it.

mod frame_size;
mod inflight;
mod paths;
mod recovery;
mod request;
mod rtt;
mod stats;
mod window;

pub use crate::clock::Micros;
pub use frame_size::Event;
pub use inflight::{Outbox, Transmit, MAX_ENTRIES};
pub use paths::{
    FrameCap, Path, PathChange, PathOffer, PathState, FALLBACK_SECTORS, JUMBO_LOSSES, MAX_CANDIDATES, MAX_PATHS,
    PATH_EXPIRE,
};
pub use recovery::{GHOST_HOLD_MAX, GHOST_HOLD_MIN, MIN_PROBE_TIMEOUT, PAUSE_MAX, REORDER_MAX, REORDER_MIN};
pub use request::{Completions, IoDone, IoError, IoResult, Op};
pub use rtt::{INITIAL_RTO, MAX_BACKOFF, MIN_RTO};
pub use stats::Counters;

use crate::wire::{self, AoeError, AtaRepr, Mac, ATA_HDR_LEN, SECTOR};
use inflight::{split_tag, InFlight, Sent};
use paths::{frame_sectors, Paths};
use recovery::{Recovery, FAST_RETRANSMIT_AFTER};
use request::{write_refused, Job, ReqBuf, Requests};
use rtt::Rtt;
use std::collections::VecDeque;
use std::sync::Arc;
use window::Window;

/// A pinned command (a new path's verification IDENTIFY) is sent at most
/// this many times, then fails with `IoError::Timeout`.
pub const PINNED_TRIES: usize = 3;

/// Result of a reply being offered to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOutcome {
    Accepted,
    /// A transmission of a command already completed by another one.
    Late,
    /// Tag unknown or stale.
    Unexpected,
    /// Source MAC is not a path of this target.
    UnknownSource,
    /// Right tag and source, but less data than the command asked for.
    Short,
}

/// What a timer tick found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerOutcome {
    /// No progress for `deadsecs`: the caller declares the target down.
    pub dead: bool,
    /// Frames timed out with no sign of life from the target and no room
    /// to resend them: the caller asks the target (a unicast query config),
    /// whose answer tells that the frames were lost (`on_sign_of_life`).
    pub probe: bool,
    /// Frames retransmitted by this tick.
    pub retransmitted: u32,
}

/// Engine state of one target.
pub struct TargetIo {
    pub shelf: u16,
    pub slot: u8,
    pub lba48: bool,
    /// Sectors per ATA frame (from MTU and the target's maximum).
    sectors_per_frame: u8,
    rtt: Rtt,
    requests: Requests,
    /// Frames waiting for room in the window (or for a ghost).
    pending: VecDeque<Job>,
    flight: InFlight,
    window: Window,
    recovery: Recovery,
    paths: Paths,
    /// When the target last answered a command, and since when requests
    /// have been waiting (dead detection).
    last_progress: Micros,
    busy_since: Option<Micros>,
    pub counters: Counters,
    completed: Completions,
    events: Vec<Event>,
}

impl TargetIo {
    pub fn new(shelf: u16, slot: u8, maxout: u16) -> TargetIo {
        let mut t = TargetIo {
            shelf,
            slot,
            lba48: true,
            sectors_per_frame: 2,
            rtt: Rtt::default(),
            requests: Requests::default(),
            pending: VecDeque::new(),
            flight: InFlight::new(),
            window: Window::new(maxout),
            recovery: Recovery::new(),
            paths: Paths::new(),
            last_progress: 0,
            busy_since: None,
            counters: Counters::default(),
            completed: Vec::new(),
            events: Vec::new(),
        };
        t.set_limits(16, frame_sectors(1500, 2));
        t
    }

    /// Applies the buffer counts and frame sizes of the paths in use
    /// (failed, unverified and refused ones have no say; with none in use,
    /// nothing changes): the window is capped by min(maxout, smallest
    /// buffer count) and restarts at half of it when that changes; sectors
    /// per frame follow the smallest frame a path in use carries (its MTU,
    /// the target's maximum, its cap).
    fn recompute(&mut self) {
        if let Some((bufcnt, sectors)) = self.paths.limits() {
            self.set_limits(bufcnt, sectors);
        }
    }

    fn set_limits(&mut self, bufcnt: u16, sectors: u8) {
        self.window.set_buffer_count(bufcnt);
        self.sectors_per_frame = sectors;
    }

    /// Bytes of data per frame (the `payload` attribute).
    pub fn payload(&self) -> usize {
        self.sectors_per_frame as usize * SECTOR
    }

    /// Requests are waiting for the target (in flight or queued; pinned
    /// commands go to other MACs and do not count).
    pub fn busy(&self) -> bool {
        self.flight.nout > 0 || !self.pending.is_empty()
    }
    /// `on_timer` has work: requests, pinned commands, or ghosts to expire.
    pub fn needs_timer(&self) -> bool {
        self.busy() || self.flight.pinned > 0 || !self.flight.ghosts.is_empty()
    }

    /// When `on_timer` must run next at the latest (with `deadsecs`): the
    /// earliest timeout of a transmission, expiry of a ghost, or moment a
    /// command reaches deadsecs; None when the engine waits for nothing.
    /// While frames are in flight, answers can make a transmission lost
    /// sooner (fast retransmit, probes): the caller then runs `on_timer`
    /// every few milliseconds as well.
    pub fn poll_timeout(&self, deadsecs: u32) -> Option<Micros> {
        if !self.needs_timer() {
            return None;
        }
        let limit = deadsecs as u64 * 1_000_000;
        let dead = (deadsecs > 0).then(|| {
            let silent = self.busy_since.map(|since| since.max(self.last_progress) + limit);
            let first = self.flight.entries.iter().filter_map(|e| e.job).filter(|j| !j.pinned);
            silent.into_iter().chain(first.filter_map(|j| j.first_sent.map(|at| at + limit))).min()
        });
        let timeouts = self.flight.entries.iter().filter_map(|e| e.job.and(e.sent.last()).map(|t| t.deadline));
        let ghosts = self.flight.ghosts.iter().map(|g| g.expires);
        timeouts.chain(ghosts).chain(dead.flatten()).min()
    }

    fn ghost_hold(&self) -> Micros {
        self.recovery.ghost_hold(self.rto())
    }

    fn mark_busy(&mut self, now: Micros) {
        if self.busy_since.is_none() {
            self.busy_since = Some(now);
        }
    }

    /// Queues a read of `nsect` sectors at `lba`.
    pub fn submit_read(&mut self, now: Micros, lba: u64, nsect: u32, done: IoDone, out: &mut Outbox) {
        let (rd, _) = self.rw_cmds();
        self.submit_rw(now, Op::Read, rd, lba, ReqBuf::In(vec![0u8; nsect as usize * SECTOR]), done, out)
    }

    /// Queues a write of `data` (a whole number of sectors) at `lba`.
    pub fn submit_write(&mut self, now: Micros, lba: u64, data: Vec<u8>, done: IoDone, out: &mut Outbox) {
        debug_assert!(data.len().is_multiple_of(SECTOR));
        let (_, wr) = self.rw_cmds();
        self.submit_rw(now, Op::Write, wr, lba, ReqBuf::Out(Arc::new(data)), done, out)
    }

    fn rw_cmds(&self) -> (u8, u8) {
        if self.lba48 {
            (wire::ATA_READ_EXT, wire::ATA_WRITE_EXT)
        } else {
            (wire::ATA_READ, wire::ATA_WRITE)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn submit_rw(&mut self, now: Micros, op: Op, cmd: u8, lba: u64, buf: ReqBuf, done: IoDone, out: &mut Outbox) {
        let nsect = (buf.len() / SECTOR) as u64;
        if nsect == 0 {
            done(Ok(Vec::new()));
            return;
        }
        let spf = self.sectors_per_frame as u64;
        let frames = nsect.div_ceil(spf) as u32;
        let req = self.requests.add(op, buf, frames, done, now);
        let mut s = 0u64;
        while s < nsect {
            let count = (nsect - s).min(spf);
            self.pending.push_back(Job {
                req,
                lba: lba + s,
                count: count as u8,
                off: (s as usize * SECTOR) as u32,
                cmd,
                write: op == Op::Write,
                pinned: false,
                first_sent: None,
                tries: 0,
            });
            s += count;
        }
        self.mark_busy(now);
        self.pump(now, out);
    }

    /// Queues a one-frame ATA command without data out: IDENTIFY (512 bytes
    /// in) or FLUSH CACHE.
    pub fn submit_cmd(&mut self, now: Micros, op: Op, done: IoDone, out: &mut Outbox, flush_ext: bool) {
        let (cmd, count, len) = match op {
            Op::Identify => (wire::ATA_IDENTIFY, 1u8, SECTOR),
            Op::Flush => (if flush_ext { wire::ATA_FLUSH_EXT } else { wire::ATA_FLUSH }, 0u8, 0),
            _ => unreachable!("submit_cmd takes Identify or Flush"),
        };
        let job = self.one_frame_job(now, op, cmd, count, len, done);
        self.pending.push_back(job);
        self.mark_busy(now);
        self.pump(now, out);
    }

    /// Sends IDENTIFY on path `path_id` only (a new path's verification):
    /// at once, outside the window, at most `PINNED_TRIES` times; it fails
    /// with `IoError::Timeout` when none is answered, `IoError::Down` when
    /// the path is gone. Its answer is accepted only from that path's MAC.
    pub fn submit_pinned_identify(&mut self, now: Micros, path_id: u32, done: IoDone, out: &mut Outbox) {
        if self.paths.get(path_id).is_none() {
            self.completed.push((done, Err(IoError::Down)));
            return;
        }
        let job = Job { pinned: true, ..self.one_frame_job(now, Op::Identify, wire::ATA_IDENTIFY, 1, SECTOR, done) };
        let entry = self.flight.add(job, path_id);
        self.transmit(now, entry, out);
    }

    /// A request of one frame without data out (`len` bytes in) and its
    /// command, not pinned.
    fn one_frame_job(&mut self, now: Micros, op: Op, cmd: u8, count: u8, len: usize, done: IoDone) -> Job {
        let req = self.requests.add(op, ReqBuf::In(vec![0u8; len]), 1, done, now);
        Job { req, lba: 0, count, off: 0, cmd, write: false, pinned: false, first_sent: None, tries: 0 }
    }

    /// Sends queued frames while the window allows.
    pub fn pump(&mut self, now: Micros, out: &mut Outbox) {
        let mut i = 0;
        while self.window.open(self.flight.held) && i < self.pending.len() {
            let job = self.pending[i];
            // Frames of a request that already failed are not sent.
            if self.requests.failed(job.req) {
                self.pending.remove(i);
                self.requests.frame_done(job.req, None, &mut self.completed);
                continue;
            }
            if !self.flight.ghosts.is_empty() && self.flight.blocked(&job, self.requests.serial(job.req)) {
                i += 1;
                continue;
            }
            let Some(path) = self.paths.pick(now, job.count) else { break };
            self.pending.remove(i);
            let entry = self.flight.add(job, path);
            self.transmit(now, entry, out);
        }
    }

    /// Sends the next transmission of an occupied entry (a new tag on the
    /// entry's current path). A pinned command's transmissions are not held
    /// by the target (they go to another MAC) nor counted as its frames.
    fn transmit(&mut self, now: Micros, entry: u16, out: &mut Outbox) {
        let e = &mut self.flight.entries[entry as usize];
        let job = e.job.as_mut().expect("transmit of an empty entry");
        job.first_sent.get_or_insert(now);
        let job = *job;
        let deadline = now + self.rtt.backoff(job.tries as usize + e.sent.len());
        let path_id = e.path;
        let tag = self.flight.transmitted(entry, now, deadline);
        let Some(path) = self.paths.get_mut(path_id) else { return };
        let (aflags, lba) = match job.cmd {
            wire::ATA_IDENTIFY => (0, 0),
            wire::ATA_FLUSH => (0, 0),
            wire::ATA_FLUSH_EXT => (wire::AFLAG_EXT, 0),
            _ => wire::ata_lba_fields(self.lba48, job.lba),
        };
        let aflags = aflags | if job.write { wire::AFLAG_WRITE } else { 0 };
        let mut head = [0u8; ATA_HDR_LEN];
        wire::AtaHeader {
            dst: path.mac,
            src: path.local_mac,
            shelf: self.shelf,
            slot: self.slot,
            tag,
            aflags,
            sector_count: job.count,
            cmd: job.cmd,
            lba,
        }
        .emit(&mut head);
        path.counters.frames_sent += 1;
        self.counters.frames_sent += u64::from(!job.pinned);
        let data =
            if job.write { self.requests.data_out(job.req, job.off, job.count as u32 * SECTOR as u32) } else { None };
        let (rtt, in_flight) = (self.rtt.srtt(), self.flight.nout);
        out.push(Transmit { link: path.link, head, data, rtt, in_flight });
    }

    /// Takes the finished requests; the caller runs them after dropping the
    /// target's lock.
    pub fn take_completed(&mut self) -> Completions {
        std::mem::take(&mut self.completed)
    }

    /// Takes what happened that the initiator reports.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Ends the command in `entry` (see `InFlight::free`).
    fn free_entry(&mut self, now: Micros, entry: u16, answered: Option<u32>, replaced_by: u64) {
        let hold = self.ghost_hold();
        self.flight.free(entry, answered, replaced_by, hold, now);
        if !self.busy() {
            self.busy_since = None;
        }
    }

    /// The target answered transmission `t`: it is alive and has worked
    /// through what was sent before (presumption of loss, fast retransmit).
    fn answered(&mut self, now: Micros, t: &Sent) {
        self.recovery.answered(now, t);
        self.paths.overtaken(t.path, t.seq, FAST_RETRANSMIT_AFTER);
        self.last_progress = now;
    }

    /// The transmission with tag `tag` was not sent (the link refused it):
    /// the target does not hold it.
    pub fn not_sent(&mut self, tag: u32) {
        self.flight.not_sent(tag);
    }

    /// A config response from the target (announcement, or an answer to a
    /// query): its network is alive, so frames that timed out before now
    /// were lost (they stop counting as held). It is no progress of the
    /// I/O: deadsecs goes on counting, and the answer to a probe resends
    /// early only a command's first transmission.
    pub fn on_sign_of_life(&mut self, now: Micros, mac: Mac) {
        self.recovery.sign_of_life(now);
        if self.paths.sign_of_life(now, mac, self.recovery.probe_seq()) {
            self.recovery.probe_answered();
        }
    }

    /// Offers an ATA reply (or an AoE error reply to an ATA command).
    pub fn on_reply(
        &mut self,
        now: Micros,
        src: Mac,
        tag: u32,
        reply: Result<&AtaRepr<'_>, AoeError>,
        out: &mut Outbox,
    ) -> ReplyOutcome {
        let Some((entry, gen)) = split_tag(tag) else {
            self.counters.unexpected += 1;
            return ReplyOutcome::Unexpected;
        };
        let current = self.flight.find(entry, gen);
        // A pinned command is answered only by its path's MAC; everything
        // else only by a verified path's (never an unverified or refused one).
        let source_ok = match current {
            Some((job, _, path)) if job.pinned => self.paths.get(path).is_some_and(|p| p.mac == src),
            _ => self.paths.iter().any(|p| p.mac == src && p.state.verified()),
        };
        if !source_ok {
            return ReplyOutcome::UnknownSource;
        }
        let Some((job, sent, path)) = current else {
            return self.on_late_reply(now, entry, gen, out);
        };
        let want = job.data_in();
        if let Ok(a) = reply {
            if !a.failed() && a.data.len() < want {
                // Truncated on the way: as good as lost; the frame is
                // retransmitted on timeout.
                return ReplyOutcome::Short;
            }
        }
        if let Some(p) = self.paths.get_mut(path) {
            p.counters.frames_received += 1;
        }
        if !job.pinned {
            // Every transmission has its own tag, so the sample is
            // unambiguous. FLUSH CACHE is left out: its time is the disk's,
            // not the round trip's. (A pinned command's answer comes from
            // another MAC, maybe another host: it says nothing about the
            // target's timing, order or buffer.)
            if !job.is_flush() {
                self.rtt.sample(now.saturating_sub(sent.at));
            }
            self.answered(now, &sent);
            self.size_answered(now, sent.path, &job);
            self.counters.frames_received += 1;
            if self.paths.answered(path, now) {
                self.recompute();
            }
            self.window.on_ack();
        }
        self.free_entry(now, entry, Some(gen), 0);
        let err = match reply {
            Err(e) => Some(IoError::Aoe(e)),
            Ok(a) if a.failed() => Some(IoError::Ata { status: a.cmd_status, error: a.err_feature }),
            // A write whose error register says aborted, ID not found or
            // write protected was refused, whatever the status byte says:
            // one damaged status bit alone cannot acknowledge it. (Every
            // command goes out with a zero feature register, which a target
            // that echoes it returns; other bits, such as the 0x01 some
            // drives leave after a reset, are not looked at.)
            Ok(a) if job.write && write_refused(a.err_feature) => {
                Some(IoError::Ata { status: a.cmd_status, error: a.err_feature })
            }
            Ok(a) => {
                let (mut read, mut written) = (0u64, 0u64);
                if want > 0 {
                    // Length checked above.
                    self.requests.fill(job.req, job.off as usize, &a.data[..want]);
                    if job.cmd != wire::ATA_IDENTIFY {
                        read = want as u64;
                    }
                } else if job.write {
                    written = job.count as u64 * SECTOR as u64;
                }
                self.counters.bytes_read += read;
                self.counters.bytes_written += written;
                if let Some(p) = self.paths.get_mut(path) {
                    p.counters.bytes_read += read;
                    p.counters.bytes_written += written;
                }
                None
            }
        };
        if err.is_some() {
            self.counters.errors += u64::from(!job.pinned);
            if let Some(p) = self.paths.get_mut(path) {
                p.counters.errors += 1;
            }
        }
        if let Some((op, submitted)) = self.requests.frame_done(job.req, err, &mut self.completed) {
            self.counters.request_done(op, now.saturating_sub(submitted));
        }
        self.pump(now, out);
        ReplyOutcome::Accepted
    }

    /// A reply that matches no command in flight: a late answer to a ghost,
    /// or unexpected.
    fn on_late_reply(&mut self, now: Micros, entry: u16, gen: u32, out: &mut Outbox) -> ReplyOutcome {
        let Some((t, job, ghost)) = self.flight.late(entry, gen) else {
            self.counters.unexpected += 1;
            return ReplyOutcome::Unexpected;
        };
        self.answered(now, &t);
        self.size_answered(now, t.path, &job);
        if let Some(gi) = ghost {
            // The target is still working through this command's
            // transmissions.
            let expires = now + self.ghost_hold();
            let g = &mut self.flight.ghosts[gi];
            g.expires = g.expires.max(expires);
        }
        self.counters.late += 1;
        self.pump(now, out);
        ReplyOutcome::Late
    }

    /// Retransmits expired frames and detects a dead target (no progress
    /// for `deadsecs`; 0: never).
    pub fn on_timer(&mut self, now: Micros, deadsecs: u32, out: &mut Outbox) -> TimerOutcome {
        let mut res = TimerOutcome::default();
        if deadsecs > 0 && self.dead(now, deadsecs as u64 * 1_000_000) {
            res.dead = true;
            return res;
        }
        let recovery = &self.recovery;
        self.flight.presume_lost(now, |t| recovery.presumed_lost(t, now));
        let mut lost = false;
        let mut fast = false;
        let mut stuck = false;
        let mut path_failed = false;
        let mut replan = false;
        for i in 0..self.flight.entries.len() {
            let entry = i as u16;
            let e = &self.flight.entries[i];
            let Some(job) = e.job else { continue };
            let Some(latest) = e.sent.last().copied() else { continue };
            if job.pinned {
                self.pinned_timer(now, entry, job, &latest, out);
                continue;
            }
            // Lost before its timer: the target answered commands sent well
            // after it (its I/O works: fast retransmit), or it answered a
            // probe sent after it and either this is the command's first
            // transmission or the target has answered other commands since
            // this one was first sent (its I/O works, the frames were lost on
            // the way, as on a lossy link). A config answer alone says the
            // target's network works, not its disk: it never makes a command
            // sent after the target's last answer go out faster than its
            // backoff.
            let first = job.tries == 0 && e.sent.len() == 1;
            let by_probe = first || job.first_sent.is_some_and(|at| self.recovery.answered_after(at));
            let overtaken = latest.held
                && self
                    .paths
                    .get(latest.path)
                    .is_some_and(|p| latest.seq < p.overtaken_below || (by_probe && latest.seq < p.probed_below))
                && self.recovery.waited_reorder(&latest, now, &self.rtt);
            if now < latest.deadline && !overtaken {
                continue;
            }
            if overtaken {
                // Lost: it stops counting as held, and goes again now.
                let t = self.flight.entries[i].sent.last_mut().expect("latest");
                t.held = false;
                t.overtaken = true;
                self.flight.held -= 1;
            }
            if self.requests.failed(job.req) {
                // Its request already failed and was answered: a lost frame
                // of it is not worth retrying (nor worth declaring the
                // target dead over).
                self.free_entry(now, entry, None, 0);
                self.requests.frame_done(job.req, None, &mut self.completed);
                continue;
            }
            if self.window.full(self.flight.held) {
                // The target may still hold everything we sent: resending
                // would overflow its buffer. Ask whether it is alive.
                stuck = true;
                continue;
            }
            if job.is_big() && self.paths.big_lost(latest.path, latest.at, now) {
                // Its path falls back to small frames: this frame and the
                // other large ones are cut and sent again below.
                replan = true;
                break;
            }
            let Some(path) = self.paths.pick(now, job.count) else {
                // No path at all: keep waiting; dead detection will end it.
                continue;
            };
            let timeout = !(overtaken && now < latest.deadline);
            if timeout {
                lost = true;
                self.counters.timeouts += 1;
            } else {
                fast = true;
            }
            self.counters.retransmits += 1;
            res.retransmitted += 1;
            // A frame lost on this path, found by its timer or by the target
            // answering later frames: a strike against the path.
            path_failed |= self.paths.strike(self.flight.entries[i].path, now, timeout);
            self.flight.entries[i].path = path;
            self.transmit(now, entry, out);
        }
        if path_failed || replan {
            self.recompute();
        }
        if replan {
            self.replan(now);
        }
        let rto = self.rto();
        // Ask the target whether it is alive when frames wait and it has
        // been quiet (tail loss), or when none can be resent without
        // overflowing its buffer (`Recovery::next_probe_at`).
        let pto = Recovery::probe_timeout(&self.rtt);
        let waiting = self
            .flight
            .entries
            .iter()
            .any(|e| e.job.is_some() && e.sent.last().is_some_and(|t| t.held && now.saturating_sub(t.at) >= pto));
        if now >= self.recovery.next_probe_at(rto, pto) && (stuck || (self.recovery.quiet(now, pto) && waiting)) {
            // Everything sent before it was sent before the probe.
            self.recovery.probe_sent(self.flight.next_seq(), now);
            res.probe = true;
        }
        if lost || fast {
            // One window cut per loss event, as TCP does: to one after a
            // timeout, to half after a fast retransmit.
            self.window.on_loss(now, rto, lost);
        }
        self.pump(now, out);
        res
    }

    /// No progress for `limit` microseconds: the target answered no
    /// command for that long while requests waited, or a command has waited
    /// that long since it was first sent (the kernel driver counts each
    /// frame's own wait), whatever else the target answered meanwhile.
    fn dead(&self, now: Micros, limit: Micros) -> bool {
        let silent = self.busy_since.is_some_and(|since| now.saturating_sub(since.max(self.last_progress)) >= limit);
        silent
            || self.flight.entries.iter().filter_map(|e| e.job).any(|j| {
                !j.pinned
                    && j.first_sent.is_some_and(|at| now.saturating_sub(at) >= limit)
                    && !self.requests.failed(j.req)
            })
    }

    /// A pinned command's timer: resent on its own path when its
    /// transmission timed out, failed with `IoError::Timeout` after
    /// `PINNED_TRIES` (or at once when its path is gone).
    fn pinned_timer(&mut self, now: Micros, entry: u16, job: Job, latest: &Sent, out: &mut Outbox) {
        if now < latest.deadline {
            return;
        }
        let e = &self.flight.entries[entry as usize];
        let tries = e.sent.len();
        let Some(p) = self.paths.get_mut(e.path).filter(|_| tries < PINNED_TRIES) else {
            self.free_entry(now, entry, None, 0);
            self.requests.frame_done(job.req, Some(IoError::Timeout), &mut self.completed);
            return;
        };
        p.counters.retransmits += 1;
        p.counters.timeouts += 1;
        self.transmit(now, entry, out);
    }

    /// Fails every queued and in-flight request (target dead or flushed).
    /// Late replies to the cleared tags count as unexpected.
    pub fn fail_all(&mut self, err: IoError) {
        self.pending.clear();
        self.flight.clear();
        self.recovery.restart();
        self.paths.restart(self.flight.next_seq());
        self.recompute();
        self.busy_since = None;
        self.requests.fail_all(&err, &mut self.completed);
        self.window.restart();
    }
}

#[cfg(test)]
mod tests;
