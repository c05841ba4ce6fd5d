//! The filesystem core without the kernel: Initiator + BlockFs over the
//! in-memory hub with simulated targets (and the seeded fault injector).
//!
//! Most tests run on the real clock with a timer thread ticking the
//! initiator, as aoefs does. The deadsecs tests run on a manual clock that
//! only the test moves (and ticks), so a dead target is declared dead after
//! exactly `deadsecs` of clock time and in no real time. The hub delivers
//! frames on its own thread either way: waits for frames are real (bounded).

// Of the harness, only the printed seed (`tests/common/seed.rs`).
mod common {
    pub mod seed;
}

use aoefs::blockfs::{BlockFs, Ctl, CtlError, Error, Kind, Node, Opened, ATTRS};
use aoefs::clock::{Clock, ManualClock, RealClock};
use aoefs::engine::{IoError, IoResult, Op};
use aoefs::initiator::{Initiator, Options};
use aoefs::link::fault::FaultConfig;
use aoefs::link::mem::{Hub, SimTarget};
use aoefs::sim::{Backing, SimConfig, SimModel};
use aoefs::timer::Timer;
use aoefs::wire::Mac;
use common::seed::seeded;
use std::ffi::OsStr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECTORS: u64 = 8192; // 4 MiB
/// How often the initiator is ticked (aoefs' timer thread: every 5 ms).
const TICK: Duration = aoefs::timer::TICK;

/// The target's MAC.
const T_MAC: Mac = Mac([2, 0, 0, 0, 2, 2]);

/// Target e3.7 as vblade would be: 16 buffers, 17 sectors per command,
/// FLUSH CACHE but not FLUSH CACHE EXT.
fn e3_7() -> SimConfig {
    SimConfig { buffer_count: 16, max_sectors: 17, ..SimConfig::new(3, 7, T_MAC) }
}

/// The hub, `target` on it and an initiator on port `mem0` reading `clock`.
fn start(clock: Arc<dyn Clock>, mtu: usize, opts: Options, target: SimConfig) -> (Hub, Arc<SimTarget>, Arc<Initiator>) {
    let hub = Hub::new();
    hub.add_port("mem0", Mac([2, 0, 0, 0, 1, 1]), mtu);
    let t = SimTarget::start_model(&hub, SimModel::with_disk(target, SECTORS));
    let ini = Initiator::new(hub.provider(), clock, opts, &["mem0".to_string()]).expect("initiator");
    (hub, t, ini)
}

fn opts(deadsecs: u32) -> Options {
    Options { deadsecs, maxout: 128, ..Default::default() }
}

/// Real clock; a thread ticks the initiator every [`TICK`] until the test
/// drops it. The target is e3.7.
fn setup(mtu: usize, deadsecs: u32, cache: usize) -> (Hub, Arc<SimTarget>, Arc<BlockFs>, Timer) {
    setup_with(e3_7(), mtu, opts(deadsecs), cache)
}

/// `setup` with another target (shelf 3, slot 7: the helpers below use
/// e3.7) or other options.
fn setup_with(
    target: SimConfig,
    mtu: usize,
    opts: Options,
    cache: usize,
) -> (Hub, Arc<SimTarget>, Arc<BlockFs>, Timer) {
    let (hub, t, ini) = start(Arc::new(RealClock::default()), mtu, opts, target);
    // As aoefs starts: the timer, and the first discovery.
    let timer = aoefs::timer::start(&ini, Duration::from_secs(3));
    let core = BlockFs::new(ini, cache, 4 << 20, 8, false);
    (hub, t, core, timer)
}

/// Manual clock: nothing ticks the initiator and the clock stands still
/// unless the test calls [`advance`].
fn setup_manual(mtu: usize, deadsecs: u32, cache: usize) -> (Hub, Arc<SimTarget>, Arc<BlockFs>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    let (hub, t, ini) = start(clock.clone(), mtu, opts(deadsecs), e3_7());
    ini.discover();
    // wait_discovery measures its quiet time on the clock, which stands
    // still: wait (real time) for the hub to bring the answers instead.
    let up = wait_until(Duration::from_secs(3), || ini.device(3, 7).is_some_and(|d| d.is_up()));
    assert!(up, "e3.7 was not discovered and identified");
    let core = BlockFs::new(ini, cache, 4 << 20, 8, false);
    (hub, t, core, clock)
}

/// Moves the manual clock forward by `by`, one [`TICK`] at a time, ticking
/// the initiator after each step as its timer thread would.
fn advance(core: &BlockFs, clock: &ManualClock, by: Duration) {
    let step = TICK.as_micros() as u64;
    let mut left = by.as_micros() as u64;
    while left > 0 {
        let d = left.min(step);
        clock.advance(d);
        core.ini.tick();
        left -= d;
    }
}

/// Polls `cond` every 10 ms (real time) until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Starts a read of e3.7; its answer arrives on the returned channel.
fn read_async(core: &Arc<BlockFs>, off: u64, len: u32) -> mpsc::Receiver<Result<Vec<u8>, i32>> {
    let dev = core.ini.device(3, 7).expect("device");
    let (tx, rx) = mpsc::channel();
    let region = core.region(&dev, 0).unwrap();
    core.read_image(
        &dev,
        region,
        off,
        len,
        Box::new(move |r: Result<&[u8], Error>| tx.send(r.map(|d| d.to_vec()).map_err(|e| e.errno())).unwrap()),
    );
    rx
}

fn read(core: &Arc<BlockFs>, off: u64, len: u32) -> Result<Vec<u8>, i32> {
    read_async(core, off, len).recv_timeout(Duration::from_secs(30)).expect("read answered")
}

fn write(core: &Arc<BlockFs>, off: u64, data: &[u8]) -> Result<u32, i32> {
    let dev = core.ini.device(3, 7).expect("device");
    let (tx, rx) = mpsc::channel();
    let region = core.region(&dev, 0).unwrap();
    core.write_image(&dev, region, off, data, Box::new(move |r| tx.send(r.map_err(|e| e.errno())).unwrap()));
    rx.recv_timeout(Duration::from_secs(30)).expect("write answered")
}

fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut r = aoefs::link::fault::Rng::new(seed);
    (0..n).map(|_| r.next_u64() as u8).collect()
}

#[test]
fn discovery_identify_and_status() {
    let (_hub, _t, core, _) = setup(1500, 180, 0);
    let dev = core.ini.device(3, 7).expect("discovered");
    assert!(dev.visible());
    assert_eq!(dev.sectors(), SECTORS);
    assert_eq!(core.status_attr(&dev, "state").unwrap(), "up\n");
    assert_eq!(core.status_attr(&dev, "mac").unwrap(), "020000000202\n");
    assert_eq!(core.status_attr(&dev, "netif").unwrap(), "mem0\n");
    assert_eq!(core.status_attr(&dev, "payload").unwrap(), "1024\n");
    assert_eq!(core.status_attr(&dev, "size").unwrap(), format!("{SECTORS}\n"));
    assert_eq!(core.status_attr(&dev, "firmware-version").unwrap(), "0x4019\n");
    assert_eq!(core.status_attr(&dev, "model").unwrap(), "aoefs SimTarget\n");
    assert!(core.status_attr(&dev, "nonsense").is_none());
    // identify: the 512-byte block as the target sent it.
    let (tx, rx) = mpsc::channel();
    core.read_attr(&dev, "identify", 0, 4096, Box::new(move |r| tx.send(r.map(<[u8]>::to_vec).ok()).unwrap()));
    let raw = rx.recv_timeout(Duration::from_secs(5)).unwrap().expect("identify read");
    assert_eq!(raw.len(), 512);
    let id = aoefs::wire::Identify::parse(&raw).unwrap();
    assert_eq!((id.sectors, id.model.as_str()), (SECTORS, "aoefs SimTarget"));
    assert_eq!(raw, id.emit(), "the sim target sends what Identify::emit makes");
}

/// A target kept busy one request at a time (QD1) is looked at by the
/// timer every `BUSY_TICK` anyway: new requests wake the timer thread only
/// when it would sleep longer, not once per request (a wake-up is a CPU
/// crossing, 20-45 us here, and it cost QD1 latency).
#[test]
fn requests_one_at_a_time_do_not_wake_the_timer_each() {
    let (_hub, _t, core, _timer) = setup(1500, 180, 0);
    let wake = core.ini.timer_wake.clone();
    let n = 2000u64;
    let (w0, t0) = (wake.wakes(), Instant::now());
    // Not sequential, so no read-ahead answers them: each goes to the target.
    for i in 0..n {
        read(&core, (i * 7919 % 1024) * 4096, 4096).expect("read");
    }
    let (wakes, ms) = (wake.wakes() - w0, t0.elapsed().as_millis() as u64);
    let ticks = ms * 1000 / aoefs::initiator::BUSY_TICK;
    eprintln!("{n} reads in {ms} ms woke the timer {wakes} times");
    assert!(wakes <= 2 * ticks + 10, "{wakes} wakes in {ms} ms: more than the timer's own ticks");
    assert!(wakes < n / 4, "{wakes} wakes for {n} requests");
}

/// `--busy-poll auto` polls for a reply only while few requests are at
/// once: the links hear of the application's requests in progress as well
/// as of the target's commands in flight. Reads one at a time are few
/// (each reply is awaited by a caller with nothing else to do); with other
/// requests in progress they are many, and stay many until
/// `OVERLAP_MEMORY` requests in a row came alone, so a queue that empties
/// for a moment does not start polling.
#[test]
fn the_links_hear_whether_the_application_keeps_requests_at_once() {
    use aoefs::initiator::OVERLAP_MEMORY;
    let (hub, _t, core, _timer) = setup(9000, 180, 0);
    let demand = core.ini.demand.clone();
    let reads = |n: u64, from: u64| {
        for i in from..from + n {
            // Not sequential, so no read-ahead answers them: each goes to the target.
            read(&core, (i * 7919 % 1024) * 4096, 4096).expect("read");
        }
    };
    reads(10, 0);
    hub.take_reply_hints();
    reads(50, 10);
    assert_eq!(hub.take_reply_hints(), (50, 0), "one read at a time: one frame each, few at once");
    assert_eq!((demand.outstanding(), demand.concurrency()), (0, 1), "each read counted, and ended");

    // Two other requests in progress (a QD3 application): every read's
    // frame has three at once.
    let others = [demand.begin(), demand.begin()];
    reads(20, 60);
    assert_eq!(hub.take_reply_hints(), (0, 20));
    drop(others);
    // Remembered until OVERLAP_MEMORY requests in a row came alone.
    reads(OVERLAP_MEMORY as u64 - 1, 80);
    assert_eq!(hub.take_reply_hints(), (0, OVERLAP_MEMORY as u64 - 1));
    reads(6, 200);
    assert_eq!(hub.take_reply_hints(), (6, 0), "the run of requests alone complete: few again");
    assert_eq!(demand.outstanding(), 0);
}

/// One large request keeps many of the target's commands in flight: its
/// frames count as many at once, so `--busy-poll auto` does not poll
/// through a stream of such requests (replies come anyway; polling there
/// cost 4-22 % more CPU per MB on sequential reads with the target on the
/// same CPUs, `Documentation/performance.md`).
#[test]
fn a_large_request_counts_its_commands_in_flight_as_at_once() {
    let (hub, t, core, _timer) = setup(9000, 180, 0);
    hub.take_reply_hints();
    let data = read(&core, 0, 1 << 20).expect("read");
    assert_eq!(data, t.disk()[..1 << 20]);
    let frames = (1u64 << 20).div_ceil(17 * 512);
    let (few, many) = hub.take_reply_hints();
    assert_eq!(few + many, frames, "every frame of the request told its link");
    assert!(many > frames / 2, "{few} few, {many} many: the commands in flight did not count");
}

#[test]
fn jumbo_frames_carry_17_sectors() {
    let (_hub, _t, core, _) = setup(9000, 180, 0);
    let dev = core.ini.device(3, 7).unwrap();
    assert_eq!(core.status_attr(&dev, "payload").unwrap(), "8704\n");
}

#[test]
fn aligned_and_unaligned_io_round_trip() {
    for cache in [0, 8 << 20] {
        let (_hub, t, core, _) = setup(1500, 180, cache);
        let data = pattern(300_000, 1);
        assert_eq!(write(&core, 4096, &data), Ok(300_000));
        assert_eq!(&t.disk()[4096..4096 + 300_000], &data[..]);
        assert_eq!(read(&core, 4096, 300_000).unwrap(), data);
        // Unaligned: odd offsets and lengths, within one sector and across many.
        let mut model = t.disk();
        for (i, (off, len)) in [(513u64, 1000usize), (1, 3), (511, 2), (100_000, 70_001), (1023, 1)].iter().enumerate()
        {
            let d = pattern(*len, 10 + i as u64);
            assert_eq!(write(&core, *off, &d), Ok(*len as u32));
            model[*off as usize..*off as usize + len].copy_from_slice(&d);
        }
        assert_eq!(t.disk(), model);
        assert_eq!(read(&core, 0, 200_000).unwrap(), model[..200_000]);
        assert_eq!(read(&core, 513, 1000).unwrap(), model[513..1513]);
        // Read at and past the end.
        let end = SECTORS * 512;
        assert_eq!(read(&core, end - 10, 100).unwrap(), model[end as usize - 10..]);
        assert_eq!(read(&core, end, 100).unwrap(), Vec::<u8>::new());
        // Writes past the end: short, then ENOSPC.
        assert_eq!(write(&core, end - 10, &[1u8; 100]), Ok(10));
        assert_eq!(write(&core, end, &[1u8; 100]), Err(libc::ENOSPC));
    }
}

#[test]
fn concurrent_unaligned_writes_into_shared_sectors_lose_nothing() {
    let (_hub, t, core, _) = setup(1500, 180, 8 << 20);
    let threads = 8;
    let slice = 100usize;
    let rounds = 20;
    let mut hs = Vec::new();
    for th in 0..threads {
        let core = core.clone();
        hs.push(std::thread::spawn(move || {
            for r in 0..rounds {
                // Thread th owns bytes [ (r*threads+th)*slice, +slice ): interleaved within sectors.
                let off = ((r * threads + th) * slice) as u64;
                let d = vec![(th * 16 + r) as u8; slice];
                assert_eq!(write(&core, off, &d), Ok(slice as u32));
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    let disk = t.disk();
    for r in 0..rounds {
        for th in 0..threads {
            let off = (r * threads + th) * slice;
            assert!(disk[off..off + slice].iter().all(|&b| b == (th * 16 + r) as u8), "slice r{r} t{th}");
        }
    }
    assert_eq!(read(&core, 0, (threads * slice * rounds) as u32).unwrap(), disk[..threads * slice * rounds]);
}

#[test]
fn cache_never_serves_data_older_than_an_acknowledged_write() {
    let (_hub, _t, core, _) = setup(1500, 180, 8 << 20);
    for i in 0..50u64 {
        let off = (i % 5) * 4096 + 7;
        let d = pattern(3000, 100 + i);
        write(&core, off, &d).unwrap();
        assert_eq!(read(&core, off, 3000).unwrap(), d);
        // Cached reads of the whole block agree with the target.
        let whole = read(&core, (off / 4096) * 4096, 4096).unwrap();
        assert_eq!(&whole[7..3007], &d[..]);
    }
}

#[test]
fn io_survives_loss_duplication_reordering_and_corruption() {
    let (hub, t, core, _) = setup(1500, 180, 0);
    hub.set_faults(
        Some(FaultConfig { drop: 0.02, duplicate: 0.01, reorder: 0.02, corrupt: 0.001, ..Default::default() }),
        seeded("faults", 1234),
    );
    let mut model = t.disk();
    // Sizes from 64 KiB to 670 KiB: the larger ones go out in several
    // chunks (core::WRITE_CHUNK), each of which can lose frames.
    for i in 0..30u64 {
        let len = 65_536 + i as usize * 20_877;
        let off = (i * 37_123) % (SECTORS * 512 - len as u64);
        let d = pattern(len, i);
        assert_eq!(write(&core, off, &d), Ok(d.len() as u32));
        model[off as usize..off as usize + d.len()].copy_from_slice(&d);
    }
    let fc = hub.fault_counters();
    assert!(fc.dropped > 0 && fc.duplicated > 0 && fc.reordered > 0 && fc.corrupted > 0, "{fc:?}");
    assert!(t.disk() == model, "target holds exactly what was written");
    assert_eq!(read(&core, 0, (SECTORS * 512) as u32).unwrap(), model);
    hub.set_faults(None, 0);
    let dev = core.ini.device(3, 7).unwrap();
    let stats = core.status_attr(&dev, "stats").unwrap();
    assert!(stats.contains("retransmits"), "{stats}");
    let c = dev.snapshot().counters;
    assert!(c.retransmits > 0 && c.unexpected > 0, "{c:?}");
}

#[test]
fn dead_target_fails_io_with_eio_and_shows_closewait() {
    let (_hub, t, core, clock) = setup_manual(1500, 2, 0);
    let dev = core.ini.device(3, 7).unwrap();
    dev.opened();
    t.model.lock().behaviour.silent = true;
    let reply = read_async(&core, 0, 4096);
    // Retransmitted and unanswered until just short of deadsecs (2 s)...
    advance(&core, &clock, Duration::from_secs(2) - TICK);
    assert_eq!(reply.try_recv(), Err(mpsc::TryRecvError::Empty), "the read failed before deadsecs");
    assert_eq!(core.status_attr(&dev, "state").unwrap(), "up\n");
    assert!(dev.snapshot().counters.retransmits > 0, "no retransmit while the target was silent");
    // ...and failed with EIO by the tick at 2 s.
    advance(&core, &clock, TICK);
    assert_eq!(reply.recv_timeout(Duration::from_secs(5)).expect("read answered at deadsecs"), Err(libc::EIO));
    assert_eq!(core.status_attr(&dev, "state").unwrap(), "down,closewait\n");
    // New I/O fails at once.
    assert_eq!(read(&core, 8192, 512), Err(libc::EIO));
    // It may not come back while open...
    t.model.lock().behaviour.silent = false;
    t.announce();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(core.status_attr(&dev, "state").unwrap(), "down,closewait\n");
    // ...but does once closed and rediscovered.
    dev.closed();
    assert_eq!(core.status_attr(&dev, "state").unwrap(), "down\n");
    core.write_ctl(Ctl::Discover, b"\n").unwrap();
    wait_until(Duration::from_secs(3), || core.status_attr(&dev, "state").unwrap() == "up\n");
    assert_eq!(core.status_attr(&dev, "state").unwrap(), "up\n");
    assert!(read(&core, 0, 4096).is_ok());
}

#[test]
fn aoe_error_replies_fail_promptly() {
    let (_hub, t, core, _) = setup(1500, 180, 0);
    t.model.lock().behaviour.aoe_error = Some(3);
    let start = std::time::Instant::now();
    assert_eq!(read(&core, 0, 4096), Err(libc::EIO));
    assert!(start.elapsed() < Duration::from_secs(1));
    let msg = core.ini.errlog.pop_timeout(Duration::from_millis(100)).unwrap();
    assert!(msg.contains("device unavailable"), "{msg}");
}

fn fsync(core: &Arc<BlockFs>) -> Result<(), i32> {
    let dev = core.ini.device(3, 7).expect("device");
    let (tx, rx) = mpsc::channel();
    core.fsync_image(&dev, Box::new(move |r| tx.send(r.map_err(|e| e.errno())).unwrap()));
    rx.recv_timeout(Duration::from_secs(5)).expect("fsync answered")
}

/// Writes, then fsyncs twice; the target must have received exactly one
/// flush command per fsync, of the kind IDENTIFY offered, and none before.
fn check_one_flush_per_fsync(target: SimConfig) {
    let ext = target.flush_ext;
    let (_hub, t, core, _) = setup_with(target, 1500, opts(180), 0);
    let count = |t: &SimTarget| {
        let c = t.model.lock().counters;
        (c.flushes, c.flushes_ext)
    };
    let one = |n: u64| if ext { (0, n) } else { (n, 0) };
    assert_eq!(write(&core, 4096, &pattern(100_000, 3)), Ok(100_000));
    assert_eq!(write(&core, 777, &pattern(1000, 4)), Ok(1000));
    assert_eq!(count(&t), (0, 0), "no flush before fsync");
    assert_eq!(fsync(&core), Ok(()));
    assert_eq!(count(&t), one(1), "one {} per fsync", if ext { "FLUSH CACHE EXT" } else { "FLUSH CACHE" });
    assert_eq!(fsync(&core), Ok(()));
    assert_eq!(count(&t), one(2));
}

#[test]
fn fsync_sends_one_flush_cache_and_none_before() {
    // vblade: IDENTIFY word 83 offers FLUSH CACHE (0xE7) only.
    check_one_flush_per_fsync(e3_7());
}

#[test]
fn fsync_sends_flush_cache_ext_when_identify_offers_it() {
    check_one_flush_per_fsync(SimConfig { flush_ext: true, ..e3_7() });
}

#[test]
fn control_files_reject_bad_input_and_change_nothing() {
    let (hub, _t, core, _) = setup(1500, 180, 0);
    let before = core.ini.interfaces();
    let bad: Vec<&[u8]> = vec![b"nosuchif0\n", b"mem0 nosuchif0", b"a/b", &[0xff, 0xfe, 0x00], b"x\x01y"];
    for b in bad {
        let e = core.write_ctl(Ctl::Interfaces, b).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "{b:?}");
        assert_eq!(core.ini.interfaces(), before);
    }
    assert_eq!(core.write_ctl(Ctl::Interfaces, &vec![b'a'; 1 << 20]).unwrap_err(), CtlError::TooLong);
    assert_eq!(core.write_ctl(Ctl::Revalidate, b"garbage").unwrap_err().errno(), libc::EINVAL);
    assert_eq!(core.write_ctl(Ctl::Revalidate, b"e9.9").unwrap_err().errno(), libc::EINVAL);
    assert_eq!(core.write_ctl(Ctl::Flush, b"e9.9").unwrap_err().errno(), libc::ENXIO);
    assert_eq!(core.write_ctl(Ctl::Flush, b"nonsense").unwrap_err().errno(), libc::EINVAL);
    assert_eq!(core.write_ctl(Ctl::Err, b"x").unwrap_err().errno(), libc::EBADF);
    assert!(core.ini.device(3, 7).is_some(), "nothing flushed");
    // Good input works.
    core.write_ctl(Ctl::Revalidate, b"e3.7\n").unwrap();
    core.write_ctl(Ctl::Interfaces, b"mem0\n").unwrap();
    // NUL-terminated, as aoe-interfaces writes it.
    core.write_ctl(Ctl::Interfaces, b"mem0\0").unwrap();
    // A newline alone after a command on the same open file: no command.
    core.write_ctl_at(Ctl::Revalidate, b"\n", 5).unwrap();
    // flush: busy while open, removed when closed.
    let dev = core.ini.device(3, 7).unwrap();
    dev.opened();
    assert_eq!(core.write_ctl(Ctl::Flush, b"e3.7").unwrap_err().errno(), libc::EBUSY);
    dev.closed();
    // The interfaces written and the revalidation ask the target again;
    // its answers, once in, would bring back a target flushed before them.
    wait_quiet(&hub);
    core.write_ctl(Ctl::Flush, b"").unwrap();
    assert!(core.ini.device(3, 7).is_some(), "an up device is not flushed by an empty write");
    core.write_ctl(Ctl::Flush, b"all").unwrap();
    assert!(core.ini.device(3, 7).is_none());
}

#[test]
fn the_tree_names_a_target_only_as_it_spells_itself_and_counts_its_openers() {
    let (_hub, _t, core, _) = setup(1500, 180, 0);
    let dev = core.ini.device(3, 7).unwrap();
    let root = Node::Root.ino();
    let lookup = |dir: u64, name: &str| core.lookup(dir, OsStr::new(name));
    let image = lookup(root, "e3.7").expect("e3.7");
    assert_eq!(image.attr.ino, Node::Image(dev.id, 0).ino());
    assert_eq!((image.attr.kind, image.attr.size, image.attr.perm), (Kind::File, SECTORS * 512, 0o660));
    assert_eq!(image.ttl, Duration::ZERO, "a target's name is looked up every time");
    for other in ["e03.7", "e3.07", "e3.7p1", "e3.8", "e3.7 "] {
        assert_eq!(lookup(root, other).unwrap_err().errno(), libc::ENOENT, "{other:?}");
    }
    let names = |ino: u64| core.readdir(ino).unwrap().into_iter().map(|e| e.name).collect::<Vec<_>>();
    assert_eq!(
        names(root),
        [".", "..", "discover", "interfaces", "err", "revalidate", "flush", "block", "sys", "e3.7"]
    );
    let dir = lookup(Node::BlockDir.ino(), "e3.7").unwrap();
    assert_eq!(names(dir.attr.ino)[2..], ATTRS);
    let link = lookup(Node::SysBlockDir.ino(), "etherd!e3.7").unwrap();
    assert_eq!(core.readlink(link.attr.ino).unwrap(), "../../block/e3.7");
    // An open image counts as an opener until it is released.
    let Ok(Opened::Image(fh)) = core.open(image.attr.ino, true) else { panic!("e3.7 not opened") };
    assert_eq!(dev.open_count(), 1);
    core.release(image.attr.ino, fh);
    assert_eq!(dev.open_count(), 0);
    // A flushed target's inode names nothing any more.
    core.write_ctl(Ctl::Flush, b"all").unwrap();
    assert_eq!(core.getattr(image.attr.ino).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(core.open(image.attr.ino, false).unwrap_err().errno(), libc::ENOENT);
}

#[test]
fn read_ahead_serves_sequential_readers_and_never_stale_data() {
    let (_hub, t, core, _) = setup(1500, 180, 0);
    let model = pattern((SECTORS * 512) as usize, 77);
    t.model.lock().disk_mut().copy_from_slice(&model);
    let mut model = model;
    let chunk = 65536u64;
    for i in 0..16u64 {
        assert_eq!(
            read(&core, i * chunk, chunk as u32).unwrap(),
            model[(i * chunk) as usize..((i + 1) * chunk) as usize]
        );
    }
    let dev = core.ini.device(3, 7).unwrap();
    // The target was read ahead of the reader: 4 chunks past the 16 asked for.
    std::thread::sleep(Duration::from_millis(100));
    let fetched = dev.snapshot().counters.bytes_read;
    assert!(fetched >= 20 * chunk, "read {fetched} bytes for a reader at {}", 16 * chunk);
    // Overwrite a range that is already prefetched, then keep reading.
    let d = pattern(10_000, 5);
    let at = (16 * chunk + 1000) as usize;
    write(&core, at as u64, &d).unwrap();
    model[at..at + d.len()].copy_from_slice(&d);
    for i in 16..40u64 {
        assert_eq!(
            read(&core, i * chunk, chunk as u32).unwrap(),
            model[(i * chunk) as usize..((i + 1) * chunk) as usize],
            "chunk {i}"
        );
    }
}

#[test]
fn hostile_frames_during_io_are_ignored_and_counted() {
    use aoefs::wire::{AtaRepr, Body, Header, Repr, TAG_USER_TOOLS};
    let (hub, t, core, _) = setup(1500, 180, 0);
    let rogue = hub.add_port("rogue", Mac([2, 0, 0, 0, 6, 6]), 1500);
    let victim = Mac([2, 0, 0, 0, 1, 1]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (hub2, stop2) = (hub.clone(), stop.clone());
    let injector = std::thread::spawn(move || {
        let mut rng = aoefs::link::fault::Rng::new(seeded("injector", 9));
        let mut n = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let data = vec![0xEEu8; 1024];
            let (shelf, slot, src, tag) = match n % 4 {
                0 => (3, 7, Mac([2, 0, 0, 0, 6, 6]), rng.next_u64() as u32 & !TAG_USER_TOOLS), // unknown MAC
                1 => (3, 7, Mac([2, 0, 0, 0, 2, 2]), rng.next_u64() as u32 & !TAG_USER_TOOLS), // spoofed MAC, stale tag
                2 => (4, 7, Mac([2, 0, 0, 0, 6, 6]), rng.next_u64() as u32 & !TAG_USER_TOOLS), // wrong shelf
                _ => (3, 7, Mac([2, 0, 0, 0, 2, 2]), TAG_USER_TOOLS | rng.next_u64() as u32), // a user tool's tag (bit 31)
            };
            let r = Repr {
                header: Header { dst: victim, src, response: true, error: None, shelf, slot, tag },
                body: Body::Ata(AtaRepr {
                    aflags: 0x40,
                    err_feature: 0,
                    sector_count: 0,
                    cmd_status: 0x40,
                    lba: 0,
                    data: &data,
                }),
            };
            let mut b = vec![0u8; r.buffer_len()];
            r.emit(&mut b).unwrap();
            if n.is_multiple_of(7) {
                b.truncate(30); // truncated
            }
            hub2.send_from(rogue, &b);
            n += 1;
            if n.is_multiple_of(16) {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        n
    });
    let mut model = t.disk();
    for i in 0..20u64 {
        let d = pattern(50_000, 300 + i);
        let off = i * 50_000;
        write(&core, off, &d).unwrap();
        model[off as usize..off as usize + d.len()].copy_from_slice(&d);
        assert_eq!(read(&core, off, 50_000).unwrap(), d);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = injector.join().unwrap();
    assert!(sent > 100);
    assert!(t.disk() == model, "no forged byte applied");
    let dev = core.ini.device(3, 7).unwrap();
    let stats = core.status_attr(&dev, "stats").unwrap();
    let get = |k: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")).map(|v| v.parse().unwrap()))
            .unwrap_or_else(|| panic!("{k} in {stats}"))
    };
    assert!(get("unexpected") > 0, "{stats}");
    assert!(get("ignored") > 0, "{stats}");
    assert!(get("mount_ignored_unknown_target") > 0, "{stats}");
    assert!(get("mount_ignored_foreign_tag") > 0, "{stats}");
    assert!(get("mount_ignored_malformed") > 0, "{stats}");
}

/// An initiator on a fresh hub with `model` plugged in (announced or not),
/// ticked every [`TICK`] on the real clock until the test drops it.
fn start_with(model: SimModel, announce: bool) -> (Hub, Arc<SimTarget>, Arc<BlockFs>) {
    let hub = Hub::new();
    hub.add_port("mem0", Mac([2, 0, 0, 0, 1, 1]), 1500);
    let t = if announce { SimTarget::start_model(&hub, model) } else { SimTarget::plug(&hub, model) };
    let ini = Initiator::new(hub.provider(), Arc::new(RealClock::default()), Options::default(), &["mem0".to_string()])
        .expect("initiator");
    // The timer only: the tests discover (or the target announces itself).
    Timer::spawn(&ini);
    (hub, t, BlockFs::new(ini, 0, 0, 4, false))
}

/// Every message queued on `err` now.
fn err_lines(core: &BlockFs) -> Vec<String> {
    std::iter::from_fn(|| core.ini.errlog.pop_timeout(Duration::ZERO)).collect()
}

#[test]
fn a_target_busy_at_start_appears_as_soon_as_it_answers() {
    // IDENTIFY answered twice with AoE error 3 (device unavailable).
    let mut model = SimModel::with_disk(SimConfig::new(3, 7, Mac([2, 0, 0, 0, 2, 2])), SECTORS);
    model.behaviour.unavailable_for = 2;
    let (_hub, _t, core) = start_with(model, true);
    let t0 = Instant::now();
    assert!(wait_until(Duration::from_secs(5), || core.ini.device(3, 7).is_some_and(|d| d.is_up())), "never up");
    // Retried after 250 and 500 ms, not at the next 60 s rediscovery.
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(700) && took < Duration::from_secs(2), "up after {took:?}");
    let lines = err_lines(&core);
    let failed: Vec<_> = lines.iter().filter(|l| l.contains("IDENTIFY failed")).collect();
    assert_eq!(failed.len(), 1, "one message for the run of failures: {lines:?}");
    assert!(failed[0].contains("device unavailable") && failed[0].contains("retrying"), "{lines:?}");
    assert!(read(&core, 0, 4096).is_ok());

    // The same for a target that answers the discovery itself with error 3.
    let mut model = SimModel::with_disk(SimConfig::new(3, 7, Mac([2, 0, 0, 0, 2, 2])), SECTORS);
    model.behaviour.config_unavailable_for = 2;
    let (_hub, t, core) = start_with(model, false);
    let t0 = Instant::now();
    core.ini.discover();
    assert!(wait_until(Duration::from_secs(5), || core.ini.device(3, 7).is_some_and(|d| d.is_up())), "never up");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(700) && took < Duration::from_secs(2), "up after {took:?}");
    assert_eq!(t.model.lock().counters.config_queries, 3, "asked again until it answered");
    let lines = err_lines(&core);
    assert_eq!(lines.iter().filter(|l| l.contains("query config failed: device unavailable")).count(), 1, "{lines:?}");
}

#[test]
fn a_down_target_is_probed_and_back_up_at_its_last_close() {
    let (_hub, t, core, clock) = setup_manual(1500, 2, 0);
    let dev = core.ini.device(3, 7).unwrap();
    dev.opened();
    t.model.lock().behaviour.silent = true;
    let reply = read_async(&core, 0, 4096);
    advance(&core, &clock, Duration::from_secs(2));
    assert_eq!(reply.recv_timeout(Duration::from_secs(5)).unwrap(), Err(libc::EIO));
    assert_eq!(core.status_attr(&dev, "state").unwrap(), "down,closewait\n");
    // The target is back but says nothing. Probes (every 2 s) find it, but
    // it stays down while open. (First let the hub deliver what was sent to
    // the silent target.)
    std::thread::sleep(Duration::from_millis(300));
    t.model.lock().behaviour.silent = false;
    let asked = t.model.lock().counters.config_queries;
    advance(&core, &clock, Duration::from_secs(2));
    assert!(wait_until(Duration::from_secs(2), || t.model.lock().counters.config_queries > asked), "not probed");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(core.status_attr(&dev, "state").unwrap(), "down,closewait\n");
    // The last close asks it at once: up with no discover, no announcement,
    // and no clock moving.
    core.ini.closed(&dev);
    assert!(wait_until(Duration::from_secs(2), || dev.is_up()), "not up after the last close");
    assert!(read(&core, 0, 4096).is_ok());

    // Down while nobody has it open, silent, then back without a word:
    // the next probe (within 2 s of clock) brings it up.
    t.model.lock().behaviour.silent = true;
    let reply = read_async(&core, 0, 4096);
    advance(&core, &clock, Duration::from_secs(3));
    assert_eq!(reply.recv_timeout(Duration::from_secs(5)).unwrap(), Err(libc::EIO));
    assert_eq!(core.status_attr(&dev, "state").unwrap(), "down\n");
    // Let the hub deliver the probes sent so far (to the silent target).
    std::thread::sleep(Duration::from_millis(300));
    t.model.lock().behaviour.silent = false;
    std::thread::sleep(Duration::from_millis(200));
    assert!(!dev.is_up(), "up before a probe");
    advance(&core, &clock, Duration::from_secs(2));
    assert!(wait_until(Duration::from_secs(2), || dev.is_up()), "a probe did not bring it back");
}

#[test]
fn err_sums_retransmissions_per_target_and_second() {
    let (hub, _t, core, _) = setup(1500, 180, 0);
    hub.set_faults(Some(FaultConfig { drop: 0.2, ..Default::default() }), 77);
    err_lines(&core);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(2500) {
        assert!(read(&core, 0, 64 * 1024).is_ok());
    }
    hub.set_faults(None, 0);
    std::thread::sleep(Duration::from_millis(1100));
    let resent = core.ini.device(3, 7).unwrap().snapshot().counters.retransmits;
    let lines: Vec<String> = err_lines(&core).into_iter().filter(|l| l.contains("retransmit")).collect();
    let summed: u64 = lines
        .iter()
        .map(|l| {
            let n: Option<u64> =
                l.strip_prefix("e3.7: ").and_then(|r| r.split(" ").next()).and_then(|n| n.parse().ok());
            assert!(l.ends_with("retransmits in the last second\n"), "{l:?}");
            n.unwrap_or_else(|| panic!("no count in {l:?}"))
        })
        .sum();
    assert!(resent > 20, "the test lost too little: {resent}");
    assert!((1..=5).contains(&lines.len()), "one line a second, not one per retransmission: {lines:?}");
    assert_eq!(summed, resent, "the lines add up to the retransmissions: {lines:?}");
}

/// Waits until e3.7 has nothing in flight or queued: a failed request is
/// answered at its first error, and its other frames finish after it.
/// Waits until the hub has delivered no frame for 200 ms (at most 10 s).
fn wait_quiet(hub: &Hub) {
    let mut last = hub.delivered();
    let quiet = wait_until(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(200));
        let now = hub.delivered();
        std::mem::replace(&mut last, now) == now
    });
    assert!(quiet, "frames still flowing after 10 s");
}

fn wait_idle(core: &BlockFs) {
    let dev = core.ini.device(3, 7).expect("device");
    let idle = wait_until(Duration::from_secs(30), || {
        let s = dev.snapshot();
        s.outstanding == 0 && s.queued == 0
    });
    assert!(idle, "e3.7 still busy: {:?}", dev.snapshot().counters);
}

/// Damage to the header fields that say what a reply means (the AoE flags
/// and error code, the ATA status, error, sector count and LBA:
/// `CORRUPTIBLE_REPLY`) never delivers wrong data and never acknowledges a
/// write the target does not hold: a damaged reply may become an error
/// (EIO), or be dropped and its command resent. The data bytes are left
/// alone: AoE has no checksum of its own and relies on the Ethernet FCS for
/// the whole frame, so a damaged payload is beyond what any initiator can
/// check.
#[test]
fn damaged_reply_headers_never_deliver_wrong_data_or_acknowledge_unwritten_writes() {
    let seed = seeded("reply corruption", 0x5eed_0006);
    let mut rng = aoefs::link::fault::Rng::new(seed);
    // A writable target, 10% of replies damaged, the cache and read-ahead on.
    let (hub, t, core, _) = setup(1500, 180, 8 << 20);
    hub.set_faults(Some(FaultConfig { corrupt_reply: 0.1, ..Default::default() }), seed);
    let mut model = t.disk();
    let (mut acked, mut refused, mut read_ok, mut read_failed) = (0, 0, 0, 0);
    for i in 0..200u64 {
        let len = 1 + rng.below(65_536) as usize;
        let off = rng.below(SECTORS * 512 - len as u64) as usize;
        if i % 2 == 0 {
            let d = pattern(len, seed + i);
            match write(&core, off as u64, &d) {
                Ok(n) => {
                    assert_eq!(n as usize, len, "write {i}");
                    model[off..off + len].copy_from_slice(&d);
                    acked += 1;
                }
                Err(e) => {
                    assert_eq!(e, libc::EIO, "write {i} failed with errno {e}");
                    // A failed write may have written some of its sectors,
                    // and nothing else.
                    wait_idle(&core);
                    let disk = t.disk();
                    let bad = (off..off + len).find(|&j| disk[j] != model[j] && disk[j] != d[j - off]);
                    assert_eq!(bad, None, "write {i} ({len} bytes at {off}) failed and wrote something else");
                    model[off..off + len].copy_from_slice(&disk[off..off + len]);
                    refused += 1;
                }
            }
            assert!(t.disk() == model, "write {i}: the target holds something other than what was acknowledged");
        } else {
            match read(&core, off as u64, len as u32) {
                Ok(got) => {
                    assert!(got == model[off..off + len], "read {i} ({len} bytes at {off}) returned wrong data");
                    read_ok += 1;
                }
                Err(e) => {
                    assert_eq!(e, libc::EIO, "read {i} failed with errno {e}");
                    read_failed += 1;
                }
            }
        }
    }
    let fc = hub.fault_counters();
    hub.set_faults(None, 0);
    wait_idle(&core);
    assert!(t.disk() == model);
    assert!(read(&core, 0, (SECTORS * 512) as u32).unwrap() == model, "read back without damage");
    println!("{fc:?}; writes acknowledged {acked}, failed {refused}; reads ok {read_ok}, failed {read_failed}");
    assert!(fc.corrupted_replies > 500, "{fc:?}");
    assert!(acked > 0 && refused > 0 && read_ok > 0 && read_failed > 0, "every outcome happened");

    // A target that refuses every write (vblade -r), every reply damaged:
    // no write may be acknowledged, no read past the end may succeed, and
    // reads elsewhere return the right data or fail. A refusal is DRDY|ERR
    // (0x41) with nothing transferred: a flip of its ERR bit alone leaves a
    // status that says success, so what the reply leaves untransferred (the
    // sector count of a write, the data of a read) must be checked as well.
    let (hub, t, core, _) = setup(1500, 180, 0);
    let disk = pattern((SECTORS * 512) as usize, seed);
    t.model.lock().disk_mut().copy_from_slice(&disk);
    t.model.lock().behaviour.read_only = true;
    hub.set_faults(Some(FaultConfig { corrupt_reply: 1.0, ..Default::default() }), seed + 1);
    let dev = core.ini.device(3, 7).unwrap();
    let (tx, rx) = mpsc::channel::<(Op, u64, IoResult)>();
    let mut results = Vec::new();
    for batch in 0..50 {
        let mut sent = 0;
        let mut submit = |op: Op, lba: u64, n: u32| {
            let tx = tx.clone();
            let data = if op == Op::Write { vec![0xAB; n as usize * 512] } else { Vec::new() };
            core.ini.submit(&dev, op, lba, n, data, Box::new(move |r| tx.send((op, lba, r)).unwrap()));
            sent += 1;
        };
        for k in 0..40 {
            submit(Op::Write, (batch * 40 + k) % SECTORS, 1);
        }
        for k in 0..5 {
            submit(Op::Read, SECTORS - 1, 2); // past the end: IDNF
            submit(Op::Read, (batch * 5 + k) * 8 % SECTORS, 2);
        }
        for _ in 0..sent {
            results.push(rx.recv_timeout(Duration::from_secs(30)).expect("request answered"));
        }
    }
    let mut status_says_success = 0;
    for (op, lba, r) in &results {
        match (op, r) {
            (Op::Write, Ok(_)) => panic!("a write the target refused (sector {lba}) was acknowledged"),
            (Op::Read, Ok(_)) if *lba == SECTORS - 1 => panic!("a read past the end succeeded"),
            (Op::Read, Ok(d)) => {
                let at = *lba as usize * 512;
                assert!(d[..] == disk[at..at + 1024], "read of sector {lba} returned wrong data");
            }
            (_, Err(IoError::Ata { status, .. })) if status & aoefs::wire::ATA_STATUS_FAIL == 0 => {
                status_says_success += 1
            }
            _ => {}
        }
    }
    println!("{:?}; refusals whose status was damaged into success: {status_says_success}", hub.fault_counters());
    assert!(status_says_success > 0, "no reply had its ERR bit flipped: the case was not tested");
    assert!(t.disk() == disk, "nothing written");
}

// ---------------------------------------------------------------------------
// paths and trust (issue 12): other hosts on the segment claiming e3.7
// ---------------------------------------------------------------------------

/// A host claiming e3.7 from `mac`: answers like a target (reads with 0xEE
/// junk, writes acknowledged and forgotten) with its own IDENTIFY serial.
fn impostor(hub: &Hub, mac: Mac, serial: &str) -> Arc<SimTarget> {
    let cfg = SimConfig { buffer_count: 1, max_sectors: 1, serial: serial.into(), ..SimConfig::new(3, 7, mac) };
    SimTarget::start_model(hub, SimModel::new(cfg, Backing::Junk { sectors: SECTORS, byte: 0xEE }))
}

/// Every message on `err` now (without waiting for more).
fn drain_err(core: &BlockFs) -> Vec<String> {
    std::iter::from_fn(|| core.ini.errlog.pop_timeout(Duration::from_millis(1))).collect()
}

/// Waits until `block/e3.7/paths` has the line `want`; returns the file.
fn wait_path(core: &BlockFs, want: &str, timeout: Duration) -> String {
    let dev = core.ini.device(3, 7).unwrap();
    let mut last = String::new();
    wait_until(timeout, || {
        last = core.status_attr(&dev, "paths").unwrap();
        last.lines().any(|l| l == want)
    });
    assert!(last.lines().any(|l| l == want), "no {want:?} in paths:\n{last}");
    last
}

#[test]
fn a_new_mac_with_another_identify_is_refused_and_never_gets_io() {
    let (hub, t, core, _) = setup(9000, 180, 0);
    let dev = core.ini.device(3, 7).unwrap();
    assert_eq!(core.status_attr(&dev, "payload").unwrap(), "8704\n");
    let rogue = impostor(&hub, Mac([2, 0, 0, 0, 6, 6]), "rogue");
    let paths = wait_path(&core, "020000000606 mem0 refused", Duration::from_secs(5));
    assert!(paths.lines().any(|l| l == "020000000202 mem0 in-use"), "{paths}");
    let mut model = t.disk();
    for i in 0..20u64 {
        let d = pattern(50_000, 500 + i);
        write(&core, i * 50_000, &d).unwrap();
        model[i as usize * 50_000..i as usize * 50_000 + d.len()].copy_from_slice(&d);
        assert_eq!(read(&core, i * 50_000, 50_000).unwrap(), d);
    }
    assert!(t.disk() == model);
    let c = rogue.model.lock().counters;
    assert_eq!((c.reads, c.writes, c.identifies), (0, 0, 1), "the other host got no I/O: {c:?}");
    assert!(c.config_queries >= 1, "{c:?}");
    // Its bufcnt 1 / 1 sector per frame changed nothing.
    assert_eq!(core.status_attr(&dev, "payload").unwrap(), "8704\n");
    assert_eq!(dev.snapshot().max_window, 16);
    assert_eq!(core.status_attr(&dev, "mac").unwrap(), "020000000202\n");
    assert_eq!(core.status_attr(&dev, "netif").unwrap(), "mem0\n");
    let stats = core.status_attr(&dev, "stats").unwrap();
    assert!(stats.lines().any(|l| l == "paths_refused 1"), "{stats}");
    let errs = drain_err(&core);
    let refusals: Vec<&String> = errs.iter().filter(|m| m.contains("refused")).collect();
    assert_eq!(refusals.len(), 1, "reported once: {errs:?}");
    assert!(
        refusals[0].contains("e3.7: path from MAC 020000000606 (mem0) refused: IDENTIFY differs (serial)"),
        "{errs:?}"
    );
    // It announces itself again: still refused, not reported again.
    rogue.announce();
    std::thread::sleep(Duration::from_millis(300));
    assert!(drain_err(&core).iter().all(|m| !m.contains("refused")));
    assert_eq!(rogue.model.lock().counters.identifies, 1);
}

#[test]
fn a_second_path_to_the_same_target_is_verified_and_shares_the_io() {
    let (hub, t, core, _) = setup(1500, 180, 0);
    // The same target reached at a second MAC: same serial, model and size.
    let twin_mac = Mac([2, 0, 0, 0, 3, 3]);
    let twin = SimTarget::start_model(&hub, SimModel::with_disk(SimConfig::new(3, 7, twin_mac), SECTORS));
    wait_path(&core, "020000000303 mem0 in-use", Duration::from_secs(5));
    assert!(drain_err(&core).iter().all(|m| !m.contains("refused")));
    for i in 0..10u64 {
        read(&core, i * 65536, 65536).unwrap();
    }
    let (a, b) = (t.model.lock().counters.reads, twin.model.lock().counters.reads);
    assert!(a > 20 && b > 20, "reads spread over both paths: {a} / {b}");
}

#[test]
fn a_new_mac_with_another_config_string_is_refused() {
    let (hub, _t, core, _) = setup(1500, 180, 0);
    let mut cfg = SimConfig::new(3, 7, Mac([2, 0, 0, 0, 4, 4]));
    cfg.config = b"other".to_vec();
    let other = SimTarget::start_model(&hub, SimModel::with_disk(cfg, SECTORS));
    wait_path(&core, "020000000404 mem0 refused", Duration::from_secs(5));
    assert!(drain_err(&core).iter().any(|m| m.ends_with("refused: config string differs\n")));
    assert_eq!(other.model.lock().counters.requests, 0, "refused on its announcement alone");
}

#[test]
fn with_macs_other_hosts_receive_nothing_and_become_no_path() {
    let (hub, t, core, _) = setup_with(e3_7(), 1500, Options { macs: vec![T_MAC], ..opts(180) }, 0);
    let dev = core.ini.device(3, 7).expect("found by a unicast query");
    // Same IDENTIFY as the target: only the list keeps it out.
    let rogue =
        SimTarget::start_model(&hub, SimModel::with_disk(SimConfig::new(3, 7, Mac([2, 0, 0, 0, 6, 6])), SECTORS));
    core.write_ctl(Ctl::Discover, b"\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read(&core, 0, 65536).unwrap(), t.disk()[..65536]);
    assert_eq!(core.status_attr(&dev, "paths").unwrap(), "020000000202 mem0 in-use\n");
    assert_eq!(rogue.model.lock().counters.requests, 0, "not even a discovery broadcast");
    let stats = core.status_attr(&dev, "stats").unwrap();
    assert!(!stats.contains("mount_ignored_untrusted_mac 0"), "{stats}");
}

#[test]
fn eight_impostors_then_a_new_mac_of_the_real_target_and_it_recovers() {
    let (hub, t, core, _) = setup(1500, 180, 0);
    let dev = core.ini.device(3, 7).unwrap();
    let rogues: Vec<_> = (0..8u8).map(|i| impostor(&hub, Mac([2, 0, 0, 0, 6, i]), "rogue")).collect();
    for i in 0..8u8 {
        wait_path(&core, &format!("02000000060{i} mem0 refused"), Duration::from_secs(5));
    }
    // The target's NIC is swapped: the old MAC falls silent, the new one
    // announces itself.
    t.model.lock().behaviour.silent = true;
    let mut cfg = SimConfig::new(3, 7, Mac([2, 0, 0, 0, 9, 9]));
    cfg.buffer_count = 16;
    let mut model = SimModel::with_disk(cfg, SECTORS);
    model.disk_mut().copy_from_slice(&t.disk());
    let swapped = SimTarget::start_model(&hub, model);
    let t0 = Instant::now();
    wait_path(&core, "020000000909 mem0 in-use", Duration::from_secs(5));
    let d = pattern(200_000, 9);
    write(&core, 4096, &d).unwrap();
    assert_eq!(read(&core, 4096, 200_000).unwrap(), d);
    assert!(t0.elapsed() < Duration::from_secs(5), "recovered in {:?}", t0.elapsed());
    assert_eq!(&swapped.disk()[4096..204_096], &d[..]);
    assert_eq!(core.status_attr(&dev, "state").unwrap(), "up\n");
    for r in &rogues {
        let c = r.model.lock().counters;
        assert_eq!((c.reads, c.writes), (0, 0));
    }
}

#[test]
fn a_flood_of_new_targets_is_bounded_and_the_real_one_still_works() {
    use aoefs::initiator::MAX_UNIDENTIFIED;
    let (hub, t, core, _) = setup(1500, 180, 0);
    drain_err(&core);
    let rogue = hub.add_port("rogue", Mac([2, 0, 0, 0, 6, 6]), 1500);
    let forger = SimModel::with_disk(SimConfig::new(0, 0, Mac([2, 0, 0, 0, 6, 6])), 8);
    for i in 0..20_000u32 {
        let mut m = forger.clone();
        (m.cfg.shelf, m.cfg.slot) = (100 + (i / 200) as u16, (i % 200) as u8);
        hub.send_from(rogue, &m.announcement());
    }
    std::thread::sleep(Duration::from_millis(1500));
    let n = core.ini.devices().len();
    assert!(n <= MAX_UNIDENTIFIED + 1, "{n} devices");
    assert!(n > 100, "new targets still come in: {n}");
    let errs = drain_err(&core);
    assert!(errs.len() <= 40, "{} messages on err: {:?}", errs.len(), &errs[..errs.len().min(20)]);
    assert!(errs.iter().any(|m| m.contains("more messages about targets not identified")), "{errs:?}");
    assert_eq!(read(&core, 0, 65536).unwrap(), t.disk()[..65536]);
    let dev = core.ini.device(3, 7).unwrap();
    let stats = core.status_attr(&dev, "stats").unwrap();
    assert!(!stats.contains("mount_dropped_targets 0"), "{stats}");
}

/// One counter of e3.7's `stats` file.
fn stat(core: &BlockFs, name: &str) -> u64 {
    let dev = core.ini.device(3, 7).expect("device");
    let text = core.status_attr(&dev, "stats").unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}"));
    line[name.len() + 1..].parse().unwrap()
}

#[test]
fn a_target_whose_network_answers_while_its_disk_hangs_fails_io_at_deadsecs() {
    // The target answers query config and IDENTIFY, but every read and
    // write is lost on the way (aoe-faultfwd's drop_rw): the read fails
    // with EIO at deadsecs however often the target's network answers, the
    // target goes down (down,closewait while open), `err` says so, and it
    // was sent few frames.
    let (hub, t, core, clock) = setup_manual(1500, 10, 0);
    let dev = core.ini.device(3, 7).unwrap();
    dev.opened();
    hub.set_faults(Some(FaultConfig { drop_rw: 1.0, ..Default::default() }), 1);
    err_lines(&core);
    let asked = t.model.lock().counters.config_queries;
    let reply = read_async(&core, 0, 4096);
    // The clock moves a tick at a time, and between ticks the hub brings
    // the target's answers to the probes, as it would in real time.
    let step = |core: &BlockFs, n: u32| {
        for _ in 0..n {
            advance(core, &clock, TICK);
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    step(&core, 1999);
    assert_eq!(reply.try_recv(), Err(mpsc::TryRecvError::Empty), "failed before deadsecs");
    assert_eq!(core.status_attr(&dev, "state").unwrap(), "up\n");
    step(&core, 1);
    assert_eq!(reply.recv_timeout(Duration::from_secs(5)).expect("answered at deadsecs"), Err(libc::EIO));
    assert_eq!(core.status_attr(&dev, "state").unwrap(), "down,closewait\n");
    let lines = err_lines(&core);
    assert!(lines.iter().any(|l| l == "e3.7: no response for 10 s, device marked down\n"), "{lines:?}");
    let queries = t.model.lock().counters.config_queries - asked;
    let reads = hub.fault_counters().dropped;
    println!("hung disk: {reads} reads and {queries} config queries sent for one 4 KiB read");
    assert!(queries > 0, "the target's network was asked");
    assert!(reads + queries <= 60, "{reads} reads and {queries} config queries sent for one 4 KiB read");
    assert!(stat(&core, "timeouts") > 0);
}

#[test]
fn a_switch_that_drops_jumbo_frames_makes_the_path_fall_back_and_writes_complete() {
    // Initiator and target have MTU 9000; the switch between them forwards
    // frames of at most 1514 bytes. A 1 MiB write falls back to 1024-byte
    // frames and completes, exact; `err` says so once; `payload` and
    // `lost_jumbo` show it; `revalidate` tries the full size again.
    let (hub, _t, core, _) = setup(9000, 60, 0);
    let dev = core.ini.device(3, 7).unwrap();
    assert_eq!(core.status_attr(&dev, "payload").unwrap(), "8704\n");
    hub.set_faults(Some(FaultConfig { max_len: 1514, ..Default::default() }), 1);
    err_lines(&core);
    let data = pattern(1 << 20, 19);
    let t0 = Instant::now();
    assert_eq!(write(&core, 0, &data), Ok(1 << 20));
    println!("1 MiB through a jumbo black hole in {:?}", t0.elapsed());
    assert_eq!(read(&core, 0, 1 << 20).unwrap(), data);
    assert_eq!(core.status_attr(&dev, "payload").unwrap(), "1024\n");
    assert!(stat(&core, "lost_jumbo") > 0);
    let lines: Vec<String> = err_lines(&core).into_iter().filter(|l| l.contains("falling back")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("e3.7: 8704-byte frames lost on mem0 (target MAC 020000000202, "), "{lines:?}");
    assert!(lines[0].ends_with("), falling back to 1024\n"), "{lines:?}");
    // The switch is fixed; revalidate tries large frames again.
    hub.set_faults(None, 0);
    core.write_ctl(Ctl::Revalidate, b"e3.7\n").unwrap();
    assert_eq!(core.status_attr(&dev, "payload").unwrap(), "8704\n");
    assert_eq!(write(&core, 0, &data), Ok(1 << 20));
    assert_eq!(core.status_attr(&dev, "payload").unwrap(), "8704\n");
}

#[test]
fn a_lowered_local_mtu_is_followed_and_writes_complete() {
    // The initiator's interface goes from MTU 9000 to 1500 under the mount
    // (`ip link set mem0 mtu 1500`); the next write's large frames are
    // refused by the link, the payload follows the MTU at once, and the
    // write completes, exact. Back to 9000: full size within a second.
    let (hub, _t, core, _) = setup(9000, 60, 0);
    let dev = core.ini.device(3, 7).unwrap();
    assert_eq!(core.status_attr(&dev, "payload").unwrap(), "8704\n");
    err_lines(&core);
    hub.set_mtu("mem0", 1500);
    let data = pattern(1 << 20, 23);
    let t0 = Instant::now();
    assert_eq!(write(&core, 0, &data), Ok(1 << 20));
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "the write took {took:?}");
    assert_eq!(core.status_attr(&dev, "payload").unwrap(), "1024\n");
    assert_eq!(read(&core, 0, 1 << 20).unwrap(), data);
    let lines: Vec<String> = err_lines(&core).into_iter().filter(|l| l.contains("MTU")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("e3.7: MTU of mem0 is now 1500: 8704-byte frames no longer fit"), "{lines:?}");
    hub.set_mtu("mem0", 9000);
    let up = wait_until(Duration::from_millis(1500), || core.status_attr(&dev, "payload").unwrap() == "8704\n");
    assert!(up, "payload did not follow the MTU back up");
    assert_eq!(write(&core, 0, &data), Ok(1 << 20));
}
