//! aoe-inject: sends hostile AoE frames at an initiator, for tests. Run it on
//! the target's interface (in the target's network namespace, next to vblade):
//!
//!     aoe-inject IFACE SHELF.SLOT [--seconds S] [--rate N] [--seed N]
//!                [--initiator-mac MAC] [--foreign-mac MAC] [--kinds k1,k2,..] [--error N] [--stats FILE]
//!
//! It sniffs the initiator's ATA requests to the target (learning the
//! initiator's MAC, unless given, and live tags) and the target's replies on
//! this interface (answered tags), and sends `--rate` frames per second for
//! `--seconds` (default 5), cycling through the kinds:
//!
//! | kind | frame | a correct initiator |
//! |---|---|---|
//! | `foreign-mac` | ATA reply to a live tag from a MAC that is not the target's, status OK, 0xEE data | ignores it (unknown source) |
//! | `foreign-error` | AoE error 3 (device unavailable) to a live tag from a foreign MAC | ignores it |
//! | `wrong-target` | reply to a live tag from the target's MAC but another shelf or slot, 0xEE data | ignores it (unknown target) |
//! | `stale-tag` | replay of a reply the target sent at least 200 ms ago | counts it as unexpected |
//! | `unknown-tag` | reply from the target's MAC with a tag never issued (0xFF......), 0xEE data | counts it as unexpected |
//! | `truncated` | a live-tag reply from a foreign MAC cut short, or a stale replay cut short | ignores it |
//! | `oversized` | a live-tag reply from a foreign MAC, or a stale replay, with bytes appended | ignores it |
//! | `bad-version` | a live-tag reply from the target's MAC with AoE version 0, 2 or 15, 0xEE data | ignores it (bad version) |
//! | `no-tag-bit` | a live-tag reply from the target's MAC with tag bit 31 cleared, 0xEE data | ignores it (not a userland tag) |
//! | `garbage` | random bytes with ethertype 0x88A2 from a random MAC, sometimes with a plausible header | ignores it |
//! | `target-error` | only when named in `--kinds`: AoE error `--error N` (default 3) from the target's MAC to a live tag | fails that request |
//!
//! Apart from `target-error` it never sends a well-formed reply from the
//! target's MAC to a live tag: AoE has no authentication, so no initiator can
//! tell such a forgery from the target. (`target-error` is for tests that stop
//! the real target with SIGSTOP and answer in its place.) Replays use only
//! replies seen at least 200 ms earlier, so they cannot overtake the real one.
//!
//! Counters per kind go to stderr (and `--stats FILE`) at the end or on
//! SIGTERM. Exit status 0, 2 on usage errors, 1 on socket errors.

#![deny(unsafe_code)]

use aoefs::link::fault::Rng;
use aoefs::link::raw::{RawOptions, RawSocket, Receive};
use aoefs::testtools::{stop_on_signals, INJECT_KINDS, STOP};
use aoefs::wire::{Mac, ETHERTYPE_AOE};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kinds sent only when `--kinds` names them.
const EXPLICIT_KINDS: [&str; 1] = ["target-error"];

fn usage(msg: &str) -> ! {
    eprintln!("aoe-inject: {msg}");
    eprintln!(
        "usage: aoe-inject IFACE SHELF.SLOT [--seconds S] [--rate N] [--seed N] [--initiator-mac MAC] \
         [--foreign-mac MAC] [--kinds {},{}] [--error N] [--stats FILE]",
        INJECT_KINDS.join(","),
        EXPLICIT_KINDS.join(",")
    );
    std::process::exit(2);
}

struct Args {
    iface: String,
    shelf: u16,
    slot: u8,
    seconds: f64,
    rate: f64,
    seed: u64,
    initiator: Option<Mac>,
    foreign: Mac,
    kinds: Vec<&'static str>,
    error: u8,
    stats: Option<String>,
}

fn parse_args() -> Args {
    let mut pos = Vec::new();
    let mut a = Args {
        iface: String::new(),
        shelf: 0,
        slot: 0,
        seconds: 5.0,
        rate: 1000.0,
        seed: 1,
        initiator: None,
        foreign: Mac([0x02, 0xee, 0xee, 0xee, 0xee, 0x01]),
        kinds: INJECT_KINDS.to_vec(),
        error: 3,
        stats: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        match arg.as_str() {
            "--seconds" => {
                a.seconds = val("--seconds").parse().unwrap_or_else(|_| usage("bad --seconds"));
                if a.seconds.is_nan() || a.seconds <= 0.0 || a.seconds > 3600.0 {
                    usage("--seconds must be in (0, 3600]");
                }
            }
            "--rate" => {
                a.rate = val("--rate").parse().unwrap_or_else(|_| usage("bad --rate"));
                if a.rate.is_nan() || a.rate <= 0.0 || a.rate > 100_000.0 {
                    usage("--rate must be in (0, 100000]");
                }
            }
            "--seed" => a.seed = val("--seed").parse().unwrap_or_else(|_| usage("bad --seed")),
            "--initiator-mac" => {
                a.initiator = Some(Mac::parse(&val("--initiator-mac")).unwrap_or_else(|| usage("bad MAC")))
            }
            "--foreign-mac" => a.foreign = Mac::parse(&val("--foreign-mac")).unwrap_or_else(|| usage("bad MAC")),
            "--kinds" => {
                let v = val("--kinds");
                a.kinds = v
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| {
                        *INJECT_KINDS
                            .iter()
                            .chain(EXPLICIT_KINDS.iter())
                            .find(|x| **x == k)
                            .unwrap_or_else(|| usage(&format!("unknown kind {k}")))
                    })
                    .collect();
                if a.kinds.is_empty() {
                    usage("--kinds is empty");
                }
            }
            "--stats" => a.stats = Some(val("--stats")),
            "--error" => a.error = val("--error").parse().unwrap_or_else(|_| usage("bad --error")),
            "-h" | "--help" => usage("help"),
            s if s.starts_with('-') => usage(&format!("unknown option {s}")),
            _ => pos.push(arg),
        }
    }
    if pos.len() != 2 {
        usage("need IFACE and SHELF.SLOT");
    }
    let (s, t) = pos[1]
        .trim_start_matches('e')
        .split_once('.')
        .and_then(|(s, t)| Some((s.parse::<u16>().ok()?, t.parse::<u8>().ok()?)))
        .unwrap_or_else(|| usage("bad SHELF.SLOT"));
    a.iface = pos[0].clone();
    a.shelf = s;
    a.slot = t;
    if a.foreign.is_multicast() {
        usage("--foreign-mac must be unicast");
    }
    a
}

/// ETH_P_ALL: a socket bound to one protocol sees only incoming frames,
/// and the target's replies are outgoing on the target's veth.
fn open_sock(name: &str) -> io::Result<RawSocket> {
    RawSocket::open(name, RawOptions { receive: Receive::All, rcvbuf: 8 << 20, ..Default::default() })
}

/// One ATA request seen from the initiator.
#[derive(Clone, Copy)]
struct Req {
    tag: u32,
    aflags: u8,
    count: u8,
    cmd: u8,
    lba: [u8; 6],
    seen: Instant,
    answered: bool,
}

#[derive(Default)]
struct Seen {
    initiator: Option<Mac>,
    /// Recent requests, newest last (bounded).
    reqs: VecDeque<Req>,
    by_tag: HashMap<u32, Req>,
    /// Replies the target sent (whole frames), newest last (bounded).
    replies: VecDeque<(Instant, Vec<u8>)>,
    requests_seen: u64,
    replies_seen: u64,
}

const MAX_REQS: usize = 4096;
const MAX_REPLIES: usize = 2048;
const STALE_AGE: Duration = Duration::from_millis(200);
const LIVE_AGE: Duration = Duration::from_millis(100);

fn sniff(sock: &RawSocket, me: Mac, shelf: u16, slot: u8, seen: &Mutex<Seen>, deadline: Instant) -> io::Result<()> {
    let mut buf = vec![0u8; 65536];
    while !STOP.load(Ordering::Relaxed) && Instant::now() < deadline {
        let Some((n, pkttype)) = sock.recv(&mut buf, 50)? else { continue };
        let f = &buf[..n];
        if n < 36 || u16::from_be_bytes([f[12], f[13]]) != ETHERTYPE_AOE {
            continue;
        }
        let ver = f[14] >> 4;
        let flags = f[14] & 0x0f;
        let fshelf = u16::from_be_bytes([f[16], f[17]]);
        let (fslot, cmd) = (f[18], f[19]);
        let tag = u32::from_be_bytes([f[20], f[21], f[22], f[23]]);
        if ver != 1 || cmd != 0 || fshelf != shelf || fslot != slot || tag & 0x8000_0000 == 0 {
            continue;
        }
        let src = Mac::from_slice(&f[6..12]);
        let mut g = seen.lock().unwrap();
        if pkttype != libc::PACKET_OUTGOING && flags & 0x08 == 0 {
            // A request from the initiator.
            if g.initiator.is_none() && !src.is_multicast() {
                g.initiator = Some(src);
            }
            let mut lba = [0u8; 6];
            lba.copy_from_slice(&f[28..34]);
            let r = Req { tag, aflags: f[24], count: f[26], cmd: f[27], lba, seen: Instant::now(), answered: false };
            g.requests_seen += 1;
            g.reqs.push_back(r);
            g.by_tag.insert(tag, r);
            while g.reqs.len() > MAX_REQS {
                let old = g.reqs.pop_front().unwrap();
                if g.by_tag.get(&old.tag).is_some_and(|x| x.seen == old.seen) {
                    g.by_tag.remove(&old.tag);
                }
            }
        } else if pkttype == libc::PACKET_OUTGOING && flags == 0x08 && src == me && g.by_tag.contains_key(&tag) {
            // The target's own reply to a request we saw (our forgeries never
            // come from `me` with a valid header, version and live tag).
            g.replies_seen += 1;
            if let Some(r) = g.by_tag.get_mut(&tag) {
                r.answered = true;
            }
            // Keep at most one reply per millisecond, so the ring reaches
            // back far enough to hold stale ones at any rate.
            let now = Instant::now();
            if g.replies.back().is_some_and(|(t, _)| now - *t < Duration::from_millis(1)) {
                continue;
            }
            g.replies.push_back((now, f.to_vec()));
            while g.replies.len() > MAX_REPLIES {
                g.replies.pop_front();
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn header(dst: Mac, src: Mac, ver: u8, flags: u8, err: u8, shelf: u16, slot: u8, cmd: u8, tag: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(1100);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ETHERTYPE_AOE.to_be_bytes());
    f.push(ver << 4 | flags);
    f.push(err);
    f.extend_from_slice(&shelf.to_be_bytes());
    f.push(slot);
    f.push(cmd);
    f.extend_from_slice(&tag.to_be_bytes());
    f
}

/// A plausible successful ATA reply to `r` (0xEE data for reads).
#[allow(clippy::too_many_arguments)]
fn ata_reply(dst: Mac, src: Mac, ver: u8, shelf: u16, slot: u8, tag: u32, r: &Req, mtu: usize) -> Vec<u8> {
    let mut f = header(dst, src, ver, 0x08, 0, shelf, slot, 0, tag);
    f.extend_from_slice(&[r.aflags, 0, r.count, 0x40]);
    f.extend_from_slice(&r.lba);
    f.extend_from_slice(&[0, 0]);
    let data = if r.cmd == 0xEC {
        512
    } else if r.aflags & 0x01 == 0 {
        r.count as usize * 512
    } else {
        0
    };
    let data = data.min(mtu.saturating_sub(36));
    f.resize(f.len() + data, 0xEE);
    f
}

fn pad60(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

struct Ctx {
    me: Mac,
    foreign: Mac,
    shelf: u16,
    slot: u8,
    mtu: usize,
    error: u8,
}

/// Builds one frame of `kind`, or None when nothing suitable was observed yet.
fn build(kind: &str, init: Mac, c: &Ctx, seen: &mut Seen, rng: &mut Rng) -> Option<Vec<u8>> {
    if kind == "target-error" {
        // Answer each live request once, oldest first, and remember it.
        let now = Instant::now();
        let tag = seen
            .reqs
            .iter()
            .filter(|r| now - r.seen <= LIVE_AGE)
            .find(|r| seen.by_tag.get(&r.tag).is_some_and(|x| !x.answered))?
            .tag;
        let r = seen.by_tag.get_mut(&tag)?;
        r.answered = true;
        let r = *r;
        let mut f = header(init, c.me, 1, 0x08 | 0x04, c.error, c.shelf, c.slot, 0, r.tag);
        f.extend_from_slice(&[r.aflags, 0, r.count, r.cmd]);
        f.extend_from_slice(&r.lba);
        f.extend_from_slice(&[0, 0]);
        return Some(pad60(f));
    }
    let seen = &*seen;
    let now = Instant::now();
    // A live request: the newest one the target has not answered yet, else
    // the newest one.
    let live = || -> Option<Req> {
        let recent: Vec<&Req> = seen.reqs.iter().rev().take(64).filter(|r| now - r.seen <= LIVE_AGE).collect();
        recent.iter().find(|r| seen.by_tag.get(&r.tag).is_some_and(|x| !x.answered)).or(recent.first()).map(|r| **r)
    };
    let stale = |rng: &mut Rng| -> Option<Vec<u8>> {
        let old: Vec<&(Instant, Vec<u8>)> = seen.replies.iter().filter(|(t, _)| now - *t >= STALE_AGE).collect();
        if old.is_empty() {
            return None;
        }
        Some(old[rng.below(old.len() as u64) as usize].1.clone())
    };
    let mtu_frame = c.mtu + 14;
    Some(match kind {
        "foreign-mac" => {
            let r = live()?;
            pad60(ata_reply(init, c.foreign, 1, c.shelf, c.slot, r.tag, &r, c.mtu))
        }
        "foreign-error" => {
            let r = live()?;
            let mut f = header(init, c.foreign, 1, 0x08 | 0x04, 3, c.shelf, c.slot, 0, r.tag);
            f.extend_from_slice(&[r.aflags, 0, r.count, 0x40]);
            f.extend_from_slice(&r.lba);
            f.extend_from_slice(&[0, 0]);
            pad60(f)
        }
        "wrong-target" => {
            let r = live()?;
            let (shelf, slot) = if rng.below(2) == 0 { (c.shelf ^ 0x2000, c.slot) } else { (c.shelf, c.slot ^ 0x40) };
            pad60(ata_reply(init, c.me, 1, shelf, slot, r.tag, &r, c.mtu))
        }
        "stale-tag" => {
            let mut f = stale(rng)?;
            f[0..6].copy_from_slice(&init.0);
            f
        }
        "unknown-tag" => {
            let lba = rng.next_u64().to_le_bytes();
            let r = Req {
                tag: 0xFF00_0000 | (rng.next_u64() as u32 & 0x00FF_FFFF),
                aflags: 0x40,
                count: 2,
                cmd: 0x24,
                lba: [lba[0], lba[1], lba[2], 0, 0, 0],
                seen: now,
                answered: false,
            };
            pad60(ata_reply(init, c.me, 1, c.shelf, c.slot, r.tag, &r, c.mtu))
        }
        "truncated" => {
            if rng.below(2) == 0 {
                if let Some(mut f) = stale(rng) {
                    f[0..6].copy_from_slice(&init.0);
                    let cut = 14 + rng.below((f.len() - 14) as u64) as usize;
                    f.truncate(cut);
                    return Some(f);
                }
            }
            let r = live()?;
            let mut f = ata_reply(init, c.foreign, 1, c.shelf, c.slot, r.tag, &r, c.mtu);
            let cut = 14 + rng.below((f.len() - 14) as u64) as usize;
            f.truncate(cut);
            f
        }
        "oversized" => {
            let mut f = if rng.below(2) == 0 {
                match stale(rng) {
                    Some(f) => f,
                    None => {
                        let r = live()?;
                        ata_reply(init, c.foreign, 1, c.shelf, c.slot, r.tag, &r, c.mtu)
                    }
                }
            } else {
                let r = live()?;
                ata_reply(init, c.foreign, 1, c.shelf, c.slot, r.tag, &r, c.mtu)
            };
            f[0..6].copy_from_slice(&init.0);
            let room = mtu_frame.saturating_sub(f.len());
            let extra = 1 + rng.below(room.max(1) as u64) as usize;
            f.resize((f.len() + extra).min(mtu_frame), 0xEE);
            f
        }
        "bad-version" => {
            let r = live()?;
            let ver = [0u8, 2, 15][rng.below(3) as usize];
            pad60(ata_reply(init, c.me, ver, c.shelf, c.slot, r.tag, &r, c.mtu))
        }
        "no-tag-bit" => {
            let r = live()?;
            pad60(ata_reply(init, c.me, 1, c.shelf, c.slot, r.tag & 0x7FFF_FFFF, &r, c.mtu))
        }
        "garbage" => {
            let len = 14 + rng.below((mtu_frame - 14) as u64) as usize;
            let mut f = vec![0u8; len];
            for b in f.iter_mut() {
                *b = rng.next_u64() as u8;
            }
            f[0..6].copy_from_slice(&init.0);
            // A random unicast source that is not the target.
            f[6] &= 0xfe;
            if f[6..12] == c.me.0 {
                f[11] ^= 1;
            }
            f[12..14].copy_from_slice(&ETHERTYPE_AOE.to_be_bytes());
            if len >= 24 && rng.below(2) == 0 {
                // Plausible header: version 1 response for our target.
                f[14] = 0x18;
                f[15] = 0;
                f[16..18].copy_from_slice(&c.shelf.to_be_bytes());
                f[18] = c.slot;
                f[19] = rng.below(4) as u8;
                f[20] |= 0x80;
            }
            f
        }
        _ => unreachable!(),
    })
}

fn main() {
    let a = parse_args();
    stop_on_signals();
    let fail = |what: &str, e: io::Error| -> ! {
        eprintln!("aoe-inject: {what}: {e}");
        std::process::exit(1)
    };
    let me = aoefs::sys::net::if_mac(&a.iface).unwrap_or_else(|e| fail(&a.iface, e));
    let mtu = aoefs::sys::net::if_mtu(&a.iface).unwrap_or_else(|e| fail(&a.iface, e));
    let sock = Arc::new(open_sock(&a.iface).unwrap_or_else(|e| fail(&a.iface, e)));
    let seen = Arc::new(Mutex::new(Seen { initiator: a.initiator, ..Default::default() }));
    let deadline = Instant::now() + Duration::from_secs_f64(a.seconds);
    let sniffer = {
        let (sock, seen) = (sock.clone(), seen.clone());
        let (shelf, slot) = (a.shelf, a.slot);
        std::thread::spawn(move || sniff(&sock, me, shelf, slot, &seen, deadline))
    };
    eprintln!(
        "aoe-inject: ready on {} (target MAC {}, e{}.{}), {} frames/s for {} s, kinds {}",
        a.iface,
        me.hex12(),
        a.shelf,
        a.slot,
        a.rate,
        a.seconds,
        a.kinds.join(",")
    );
    let ctx = Ctx { me, foreign: a.foreign, shelf: a.shelf, slot: a.slot, mtu, error: a.error };
    let mut rng = Rng::new(a.seed);
    let mut sent: Vec<u64> = vec![0; a.kinds.len()];
    let mut skipped: Vec<u64> = vec![0; a.kinds.len()];
    let mut send_errors = 0u64;
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let mut next = Instant::now();
    let mut k = 0usize;
    while !STOP.load(Ordering::Relaxed) && Instant::now() < deadline && !sniffer.is_finished() {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(20)));
            continue;
        }
        next += interval;
        // Do not try to catch up after a stall by bursting.
        if Instant::now() > next + Duration::from_millis(100) {
            next = Instant::now();
        }
        let i = k % a.kinds.len();
        k += 1;
        let frame = {
            let mut g = seen.lock().unwrap();
            match g.initiator {
                Some(init) => build(a.kinds[i], init, &ctx, &mut g, &mut rng),
                None => None,
            }
        };
        match frame {
            Some(f) => match sock.send(&f) {
                Ok(()) => sent[i] += 1,
                Err(_) => send_errors += 1,
            },
            None => skipped[i] += 1,
        }
    }
    STOP.store(true, Ordering::SeqCst);
    let sniff_res = sniffer.join();
    let g = seen.lock().unwrap();
    let mut text = String::new();
    text += &format!(
        "initiator {}\nrequests_seen {}\nreplies_seen {}\nsend_errors {send_errors}\n",
        g.initiator.map(|m| m.hex12()).unwrap_or_else(|| "unknown".into()),
        g.requests_seen,
        g.replies_seen
    );
    for (i, kind) in a.kinds.iter().enumerate() {
        text += &format!("sent {kind} {}\nskipped {kind} {}\n", sent[i], skipped[i]);
    }
    text += &format!("sent_total {}\n", sent.iter().sum::<u64>());
    eprint!("{text}");
    if let Some(p) = &a.stats {
        let _ = std::fs::write(p, &text);
    }
    match sniff_res {
        Ok(Ok(())) => std::process::exit(0),
        Ok(Err(e)) => fail("receive", e),
        Err(_) => std::process::exit(1),
    }
}
