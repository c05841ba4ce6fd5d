//! The commands in flight: the tag layout, the table of entries (one per
//! command in flight, each with its transmissions), the count of
//! transmissions the target holds, and the ghosts (transmissions of
//! completed commands that were never answered, which an overlapping write
//! must wait for).

use super::request::Job;
use super::Micros;
use crate::wire::ATA_HDR_LEN;
use std::sync::Arc;

/// Tag layout: bit 31 clear (the driver's space: `wire::TAG_USER_TOOLS`),
/// bit 30 clear (the initiator's other commands: discovery, probes, control
/// commands), 18 bits generation (one counter per target, one value per
/// transmission), 12 bits entry.
const TAG_BITS: u32 = 30;
const ENTRY_BITS: u32 = 12;
const GEN_MASK: u32 = (1 << (TAG_BITS - ENTRY_BITS)) - 1;
const ENTRY_MASK: u32 = (1 << ENTRY_BITS) - 1;
/// Most commands in flight to one target.
pub const MAX_ENTRIES: usize = 1 << ENTRY_BITS;

pub(super) fn tag_of(entry: u16, gen: u32) -> u32 {
    (gen << ENTRY_BITS) | entry as u32
}

/// A tag's entry and generation; None for a tag outside the engine's space.
pub(super) fn split_tag(tag: u32) -> Option<(u16, u32)> {
    (tag >> TAG_BITS == 0).then_some(((tag & ENTRY_MASK) as u16, (tag >> ENTRY_BITS) & GEN_MASK))
}

/// A frame the engine wants sent on link `link`: the ATA header `head`
/// followed by `data` (kept apart, so write data goes out of the request's
/// buffer without being copied into a frame). The engine only queues these;
/// the caller sends them after dropping the target's lock.
pub struct Transmit {
    pub link: usize,
    pub head: [u8; ATA_HDR_LEN],
    pub(super) data: Option<(Arc<Vec<u8>>, u32, u32)>,
    /// The target's smoothed round trip (0: not measured yet) and its
    /// commands in flight when this one went: when to expect the reply
    /// (`Link::expect_reply`).
    pub rtt: Micros,
    pub in_flight: u32,
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

/// One transmission of a command.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sent {
    pub(super) gen: u32,
    /// `Path::id` of the path it went on.
    pub(super) path: u32,
    /// Order of sending, over all the target's transmissions.
    pub(super) seq: u64,
    pub(super) at: Micros,
    /// When it times out (its backoff timer).
    pub(super) deadline: Micros,
    /// Counted as held by the target (not answered, not presumed lost).
    pub(super) held: bool,
    /// Presumed lost because later frames were answered, and resent.
    pub(super) overtaken: bool,
}

/// An entry of the table: a command in flight and its transmissions.
#[derive(Default)]
pub(super) struct Entry {
    pub(super) job: Option<Job>,
    /// Transmissions of the current command, oldest first; reused (no
    /// allocation once warm).
    pub(super) sent: Vec<Sent>,
    /// `Path::id` of the path of the latest transmission.
    pub(super) path: u32,
}

/// Transmissions of a completed command that were never answered.
pub(super) struct Ghost {
    pub(super) entry: u16,
    pub(super) job: Job,
    pub(super) sent: Vec<Sent>,
    pub(super) expires: Micros,
    /// The serial of the request whose smaller frames replaced this one
    /// (re-planned to a smaller payload; 0: none). They carry the same
    /// bytes, so they need not wait for it; every other write does.
    pub(super) replaced_by: u64,
}

/// The table of commands in flight.
pub(super) struct InFlight {
    pub(super) entries: Vec<Entry>,
    free: Vec<u16>,
    pub(super) ghosts: Vec<Ghost>,
    /// Commands in flight (occupied entries), pinned ones apart.
    pub(super) nout: u32,
    /// Pinned commands in flight.
    pub(super) pinned: u32,
    /// Transmissions held by the target by our count (see the module docs
    /// of `engine`): never above the window when a frame is sent.
    pub(super) held: u32,
    /// `Sent::seq` of the next transmission.
    next_seq: u64,
    /// The generation of the last tag (one counter for all entries).
    gen: u32,
}

impl InFlight {
    pub(super) fn new() -> InFlight {
        InFlight {
            entries: Vec::new(),
            free: Vec::new(),
            ghosts: Vec::new(),
            nout: 0,
            pinned: 0,
            held: 0,
            next_seq: 1,
            gen: 0,
        }
    }

    /// Takes a free entry for `job` on path `path`.
    pub(super) fn add(&mut self, job: Job, path: u32) -> u16 {
        let entry = match self.free.pop() {
            Some(e) => e,
            None => {
                self.entries.push(Entry::default());
                (self.entries.len() - 1) as u16
            }
        };
        let e = &mut self.entries[entry as usize];
        e.job = Some(job);
        e.sent.clear();
        e.path = path;
        if job.pinned {
            self.pinned += 1;
        } else {
            self.nout += 1;
        }
        entry
    }

    /// Records a new transmission of `entry` on its path, sent `now` and
    /// timing out at `deadline`; returns its tag. A pinned command's
    /// transmissions are not held by the target (they go to another MAC).
    pub(super) fn transmitted(&mut self, entry: u16, now: Micros, deadline: Micros) -> u32 {
        // One generation counter for all entries: every tag in flight
        // differs from every other in its generation bits too, so a reply
        // whose entry bits were damaged on the way matches no other command.
        self.gen = match (self.gen + 1) & GEN_MASK {
            // Entry 0 with generation 0 would be tag 0, an announcement's.
            0 => 1,
            g => g,
        };
        let e = &mut self.entries[entry as usize];
        let held = !e.job.expect("transmission of an empty entry").pinned;
        e.sent.push(Sent {
            gen: self.gen,
            path: e.path,
            seq: self.next_seq,
            at: now,
            deadline,
            held,
            overtaken: false,
        });
        self.next_seq += 1;
        self.held += u32::from(held);
        tag_of(entry, self.gen)
    }

    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The command in flight in `entry` with a transmission of generation
    /// `gen`: the command, that transmission and the entry's latest path.
    pub(super) fn find(&self, entry: u16, gen: u32) -> Option<(Job, Sent, u32)> {
        let e = self.entries.get(entry as usize)?;
        let job = e.job?;
        let t = *e.sent.iter().find(|t| t.gen == gen)?;
        Some((job, t, e.path))
    }

    /// Ends the command in `entry` (answered, its request failed, or
    /// re-planned into the smaller frames of request `replaced_by`): its
    /// transmissions still unanswered, except `answered`, become a ghost
    /// that lives `hold` after the newest of them.
    pub(super) fn free(&mut self, entry: u16, answered: Option<u32>, replaced_by: u64, hold: Micros, now: Micros) {
        let e = &mut self.entries[entry as usize];
        let job = e.job.take().expect("free of an empty entry");
        self.free.push(entry);
        if job.pinned {
            // Held by nobody we count: no ghost; late answers are unexpected.
            e.sent.clear();
            self.pinned -= 1;
            return;
        }
        self.nout -= 1;
        let mut sent = std::mem::take(&mut e.sent);
        if let Some(i) = answered.and_then(|g| sent.iter().position(|t| t.gen == g)) {
            if sent.swap_remove(i).held {
                self.held -= 1;
            }
        }
        if sent.is_empty() {
            // Keep the allocation for the entry's next command.
            self.entries[entry as usize].sent = sent;
        } else {
            let newest = sent.iter().map(|t| t.at).max().unwrap_or(now);
            self.ghosts.push(Ghost { entry, job, sent, expires: newest + hold, replaced_by });
        }
    }

    /// Stops counting as held every transmission of `entry` (too large for
    /// every path now: lost).
    pub(super) fn unhold(&mut self, entry: u16) {
        for t in self.entries[entry as usize].sent.iter_mut().filter(|t| t.held) {
            t.held = false;
            self.held -= 1;
        }
    }

    /// A late answer to transmission `gen` of a ghost of `entry`: takes the
    /// transmission out and returns it, the ghost's command, and the
    /// ghost's index while it still has transmissions unanswered (else it
    /// is gone). None when no ghost has it (the tag is unknown or stale).
    pub(super) fn late(&mut self, entry: u16, gen: u32) -> Option<(Sent, Job, Option<usize>)> {
        let gi = self.ghosts.iter().position(|g| g.entry == entry && g.sent.iter().any(|t| t.gen == gen))?;
        let g = &mut self.ghosts[gi];
        let i = g.sent.iter().position(|t| t.gen == gen).expect("found above");
        let t = g.sent.swap_remove(i);
        if t.held {
            self.held -= 1;
        }
        let job = g.job;
        if g.sent.is_empty() {
            self.ghosts.swap_remove(gi);
            return Some((t, job, None));
        }
        Some((t, job, Some(gi)))
    }

    /// Stops counting as held the transmissions for which `lost` holds (in
    /// flight and in ghosts), and lets expired ghosts go.
    pub(super) fn presume_lost(&mut self, now: Micros, lost: impl Fn(&Sent) -> bool) {
        let mut n = 0;
        let in_flight = self.entries.iter_mut().filter(|e| e.job.is_some()).flat_map(|e| e.sent.iter_mut());
        for t in in_flight.chain(self.ghosts.iter_mut().flat_map(|g| g.sent.iter_mut())) {
            if lost(t) {
                t.held = false;
                n += 1;
            }
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

    /// A write waits while it overlaps a write ghost, other than the frame
    /// it was cut from (`serial` is its request's), which carries the same
    /// bytes.
    pub(super) fn blocked(&self, job: &Job, serial: u64) -> bool {
        job.write && self.ghosts.iter().any(|g| g.job.write && g.job.overlaps(job) && g.replaced_by != serial)
    }

    /// The transmission with tag `tag` was not sent (the link refused it):
    /// the target does not hold it.
    pub(super) fn not_sent(&mut self, tag: u32) {
        let Some((entry, gen)) = split_tag(tag) else { return };
        let in_entry = self.entries.get_mut(entry as usize).filter(|e| e.job.is_some()).map(|e| &mut e.sent);
        let ghosts = self.ghosts.iter_mut().filter(|g| g.entry == entry).map(|g| &mut g.sent);
        for list in in_entry.into_iter().chain(ghosts) {
            if let Some(t) = list.iter_mut().find(|t| t.gen == gen && t.held) {
                t.held = false;
                self.held -= 1;
                return;
            }
        }
    }

    /// Forgets everything in flight (every request failed): late replies to
    /// the cleared tags count as unexpected.
    pub(super) fn clear(&mut self) {
        for e in self.entries.iter_mut() {
            e.job = None;
            e.sent.clear();
        }
        self.ghosts.clear();
        self.free = (0..self.entries.len() as u16).rev().collect();
        self.nout = 0;
        self.pinned = 0;
        self.held = 0;
    }

    /// Recounts the transmissions held by the target (tests check that the
    /// running count never drifts).
    #[cfg(test)]
    pub(super) fn recount_held(&self) -> u32 {
        let entries = self.entries.iter().filter(|e| e.job.is_some()).flat_map(|e| e.sent.iter());
        entries.chain(self.ghosts.iter().flat_map(|g| g.sent.iter())).filter(|t| t.held).count() as u32
    }
}
