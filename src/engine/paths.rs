//! The paths to a target (a local interface and a target MAC each): their
//! states, their table and its bounds, the round-robin choice of a path for
//! a frame, the per-path marks of fast retransmit and probes, and the
//! per-path frame size (its MTU, the target's maximum, and a cap when large
//! frames are lost on it).

use super::stats::Counters;
use super::{Event, Micros, TargetIo};
use crate::wire::{self, Mac, ATA_HDR_LEN, SECTOR};
use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};

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
pub(super) const MAX_REFUSED_MACS: usize = 64;
/// Consecutive timeouts after which a path leaves the rotation.
const PATH_FAIL_TIMEOUTS: u32 = 3;
/// How often a failed path is re-probed with one frame.
const PATH_PROBE_INTERVAL: Micros = 1_000_000;
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

/// One way to reach the target: a local interface and a target MAC.
#[derive(Debug, Clone)]
pub struct Path {
    /// Unique within the target, never reused: frames and commands name
    /// their path by it.
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
    pub(super) overtaken_below: u64,
    /// ... or it answered a probe (a query config) sent after them: its
    /// network works, which says nothing of its disk, so this resends early
    /// only a command's first transmission, or one the target has answered
    /// other commands since (see `TargetIo::on_timer`).
    pub(super) probed_below: u64,
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
    pub(super) fn frame_sectors(&self) -> u8 {
        let natural = frame_sectors(self.mtu, self.max_sectors);
        self.cap.map_or(natural, |c| c.sectors.min(natural))
    }
}

/// Sectors per frame for an MTU and a target's maximum: min((MTU − 36) /
/// 512, maximum, 255), at least 1.
pub(super) fn frame_sectors(mtu: usize, max_sectors: u8) -> u8 {
    let by_mtu = (mtu.saturating_sub(ATA_HDR_LEN - wire::ETH_HDR_LEN)) / SECTOR;
    by_mtu.min(max_sectors.max(1) as usize).clamp(1, 255) as u8
}

/// What `add` did: the path's id and state.
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

/// The path table of a target (in the order the paths came).
pub(super) struct Paths {
    list: Vec<Path>,
    /// Refused paths taken out to make room: (link, MAC, refused at).
    refused_macs: VecDeque<(usize, Mac, Micros)>,
    next_id: u32,
    /// Where the round-robin goes on (taken modulo the table's length).
    rr: usize,
}

impl Deref for Paths {
    type Target = [Path];
    fn deref(&self) -> &[Path] {
        &self.list
    }
}

impl DerefMut for Paths {
    fn deref_mut(&mut self) -> &mut [Path] {
        &mut self.list
    }
}

/// What a config response offers: a target MAC answering on one of our
/// links, with the frames the path may carry.
#[derive(Debug, Clone, Copy)]
pub struct PathOffer<'a> {
    pub link: usize,
    pub ifname: &'a str,
    pub local_mac: Mac,
    /// The target's MAC.
    pub mac: Mac,
    /// The link's MTU.
    pub mtu: usize,
    /// From the config response: the target's buffer count and the sectors
    /// it takes in one frame.
    pub buffer_count: u16,
    pub max_sectors: u8,
}

impl Paths {
    pub(super) fn new() -> Paths {
        Paths { list: Vec::new(), refused_macs: VecDeque::new(), next_id: 1, rr: 0 }
    }

    pub(super) fn get(&self, id: u32) -> Option<&Path> {
        self.list.iter().find(|p| p.id == id)
    }

    pub(super) fn get_mut(&mut self, id: u32) -> Option<&mut Path> {
        self.list.iter_mut().find(|p| p.id == id)
    }

    /// The smallest buffer count and frame of the paths in use (failed,
    /// unverified and refused ones have no say); None with none in use.
    pub(super) fn limits(&self) -> Option<(u16, u8)> {
        let in_use = || self.list.iter().filter(|p| p.state == PathState::InUse);
        Some((in_use().map(|p| p.buffer_count).min()?, in_use().map(|p| p.frame_sectors()).min()?))
    }

    /// Adds a path in state `state` (in use, or unverified), or updates a
    /// known one from a new config response (a failed path is in use
    /// again: the target answered on it). A full table makes room (see
    /// `MAX_PATHS`, `MAX_CANDIDATES`) or refuses the new path.
    pub(super) fn add(&mut self, now: Micros, offer: PathOffer, state: PathState) -> PathChange {
        let PathOffer { link, ifname, local_mac, mac, mtu, buffer_count, max_sectors } = offer;
        if let Some(p) = self.list.iter_mut().find(|p| p.link == link && p.mac == mac) {
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
            let id = p.id;
            if p.state.verified() {
                // A config reply proves the path works again.
                self.answered(id, now);
            }
            let p = self.get(id).expect("found above");
            return PathChange::Updated { id: p.id, state: p.state };
        }
        let state = if state.verified() { PathState::InUse } else { PathState::Unverified };
        if state == PathState::Unverified && self.refused_macs.iter().any(|&(l, m, _)| l == link && m == mac) {
            return PathChange::Refused;
        }
        if !self.make_room(state) {
            return PathChange::Full;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.list.push(Path {
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
            counters: Counters::default(),
        });
        PathChange::Added { id, state }
    }

    /// Makes room for one more path in `state`'s part of the table (verified
    /// or candidate): when it is full, the path that has been failed (for a
    /// verified one) or refused (for a candidate) the longest leaves.
    /// False when there is none to take out.
    fn make_room(&mut self, state: PathState) -> bool {
        let (limit, victim_state) =
            if state.verified() { (MAX_PATHS, PathState::Failed) } else { (MAX_CANDIDATES, PathState::Refused) };
        if self.list.iter().filter(|p| p.state.verified() == state.verified()).count() < limit {
            return true;
        }
        let victim = self.list.iter().filter(|p| p.state == victim_state).min_by_key(|p| p.since);
        let Some(&Path { id, link, mac, since, .. }) = victim else { return false };
        if victim_state == PathState::Refused {
            if self.refused_macs.len() >= MAX_REFUSED_MACS {
                self.refused_macs.pop_front();
            }
            self.refused_macs.push_back((link, mac, since));
        }
        self.retain(|p| p.id != id);
        true
    }

    /// An unverified path passed its verification: it is in use from now
    /// on, in place of the longest-failed path if the table is full. False
    /// (and it stays unverified) when every verified path is in use.
    pub(super) fn promote(&mut self, id: u32, now: Micros) -> bool {
        if self.get(id).is_none_or(|p| p.state != PathState::Unverified) || !self.make_room(PathState::InUse) {
            return false;
        }
        let p = self.get_mut(id).expect("checked above");
        p.state = PathState::InUse;
        p.since = now;
        p.consecutive_timeouts = 0;
        true
    }

    /// An unverified path failed its verification: it carries nothing and
    /// leaves the table after `PATH_EXPIRE` (or when a new MAC needs room).
    pub(super) fn refuse(&mut self, id: u32, now: Micros) {
        if let Some(p) = self.get_mut(id) {
            if p.state == PathState::Unverified {
                p.state = PathState::Refused;
                p.since = now;
            }
        }
    }

    /// Takes out the paths refused, or failed, for `PATH_EXPIRE`, except the
    /// target's last verified path (its MAC is where a down target is asked
    /// whether it is back). Returns how many left.
    pub(super) fn expire(&mut self, now: Micros) -> usize {
        while self.refused_macs.front().is_some_and(|&(_, _, at)| now.saturating_sub(at) >= PATH_EXPIRE) {
            self.refused_macs.pop_front();
        }
        let old = |p: &Path| now.saturating_sub(p.since) >= PATH_EXPIRE;
        let expired = |p: &Path| matches!(p.state, PathState::Failed | PathState::Refused) && old(p);
        if !self.list.iter().any(expired) {
            return 0;
        }
        // With every verified path expiring, the one that failed last stays.
        let keep = if self.list.iter().filter(|p| p.state.verified()).all(expired) {
            self.list.iter().filter(|p| p.state.verified()).max_by_key(|p| p.since).map(|p| p.id)
        } else {
            None
        };
        let before = self.list.len();
        self.retain(|p| !expired(p) || Some(p.id) == keep);
        before - self.list.len()
    }

    /// Keeps the paths for which `keep` holds. Frames in flight on a removed
    /// path are retransmitted on another on timeout; a pinned command on one
    /// fails then.
    pub(super) fn retain(&mut self, keep: impl Fn(&Path) -> bool) {
        self.list.retain(keep);
        self.rr = 0;
    }

    /// Path `id` answered: a failed path is in use again. True when its
    /// state changed.
    pub(super) fn answered(&mut self, id: u32, now: Micros) -> bool {
        let Some(p) = self.get_mut(id) else { return false };
        p.consecutive_timeouts = 0;
        if p.state != PathState::Failed {
            return false;
        }
        p.state = PathState::InUse;
        p.since = now;
        true
    }

    /// A frame was lost on path `id` (`timeout`: found by its timer, else
    /// by later answers): a strike against the path, which leaves the
    /// rotation after `PATH_FAIL_TIMEOUTS` in a row. True when it failed
    /// now.
    pub(super) fn strike(&mut self, id: u32, now: Micros, timeout: bool) -> bool {
        let Some(p) = self.get_mut(id) else { return false };
        p.consecutive_timeouts += 1;
        p.counters.retransmits += 1;
        p.counters.timeouts += u64::from(timeout);
        if p.state == PathState::InUse && p.consecutive_timeouts >= PATH_FAIL_TIMEOUTS {
            p.state = PathState::Failed;
            p.since = now;
            return true;
        }
        false
    }

    /// Picks the path for the next frame of `count` sectors: round-robin
    /// over the paths in use that can carry it; a failed path gets one probe
    /// frame per interval; if every such path failed, use them anyway.
    /// Unverified and refused paths are never picked.
    pub(super) fn pick(&mut self, now: Micros, count: u8) -> Option<u32> {
        let n = self.list.len();
        let mut failed = None;
        for i in 0..n {
            let idx = (self.rr + i) % n;
            let p = &mut self.list[idx];
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
            self.rr = idx + 1;
            return Some(p.id);
        }
        // None in use can carry it: a failed one, else any verified one
        // (the frame was sized for a path that has left since).
        let idx = failed.or_else(|| self.list.iter().position(|p| p.state.verified()))?;
        self.rr = idx + 1;
        Some(self.list[idx].id)
    }

    /// The target answered, on path `id`, the transmission at place `seq`
    /// of the sending order: the ones on that path `FAST_RETRANSMIT_AFTER`
    /// or more before it and not answered were lost.
    pub(super) fn overtaken(&mut self, id: u32, seq: u64, after: u64) {
        if let Some(p) = self.get_mut(id) {
            p.overtaken_below = p.overtaken_below.max((seq + 1).saturating_sub(after));
        }
    }

    /// A config response from `mac`: a small frame answered on each path to
    /// it, and everything sent to it before probe `probe` (if any) and not
    /// answered was lost. True when every path in use has answered that
    /// probe.
    pub(super) fn sign_of_life(&mut self, now: Micros, mac: Mac, probe: Option<u64>) -> bool {
        for p in self.list.iter_mut().filter(|p| p.mac == mac) {
            p.small_answered = now;
            if let Some(seq) = probe {
                p.probed_below = p.probed_below.max(seq);
            }
        }
        probe.is_some_and(|seq| self.list.iter().filter(|p| p.state == PathState::InUse).all(|p| p.probed_below >= seq))
    }

    /// A large transmission sent at `at` on path `id` was lost. It counts
    /// against its path when nothing large was answered there since it was
    /// sent; `JUMBO_LOSSES` of those in a row, with something small answered
    /// on the path after the first, hold the path to small frames
    /// (provisionally, until a small frame is answered there:
    /// `size_answered`). True when the path fell back now: the caller
    /// re-plans what is queued and in flight.
    pub(super) fn big_lost(&mut self, id: u32, at: Micros, now: Micros) -> bool {
        let Some(p) = self.get_mut(id) else { return false };
        if p.cap.is_some() || at < p.big_answered {
            return false;
        }
        if p.big_losses == 0 {
            p.big_loss_from = at;
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
        true
    }

    /// An answer came on path `id` to a frame `big` or not. A large one
    /// shows that large frames get through there (it lifts a provisional
    /// cap: true when it did); a small one confirms a provisional cap (the
    /// path's large frames were lost for their size: the event to report,
    /// counted in `counters`).
    pub(super) fn size_answered(
        &mut self,
        id: u32,
        big: bool,
        now: Micros,
        counters: &mut Counters,
    ) -> (bool, Option<Event>) {
        let Some(p) = self.get_mut(id) else { return (false, None) };
        if big {
            p.big_answered = now;
            p.big_losses = 0;
            let lift = p.cap.is_some_and(|c| !c.confirmed);
            if lift {
                p.cap = None;
            }
            return (lift, None);
        }
        p.small_answered = now;
        let Some(cap) = p.cap.as_mut().filter(|c| !c.confirmed) else { return (false, None) };
        cap.confirmed = true;
        let (from, to) = (cap.natural as usize * SECTOR, cap.sectors as usize * SECTOR);
        let lost = u64::from(std::mem::take(&mut p.big_losses));
        p.counters.lost_jumbo += lost;
        counters.lost_jumbo += lost;
        (false, Some(Event::JumboFallback { ifname: p.ifname.clone(), mac: p.mac, from, to, lost }))
    }

    /// The MTU of local link `link` is now `mtu`. Returns the interface's
    /// name when a path through it changed.
    pub(super) fn set_link_mtu(&mut self, link: usize, mtu: usize) -> Option<String> {
        let mut ifname = None;
        for p in self.list.iter_mut().filter(|p| p.link == link && p.mtu != mtu) {
            p.mtu = mtu;
            ifname.get_or_insert_with(|| p.ifname.clone());
        }
        ifname
    }

    /// Lifts every cap: large frames are tried again.
    pub(super) fn lift_caps(&mut self) {
        for p in self.list.iter_mut() {
            p.cap = None;
            p.big_losses = 0;
        }
    }

    /// Everything in flight failed: nothing sent before `next_seq` is
    /// waited for, and a cap not confirmed by a small answer (it may have
    /// come from a target that answered nothing at all) is lifted.
    pub(super) fn restart(&mut self, next_seq: u64) {
        for p in self.list.iter_mut() {
            p.overtaken_below = next_seq;
            p.probed_below = next_seq;
            if p.cap.is_some_and(|c| !c.confirmed) {
                p.cap = None;
            }
            p.big_losses = 0;
        }
    }
}

/// The path table as the initiator sees it: each change applies the paths'
/// limits again (window cap, frame size).
impl TargetIo {
    /// The paths, in the order they came.
    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    pub fn path(&self, id: u32) -> Option<&Path> {
        self.paths.get(id)
    }

    /// Adds a path in state `state` (in use, or unverified), or updates a
    /// known one from a new config response (see `Paths::add`).
    pub fn add_path(&mut self, now: Micros, offer: PathOffer, state: PathState) -> PathChange {
        let change = self.paths.add(now, offer, state);
        self.recompute();
        change
    }

    /// An unverified path passed its verification: it is in use from now
    /// on, in place of the longest-failed path if the table is full. False
    /// (and it stays unverified) when every verified path is in use.
    pub fn promote(&mut self, id: u32, now: Micros) -> bool {
        let done = self.paths.promote(id, now);
        self.recompute();
        done
    }

    /// An unverified path failed its verification: it carries nothing and
    /// leaves the table after `PATH_EXPIRE` (or when a new MAC needs room).
    pub fn refuse(&mut self, id: u32, now: Micros) {
        self.paths.refuse(id, now);
    }

    /// Takes out the paths refused, or failed, for `PATH_EXPIRE`, except the
    /// target's last verified path. Returns how many left.
    /// (Failed and refused paths have no say in the limits: nothing to
    /// recompute.)
    pub fn expire_paths(&mut self, now: Micros) -> usize {
        self.paths.expire(now)
    }

    /// Removes every path through `link` (interface no longer allowed).
    pub fn remove_link(&mut self, link: usize) {
        self.paths.retain(|p| p.link != link);
        self.recompute();
    }
}

/// The path table's own rules, on the table alone (the engine's tests in
/// `engine/tests.rs` show them at work).
#[cfg(test)]
mod tests {
    use super::*;

    const I_MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const A: Mac = Mac([2, 0, 0, 0, 0, 0xaa]);
    const B: Mac = Mac([2, 0, 0, 0, 0, 0xbb]);

    /// What `mac` offers through link `link` ("simN") at MTU `mtu`.
    fn offer(link: usize, mac: Mac, mtu: usize) -> PathOffer<'static> {
        let ifname = ["sim0", "sim1"][link];
        PathOffer { link, ifname, local_mac: I_MAC, mac, mtu, buffer_count: 16, max_sectors: 255 }
    }

    /// A table of paths in use at MTU `mtu`, one per MAC; their ids.
    fn table(mtu: usize, macs: &[Mac]) -> (Paths, Vec<u32>) {
        let mut paths = Paths::new();
        let ids = macs
            .iter()
            .map(|&mac| match paths.add(0, offer(0, mac, mtu), PathState::InUse) {
                PathChange::Added { id, .. } => id,
                other => panic!("not added: {other:?}"),
            })
            .collect();
        (paths, ids)
    }

    #[test]
    fn a_path_fails_at_its_third_loss_in_a_row_and_an_answer_starts_the_count_again() {
        let (mut paths, ids) = table(1500, &[A]);
        let id = ids[0];
        assert!(!paths.strike(id, 10, true));
        assert!(!paths.strike(id, 20, false));
        assert!(!paths.answered(id, 25), "an answer on a path in use changes no state");
        assert!(!paths.strike(id, 30, true));
        assert!(!paths.strike(id, 40, true));
        assert_eq!(paths.get(id).unwrap().state, PathState::InUse, "two in a row since the answer");
        assert!(paths.strike(id, 50, false), "the third in a row fails it now");
        let p = paths.get(id).unwrap();
        assert_eq!((p.state, p.since), (PathState::Failed, 50));
        assert_eq!((p.counters.retransmits, p.counters.timeouts), (5, 3), "timeouts only when the timer found it");
        assert!(!paths.strike(id, 60, true), "failed already: not now");
        assert!(paths.answered(id, 70), "an answer brings it back");
        assert_eq!((paths.get(id).unwrap().state, paths.get(id).unwrap().since), (PathState::InUse, 70));
    }

    #[test]
    fn when_every_path_failed_and_none_is_due_a_probe_frames_take_turns_on_them() {
        let (mut paths, ids) = table(1500, &[A, B]);
        for &id in &ids {
            for _ in 0..PATH_FAIL_TIMEOUTS {
                paths.strike(id, 0, true);
            }
        }
        // Each gets its probe frame, then none is due: they take turns.
        let picks: Vec<u32> = (0..6).map(|_| paths.pick(100, 1).unwrap()).collect();
        assert_eq!(picks, vec![ids[0], ids[1], ids[0], ids[1], ids[0], ids[1]]);
        assert!(paths.iter().all(|p| p.next_probe == 100 + PATH_PROBE_INTERVAL));
    }

    #[test]
    fn a_probe_is_answered_when_every_path_in_use_answered_it() {
        let (mut paths, ids) = table(1500, &[A, B]);
        assert!(!paths.sign_of_life(10, A, Some(5)), "B has not answered it");
        assert!(paths.sign_of_life(10, B, Some(5)));
        assert!(!paths.sign_of_life(10, B, Some(6)), "A answered only the one before");
        assert!(!paths.sign_of_life(10, A, None), "no probe: nothing answered");
        // A failed path has no say.
        for _ in 0..PATH_FAIL_TIMEOUTS {
            paths.strike(ids[1], 20, true);
        }
        assert!(paths.sign_of_life(30, A, Some(9)));
    }

    #[test]
    fn the_sixth_large_loss_in_a_row_after_a_small_answer_caps_the_path() {
        let (mut paths, ids) = table(9000, &[A]);
        let id = ids[0];
        let mut c = Counters::default();
        // Large frames sent from t=100 are lost; a small one is answered
        // at t=150, after the first of them was sent.
        assert!(!paths.big_lost(id, 100, 1000));
        paths.size_answered(id, false, 150, &mut c);
        for i in 1..JUMBO_LOSSES - 1 {
            assert!(!paths.big_lost(id, 100 + i as u64, 1000), "loss {}", i + 1);
        }
        assert!(paths.get(id).unwrap().cap.is_none());
        assert!(paths.big_lost(id, 200, 1000), "the sixth");
        let cap = paths.get(id).unwrap().cap.expect("capped");
        assert_eq!((cap.sectors, cap.natural, cap.confirmed), (FALLBACK_SECTORS, 17, false));
        assert!(!paths.big_lost(id, 300, 1000), "capped already: not counted again");
        assert_eq!(paths.get(id).unwrap().big_losses, JUMBO_LOSSES);
    }

    #[test]
    fn large_losses_without_a_small_answer_since_the_first_cap_nothing() {
        let (mut paths, ids) = table(9000, &[A]);
        let id = ids[0];
        let mut c = Counters::default();
        // The small answer came at the very time the first loss was sent:
        // not after it.
        paths.size_answered(id, false, 100, &mut c);
        for i in 0..2 * JUMBO_LOSSES {
            assert!(!paths.big_lost(id, 100 + i as u64, 1000));
        }
        assert_eq!(paths.get(id).unwrap().big_loss_from, 100, "counted from the first loss");
    }

    #[test]
    fn a_large_loss_sent_before_a_large_answer_does_not_count() {
        let (mut paths, ids) = table(9000, &[A]);
        let id = ids[0];
        let mut c = Counters::default();
        paths.size_answered(id, true, 500, &mut c);
        paths.size_answered(id, false, 600, &mut c);
        assert!(!paths.big_lost(id, 499, 1000));
        assert_eq!(paths.get(id).unwrap().big_losses, 0, "sent before a large frame got through");
        assert!(!paths.big_lost(id, 500, 1000));
        assert_eq!(paths.get(id).unwrap().big_losses, 1, "sent when it got through: counts");
    }

    #[test]
    fn a_path_whose_frames_are_small_already_is_never_capped() {
        // At MTU 1500 a frame is 2 sectors, the fallback size.
        let (mut paths, ids) = table(1500, &[A]);
        let id = ids[0];
        let mut c = Counters::default();
        paths.size_answered(id, false, 150, &mut c);
        for i in 0..2 * JUMBO_LOSSES {
            assert!(!paths.big_lost(id, 100 + i as u64, 1000));
        }
        assert!(paths.get(id).unwrap().cap.is_none());
    }

    #[test]
    fn a_large_answer_lifts_a_provisional_cap_but_not_a_confirmed_one() {
        let capped = || {
            let (mut paths, ids) = table(9000, &[A]);
            let mut c = Counters::default();
            paths.big_lost(ids[0], 100, 1000);
            paths.size_answered(ids[0], false, 150, &mut c);
            for i in 1..JUMBO_LOSSES {
                paths.big_lost(ids[0], 100 + i as u64, 1000);
            }
            assert!(paths.get(ids[0]).unwrap().cap.is_some());
            (paths, ids[0], c)
        };
        let (mut paths, id, mut c) = capped();
        assert_eq!(paths.size_answered(id, true, 2000, &mut c), (true, None), "provisional: lifted");
        assert!(paths.get(id).unwrap().cap.is_none());
        let (mut paths, id, mut c) = capped();
        let (lifted, event) = paths.size_answered(id, false, 2000, &mut c);
        assert!(!lifted && event.is_some(), "a small answer confirms it, and says so");
        assert_eq!(c.lost_jumbo, JUMBO_LOSSES as u64);
        assert_eq!(paths.size_answered(id, true, 3000, &mut c), (false, None), "confirmed: kept");
        assert!(paths.get(id).unwrap().cap.is_some());
    }

    #[test]
    fn a_link_s_mtu_changes_only_the_paths_through_it() {
        let mut paths = Paths::new();
        for (link, mac) in [(0, A), (1, B)] {
            paths.add(0, offer(link, mac, 9000), PathState::InUse);
        }
        assert_eq!(paths.set_link_mtu(0, 1500), Some("sim0".to_string()));
        assert_eq!(paths.iter().map(|p| p.mtu).collect::<Vec<_>>(), vec![1500, 9000]);
        assert_eq!(paths.set_link_mtu(0, 1500), None, "no change");
    }
}
