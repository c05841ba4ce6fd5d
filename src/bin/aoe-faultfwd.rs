//! aoe-faultfwd: forwards AoE frames (ethertype 0x88A2 only) between two
//! interfaces, both ways, through the seeded fault injector
//! (`aoefs::link::fault::FaultInjector`). Meant for tests: run it in a middle
//! network namespace holding one veth towards the initiator and one towards
//! the target.
//!
//!     aoe-faultfwd IF_A IF_B [--faults drop=0.05,dup=0.01,reorder=0.02,corrupt=0.001,corrupt_reply=0.01,hold=0.05,hold_ms=20-200,drop_rw=1,max_len=1514]
//!                  [--seed N] [--seconds N] [--stats FILE]
//!
//! `drop_rw=P` drops ATA read and write requests only (query config,
//! IDENTIFY and FLUSH CACHE pass): a target whose network answers while its
//! disk hangs. `max_len=N` drops every frame longer than N bytes: a switch
//! with a smaller MTU than the hosts on either side.
//!
//! * AF_PACKET raw sockets bound to each interface with protocol 0x88A2, both
//!   interfaces put in promiscuous mode (frames are addressed to the hosts on
//!   the far side, not to us).
//! * Frames the socket sees leaving the interface (`PACKET_OUTGOING`: our own
//!   forwarded frames) are never forwarded again.
//! * Each direction has its own injector (seed N for A->B, N+1 for B->A).
//!   A frame the injector holds back (reorder/delay) is released after the
//!   next frame in that direction or after 20 ms without traffic, so a quiet
//!   link does not hold a frame forever. A frame held for a time (`hold`)
//!   goes out when its time comes (1 ms resolution).
//! * Counters go to stderr (and `--stats FILE`) on SIGTERM/SIGINT or at the
//!   end of `--seconds`; `--stats FILE` is also rewritten about once a second.
//!   Exit status 0 after a signal or the time limit, 2 on usage errors,
//!   1 on socket errors.

#![deny(unsafe_code)]

use aoefs::link::fault::{FaultConfig, FaultCounters, FaultInjector};
use aoefs::link::raw::{RawOptions, RawSocket, Receive};
use aoefs::testtools::{stop_on_signals, STOP};
use aoefs::wire::{Frame, ETHERTYPE_AOE, ETH_HDR_LEN};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn usage(msg: &str) -> ! {
    eprintln!("aoe-faultfwd: {msg}");
    eprintln!(
        "usage: aoe-faultfwd IF_A IF_B [--faults drop=P,dup=P,reorder=P,corrupt=P,corrupt_reply=P,delay=P,delay_frames=N,hold=P,hold_ms=LO-HI,drop_rw=P,max_len=N] \
         [--seed N] [--seconds N] [--stats FILE]"
    );
    std::process::exit(2);
}

struct Args {
    a: String,
    b: String,
    faults: FaultConfig,
    seed: u64,
    seconds: Option<f64>,
    stats: Option<String>,
}

fn parse_args() -> Args {
    let mut pos = Vec::new();
    let mut faults = FaultConfig::default();
    let mut seed = 1u64;
    let mut seconds = None;
    let mut stats = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        match a.as_str() {
            "--faults" => faults = FaultConfig::parse(&val("--faults")).unwrap_or_else(|e| usage(&e)),
            "--seed" => seed = val("--seed").parse().unwrap_or_else(|_| usage("bad --seed")),
            "--seconds" => {
                let s: f64 = val("--seconds").parse().unwrap_or_else(|_| usage("bad --seconds"));
                if s.is_nan() || s <= 0.0 {
                    usage("--seconds must be positive");
                }
                seconds = Some(s)
            }
            "--stats" => stats = Some(val("--stats")),
            "-h" | "--help" => usage("help"),
            s if s.starts_with('-') => usage(&format!("unknown option {s}")),
            _ => pos.push(a),
        }
    }
    if pos.len() != 2 {
        usage("need exactly two interfaces");
    }
    if pos[0] == pos[1] {
        usage("the two interfaces must differ");
    }
    Args { b: pos.pop().unwrap(), a: pos.pop().unwrap(), faults, seed, seconds, stats }
}

/// An AF_PACKET socket bound to one interface, receiving only AoE.
/// One side of the forwarder: AoE frames of one interface, promiscuous
/// (the frames it forwards are addressed to the far hosts).
struct Sock {
    raw: RawSocket,
    name: String,
}

impl Sock {
    fn open(name: &str) -> io::Result<Sock> {
        let opts = RawOptions {
            receive: Receive::Aoe,
            promiscuous: true,
            rcvbuf: 8 << 20,
            sndbuf: 8 << 20,
            ..Default::default()
        };
        Ok(Sock { raw: RawSocket::open(name, opts)?, name: name.to_string() })
    }

    /// Waits up to `ms` for a frame. Ok(None) on timeout; the packet type
    /// comes with the frame.
    fn recv(&self, buf: &mut [u8], ms: i32) -> io::Result<Option<(usize, u8)>> {
        self.raw.recv(buf, ms)
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        if frame.len() < 14 {
            return Ok(());
        }
        match self.raw.send(frame) {
            // A full queue is just another drop.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN)) => Ok(()),
            r => r,
        }
    }
}

/// Per-direction bookkeeping beyond the injector's own counters.
#[derive(Default)]
struct DirStats {
    received: AtomicU64,
    sent: AtomicU64,
    send_errors: AtomicU64,
    ignored_outgoing: AtomicU64,
    ignored_not_aoe: AtomicU64,
    idle_flushes: AtomicU64,
}

struct Dir {
    name: String,
    inj: Mutex<FaultInjector>,
    stats: DirStats,
}

fn forward(from: &Sock, to: &Sock, dir: &Dir, deadline: Option<Instant>) -> io::Result<()> {
    let mut buf = vec![0u8; 65536];
    let start = Instant::now();
    let now_us = || start.elapsed().as_micros() as u64;
    while !STOP.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        // Wake up for the next frame held for a time, or after 20 ms.
        let wait_ms = match dir.inj.lock().unwrap().next_release() {
            Some(at) => (at.saturating_sub(now_us()).div_ceil(1000) as i32).clamp(1, 20),
            None => 20,
        };
        let got = from.recv(&mut buf, wait_ms)?;
        let out = match got {
            None => {
                let mut inj = dir.inj.lock().unwrap();
                let mut out = inj.release(now_us());
                if inj.held() > 0 && out.is_empty() {
                    dir.stats.idle_flushes.fetch_add(1, Ordering::Relaxed);
                    out = inj.release_held();
                }
                out
            }
            Some((n, pkttype)) => {
                // With a protocol-bound socket the kernel delivers only
                // incoming frames; the check keeps our own frames out even if
                // that changes (e.g. an ETH_P_ALL socket).
                if pkttype == libc::PACKET_OUTGOING {
                    dir.stats.ignored_outgoing.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let f = &buf[..n];
                if n < ETH_HDR_LEN || Frame::new_unchecked(f).ethertype() != ETHERTYPE_AOE {
                    dir.stats.ignored_not_aoe.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                dir.stats.received.fetch_add(1, Ordering::Relaxed);
                dir.inj.lock().unwrap().apply_at(f.to_vec(), now_us())
            }
        };
        for f in out {
            match to.send(&f) {
                Ok(()) => {
                    dir.stats.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    dir.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("aoe-faultfwd: send on {}: {e}", to.name);
                }
            }
        }
    }
    Ok(())
}

fn report(dirs: &[Arc<Dir>]) -> String {
    let mut s = String::new();
    let mut total = FaultCounters::default();
    for d in dirs {
        let c = d.inj.lock().unwrap().counters;
        total.passed += c.passed;
        total.dropped += c.dropped;
        total.duplicated += c.duplicated;
        total.reordered += c.reordered;
        total.delayed += c.delayed;
        total.held += c.held;
        total.corrupted += c.corrupted;
        total.corrupted_replies += c.corrupted_replies;
        let st = &d.stats;
        s += &format!(
            "{n} received {}\n{n} sent {}\n{n} passed {}\n{n} dropped {}\n{n} duplicated {}\n{n} reordered {}\n{n} delayed {}\n{n} held {}\n{n} corrupted {}\n{n} corrupted_replies {}\n{n} send_errors {}\n{n} ignored_outgoing {}\n{n} ignored_not_aoe {}\n{n} idle_flushes {}\n",
            st.received.load(Ordering::Relaxed),
            st.sent.load(Ordering::Relaxed),
            c.passed,
            c.dropped,
            c.duplicated,
            c.reordered,
            c.delayed,
            c.held,
            c.corrupted,
            c.corrupted_replies,
            st.send_errors.load(Ordering::Relaxed),
            st.ignored_outgoing.load(Ordering::Relaxed),
            st.ignored_not_aoe.load(Ordering::Relaxed),
            st.idle_flushes.load(Ordering::Relaxed),
            n = d.name,
        );
    }
    s += &format!(
        "passed {}\ndropped {}\nduplicated {}\nreordered {}\ndelayed {}\nheld {}\ncorrupted {}\ncorrupted_replies {}\n",
        total.passed,
        total.dropped,
        total.duplicated,
        total.reordered,
        total.delayed,
        total.held,
        total.corrupted,
        total.corrupted_replies
    );
    s
}

fn write_stats(path: &str, text: &str) {
    let tmp = format!("{path}.tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

fn main() {
    let args = parse_args();
    stop_on_signals();
    let open = |n: &str| {
        Sock::open(n).unwrap_or_else(|e| {
            eprintln!("aoe-faultfwd: {n}: {e}");
            std::process::exit(1)
        })
    };
    let a = Arc::new(open(&args.a));
    let b = Arc::new(open(&args.b));
    let deadline = args.seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let ab = Arc::new(Dir {
        name: format!("{}->{}", args.a, args.b),
        inj: Mutex::new(FaultInjector::new(args.faults, args.seed)),
        stats: DirStats::default(),
    });
    let ba = Arc::new(Dir {
        name: format!("{}->{}", args.b, args.a),
        inj: Mutex::new(FaultInjector::new(args.faults, args.seed.wrapping_add(1))),
        stats: DirStats::default(),
    });
    let dirs = vec![ab.clone(), ba.clone()];
    let spawn = |from: Arc<Sock>, to: Arc<Sock>, d: Arc<Dir>| {
        std::thread::spawn(move || {
            if let Err(e) = forward(&from, &to, &d, deadline) {
                eprintln!("aoe-faultfwd: receive on {}: {e}", from.name);
                STOP.store(true, Ordering::SeqCst);
                return false;
            }
            true
        })
    };
    let t1 = spawn(a.clone(), b.clone(), ab);
    let t2 = spawn(b.clone(), a.clone(), ba);
    eprintln!("aoe-faultfwd: forwarding {} <-> {} faults {:?} seed {}", args.a, args.b, args.faults, args.seed);
    let mut last = Instant::now();
    while !t1.is_finished() || !t2.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(p) = &args.stats {
            if last.elapsed() >= Duration::from_secs(1) {
                write_stats(p, &report(&dirs));
                last = Instant::now();
            }
        }
    }
    let ok = t1.join().unwrap_or(false) & t2.join().unwrap_or(false);
    // Frames still held back are delivered, not silently lost at exit.
    for (d, to) in [(&dirs[0], &b), (&dirs[1], &a)] {
        for f in d.inj.lock().unwrap().release_all() {
            let _ = to.send(&f);
        }
    }
    let text = report(&dirs);
    eprint!("{text}");
    if let Some(p) = &args.stats {
        write_stats(p, &text);
    }
    std::process::exit(if ok { 0 } else { 1 });
}
