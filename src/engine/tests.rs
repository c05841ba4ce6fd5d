//! Engine tests under a simulated clock and a simulated target: a
//! discrete-event loop with per-frame latency, a target with a bounded
//! buffer that serves frames one after another, and seeded loss and
//! duplication. Everything is deterministic.

use super::*;
use crate::link::fault::Rng;
use crate::sim::{Backing, SimConfig, SimModel};
use crate::wire::{Body, Repr};
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
}

impl Net {
    fn new(sectors: usize, bufcnt: usize, seed: u64) -> Net {
        Net {
            now: 0,
            rng: Rng::new(seed),
            loss: 0.0,
            dup: 0.0,
            dead_mac: None,
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
        }
    }

    /// Sends what the engine queued, in order.
    fn send_all(&mut self, out: &mut Outbox) {
        for t in out.drain(..) {
            self.send(&[&t.head[..], t.data()].concat());
        }
    }

    /// A frame leaves the initiator now: the target serves it (or the
    /// network or the target's full buffer drops it).
    fn send(&mut self, f: &[u8]) {
        let mac = Mac::from_slice(&f[0..6]);
        *self.sent_per_mac.entry(mac).or_default() += 1;
        if self.silent || self.rng.chance(self.loss) || Some(mac) == self.dead_mac {
            return;
        }
        let arrive = self.now + self.latency;
        while self.queue.front().is_some_and(|&d| d <= arrive) {
            self.queue.pop_front();
        }
        if self.queue.len() >= self.bufcnt {
            self.overflow_drops += 1;
            return;
        }
        let start = arrive.max(self.busy_until);
        let done = start + self.service;
        self.busy_until = done;
        self.queue.push_back(done);
        self.target.cfg.mac = mac;
        let reply = self.target.handle(f).expect("the target answers every ATA frame the engine sends");
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
}

impl Harness {
    fn new(sectors: usize, bufcnt: u16, maxout: u16, mtu: usize, seed: u64) -> Harness {
        let mut t = TargetIo::new(0, 1, maxout);
        t.add_path(0, "sim0", I_MAC, T_MAC, mtu, bufcnt, 255);
        Harness {
            t,
            net: Net::new(sectors, bufcnt as usize, seed),
            results: Arc::new(Mutex::new(Vec::new())),
            deadsecs: 180,
            max_nout: 0,
            min_cwnd_seen: u32::MAX,
            cwnd_trace: Vec::new(),
            dead: false,
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

    fn after(&mut self) {
        self.max_nout = self.max_nout.max(self.t.nout);
        self.min_cwnd_seen = self.min_cwnd_seen.min(self.t.cwnd);
        for (done, res) in self.t.take_completed() {
            done(res);
        }
    }

    /// Runs the event loop until every request finished or `limit` passed.
    fn run(&mut self, want: usize, limit: Micros) {
        let end = self.net.now + limit;
        while self.results.lock().unwrap().len() < want && self.net.now < end && !self.dead {
            let next_reply = self.net.replies.peek().map(|r| r.0 .0).unwrap_or(Micros::MAX);
            let next_tick = (self.net.now / 1000 + 1) * 1000;
            self.net.now = next_reply.min(next_tick);
            while self.net.replies.peek().is_some_and(|r| r.0 .0 <= self.net.now) {
                let Reverse((_, _, f)) = self.net.replies.pop().unwrap();
                let r = Repr::parse(&f).unwrap();
                let Body::Ata(a) = r.body else { unreachable!() };
                let mut out = Outbox::new();
                self.t.on_reply(self.net.now, r.header.src, r.header.tag, Ok(&a), &mut out);
                self.net.send_all(&mut out);
                self.after();
            }
            if self.net.now == next_tick {
                let mut out = Outbox::new();
                let dead = self.t.on_timer(self.net.now, self.deadsecs, &mut |_| {}, &mut out);
                self.net.send_all(&mut out);
                if dead {
                    self.t.fail_all(IoError::Dead);
                    self.dead = true;
                }
                self.after();
                self.cwnd_trace.push(self.t.cwnd);
            }
        }
    }

    fn result(&self, id: usize) -> IoResult {
        self.results.lock().unwrap().iter().find(|(i, _)| *i == id).map(|(_, r)| r.clone()).expect("finished")
    }
}

#[test]
fn frame_size_follows_mtu_and_target_maximum() {
    let mut t = TargetIo::new(0, 1, 128);
    t.add_path(0, "a", I_MAC, T_MAC, 1500, 16, 255);
    assert_eq!(t.sectors_per_frame, 2);
    assert_eq!(t.payload(), 1024);
    t.add_path(1, "b", I_MAC, T_MAC2, 9000, 16, 255);
    assert_eq!(t.sectors_per_frame, 2, "smallest path MTU wins");
    t.remove_link(0);
    assert_eq!(t.sectors_per_frame, 17);
    assert_eq!(t.add_path(1, "b", I_MAC, T_MAC2, 9000, 16, 8), PathChange::Updated);
    assert_eq!(t.sectors_per_frame, 8);
}

#[test]
fn paths_are_capped_and_the_smallest_buffer_count_wins() {
    let mut t = TargetIo::new(0, 1, 128);
    assert_eq!(t.add_path(0, "a", I_MAC, T_MAC, 9000, 64, 17), PathChange::Added);
    assert_eq!(t.maxwin, 64);
    // A (possibly forged) config response with a huge buffer count cannot
    // raise the window; a small one lowers it.
    t.add_path(0, "a", I_MAC, Mac([2, 0, 0, 0, 1, 1]), 9000, 65535, 255);
    assert_eq!(t.maxwin, 64);
    t.add_path(0, "a", I_MAC, Mac([2, 0, 0, 0, 1, 2]), 9000, 4, 255);
    assert_eq!(t.maxwin, 4);
    for i in 3..20u8 {
        t.add_path(0, "a", I_MAC, Mac([2, 0, 0, 0, 1, i]), 9000, 16, 255);
    }
    assert_eq!(t.paths.len(), MAX_PATHS);
    assert_eq!(t.add_path(0, "a", I_MAC, Mac([2, 0, 0, 0, 2, 0]), 9000, 16, 255), PathChange::Full);
}

#[test]
fn window_starts_at_half_and_slow_starts_to_the_buffer_count() {
    let mut h = Harness::new(8192, 16, 128, 1500, 1);
    assert_eq!(h.t.maxwin, 16);
    assert_eq!(h.t.cwnd, 8);
    h.read(0, 0, 4096);
    assert_eq!(h.t.nout, 8, "initial window is half the buffer count");
    h.run(1, 10_000_000);
    let data = h.result(0).expect("read ok");
    assert_eq!(data, h.net.target.disk()[..4096 * SECTOR]);
    assert_eq!(h.t.cwnd, 16);
    assert_eq!(h.max_nout, 16, "never more than the buffer count in flight");
    assert_eq!(h.net.overflow_drops, 0);
    assert_eq!(h.t.counters.retransmits, 0);
    // maxout caps the window below the buffer count.
    let h2 = Harness::new(64, 64, 10, 1500, 1);
    assert_eq!(h2.t.maxwin, 10);
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
    assert_eq!(h.min_cwnd_seen, 1, "a loss cuts the window to 1");
    // Loss stops: the window grows back to the maximum.
    h.net.loss = 0.0;
    h.min_cwnd_seen = u32::MAX;
    h.read(100, 0, 20000);
    h.run(21, 120_000_000);
    assert!(h.result(100).is_ok());
    assert_eq!(h.t.cwnd, 32, "window recovered: {:?}", &h.cwnd_trace[h.cwnd_trace.len().saturating_sub(20)..]);
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
    h.read(0, 0, 8);
    h.run(1, 4_900_000);
    assert!(!h.dead, "not dead before deadsecs");
    assert!(h.t.counters.retransmits > 0);
    h.run(1, 200_000);
    assert!(h.dead, "dead at deadsecs");
    assert_eq!(h.result(0), Err(IoError::Dead));
    assert_eq!(h.t.nout, 0);
    // A late reply to a cleared tag is unexpected, not a crash.
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
    // Unknown tag from the right MAC.
    let o = h.t.on_reply(h.net.now, T_MAC, tag ^ 0x0100_0000, Ok(&a), &mut out);
    assert!(out.is_empty(), "nothing sent for ignored replies");
    assert_eq!(o, ReplyOutcome::Unexpected);
    assert_eq!(h.t.nout, 1);
    h.run(1, 5_000_000);
    assert_eq!(h.result(0).unwrap(), h.net.target.disk()[..1024], "forged data never applied");
}

#[test]
fn multipath_round_robin_then_failover_to_the_working_path() {
    let mut h = Harness::new(8192, 16, 128, 1500, 11);
    h.t.add_path(1, "sim1", I_MAC, T_MAC2, 1500, 16, 255);
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

#[test]
fn rto_follows_the_measured_rtt() {
    let mut h = Harness::new(4096, 16, 128, 1500, 3);
    h.net.latency = 2_000;
    h.read(0, 0, 2000);
    h.run(1, 10_000_000);
    let srtt = h.t.srtt();
    assert!((4_000..10_000).contains(&srtt), "srtt {srtt}");
    assert!(h.t.rto() >= MIN_RTO && h.t.rto() <= MAX_RTO);
    assert_eq!(h.t.counters.retransmits, 0, "no spurious retransmits");
}

#[test]
fn tags_have_bit_31_and_differ_on_retransmit() {
    let mut t = TargetIo::new(0, 1, 128);
    t.add_path(0, "a", I_MAC, T_MAC, 1500, 16, 255);
    let mut out = Outbox::new();
    t.submit_read(0, 0, 2, Box::new(|_| {}), &mut out);
    t.on_timer(10_000_000, 0, &mut |_| {}, &mut out);
    let tags: Vec<u32> =
        out.iter().map(|f| u32::from_be_bytes([f.head[20], f.head[21], f.head[22], f.head[23]])).collect();
    assert_eq!(tags.len(), 2);
    assert!(tags.iter().all(|t| t & 0x8000_0000 != 0));
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
    assert!(h.t.nout > 1);
    h.run(1, 100_000);
    assert!(matches!(h.result(0), Err(IoError::Ata { .. })), "answered at the first error");
    h.run(2, 5_000_000);
    assert!(!h.dead, "no retrying for an answered request, so no deadsecs");
    assert!(!h.t.busy());
}
