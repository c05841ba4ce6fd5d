//! aoe-inject: sends hostile AoE frames at an initiator, for tests. Run it on
//! the target's interface (in the target's network namespace, next to vblade):
//!
//!     aoe-inject IFACE SHELF.SLOT [--seconds S] [--rate N] [--seed N]
//!                [--initiator-mac MAC] [--foreign-mac MAC] [--kinds k1,k2,..] [--error N] [--stats FILE]
//!     aoe-inject IFACE SHELF.SLOT --respond [--claim-macs N] [--bufcnt N] [--scnt N] [--sectors N]
//!                [--announce-every S] [--seconds S] [--stats FILE]
//!     aoe-inject IFACE SHELF.SLOT --config-flood N [--rate N] [--stats FILE]
//!
//! `--respond` makes it a host that claims the target (run it on its own
//! interface, on the segment of the initiator and the target): every
//! `--announce-every` seconds (default 1) it sends a config response for
//! SHELF.SLOT from each of its `--claim-macs` MACs (default 1: the
//! interface's own; more are `02:ee:ee:ee:KK:NN`, KK the interface MAC's last
//! byte) with buffer count `--bufcnt` (default 16) and `--scnt` sectors per
//! command (default 17), and answers every request addressed to one of those
//! MACs (or broadcast) as a target of `--sectors` sectors (default 2 GiB
//! worth) would (`sim::SimModel`, `sim::Backing::Junk`): reads with 0xEE
//! junk, writes acknowledged and forgotten, its own IDENTIFY. It counts what
//! it received (`requests`, `config_queries`, `identifies`, `reads`,
//! `writes`, `other`) and writes the counters at the end (after `--seconds`,
//! default 3600, or on SIGTERM).
//!
//! `--config-flood N` sends N config responses from the interface's MAC for N
//! distinct shelf.slot numbers from SHELF.SLOT on, `--rate` a second.
//!
//! Without either, it sniffs the initiator's ATA requests to the target (learning the
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
//! | `unknown-tag` | reply from the target's MAC with a tag never issued (slot 4095, generation 0x3FFFF), 0xEE data | counts it as unexpected |
//! | `truncated` | a live-tag reply from a foreign MAC cut short, or a stale replay cut short | ignores it |
//! | `oversized` | a live-tag reply from a foreign MAC, or a stale replay, with bytes appended | ignores it |
//! | `bad-version` | a live-tag reply from the target's MAC with AoE version 0, 2 or 15, 0xEE data | ignores it (bad version) |
//! | `user-tool-tag` | a live-tag reply from the target's MAC with tag bit 31 set (the userland tools' space, as aoeping's), 0xEE data | ignores it (not its tag) |
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
use aoefs::sim::{Backing, SimConfig, SimModel};
use aoefs::testtools::{stop_on_signals, INJECT_KINDS, STOP};
use aoefs::wire::{
    AtaRepr, Body, Command, Frame, Header, Mac, Repr, AFLAG_EXT, AFLAG_WRITE, AOE_HDR_LEN, AOE_VERSION, ATA_HDR_LEN,
    ATA_IDENTIFY, ATA_READ_EXT, ATA_STATUS_DRDY, ETHERTYPE_AOE, ETH_HDR_LEN, FLAG_ERROR, FLAG_RESPONSE, SECTOR,
};
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
         [--foreign-mac MAC] [--kinds {},{}] [--error N] [--stats FILE]\n\
         \x20      aoe-inject IFACE SHELF.SLOT --respond [--claim-macs N] [--bufcnt N] [--scnt N] [--sectors N] \
         [--announce-every S] [--seconds S] [--stats FILE]\n\
         \x20      aoe-inject IFACE SHELF.SLOT --config-flood N [--rate N] [--stats FILE]",
        INJECT_KINDS.join(","),
        EXPLICIT_KINDS.join(",")
    );
    std::process::exit(2);
}

/// What `--respond` claims.
struct Respond {
    macs: u8,
    bufcnt: u16,
    scnt: u8,
    sectors: u64,
    announce_every: f64,
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
    respond: Option<Respond>,
    flood: u32,
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
        respond: None,
        flood: 0,
    };
    let mut seconds_given = false;
    let mut r = Respond { macs: 1, bufcnt: 16, scnt: 17, sectors: 1 << 22, announce_every: 1.0 };
    let mut respond = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> T {
            v.parse().unwrap_or_else(|_| usage(&format!("bad {name}")))
        }
        match arg.as_str() {
            "--respond" => respond = true,
            "--claim-macs" => {
                r.macs = num("--claim-macs", val("--claim-macs"));
                if r.macs == 0 {
                    usage("--claim-macs must be 1 to 255");
                }
            }
            "--bufcnt" => r.bufcnt = num("--bufcnt", val("--bufcnt")),
            "--scnt" => r.scnt = num("--scnt", val("--scnt")),
            "--sectors" => r.sectors = num("--sectors", val("--sectors")),
            "--announce-every" => {
                r.announce_every = num("--announce-every", val("--announce-every"));
                if r.announce_every.is_nan() || r.announce_every <= 0.0 {
                    usage("--announce-every must be positive");
                }
            }
            "--config-flood" => a.flood = num("--config-flood", val("--config-flood")),
            "--seconds" => {
                seconds_given = true;
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
    if respond {
        if !seconds_given {
            a.seconds = 3600.0;
        }
        a.respond = Some(r);
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
    lba: u64,
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
        if n < ATA_HDR_LEN {
            continue;
        }
        let Ok(f) = Frame::new_checked(&buf[..n]) else { continue };
        let tag = f.tag();
        if f.version() != AOE_VERSION
            || f.command() != Command::Ata.to_u8()
            || f.shelf() != shelf
            || f.slot() != slot
            || aoefs::wire::is_user_tool_tag(tag)
        {
            continue;
        }
        let src = f.src();
        let mut g = seen.lock().unwrap();
        if pkttype != libc::PACKET_OUTGOING && !f.is_response() {
            // A request from the initiator.
            if g.initiator.is_none() && !src.is_multicast() {
                g.initiator = Some(src);
            }
            let r = Req {
                tag,
                aflags: f.aflags(),
                count: f.sector_count(),
                cmd: f.cmd_status(),
                lba: f.lba(),
                seen: Instant::now(),
                answered: false,
            };
            g.requests_seen += 1;
            g.reqs.push_back(r);
            g.by_tag.insert(tag, r);
            while g.reqs.len() > MAX_REQS {
                let old = g.reqs.pop_front().unwrap();
                if g.by_tag.get(&old.tag).is_some_and(|x| x.seen == old.seen) {
                    g.by_tag.remove(&old.tag);
                }
            }
        } else if pkttype == libc::PACKET_OUTGOING
            && f.flags() == FLAG_RESPONSE
            && src == me
            && g.by_tag.contains_key(&tag)
        {
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
            g.replies.push_back((now, f.as_bytes().to_vec()));
            while g.replies.len() > MAX_REPLIES {
                g.replies.pop_front();
            }
        }
    }
    Ok(())
}

/// An ATA response to `r` from `src` about `shelf.slot`: AoE version 1, no
/// error, status DRDY, followed by `data` bytes of 0xEE. Kinds that damage
/// it do so afterwards through `Frame` setters.
fn ata_frame(dst: Mac, src: Mac, shelf: u16, slot: u8, r: &Req, data: usize) -> Vec<u8> {
    let repr = Repr {
        header: Header { dst, src, response: true, error: None, shelf, slot, tag: r.tag },
        body: Body::Ata(AtaRepr {
            aflags: r.aflags,
            err_feature: 0,
            sector_count: r.count,
            cmd_status: ATA_STATUS_DRDY,
            lba: r.lba,
            data: &[],
        }),
    };
    let mut f = vec![0u8; ATA_HDR_LEN];
    repr.emit(&mut f).expect("an ATA header fits its length");
    f.resize(ATA_HDR_LEN + data, 0xEE);
    f
}

/// A plausible successful ATA reply to `r` (0xEE data for reads).
fn ata_reply(dst: Mac, src: Mac, shelf: u16, slot: u8, r: &Req, mtu: usize) -> Vec<u8> {
    let data = if r.cmd == ATA_IDENTIFY {
        SECTOR
    } else if r.aflags & AFLAG_WRITE == 0 {
        r.count as usize * SECTOR
    } else {
        0
    };
    ata_frame(dst, src, shelf, slot, r, data.min(mtu.saturating_sub(ATA_HDR_LEN)))
}

/// An AoE error reply to `r` from `src` (code `code`), echoing the ATA header
/// as vblade does, with `status` in the status register.
fn error_reply(dst: Mac, src: Mac, c: &Ctx, r: &Req, code: u8, status: u8) -> Vec<u8> {
    let mut f = ata_frame(dst, src, c.shelf, c.slot, r, 0);
    let mut v = Frame::new_unchecked(&mut f[..]);
    v.set_flags(FLAG_RESPONSE | FLAG_ERROR);
    v.set_error_code(code);
    v.set_cmd_status(status);
    pad60(f)
}

/// Readdresses a captured frame to `dst`.
fn set_dst(f: &mut [u8], dst: Mac) {
    Frame::new_unchecked(f).set_dst(dst);
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
        return Some(error_reply(init, c.me, c, &r, c.error, r.cmd));
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
    let mtu_frame = c.mtu + ETH_HDR_LEN;
    Some(match kind {
        "foreign-mac" => {
            let r = live()?;
            pad60(ata_reply(init, c.foreign, c.shelf, c.slot, &r, c.mtu))
        }
        "foreign-error" => {
            let r = live()?;
            error_reply(init, c.foreign, c, &r, 3, ATA_STATUS_DRDY)
        }
        "wrong-target" => {
            let r = live()?;
            let (shelf, slot) = if rng.below(2) == 0 { (c.shelf ^ 0x2000, c.slot) } else { (c.shelf, c.slot ^ 0x40) };
            pad60(ata_reply(init, c.me, shelf, slot, &r, c.mtu))
        }
        "stale-tag" => {
            let mut f = stale(rng)?;
            set_dst(&mut f, init);
            f
        }
        "unknown-tag" => {
            let lba = rng.next_u64() & 0xFF_FFFF;
            let r = Req {
                // The last slot and generation of the initiator's ATA tags:
                // never issued by a test's short run with a small window.
                tag: 0x3FFF_FFFF,
                aflags: AFLAG_EXT,
                count: 2,
                cmd: ATA_READ_EXT,
                lba,
                seen: now,
                answered: false,
            };
            pad60(ata_reply(init, c.me, c.shelf, c.slot, &r, c.mtu))
        }
        "truncated" => {
            if rng.below(2) == 0 {
                if let Some(mut f) = stale(rng) {
                    set_dst(&mut f, init);
                    let cut = ETH_HDR_LEN + rng.below((f.len() - ETH_HDR_LEN) as u64) as usize;
                    f.truncate(cut);
                    return Some(f);
                }
            }
            let r = live()?;
            let mut f = ata_reply(init, c.foreign, c.shelf, c.slot, &r, c.mtu);
            let cut = ETH_HDR_LEN + rng.below((f.len() - ETH_HDR_LEN) as u64) as usize;
            f.truncate(cut);
            f
        }
        "oversized" => {
            let mut f = if rng.below(2) == 0 {
                match stale(rng) {
                    Some(f) => f,
                    None => {
                        let r = live()?;
                        ata_reply(init, c.foreign, c.shelf, c.slot, &r, c.mtu)
                    }
                }
            } else {
                let r = live()?;
                ata_reply(init, c.foreign, c.shelf, c.slot, &r, c.mtu)
            };
            set_dst(&mut f, init);
            let room = mtu_frame.saturating_sub(f.len());
            let extra = 1 + rng.below(room.max(1) as u64) as usize;
            f.resize((f.len() + extra).min(mtu_frame), 0xEE);
            f
        }
        "bad-version" => {
            let r = live()?;
            let ver = [0u8, 2, 15][rng.below(3) as usize];
            let mut f = ata_reply(init, c.me, c.shelf, c.slot, &r, c.mtu);
            Frame::new_unchecked(&mut f[..]).set_version(ver);
            pad60(f)
        }
        "user-tool-tag" => {
            let r = live()?;
            let mut f = ata_reply(init, c.me, c.shelf, c.slot, &r, c.mtu);
            Frame::new_unchecked(&mut f[..]).set_tag(r.tag | aoefs::wire::TAG_USER_TOOLS);
            pad60(f)
        }
        "garbage" => {
            let len = ETH_HDR_LEN + rng.below((mtu_frame - ETH_HDR_LEN) as u64) as usize;
            let mut buf = vec![0u8; len];
            for b in buf.iter_mut() {
                *b = rng.next_u64() as u8;
            }
            let mut f = Frame::new_unchecked(&mut buf[..]);
            f.set_dst(init);
            // A random unicast source that is not the target.
            let mut src = f.src();
            src.0[0] &= 0xfe;
            if src == c.me {
                src.0[5] ^= 1;
            }
            f.set_src(src);
            f.set_ethertype(ETHERTYPE_AOE);
            if len >= AOE_HDR_LEN && rng.below(2) == 0 {
                // Plausible header: version 1 response for our target.
                f.set_version(AOE_VERSION);
                f.set_flags(FLAG_RESPONSE);
                f.set_error_code(0);
                f.set_shelf(c.shelf);
                f.set_slot(c.slot);
                f.set_command(rng.below(4) as u8);
                f.set_tag(f.tag() & !aoefs::wire::TAG_USER_TOOLS);
            }
            buf
        }
        _ => unreachable!(),
    })
}

fn fail(what: &str, e: io::Error) -> ! {
    eprintln!("aoe-inject: {what}: {e}");
    std::process::exit(1)
}

/// Writes the counters to stderr and `--stats`.
fn write_stats(a: &Args, text: &str) {
    eprint!("{text}");
    if let Some(p) = &a.stats {
        let _ = std::fs::write(p, text);
    }
}

/// The MACs `--respond` claims the target from.
fn claimed_macs(me: Mac, n: u8) -> Vec<Mac> {
    std::iter::once(me).chain((1..n).map(|k| Mac([0x02, 0xee, 0xee, 0xee, me.0[5], k]))).collect()
}

/// `--respond`: a host claiming SHELF.SLOT that answers everything sent to it.
fn respond(a: &Args, r: &Respond, me: Mac) {
    let sock = RawSocket::open(
        &a.iface,
        RawOptions { receive: Receive::Aoe, promiscuous: true, rcvbuf: 8 << 20, ..Default::default() },
    )
    .unwrap_or_else(|e| fail(&a.iface, e));
    let macs = claimed_macs(me, r.macs);
    let cfg = SimConfig { buffer_count: r.bufcnt, max_sectors: r.scnt, ..SimConfig::new(a.shelf, a.slot, me) };
    let mut model = SimModel::new(cfg, Backing::Junk { sectors: r.sectors, byte: 0xEE });
    let deadline = Instant::now() + Duration::from_secs_f64(a.seconds);
    let every = Duration::from_secs_f64(r.announce_every);
    let mut next_announce = Instant::now();
    let (mut announcements, mut other, mut broadcasts) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 65536];
    eprintln!(
        "aoe-inject: ready on {}: responding as e{}.{} from {}",
        a.iface,
        a.shelf,
        a.slot,
        macs.iter().map(|m| m.hex12()).collect::<Vec<_>>().join(",")
    );
    while !STOP.load(Ordering::Relaxed) && Instant::now() < deadline {
        if Instant::now() >= next_announce {
            next_announce += every;
            for &m in &macs {
                model.cfg.mac = m;
                if sock.send(&pad60(model.announcement())).is_ok() {
                    announcements += 1;
                }
            }
        }
        let Some((n, _)) = sock.recv(&mut buf, 20).unwrap_or_else(|e| fail("receive", e)) else { continue };
        let Ok(f) = Frame::new_checked(&buf[..n]) else { continue };
        let dst = f.dst();
        if f.is_response() || !(dst == Mac::BROADCAST || macs.contains(&dst)) {
            continue;
        }
        broadcasts += u64::from(dst == Mac::BROADCAST);
        let before = model.counters;
        let answerers = if dst == Mac::BROADCAST { macs.clone() } else { vec![dst] };
        for m in answerers {
            model.cfg.mac = m;
            // Announced with --scnt, but takes any command (it answers
            // whatever it receives).
            model.cfg.max_sectors = if f.command() == Command::Ata.to_u8() { 255 } else { r.scnt };
            if let Some(reply) = model.handle(&buf[..n]) {
                let _ = sock.send(&pad60(reply));
            }
        }
        if model.counters == before {
            other += 1;
        }
    }
    let c = model.counters;
    let text = format!(
        "macs {}\nannouncements {announcements}\nrequests {}\nbroadcasts {broadcasts}\nconfig_queries {}\n\
         identifies {}\nreads {}\nwrites {}\nbytes_written {}\nother {other}\n",
        macs.iter().map(|m| m.hex12()).collect::<Vec<_>>().join(","),
        c.requests + other,
        c.config_queries,
        c.identifies,
        c.reads,
        c.writes,
        c.bytes_written,
    );
    write_stats(a, &text);
}

/// `--config-flood N`: config responses for N distinct shelf.slot numbers.
fn flood(a: &Args, me: Mac) {
    let sock = RawSocket::open(&a.iface, RawOptions::default()).unwrap_or_else(|e| fail(&a.iface, e));
    let mut model = SimModel::new(SimConfig::new(a.shelf, a.slot, me), Backing::Junk { sectors: 8, byte: 0 });
    eprintln!("aoe-inject: ready on {}: {} config responses from e{}.{} on", a.iface, a.flood, a.shelf, a.slot);
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let start = Instant::now();
    let (mut sent, mut send_errors) = (0u64, 0u64);
    let (mut shelf, mut slot) = (a.shelf, a.slot);
    for i in 0..a.flood {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        let due = start + interval * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        (model.cfg.shelf, model.cfg.slot) = (shelf, slot);
        match sock.send(&pad60(model.announcement())) {
            Ok(()) => sent += 1,
            Err(_) => send_errors += 1,
        }
        // Next shelf.slot, skipping the broadcast numbers.
        slot = if slot >= 254 { 0 } else { slot + 1 };
        if slot == 0 {
            shelf = if shelf >= 0xFFFE { 0 } else { shelf + 1 };
        }
    }
    write_stats(
        a,
        &format!("sent_total {sent}\nsend_errors {send_errors}\nseconds {:.3}\n", start.elapsed().as_secs_f64()),
    );
}

fn main() {
    let a = parse_args();
    stop_on_signals();
    let me = aoefs::sys::net::if_mac(&a.iface).unwrap_or_else(|e| fail(&a.iface, e));
    if let Some(r) = &a.respond {
        return respond(&a, r, me);
    }
    if a.flood > 0 {
        return flood(&a, me);
    }
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
    write_stats(&a, &text);
    match sniff_res {
        Ok(Ok(())) => std::process::exit(0),
        Ok(Err(e)) => fail("receive", e),
        Err(_) => std::process::exit(1),
    }
}
