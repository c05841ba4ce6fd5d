//! Frame size: how many sectors a frame carries, and what happens when
//! that must shrink. A path whose large frames are lost while small ones
//! are answered falls back to small frames (`Paths::big_lost`,
//! `Paths::size_answered`); a lower MTU of a local interface shrinks its
//! paths' frames (`TargetIo::set_link_mtu`). Either way the frames queued
//! and in flight that no longer fit are cut to the new size (`replan`), and
//! the initiator is told (`Event`).

use super::request::Job;
use super::{Micros, Outbox, TargetIo};
use crate::wire::Mac;
use std::collections::VecDeque;
use std::fmt;

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

impl TargetIo {
    /// An answer came on path `path_id` to a frame of `job`'s size: the
    /// jumbo-frame rules (`Paths::size_answered`).
    pub(super) fn size_answered(&mut self, now: Micros, path_id: u32, job: &Job) {
        let (lifted, event) = self.paths.size_answered(path_id, job.is_big(), now, &mut self.counters);
        if lifted {
            self.recompute();
        }
        self.events.extend(event);
    }

    /// Cuts the frames queued or in flight that are larger than the
    /// target's frames now are (`sectors_per_frame`) into frames of that
    /// size, which go first. A frame in flight becomes a ghost (its
    /// transmissions may still be held by the target, or executed late),
    /// which its own pieces need not wait for (they carry the same bytes)
    /// but every other overlapping write does; its pieces keep its first
    /// send time (deadsecs) and its backoff. Returns how many frames in
    /// flight were cut.
    pub(super) fn replan(&mut self, now: Micros) -> u64 {
        let spf = self.sectors_per_frame;
        let busy_since = self.busy_since;
        let mut cut = 0;
        let mut pieces: VecDeque<Job> = VecDeque::new();
        for entry in 0..self.flight.entries.len() {
            let e = &self.flight.entries[entry];
            let Some(job) = e.job else { continue };
            if job.pinned || job.count <= spf {
                continue;
            }
            let tries = job.tries.saturating_add(e.sent.len().min(255) as u8);
            // Too large for every path now: lost (a reply too large for the
            // interface is dropped on arrival; a request was refused or
            // dropped on the way), so no longer held by the target.
            self.flight.unhold(entry as u16);
            let serial = self.requests.live_serial(job.req);
            self.free_entry(now, entry as u16, None, serial.unwrap_or(0));
            cut += 1;
            if serial.is_none() {
                // Its request already failed and was answered.
                self.requests.frame_done(job.req, None, &mut self.completed);
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
        self.requests.add_frames(job.req, (to.len() - n - 1) as u32);
    }

    /// The MTU of local link `link` is now `mtu`: its paths carry frames of
    /// that size from now on. When the target's frames shrink, the frames
    /// queued or in flight that no longer fit are cut to the new size and
    /// sent again at once (counted as `lost_jumbo`, and an `Event`).
    pub fn set_link_mtu(&mut self, now: Micros, link: usize, mtu: usize, out: &mut Outbox) {
        let Some(ifname) = self.paths.set_link_mtu(link, mtu) else { return };
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

    /// Lifts every path's cap (`revalidate`: the user may have fixed the
    /// network): large frames are tried again, and fall back again if they
    /// are still lost.
    pub fn lift_caps(&mut self) {
        self.paths.lift_caps();
        self.recompute();
    }
}
