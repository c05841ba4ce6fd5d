//! Per-target I/O engine: tags, the in-flight table, RTT/RTO estimation, the
//! congestion window, retransmission, multipath round-robin and dead
//! detection. It performs no I/O and reads no clock: callers pass `now` (in
//! microseconds) and a transmit function, so it runs the same under the real
//! clock and a simulated one.

use crate::wire::{self, AoeError, AtaRepr, Mac, ATA_HDR_LEN, SECTOR};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

pub use crate::clock::Micros;

pub const MIN_RTO: Micros = 5_000;
pub const MAX_RTO: Micros = 2_000_000;
const INITIAL_SRTT: Micros = 20_000;
const INITIAL_RTTVAR: Micros = 10_000;
/// Most paths (local interface, target MAC) per target; more config
/// responses from new MACs are ignored.
pub const MAX_PATHS: usize = 8;
/// Consecutive timeouts after which a path leaves the rotation.
const PATH_FAIL_TIMEOUTS: u32 = 3;
/// How often a failed path is re-probed with one frame.
const PATH_PROBE_INTERVAL: Micros = 1_000_000;
/// Tag layout: bit 31 set (userland initiator), 19 bits generation, 12 bits slot.
const TAG_USER: u32 = 0x8000_0000;
const SLOT_BITS: u32 = 12;
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;

/// Why an I/O failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoError {
    /// The target answered with ATA status failure.
    Ata { status: u8, error: u8 },
    /// The target answered with an AoE error.
    Aoe(AoeError),
    /// No progress for deadsecs: the target was declared down.
    Dead,
    /// The target is down (or was flushed) and takes no I/O.
    Down,
    /// A bounded wait ended before the answer (the request goes on).
    Timeout,
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::Ata { status, error } => {
                write!(f, "ATA error status=0x{status:02x} error=0x{error:02x}")
            }
            IoError::Aoe(e) => write!(f, "AoE error {}: {}", e.to_u8(), e.describe()),
            IoError::Dead => write!(f, "target timed out (deadsecs)"),
            IoError::Down => write!(f, "target is down"),
            IoError::Timeout => write!(f, "no answer in time"),
        }
    }
}

impl std::error::Error for IoError {}

pub type IoResult = Result<Vec<u8>, IoError>;
/// Called once when a request completes (never under the target's lock).
pub type IoDone = Box<dyn FnOnce(IoResult) + Send>;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Identify,
    Flush,
}

/// A request's data: filled by replies (reads, IDENTIFY) or sent (writes;
/// shared, so that frames can carry it after the target's lock is dropped).
enum ReqBuf {
    In(Vec<u8>),
    Out(Arc<Vec<u8>>),
}

struct Req {
    buf: ReqBuf,
    frames_left: u32,
    err: Option<IoError>,
    done: Option<IoDone>,
}

#[derive(Clone, Copy, Debug)]
struct Job {
    req: u32,
    lba: u64,
    count: u8,
    off: u32,
    cmd: u8,
    write: bool,
}

#[derive(Clone, Copy)]
struct Slot {
    tag: u32,
    /// Tag of the transmission before the latest retransmission: its late
    /// reply is as good as the latest one's (same command), which keeps the
    /// engine working when the RTT exceeds the RTO.
    prev_tag: u32,
    prev_sent_at: Micros,
    job: Option<Job>,
    sent_at: Micros,
    first_sent: Micros,
    path: u16,
    tries: u16,
}

/// Counters, per target and per path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames_sent: u64,
    pub frames_received: u64,
    pub retransmits: u64,
    pub timeouts: u64,
    pub unexpected: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub errors: u64,
}

/// One way to reach the target: a local interface and a target MAC.
#[derive(Debug, Clone)]
pub struct Path {
    pub link: usize,
    pub ifname: String,
    pub local_mac: Mac,
    pub mac: Mac,
    pub mtu: usize,
    /// From this target MAC's config response.
    pub buffer_count: u16,
    pub max_sectors: u8,
    pub consecutive_timeouts: u32,
    pub next_probe: Micros,
    pub counters: Counters,
}

impl ReqBuf {
    fn len(&self) -> usize {
        match self {
            ReqBuf::In(b) => b.len(),
            ReqBuf::Out(b) => b.len(),
        }
    }
}

impl Path {
    pub fn failed(&self) -> bool {
        self.consecutive_timeouts >= PATH_FAIL_TIMEOUTS
    }
}

/// A frame the engine wants sent on link `link`: the ATA header `head`
/// followed by `data` (kept apart, so write data goes out of the request's
/// buffer without being copied into a frame). The engine only queues these;
/// the caller sends them after dropping the target's lock.
pub struct Transmit {
    pub link: usize,
    pub head: [u8; ATA_HDR_LEN],
    data: Option<(Arc<Vec<u8>>, u32, u32)>,
}

impl Transmit {
    /// The data that follows the header (empty for commands without data out).
    pub fn data(&self) -> &[u8] {
        match &self.data {
            Some((b, off, len)) => &b[*off as usize..(*off + *len) as usize],
            None => &[],
        }
    }
}

/// Frames queued by the engine, in order.
pub type Outbox = Vec<Transmit>;

/// A message the engine wants on the `err` file.
pub type Diag = String;

/// Finished requests, to be run after the caller drops the target's lock.
pub type Completions = Vec<(IoDone, IoResult)>;

/// What `add_path` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathChange {
    Added,
    Updated,
    /// Already `MAX_PATHS` paths: not added.
    Full,
}

/// Result of a reply being offered to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOutcome {
    Accepted,
    /// Tag unknown or stale (late reply to a retransmitted frame).
    Unexpected,
    /// Source MAC is not a path of this target.
    UnknownSource,
    /// Right tag and source, but less data than the command asked for.
    Short,
}

/// Engine state of one target.
pub struct TargetIo {
    pub shelf: u16,
    pub slot: u8,
    pub lba48: bool,
    /// Sectors per ATA frame (from MTU and the target's maximum).
    pub sectors_per_frame: u8,
    maxout: u16,
    /// min(maxout, buffer count)
    pub maxwin: u32,
    pub cwnd: u32,
    pub ssthresh: u32,
    ack_credit: u32,
    last_loss: Micros,
    srtt: Micros,
    rttvar: Micros,
    reqs: Vec<Option<Req>>,
    free_reqs: Vec<u32>,
    pending: VecDeque<Job>,
    slots: Vec<Slot>,
    free_slots: Vec<u16>,
    gen: u32,
    pub nout: u32,
    pub paths: Vec<Path>,
    rr: usize,
    last_progress: Micros,
    busy_since: Option<Micros>,
    pub counters: Counters,
    /// Header of the frame being sent.
    frame: [u8; ATA_HDR_LEN],
    completed: Completions,
}

impl TargetIo {
    pub fn new(shelf: u16, slot: u8, maxout: u16) -> TargetIo {
        let mut t = TargetIo {
            shelf,
            slot,
            lba48: true,
            sectors_per_frame: 2,
            maxout: maxout.max(1),
            maxwin: 1,
            cwnd: 1,
            ssthresh: 1,
            ack_credit: 0,
            last_loss: 0,
            srtt: INITIAL_SRTT,
            rttvar: INITIAL_RTTVAR,
            reqs: Vec::new(),
            free_reqs: Vec::new(),
            pending: VecDeque::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            gen: 1,
            nout: 0,
            paths: Vec::new(),
            rr: 0,
            last_progress: 0,
            busy_since: None,
            counters: Counters::default(),
            frame: [0u8; ATA_HDR_LEN],
            completed: Vec::new(),
        };
        t.recompute();
        t
    }

    /// Applies the paths' buffer counts, maximum sectors and MTUs: the
    /// window is capped by min(maxout, smallest buffer count) and restarts
    /// at half of it when that changes; sectors per frame follow the
    /// smallest MTU and maximum. Taking the smallest means a path (or a
    /// forged config response) can only make aoefs more careful.
    fn recompute(&mut self) {
        let bufcnt = self.paths.iter().map(|p| p.buffer_count).min().unwrap_or(16);
        let maxwin = (bufcnt.max(1).min(self.maxout) as u32).min(MAX_SLOTS as u32);
        if maxwin != self.maxwin {
            self.maxwin = maxwin;
            self.cwnd = (maxwin / 2).max(1);
            self.ssthresh = maxwin;
            self.ack_credit = 0;
        }
        let mtu = self.paths.iter().map(|p| p.mtu).min().unwrap_or(1500);
        let max = self.paths.iter().map(|p| p.max_sectors).min().unwrap_or(2).max(1);
        let by_mtu = (mtu.saturating_sub(ATA_HDR_LEN - wire::ETH_HDR_LEN)) / SECTOR;
        let n = by_mtu.min(max as usize).clamp(1, 255);
        self.sectors_per_frame = n as u8;
    }

    /// Bytes of data per frame (the `payload` attribute).
    pub fn payload(&self) -> usize {
        self.sectors_per_frame as usize * SECTOR
    }

    /// Adds a path, or updates it from a new config response.
    #[allow(clippy::too_many_arguments)]
    pub fn add_path(
        &mut self,
        link: usize,
        ifname: &str,
        local_mac: Mac,
        mac: Mac,
        mtu: usize,
        buffer_count: u16,
        max_sectors: u8,
    ) -> PathChange {
        let change = if let Some(p) = self.paths.iter_mut().find(|p| p.link == link && p.mac == mac) {
            // A config reply proves the path works again.
            p.consecutive_timeouts = 0;
            p.mtu = mtu;
            p.ifname = ifname.to_string();
            p.buffer_count = buffer_count;
            p.max_sectors = max_sectors;
            PathChange::Updated
        } else if self.paths.len() >= MAX_PATHS {
            return PathChange::Full;
        } else {
            self.paths.push(Path {
                link,
                ifname: ifname.to_string(),
                local_mac,
                mac,
                mtu,
                buffer_count,
                max_sectors,
                consecutive_timeouts: 0,
                next_probe: 0,
                counters: Counters::default(),
            });
            PathChange::Added
        };
        self.recompute();
        change
    }

    /// Removes every path through `link` (interface no longer allowed).
    pub fn remove_link(&mut self, link: usize) {
        let old = std::mem::take(&mut self.paths);
        let mut map = Vec::with_capacity(old.len());
        for p in old {
            if p.link == link {
                map.push(None);
            } else {
                map.push(Some(self.paths.len() as u16));
                self.paths.push(p);
            }
        }
        // In-flight frames on removed paths are retransmitted elsewhere on timeout.
        for s in self.slots.iter_mut() {
            if s.job.is_some() {
                s.path = map.get(s.path as usize).copied().flatten().unwrap_or(u16::MAX);
            }
        }
        self.rr = 0;
        self.recompute();
    }

    pub fn rto(&self) -> Micros {
        (2 * self.srtt + 8 * self.rttvar).clamp(MIN_RTO, MAX_RTO)
    }
    pub fn srtt(&self) -> Micros {
        self.srtt
    }
    pub fn rttvar(&self) -> Micros {
        self.rttvar
    }
    pub fn pending_frames(&self) -> usize {
        self.pending.len()
    }
    pub fn busy(&self) -> bool {
        self.nout > 0 || !self.pending.is_empty()
    }

    fn alloc_req(&mut self, req: Req) -> u32 {
        if let Some(i) = self.free_reqs.pop() {
            self.reqs[i as usize] = Some(req);
            i
        } else {
            self.reqs.push(Some(req));
            (self.reqs.len() - 1) as u32
        }
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
        let req = self.alloc_req(Req { buf, frames_left: frames, err: None, done: Some(done) });
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
        let req = self.alloc_req(Req { buf: ReqBuf::In(vec![0u8; len]), frames_left: 1, err: None, done: Some(done) });
        self.pending.push_back(Job { req, lba: 0, count, off: 0, cmd, write: false });
        self.mark_busy(now);
        self.pump(now, out);
    }

    /// Picks the path for the next frame: round-robin over working paths; a
    /// failed path gets one probe frame per interval; if every path failed,
    /// use them all anyway.
    fn pick_path(&mut self, now: Micros) -> Option<u16> {
        let n = self.paths.len();
        if n == 0 {
            return None;
        }
        for i in 0..n {
            let idx = (self.rr + i) % n;
            let p = &mut self.paths[idx];
            let usable = if p.failed() {
                if now >= p.next_probe {
                    p.next_probe = now + PATH_PROBE_INTERVAL;
                    true
                } else {
                    false
                }
            } else {
                true
            };
            if usable {
                self.rr = (idx + 1) % n;
                return Some(idx as u16);
            }
        }
        let idx = self.rr % n;
        self.rr = (idx + 1) % n;
        Some(idx as u16)
    }

    fn new_tag(&mut self, slot: u16) -> u32 {
        self.gen = (self.gen + 1) & ((1 << (31 - SLOT_BITS)) - 1);
        if self.gen == 0 {
            self.gen = 1;
        }
        TAG_USER | (self.gen << SLOT_BITS) | slot as u32
    }

    /// Sends queued frames while the window allows.
    pub fn pump(&mut self, now: Micros, out: &mut Outbox) {
        while self.nout < self.cwnd.min(self.maxwin) {
            let Some(job) = self.pending.front().copied() else { break };
            // Frames of a request that already failed are not sent.
            if self.reqs[job.req as usize].as_ref().is_some_and(|r| r.err.is_some()) {
                self.pending.pop_front();
                self.frame_done(job.req, None);
                continue;
            }
            let Some(path) = self.pick_path(now) else { break };
            self.pending.pop_front();
            let slot = match self.free_slots.pop() {
                Some(s) => s,
                None => {
                    self.slots.push(Slot {
                        tag: 0,
                        prev_tag: 0,
                        prev_sent_at: 0,
                        job: None,
                        sent_at: 0,
                        first_sent: 0,
                        path: 0,
                        tries: 0,
                    });
                    (self.slots.len() - 1) as u16
                }
            };
            let tag = self.new_tag(slot);
            self.slots[slot as usize] = Slot {
                tag,
                prev_tag: 0,
                prev_sent_at: 0,
                job: Some(job),
                sent_at: now,
                first_sent: now,
                path,
                tries: 0,
            };
            self.nout += 1;
            self.transmit(slot, out);
        }
    }

    /// Builds and sends the frame of an occupied slot.
    fn transmit(&mut self, slot: u16, out: &mut Outbox) {
        let s = self.slots[slot as usize];
        let job = s.job.expect("transmit of an empty slot");
        let Some(path) = self.paths.get_mut(s.path as usize) else { return };
        let (aflags, lba) = match job.cmd {
            wire::ATA_IDENTIFY => (0, 0),
            wire::ATA_FLUSH => (0, 0),
            wire::ATA_FLUSH_EXT => (wire::AFLAG_EXT, 0),
            _ => wire::ata_lba_fields(self.lba48, job.lba),
        };
        let aflags = aflags | if job.write { wire::AFLAG_WRITE } else { 0 };
        let dlen = if job.write { job.count as usize * SECTOR } else { 0 };
        wire::AtaHeader {
            dst: path.mac,
            src: path.local_mac,
            shelf: self.shelf,
            slot: self.slot,
            tag: s.tag,
            aflags,
            sector_count: job.count,
            cmd: job.cmd,
            lba,
        }
        .emit(&mut self.frame[..ATA_HDR_LEN]);
        path.counters.frames_sent += 1;
        self.counters.frames_sent += 1;
        let data = match &self.reqs[job.req as usize].as_ref().expect("frame of a finished request").buf {
            ReqBuf::Out(b) if job.write => Some((b.clone(), job.off, dlen as u32)),
            _ => None,
        };
        out.push(Transmit { link: path.link, head: self.frame, data });
    }

    /// Counts one frame of `req` as finished; completes the request when it
    /// was the last.
    fn frame_done(&mut self, req: u32, err: Option<IoError>) {
        let Some(r) = self.reqs[req as usize].as_mut() else { return };
        if r.err.is_none() {
            if let Some(e) = err {
                // The first error answers the request at once; its other
                // frames still in flight finish quietly.
                if let Some(done) = r.done.take() {
                    self.completed.push((done, Err(e.clone())));
                }
                r.err = Some(e);
            }
        }
        r.frames_left -= 1;
        if r.frames_left == 0 {
            let r = self.reqs[req as usize].take().expect("request");
            self.free_reqs.push(req);
            let res = match (r.err, r.buf) {
                (Some(e), _) => Err(e),
                (None, ReqBuf::In(b)) => Ok(b),
                (None, ReqBuf::Out(_)) => Ok(Vec::new()),
            };
            if let Some(done) = r.done {
                self.completed.push((done, res));
            }
        }
    }

    /// Takes the finished requests; the caller runs them after dropping the
    /// target's lock.
    pub fn take_completed(&mut self) -> Completions {
        std::mem::take(&mut self.completed)
    }

    fn free_slot(&mut self, slot: u16) {
        self.slots[slot as usize].job = None;
        self.free_slots.push(slot);
        self.nout -= 1;
        if !self.busy() {
            self.busy_since = None;
        }
    }

    fn on_ack_window(&mut self) {
        if self.cwnd < self.ssthresh {
            self.cwnd += 1;
        } else {
            self.ack_credit += 1;
            if self.ack_credit >= self.cwnd {
                self.ack_credit = 0;
                self.cwnd += 1;
            }
        }
        self.cwnd = self.cwnd.min(self.maxwin);
    }

    fn rtt_sample(&mut self, m: Micros) {
        // Jacobson/Karels with gains 1/8 and 1/4.
        let err = m as i64 - self.srtt as i64;
        self.srtt = (self.srtt as i64 + err / 8).max(1) as Micros;
        let dev = err.unsigned_abs() as i64 - self.rttvar as i64;
        self.rttvar = (self.rttvar as i64 + dev / 4).max(0) as Micros;
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
        let slot = (tag & (MAX_SLOTS as u32 - 1)) as u16;
        let Some(s) = self.slots.get(slot as usize).copied() else {
            self.counters.unexpected += 1;
            return ReplyOutcome::Unexpected;
        };
        let latest = s.tag == tag;
        let Some(job) = s.job.filter(|_| latest || (s.prev_tag == tag && tag != 0)) else {
            self.counters.unexpected += 1;
            return ReplyOutcome::Unexpected;
        };
        let sent_at = if latest { s.sent_at } else { s.prev_sent_at };
        let path_ok = self.paths.get(s.path as usize).is_some_and(|p| p.mac == src);
        if !path_ok {
            if self.paths.iter().any(|p| p.mac == src) {
                // Known target MAC, other path (e.g. after path removal).
            } else {
                return ReplyOutcome::UnknownSource;
            }
        }
        let want = match job.cmd {
            wire::ATA_IDENTIFY => SECTOR,
            _ if !job.write => job.count as usize * SECTOR,
            _ => 0,
        };
        if let Ok(a) = reply {
            if !a.failed() && a.data.len() < want {
                // Truncated on the way: as good as lost; the frame is
                // retransmitted on timeout.
                return ReplyOutcome::Short;
            }
        }
        self.rtt_sample(now.saturating_sub(sent_at));
        self.last_progress = now;
        self.counters.frames_received += 1;
        let path_idx = s.path as usize;
        if let Some(p) = self.paths.get_mut(path_idx) {
            p.counters.frames_received += 1;
            p.consecutive_timeouts = 0;
        }
        self.free_slot(slot);
        self.on_ack_window();
        let err = match reply {
            Err(e) => Some(IoError::Aoe(e)),
            Ok(a) if a.failed() => Some(IoError::Ata { status: a.cmd_status, error: a.err_feature }),
            Ok(a) => {
                let (mut read, mut written) = (0u64, 0u64);
                if want > 0 {
                    // Length checked above.
                    if let Some(Req { buf: ReqBuf::In(b), .. }) = self.reqs[job.req as usize].as_mut() {
                        let off = job.off as usize;
                        b[off..off + want].copy_from_slice(&a.data[..want]);
                    }
                    if job.cmd != wire::ATA_IDENTIFY {
                        read = want as u64;
                    }
                } else if job.write {
                    written = job.count as u64 * SECTOR as u64;
                }
                self.counters.bytes_read += read;
                self.counters.bytes_written += written;
                if let Some(p) = self.paths.get_mut(path_idx) {
                    p.counters.bytes_read += read;
                    p.counters.bytes_written += written;
                }
                None
            }
        };
        if err.is_some() {
            self.counters.errors += 1;
            if let Some(p) = self.paths.get_mut(path_idx) {
                p.counters.errors += 1;
            }
        }
        self.frame_done(job.req, err);
        self.pump(now, out);
        ReplyOutcome::Accepted
    }

    /// Retransmits expired frames and detects a dead target. Returns true
    /// when the target has made no progress for `deadsecs` (0: never).
    pub fn on_timer(&mut self, now: Micros, deadsecs: u32, diag: &mut dyn FnMut(Diag), out: &mut Outbox) -> bool {
        if let Some(since) = self.busy_since {
            let ref_t = since.max(self.last_progress);
            if deadsecs > 0 && now.saturating_sub(ref_t) >= deadsecs as u64 * 1_000_000 {
                return true;
            }
        }
        if self.nout == 0 {
            self.pump(now, out);
            return false;
        }
        let rto = self.rto();
        let mut lost = false;
        for i in 0..self.slots.len() {
            let s = self.slots[i];
            let Some(job) = s.job else { continue };
            let backoff = rto.saturating_mul(1 << s.tries.min(8)).min(MAX_RTO);
            if now.saturating_sub(s.sent_at) < backoff {
                continue;
            }
            if self.reqs[job.req as usize].as_ref().is_none_or(|r| r.err.is_some()) {
                // Its request already failed and was answered: a lost frame
                // of it is not worth retrying (nor worth declaring the
                // target dead over).
                self.free_slot(i as u16);
                self.frame_done(job.req, None);
                continue;
            }
            lost = true;
            self.counters.timeouts += 1;
            self.counters.retransmits += 1;
            if let Some(p) = self.paths.get_mut(s.path as usize) {
                p.consecutive_timeouts += 1;
                p.counters.timeouts += 1;
                p.counters.retransmits += 1;
            }
            let old_tag = s.tag;
            let slot = i as u16;
            let Some(path) = self.pick_path(now) else {
                // No path at all: keep waiting; dead detection will end it.
                self.slots[i].sent_at = now;
                continue;
            };
            let tag = self.new_tag(slot);
            let tries = s.tries.saturating_add(1);
            self.slots[i] = Slot {
                tag,
                prev_tag: old_tag,
                prev_sent_at: s.sent_at,
                job: Some(job),
                sent_at: now,
                first_sent: s.first_sent,
                path,
                tries,
            };
            let p = &self.paths[path as usize];
            diag(format!(
                "retransmit e{}.{} oldtag={:08x} newtag={:08x} s={} d={} nout={} rto={}us",
                self.shelf,
                self.slot,
                old_tag,
                tag,
                p.local_mac.hex12(),
                p.mac.hex12(),
                self.nout,
                backoff
            ));
            self.transmit(slot, out);
        }
        if lost && now.saturating_sub(self.last_loss) >= rto {
            // One window cut per loss event, as TCP does.
            self.last_loss = now;
            self.ssthresh = (self.cwnd / 2).max(1);
            self.cwnd = 1;
            self.ack_credit = 0;
        }
        false
    }

    /// Fails every queued and in-flight request (target dead or flushed).
    /// Late replies to the cleared tags count as unexpected.
    pub fn fail_all(&mut self, err: IoError) {
        self.pending.clear();
        for s in self.slots.iter_mut() {
            s.job = None;
        }
        self.free_slots = (0..self.slots.len() as u16).rev().collect();
        self.nout = 0;
        self.busy_since = None;
        for i in 0..self.reqs.len() {
            if let Some(r) = self.reqs[i].take() {
                self.free_reqs.push(i as u32);
                if let Some(d) = r.done {
                    self.completed.push((d, Err(r.err.unwrap_or_else(|| err.clone()))));
                }
            }
        }
        self.cwnd = (self.maxwin / 2).max(1);
        self.ssthresh = self.maxwin;
    }
}

#[cfg(test)]
mod tests;
