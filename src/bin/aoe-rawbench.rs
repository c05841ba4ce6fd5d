//! aoe-rawbench: a minimal raw-socket AoE client that measures the ceiling a
//! target (vblade) allows on one interface, with no FUSE and no cache.
//!
//! One thread, one AF_PACKET socket bound to the interface for ethertype
//! 0x88A2. It asks the target's config (buffer count, max sectors), reads
//! IDENTIFY for the size, then keeps up to `window` frames (default: the
//! target's buffer count) in flight:
//!
//! * `seqread` / `seqwrite`: sequential requests of `--bs` bytes (default
//!   1 MiB), each split into frames of min((MTU-36)/512, max sectors, 255)
//!   sectors; frames of the next requests are sent as soon as the window
//!   allows (up to `--qd` requests open at once, default: as many as the
//!   window needs).
//! * `randread`: `--qd` requests of `--bs` bytes (default 4 KiB) at random
//!   `--bs`-aligned offsets; every completion starts a new request.
//!
//! Lost frames are sent again with a new tag after a fixed timeout. Every tag
//! has bit 31 set (the Linux aoe driver ignores such replies). The run ends by
//! itself after `--seconds` or `--bytes`, and prints one line:
//! `mode=.. mtu=.. spf=.. window=.. bs=.. qd=.. bytes=.. secs=.. MBps=.. iops=..
//!  lat_us_mean=.. lat_us_p50=.. lat_us_p99=.. retrans=.. errors=..`
//! (MBps in 10^6 bytes per second).

#![deny(unsafe_code)]

use aoefs::link::raw::{RawOptions, RawSocket, Receive};
use aoefs::sys::net::{if_mac, if_mtu};
use aoefs::sys::packet::RecvBatch;
use aoefs::wire::*;
use clap::{Parser, ValueEnum};
use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Seqread,
    Seqwrite,
    Randread,
}

#[derive(Parser, Debug)]
#[command(
    name = "aoe-rawbench",
    about = "Minimal raw AF_PACKET AoE client: the throughput/latency ceiling of a target"
)]
struct Cli {
    /// Interface the target is reachable on
    #[arg(long, short = 'i')]
    iface: String,
    /// seqread, seqwrite or randread
    #[arg(long, short = 'm', value_enum)]
    mode: Mode,
    /// Target shelf (default: the first target that answers)
    #[arg(long)]
    shelf: Option<u16>,
    /// Target slot (default: the first target that answers)
    #[arg(long)]
    slot: Option<u8>,
    /// Request size in bytes (suffixes k, m, g); default 1m for seq*, 4k for randread
    #[arg(long, value_parser = parse_size)]
    bs: Option<u64>,
    /// Requests in flight (randread: queue depth; seq*: most open requests, default unlimited)
    #[arg(long)]
    qd: Option<usize>,
    /// Frames in flight (default: the target's buffer count)
    #[arg(long)]
    window: Option<usize>,
    /// Run time in seconds
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Stop after this many bytes (whichever of --seconds/--bytes comes first)
    #[arg(long, value_parser = parse_size)]
    bytes: Option<u64>,
    /// Only use the first SPAN bytes of the device (default: the whole device)
    #[arg(long, value_parser = parse_size)]
    span: Option<u64>,
    /// Start offset for sequential modes
    #[arg(long, value_parser = parse_size, default_value = "0")]
    offset: u64,
    /// Retransmit timeout in milliseconds
    #[arg(long, default_value_t = 20)]
    rto_ms: u64,
    /// Random seed for randread
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the discovered target on stderr
    #[arg(long, short = 'v')]
    verbose: bool,
}

fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mul) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        _ => (&s[..], 1),
    };
    num.parse::<u64>().map(|n| n * mul).map_err(|e| format!("bad size {s}: {e}"))
}

fn die(msg: &str) -> ! {
    eprintln!("aoe-rawbench: {msg}");
    std::process::exit(1)
}

// ---------------------------------------------------------------- socket

fn open_sock(iface: &str) -> io::Result<RawSocket> {
    // Big buffers: a burst of a whole window of jumbo replies must fit; our
    // own requests are not received back.
    RawSocket::open(
        iface,
        RawOptions {
            receive: Receive::Aoe,
            ignore_outgoing: true,
            rcvbuf: 64 << 20,
            sndbuf: 16 << 20,
            ..Default::default()
        },
    )
}

/// Sends, waiting while the transmit queue is full (the receive side drains).
fn send_frame(sock: &RawSocket, frame: &[u8]) -> io::Result<()> {
    loop {
        match sock.send(frame) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN)) => {
                std::thread::sleep(Duration::from_micros(20))
            }
            r => return r,
        }
    }
}

/// Receives in batches with recvmmsg.
type RxBatch = RecvBatch<64>;

// ---------------------------------------------------------------- target

struct Target {
    mac: Mac,
    shelf: u16,
    slot: u8,
    buffer_count: u16,
    max_sectors: u8,
    sectors: u64,
    lba48: bool,
}

fn discover(sock: &RawSocket, me: Mac, cli: &Cli, rx: &mut RxBatch) -> Target {
    let mut buf = [0u8; 64];
    let q = Repr {
        header: Header {
            dst: Mac::BROADCAST,
            src: me,
            response: false,
            error: None,
            shelf: cli.shelf.unwrap_or(SHELF_ALL),
            slot: cli.slot.unwrap_or(SLOT_ALL),
            tag: TAG_USER_TOOLS | 1,
        },
        body: Body::Config(ConfigRepr::query(CCMD_READ, &[])),
    };
    let n = q.emit(&mut buf).expect("emit query");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut next_send = Instant::now();
    let mut found: Option<(Mac, u16, u8, u16, u8)> = None;
    while found.is_none() {
        let now = Instant::now();
        if now > deadline {
            die("no AoE target answered the query config");
        }
        if now >= next_send {
            send_frame(sock, &buf[..n.max(60)]).unwrap_or_else(|e| die(&format!("send: {e}")));
            next_send = now + Duration::from_millis(500);
        }
        sock.wait(50);
        let k = rx.recv(sock.as_fd());
        for i in 0..k {
            let Ok(r) = Repr::parse(rx.frame(i)) else { continue };
            if !r.header.response || r.header.error.is_some() {
                continue;
            }
            if cli.shelf.is_some_and(|s| s != r.header.shelf) || cli.slot.is_some_and(|s| s != r.header.slot) {
                continue;
            }
            if let Body::Config(c) = r.body {
                found = Some((r.header.src, r.header.shelf, r.header.slot, c.buffer_count, c.effective_max_sectors()));
                break;
            }
        }
    }
    let (mac, shelf, slot, bufcnt, maxsec) = found.unwrap();
    // IDENTIFY for the size.
    let mut f = [0u8; 64];
    let tag = TAG_USER_TOOLS | 2;
    let identify = AtaHeader {
        dst: mac,
        src: me,
        shelf,
        slot,
        tag,
        aflags: AFLAG_DEV,
        sector_count: 1,
        cmd: ATA_IDENTIFY,
        lba: 0,
    };
    identify.emit(&mut f);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut next_send = Instant::now();
    loop {
        let now = Instant::now();
        if now > deadline {
            die("target did not answer IDENTIFY");
        }
        if now >= next_send {
            send_frame(sock, &f[..60]).unwrap_or_else(|e| die(&format!("send: {e}")));
            next_send = now + Duration::from_millis(500);
        }
        sock.wait(50);
        let k = rx.recv(sock.as_fd());
        for i in 0..k {
            let Ok(r) = Repr::parse(rx.frame(i)) else { continue };
            if !r.header.response || r.header.tag != tag {
                continue;
            }
            if let Body::Ata(a) = r.body {
                if a.failed() {
                    die("IDENTIFY failed");
                }
                let id = Identify::parse(a.data).unwrap_or_else(|_| die("short IDENTIFY reply"));
                return Target {
                    mac,
                    shelf,
                    slot,
                    buffer_count: bufcnt,
                    max_sectors: maxsec,
                    sectors: id.sectors,
                    lba48: id.lba48,
                };
            }
        }
    }
}

// ---------------------------------------------------------------- engine

/// One request (bs bytes) split over several frames.
struct Req {
    start: Instant,
    lba: u64,
    sectors: u64,
    /// Next sector (relative) not yet handed to a frame.
    next: u64,
    /// Frames not yet answered.
    pending: u32,
    /// Where the read data lands.
    buf: Vec<u8>,
    live: bool,
}

#[derive(Clone, Copy)]
struct Slot {
    tag: u32,
    req: usize,
    /// Sector offset within the request.
    off: u64,
    count: u8,
    sent: Instant,
    busy: bool,
}

fn main() {
    let cli = Cli::parse();
    let (me, mtu) = match (if_mac(&cli.iface), if_mtu(&cli.iface)) {
        (Ok(m), Ok(t)) => (m, t),
        (Err(e), _) | (_, Err(e)) => die(&format!("{}: {e}", cli.iface)),
    };
    let sock = open_sock(&cli.iface).unwrap_or_else(|e| die(&format!("AF_PACKET socket: {e} (needs root)")));
    let mut rx = RxBatch::new(mtu + 64);
    let t = discover(&sock, me, &cli, &mut rx);

    let spf =
        ((mtu.saturating_sub(ATA_HDR_LEN - ETH_HDR_LEN)) / SECTOR).min(t.max_sectors as usize).clamp(1, 255) as u64;
    let window = cli.window.unwrap_or(t.buffer_count.max(1) as usize).clamp(1, 4096);
    let seq = cli.mode != Mode::Randread;
    let write = cli.mode == Mode::Seqwrite;
    let bs = cli.bs.unwrap_or(if seq { 1 << 20 } else { 4096 });
    if bs == 0 || bs % SECTOR as u64 != 0 {
        die("--bs must be a positive multiple of 512");
    }
    let bs_sec = bs / SECTOR as u64;
    let frames_per_req = bs_sec.div_ceil(spf) as usize;
    let qd = match cli.qd {
        Some(q) => q.max(1),
        None if seq => window.div_ceil(frames_per_req) + 1,
        None => 1,
    };
    let dev_bytes = t.sectors * SECTOR as u64;
    let span = cli.span.unwrap_or(dev_bytes).min(dev_bytes);
    let span_sec = span / SECTOR as u64;
    if span_sec < bs_sec {
        die("device (or --span) smaller than one request");
    }
    if cli.verbose {
        eprintln!(
            "target e{}.{} mac {} bufcnt {} maxsec {} size {} B lba48 {}; mtu {} spf {} window {} bs {} qd {}",
            t.shelf, t.slot, t.mac, t.buffer_count, t.max_sectors, dev_bytes, t.lba48, mtu, spf, window, bs, qd
        );
    }

    let (aflag_ext, _) = ata_lba_fields(t.lba48, 0);
    let (cmd, aflags) = match (write, t.lba48) {
        (false, true) => (ATA_READ_EXT, AFLAG_EXT | AFLAG_DEV),
        (false, false) => (ATA_READ, AFLAG_DEV),
        (true, true) => (ATA_WRITE_EXT, AFLAG_EXT | AFLAG_DEV | AFLAG_WRITE),
        (true, false) => (ATA_WRITE, AFLAG_DEV | AFLAG_WRITE),
    };
    let _ = aflag_ext;

    let mut reqs: Vec<Req> = (0..qd)
        .map(|_| Req {
            start: Instant::now(),
            lba: 0,
            sectors: bs_sec,
            next: 0,
            pending: 0,
            buf: vec![0u8; bs as usize],
            live: false,
        })
        .collect();
    // Write data: a non-zero pattern.
    let wdata: Vec<u8> = (0..bs as usize).map(|i| (i * 7 + 1) as u8).collect();
    let mut slots: Vec<Slot> =
        vec![Slot { tag: 0, req: 0, off: 0, count: 0, sent: Instant::now(), busy: false }; window];
    let mut free_slots: Vec<usize> = (0..window).rev().collect();
    // Requests with sectors not yet in a frame, in issue order.
    let mut issue: VecDeque<usize> = VecDeque::new();
    let mut idle_reqs: Vec<usize> = (0..qd).rev().collect();
    let mut serial: u32 = 0;
    let _ = sock.drops();
    let mut rng = aoefs::link::fault::Rng::new(cli.seed);
    let mut seq_next = (cli.offset / SECTOR as u64) % span_sec;
    let rto = Duration::from_millis(cli.rto_ms.max(1));
    let mut frame = vec![0u8; ATA_HDR_LEN + (spf as usize) * SECTOR + 64];

    let mut done_bytes: u64 = 0;
    let mut done_reqs: u64 = 0;
    let mut issued_bytes: u64 = 0;
    let mut retrans: u64 = 0;
    let mut errors: u64 = 0;
    let mut lats: Vec<u32> = Vec::with_capacity(1 << 20);
    let byte_limit = cli.bytes.unwrap_or(u64::MAX);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(cli.seconds);
    let mut stopping = false;
    let mut last_scan = Instant::now();

    // A userland tool's tags (bit 31), as aoeping's.
    let tag_of = |serial: u32, slot: usize| -> u32 { TAG_USER_TOOLS | ((serial & 0x1FFFF) << 12) | slot as u32 };

    macro_rules! send_slot {
        ($s:expr, $now:expr) => {{
            let s: usize = $s;
            let sl = slots[s];
            let r = &reqs[sl.req];
            let lba = r.lba + sl.off;
            let (_, lbaf) = ata_lba_fields(t.lba48, lba);
            let n = sl.count as usize * SECTOR;
            let h = AtaHeader {
                dst: t.mac,
                src: me,
                shelf: t.shelf,
                slot: t.slot,
                tag: sl.tag,
                aflags,
                sector_count: sl.count,
                cmd,
                lba: lbaf,
            };
            h.emit(&mut frame);
            let len = if write {
                let o = sl.off as usize * SECTOR;
                frame[ATA_HDR_LEN..ATA_HDR_LEN + n].copy_from_slice(&wdata[o..o + n]);
                ATA_HDR_LEN + n
            } else {
                ATA_HDR_LEN.max(60)
            };
            send_frame(&sock, &frame[..len]).unwrap_or_else(|e| die(&format!("send: {e}")));
            slots[s].sent = $now;
        }};
    }

    loop {
        let now = Instant::now();
        if !stopping && (now >= end || issued_bytes >= byte_limit) {
            stopping = true;
        }
        // Start new requests.
        if !stopping {
            while let Some(ri) = idle_reqs.pop() {
                if issued_bytes >= byte_limit {
                    idle_reqs.push(ri);
                    break;
                }
                let lba = if seq {
                    if seq_next + bs_sec > span_sec {
                        seq_next = 0;
                    }
                    let l = seq_next;
                    seq_next += bs_sec;
                    l
                } else {
                    (rng.next_u64() % (span_sec / bs_sec)) * bs_sec
                };
                let r = &mut reqs[ri];
                r.lba = lba;
                r.sectors = bs_sec;
                r.next = 0;
                r.pending = 0;
                r.live = true;
                r.start = now;
                issued_bytes += bs;
                issue.push_back(ri);
            }
        }
        // Fill the window.
        while let Some(&ri) = issue.front() {
            let Some(s) = free_slots.pop() else { break };
            let r = &mut reqs[ri];
            let count = spf.min(r.sectors - r.next);
            let off = r.next;
            r.next += count;
            r.pending += 1;
            if r.next >= r.sectors {
                issue.pop_front();
            }
            serial = serial.wrapping_add(1);
            slots[s] = Slot { tag: tag_of(serial, s), req: ri, off, count: count as u8, sent: now, busy: true };
            send_slot!(s, now);
        }
        let inflight = window - free_slots.len();
        if stopping && inflight == 0 {
            break;
        }
        // Receive.
        let mut k = rx.recv(sock.as_fd());
        if k == 0 {
            let wait = if inflight == 0 { Duration::from_millis(1) } else { rto.min(Duration::from_millis(5)) };
            if sock.wait(wait.as_millis().min(1000) as i32) {
                k = rx.recv(sock.as_fd());
            }
        }
        let now = Instant::now();
        for i in 0..k {
            let f = rx.frame(i);
            if f.len() < ATA_HDR_LEN {
                continue;
            }
            let Ok(fr) = Frame::new_checked(f) else { continue };
            if !fr.is_response() || fr.command() != Command::Ata.to_u8() || fr.src() != t.mac {
                continue;
            }
            let tag = fr.tag();
            if !is_user_tool_tag(tag) {
                continue;
            }
            let s = (tag & 0xFFF) as usize;
            if s >= window || !slots[s].busy || slots[s].tag != tag {
                continue; // late reply to a retransmitted frame
            }
            let sl = slots[s];
            let status = fr.cmd_status();
            if fr.is_error() || status & ATA_STATUS_FAIL != 0 {
                errors += 1;
                if errors < 5 {
                    eprintln!("aoe-rawbench: error reply (aoe err {} status {:#x})", fr.error_code(), status);
                }
            } else if !write {
                let n = sl.count as usize * SECTOR;
                let o = sl.off as usize * SECTOR;
                if f.len() >= ATA_HDR_LEN + n {
                    let r = &mut reqs[sl.req];
                    r.buf[o..o + n].copy_from_slice(&f[ATA_HDR_LEN..ATA_HDR_LEN + n]);
                } else {
                    errors += 1;
                }
            }
            slots[s].busy = false;
            free_slots.push(s);
            let r = &mut reqs[sl.req];
            r.pending -= 1;
            done_bytes += sl.count as u64 * SECTOR as u64;
            if r.pending == 0 && r.next >= r.sectors {
                r.live = false;
                done_reqs += 1;
                let us = now.duration_since(r.start).as_micros().min(u32::MAX as u128) as u32;
                lats.push(us);
                idle_reqs.push(sl.req);
            }
        }
        // Retransmit frames older than the timeout (with a new tag).
        if now.duration_since(last_scan) >= Duration::from_millis(1) {
            last_scan = now;
            for s in 0..window {
                if slots[s].busy && now.duration_since(slots[s].sent) >= rto {
                    serial = serial.wrapping_add(1);
                    slots[s].tag = tag_of(serial, s);
                    retrans += 1;
                    send_slot!(s, now);
                }
            }
        }
        if now > end + Duration::from_secs(30) {
            die("frames still unanswered 30 s after the end: target gone?");
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let rxdrops = sock.drops();
    lats.sort_unstable();
    let pct = |p: f64| -> u32 {
        if lats.is_empty() {
            0
        } else {
            lats[((lats.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    let mean = if lats.is_empty() { 0.0 } else { lats.iter().map(|&x| x as f64).sum::<f64>() / lats.len() as f64 };
    let name = match cli.mode {
        Mode::Seqread => "seqread",
        Mode::Seqwrite => "seqwrite",
        Mode::Randread => "randread",
    };
    println!(
        "mode={name} mtu={mtu} spf={spf} window={window} bufcnt={} bs={bs} qd={qd} bytes={done_bytes} secs={secs:.3} \
MBps={:.1} iops={:.0} lat_us_mean={mean:.1} lat_us_p50={} lat_us_p99={} retrans={retrans} rxdrops={rxdrops} errors={errors}",
        t.buffer_count,
        done_bytes as f64 / secs / 1e6,
        done_reqs as f64 / secs,
        pct(0.50),
        pct(0.99),
    );
    drop(sock);
    if errors > 0 {
        std::process::exit(3);
    }
}
