//! Per-target I/O engine: tags, the in-flight table, RTT/RTO estimation, the
//! congestion window, retransmission, write ordering, multipath round-robin
//! and dead detection. It performs no I/O and reads no clock: callers pass
//! `now` (in microseconds) and take the frames it queues (`Outbox`), so it
//! runs the same under the real clock and a simulated one.
//!
//! Retransmission rules (see `Documentation/design.md`, "Retransmission"):
//! - Every transmission of a command gets its own tag, and a reply to any
//!   transmission of a command still pending completes it, so a command the
//!   target takes seconds to execute completes however often it was resent.
//! - A transmission's timer is the RTO doubled once per earlier
//!   transmission of the same command (`rtt::Rtt::backoff`).
//! - Every transmission not answered counts as held by the target until it
//!   is *presumed lost*: it timed out and the target has since answered
//!   something sent after it (or a config query), or it has waited
//!   `PAUSE_MAX`. New frames and retransmissions are sent only while the
//!   transmissions held stay below the window and the target's buffer count,
//!   so a target that pauses is never sent more than it can buffer.
//! - When a command completes while other transmissions of it are still
//!   unanswered, those become a *ghost* of the command. A write overlapping a
//!   write ghost waits until the ghost's transmissions are all answered or
//!   the ghost expires (`TargetIo::ghost_hold`), so a target that executes a
//!   held original late cannot put older data over an acknowledged newer
//!   write.
//!
//! Paths (see `Documentation/design.md`, "Paths and trust"): each has a
//! `PathState`. Only paths *in use* (and *failed* ones, which are the
//! target's own paths that stopped answering and are probed) carry reads and
//! writes, and only their replies are applied; window, payload and buffer
//! count come from the paths in use alone. A new MAC of a known target is
//! *unverified* until the initiator has checked it: the one command sent on
//! such a path is a *pinned* IDENTIFY (`submit_pinned_identify`), which
//! stays on that path, is sent at most `PINNED_TRIES` times, and takes no
//! part in the target's window, held count, round-trip estimate, loss
//! detection or dead detection (another host's buffer and timing are not the
//! target's). The table is bounded: `MAX_PATHS` verified paths and
//! `MAX_CANDIDATES` unverified or refused ones, refused and long-failed
//! paths leave it (`expire_paths`), and a verified new path takes the place
//! of the longest-failed one when it is full.

mod rtt;

pub use crate::clock::Micros;
pub use rtt::{INITIAL_RTO, MAX_BACKOFF, MIN_RTO};

use crate::wire::{self, AoeError, AtaRepr, Mac, ATA_HDR_LEN, SECTOR};
use rtt::Rtt;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

/// Most verified paths (local interface, target MAC: in use or failed) per
/// target. A verified new path takes the place of the one failed longest;
/// with none failed it waits.
pub const MAX_PATHS: usize = 8;
/// Most candidate paths (unverified or refused) per target: a new MAC
/// takes the place of the oldest refused one; with none refused it is
/// ignored.
pub const MAX_CANDIDATES: usize = 8;
/// A failed path (unless it is the target's last verified one) and a
/// refused path leave the table after this long in that state.
pub const PATH_EXPIRE: Micros = 60_000_000;
/// A refused path that had to make room is remembered (up to this many,
/// for `PATH_EXPIRE`), so its next config responses do not start another
/// verification (and another report).
const MAX_REFUSED_MACS: usize = 64;
/// Consecutive timeouts after which a path leaves the rotation.
const PATH_FAIL_TIMEOUTS: u32 = 3;
/// A pinned command (a new path's verification IDENTIFY) is sent at most
/// this many times, then fails with `IoError::Timeout`.
pub const PINNED_TRIES: usize = 3;
/// How often a failed path is re-probed with one frame.
const PATH_PROBE_INTERVAL: Micros = 1_000_000;
/// A transmission that timed out is presumed lost after this long even if
/// the target answered nothing sent after it (a pause longer than this is
/// treated as loss).
pub const PAUSE_MAX: Micros = 3_000_000;
/// A ghost lives (and a write's ghost blocks overlapping writes) at least
/// this long after its newest unanswered transmission was sent: five times
/// the RTO floor.
pub const GHOST_HOLD_MIN: Micros = 1_000_000;
/// ... and at most this long.
pub const GHOST_HOLD_MAX: Micros = 60_000_000;
/// A transmission is resent without waiting for its timer once the target
/// has answered this many transmissions sent after it (TCP's fast
/// retransmit after three duplicate acknowledgements): a target that works
/// in order has lost it.
const FAST_RETRANSMIT_AFTER: u64 = 3;
/// ... and only once it has waited the reordering window: how long a reply
/// may come after replies to later frames without being lost. It starts at
/// `REORDER_MIN` and doubles, up to `REORDER_MAX`, each time a frame resent
/// this way is answered after all (the target or the network reorders:
/// it delays a reply by tens of milliseconds, a busy CPU or a seek on one
/// disk of a shelf, while answering others); it halves again after
/// `REORDER_DECAY` without such a case. TCP's RACK works the same way.
pub const REORDER_MIN: Micros = 2_000;
pub const REORDER_MAX: Micros = 64_000;
const REORDER_DECAY: Micros = 10_000_000;
/// When the target has answered nothing for this long (and at least twice
/// the round trip) while frames are out, it is asked whether it is alive (a
/// unicast query config, TCP's tail loss probe): a target that works in
/// order answers it only after what was sent before, so if its answer comes
/// first, those frames were lost and go again at once instead of after the
/// RTO.
pub const MIN_PROBE_TIMEOUT: Micros = 10_000;
/// Frames of at most this many sectors (1024 bytes of data, the size the
/// kernel driver falls back to) are *small*: they get through any Ethernet
/// segment, jumbo or not.
pub const FALLBACK_SECTORS: u8 = 2;
/// A path falls back to `FALLBACK_SECTORS` per frame once this many larger
/// transmissions in a row were lost on it, each with nothing large answered
/// on the path since it was sent, while something small (a config
/// response, a short command) was answered there: a switch between the
/// hosts drops jumbo frames (see `Path::cap`). With many frames in flight
/// that is the first probe's answer after the first timeout; a lone
/// command needs its sixth transmission (about 12 s at the RTO floor).
/// Random loss rarely loses six in a row with nothing large answered in
/// between: at 10% loss per transmission, one in a million runs of losses.
pub const JUMBO_LOSSES: u32 = 6;
/// Whether an error register says a write was refused: ABRT, IDNF or WP
/// (0x40, UNC on reads).
fn write_refused(error: u8) -> bool {
    error & (wire::ATA_ERR_ABRT | wire::ATA_ERR_IDNF | 0x40) != 0
}
/// Tag layout: bit 31 clear (the driver's space: `wire::TAG_USER_TOOLS`),
/// bit 30 clear (the initiator's other commands: discovery, probes, control
/// commands), 18 bits generation (one counter per target, one value per
/// transmission), 12 bits slot.
const TAG_BITS: u32 = 30;
const SLOT_BITS: u32 = 12;
const GEN_MASK: u32 = (1 << (TAG_BITS - SLOT_BITS)) - 1;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
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

impl ReqBuf {
    fn len(&self) -> usize {
        match self {
            ReqBuf::In(b) => b.len(),
            ReqBuf::Out(b) => b.len(),
        }
    }
}

struct Req {
    buf: ReqBuf,
    frames_left: u32,
    err: Option<IoError>,
    done: Option<IoDone>,
    /// What it does and when it was submitted (for the request counters).
    op: Op,
    submitted: Micros,
    /// Unique for the target's life (a request's index is reused): ties a
    /// ghost left by re-planning a frame to the pieces that replace it.
    serial: u64,
}

/// One frame's command.
#[derive(Clone, Copy, Debug)]
struct Job {
    req: u32,
    lba: u64,
    count: u8,
    off: u32,
    cmd: u8,
    write: bool,
    /// Stays on its slot's path (a new path's verification): outside the
    /// window and the target's estimates, and never a ghost.
    pinned: bool,
    /// When the command was first sent (kept when it is re-planned into
    /// smaller frames): deadsecs counts from here, as the kernel driver
    /// counts each frame's whole wait.
    first_sent: Option<Micros>,
    /// Transmissions of the frame it was re-planned from: its timers go on
    /// backing off from there.
    tries: u8,
}

impl Job {
    fn overlaps(&self, other: &Job) -> bool {
        self.lba < other.lba + other.count as u64 && other.lba < self.lba + self.count as u64
    }
    fn is_flush(&self) -> bool {
        matches!(self.cmd, wire::ATA_FLUSH | wire::ATA_FLUSH_EXT)
    }
    /// Carries (or asks for) more data than a small frame.
    fn is_big(&self) -> bool {
        self.count > FALLBACK_SECTORS
    }
    /// The frame cut into frames of at most `sectors` sectors, in order.
    fn split(self, sectors: u8) -> impl Iterator<Item = Job> {
        let sectors = sectors.max(1);
        (0..self.count).step_by(sectors as usize).map(move |s| Job {
            lba: self.lba + s as u64,
            count: sectors.min(self.count - s),
            off: self.off + s as u32 * SECTOR as u32,
            ..self
        })
    }
}

/// One transmission of a command.
#[derive(Clone, Copy, Debug)]
struct Sent {
    gen: u32,
    /// `Path::id` of the path it went on.
    path: u32,
    /// Order of sending, over all the target's transmissions.
    seq: u64,
    at: Micros,
    /// When it times out (its backoff timer).
    deadline: Micros,
    /// Counted as held by the target (not answered, not presumed lost).
    held: bool,
    /// Presumed lost because later frames were answered, and resent.
    overtaken: bool,
}

/// An in-flight command and its transmissions.
#[derive(Default)]
struct Slot {
    job: Option<Job>,
    /// Transmissions of the current command, oldest first; reused (no
    /// allocation once warm).
    sent: Vec<Sent>,
    /// Path of the latest transmission.
    path: u16,
}

/// Transmissions of a completed command that were never answered.
struct Ghost {
    slot: u16,
    job: Job,
    sent: Vec<Sent>,
    expires: Micros,
    /// The serial of the request whose smaller frames replaced this one
    /// (re-planned to a smaller payload; 0: none). They carry the same
    /// bytes, so they need not wait for it; every other write does.
    replaced_by: u64,
}

/// Counters, per target and per path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames_sent: u64,
    pub frames_received: u64,
    pub retransmits: u64,
    pub timeouts: u64,
    pub unexpected: u64,
    /// Replies to a transmission of a command that another transmission had
    /// already completed.
    pub late: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub errors: u64,
    /// Read and write requests completed without error (per target only: a
    /// request's frames may take several paths), and the sum of their times
    /// from submission to completion, queueing included (iostat's await).
    pub read_requests: u64,
    pub write_requests: u64,
    pub read_wait_us: u64,
    pub write_wait_us: u64,
    /// Transmissions larger than a small frame that were lost because of
    /// their size: on a path that then fell back to small frames (a switch
    /// that drops jumbo frames), or in flight when the local interface's MTU
    /// went below them.
    pub lost_jumbo: u64,
}

impl Counters {
    /// Counts a read or write request that completed without error after
    /// `wait` microseconds.
    fn request_done(&mut self, op: Op, wait: Micros) {
        match op {
            Op::Read => {
                self.read_requests += 1;
                self.read_wait_us += wait;
            }
            Op::Write => {
                self.write_requests += 1;
                self.write_wait_us += wait;
            }
            Op::Identify | Op::Flush => {}
        }
    }
}

/// What a path may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Carries reads and writes.
    InUse,
    /// A new MAC of a known target, not checked yet: carries nothing but its
    /// verification (a pinned IDENTIFY).
    Unverified,
    /// Was in use and stopped answering: out of the rotation, probed with one
    /// frame a second, back in use when it answers.
    Failed,
    /// Failed its verification: carries nothing, its frames are ignored.
    Refused,
}

impl PathState {
    /// In use or failed: one of the target's own paths.
    pub fn verified(self) -> bool {
        matches!(self, PathState::InUse | PathState::Failed)
    }
    /// As the `paths` file shows it.
    pub fn name(self) -> &'static str {
        match self {
            PathState::InUse => "in-use",
            PathState::Unverified => "unverified",
            PathState::Failed => "failed",
            PathState::Refused => "refused",
        }
    }
}

impl fmt::Display for PathState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How far a new path's verification got (kept by the initiator).
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

/// One way to reach the target: a local interface and a target MAC.
#[derive(Debug, Clone)]
pub struct Path {
    /// Unique within the target (indices change when paths leave).
    pub id: u32,
    pub state: PathState,
    /// When it entered its state.
    pub since: Micros,
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
    /// Transmissions on this path with a lower `Sent::seq` that are not
    /// answered were lost: this target MAC answered a command sent well
    /// after them. (Per path: two paths, or two target processes behind one
    /// shelf address, answer in their own order, not in each other's.)
    overtaken_below: u64,
    /// ... or it answered a probe (a query config) sent after them: its
    /// network works, which says nothing of its disk, so this resends early
    /// only a command's first transmission, or one the target has answered
    /// other commands since (see `on_timer`).
    probed_below: u64,
    /// Held to smaller frames than its MTU allows (lost jumbo frames).
    pub cap: Option<FrameCap>,
    /// Lost-jumbo detection: large transmissions lost in a row, each with
    /// nothing large answered on the path since it was sent; when the first
    /// of them was sent; the latest answer to a large and to a small frame
    /// (or a config response of the path's MAC).
    big_losses: u32,
    big_loss_from: Micros,
    big_answered: Micros,
    small_answered: Micros,
    pub verification: Verification,
    pub counters: Counters,
}

/// A path held to smaller frames than its MTU and the target allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCap {
    /// Sectors per frame it is held to.
    pub sectors: u8,
    /// Sectors per frame its MTU and the target's maximum allowed when it
    /// fell back: a config response that allows more lifts the cap.
    pub natural: u8,
    /// A small frame was answered on the path since: its large frames were
    /// lost for their size. Until then the cap is provisional (a target
    /// that answers nothing at all looks the same at first), and a large
    /// answer, or the target going down, lifts it.
    pub confirmed: bool,
}

impl Path {
    pub fn failed(&self) -> bool {
        self.state == PathState::Failed
    }
    /// Sectors a frame on this path may carry.
    fn frame_sectors(&self) -> u8 {
        let natural = frame_sectors(self.mtu, self.max_sectors);
        self.cap.map_or(natural, |c| c.sectors.min(natural))
    }
}

/// Sectors per frame for an MTU and a target's maximum: min((MTU − 36) /
/// 512, maximum, 255), at least 1.
fn frame_sectors(mtu: usize, max_sectors: u8) -> u8 {
    let by_mtu = (mtu.saturating_sub(ATA_HDR_LEN - wire::ETH_HDR_LEN)) / SECTOR;
    by_mtu.min(max_sectors.max(1) as usize).clamp(1, 255) as u8
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

/// Finished requests, to be run after the caller drops the target's lock.
pub type Completions = Vec<(IoDone, IoResult)>;

/// What `add_path` did: the path's id and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathChange {
    Added {
        id: u32,
        state: PathState,
    },
    Updated {
        id: u32,
        state: PathState,
    },
    /// No room (see `MAX_PATHS`, `MAX_CANDIDATES`): not added.
    Full,
    /// Refused lately (and taken out of the table to make room): not added.
    Refused,
}

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

/// Something the initiator reports (on `err`), taken with `take_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Frames of `from` bytes were lost on the path through `ifname` to
    /// `mac` while small ones were answered: it carries `to`-byte frames
    /// from now on (`lost` large transmissions were lost).
    JumboFallback { ifname: String, mac: Mac, from: usize, to: usize, lost: u64 },
    /// The MTU of interface `ifname` went down to `mtu`: the payload went
    /// from `from` to `to` bytes; the frames in flight that no longer fit
    /// (`lost`) were cut to the new size and sent again.
    MtuLowered { ifname: String, mtu: usize, from: usize, to: usize, lost: u64 },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::JumboFallback { ifname, mac, from, to, lost } => write!(
                f,
                "{from}-byte frames lost on {ifname} (target MAC {}, {lost} lost), falling back to {to}",
                mac.hex12()
            ),
            Event::MtuLowered { ifname, mtu, from, to, lost } => {
                write!(f, "MTU of {ifname} is now {mtu}: {from}-byte frames no longer fit ({lost} lost), falling back to {to}")
            }
        }
    }
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
    pub sectors_per_frame: u8,
    maxout: u16,
    /// min(maxout, buffer count)
    pub maxwin: u32,
    pub cwnd: u32,
    pub ssthresh: u32,
    ack_credit: u32,
    last_loss: Micros,
    rtt: Rtt,
    reqs: Vec<Option<Req>>,
    free_reqs: Vec<u32>,
    pending: VecDeque<Job>,
    slots: Vec<Slot>,
    free_slots: Vec<u16>,
    /// Commands in flight (occupied slots), pinned ones apart.
    pub nout: u32,
    /// Pinned commands in flight.
    pinned: u32,
    /// Transmissions held by the target by our count (see the module docs):
    /// never above the window when a frame is sent.
    pub held: u32,
    ghosts: Vec<Ghost>,
    /// Latest send time of a transmission the target answered (or of a
    /// config query it answered): everything sent before it that is not
    /// answered and timed out is presumed lost.
    answered_sent_at: Micros,
    /// Longest this target took to answer a transmission.
    longest_wait: Micros,
    /// `Sent::seq` of the next transmission.
    next_seq: u64,
    /// The generation of the last tag (one counter for all slots).
    gen: u32,
    /// The probe (query config) asked for and not answered yet: its place in
    /// the sending order and when.
    probe: Option<(u64, Micros)>,
    last_answer: Micros,
    /// The reordering window (see `REORDER_MIN`), and when a frame resent
    /// by it last turned out not lost.
    reorder_window: Micros,
    last_reorder: Micros,
    pub paths: Vec<Path>,
    /// Refused paths taken out to make room: (link, MAC, refused at).
    refused_macs: VecDeque<(usize, Mac, Micros)>,
    next_path_id: u32,
    rr: usize,
    last_progress: Micros,
    busy_since: Option<Micros>,
    /// Probes sent since the target last answered an ATA command, and when
    /// the latest went: each waits twice as long as the one before, so a
    /// target whose network answers while its disk does not is asked a
    /// few times a second at first and every `MAX_BACKOFF` at most later.
    probes_unanswered: u32,
    last_probe: Micros,
    /// The serial of the last request (`Req::serial`).
    req_serial: u64,
    pub counters: Counters,
    completed: Completions,
    events: Vec<Event>,
}

fn tag_of(slot: u16, gen: u32) -> u32 {
    (gen << SLOT_BITS) | slot as u32
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
            rtt: Rtt::default(),
            reqs: Vec::new(),
            free_reqs: Vec::new(),
            pending: VecDeque::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            nout: 0,
            pinned: 0,
            held: 0,
            ghosts: Vec::new(),
            answered_sent_at: 0,
            longest_wait: 0,
            next_seq: 1,
            gen: 0,
            probe: None,
            last_answer: 0,
            reorder_window: REORDER_MIN,
            last_reorder: 0,
            paths: Vec::new(),
            refused_macs: VecDeque::new(),
            next_path_id: 1,
            rr: 0,
            last_progress: 0,
            busy_since: None,
            probes_unanswered: 0,
            last_probe: 0,
            req_serial: 0,
            counters: Counters::default(),
            completed: Vec::new(),
            events: Vec::new(),
        };
        t.set_limits(16, frame_sectors(1500, 2));
        t
    }

    /// Applies the buffer counts, maximum sectors and MTUs of the paths in
    /// use (failed, unverified and refused ones have no say; with none in
    /// use, nothing changes): the window is capped by min(maxout, smallest
    /// buffer count) and restarts at half of it when that changes; sectors
    /// per frame follow the smallest frame a path in use carries (its MTU,
    /// the target's maximum, its cap).
    fn recompute(&mut self) {
        let in_use = || self.paths.iter().filter(|p| p.state == PathState::InUse);
        let (Some(bufcnt), Some(sectors)) =
            (in_use().map(|p| p.buffer_count).min(), in_use().map(|p| p.frame_sectors()).min())
        else {
            return;
        };
        self.set_limits(bufcnt, sectors);
    }

    fn set_limits(&mut self, bufcnt: u16, sectors: u8) {
        let maxwin = (bufcnt.max(1).min(self.maxout) as u32).min(MAX_SLOTS as u32);
        if maxwin != self.maxwin {
            self.maxwin = maxwin;
            self.cwnd = (maxwin / 2).max(1);
            self.ssthresh = maxwin;
            self.ack_credit = 0;
        }
        self.sectors_per_frame = sectors;
    }

    /// Bytes of data per frame (the `payload` attribute).
    pub fn payload(&self) -> usize {
        self.sectors_per_frame as usize * SECTOR
    }

    /// Adds a path in state `state` (in use, or unverified), or updates a
    /// known one from a new config response (a failed path is in use
    /// again: the target answered on it). A full table makes room (see
    /// `MAX_PATHS`, `MAX_CANDIDATES`) or refuses the new path.
    #[allow(clippy::too_many_arguments)]
    pub fn add_path(
        &mut self,
        now: Micros,
        link: usize,
        ifname: &str,
        local_mac: Mac,
        mac: Mac,
        mtu: usize,
        buffer_count: u16,
        max_sectors: u8,
        state: PathState,
    ) -> PathChange {
        if let Some(idx) = self.paths.iter().position(|p| p.link == link && p.mac == mac) {
            let p = &mut self.paths[idx];
            // (A link keeps its interface's name: a renamed interface is a
            // new link.)
            p.mtu = mtu;
            p.buffer_count = buffer_count;
            p.max_sectors = max_sectors;
            // One that allows larger frames than when the path fell back
            // lifts its cap (the target, or the network, was changed).
            if p.cap.is_some_and(|c| frame_sectors(mtu, max_sectors) > c.natural) {
                p.cap = None;
                p.big_losses = 0;
            }
            if p.state.verified() {
                // A config reply proves the path works again.
                self.path_answered(idx, now);
                self.recompute();
            }
            let p = &self.paths[idx];
            return PathChange::Updated { id: p.id, state: p.state };
        }
        let state = if state.verified() { PathState::InUse } else { PathState::Unverified };
        if state == PathState::Unverified && self.refused_macs.iter().any(|&(l, m, _)| l == link && m == mac) {
            return PathChange::Refused;
        }
        if !self.make_room(state) {
            return PathChange::Full;
        }
        let id = self.next_path_id;
        self.next_path_id += 1;
        self.paths.push(Path {
            id,
            state,
            since: now,
            link,
            ifname: ifname.to_string(),
            local_mac,
            mac,
            mtu,
            buffer_count,
            max_sectors,
            consecutive_timeouts: 0,
            next_probe: 0,
            overtaken_below: 0,
            probed_below: 0,
            cap: None,
            big_losses: 0,
            big_loss_from: 0,
            big_answered: 0,
            small_answered: 0,
            verification: Verification::default(),
            counters: Counters::default(),
        });
        if state == PathState::InUse {
            self.recompute();
        }
        PathChange::Added { id, state }
    }

    /// Makes room for one more path in `state`'s part of the table (verified
    /// or candidate): when it is full, the path that has been failed (for a
    /// verified one) or refused (for a candidate) the longest leaves.
    /// False when there is none to take out.
    fn make_room(&mut self, state: PathState) -> bool {
        let (limit, victim_state) =
            if state.verified() { (MAX_PATHS, PathState::Failed) } else { (MAX_CANDIDATES, PathState::Refused) };
        if self.paths.iter().filter(|p| p.state.verified() == state.verified()).count() < limit {
            return true;
        }
        let victim = self.paths.iter().filter(|p| p.state == victim_state).min_by_key(|p| p.since);
        let Some(&Path { id, link, mac, since, .. }) = victim else { return false };
        if victim_state == PathState::Refused {
            if self.refused_macs.len() >= MAX_REFUSED_MACS {
                self.refused_macs.pop_front();
            }
            self.refused_macs.push_back((link, mac, since));
        }
        self.remove_paths(|p| p.id != id);
        true
    }

    /// Index of the path with id `id`.
    fn path_index(&self, id: u32) -> Option<usize> {
        self.paths.iter().position(|p| p.id == id)
    }

    pub fn path(&self, id: u32) -> Option<&Path> {
        self.paths.iter().find(|p| p.id == id)
    }

    pub fn path_mut(&mut self, id: u32) -> Option<&mut Path> {
        self.paths.iter_mut().find(|p| p.id == id)
    }

    /// An unverified path passed its verification: it is in use from now
    /// on, in place of the longest-failed path if the table is full. False
    /// (and it stays unverified) when every verified path is in use.
    pub fn promote(&mut self, id: u32, now: Micros) -> bool {
        if self.path(id).is_none_or(|p| p.state != PathState::Unverified) || !self.make_room(PathState::InUse) {
            return false;
        }
        let p = self.path_mut(id).expect("checked above");
        p.state = PathState::InUse;
        p.since = now;
        p.consecutive_timeouts = 0;
        self.recompute();
        true
    }

    /// An unverified path failed its verification: it carries nothing and
    /// leaves the table after `PATH_EXPIRE` (or when a new MAC needs room).
    pub fn refuse(&mut self, id: u32, now: Micros) {
        if let Some(p) = self.path_mut(id) {
            if p.state == PathState::Unverified {
                p.state = PathState::Refused;
                p.since = now;
            }
        }
    }

    /// Takes out the paths refused, or failed, for `PATH_EXPIRE`, except the
    /// target's last verified path (its MAC is where a down target is asked
    /// whether it is back). Returns how many left.
    pub fn expire_paths(&mut self, now: Micros) -> usize {
        while self.refused_macs.front().is_some_and(|&(_, _, at)| now.saturating_sub(at) >= PATH_EXPIRE) {
            self.refused_macs.pop_front();
        }
        let old = |p: &Path| now.saturating_sub(p.since) >= PATH_EXPIRE;
        let expired = |p: &Path| matches!(p.state, PathState::Failed | PathState::Refused) && old(p);
        if !self.paths.iter().any(expired) {
            return 0;
        }
        // With every verified path expiring, the one that failed last stays.
        let keep = if self.paths.iter().filter(|p| p.state.verified()).all(expired) {
            self.paths.iter().filter(|p| p.state.verified()).max_by_key(|p| p.since).map(|p| p.id)
        } else {
            None
        };
        let before = self.paths.len();
        self.remove_paths(|p| !expired(p) || Some(p.id) == keep);
        before - self.paths.len()
    }

    /// Removes every path through `link` (interface no longer allowed).
    pub fn remove_link(&mut self, link: usize) {
        self.remove_paths(|p| p.link != link);
    }

    /// Keeps the paths for which `keep` holds. Frames in flight on a removed
    /// path are retransmitted on another on timeout; a pinned command on one
    /// fails then.
    fn remove_paths(&mut self, keep: impl Fn(&Path) -> bool) {
        let old = std::mem::take(&mut self.paths);
        let mut map = Vec::with_capacity(old.len());
        for p in old {
            if keep(&p) {
                map.push(Some(self.paths.len() as u16));
                self.paths.push(p);
            } else {
                map.push(None);
            }
        }
        for s in self.slots.iter_mut() {
            if s.job.is_some() {
                s.path = map.get(s.path as usize).copied().flatten().unwrap_or(u16::MAX);
            }
        }
        self.rr = 0;
        self.recompute();
    }

    /// The path at index `idx` answered: a failed path is in use again.
    fn path_answered(&mut self, idx: usize, now: Micros) {
        let Some(p) = self.paths.get_mut(idx) else { return };
        p.consecutive_timeouts = 0;
        if p.state == PathState::Failed {
            p.state = PathState::InUse;
            p.since = now;
            self.recompute();
        }
    }

    /// The retransmission timeout of a first transmission.
    pub fn rto(&self) -> Micros {
        self.rtt.rto()
    }
    /// Smoothed round-trip time (0 before the first reply).
    pub fn srtt(&self) -> Micros {
        self.rtt.srtt()
    }
    pub fn rttvar(&self) -> Micros {
        self.rtt.rttvar()
    }
    pub fn pending_frames(&self) -> usize {
        self.pending.len()
    }
    /// Completed commands with transmissions still unanswered.
    pub fn ghosts(&self) -> usize {
        self.ghosts.len()
    }
    /// Requests are waiting for the target (in flight or queued; pinned
    /// commands go to other MACs and do not count).
    pub fn busy(&self) -> bool {
        self.nout > 0 || !self.pending.is_empty()
    }
    /// `on_timer` has work: requests, pinned commands, or ghosts to expire.
    pub fn needs_timer(&self) -> bool {
        self.busy() || self.pinned > 0 || !self.ghosts.is_empty()
    }

    /// How long a ghost lives (and a write's ghost blocks overlapping
    /// writes) after its newest transmission was sent, or after its last
    /// late answer: at least `GHOST_HOLD_MIN` and four RTOs, and twice the
    /// longest this target took to answer a transmission.
    pub fn ghost_hold(&self) -> Micros {
        GHOST_HOLD_MIN.max(4 * self.rto()).max(2 * self.longest_wait).min(GHOST_HOLD_MAX)
    }

    fn alloc_req(&mut self, mut req: Req) -> u32 {
        self.req_serial += 1;
        req.serial = self.req_serial;
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
        let req = self.alloc_req(Req {
            buf,
            frames_left: frames,
            err: None,
            done: Some(done),
            op,
            submitted: now,
            serial: 0,
        });
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
        let Some(idx) = self.path_index(path_id) else {
            self.completed.push((done, Err(IoError::Down)));
            return;
        };
        let job = Job { pinned: true, ..self.one_frame_job(now, Op::Identify, wire::ATA_IDENTIFY, 1, SECTOR, done) };
        let slot = self.alloc_slot(job, idx as u16);
        self.pinned += 1;
        self.transmit(now, slot, out);
    }

    /// A request of one frame without data out (`len` bytes in) and its
    /// command, not pinned.
    fn one_frame_job(&mut self, now: Micros, op: Op, cmd: u8, count: u8, len: usize, done: IoDone) -> Job {
        let buf = ReqBuf::In(vec![0u8; len]);
        let req =
            self.alloc_req(Req { buf, frames_left: 1, err: None, done: Some(done), op, submitted: now, serial: 0 });
        Job { req, lba: 0, count, off: 0, cmd, write: false, pinned: false, first_sent: None, tries: 0 }
    }

    /// Takes a free slot for `job` on path index `path`.
    fn alloc_slot(&mut self, job: Job, path: u16) -> u16 {
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u16
            }
        };
        let s = &mut self.slots[slot as usize];
        s.job = Some(job);
        s.sent.clear();
        s.path = path;
        slot
    }

    /// Picks the path for the next frame of `count` sectors: round-robin
    /// over the paths in use that can carry it; a failed path gets one probe
    /// frame per interval; if every such path failed, use them anyway.
    /// Unverified and refused paths are never picked.
    fn pick_path(&mut self, now: Micros, count: u8) -> Option<u16> {
        let n = self.paths.len();
        let mut failed = None;
        for i in 0..n {
            let idx = (self.rr + i) % n;
            let p = &mut self.paths[idx];
            if !p.state.verified() || count > p.frame_sectors() {
                continue;
            }
            if p.state == PathState::Failed {
                failed.get_or_insert(idx);
                if now < p.next_probe {
                    continue;
                }
                p.next_probe = now + PATH_PROBE_INTERVAL;
            }
            self.rr = (idx + 1) % n;
            return Some(idx as u16);
        }
        // None in use can carry it: a failed one, else any verified one
        // (the frame was sized for a path that has left since).
        let idx = failed.or_else(|| self.paths.iter().position(|p| p.state.verified()))?;
        self.rr = (idx + 1) % n;
        Some(idx as u16)
    }

    /// A write waits while it overlaps a write ghost (other than the frame
    /// it was cut from, which carries the same bytes).
    fn blocked(&self, job: &Job) -> bool {
        if !job.write {
            return false;
        }
        let serial = self.reqs[job.req as usize].as_ref().map_or(0, |r| r.serial);
        self.ghosts.iter().any(|g| g.job.write && g.job.overlaps(job) && g.replaced_by != serial)
    }

    /// Sends queued frames while the window allows.
    pub fn pump(&mut self, now: Micros, out: &mut Outbox) {
        let mut i = 0;
        while self.held < self.cwnd.min(self.maxwin) && i < self.pending.len() {
            let job = self.pending[i];
            // Frames of a request that already failed are not sent.
            if self.reqs[job.req as usize].as_ref().is_some_and(|r| r.err.is_some()) {
                self.pending.remove(i);
                self.frame_done(job.req, None);
                continue;
            }
            if !self.ghosts.is_empty() && self.blocked(&job) {
                i += 1;
                continue;
            }
            let Some(path) = self.pick_path(now, job.count) else { break };
            self.pending.remove(i);
            let slot = self.alloc_slot(job, path);
            self.nout += 1;
            self.transmit(now, slot, out);
        }
    }

    /// Sends the next transmission of an occupied slot (a new tag on the
    /// slot's current path). A pinned command's transmissions are not held
    /// by the target (they go to another MAC) nor counted as its frames.
    fn transmit(&mut self, now: Micros, slot: u16, out: &mut Outbox) {
        let s = &mut self.slots[slot as usize];
        let job = s.job.as_mut().expect("transmit of an empty slot");
        job.first_sent.get_or_insert(now);
        let job = *job;
        let deadline = now + self.rtt.backoff(job.tries as usize + s.sent.len());
        // One generation counter for all slots: every tag in flight differs
        // from every other in its generation bits too, so a reply whose slot
        // bits were damaged on the way matches no other command.
        self.gen = match (self.gen + 1) & GEN_MASK {
            // Slot 0 with generation 0 would be tag 0, an announcement's.
            0 => 1,
            g => g,
        };
        let held = !job.pinned;
        let path_id = self.paths.get(s.path as usize).map_or(u32::MAX, |p| p.id);
        s.sent.push(Sent {
            gen: self.gen,
            path: path_id,
            seq: self.next_seq,
            at: now,
            deadline,
            held,
            overtaken: false,
        });
        self.next_seq += 1;
        let tag = tag_of(slot, self.gen);
        self.held += u32::from(held);
        let Some(path) = self.paths.get_mut(s.path as usize) else { return };
        let (aflags, lba) = match job.cmd {
            wire::ATA_IDENTIFY => (0, 0),
            wire::ATA_FLUSH => (0, 0),
            wire::ATA_FLUSH_EXT => (wire::AFLAG_EXT, 0),
            _ => wire::ata_lba_fields(self.lba48, job.lba),
        };
        let aflags = aflags | if job.write { wire::AFLAG_WRITE } else { 0 };
        let dlen = if job.write { job.count as usize * SECTOR } else { 0 };
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
        self.counters.frames_sent += u64::from(held);
        let data = match &self.reqs[job.req as usize].as_ref().expect("frame of a finished request").buf {
            ReqBuf::Out(b) if job.write => Some((b.clone(), job.off, dlen as u32)),
            _ => None,
        };
        out.push(Transmit { link: path.link, head, data });
    }

    /// Counts one frame of `req` as finished; completes the request when it
    /// was the last. Returns what a request that completed without error
    /// did and when it was submitted.
    fn frame_done(&mut self, req: u32, err: Option<IoError>) -> Option<(Op, Micros)> {
        let r = self.reqs[req as usize].as_mut()?;
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
            let ok = r.err.is_none();
            let res = match (r.err, r.buf) {
                (Some(e), _) => Err(e),
                (None, ReqBuf::In(b)) => Ok(b),
                (None, ReqBuf::Out(_)) => Ok(Vec::new()),
            };
            if let Some(done) = r.done {
                self.completed.push((done, res));
            }
            return ok.then_some((r.op, r.submitted));
        }
        None
    }

    /// Takes the finished requests; the caller runs them after dropping the
    /// target's lock.
    pub fn take_completed(&mut self) -> Completions {
        std::mem::take(&mut self.completed)
    }

    /// Ends the command in `slot` (answered, its request failed, or
    /// re-planned into the smaller frames of request `replaced_by`): its
    /// transmissions still unanswered, except `answered`, become a ghost.
    fn free_slot(&mut self, now: Micros, slot: u16, answered: Option<u32>, replaced_by: u64) {
        let s = &mut self.slots[slot as usize];
        let job = s.job.take().expect("free of an empty slot");
        if job.pinned {
            // Held by nobody we count: no ghost; late answers are unexpected.
            s.sent.clear();
            self.free_slots.push(slot);
            self.pinned -= 1;
            return;
        }
        let mut sent = std::mem::take(&mut s.sent);
        if let Some(i) = answered.and_then(|g| sent.iter().position(|t| t.gen == g)) {
            if sent.swap_remove(i).held {
                self.held -= 1;
            }
        }
        if sent.is_empty() {
            // Keep the allocation for the slot's next command.
            self.slots[slot as usize].sent = sent;
        } else {
            let newest = sent.iter().map(|t| t.at).max().unwrap_or(now);
            let expires = newest + self.ghost_hold();
            self.ghosts.push(Ghost { slot, job, sent, expires, replaced_by });
        }
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

    /// The target answered a transmission sent at `sent_at`: it is alive and
    /// has worked through what was sent before (presumption of loss).
    fn answered(&mut self, now: Micros, sent: &Sent) {
        if sent.overtaken {
            // Resent as lost, yet answered: replies come out of order.
            self.reorder_window = (2 * self.reorder_window).min(REORDER_MAX);
            self.last_reorder = now;
        } else if now.saturating_sub(self.last_reorder) >= REORDER_DECAY && self.reorder_window > REORDER_MIN {
            self.reorder_window = (self.reorder_window / 2).max(REORDER_MIN);
            self.last_reorder = now;
        }
        let sent_at = sent.at;
        if let Some(p) = self.path_mut(sent.path) {
            p.overtaken_below = p.overtaken_below.max((sent.seq + 1).saturating_sub(FAST_RETRANSMIT_AFTER));
        }
        self.last_answer = now;
        self.answered_sent_at = self.answered_sent_at.max(sent_at);
        self.longest_wait = self.longest_wait.max(now.saturating_sub(sent_at));
        self.last_progress = now;
        self.probes_unanswered = 0;
    }

    /// An answer came on path `path_id` to a frame of `job`'s size. A large
    /// one shows that large frames get through there (it lifts a
    /// provisional cap); a small one confirms a provisional cap: the
    /// path's large frames were lost for their size.
    fn size_answered(&mut self, now: Micros, path_id: u32, job: &Job) {
        let Some(i) = self.path_index(path_id) else { return };
        let p = &mut self.paths[i];
        if job.is_big() {
            p.big_answered = now;
            p.big_losses = 0;
            if p.cap.is_some_and(|c| !c.confirmed) {
                p.cap = None;
                self.recompute();
            }
            return;
        }
        p.small_answered = now;
        let Some(cap) = p.cap.as_mut().filter(|c| !c.confirmed) else { return };
        cap.confirmed = true;
        let (from, to) = (cap.natural as usize * SECTOR, cap.sectors as usize * SECTOR);
        let lost = u64::from(std::mem::take(&mut p.big_losses));
        p.counters.lost_jumbo += lost;
        self.counters.lost_jumbo += lost;
        let (ifname, mac) = (p.ifname.clone(), p.mac);
        self.events.push(Event::JumboFallback { ifname, mac, from, to, lost });
    }

    /// A large transmission `t` was lost. It counts against its path when
    /// nothing large was answered there since it was sent; `JUMBO_LOSSES`
    /// of those in a row, with something small answered on the path after
    /// the first, hold the path to small frames (provisionally, until a
    /// small frame is answered there: `size_answered`). True when the path
    /// fell back now: the caller re-plans what is queued and in flight.
    fn big_lost(&mut self, now: Micros, t: &Sent) -> bool {
        let Some(i) = self.path_index(t.path) else { return false };
        let p = &mut self.paths[i];
        if p.cap.is_some() || t.at < p.big_answered {
            return false;
        }
        if p.big_losses == 0 {
            p.big_loss_from = t.at;
        }
        p.big_losses += 1;
        let natural = p.frame_sectors();
        if p.big_losses < JUMBO_LOSSES || p.small_answered <= p.big_loss_from || natural <= FALLBACK_SECTORS {
            return false;
        }
        p.cap = Some(FrameCap { sectors: FALLBACK_SECTORS, natural, confirmed: false });
        // Its small frames are answered: the path works.
        p.consecutive_timeouts = 0;
        if p.state == PathState::Failed {
            p.state = PathState::InUse;
            p.since = now;
        }
        self.recompute();
        true
    }

    /// Cuts the frames queued or in flight that are larger than the
    /// target's frames now are (`sectors_per_frame`) into frames of that
    /// size, which go first. A frame in flight becomes a ghost (its
    /// transmissions may still be held by the target, or executed late),
    /// which its own pieces need not wait for (they carry the same bytes)
    /// but every other overlapping write does; its pieces keep its first
    /// send time (deadsecs) and its backoff. Returns how many frames in
    /// flight were cut.
    fn replan(&mut self, now: Micros) -> u64 {
        let spf = self.sectors_per_frame;
        let busy_since = self.busy_since;
        let mut cut = 0;
        let mut pieces: VecDeque<Job> = VecDeque::new();
        for slot in 0..self.slots.len() {
            let Some(job) = self.slots[slot].job else { continue };
            if job.pinned || job.count <= spf {
                continue;
            }
            let tries = job.tries.saturating_add(self.slots[slot].sent.len().min(255) as u8);
            // Too large for every path now: lost (a reply too large for the
            // interface is dropped on arrival; a request was refused or
            // dropped on the way), so no longer held by the target.
            for t in self.slots[slot].sent.iter_mut().filter(|t| t.held) {
                t.held = false;
                self.held -= 1;
            }
            let serial = self.reqs[job.req as usize].as_ref().filter(|r| r.err.is_none()).map(|r| r.serial);
            self.free_slot(now, slot as u16, None, serial.unwrap_or(0));
            cut += 1;
            if serial.is_none() {
                // Its request already failed and was answered.
                self.frame_done(job.req, None);
                continue;
            }
            self.split_into(Job { tries, ..job }, spf, &mut pieces);
        }
        if pieces.is_empty() && self.pending.iter().all(|j| j.count <= spf) {
            return cut;
        }
        for job in std::mem::take(&mut self.pending) {
            self.split_into(job, spf, &mut pieces);
        }
        self.pending = pieces;
        self.busy_since = busy_since.or(Some(now));
        cut
    }

    /// Appends `job` cut into frames of at most `spf` sectors to `to`; its
    /// request has that many frames more to wait for.
    fn split_into(&mut self, job: Job, spf: u8, to: &mut VecDeque<Job>) {
        if job.count <= spf {
            to.push_back(job);
            return;
        }
        let n = to.len();
        to.extend(job.split(spf));
        if let Some(r) = self.reqs[job.req as usize].as_mut() {
            r.frames_left += (to.len() - n - 1) as u32;
        }
    }

    /// The MTU of local link `link` is now `mtu`: its paths carry frames of
    /// that size from now on. When the target's frames shrink, the frames
    /// queued or in flight that no longer fit are cut to the new size and
    /// sent again at once (counted as `lost_jumbo`, and an `Event`).
    pub fn set_link_mtu(&mut self, now: Micros, link: usize, mtu: usize, out: &mut Outbox) {
        let mut ifname = None;
        for p in self.paths.iter_mut().filter(|p| p.link == link && p.mtu != mtu) {
            p.mtu = mtu;
            ifname.get_or_insert_with(|| p.ifname.clone());
        }
        let Some(ifname) = ifname else { return };
        let from = self.payload();
        self.recompute();
        let to = self.payload();
        if to < from {
            let lost = self.replan(now);
            self.counters.lost_jumbo += lost;
            self.events.push(Event::MtuLowered { ifname, mtu, from, to, lost });
            self.pump(now, out);
        }
    }

    /// The transmission with tag `tag` was not sent (the link refused it):
    /// the target does not hold it.
    pub fn not_sent(&mut self, tag: u32) {
        let (slot, gen) = ((tag & SLOT_MASK) as u16, (tag >> SLOT_BITS) & GEN_MASK);
        let in_slot = self.slots.get_mut(slot as usize).filter(|s| s.job.is_some()).map(|s| &mut s.sent);
        let sent = in_slot.into_iter().chain(self.ghosts.iter_mut().filter(|g| g.slot == slot).map(|g| &mut g.sent));
        for list in sent {
            if let Some(t) = list.iter_mut().find(|t| t.gen == gen && t.held) {
                t.held = false;
                self.held -= 1;
                return;
            }
        }
    }

    /// Lifts every path's cap (`revalidate`: the user may have fixed the
    /// network): large frames are tried again, and fall back again if they
    /// are still lost.
    pub fn lift_caps(&mut self) {
        for p in self.paths.iter_mut() {
            p.cap = None;
            p.big_losses = 0;
        }
        self.recompute();
    }

    /// Takes what happened that the initiator reports.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// A config response from the target (announcement, or an answer to a
    /// query): its network is alive, so frames that timed out before now
    /// were lost (they stop counting as held). It is no progress of the
    /// I/O: deadsecs goes on counting, and the answer to a probe resends
    /// early only a command's first transmission.
    pub fn on_sign_of_life(&mut self, now: Micros, mac: Mac) {
        self.answered_sent_at = self.answered_sent_at.max(now);
        // A small frame answered on each path to that MAC.
        for p in self.paths.iter_mut().filter(|p| p.mac == mac) {
            p.small_answered = now;
        }
        if let Some((seq, _)) = self.probe {
            // Everything sent to this MAC before our probe and not answered
            // was lost.
            for p in self.paths.iter_mut().filter(|p| p.mac == mac) {
                p.probed_below = p.probed_below.max(seq);
            }
            if self.paths.iter().filter(|p| p.state == PathState::InUse).all(|p| p.probed_below >= seq) {
                self.probe = None;
            }
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
        if tag >> TAG_BITS != 0 {
            self.counters.unexpected += 1;
            return ReplyOutcome::Unexpected;
        }
        let slot = (tag & SLOT_MASK) as u16;
        let gen = (tag >> SLOT_BITS) & GEN_MASK;
        let current = self.slots.get(slot as usize).and_then(|s| {
            let job = s.job?;
            let t = *s.sent.iter().find(|t| t.gen == gen)?;
            Some((job, t, s.path))
        });
        // A pinned command is answered only by its path's MAC; everything
        // else only by a verified path's (never an unverified or refused one).
        let source_ok = match current {
            Some((job, _, path)) if job.pinned => self.paths.get(path as usize).is_some_and(|p| p.mac == src),
            _ => self.paths.iter().any(|p| p.mac == src && p.state.verified()),
        };
        if !source_ok {
            return ReplyOutcome::UnknownSource;
        }
        let Some((job, sent, path_idx)) = current else {
            return self.on_late_reply(now, slot, gen, out);
        };
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
        let path_idx = path_idx as usize;
        if let Some(p) = self.paths.get_mut(path_idx) {
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
            self.path_answered(path_idx, now);
            self.on_ack_window();
        }
        self.free_slot(now, slot, Some(gen), 0);
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
            self.counters.errors += u64::from(!job.pinned);
            if let Some(p) = self.paths.get_mut(path_idx) {
                p.counters.errors += 1;
            }
        }
        if let Some((op, submitted)) = self.frame_done(job.req, err) {
            self.counters.request_done(op, now.saturating_sub(submitted));
        }
        self.pump(now, out);
        ReplyOutcome::Accepted
    }

    /// A reply that matches no command in flight: a late answer to a ghost,
    /// or unexpected.
    fn on_late_reply(&mut self, now: Micros, slot: u16, gen: u32, out: &mut Outbox) -> ReplyOutcome {
        let Some(gi) = self.ghosts.iter().position(|g| g.slot == slot && g.sent.iter().any(|t| t.gen == gen)) else {
            self.counters.unexpected += 1;
            return ReplyOutcome::Unexpected;
        };
        let i = self.ghosts[gi].sent.iter().position(|t| t.gen == gen).expect("found above");
        let t = self.ghosts[gi].sent.swap_remove(i);
        if t.held {
            self.held -= 1;
        }
        self.answered(now, &t);
        let job = self.ghosts[gi].job;
        self.size_answered(now, t.path, &job);
        // The target is still working through this command's transmissions.
        let expires = now + self.ghost_hold();
        let g = &mut self.ghosts[gi];
        g.expires = g.expires.max(expires);
        let emptied = g.sent.is_empty();
        self.counters.late += 1;
        if emptied {
            self.ghosts.swap_remove(gi);
        }
        self.pump(now, out);
        ReplyOutcome::Late
    }

    /// Presumes lost the transmissions that timed out and that the target
    /// has worked past (or that waited `PAUSE_MAX`); they stop counting as
    /// held. Expired ghosts go.
    fn presume_lost(&mut self, now: Micros) {
        let answered = self.answered_sent_at;
        let lost = |t: &mut Sent| {
            let gone = t.held && now >= t.deadline && (t.at < answered || now - t.at >= PAUSE_MAX);
            if gone {
                t.held = false;
            }
            gone as u32
        };
        let mut n = 0;
        for s in self.slots.iter_mut().filter(|s| s.job.is_some()) {
            n += s.sent.iter_mut().map(lost).sum::<u32>();
        }
        for g in self.ghosts.iter_mut() {
            n += g.sent.iter_mut().map(lost).sum::<u32>();
        }
        self.held -= n;
        let mut still_held = 0;
        self.ghosts.retain(|g| {
            let keep = now < g.expires;
            if !keep {
                still_held += g.sent.iter().filter(|t| t.held).count() as u32;
            }
            keep
        });
        self.held -= still_held;
    }

    /// Retransmits expired frames and detects a dead target (no progress
    /// for `deadsecs`; 0: never).
    pub fn on_timer(&mut self, now: Micros, deadsecs: u32, out: &mut Outbox) -> TimerOutcome {
        let mut res = TimerOutcome::default();
        if deadsecs > 0 && self.dead(now, deadsecs as u64 * 1_000_000) {
            res.dead = true;
            return res;
        }
        if !self.ghosts.is_empty() || self.nout > 0 {
            self.presume_lost(now);
        }
        let mut lost = false;
        let mut fast = false;
        let mut stuck = false;
        let mut path_failed = false;
        let mut replan = false;
        for i in 0..self.slots.len() {
            let Some(job) = self.slots[i].job else { continue };
            let Some(latest) = self.slots[i].sent.last().copied() else { continue };
            if job.pinned {
                self.pinned_timer(now, i as u16, job, &latest, out);
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
            let first = job.tries == 0 && self.slots[i].sent.len() == 1;
            let by_probe = first || job.first_sent.is_some_and(|at| self.last_answer > at);
            let overtaken = latest.held
                && self
                    .path(latest.path)
                    .is_some_and(|p| latest.seq < p.overtaken_below || (by_probe && latest.seq < p.probed_below))
                && now.saturating_sub(latest.at) >= self.rtt.srtt() + self.reorder_window;
            if now < latest.deadline && !overtaken {
                continue;
            }
            if overtaken {
                // Lost: it stops counting as held, and goes again now.
                let t = self.slots[i].sent.last_mut().expect("latest");
                t.held = false;
                t.overtaken = true;
                self.held -= 1;
            }
            if self.reqs[job.req as usize].as_ref().is_none_or(|r| r.err.is_some()) {
                // Its request already failed and was answered: a lost frame
                // of it is not worth retrying (nor worth declaring the
                // target dead over).
                self.free_slot(now, i as u16, None, 0);
                self.frame_done(job.req, None);
                continue;
            }
            if self.held >= self.maxwin {
                // The target may still hold everything we sent: resending
                // would overflow its buffer. Ask whether it is alive.
                stuck = true;
                continue;
            }
            if job.is_big() && self.big_lost(now, &latest) {
                // Its path falls back to small frames: this frame and the
                // other large ones are cut and sent again below.
                replan = true;
                break;
            }
            let Some(path) = self.pick_path(now, job.count) else {
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
            if let Some(p) = self.paths.get_mut(self.slots[i].path as usize) {
                // A frame lost on this path, found by its timer or by the
                // target answering later frames: a strike against the path.
                p.consecutive_timeouts += 1;
                p.counters.retransmits += 1;
                p.counters.timeouts += u64::from(timeout);
                if p.state == PathState::InUse && p.consecutive_timeouts >= PATH_FAIL_TIMEOUTS {
                    p.state = PathState::Failed;
                    p.since = now;
                    path_failed = true;
                }
            }
            self.slots[i].path = path;
            self.transmit(now, i as u16, out);
        }
        if path_failed {
            self.recompute();
        }
        if replan {
            self.replan(now);
        }
        let rto = self.rto();
        // Ask the target whether it is alive when frames wait and it has
        // been quiet (tail loss), or when none can be resent without
        // overflowing its buffer; one probe at a time, a lost one is
        // replaced after an RTO, and each probe sent while the target
        // answers no command waits twice as long as the one before.
        let pto = self.probe_timeout();
        let quiet = now.saturating_sub(self.last_answer) >= pto;
        let waiting = self
            .slots
            .iter()
            .any(|s| s.job.is_some() && s.sent.last().is_some_and(|t| t.held && now.saturating_sub(t.at) >= pto));
        let gap = pto.saturating_mul(1 << self.probes_unanswered.min(16)).min(MAX_BACKOFF);
        let probe_free = self.probe.is_none_or(|(_, at)| now.saturating_sub(at) >= rto)
            && (self.probes_unanswered == 0 || now.saturating_sub(self.last_probe) >= gap);
        if probe_free && (stuck || (quiet && waiting)) {
            self.probe = Some((self.next_seq, now));
            self.next_seq += 1;
            self.last_probe = now;
            self.probes_unanswered += 1;
            res.probe = true;
        }
        if (lost || fast) && now.saturating_sub(self.last_loss) >= rto {
            // One window cut per loss event, as TCP does: to one after a
            // timeout, to half after a fast retransmit.
            self.last_loss = now;
            self.ssthresh = (self.cwnd / 2).max(1);
            self.cwnd = if lost { 1 } else { self.ssthresh };
            self.ack_credit = 0;
        }
        self.pump(now, out);
        res
    }

    /// How long the target may be quiet while frames wait before it is
    /// probed: twice the round trip, at least `MIN_PROBE_TIMEOUT`, at most
    /// the RTO.
    fn probe_timeout(&self) -> Micros {
        (2 * self.rtt.srtt()).max(MIN_PROBE_TIMEOUT).min(self.rto())
    }

    /// No progress for `limit` microseconds: the target answered no
    /// command for that long while requests waited, or a command has waited
    /// that long since it was first sent (the kernel driver counts each
    /// frame's own wait), whatever else the target answered meanwhile.
    fn dead(&self, now: Micros, limit: Micros) -> bool {
        let silent = self.busy_since.is_some_and(|since| now.saturating_sub(since.max(self.last_progress)) >= limit);
        silent
            || self.slots.iter().filter_map(|s| s.job).any(|j| {
                !j.pinned
                    && j.first_sent.is_some_and(|at| now.saturating_sub(at) >= limit)
                    && self.reqs[j.req as usize].as_ref().is_some_and(|r| r.err.is_none())
            })
    }

    /// A pinned command's timer: resent on its own path when its
    /// transmission timed out, failed with `IoError::Timeout` after
    /// `PINNED_TRIES` (or at once when its path is gone).
    fn pinned_timer(&mut self, now: Micros, slot: u16, job: Job, latest: &Sent, out: &mut Outbox) {
        if now < latest.deadline {
            return;
        }
        let s = &self.slots[slot as usize];
        let path = s.path as usize;
        if s.sent.len() >= PINNED_TRIES || path >= self.paths.len() {
            self.free_slot(now, slot, None, 0);
            self.frame_done(job.req, Some(IoError::Timeout));
            return;
        }
        let p = &mut self.paths[path];
        p.counters.retransmits += 1;
        p.counters.timeouts += 1;
        self.transmit(now, slot, out);
    }

    /// Recounts the transmissions held by the target (tests check that the
    /// running count never drifts).
    #[cfg(test)]
    fn recount_held(&self) -> u32 {
        let slots = self.slots.iter().filter(|s| s.job.is_some()).flat_map(|s| s.sent.iter());
        slots.chain(self.ghosts.iter().flat_map(|g| g.sent.iter())).filter(|t| t.held).count() as u32
    }

    /// Fails every queued and in-flight request (target dead or flushed).
    /// Late replies to the cleared tags count as unexpected.
    pub fn fail_all(&mut self, err: IoError) {
        self.pending.clear();
        for s in self.slots.iter_mut() {
            s.job = None;
            s.sent.clear();
        }
        self.ghosts.clear();
        self.probe = None;
        self.probes_unanswered = 0;
        for p in self.paths.iter_mut() {
            p.overtaken_below = self.next_seq;
            p.probed_below = self.next_seq;
            // A cap not confirmed by a small answer may have come from a
            // target that answered nothing at all.
            if p.cap.is_some_and(|c| !c.confirmed) {
                p.cap = None;
            }
            p.big_losses = 0;
        }
        self.recompute();
        self.free_slots = (0..self.slots.len() as u16).rev().collect();
        self.nout = 0;
        self.pinned = 0;
        self.held = 0;
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
