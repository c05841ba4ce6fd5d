//! Engine tests under a simulated clock and a simulated target: a
//! discrete-event loop with per-frame latency, a target with a bounded
//! buffer that serves frames one after another (with slow FLUSH CACHE,
//! stalls, and writes held back and executed late on demand), and seeded
//! loss and duplication. Everything is deterministic; each test's seed is
//! printed.

use super::*;
use crate::link::fault::Rng;
use crate::sim::{Backing, SimConfig, SimModel};
use crate::wire::{Body, Identify, Repr};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex};

const T_MAC: Mac = Mac([2, 0, 0, 0, 0, 0xaa]);
const T_MAC2: Mac = Mac([2, 0, 0, 0, 0, 0xbb]);
const I_MAC: Mac = Mac([2, 0, 0, 0, 0, 0x11]);

struct Net {
    now: Micros,
    rng: Rng,
    loss: f64,
    dup: f64,
    /// Per-path (by target MAC) loss, for multipath tests.
    dead_mac: Option<Mac>,
    /// Replies from this target MAC take this much longer (a slower path).
    slow_mac: Option<(Mac, Micros)>,
    latency: Micros,
    service: Micros,
    bufcnt: usize,
    busy_until: Micros,
    queue: VecDeque<Micros>,
    /// The target behind the network (it answers from the MAC a frame was sent to).
    target: SimModel,
    replies: BinaryHeap<Reverse<(Micros, u64, Vec<u8>)>>,
    seq: u64,
    overflow_drops: u64,
    sent_per_mac: std::collections::HashMap<Mac, u64>,
    silent: bool,
    /// FLUSH CACHE takes the target this long.
    flush_service: Micros,
    /// A share of frames takes `stall` longer (the target pauses: a seek).
    stall_rate: f64,
    stall: Micros,
    /// A share of write frames is set aside and executed (and answered)
    /// `hold` later, after frames that arrived behind it.
    hold_rate: f64,
    hold: Micros,
    /// Set-aside frames, by the time they are executed.
    aside: BinaryHeap<Reverse<(Micros, u64, Vec<u8>)>>,
    /// Most frames the target held at once (queued, in service or set aside).
    max_held: usize,
    /// Per sector, the round of the newest acknowledged write (tests that
    /// write the round number first in each sector set it), and how many
    /// times the target executed an older write over it.
    acked_round: Vec<u32>,
    older_over_newer: u32,
    probes: u64,
    /// The next replies to ATA frames are lost.
    lose_replies: u32,
    /// A share of replies leaves the target `reply_stall` late, while the
    /// target goes on with the next frames (out of order).
    reply_stall_rate: f64,
    reply_stall: Micros,
    /// The target's network answers (config queries) but its disk never
    /// completes an ATA command: every ATA frame is swallowed.
    hang_io: bool,
    /// ATA frames for this LBA are swallowed (a spot on the disk that hangs).
    stuck_lba: Option<u64>,
    /// A switch between the hosts forwards no frame longer than this
    /// (requests and replies alike): a jumbo black hole.
    max_frame: Option<usize>,
    /// When each frame (probes too) left the initiator, and the longest
    /// frame sent.
    sent_at: Vec<Micros>,
    longest_sent: usize,
}

impl Net {
    fn new(sectors: usize, bufcnt: usize, seed: u64) -> Net {
        Net {
            now: 0,
            rng: Rng::new(seed),
            loss: 0.0,
            dup: 0.0,
            dead_mac: None,
            slow_mac: None,
            latency: 50,
            service: 20,
            bufcnt,
            busy_until: 0,
            queue: VecDeque::new(),
            target: SimModel::new(
                SimConfig { max_sectors: 255, ..SimConfig::new(0, 1, T_MAC) },
                Backing::Mem((0..sectors * SECTOR).map(|i| (i * 7 + i / 511) as u8).collect()),
            ),
            replies: BinaryHeap::new(),
            seq: 0,
            overflow_drops: 0,
            sent_per_mac: Default::default(),
            silent: false,
            flush_service: 20,
            stall_rate: 0.0,
            stall: 0,
            hold_rate: 0.0,
            hold: 0,
            aside: BinaryHeap::new(),
            max_held: 0,
            acked_round: vec![0; sectors],
            older_over_newer: 0,
            probes: 0,
            lose_replies: 0,
            reply_stall_rate: 0.0,
            reply_stall: 0,
            hang_io: false,
            stuck_lba: None,
            max_frame: None,
            sent_at: Vec::new(),
            longest_sent: 0,
        }
    }

    /// Whether the switch forwards a frame of `len` bytes.
    fn fits(&self, len: usize) -> bool {
        self.max_frame.is_none_or(|m| len <= m)
    }

    /// Sends what the engine queued, in order.
    fn send_all(&mut self, out: &mut Outbox) {
        for t in out.drain(..) {
            self.send(&[&t.head[..], t.data()].concat());
        }
    }

    /// The initiator's probe (a query config) goes through the network and
    /// the target's queue like a frame; its answer is an empty reply.
    fn send_probe(&mut self) {
        self.probes += 1;
        self.sent_at.push(self.now);
        if self.silent || self.rng.chance(self.loss) {
            return;
        }
        let arrive = self.now + self.latency;
        let done = arrive.max(self.busy_until) + self.service;
        self.busy_until = done;
        if !self.rng.chance(self.loss) {
            self.seq += 1;
            self.replies.push(Reverse((done + self.latency, self.seq, Vec::new())));
        }
    }

    /// A frame leaves the initiator now: the target serves it (or the
    /// network or the target's full buffer drops it).
    fn send(&mut self, f: &[u8]) {
        let mac = Mac::from_slice(&f[0..6]);
        *self.sent_per_mac.entry(mac).or_default() += 1;
        self.sent_at.push(self.now);
        self.longest_sent = self.longest_sent.max(f.len());
        let stuck = self.stuck_lba.is_some_and(
            |lba| matches!(Repr::parse(f), Ok(Repr { body: Body::Ata(a), .. }) if a.lba & 0xFFFF_FFFF_FFFF == lba),
        );
        if self.silent
            || self.rng.chance(self.loss)
            || Some(mac) == self.dead_mac
            || self.hang_io
            || stuck
            || !self.fits(f.len())
        {
            return;
        }
        let arrive = self.now + self.latency;
        while self.queue.front().is_some_and(|&d| d <= arrive) {
            self.queue.pop_front();
        }
        let aside = self.aside.iter().filter(|r| r.0 .0 > arrive).count();
        if self.queue.len() + aside >= self.bufcnt {
            self.overflow_drops += 1;
            return;
        }
        self.max_held = self.max_held.max(self.queue.len() + aside + 1);
        let write = f[wire::field::AFLAGS] & wire::AFLAG_WRITE != 0;
        if write && self.rng.chance(self.hold_rate) {
            self.seq += 1;
            self.aside.push(Reverse((arrive + self.hold, self.seq, f.to_vec())));
            return;
        }
        let cmd = f[wire::field::CMD_STATUS];
        let mut service =
            if matches!(cmd, wire::ATA_FLUSH | wire::ATA_FLUSH_EXT) { self.flush_service } else { self.service };
        if self.rng.chance(self.stall_rate) {
            service += self.stall;
        }
        let start = arrive.max(self.busy_until);
        let done = start + service;
        self.busy_until = done;
        self.queue.push_back(done);
        self.execute(mac, f, done);
    }

    /// The target executes a frame (addressed to `mac`) and answers at `done`.
    fn execute(&mut self, mac: Mac, f: &[u8], done: Micros) {
        if let Ok(Repr { body: Body::Ata(a), .. }) = Repr::parse(f) {
            if a.is_write() {
                let lba = a.lba & 0xFFFF_FFFF_FFFF;
                for (i, sector) in a.data.chunks_exact(SECTOR).take(a.sector_count as usize).enumerate() {
                    let round = u32::from_le_bytes(sector[..4].try_into().unwrap());
                    if self.acked_round.get(lba as usize + i).is_some_and(|&r| round < r) {
                        self.older_over_newer += 1;
                    }
                }
            }
        }
        self.target.cfg.mac = mac;
        let reply = self.target.handle(f).expect("the target answers every ATA frame the engine sends");
        if self.lose_replies > 0 {
            self.lose_replies -= 1;
            return;
        }
        if !self.fits(reply.len()) {
            return;
        }
        let done = if self.rng.chance(self.reply_stall_rate) { done + self.reply_stall } else { done };
        let done = done + self.slow_mac.filter(|(m, _)| *m == mac).map_or(0, |(_, d)| d);
        let copies = if self.rng.chance(self.dup) { 2 } else { 1 };
        for _ in 0..copies {
            if self.rng.chance(self.loss) {
                continue;
            }
            self.seq += 1;
            self.replies.push(Reverse((done + self.latency, self.seq, reply.clone())));
        }
    }
}

/// What a config response from `mac` offers through link `link` ("simN").
fn offer(link: usize, mac: Mac, mtu: usize, bufcnt: u16, max: u8) -> PathOffer<'static> {
    const NAMES: [&str; 4] = ["sim0", "sim1", "sim2", "sim3"];
    PathOffer { link, ifname: NAMES[link], local_mac: I_MAC, mac, mtu, buffer_count: bufcnt, max_sectors: max }
}

/// Adds a path in use through link `link` ("simN") to `mac`.
fn in_use(t: &mut TargetIo, link: usize, mac: Mac, mtu: usize, bufcnt: u16, max: u8) -> PathChange {
    t.add_path(0, offer(link, mac, mtu, bufcnt, max), PathState::InUse)
}

/// Adds an unverified path to `mac` (a new MAC of a known target); returns its id.
fn unverified(t: &mut TargetIo, now: Micros, mac: Mac, mtu: usize, bufcnt: u16, max: u8) -> u32 {
    match t.add_path(now, offer(0, mac, mtu, bufcnt, max), PathState::Unverified) {
        PathChange::Added { id, state: PathState::Unverified } => id,
        other => panic!("unverified path not added: {other:?}"),
    }
}

type Results = Arc<Mutex<Vec<(usize, IoResult)>>>;

fn done_into(results: &Results, id: usize) -> IoDone {
    let r = results.clone();
    Box::new(move |res| r.lock().unwrap().push((id, res)))
}

struct Harness {
    t: TargetIo,
    net: Net,
    results: Results,
    deadsecs: u32,
    max_nout: u32,
    min_cwnd_seen: u32,
    cwnd_trace: Vec<u32>,
    dead: bool,
    events: Vec<Event>,
}

impl Harness {
    fn new(sectors: usize, bufcnt: u16, maxout: u16, mtu: usize, seed: u64) -> Harness {
        let mut t = TargetIo::new(0, 1, maxout);
        in_use(&mut t, 0, T_MAC, mtu, bufcnt, 255);
        Harness {
            t,
            net: Net::new(sectors, bufcnt as usize, seed),
            results: Arc::new(Mutex::new(Vec::new())),
            deadsecs: 180,
            max_nout: 0,
            min_cwnd_seen: u32::MAX,
            cwnd_trace: Vec::new(),
            dead: false,
            events: Vec::new(),
        }
    }

    fn read(&mut self, id: usize, lba: u64, n: u32) {
        let d = done_into(&self.results, id);
        let mut out = Outbox::new();
        self.t.submit_read(self.net.now, lba, n, d, &mut out);
        self.net.send_all(&mut out);
        self.after();
    }

    fn write(&mut self, id: usize, lba: u64, data: Vec<u8>) {
        let d = done_into(&self.results, id);
        let mut out = Outbox::new();
        self.t.submit_write(self.net.now, lba, data, d, &mut out);
        self.net.send_all(&mut out);
        self.after();
    }

    fn flush(&mut self, id: usize) {
        let d = done_into(&self.results, id);
        let mut out = Outbox::new();
        self.t.submit_cmd(self.net.now, Op::Flush, d, &mut out, false);
        self.net.send_all(&mut out);
        self.after();
    }

    fn after(&mut self) {
        // (Through the accessors the status files read.)
        assert_eq!(self.t.held(), self.t.flight.recount_held(), "the count of held transmissions drifted");
        assert!(self.t.held() <= self.t.max_window(), "more held than the window allows: {}", self.t.held());
        self.max_nout = self.max_nout.max(self.t.flight.nout);
        self.min_cwnd_seen = self.min_cwnd_seen.min(self.t.window.cwnd);
        self.events.extend(self.t.take_events());
        for (done, res) in self.t.take_completed() {
            done(res);
        }
    }

    /// Runs the event loop until every request finished or `limit` passed.
    fn run(&mut self, want: usize, limit: Micros) {
        let end = self.net.now + limit;
        while self.results.lock().unwrap().len() < want && self.net.now < end && !self.dead {
            let next_reply = self.net.replies.peek().map(|r| r.0 .0).unwrap_or(Micros::MAX);
            let next_aside = self.net.aside.peek().map(|r| r.0 .0).unwrap_or(Micros::MAX);
            let next_tick = (self.net.now / 1000 + 1) * 1000;
            self.net.now = next_reply.min(next_tick).min(next_aside);
            while self.net.aside.peek().is_some_and(|r| r.0 .0 <= self.net.now) {
                let Reverse((at, _, f)) = self.net.aside.pop().unwrap();
                self.net.execute(Mac::from_slice(&f[0..6]), &f, at);
            }
            while self.net.replies.peek().is_some_and(|r| r.0 .0 <= self.net.now) {
                let Reverse((_, _, f)) = self.net.replies.pop().unwrap();
                if f.is_empty() {
                    self.t.on_sign_of_life(self.net.now, T_MAC);
                    continue;
                }
                let r = Repr::parse(&f).unwrap();
                let Body::Ata(a) = r.body else { unreachable!() };
                let mut out = Outbox::new();
                self.t.on_reply(self.net.now, r.header.src, r.header.tag, Ok(&a), &mut out);
                self.net.send_all(&mut out);
                self.after();
            }
            if self.net.now == next_tick {
                let mut out = Outbox::new();
                let t = self.t.on_timer(self.net.now, self.deadsecs, &mut out);
                let dead = t.dead;
                self.net.send_all(&mut out);
                if t.probe {
                    self.net.send_probe();
                }
                if dead {
                    self.t.fail_all(IoError::Dead);
                    self.dead = true;
                }
                self.after();
                self.cwnd_trace.push(self.t.window.cwnd);
            }
        }
    }

    fn result(&self, id: usize) -> IoResult {
        self.results.lock().unwrap().iter().find(|(i, _)| *i == id).map(|(_, r)| r.clone()).expect("finished")
    }
}

#[test]
fn a_frame_carries_as_many_sectors_as_fit_after_its_36_byte_header() {
    // The MTU counts what follows the 14-byte Ethernet header: 10 bytes of
    // AoE header, 12 of ATA header, then the sectors.
    for (mtu, sectors) in [(1045, 1), (1046, 2), (1557, 2), (1558, 3), (8725, 16), (8726, 17), (9000, 17)] {
        assert_eq!(frame_sectors(mtu, 255), sectors, "MTU {mtu}");
    }
    assert_eq!(frame_sectors(9000, 8), 8, "the target's maximum");
    assert_eq!(frame_sectors(9000, 0), 1, "at least one");
    assert_eq!(frame_sectors(100, 255), 1, "at least one");
    assert_eq!(frame_sectors(200_000, 255), 255, "at most 255");
}

#[test]
fn frame_size_follows_mtu_and_target_maximum() {
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 1500, 16, 255);
    assert_eq!(t.sectors_per_frame, 2);
    assert_eq!(t.payload(), 1024);
    in_use(&mut t, 1, T_MAC2, 9000, 16, 255);
    assert_eq!(t.sectors_per_frame, 2, "smallest path MTU wins");
    t.remove_link(0);
    assert_eq!(t.sectors_per_frame, 17);
    assert!(matches!(in_use(&mut t, 1, T_MAC2, 9000, 16, 8), PathChange::Updated { state: PathState::InUse, .. }));
    assert_eq!(t.sectors_per_frame, 8);
}

#[test]
fn only_paths_in_use_set_the_window_and_payload() {
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 9000, 64, 17);
    assert_eq!((t.window.max, t.sectors_per_frame), (64, 17));
    // A path in use with a huge buffer count cannot raise the window; a
    // small one lowers it.
    in_use(&mut t, 0, Mac([2, 0, 0, 0, 1, 1]), 9000, 65535, 255);
    assert_eq!(t.window.max, 64);
    // A new MAC claiming a buffer count of 1 and 1 sector per frame (a
    // forged config response) changes nothing while it is unverified...
    let forged = unverified(&mut t, 0, Mac([2, 0, 0, 0, 1, 2]), 9000, 1, 1);
    assert_eq!((t.window.max, t.sectors_per_frame), (64, 17));
    // ...nor once refused.
    t.refuse(forged, 0);
    assert_eq!(t.path(forged).unwrap().state, PathState::Refused);
    assert_eq!((t.window.max, t.sectors_per_frame), (64, 17));
    // A verified one does; once it fails it no longer does.
    let small = unverified(&mut t, 0, Mac([2, 0, 0, 0, 1, 3]), 1500, 4, 255);
    assert!(t.promote(small, 0));
    assert_eq!((t.window.max, t.sectors_per_frame), (4, 2));
    let p = t.paths.get_mut(small).unwrap();
    p.state = PathState::Failed;
    t.recompute();
    assert_eq!((t.window.max, t.sectors_per_frame), (64, 17));
    // With no path in use at all, the limits stay as they were.
    for p in t.paths.iter_mut() {
        p.state = PathState::Failed;
    }
    t.recompute();
    assert_eq!((t.window.max, t.sectors_per_frame), (64, 17));
}

#[test]
fn the_path_table_is_bounded_and_cannot_be_filled_for_good() {
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 1500, 16, 255);
    // Candidates (unverified or refused) have their own room: eight forged
    // MACs fill it, a ninth is turned away...
    let forged: Vec<u32> = (0..MAX_CANDIDATES as u8)
        .map(|i| unverified(&mut t, i as u64, Mac([2, 9, 0, 0, 0, i]), 1500, 16, 255))
        .collect();
    let ninth = Mac([2, 9, 0, 0, 1, 0]);
    assert_eq!(t.add_path(10, offer(0, ninth, 1500, 16, 255), PathState::Unverified), PathChange::Full);
    // ...until one is refused: the oldest refused one makes room.
    t.refuse(forged[3], 20);
    t.refuse(forged[1], 30);
    let id = unverified(&mut t, 40, ninth, 1500, 16, 255);
    assert!(t.path(forged[3]).is_none() && t.path(forged[1]).is_some() && t.path(id).is_some());
    // The refused MAC that made room is remembered: claiming the target
    // again does not start another verification (until PATH_EXPIRE).
    let again = |t: &mut TargetIo, now| {
        t.add_path(now, offer(0, Mac([2, 9, 0, 0, 0, 3]), 1500, 16, 255), PathState::Unverified)
    };
    assert_eq!(again(&mut t, 45), PathChange::Refused);
    t.expire_paths(20 + PATH_EXPIRE);
    t.refuse(forged[5], 46);
    assert!(matches!(again(&mut t, 20 + PATH_EXPIRE), PathChange::Added { state: PathState::Unverified, .. }));
    // Known MACs update their entry, whatever the table holds.
    assert!(matches!(in_use(&mut t, 0, T_MAC, 1500, 16, 255), PathChange::Updated { state: PathState::InUse, .. }));
    // Verified paths: eight at most; a ninth verified one waits...
    for i in 1..MAX_PATHS as u8 {
        in_use(&mut t, 0, Mac([2, 8, 0, 0, 0, i]), 1500, 16, 255);
    }
    assert_eq!(t.paths.iter().filter(|p| p.state.verified()).count(), MAX_PATHS);
    assert!(!t.promote(id, 50), "no room: every verified path is in use");
    assert_eq!(t.path(id).unwrap().state, PathState::Unverified);
    // ...until a path fails: then it takes the place of the one failed longest.
    for (i, since) in [(2usize, 60), (5, 55)] {
        t.paths.iter_mut().filter(|p| p.state.verified()).nth(i).unwrap().since = since;
        t.paths.iter_mut().filter(|p| p.state.verified()).nth(i).unwrap().state = PathState::Failed;
    }
    let longest = t.paths.iter().filter(|p| p.state == PathState::Failed).min_by_key(|p| p.since).unwrap().id;
    assert!(t.promote(id, 70));
    assert_eq!(t.path(id).unwrap().state, PathState::InUse);
    assert!(t.path(longest).is_none(), "the path failed longest left");
    assert_eq!(t.paths.iter().filter(|p| p.state.verified()).count(), MAX_PATHS);
    // Failed and refused paths leave after PATH_EXPIRE...
    let refused = t.paths.iter().filter(|p| p.state == PathState::Refused).count();
    assert_eq!(t.expire_paths(100 + PATH_EXPIRE), refused + 1);
    assert!(t.paths.iter().all(|p| p.state != PathState::Refused && p.state != PathState::Failed));
    // ...except a target's last verified path.
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 1500, 16, 255);
    in_use(&mut t, 1, T_MAC2, 1500, 16, 255);
    for (p, since) in t.paths.iter_mut().zip([0, 10]) {
        p.state = PathState::Failed;
        p.since = since;
    }
    assert_eq!(t.expire_paths(10 + PATH_EXPIRE), 1);
    assert_eq!(t.paths.len(), 1);
    assert_eq!(t.paths[0].mac, T_MAC2, "the path that failed last stays");
}

#[test]
fn window_starts_at_half_and_slow_starts_to_the_buffer_count() {
    let mut h = Harness::new(8192, 16, 128, 1500, 1);
    assert_eq!(h.t.max_window(), 16);
    assert_eq!(h.t.window(), 8);
    h.read(0, 0, 4096);
    assert_eq!(h.t.flight.nout, 8, "initial window is half the buffer count");
    h.run(1, 10_000_000);
    let data = h.result(0).expect("read ok");
    assert_eq!(data, h.net.target.disk()[..4096 * SECTOR]);
    assert_eq!(h.t.window.cwnd, 16);
    assert_eq!(h.max_nout, 16, "never more than the buffer count in flight");
    assert_eq!(h.net.overflow_drops, 0);
    assert_eq!(h.t.counters.retransmits, 0);
    // maxout caps the window below the buffer count.
    let h2 = Harness::new(64, 64, 10, 1500, 1);
    assert_eq!(h2.t.window.max, 10);
}

#[test]
fn window_halves_on_loss_and_recovers_when_loss_stops() {
    let mut h = Harness::new(20000, 32, 128, 9000, 7);
    h.net.loss = 0.05;
    for i in 0..20 {
        h.read(i, i as u64 * 1000, 1000);
    }
    h.run(20, 120_000_000);
    for i in 0..20 {
        let d = h.result(i).expect("every read completes despite 5% loss");
        assert_eq!(d, h.net.target.disk()[i * 1000 * SECTOR..(i + 1) * 1000 * SECTOR]);
    }
    assert!(h.t.counters.retransmits > 0);
    assert!(h.min_cwnd_seen <= 16, "a loss at least halves the window: {}", h.min_cwnd_seen);
    // Loss stops: the window grows back to the maximum.
    h.net.loss = 0.0;
    h.min_cwnd_seen = u32::MAX;
    h.read(100, 0, 20000);
    h.run(21, 120_000_000);
    assert!(h.result(100).is_ok());
    assert_eq!(h.t.window.cwnd, 32, "window recovered: {:?}", &h.cwnd_trace[h.cwnd_trace.len().saturating_sub(20)..]);
}

#[test]
fn writes_survive_loss_and_duplicate_replies() {
    let mut h = Harness::new(4096, 16, 128, 1500, 99);
    h.net.loss = 0.05;
    h.net.dup = 0.05;
    let mut expect = h.net.target.disk().to_vec();
    let mut rng = Rng::new(5);
    for i in 0..50 {
        let lba = rng.below(4000);
        let n = 1 + rng.below(64) as usize;
        let n = n.min(4096 - lba as usize);
        let data: Vec<u8> = (0..n * SECTOR).map(|_| rng.next_u64() as u8).collect();
        // Non-overlapping in time: wait for each write (as the range lock does).
        h.write(i, lba, data.clone());
        h.run(i + 1, 60_000_000);
        assert!(h.result(i).is_ok());
        expect[lba as usize * SECTOR..lba as usize * SECTOR + data.len()].copy_from_slice(&data);
    }
    assert_eq!(h.net.target.disk(), expect);
    assert!(h.t.counters.unexpected > 0, "duplicate replies are counted, not applied twice");
    assert_eq!(h.results.lock().unwrap().len(), 50, "each request completes exactly once");
}

#[test]
fn dead_after_deadsecs_without_progress_and_not_before() {
    let mut h = Harness::new(64, 16, 128, 1500, 3);
    h.deadsecs = 5;
    h.net.silent = true;
    // The read's first transmission is kept, to be answered after deadsecs.
    let mut out = Outbox::new();
    h.t.submit_read(h.net.now, 0, 8, done_into(&h.results, 0), &mut out);
    let first = [&out[0].head[..], out[0].data()].concat();
    h.net.send_all(&mut out);
    h.after();
    h.run(1, 4_900_000);
    assert!(!h.dead, "not dead before deadsecs");
    assert!(h.t.counters.retransmits > 0);
    h.run(1, 200_000);
    assert!(h.dead, "dead at deadsecs");
    assert_eq!(h.result(0), Err(IoError::Dead));
    assert_eq!(h.t.flight.nout, 0);
    // The target answers late, to a tag the failure cleared: the reply is
    // unexpected (counted, not applied, nothing sent), not a crash, and the
    // read is not completed a second time.
    let reply = h.net.target.handle(&first).expect("the target answers");
    let r = Repr::parse(&reply).unwrap();
    let Body::Ata(a) = r.body else { unreachable!() };
    let mut out = Outbox::new();
    let o = h.t.on_reply(h.net.now, r.header.src, r.header.tag, Ok(&a), &mut out);
    assert_eq!(o, ReplyOutcome::Unexpected);
    assert!(out.is_empty(), "nothing sent for a late reply");
    assert_eq!(h.t.counters.unexpected, 1);
    h.after();
    assert_eq!(h.results.lock().unwrap().len(), 1, "the read completed once");
    assert!(!h.t.busy());
}

#[test]
fn deadsecs_zero_retries_forever() {
    let mut h = Harness::new(64, 16, 128, 1500, 3);
    h.deadsecs = 0;
    h.net.silent = true;
    h.read(0, 0, 2);
    h.run(1, 30_000_000);
    assert!(!h.dead);
    h.net.silent = false;
    h.run(1, 10_000_000);
    assert!(h.result(0).is_ok());
}

#[test]
fn ata_error_fails_only_the_affected_request() {
    let mut h = Harness::new(100, 16, 128, 1500, 3);
    h.read(0, 90, 20); // past the end: IDNF on the last frames
    h.read(1, 0, 20);
    h.run(2, 10_000_000);
    match h.result(0) {
        Err(IoError::Ata { status, error }) => {
            assert_eq!(status & wire::ATA_STATUS_FAIL, 1);
            assert_eq!(error, wire::ATA_ERR_IDNF);
        }
        other => panic!("expected ATA error, got {other:?}"),
    }
    assert_eq!(h.result(1).unwrap(), h.net.target.disk()[..20 * SECTOR]);
}

#[test]
fn replies_from_unknown_macs_and_stale_tags_are_not_applied() {
    let mut h = Harness::new(64, 16, 128, 1500, 3);
    h.net.latency = 1_000_000; // hold the real reply back
    h.read(0, 0, 2);
    let (tag, ata_bytes) = {
        let Reverse((_, _, f)) = h.net.replies.peek().unwrap().clone();
        (Repr::parse(&f).unwrap().header.tag, f)
    };
    let mut forged = ata_bytes.clone();
    forged[6..12].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
    forged[36..36 + 1024].fill(0xEE);
    let r = Repr::parse(&forged).unwrap();
    let Body::Ata(a) = r.body else { unreachable!() };
    let mut out = Outbox::new();
    let o = h.t.on_reply(h.net.now, r.header.src, tag, Ok(&a), &mut out);
    assert_eq!(o, ReplyOutcome::UnknownSource);
    // Nor once the MAC is a path of the target, while it is not verified.
    let id = unverified(&mut h.t, h.net.now, r.header.src, 1500, 16, 255);
    assert_eq!(h.t.on_reply(h.net.now, r.header.src, tag, Ok(&a), &mut out), ReplyOutcome::UnknownSource);
    h.t.refuse(id, h.net.now);
    assert_eq!(h.t.on_reply(h.net.now, r.header.src, tag, Ok(&a), &mut out), ReplyOutcome::UnknownSource);
    // Unknown tag from the right MAC.
    let o = h.t.on_reply(h.net.now, T_MAC, tag ^ 0x0100_0000, Ok(&a), &mut out);
    assert!(out.is_empty(), "nothing sent for ignored replies");
    assert_eq!(o, ReplyOutcome::Unexpected);
    assert_eq!(h.t.flight.nout, 1);
    h.run(1, 5_000_000);
    assert_eq!(h.result(0).unwrap(), h.net.target.disk()[..1024], "forged data never applied");
}

#[test]
fn multipath_round_robin_then_failover_to_the_working_path() {
    let mut h = Harness::new(8192, 16, 128, 1500, 11);
    in_use(&mut h.t, 1, T_MAC2, 1500, 16, 255);
    h.read(0, 0, 2000);
    h.run(1, 10_000_000);
    assert!(h.result(0).is_ok());
    let a = h.net.sent_per_mac[&T_MAC];
    let b = h.net.sent_per_mac[&T_MAC2];
    assert!(a.abs_diff(b) <= 1, "frames spread evenly: {a} vs {b}");
    // Path 2 dies: everything still completes, through path 1.
    h.net.dead_mac = Some(T_MAC2);
    h.read(1, 0, 4000);
    h.run(2, 60_000_000);
    assert_eq!(h.result(1).unwrap(), h.net.target.disk()[..4000 * SECTOR]);
    assert!(h.t.paths[1].failed(), "dead path left the rotation");
    assert!(!h.t.paths[0].failed());
    let before = h.net.sent_per_mac[&T_MAC2];
    // The dead path is re-probed about once a second, and comes back.
    h.net.dead_mac = None;
    let t0 = h.net.now;
    let mut id = 2;
    while h.t.paths[1].failed() && h.net.now < t0 + 5_000_000 {
        h.read(id, 0, 200);
        id += 1;
        h.run(id, 10_000_000);
        h.net.now += 10_000; // the application pauses between reads
    }
    assert!(!h.t.paths[1].failed(), "path returned after a successful probe");
    assert!(h.net.now - t0 <= 1_500_000, "re-probed within about a second");
    h.read(id, 0, 8000);
    h.run(id + 1, 60_000_000);
    assert!(h.result(id).is_ok());
    assert!(h.net.sent_per_mac[&T_MAC2] > before + 100, "traffic back on the returned path");
}

/// Sends a pinned IDENTIFY on path `id`; returns its tag.
fn pinned_identify(h: &mut Harness, req: usize, id: u32) -> u32 {
    let mut out = Outbox::new();
    h.t.submit_pinned_identify(h.net.now, id, done_into(&h.results, req), &mut out);
    assert_eq!(out.len(), 1, "sent at once, window or not");
    let tag = u32::from_be_bytes(out[0].head[20..24].try_into().unwrap());
    h.net.send_all(&mut out);
    h.after();
    tag
}

#[test]
fn a_new_path_carries_only_its_pinned_identify_and_leaves_the_target_alone() {
    let mut h = Harness::new(20_000, 16, 128, 9000, seeded("pinned identify", 41));
    // A new MAC claiming one buffer and one sector per frame.
    let id = unverified(&mut h.t, 0, T_MAC2, 9000, 1, 1);
    for i in 0..100 {
        h.read(i, i as u64 * 100, 100);
    }
    let tag = pinned_identify(&mut h, 1000, id);
    // Its answer counts only from its own MAC.
    let mut request = [0u8; ATA_HDR_LEN];
    let (dst, src, cmd) = (T_MAC, I_MAC, wire::ATA_IDENTIFY);
    wire::AtaHeader { dst, src, shelf: 0, slot: 1, tag, aflags: 0, sector_count: 1, cmd, lba: 0 }.emit(&mut request);
    let forged = SimModel::new(SimConfig::new(0, 1, T_MAC), Backing::Junk { sectors: 8, byte: 0 })
        .handle(&request)
        .expect("an IDENTIFY answer");
    let r = Repr::parse(&forged).unwrap();
    let Body::Ata(a) = r.body else { unreachable!() };
    let mut out = Outbox::new();
    assert_eq!(h.t.on_reply(h.net.now, T_MAC, tag, Ok(&a), &mut out), ReplyOutcome::UnknownSource);
    h.run(101, 30_000_000);
    for i in 0..100 {
        assert_eq!(h.result(i).unwrap(), h.net.target.disk()[i * 100 * SECTOR..(i + 1) * 100 * SECTOR]);
    }
    let ident = Identify::parse(&h.result(1000).expect("the new path answered")).unwrap();
    assert_eq!(ident.sectors, 20_000);
    assert_eq!(h.net.sent_per_mac[&T_MAC2], 1, "nothing but the IDENTIFY on the unverified path");
    assert_eq!(h.t.counters.frames_sent, h.net.sent_per_mac[&T_MAC], "the IDENTIFY is not the target's frame");
    assert_eq!((h.t.window.max, h.t.sectors_per_frame), (16, 17), "its config did not set the limits");
    assert_eq!(h.t.path(id).unwrap().counters.frames_received, 1);
    assert_eq!(h.t.path(id).unwrap().state, PathState::Unverified, "the engine does not judge it");
}

#[test]
fn a_pinned_command_has_no_dead_line_only_its_timeouts() {
    let mut h = Harness::new(20_000, 16, 128, 1500, seeded("pinned deadline", 72));
    let id = unverified(&mut h.t, 0, T_MAC2, 1500, 1, 1);
    h.net.silent = true;
    let t0 = h.net.now;
    pinned_identify(&mut h, 0, id);
    assert_eq!(h.t.poll_timeout(2), Some(t0 + INITIAL_RTO));
    // Resent at 1 s: its next timeout, 2 s later, is all the timer waits
    // for; deadsecs (2 s from the first transmission) does not apply.
    h.net.now = t0 + INITIAL_RTO;
    let mut out = Outbox::new();
    h.t.on_timer(h.net.now, 2, &mut out);
    assert_eq!(out.len(), 1, "resent");
    assert_eq!(h.t.poll_timeout(2), Some(t0 + 3 * INITIAL_RTO));
}

#[test]
fn a_reply_whose_tag_is_outside_the_engine_s_space_is_counted_unexpected() {
    let mut h = Harness::new(8192, 16, 128, 1500, seeded("foreign tag", 73));
    h.read(0, 0, 2);
    let mut out = Outbox::new();
    let a = AtaRepr { aflags: 0, err_feature: 0, sector_count: 2, cmd_status: 0x40, lba: 0, data: &[0u8; 1024] };
    for tag in [1 << 30, 0x8000_0001] {
        assert_eq!(h.t.on_reply(h.net.now, T_MAC, tag, Ok(&a), &mut out), ReplyOutcome::Unexpected);
    }
    assert_eq!(h.t.counters.unexpected, 2);
    assert!(out.is_empty() && h.t.busy(), "the read is still waiting for its own answer");
}

#[test]
fn commands_without_an_lba_carry_none_on_a_lba28_target_and_flush_ext_its_flag() {
    let mut h = Harness::new(20_000, 16, 128, 1500, seeded("lba28 commands", 74));
    h.t.lba48 = false;
    let mut out = Outbox::new();
    h.t.submit_cmd(h.net.now, Op::Identify, done_into(&h.results, 0), &mut out, false);
    h.t.submit_cmd(h.net.now, Op::Flush, done_into(&h.results, 1), &mut out, false);
    h.t.submit_cmd(h.net.now, Op::Flush, done_into(&h.results, 2), &mut out, true);
    let flags_and_lba = |t: &Transmit| (t.head[wire::field::AFLAGS], t.head[wire::field::LBA].to_vec());
    assert_eq!(out.len(), 3);
    assert_eq!(flags_and_lba(&out[0]), (0, vec![0; 6]), "IDENTIFY");
    assert_eq!(flags_and_lba(&out[1]), (0, vec![0; 6]), "FLUSH CACHE");
    assert_eq!(flags_and_lba(&out[2]), (wire::AFLAG_EXT, vec![0; 6]), "FLUSH CACHE EXT");
    // A read there has the LBA28 form: 0xE0 in the device byte.
    let mut out = Outbox::new();
    h.t.submit_read(h.net.now, 5, 1, done_into(&h.results, 3), &mut out);
    assert_eq!(flags_and_lba(&out[0]), (0, vec![5, 0, 0, 0xE0, 0, 0]), "READ SECTORS");
}

#[test]
fn a_silent_new_path_fails_after_three_tries_and_costs_the_target_nothing() {
    let mut h = Harness::new(20_000, 16, 128, 9000, seeded("silent pinned", 42));
    h.deadsecs = 1;
    for i in 0..50 {
        h.read(i, i as u64 * 100, 100);
    }
    h.run(50, 10_000_000);
    let cwnd = h.t.window.cwnd;
    h.net.dead_mac = Some(T_MAC2);
    let id = unverified(&mut h.t, h.net.now, T_MAC2, 9000, 16, 17);
    let t0 = h.net.now;
    pinned_identify(&mut h, 1000, id);
    assert!(!h.t.busy() && h.t.needs_timer(), "a pinned command is timed but does not make the target busy");
    h.min_cwnd_seen = u32::MAX;
    h.run(51, 10_000_000);
    assert_eq!(h.result(1000), Err(IoError::Timeout));
    assert!(h.net.now - t0 > 1_000_000, "given over a second ({} us)", h.net.now - t0);
    assert!(!h.dead, "a silent new path is not the target going dead (deadsecs 1)");
    assert_eq!(h.net.sent_per_mac[&T_MAC2], PINNED_TRIES as u64);
    assert_eq!((h.t.counters.timeouts, h.t.counters.retransmits), (0, 0));
    assert_eq!(h.min_cwnd_seen, cwnd, "the window was not cut");
    assert!(!h.t.needs_timer());
    // A late answer to it is just unexpected (no ghost to wait for).
    assert_eq!(h.t.ghosts(), 0);
}

#[test]
fn rto_follows_the_measured_rtt() {
    let mut h = Harness::new(4096, 16, 128, 1500, 3);
    h.net.latency = 2_000;
    h.read(0, 0, 2000);
    h.run(1, 10_000_000);
    let srtt = h.t.srtt();
    assert!((4_000..10_000).contains(&srtt), "srtt {srtt}");
    assert!(h.t.rto() >= MIN_RTO && h.t.rto() <= MAX_BACKOFF);
    assert_eq!(h.t.counters.retransmits, 0, "no spurious retransmits");
}

#[test]
fn tags_leave_bits_31_and_30_clear_and_differ_on_retransmit() {
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 1500, 16, 255);
    let mut out = Outbox::new();
    t.submit_read(0, 0, 2, Box::new(|_| {}), &mut out);
    t.on_timer(10_000_000, 0, &mut out);
    let tags: Vec<u32> =
        out.iter().map(|f| u32::from_be_bytes([f.head[20], f.head[21], f.head[22], f.head[23]])).collect();
    assert_eq!(tags.len(), 2);
    // Bit 31 is the user tools' (aoeping, aoecfg), as with the driver; bit
    // 30 the initiator's other commands.
    assert!(tags.iter().all(|t| t & 0xC000_0000 == 0), "{tags:08x?}");
    assert_ne!(tags[0], tags[1]);
}

#[test]
fn frames_of_a_failed_request_are_not_retried_and_do_not_kill_the_target() {
    let mut h = Harness::new(100, 16, 128, 1500, 3);
    h.deadsecs = 2;
    // Frames past the end fail at once (IDNF); every other reply is lost
    // and the target then goes quiet, so the request's other frames in
    // flight are never answered.
    h.read(0, 96, 20);
    let kept: Vec<_> =
        h.net.replies.drain().filter(|Reverse((_, _, f))| f[27] & wire::ATA_STATUS_FAIL != 0).take(1).collect();
    assert_eq!(kept.len(), 1);
    h.net.replies.extend(kept);
    h.net.silent = true;
    assert!(h.t.flight.nout > 1);
    h.run(1, 100_000);
    assert!(matches!(h.result(0), Err(IoError::Ata { .. })), "answered at the first error");
    h.run(2, 5_000_000);
    assert!(!h.dead, "no retrying for an answered request, so no deadsecs");
    assert!(!h.t.busy());
}

/// Prints the seed of a randomised test, so that a failure can be replayed.
fn seeded(name: &str, seed: u64) -> u64 {
    println!("{name}: seed {seed}");
    seed
}

#[test]
fn a_command_the_target_takes_seconds_to_execute_completes() {
    // 2.5 s: a disk flushing a large write cache; 9 s with deadsecs 10: the
    // longest a command may take.
    for (service, deadsecs) in [(2_500_000, 180), (9_000_000, 10)] {
        let mut h = Harness::new(100, 16, 128, 1500, seeded("slow command", 7));
        h.deadsecs = deadsecs;
        h.net.flush_service = service;
        h.flush(0);
        h.run(1, service + 3_000_000);
        assert!(h.result(0).is_ok(), "{service} us FLUSH: {:?}", h.result(0));
        assert!(!h.dead, "not declared dead");
        assert!(h.net.now >= service && h.net.now < service + 200_000, "answered at {} us", h.net.now);
        // Resent with the timer doubling each time: 1, 3, 7 s...
        let executed = h.net.target.counters.flushes;
        assert!((1..=4).contains(&executed), "{service} us FLUSH executed {executed} times");
        assert_eq!(h.t.counters.retransmits, executed - 1);
        // The other transmissions are answered later, quietly.
        h.run(usize::MAX, executed * service + 1_000_000);
        assert_eq!(h.t.counters.late, executed - 1, "every later answer is a late reply");
        assert_eq!(h.t.counters.unexpected, 0);
        assert_eq!(h.t.flight.held, 0);
    }
}

#[test]
fn a_reply_to_any_transmission_of_a_pending_request_completes_it() {
    let mut h = Harness::new(100, 16, 128, 1500, seeded("any transmission", 8));
    // A round trip of 1.5 s: the read is resent twice before the answer to
    // its first transmission arrives.
    h.net.latency = 750_000;
    h.read(0, 10, 2);
    h.run(1, 3_000_000);
    assert_eq!(h.result(0).unwrap(), h.net.target.disk()[10 * SECTOR..12 * SECTOR]);
    assert!(h.net.now < 1_600_000, "completed by the first answer at {} us", h.net.now);
    assert!(h.t.counters.retransmits >= 1);
}

#[test]
fn stalls_never_overflow_the_targets_buffer() {
    // 1% of frames take 20 ms longer (below the RTO floor: no resend at
    // all), then 500 ms longer (the target pauses past the RTO).
    for (stall, bufcnt) in [(20_000, 1u16), (20_000, 2), (20_000, 16), (500_000, 1), (500_000, 4), (500_000, 16)] {
        let seed = seeded("stalls", 100 + bufcnt as u64 + stall / 1000);
        let mut h = Harness::new(20_000, bufcnt, 128, 9000, seed);
        h.net.stall_rate = 0.01;
        h.net.stall = stall;
        let mut rng = Rng::new(seed);
        for i in 0..300 {
            let lba = rng.below(19_000);
            if i % 3 == 0 {
                h.write(i, lba, vec![i as u8; 17 * SECTOR]);
            } else {
                h.read(i, lba, 17);
            }
        }
        h.run(300, 120_000_000);
        let ok = h.results.lock().unwrap().iter().filter(|(_, r)| r.is_ok()).count();
        assert_eq!(ok, 300, "stall {stall} bufcnt {bufcnt}");
        assert_eq!(h.net.overflow_drops, 0, "stall {stall} bufcnt {bufcnt}: frames beyond the buffer count");
        assert!(h.net.max_held <= bufcnt as usize, "stall {stall} bufcnt {bufcnt}: held {}", h.net.max_held);
        let stalls = 300 * 17 * 2 / 1000 + 10;
        if stall < MIN_RTO {
            assert_eq!(h.t.counters.retransmits, 0, "a 20 ms stall is not a loss");
        } else {
            assert!(
                h.t.counters.retransmits <= (stalls * bufcnt as u64),
                "stall {stall} bufcnt {bufcnt}: {} retransmits",
                h.t.counters.retransmits
            );
        }
    }
}

/// One write per round to a few blocks, each acknowledged before the next
/// starts; the target sets some writes aside and executes them late, after
/// answering their retransmissions.
fn late_originals(seed: u64, hold: Micros) -> (Harness, Vec<u8>) {
    let mut h = Harness::new(16, 16, 128, 1500, seed);
    h.net.hold_rate = 0.25;
    h.net.hold = hold;
    // A few reads first, so the RTO sits at its floor and a hold outlasts it.
    for i in 0..20 {
        h.read(1_000_000 + i, 0, 1);
        h.run(i + 1, 1_000_000);
    }
    let base = h.results.lock().unwrap().len();
    let mut rng = Rng::new(seed);
    let mut last = h.net.target.disk().to_vec();
    for round in 1..=400u32 {
        let blk = rng.below(4) as usize;
        let mut data = vec![(round % 251) as u8; 2 * SECTOR];
        for sector in data.chunks_exact_mut(SECTOR) {
            sector[..4].copy_from_slice(&round.to_le_bytes());
        }
        let id = round as usize;
        h.write(id, blk as u64 * 2, data.clone());
        h.run(base + id, 30_000_000);
        assert!(h.result(id).is_ok(), "round {round}");
        h.net.acked_round[blk * 2..blk * 2 + 2].fill(round);
        last[blk * 2 * SECTOR..(blk + 1) * 2 * SECTOR].copy_from_slice(&data);
    }
    // Let every set-aside frame execute.
    h.run(usize::MAX, 2 * hold + 1_000_000);
    (h, last)
}

#[test]
fn a_late_original_never_overwrites_a_newer_acknowledged_write() {
    let (h, last) = late_originals(seeded("late originals", 21), 600_000);
    assert!(h.t.counters.retransmits > 10 && h.t.counters.late > 10, "the scenario happened: {:?}", h.t.counters);
    assert_eq!(h.net.older_over_newer, 0, "the target executed an older write over an acknowledged newer one");
    for blk in 0..8 {
        let r = blk * 2 * SECTOR..(blk + 1) * 2 * SECTOR;
        assert!(
            h.net.target.disk()[r.clone()] == last[r.clone()],
            "block {blk} holds the write of round {:?} instead of {:?}",
            &h.net.target.disk()[r.start..r.start + 4],
            &last[r.start..r.start + 4]
        );
    }
}

#[test]
fn a_lost_reply_is_found_by_a_probe_long_before_the_rto() {
    let mut h = Harness::new(100, 16, 128, 1500, seeded("tail loss", 9));
    // Warm up: the round trip is measured (0.1 ms) and the RTO sits at its floor.
    for i in 0..20 {
        h.read(i, 0, 2);
        h.run(i + 1, 1_000_000);
    }
    assert_eq!(h.t.rto(), MIN_RTO);
    // The reply to a lone read (nothing sent after it to tell) is lost.
    h.net.lose_replies = 1;
    let t0 = h.net.now;
    h.read(100, 4, 2);
    h.run(21, 1_000_000);
    assert_eq!(h.result(100).unwrap(), h.net.target.disk()[4 * SECTOR..6 * SECTOR]);
    let took = h.net.now - t0;
    assert!(took < 50_000, "recovered after {took} us (the RTO is {} us)", MIN_RTO);
    assert_eq!((h.net.probes, h.t.counters.retransmits, h.t.counters.timeouts), (1, 1, 0));
}

#[test]
fn a_timeout_cuts_the_window_to_one_and_probes_a_silent_target() {
    let mut h = Harness::new(20_000, 16, 128, 9000, seeded("timeout", 10));
    for i in 0..50 {
        h.read(i, i as u64 * 100, 100);
    }
    h.run(50, 10_000_000);
    assert!(h.t.window.cwnd > 8, "window grew: {}", h.t.window.cwnd);
    // The target falls silent with a full window out: nothing is resent
    // while it might still hold every frame (only probes go), until the
    // frames are presumed lost (PAUSE_MAX); then they time out and the
    // window drops to one.
    h.net.silent = true;
    for i in 50..60 {
        h.read(i, i as u64 * 100, 100);
    }
    h.min_cwnd_seen = u32::MAX;
    h.run(usize::MAX, PAUSE_MAX - 100_000);
    assert_eq!(h.t.counters.retransmits, 0, "nothing resent into a full buffer");
    h.run(usize::MAX, 1_000_000);
    assert_eq!(h.min_cwnd_seen, 1, "a timeout cuts the window to 1");
    assert!(h.t.counters.timeouts > 0 && h.net.probes > 0);
    h.net.silent = false;
    h.run(60, 30_000_000);
    assert_eq!(h.results.lock().unwrap().iter().filter(|(_, r)| r.is_ok()).count(), 60);
}

#[test]
fn replies_delayed_out_of_order_are_resent_only_until_the_reorder_window_learns() {
    // 1% of replies leave the target 20 ms late while it answers the next
    // frames: the first few look lost and are resent, then the reordering
    // window covers 20 ms and nothing more is resent.
    let seed = seeded("reply stalls", 31);
    let mut h = Harness::new(20_000, 16, 128, 9000, seed);
    h.net.reply_stall_rate = 0.01;
    h.net.reply_stall = 20_000;
    let mut rng = Rng::new(seed);
    for i in 0..3000 {
        h.read(i, rng.below(19_000), 17);
    }
    h.run(3000, 60_000_000);
    let ok = h.results.lock().unwrap().iter().filter(|(_, r)| r.is_ok()).count();
    assert_eq!(ok, 3000);
    assert_eq!(h.net.overflow_drops, 0);
    let c = h.t.counters;
    assert!(c.retransmits <= 10, "resent {} times for 20 ms reply delays: {c:?}", c.retransmits);
    assert_eq!(c.timeouts, 0);
}

#[test]
fn request_counters_count_completed_reads_and_writes_and_their_waits() {
    let mut h = Harness::new(100, 16, 128, 1500, 11);
    let t0 = h.net.now;
    h.read(0, 0, 20);
    h.write(1, 30, vec![7u8; 4 * SECTOR]);
    h.read(2, 90, 20); // past the end: fails, not counted
    h.flush(3); // neither a read nor a write
    h.run(4, 10_000_000);
    assert!(h.result(0).is_ok() && h.result(1).is_ok() && h.result(2).is_err() && h.result(3).is_ok());
    let c = h.t.counters;
    assert_eq!((c.read_requests, c.write_requests), (1, 1));
    // A round trip is at least twice the latency plus the service time;
    // ten frames of the read wait for each other in the target's queue.
    let round_trip = 2 * h.net.latency + h.net.service;
    assert!(c.read_wait_us >= round_trip + 9 * h.net.service, "read wait {} us", c.read_wait_us);
    assert!(c.write_wait_us >= round_trip, "write wait {} us", c.write_wait_us);
    assert!(c.read_wait_us + c.write_wait_us <= 2 * (h.net.now - t0), "{c:?}");
    // Paths count no requests (a request's frames may take several).
    assert_eq!(h.t.paths[0].counters.read_requests, 0);
}

#[test]
fn a_slower_path_is_not_taken_for_a_lossy_one() {
    // Two paths; replies on the second take 3 ms longer, so the first
    // path's answers overtake it all the time. Fast retransmit judges each
    // path by its own answers: nothing is resent, no path fails.
    let mut h = Harness::new(20_000, 16, 128, 9000, seeded("slow path", 12));
    in_use(&mut h.t, 1, T_MAC2, 9000, 16, 255);
    h.net.slow_mac = Some((T_MAC2, 3_000));
    for i in 0..200 {
        h.read(i, i as u64 * 50, 50);
    }
    h.run(200, 30_000_000);
    assert_eq!(h.results.lock().unwrap().iter().filter(|(_, r)| r.is_ok()).count(), 200);
    assert!(h.net.sent_per_mac[&T_MAC2] > 100, "the slow path carried its share");
    assert_eq!(h.t.counters.retransmits, 0, "{:?}", h.t.counters);
    assert!(!h.t.paths[1].failed());
}

#[test]
fn a_reply_with_damaged_slot_bits_matches_no_other_command() {
    // Tags share one generation counter: the generation bits of every tag
    // in flight differ, so a reply whose slot bits were damaged on the way
    // (into another command's slot) is unexpected, not applied.
    let mut h = Harness::new(100, 16, 128, 1500, seeded("slot bits", 13));
    h.net.latency = 1_000_000; // hold the real replies back
    for i in 0..8 {
        h.read(i, i as u64 * 2, 2);
    }
    let replies: Vec<Vec<u8>> = h.net.replies.iter().map(|r| r.0 .2.clone()).collect();
    let tags: Vec<u32> = replies.iter().map(|f| Repr::parse(f).unwrap().header.tag).collect();
    let gens: std::collections::HashSet<u32> = tags.iter().map(|t| t >> 12).collect();
    assert_eq!(gens.len(), tags.len(), "generations repeat across slots: {tags:08x?}");
    let mut out = Outbox::new();
    for (f, tag) in replies.iter().zip(&tags) {
        for bit in 0..12 {
            let damaged = tag ^ (1 << bit);
            let r = Repr::parse(f).unwrap();
            let Body::Ata(a) = r.body else { unreachable!() };
            let o = h.t.on_reply(h.net.now, r.header.src, damaged, Ok(&a), &mut out);
            assert_eq!(o, ReplyOutcome::Unexpected, "tag {tag:08x} with slot bit {bit} flipped was taken");
        }
    }
    assert_eq!(h.t.flight.nout, 8, "nothing completed");
    h.run(8, 5_000_000);
    for i in 0..8 {
        assert_eq!(h.result(i).unwrap(), h.net.target.disk()[i * 2 * SECTOR..(i * 2 + 2) * SECTOR]);
    }
}

/// Warms the harness up with a few short reads, as IDENTIFY and the first
/// I/O do: the round trip is measured and the RTO sits at its floor.
fn warm_up(h: &mut Harness) {
    let base = h.results.lock().unwrap().len();
    for i in 0..5 {
        h.read(1_000_000 + i, 0, 2);
        h.run(base + i + 1, 1_000_000);
    }
    assert_eq!(h.t.rto(), MIN_RTO);
}

/// Most frames (probes included) the target received in any one second
/// from `from` on.
fn busiest_second(h: &Harness, from: Micros) -> usize {
    let times: Vec<Micros> = h.net.sent_at.iter().copied().filter(|&t| t >= from).collect();
    (0..times.len()).map(|i| times[i..].iter().take_while(|&&t| t < times[i] + 1_000_000).count()).max().unwrap_or(0)
}

#[test]
fn a_target_whose_network_answers_but_whose_disk_does_not_fails_at_deadsecs_with_few_frames() {
    // The target answers every query config (its network is alive) and no
    // read or write: one 4 KiB read (four frames at MTU 1500) fails with
    // `Dead` at deadsecs, and the target receives few frames meanwhile.
    let mut h = Harness::new(64, 16, 128, 1500, seeded("hung disk", 51));
    warm_up(&mut h);
    h.deadsecs = 10;
    h.net.hang_io = true;
    let (t0, sent0) = (h.net.now, h.net.sent_at.len());
    h.read(0, 8, 8);
    h.run(6, 30_000_000);
    assert!(h.dead, "declared dead");
    assert_eq!(h.result(0), Err(IoError::Dead));
    let took = h.net.now - t0;
    assert!((10_000_000..10_100_000).contains(&took), "failed after {took} us, not at deadsecs");
    assert!(h.net.probes > 0, "the target's network was asked, and answered");
    let frames = h.net.sent_at.len() - sent0;
    // A few frames a second per command at first, fewer and fewer later.
    let first = busiest_second(&h, t0);
    let later = busiest_second(&h, t0 + 3_000_000);
    println!("hung disk: {frames} frames ({} probes), busiest second {first}, after 3 s {later}", h.net.probes);
    assert!(frames <= 60, "{frames} frames (probes included) for one stuck 4 KiB read");
    assert!(first <= 6 * 4, "{first} frames in the busiest second, for 4 commands");
    assert!(later <= 4 + 2, "{later} frames in a second after the first 3 s, for 4 commands");
}

#[test]
fn a_target_that_answers_other_commands_but_never_one_fails_at_deadsecs() {
    // Deadsecs counts per command: a target that keeps answering reads but
    // never one of them (a spot on the disk that hangs) is dead once that
    // command has waited deadsecs, as the kernel driver counts each frame's
    // wait.
    let mut h = Harness::new(64, 16, 128, 1500, seeded("one stuck command", 52));
    warm_up(&mut h);
    h.deadsecs = 5;
    h.net.stuck_lba = Some(40);
    let base = h.results.lock().unwrap().len();
    let t0 = h.net.now;
    h.read(0, 40, 2);
    let mut id = 1;
    while !h.dead && h.net.now < t0 + 20_000_000 {
        h.read(id, 0, 2);
        h.run(base + id + 1, 300_000);
        id += 1;
    }
    assert!(h.dead);
    assert_eq!(h.result(0), Err(IoError::Dead));
    let took = h.net.now - t0;
    assert!((5_000_000..5_400_000).contains(&took), "dead after {took} us, deadsecs 5");
    assert!(id > 10, "other reads were answered meanwhile ({id})");
}

/// Random data of `sectors` sectors.
fn random_data(rng: &mut Rng, sectors: usize) -> Vec<u8> {
    (0..sectors * SECTOR).map(|_| rng.next_u64() as u8).collect()
}

#[test]
fn a_switch_that_drops_jumbo_frames_makes_the_path_fall_back_and_the_write_completes() {
    // Both hosts have MTU 9000, the switch between them forwards frames of
    // at most 1514 bytes: large frames are lost, config queries and small
    // frames pass. The path falls back to 1024-byte frames, says so once,
    // and a write of 1000 sectors completes with exact bytes.
    let seed = seeded("jumbo black hole", 53);
    let mut h = Harness::new(4096, 16, 128, 9000, seed);
    warm_up(&mut h);
    assert_eq!(h.t.payload(), 8704);
    h.deadsecs = 60;
    h.net.max_frame = Some(1500 + wire::ETH_HDR_LEN);
    let mut rng = Rng::new(seed);
    let data = random_data(&mut rng, 1000);
    let t0 = h.net.now;
    h.write(0, 100, data.clone());
    h.run(6, 30_000_000);
    assert!(h.result(0).is_ok(), "{:?}", h.result(0));
    let took = h.net.now - t0;
    println!("jumbo black hole: 1000 sectors written in {took} us, lost_jumbo {}", h.t.counters.lost_jumbo);
    assert!(took < 2_000_000, "the write took {took} us");
    assert_eq!(h.net.target.disk()[100 * SECTOR..1100 * SECTOR], data[..], "bytes on the target");
    assert_eq!(h.t.payload(), 1024, "payload after the fallback");
    let cap = h.t.paths[0].cap.expect("the path is held to small frames");
    assert_eq!(cap, FrameCap { sectors: 2, natural: 17, confirmed: true });
    let lost = h.t.counters.lost_jumbo;
    assert!(lost >= JUMBO_LOSSES as u64, "lost_jumbo {lost}");
    assert_eq!(h.t.paths[0].counters.lost_jumbo, lost);
    let falls: Vec<_> = h.events.iter().filter(|e| matches!(e, Event::JumboFallback { .. })).collect();
    assert_eq!(falls.len(), 1, "said once: {:?}", h.events);
    assert_eq!(
        falls[0].to_string(),
        format!("8704-byte frames lost on sim0 (target MAC {}, {lost} lost), falling back to 1024", T_MAC.hex12())
    );
    // Reads come back in small frames too.
    h.read(1, 100, 1000);
    h.run(7, 10_000_000);
    assert_eq!(h.result(1).unwrap(), data);
    assert!(!h.dead);
}

#[test]
fn a_cap_is_lifted_by_revalidate_and_by_a_config_that_allows_larger_frames() {
    let seed = seeded("jumbo fixed", 54);
    let mut h = Harness::new(4096, 16, 128, 9000, seed);
    warm_up(&mut h);
    h.net.max_frame = Some(1514);
    h.write(0, 0, vec![1; 200 * SECTOR]);
    h.run(6, 30_000_000);
    assert!(h.result(0).is_ok());
    assert_eq!(h.t.payload(), 1024);
    // The switch is fixed and the user revalidates: full size again.
    h.net.max_frame = None;
    h.t.lift_caps();
    assert_eq!(h.t.payload(), 8704);
    h.write(1, 0, vec![2; 200 * SECTOR]);
    h.run(7, 10_000_000);
    assert!(h.result(1).is_ok());
    assert_eq!(h.t.payload(), 8704, "large frames get through now");
    // Broken again: it falls back again.
    h.net.max_frame = Some(1514);
    h.write(2, 0, vec![3; 200 * SECTOR]);
    h.run(8, 30_000_000);
    assert!(h.result(2).is_ok());
    assert_eq!(h.t.payload(), 1024);
    assert_eq!(h.events.iter().filter(|e| matches!(e, Event::JumboFallback { .. })).count(), 2);
    // A config response that allows larger frames than when it fell back
    // (the target's MTU went up) lifts the cap; one that allows the same
    // does not.
    in_use(&mut h.t, 0, T_MAC, 9000, 16, 255);
    assert_eq!(h.t.payload(), 1024, "the same config changes nothing");
    in_use(&mut h.t, 0, T_MAC, 12000, 16, 255);
    assert!(h.t.paths[0].cap.is_none());
    assert_eq!(h.t.payload(), 23 * SECTOR);
    assert_eq!(h.net.target.disk()[..200 * SECTOR], vec![3; 200 * SECTOR][..]);
}

#[test]
fn random_loss_never_makes_a_path_fall_back() {
    // 5% of frames lost both ways, at MTU 9000, one request at a time and
    // many at once: large frames are lost as often as small ones, and
    // something large is answered between most losses.
    for (qd, seed) in [(1usize, 55), (32, 56)] {
        let mut h = Harness::new(20_000, 16, 128, 9000, seeded("random loss, no fallback", seed));
        warm_up(&mut h);
        h.net.loss = 0.05;
        let mut rng = Rng::new(seed);
        let base = h.results.lock().unwrap().len();
        for round in 0..(2000 / qd) {
            for k in 0..qd {
                h.read(round * qd + k, rng.below(19_000), 17);
            }
            h.run(base + (round + 1) * qd, 60_000_000);
        }
        assert!(h.t.counters.retransmits > 50, "qd {qd}: loss happened: {:?}", h.t.counters);
        assert!(h.t.paths[0].cap.is_none(), "qd {qd}: fell back under random loss");
        assert_eq!(h.t.counters.lost_jumbo, 0);
    }
}

#[test]
fn a_cap_that_only_a_silent_target_caused_is_lifted_when_it_goes_down() {
    // A hung disk at MTU 9000: its large frames go unanswered while its
    // network answers the probes, which looks like a jumbo black hole at
    // first. No small frame is answered either, so the cap stays
    // provisional, is never reported, and is lifted when the target is
    // declared dead.
    let mut h = Harness::new(4096, 16, 128, 9000, seeded("hung disk, jumbo", 57));
    warm_up(&mut h);
    h.deadsecs = 10;
    h.net.hang_io = true;
    for i in 0..4 {
        h.read(i, i as u64 * 17, 17);
    }
    h.run(usize::MAX, 8_000_000);
    assert_eq!(h.t.paths[0].cap.map(|c| c.confirmed), Some(false), "a provisional cap");
    assert_eq!(h.t.payload(), 1024);
    h.run(usize::MAX, 3_000_000);
    assert!(h.dead);
    assert!(h.t.paths[0].cap.is_none());
    // Its next config response (the down target answers a probe) puts the
    // path back in use, at full size.
    in_use(&mut h.t, 0, T_MAC, 9000, 16, 255);
    assert_eq!(h.t.payload(), 8704);
    assert!(h.events.is_empty(), "nothing reported: {:?}", h.events);
    assert_eq!(h.t.counters.lost_jumbo, 0);
}

#[test]
fn a_lowered_local_mtu_cuts_the_frames_in_flight_and_they_complete() {
    // The local interface's MTU goes from 9000 to 1500 with writes in
    // flight: from then on no frame larger than 1514 bytes leaves, the
    // frames in flight are cut and sent again at once, and every write
    // completes with exact bytes.
    let seed = seeded("mtu lowered", 58);
    let mut h = Harness::new(4096, 16, 128, 9000, seed);
    warm_up(&mut h);
    h.net.latency = 20_000; // keep frames in flight
    let mut rng = Rng::new(seed);
    let data: Vec<Vec<u8>> = (0..4).map(|_| random_data(&mut rng, 100)).collect();
    for (i, d) in data.iter().enumerate() {
        h.write(i, i as u64 * 100, d.clone());
    }
    let in_flight = h.t.flight.nout as u64;
    assert!(in_flight >= 8);
    // Frames larger than the new MTU no longer leave the host.
    h.net.max_frame = Some(1514);
    h.net.longest_sent = 0;
    let mut out = Outbox::new();
    h.t.set_link_mtu(h.net.now, 0, 1500, &mut out);
    assert!(!out.is_empty(), "the cut frames go at once");
    h.net.send_all(&mut out);
    h.after();
    assert_eq!(h.t.payload(), 1024);
    h.run(10, 10_000_000);
    for (i, d) in data.iter().enumerate() {
        assert!(h.result(i).is_ok());
        assert_eq!(h.net.target.disk()[i * 100 * SECTOR..(i + 1) * 100 * SECTOR], d[..]);
    }
    assert!(h.net.longest_sent <= 1514, "a frame of {} bytes after the MTU went down", h.net.longest_sent);
    assert_eq!(h.t.counters.lost_jumbo, in_flight);
    assert_eq!(
        h.events,
        vec![Event::MtuLowered { ifname: "sim0".into(), mtu: 1500, from: 8704, to: 1024, lost: in_flight }]
    );
    // Going up again takes effect for new frames; nothing is cut.
    h.t.set_link_mtu(h.net.now, 0, 9000, &mut out);
    assert!(out.is_empty());
    assert_eq!(h.t.payload(), 8704);
}

#[test]
fn a_write_cut_to_smaller_frames_still_never_lets_an_older_write_land_last() {
    // A write's large frames are held by the target (set aside, executed
    // 500 ms later) when the local MTU goes down: its smaller pieces go at
    // once and complete it. A newer write to the same sectors must then wait
    // for the held originals (a ghost), or they would land over it.
    let seed = seeded("cut write, late original", 59);
    let mut h = Harness::new(64, 16, 128, 9000, seed);
    warm_up(&mut h);
    h.net.hold_rate = 1.0;
    h.net.hold = 500_000;
    let mut old = vec![0u8; 17 * SECTOR];
    for s in old.chunks_exact_mut(SECTOR) {
        s[..4].copy_from_slice(&1u32.to_le_bytes());
    }
    h.write(0, 0, old);
    h.net.hold_rate = 0.0;
    let mut out = Outbox::new();
    h.t.set_link_mtu(h.net.now, 0, 1500, &mut out);
    h.net.send_all(&mut out);
    h.after();
    h.run(6, 400_000);
    assert!(h.result(0).is_ok(), "the pieces completed the write");
    h.net.acked_round[..17].fill(1);
    assert!(h.t.ghosts() > 0, "the held original is a ghost");
    let mut new = vec![0u8; 17 * SECTOR];
    for s in new.chunks_exact_mut(SECTOR) {
        s[..4].copy_from_slice(&2u32.to_le_bytes());
        s[4] = 0xEE;
    }
    h.write(1, 0, new.clone());
    h.run(7, 5_000_000);
    assert!(h.result(1).is_ok());
    h.net.acked_round[..17].fill(2);
    h.run(usize::MAX, 1_000_000);
    assert_eq!(h.net.older_over_newer, 0, "the held original landed over the newer write");
    assert_eq!(h.net.target.disk()[..17 * SECTOR], new[..]);
}

#[test]
fn a_frame_the_link_refused_is_not_held_by_the_target() {
    let mut h = Harness::new(4096, 16, 128, 1500, seeded("not sent", 60));
    warm_up(&mut h);
    let mut out = Outbox::new();
    h.t.submit_read(h.net.now, 0, 16, done_into(&h.results, 0), &mut out);
    assert_eq!(out.len() as u32, h.t.flight.held);
    for t in out.drain(..) {
        h.t.not_sent(u32::from_be_bytes(t.head[20..24].try_into().unwrap()));
    }
    h.after();
    assert_eq!(h.t.flight.held, 0);
    // Refusing a tag twice, or an unknown one, changes nothing.
    h.t.not_sent(0x1234_5678);
    h.after();
    h.run(6, 5_000_000);
    assert_eq!(h.result(0).unwrap(), h.net.target.disk()[..16 * SECTOR]);
}

/// The reply `model` gives to transmission `t`, with `edit` applied to its
/// ATA header, offered to the engine.
fn answer(
    t: &mut TargetIo,
    now: Micros,
    model: &mut SimModel,
    tx: &Transmit,
    edit: impl FnOnce(&mut AtaRepr<'_>),
    out: &mut Outbox,
) -> ReplyOutcome {
    let frame = [&tx.head[..], tx.data()].concat();
    let bytes = model.handle(&frame).expect("the target answers");
    let r = Repr::parse(&bytes).unwrap();
    let Body::Ata(mut a) = r.body else { unreachable!() };
    edit(&mut a);
    t.on_reply(now, r.header.src, r.header.tag, Ok(&a), out)
}

fn disk_model(sectors: usize) -> SimModel {
    SimModel::new(SimConfig::new(0, 1, T_MAC), Backing::Mem(vec![0; sectors * SECTOR]))
}

#[test]
fn a_write_whose_error_register_says_refused_is_refused_whatever_its_status() {
    // The status byte lost its ERR bit on the way (DRDY only, as on
    // success), but the error register says ABRT, IDNF or WP: the write
    // was refused, and is not acknowledged.
    for (name, error) in [("ABRT", wire::ATA_ERR_ABRT), ("IDNF", wire::ATA_ERR_IDNF), ("WP", 0x40)] {
        let mut t = TargetIo::new(0, 1, 128);
        in_use(&mut t, 0, T_MAC, 1500, 16, 255);
        let results: Results = Default::default();
        let mut out = Outbox::new();
        t.submit_write(0, 4, vec![7; 2 * SECTOR], done_into(&results, 0), &mut out);
        let tx = out.remove(0);
        let mut model = disk_model(64);
        let o = answer(
            &mut t,
            100,
            &mut model,
            &tx,
            |a| {
                a.cmd_status = wire::ATA_STATUS_DRDY;
                a.err_feature = error;
            },
            &mut out,
        );
        assert_eq!(o, ReplyOutcome::Accepted);
        for (done, res) in t.take_completed() {
            done(res);
        }
        let r = results.lock().unwrap()[0].1.clone();
        assert_eq!(r, Err(IoError::Ata { status: wire::ATA_STATUS_DRDY, error }), "{name}");
        assert_eq!((t.counters.bytes_written, t.counters.errors), (0, 1), "{name}");
    }
    // Other error bits (0x01, left by some drives after a reset) do not
    // refuse a write whose status is clean.
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 1500, 16, 255);
    let results: Results = Default::default();
    let mut out = Outbox::new();
    t.submit_write(0, 4, vec![7; 2 * SECTOR], done_into(&results, 0), &mut out);
    let tx = out.remove(0);
    answer(&mut t, 100, &mut disk_model(64), &tx, |a| a.err_feature = 0x01, &mut out);
    for (done, res) in t.take_completed() {
        done(res);
    }
    assert_eq!(results.lock().unwrap()[0].1, Ok(Vec::new()));
}

/// A target with one completed write of `count` sectors at `lba` whose
/// first transmission was never answered (its retransmission was): a
/// write ghost covering exactly those sectors.
fn write_ghost(lba: u64, count: usize) -> (TargetIo, SimModel, Micros) {
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 1500, 16, 255);
    let mut model = disk_model(64);
    let mut out = Outbox::new();
    t.submit_write(0, lba, vec![1; count * SECTOR], Box::new(|_| {}), &mut out);
    assert_eq!(out.len(), 1);
    out.clear();
    // Presumed lost after PAUSE_MAX, and resent.
    let now = PAUSE_MAX + INITIAL_RTO;
    t.on_timer(now, 0, &mut out);
    assert_eq!(out.len(), 1, "resent");
    let tx = out.remove(0);
    assert_eq!(answer(&mut t, now + 100, &mut model, &tx, |_| {}, &mut out), ReplyOutcome::Accepted);
    assert_eq!(t.ghosts(), 1);
    (t, model, now + 200)
}

#[test]
fn a_write_beside_a_write_ghost_goes_at_once_and_one_sharing_a_sector_waits() {
    // The ghost covers sectors 10 and 11.
    let write_at = |lba: u64, count: usize| {
        let (mut t, _, now) = write_ghost(10, 2);
        let mut out = Outbox::new();
        t.submit_write(now, lba, vec![2; count * SECTOR], Box::new(|_| {}), &mut out);
        out.len()
    };
    assert_eq!(write_at(8, 2), 1, "sectors 8-9, just below the ghost: sent at once");
    assert_eq!(write_at(12, 2), 1, "sectors 12-13, just above it: sent at once");
    assert_eq!(write_at(9, 2), 0, "sectors 9-10 share sector 10: waits");
    assert_eq!(write_at(11, 2), 0, "sectors 11-12 share sector 11: waits");
    assert_eq!(write_at(10, 2), 0, "the same sectors: waits");
    // Reads never wait for a ghost.
    let (mut t, _, now) = write_ghost(10, 2);
    let mut out = Outbox::new();
    t.submit_read(now, 10, 2, Box::new(|_| {}), &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn a_slow_flush_cache_does_not_raise_the_rto() {
    // FLUSH CACHE takes the disk's time, not the round trip's: a 1.5 s
    // flush leaves the RTO at its floor, where a 1.5 s read would not.
    for (cmd, slow) in [("flush", true), ("read", false)] {
        let mut h = Harness::new(100, 16, 128, 1500, seeded("slow flush rto", 61));
        warm_up(&mut h);
        if slow {
            h.net.flush_service = 1_500_000;
            h.flush(0);
        } else {
            h.net.service = 1_500_000;
            h.read(0, 0, 2);
        }
        h.run(6, 5_000_000);
        assert!(h.result(0).is_ok());
        if slow {
            assert_eq!(h.t.rto(), MIN_RTO, "{cmd}");
        } else {
            assert!(h.t.rto() > MIN_RTO, "{cmd}: the control case moves the RTO");
        }
    }
}

#[test]
fn a_disk_that_hangs_with_commands_in_flight_gets_few_frames_per_command() {
    // The disk hangs while the target has a window of commands in flight,
    // some of them sent before its last answer: their probe-driven resends
    // are bounded by the probes' backoff too, and deadsecs ends them.
    let mut h = Harness::new(20_000, 16, 128, 1500, seeded("hang mid-stream", 63));
    warm_up(&mut h);
    h.deadsecs = 10;
    for i in 0..64 {
        h.read(i, i as u64 * 16, 16);
    }
    h.run(usize::MAX, 2_000);
    h.net.hang_io = true;
    let t0 = h.net.now;
    let sent0 = h.net.sent_at.len();
    let waiting = h.t.flight.nout as usize + h.t.pending_frames();
    let nout = h.t.flight.nout as usize;
    assert!(nout >= 8, "a window in flight: {nout}");
    h.run(usize::MAX, 30_000_000);
    assert!(h.dead);
    let took = h.net.now - t0;
    assert!(took <= 10_100_000, "dead after {took} us");
    let frames = h.net.sent_at.len() - sent0;
    let later = busiest_second(&h, t0 + 2_000_000);
    println!("hang mid-stream: {frames} frames for {waiting} frames waiting, busiest second after 2 s: {later}");
    assert!(later <= 2 * nout, "{later} frames in a second after the first 2 s, {nout} in flight");
    assert!(frames <= 12 * nout, "{frames} frames in all");
}

#[test]
fn errors_and_events_read_as_err_shows_them() {
    // What `err` and the logs print (err lines are the Display of these).
    let cases = [
        (IoError::Ata { status: 0x51, error: 0x04 }.to_string(), "ATA error status=0x51 error=0x04"),
        (IoError::Aoe(AoeError::DeviceUnavailable).to_string(), "AoE error 3: device unavailable"),
        (IoError::Dead.to_string(), "target timed out (deadsecs)"),
        (IoError::Down.to_string(), "target is down"),
        (IoError::Timeout.to_string(), "no answer in time"),
        (
            Event::MtuLowered { ifname: "eth1".into(), mtu: 1500, from: 8704, to: 1024, lost: 3 }.to_string(),
            "MTU of eth1 is now 1500: 8704-byte frames no longer fit (3 lost), falling back to 1024",
        ),
        (
            Event::JumboFallback { ifname: "eth1".into(), mac: T_MAC, from: 8704, to: 1024, lost: 6 }.to_string(),
            "8704-byte frames lost on eth1 (target MAC 0200000000aa, 6 lost), falling back to 1024",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
    for (s, name) in [
        (PathState::InUse, "in-use"),
        (PathState::Unverified, "unverified"),
        (PathState::Failed, "failed"),
        (PathState::Refused, "refused"),
    ] {
        assert_eq!((s.name(), s.to_string()), (name, name.to_string()));
    }
}

#[test]
fn a_refused_mac_that_made_room_is_remembered_by_link_and_mac_up_to_a_bound() {
    // Eight candidates fill their part of the table; each new MAC then
    // takes the place of the one refused longest ago, which is remembered
    // (its next claims start nothing) by link and MAC, for the last
    // paths::MAX_REFUSED_MACS of them.
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 1500, 16, 255);
    let mac = |i: usize| Mac([2, 9, 0, 0, (i >> 8) as u8, i as u8]);
    let claim = |t: &mut TargetIo, now, link: usize, m: Mac| {
        t.add_path(now, PathOffer { link, ..offer(0, m, 1500, 16, 255) }, PathState::Unverified)
    };
    let n = MAX_CANDIDATES + paths::MAX_REFUSED_MACS + 1;
    for i in 0..n {
        let now = i as u64 + 1;
        match claim(&mut t, now, 0, mac(i)) {
            PathChange::Added { id, .. } => t.refuse(id, now),
            other => panic!("candidate {i}: {other:?}"),
        }
    }
    // The first n - MAX_CANDIDATES made room, in order; the oldest of them
    // was forgotten when the list was full, the others are remembered.
    let now = n as u64 + 10;
    assert!(matches!(claim(&mut t, now, 0, mac(0)), PathChange::Added { .. }), "the oldest was forgotten");
    for i in 2..(n - MAX_CANDIDATES) {
        assert_eq!(claim(&mut t, now, 0, mac(i)), PathChange::Refused, "refused MAC {i} remembered");
    }
    // Only that MAC on that link: the same MAC through another interface,
    // and another MAC, are new candidates.
    assert!(matches!(claim(&mut t, now, 1, mac(3)), PathChange::Added { .. }));
    assert!(matches!(claim(&mut t, now, 0, mac(5000)), PathChange::Added { .. }));
}

#[test]
fn the_rto_is_the_smoothed_round_trip_plus_four_deviations_within_its_bounds() {
    // RFC 6298: after the first sample r, SRTT = r and RTTVAR = r/2.
    let mut h = Harness::new(64, 16, 128, 1500, seeded("rto formula", 64));
    h.net.latency = 150_000;
    h.read(0, 0, 2);
    h.run(1, 5_000_000);
    let r = 2 * h.net.latency + h.net.service;
    assert_eq!((h.t.srtt(), h.t.rttvar()), (r, r / 2));
    assert_eq!(h.t.rto(), r + 4 * (r / 2));
    assert_eq!(h.t.counters.retransmits, 0);
}

#[test]
fn a_target_is_busy_while_requests_wait_in_flight_or_queued_and_idle_after() {
    let mut h = Harness::new(8192, 16, 128, 1500, seeded("busy", 65));
    assert!(!h.t.busy() && !h.t.needs_timer());
    // One frame in flight, none queued.
    h.read(0, 0, 2);
    assert_eq!((h.t.outstanding(), h.t.pending_frames()), (1, 0));
    assert!(h.t.busy() && h.t.needs_timer());
    h.run(1, 1_000_000);
    assert!(!h.t.busy());
    // A window in flight, the rest queued.
    h.read(1, 0, 4096);
    let w = h.t.window();
    assert!(w >= 8);
    assert_eq!((h.t.outstanding(), h.t.pending_frames()), (w, 2048 - w as usize));
    assert!(h.t.busy());
    h.run(2, 10_000_000);
    assert_eq!((h.t.outstanding(), h.t.pending_frames()), (0, 0));
    assert!(!h.t.busy() && !h.t.needs_timer());
}

#[test]
fn a_ghost_lives_four_rtos_at_least_a_second_and_twice_the_longest_answer() {
    let mut t = TargetIo::new(0, 1, 128);
    // Before any sample the RTO is a second: four of them.
    assert_eq!(t.ghost_hold(), 4 * INITIAL_RTO);
    // At the RTO floor, the one-second minimum.
    t.rtt.sample(100);
    assert_eq!(t.ghost_hold(), GHOST_HOLD_MIN);
    // A target that once took 3 s to answer: 6 s.
    let late = Sent { gen: 1, path: 1, seq: 1, at: 1_000_000, deadline: 0, held: false, overtaken: false };
    t.recovery.answered(4_000_000, &late);
    assert_eq!(t.ghost_hold(), 6_000_000);
    // Never more than GHOST_HOLD_MAX.
    t.recovery.answered(200_000_000, &late);
    assert_eq!(t.ghost_hold(), GHOST_HOLD_MAX);
}

#[test]
fn a_write_waiting_behind_a_ghost_of_a_target_gone_silent_fails_at_deadsecs() {
    // The wait of a request that could not even be sent counts too: from
    // its submission, not from when the ghost let it go.
    let (mut t, _, now) = write_ghost(10, 2);
    let results: Results = Default::default();
    let mut out = Outbox::new();
    t.submit_write(now, 10, vec![2; 2 * SECTOR], done_into(&results, 0), &mut out);
    assert!(out.is_empty(), "waits for the ghost");
    let deadsecs = 2;
    let mut at = now;
    while at < now + 10_000_000 {
        at += 1000;
        if t.on_timer(at, deadsecs, &mut out).dead {
            break;
        }
        out.clear();
    }
    assert!(at - now <= deadsecs as u64 * 1_000_000, "dead {} us after the write was submitted", at - now);
}

#[test]
fn identify_and_flush_cache_go_as_one_frame_and_identify_returns_the_block() {
    let mut h = Harness::new(20_000, 16, 128, 1500, seeded("identify", 66));
    let mut out = Outbox::new();
    h.t.submit_cmd(h.net.now, Op::Identify, done_into(&h.results, 0), &mut out, false);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].head[wire::field::CMD_STATUS], wire::ATA_IDENTIFY);
    // Commands without an LBA go without the LBA48 flag (FLUSH CACHE EXT
    // with it), however the target is addressed.
    assert!(h.t.lba48);
    assert_eq!(out[0].head[wire::field::AFLAGS], 0);
    h.net.send_all(&mut out);
    h.t.submit_cmd(h.net.now, Op::Flush, done_into(&h.results, 1), &mut out, false);
    assert_eq!(out[0].head[wire::field::CMD_STATUS], wire::ATA_FLUSH);
    assert_eq!(out[0].head[wire::field::AFLAGS], 0);
    h.net.send_all(&mut out);
    h.after();
    h.run(2, 1_000_000);
    let ident = Identify::parse(&h.result(0).unwrap()).unwrap();
    assert_eq!(ident.sectors, 20_000);
    assert_eq!(h.result(1), Ok(Vec::new()));
    // FLUSH CACHE EXT when asked for (IDENTIFY offered it).
    h.net.target.cfg.flush_ext = true;
    h.t.submit_cmd(h.net.now, Op::Flush, done_into(&h.results, 2), &mut out, true);
    assert_eq!(out[0].head[wire::field::CMD_STATUS], wire::ATA_FLUSH_EXT);
    assert_eq!(out[0].head[wire::field::AFLAGS], wire::AFLAG_EXT);
    h.net.send_all(&mut out);
    h.after();
    h.run(3, 1_000_000);
    assert_eq!(h.result(2), Ok(Vec::new()));
    assert_eq!(h.net.target.counters.flushes_ext, 1);
}

#[test]
fn round_robin_skips_paths_not_in_use_and_spreads_evenly_over_the_others() {
    // Three paths, the middle one a new MAC being verified (able to carry
    // any frame): reads go to the other two, alternately.
    let mut h = Harness::new(8192, 16, 128, 1500, seeded("round robin", 67));
    let middle = unverified(&mut h.t, 0, T_MAC2, 1500, 16, 255);
    let third = Mac([2, 0, 0, 0, 0, 0xcc]);
    in_use(&mut h.t, 2, third, 1500, 16, 255);
    assert_eq!(h.t.paths().iter().map(|p| p.id).collect::<Vec<_>>()[1], middle);
    h.read(0, 0, 1000);
    h.run(1, 10_000_000);
    assert!(h.result(0).is_ok());
    assert!(!h.net.sent_per_mac.contains_key(&T_MAC2), "an unverified path carried a read");
    let (a, c) = (h.net.sent_per_mac[&T_MAC], h.net.sent_per_mac[&third]);
    assert!(a.abs_diff(c) <= 1, "spread evenly: {a} and {c}");
}

/// The target MAC and sector count of each frame in `out`.
fn frames_of(out: &Outbox) -> Vec<(Mac, u8)> {
    out.iter().map(|t| (Mac::from_slice(&t.head[0..6]), t.head[wire::field::SECTOR_COUNT])).collect()
}

#[test]
fn a_frame_goes_only_on_a_path_that_can_carry_it() {
    // Frames of 17 sectors are queued for a jumbo path; then a path with
    // MTU 1500 comes in use (new frames are sized for it from then on):
    // the queued large frames still go only on the jumbo path, the small
    // ones on both.
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 9000, 2, 255);
    let mut out = Outbox::new();
    t.submit_read(0, 0, 17 * 8, Box::new(|_| {}), &mut out);
    assert_eq!(t.pending_frames(), 7, "one in flight (window of 1), seven queued");
    in_use(&mut t, 1, T_MAC2, 1500, 4, 255);
    t.submit_read(0, 1000, 8, Box::new(|_| {}), &mut out);
    // Room for everything: the window opens to the buffer count.
    t.window.cwnd = 64;
    t.window.max = 64;
    t.pump(0, &mut out);
    let frames = frames_of(&out);
    assert_eq!(frames.len(), 12, "{frames:?}");
    assert!(frames.iter().filter(|(m, _)| *m == T_MAC2).all(|&(_, n)| n <= 2), "{frames:?}");
    assert_eq!(frames.iter().filter(|&&(_, n)| n == 17).count(), 8);
    assert!(frames.iter().any(|(m, _)| *m == T_MAC2), "the small frames use both paths");
}

#[test]
fn a_failed_path_is_probed_with_one_frame_a_second_to_the_microsecond() {
    // Path A failed, path B in use. A frame goes on A as a probe at most
    // once per PATH_PROBE_INTERVAL (1 s): at 0, not at 1 us later, again at
    // exactly 1 s.
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 1500, 128, 255);
    in_use(&mut t, 1, T_MAC2, 1500, 128, 255);
    let a = t.paths()[0].id;
    t.paths.get_mut(a).unwrap().state = PathState::Failed;
    t.window.cwnd = 64;
    let send = |t: &mut TargetIo, now: Micros| {
        let mut out = Outbox::new();
        t.submit_read(now, 0, 2, Box::new(|_| {}), &mut out);
        frames_of(&out)[0].0
    };
    assert_eq!(send(&mut t, 5), T_MAC, "probe");
    assert_eq!(send(&mut t, 6), T_MAC2);
    assert_eq!(send(&mut t, 7), T_MAC2, "not again within the interval");
    assert_eq!(send(&mut t, 1_000_004), T_MAC2);
    assert_eq!(send(&mut t, 1_000_005), T_MAC, "again at exactly 1 s");
}

#[test]
fn poll_timeout_is_the_next_deadline_the_timer_must_meet() {
    let mut h = Harness::new(64, 16, 128, 1500, seeded("poll timeout", 68));
    assert_eq!(h.t.poll_timeout(10), None, "idle: nothing to wait for");
    // A read in flight: its timeout (the RTO before any sample: 1 s), or
    // deadsecs from its first transmission if that comes first.
    h.net.silent = true;
    let t0 = h.net.now;
    h.read(0, 0, 2);
    assert_eq!(h.t.poll_timeout(10), Some(t0 + INITIAL_RTO));
    assert_eq!(h.t.poll_timeout(0), Some(t0 + INITIAL_RTO), "deadsecs 0: no dead line");
    h.net.now += 500_000;
    let mut out = Outbox::new();
    h.t.on_timer(h.net.now, 10, &mut out);
    assert!(out.is_empty());
    assert_eq!(h.t.poll_timeout(10), Some(t0 + INITIAL_RTO));
    // Resent at 1 s: the next timeout is 2 s later; deadsecs 2 from the
    // first transmission comes first.
    h.net.now = t0 + INITIAL_RTO;
    h.t.on_timer(h.net.now, 10, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(h.t.poll_timeout(10), Some(t0 + INITIAL_RTO + 2 * INITIAL_RTO));
    assert_eq!(h.t.poll_timeout(2), Some(t0 + 2_000_000));
    // A ghost alone: its expiry.
    let (t, _, _) = write_ghost(10, 2);
    let expires = t.flight.ghosts[0].expires;
    assert!(!t.busy());
    assert_eq!(t.poll_timeout(10), Some(expires));
}

#[test]
fn each_path_counts_its_own_frames_and_bytes_and_they_add_up() {
    let mut h = Harness::new(8192, 16, 128, 1500, seeded("path counters", 69));
    in_use(&mut h.t, 1, T_MAC2, 1500, 16, 255);
    h.read(0, 0, 1000);
    h.write(1, 2000, vec![3; 600 * SECTOR]);
    h.run(2, 10_000_000);
    assert!(h.result(0).is_ok() && h.result(1).is_ok());
    let (a, b) = (&h.t.paths()[0].counters, &h.t.paths()[1].counters);
    assert_eq!(a.frames_sent, h.net.sent_per_mac[&T_MAC]);
    assert_eq!(b.frames_sent, h.net.sent_per_mac[&T_MAC2]);
    assert_eq!((a.frames_received, b.frames_received), (a.frames_sent, b.frames_sent), "no loss");
    let c = h.t.counters;
    assert_eq!(a.frames_sent + b.frames_sent, c.frames_sent);
    assert_eq!(a.frames_received + b.frames_received, c.frames_received);
    assert_eq!(a.bytes_read + b.bytes_read, 1000 * SECTOR as u64);
    assert_eq!(a.bytes_written + b.bytes_written, 600 * SECTOR as u64);
    assert!(a.bytes_read > 0 && b.bytes_read > 0 && a.bytes_written > 0 && b.bytes_written > 0);
    assert_eq!((c.bytes_read, c.bytes_written), (1000 * SECTOR as u64, 600 * SECTOR as u64));
    // A refused read counts as an error on its path.
    h.read(2, 8190, 20);
    h.run(3, 1_000_000);
    assert!(h.result(2).is_err());
    let errors: u64 = h.t.paths().iter().map(|p| p.counters.errors).sum();
    assert_eq!((c.errors, errors), (0, h.t.counters.errors));
    assert!(errors > 0);
}

#[test]
fn idle_time_does_not_count_towards_deadsecs() {
    // A read, then a pause longer than deadsecs with nothing to do, then a
    // read the target takes a second over: it completes.
    let mut h = Harness::new(64, 16, 128, 1500, seeded("idle is not dead", 70));
    h.deadsecs = 2;
    h.read(0, 0, 2);
    h.run(1, 1_000_000);
    h.run(usize::MAX, 3_000_000);
    assert!(!h.dead);
    h.net.service = 1_000_000;
    h.read(1, 0, 2);
    h.run(2, 5_000_000);
    assert!(!h.dead, "declared dead over time it had nothing to do");
    assert!(h.result(1).is_ok());
}

#[test]
fn a_command_resent_on_another_path_is_completed_by_its_first_path_s_answer() {
    // The read goes on path A, whose answers take 1.5 s; its timeout (1 s
    // before any sample) sends it again on path B, which is dead. A's
    // answer to the first transmission, from A's MAC, completes it.
    let mut h = Harness::new(64, 16, 128, 1500, seeded("answer on the first path", 71));
    in_use(&mut h.t, 1, T_MAC2, 1500, 16, 255);
    h.net.slow_mac = Some((T_MAC, 1_500_000));
    h.net.dead_mac = Some(T_MAC2);
    h.read(0, 8, 2);
    h.run(1, 5_000_000);
    assert_eq!(h.result(0).unwrap(), h.net.target.disk()[8 * SECTOR..10 * SECTOR]);
    assert!(h.net.now < 1_600_000, "completed at {} us, by the first answer", h.net.now);
    assert_eq!(h.net.sent_per_mac[&T_MAC2], 1, "resent once on the other path");
}

#[test]
fn a_reply_with_less_data_than_asked_is_short_and_one_with_more_is_taken() {
    // Truncated on the way: not applied, the read is resent. Padded (a
    // target may pad a frame): the data asked for is taken.
    for (extra, outcome) in [(-1i32, ReplyOutcome::Short), (60, ReplyOutcome::Accepted)] {
        let mut t = TargetIo::new(0, 1, 128);
        in_use(&mut t, 0, T_MAC, 1500, 16, 255);
        let mut model =
            SimModel::new(SimConfig::new(0, 1, T_MAC), Backing::Mem((0..64 * SECTOR).map(|i| i as u8).collect()));
        let results: Results = Default::default();
        let mut out = Outbox::new();
        t.submit_read(0, 4, 2, done_into(&results, 0), &mut out);
        let tx = out.remove(0);
        let bytes = model.handle(&[&tx.head[..], tx.data()].concat()).unwrap();
        let r = Repr::parse(&bytes).unwrap();
        let Body::Ata(mut a) = r.body else { unreachable!() };
        let mut data = a.data.to_vec();
        data.resize((data.len() as i32 + extra) as usize, 0xEE);
        a.data = &data;
        assert_eq!(t.on_reply(100, r.header.src, r.header.tag, Ok(&a), &mut out), outcome, "{extra}");
        for (done, res) in t.take_completed() {
            done(res);
        }
        let got = results.lock().unwrap().first().map(|(_, r)| r.clone());
        match outcome {
            ReplyOutcome::Short => assert_eq!(got, None, "nothing applied"),
            _ => assert_eq!(got, Some(Ok(model.disk()[4 * SECTOR..6 * SECTOR].to_vec()))),
        }
    }
}

/// A target on one path at MTU 1500 whose round trip was sampled once
/// (RTO at its floor), at time 100.
fn sampled() -> (TargetIo, SimModel) {
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 1500, 16, 255);
    let mut model = disk_model(64);
    let mut out = Outbox::new();
    t.submit_read(0, 0, 2, Box::new(|_| {}), &mut out);
    let tx = out.remove(0);
    assert_eq!(answer(&mut t, 100, &mut model, &tx, |_| {}, &mut out), ReplyOutcome::Accepted);
    assert_eq!(t.rto(), MIN_RTO);
    (t, model)
}

/// The LBA of a frame in `out`.
fn lba_of(tx: &Transmit) -> u64 {
    u64::from_le_bytes([tx.head[28], tx.head[29], tx.head[30], tx.head[31], tx.head[32], tx.head[33], 0, 0])
}

#[test]
fn a_frame_is_resent_at_its_timeout_to_the_microsecond_and_counted() {
    let (mut t, _) = sampled();
    let mut out = Outbox::new();
    t.submit_read(1000, 8, 2, Box::new(|_| {}), &mut out);
    out.clear();
    let deadline = 1000 + MIN_RTO;
    assert_eq!(t.on_timer(deadline - 1, 0, &mut out).retransmitted, 0);
    assert!(out.is_empty());
    let r = t.on_timer(deadline, 0, &mut out);
    assert_eq!((r.retransmitted, out.len()), (1, 1));
    assert_eq!((t.counters.retransmits, t.counters.timeouts), (1, 1));
}

#[test]
fn fast_retransmit_takes_three_later_answers_not_two() {
    // Four frames at 0; the target answers the second and third: the first
    // is not yet presumed lost. It answers the fourth: now it is, and goes
    // again before its timeout (a fast retransmit, not a timeout).
    let (mut t, mut model) = sampled();
    let mut out = Outbox::new();
    t.submit_read(1000, 8, 8, Box::new(|_| {}), &mut out);
    assert_eq!(out.len(), 4);
    let txs: Vec<Transmit> = std::mem::take(&mut out);
    for tx in &txs[1..3] {
        answer(&mut t, 1100, &mut model, tx, |_| {}, &mut out);
    }
    assert_eq!(t.on_timer(20_000, 0, &mut out).retransmitted, 0, "two later answers are not enough");
    answer(&mut t, 20_000, &mut model, &txs[3], |_| {}, &mut out);
    let r = t.on_timer(40_000, 0, &mut out);
    assert_eq!((r.retransmitted, out.len()), (1, 1));
    assert_eq!(lba_of(&out[0]), 8, "the first frame");
    assert_eq!((t.counters.retransmits, t.counters.timeouts), (1, 0));
}

#[test]
fn a_frame_presumed_lost_at_its_very_timeout_counts_as_a_timeout() {
    // Overtaken by three later answers, but only looked at when its timer
    // is due: a timeout (the window drops to one), not a fast retransmit.
    let (mut t, mut model) = sampled();
    let mut out = Outbox::new();
    t.submit_read(1000, 8, 8, Box::new(|_| {}), &mut out);
    let deadline = 1000 + t.rto();
    let txs: Vec<Transmit> = std::mem::take(&mut out);
    for tx in &txs[1..] {
        answer(&mut t, 1100, &mut model, tx, |_| {}, &mut out);
    }
    let r = t.on_timer(deadline, 0, &mut out);
    assert_eq!(r.retransmitted, 1);
    assert_eq!((t.counters.retransmits, t.counters.timeouts), (1, 1));
    assert_eq!(t.window(), 1, "a timeout cuts the window to one");
}

#[test]
fn a_probe_s_answer_presumes_lost_what_went_before_it_not_after() {
    let (mut t, _) = sampled();
    let mut out = Outbox::new();
    t.submit_read(1000, 8, 2, Box::new(|_| {}), &mut out);
    out.clear();
    // Quiet for the probe timeout (10 ms) with a frame waiting: a probe.
    assert!(t.on_timer(1000 + MIN_PROBE_TIMEOUT, 0, &mut out).probe);
    t.submit_read(20_000, 16, 2, Box::new(|_| {}), &mut out);
    assert_eq!(out.len(), 1);
    out.clear();
    // The probe is answered: the first read went before it and is resent;
    // the second went after it and waits for its timer.
    t.on_sign_of_life(21_000, T_MAC);
    let r = t.on_timer(30_000, 0, &mut out);
    assert_eq!(r.retransmitted, 1, "{:?}", out.iter().map(lba_of).collect::<Vec<_>>());
    assert_eq!(lba_of(&out[0]), 8);
}

#[test]
fn a_late_answer_keeps_its_ghost_one_hold_longer_from_now() {
    // A write whose first two transmissions are lost (presumed by probes'
    // answers) and whose third is answered: a ghost of two. A late answer
    // to the first keeps the ghost until a hold after that answer.
    let (mut t, mut model) = sampled();
    let mut out = Outbox::new();
    t.submit_write(1000, 10, vec![1; 2 * SECTOR], Box::new(|_| {}), &mut out);
    let tx1 = out.remove(0);
    t.on_sign_of_life(1000 + MIN_RTO, T_MAC);
    t.on_timer(1000 + MIN_RTO, 0, &mut out);
    let _tx2 = out.remove(0);
    let at3 = 1000 + MIN_RTO + 2 * MIN_RTO;
    t.on_sign_of_life(at3, T_MAC);
    t.on_timer(at3, 0, &mut out);
    let tx3 = out.remove(0);
    assert_eq!(answer(&mut t, at3 + 100, &mut model, &tx3, |_| {}, &mut out), ReplyOutcome::Accepted);
    assert_eq!(t.ghosts(), 1);
    let late = at3 + 300_000;
    assert_eq!(answer(&mut t, late, &mut model, &tx1, |_| {}, &mut out), ReplyOutcome::Late);
    assert_eq!(t.ghosts(), 1, "the second transmission is still out");
    assert_eq!(t.flight.ghosts[0].expires, late + t.ghost_hold());
}

#[test]
fn a_path_that_fails_no_longer_sets_the_frame_size_at_once() {
    // Paths at MTU 1500 and 9000 in use: 1024-byte frames. The 1500 one
    // stops answering and fails: from then on, 8704-byte frames.
    let mut h = Harness::new(20_000, 16, 128, 1500, seeded("failed path limits", 72));
    in_use(&mut h.t, 1, T_MAC2, 9000, 16, 255);
    assert_eq!(h.t.payload(), 1024);
    h.net.dead_mac = Some(T_MAC);
    for i in 0..20 {
        h.read(i, i as u64 * 2, 2);
    }
    h.run(20, 30_000_000);
    assert!(h.t.paths()[0].failed());
    assert_eq!(h.t.payload(), 8704);
}

#[test]
fn a_probe_needs_a_quiet_target_and_a_frame_waiting_longer_than_the_probe_timeout() {
    let setup = || {
        let mut t = TargetIo::new(0, 1, 128);
        in_use(&mut t, 0, T_MAC, 1500, 16, 255);
        let mut model = disk_model(64);
        let mut out = Outbox::new();
        t.submit_read(0, 0, 2, Box::new(|_| {}), &mut out);
        let tx = out.remove(0);
        assert_eq!(answer(&mut t, 100, &mut model, &tx, |_| {}, &mut out), ReplyOutcome::Accepted);
        (t, model)
    };
    let pto = MIN_PROBE_TIMEOUT;
    // Quiet (its last answer was 10 s ago), but its only frame was sent
    // just now: no probe.
    let (mut t, _) = setup();
    let now = 10_000_000;
    let mut out = Outbox::new();
    t.submit_read(now, 2, 2, Box::new(|_| {}), &mut out);
    out.clear();
    assert!(!t.on_timer(now + 1, 0, &mut out).probe, "a fresh frame waits for nothing yet");
    assert!(t.on_timer(now + pto, 0, &mut out).probe, "it waited the probe timeout");
    // A frame waiting longer than that while the target answers others:
    // no probe either.
    let (mut t, mut model) = setup();
    let mut out = Outbox::new();
    t.submit_read(now, 2, 2, Box::new(|_| {}), &mut out);
    t.submit_read(now, 4, 2, Box::new(|_| {}), &mut out);
    let later = out.remove(1);
    out.clear();
    assert_eq!(answer(&mut t, now + pto, &mut model, &later, |_| {}, &mut out), ReplyOutcome::Accepted);
    let r = t.on_timer(now + pto + 1, 0, &mut out);
    assert!(out.is_empty(), "nothing resent");
    assert!(!r.probe, "the target answers: it is not asked whether it is alive");
}

#[test]
fn a_pinned_command_is_resent_at_its_timeout_to_the_microsecond_and_counted_on_its_path() {
    let mut h = Harness::new(20_000, 16, 128, 1500, seeded("pinned resend", 75));
    let id = unverified(&mut h.t, 0, T_MAC2, 1500, 1, 1);
    h.net.silent = true;
    let t0 = h.net.now;
    pinned_identify(&mut h, 0, id);
    let mut out = Outbox::new();
    h.t.on_timer(t0 + INITIAL_RTO - 1, 10, &mut out);
    assert!(out.is_empty(), "not before its timeout");
    h.t.on_timer(t0 + INITIAL_RTO, 10, &mut out);
    assert_eq!(out.len(), 1, "resent at its timeout");
    let c = &h.t.path(id).unwrap().counters;
    assert_eq!((c.retransmits, c.timeouts), (1, 1));
    assert_eq!(h.t.counters.retransmits, 0, "not the target's own retransmission");
}

#[test]
fn a_lowered_mtu_cuts_only_the_frames_that_no_longer_fit_and_says_so_once() {
    let mut h = Harness::new(4096, 16, 128, 9000, seeded("cut what does not fit", 76));
    warm_up(&mut h);
    h.net.latency = 20_000;
    // Two sectors fit a 1500-byte frame; seventeen do not.
    h.read(0, 0, 2);
    h.read(1, 100, 17);
    assert_eq!(h.t.flight.nout, 2);
    let sent = h.t.counters.frames_sent;
    let mut out = Outbox::new();
    h.t.set_link_mtu(h.net.now, 0, 1500, &mut out);
    assert_eq!(h.t.counters.lost_jumbo, 1, "only the 17-sector frame was cut");
    assert_eq!(out.len(), 9, "its pieces go at once, two sectors each");
    assert_eq!(h.t.counters.frames_sent - sent, 9, "the small frame is not sent again");
    // The same MTU again changes nothing, and says nothing; nor does a
    // lower one whose frames still carry two sectors (36 + 1024 <= 1200).
    let mut again = Outbox::new();
    h.t.set_link_mtu(h.net.now, 0, 1500, &mut again);
    h.t.set_link_mtu(h.net.now, 0, 1200, &mut again);
    assert!(again.is_empty());
    assert_eq!(h.t.payload(), 1024);
    assert_eq!(h.t.take_events().len(), 1, "one report, of the first change");
    assert_eq!(h.t.counters.lost_jumbo, 1);
    h.net.send_all(&mut out);
    h.after();
    h.run(7, 10_000_000);
    assert_eq!(h.result(1).unwrap(), h.net.target.disk()[100 * SECTOR..117 * SECTOR]);
}

#[test]
fn the_pieces_of_a_cut_frame_keep_its_backoff() {
    let mut h = Harness::new(4096, 16, 128, 9000, seeded("cut backoff", 77));
    h.net.silent = true;
    let t0 = h.net.now;
    h.read(0, 0, 17);
    // Timed out at 1 s and resent: it has gone twice.
    let mut out = Outbox::new();
    h.t.on_timer(t0 + INITIAL_RTO, 0, &mut out);
    assert_eq!(out.len(), 1);
    out.clear();
    let t1 = t0 + INITIAL_RTO + 10;
    h.t.set_link_mtu(t1, 0, 1500, &mut out);
    assert_eq!(out.len(), 1, "the first piece (the window is 1 after the timeout)");
    // Its pieces time out as its third transmission would: 4 RTOs.
    let deadlines: Vec<Micros> =
        h.t.flight
            .entries
            .iter()
            .filter(|e| e.job.is_some())
            .filter_map(|e| e.sent.last())
            .map(|t| t.deadline)
            .collect();
    assert_eq!(deadlines, vec![t1 + 4 * INITIAL_RTO]);
}

#[test]
fn queued_frames_too_large_for_a_lowered_mtu_are_cut_though_none_in_flight_is() {
    // One buffer: a small read in flight, a large one queued behind it.
    let mut h = Harness::new(4096, 1, 128, 9000, seeded("cut the queue", 78));
    warm_up(&mut h);
    h.read(0, 0, 2);
    h.read(1, 100, 17);
    assert_eq!((h.t.flight.nout, h.t.pending_frames()), (1, 1));
    h.net.max_frame = Some(1514);
    h.net.longest_sent = 0;
    let mut out = Outbox::new();
    h.t.set_link_mtu(h.net.now, 0, 1500, &mut out);
    assert_eq!(h.t.counters.lost_jumbo, 0, "nothing in flight was cut");
    assert_eq!(h.t.pending_frames(), 9, "the queued frame was cut to the new size");
    h.net.send_all(&mut out);
    h.after();
    h.run(7, 10_000_000);
    assert!(h.net.longest_sent <= 1514, "a frame of {} bytes", h.net.longest_sent);
    assert_eq!(h.result(1).unwrap(), h.net.target.disk()[100 * SECTOR..117 * SECTOR]);
}

#[test]
fn a_ghost_goes_at_its_expiry_to_the_microsecond() {
    let (mut t, _, _) = write_ghost(10, 2);
    let expires = t.flight.ghosts[0].expires;
    let mut out = Outbox::new();
    t.on_timer(expires - 1, 0, &mut out);
    assert_eq!(t.ghosts(), 1);
    t.on_timer(expires, 0, &mut out);
    assert_eq!(t.ghosts(), 0);
    assert_eq!(t.held(), 0, "what it held is no longer counted");
}

#[test]
fn a_transmission_the_link_refused_is_the_only_one_no_longer_held() {
    let mut h = Harness::new(4096, 16, 128, 1500, seeded("refused resend", 79));
    h.net.silent = true;
    let t0 = h.net.now;
    h.read(0, 0, 2);
    // Timed out and resent; the original may still be held.
    let mut out = Outbox::new();
    h.t.on_timer(t0 + INITIAL_RTO, 0, &mut out);
    assert_eq!(out.len(), 1);
    let tag = u32::from_be_bytes(out[0].head[20..24].try_into().unwrap());
    let sent = |h: &Harness| {
        let e = h.t.flight.entries.iter().find(|e| e.job.is_some()).expect("in flight");
        e.sent.iter().map(|t| t.held).collect::<Vec<_>>()
    };
    assert_eq!((sent(&h), h.t.held()), (vec![true, true], 2));
    h.t.not_sent(tag);
    assert_eq!((sent(&h), h.t.held()), (vec![true, false], 1), "the resend was refused, not the original");
    h.t.not_sent(tag);
    assert_eq!((sent(&h), h.t.held()), (vec![true, false], 1), "counted once");
}

#[test]
fn a_refused_transmission_of_a_ghost_is_no_longer_held() {
    // A write's first transmission timed out and was resent; the resend
    // was answered, so the first lives on in a ghost, held by our count.
    // Then the link says the first never went out.
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 1500, 16, 255);
    let mut model = disk_model(64);
    let mut out = Outbox::new();
    t.submit_write(0, 10, vec![1; 2 * SECTOR], Box::new(|_| {}), &mut out);
    let first = u32::from_be_bytes(out[0].head[20..24].try_into().unwrap());
    out.clear();
    t.on_timer(INITIAL_RTO, 0, &mut out);
    assert_eq!(out.len(), 1, "resent");
    let tx = out.remove(0);
    assert_eq!(answer(&mut t, INITIAL_RTO + 100, &mut model, &tx, |_| {}, &mut out), ReplyOutcome::Accepted);
    assert_eq!((t.ghosts(), t.held()), (1, 1), "the first is a ghost, still held");
    t.not_sent(first);
    assert_eq!(t.held(), 0);
    assert!(t.flight.ghosts[0].sent.iter().all(|s| !s.held));
}

#[test]
fn last_progress_is_when_the_target_last_answered_a_command() {
    let mut t = TargetIo::new(0, 1, 128);
    in_use(&mut t, 0, T_MAC, 1500, 16, 255);
    let mut model = disk_model(64);
    assert_eq!(t.last_progress(), 0, "never");
    let mut out = Outbox::new();
    t.submit_read(1_000, 0, 2, Box::new(|_| {}), &mut out);
    let tx = out.remove(0);
    assert_eq!(t.last_progress(), 0, "a send is no answer");
    answer(&mut t, 1_234, &mut model, &tx, |_| {}, &mut out);
    assert_eq!(t.last_progress(), 1_234);
}
