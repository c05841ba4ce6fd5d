//! Seeded fault injection for frames: drop, duplicate, reorder, delay, hold
//! and corrupt at set rates. Pure logic (no I/O, no clock: time, where a
//! fault needs it, is passed in): the in-memory hub and the test frame
//! forwarder both run frames through it.

use crate::wire::field::{self, Field};
use crate::wire::{Command, ATA_READ, ATA_READ_EXT, ATA_WRITE, ATA_WRITE_EXT, FLAG_RESPONSE};

/// Fault rates, each a probability in 0..=1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultConfig {
    pub drop: f64,
    pub duplicate: f64,
    /// Hold a frame back and release it after the next one.
    pub reorder: f64,
    /// Flip one random bit in the addressing fields (see `CORRUPTIBLE`).
    pub corrupt: f64,
    /// Flip one random bit in the fields that say what an ATA reply means
    /// (see `CORRUPTIBLE_REPLY`); other frames pass untouched.
    pub corrupt_reply: f64,
    /// Hold a frame back for `delay_frames` further frames.
    pub delay: f64,
    pub delay_frames: u32,
    /// Hold a frame back for a time drawn from `hold_ms` (milliseconds,
    /// inclusive range); only with `FaultInjector::apply_at`, which is told
    /// the time.
    pub hold: f64,
    pub hold_ms: (u32, u32),
    /// Drop ATA read and write requests (not IDENTIFY, FLUSH CACHE or
    /// query config): a target whose network answers while its disk hangs.
    pub drop_rw: f64,
    /// Drop every frame longer than this many bytes (0: no limit): a switch
    /// with a smaller MTU than the hosts on either side (a jumbo black hole).
    pub max_len: usize,
}

impl FaultConfig {
    /// Parses `drop=0.05,dup=0.01,reorder=0.02,corrupt=0.001,corrupt_reply=0.01,delay=0.01,delay_frames=8,hold=0.05,hold_ms=20-200,drop_rw=1,max_len=1514`.
    pub fn parse(s: &str) -> Result<FaultConfig, String> {
        let mut c = FaultConfig { delay_frames: 8, hold_ms: (20, 200), ..Default::default() };
        for kv in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| format!("expected key=value: {kv}"))?;
            if k == "delay_frames" {
                c.delay_frames = v.parse().map_err(|_| format!("bad number: {v}"))?;
                continue;
            }
            if k == "max_len" {
                c.max_len = v.parse().map_err(|_| format!("bad number: {v}"))?;
                continue;
            }
            if k == "hold_ms" {
                let (a, b) = v.split_once('-').unwrap_or((v, v));
                let ms = |x: &str| x.trim().parse::<u32>().map_err(|_| format!("bad hold_ms: {v}"));
                c.hold_ms = (ms(a)?, ms(b)?);
                if c.hold_ms.0 > c.hold_ms.1 {
                    return Err(format!("bad hold_ms: {v}"));
                }
                continue;
            }
            let p: f64 = v.parse().map_err(|_| format!("bad rate: {v}"))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("rate out of 0..1: {v}"));
            }
            match k {
                "drop" => c.drop = p,
                "dup" | "duplicate" => c.duplicate = p,
                "reorder" => c.reorder = p,
                "corrupt" => c.corrupt = p,
                "corrupt_reply" => c.corrupt_reply = p,
                "delay" => c.delay = p,
                "hold" => c.hold = p,
                "drop_rw" => c.drop_rw = p,
                _ => return Err(format!("unknown fault: {k}")),
            }
        }
        Ok(c)
    }
}

/// Byte ranges `corrupt` may hit: source MAC and ethertype, shelf, slot,
/// command and tag. Damage there is what makes a frame look like it came
/// from elsewhere or answers something else, and must be rejected.
pub const CORRUPTIBLE: [Field; 2] = [field::SRC.start..field::ETHERTYPE.end, field::SHELF.start..field::TAG.end];

/// Byte ranges `corrupt_reply` may hit in an ATA reply: the AoE version and
/// flags (response, error) and the error code, and the ATA header (flags,
/// error register, sector count, status, LBA): what decides whether a reply
/// reports success, failure or nothing at all. A damaged reply may turn into
/// an error or be dropped, but must never deliver wrong data or acknowledge
/// a write the target did not do. Requests are left alone (a request with a
/// damaged LBA or command makes the target do something else, which no
/// initiator can see), and so are the data bytes: AoE has no checksum of its
/// own and relies on the Ethernet FCS for the whole frame, so a damaged
/// payload is beyond what any initiator can check.
pub const CORRUPTIBLE_REPLY: [Field; 2] = [field::VER_FLAGS..field::ERROR + 1, field::AFLAGS..field::LBA.end];

/// A uniformly chosen byte offset within `fields` (cut at `len`).
fn corrupt_offset(rng: &mut Rng, fields: &[Field], len: usize) -> Option<usize> {
    let n: usize = fields.iter().map(|r| r.end.min(len).saturating_sub(r.start)).sum();
    if n == 0 {
        return None;
    }
    let mut k = rng.below(n as u64) as usize;
    for r in fields {
        let w = r.end.min(len).saturating_sub(r.start);
        if k < w {
            return Some(r.start + k);
        }
        k -= w;
    }
    None
}

/// Whether `f` is an ATA reply (response flag set, command 0).
fn is_ata_reply(f: &[u8]) -> bool {
    f.len() > field::AFLAGS && f[field::VER_FLAGS] & FLAG_RESPONSE != 0 && f[field::COMMAND] == Command::Ata.to_u8()
}

/// Whether `f` is an ATA read or write request.
fn is_rw_request(f: &[u8]) -> bool {
    f.len() > field::CMD_STATUS
        && f[field::VER_FLAGS] & FLAG_RESPONSE == 0
        && f[field::COMMAND] == Command::Ata.to_u8()
        && matches!(f[field::CMD_STATUS], ATA_READ | ATA_READ_EXT | ATA_WRITE | ATA_WRITE_EXT)
}

/// xorshift64*: small, fast, seeded, good enough for fault decisions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// What the injector did, for assertions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounters {
    pub passed: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub delayed: u64,
    /// Held back for a time (`hold`).
    pub held: u64,
    pub corrupted: u64,
    /// ATA replies with a bit flipped in `CORRUPTIBLE_REPLY`.
    pub corrupted_replies: u64,
}

/// Applies faults to a stream of frames.
pub struct FaultInjector {
    pub cfg: FaultConfig,
    rng: Rng,
    /// Frames held back: (frames still to wait, frame).
    held: Vec<(u32, Vec<u8>)>,
    /// Frames held back for a time: (when to release, frame), in order.
    timed: Vec<(u64, Vec<u8>)>,
    pub counters: FaultCounters,
}

impl FaultInjector {
    pub fn new(cfg: FaultConfig, seed: u64) -> FaultInjector {
        FaultInjector {
            cfg,
            rng: Rng::new(seed),
            held: Vec::new(),
            timed: Vec::new(),
            counters: FaultCounters::default(),
        }
    }

    /// Takes one frame; returns the frames to deliver now, in order. Holds
    /// for a time (`hold`) need `apply_at`.
    pub fn apply(&mut self, frame: Vec<u8>) -> Vec<Vec<u8>> {
        self.apply_inner(frame, None)
    }

    /// `apply` at time `now_us` (microseconds on any clock that only moves
    /// forward): a frame picked for `hold` is kept until `release(now)` is
    /// called at or after its time. Frames due by `now_us` come out too.
    pub fn apply_at(&mut self, frame: Vec<u8>, now_us: u64) -> Vec<Vec<u8>> {
        let mut out = self.release(now_us);
        out.extend(self.apply_inner(frame, Some(now_us)));
        out
    }

    /// The frames held for a time whose time has come, in order.
    pub fn release(&mut self, now_us: u64) -> Vec<Vec<u8>> {
        let n = self.timed.iter().take_while(|(at, _)| *at <= now_us).count();
        self.timed.drain(..n).map(|(_, f)| f).collect()
    }

    /// When the next frame held for a time is due.
    pub fn next_release(&self) -> Option<u64> {
        self.timed.first().map(|(at, _)| *at)
    }

    fn apply_inner(&mut self, frame: Vec<u8>, now_us: Option<u64>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        // Frames held back age by one frame each time a frame passes.
        let mut i = 0;
        let mut release = Vec::new();
        while i < self.held.len() {
            if self.held[i].0 <= 1 {
                release.push(self.held.remove(i).1);
            } else {
                self.held[i].0 -= 1;
                i += 1;
            }
        }
        let c = self.cfg;
        // (drop_rw draws from the generator only when set, so the other
        // faults of a seed stay as they were.)
        if (c.max_len > 0 && frame.len() > c.max_len)
            || (c.drop_rw > 0.0 && is_rw_request(&frame) && self.rng.chance(c.drop_rw))
            || self.rng.chance(c.drop)
        {
            self.counters.dropped += 1;
        } else {
            let mut f = frame;
            if self.rng.chance(c.corrupt) {
                if let Some(at) = corrupt_offset(&mut self.rng, &CORRUPTIBLE, f.len()) {
                    f[at] ^= 1 << self.rng.below(8);
                    self.counters.corrupted += 1;
                }
            }
            if is_ata_reply(&f) && self.rng.chance(c.corrupt_reply) {
                if let Some(at) = corrupt_offset(&mut self.rng, &CORRUPTIBLE_REPLY, f.len()) {
                    f[at] ^= 1 << self.rng.below(8);
                    self.counters.corrupted_replies += 1;
                }
            }
            let dup = self.rng.chance(c.duplicate);
            let hold = now_us.filter(|_| self.rng.chance(c.hold));
            if let Some(now) = hold {
                self.counters.held += 1;
                let (lo, hi) = c.hold_ms;
                let at = now + 1000 * (lo as u64 + self.rng.below((hi - lo) as u64 + 1));
                let i = self.timed.partition_point(|(t, _)| *t <= at);
                self.timed.insert(i, (at, f.clone()));
            } else if self.rng.chance(c.reorder) {
                self.counters.reordered += 1;
                self.held.push((1, f.clone()));
            } else if self.rng.chance(c.delay) {
                self.counters.delayed += 1;
                self.held.push((c.delay_frames.max(1), f.clone()));
            } else {
                out.push(f.clone());
                self.counters.passed += 1;
            }
            if dup {
                self.counters.duplicated += 1;
                out.push(f);
            }
        }
        out.extend(release);
        out
    }

    /// Releases every frame held for a number of frames (e.g. when
    /// traffic pauses).
    pub fn release_held(&mut self) -> Vec<Vec<u8>> {
        self.held.drain(..).map(|(_, f)| f).collect()
    }

    /// Releases every held frame, the ones held for a time too (at exit).
    pub fn release_all(&mut self) -> Vec<Vec<u8>> {
        let mut out = self.release_held();
        out.extend(self.timed.drain(..).map(|(_, f)| f));
        out
    }

    /// Frames held for a number of frames.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rates() {
        let c = FaultConfig::parse("drop=0.05, dup=0.01,reorder=0.02,corrupt=0.001,delay=0.1,delay_frames=4").unwrap();
        assert_eq!(c.drop, 0.05);
        assert_eq!(c.duplicate, 0.01);
        assert_eq!(c.delay_frames, 4);
        assert_eq!(FaultConfig::parse("corrupt_reply=0.5").unwrap().corrupt_reply, 0.5);
        let c = FaultConfig::parse("hold=0.25,hold_ms=20-200").unwrap();
        assert_eq!((c.hold, c.hold_ms), (0.25, (20, 200)));
        assert_eq!(FaultConfig::parse("hold_ms=50").unwrap().hold_ms, (50, 50));
        assert!(FaultConfig::parse("hold_ms=200-20").is_err());
        assert!(FaultConfig::parse("drop=2").is_err());
        assert!(FaultConfig::parse("bogus=0.1").is_err());
        assert!(FaultConfig::parse("drop").is_err());
    }

    #[test]
    fn a_switch_mtu_drops_long_frames_and_a_hung_disk_drops_reads_and_writes_only() {
        let c = FaultConfig::parse("max_len=1514,drop_rw=1").unwrap();
        assert_eq!((c.max_len, c.drop_rw), (1514, 1.0));
        let mut f = FaultInjector::new(c, 1);
        let frame = |len: usize, response: bool, command: Command, ata: u8| {
            let mut b = vec![0u8; len];
            b[field::VER_FLAGS] = 0x10 | if response { FLAG_RESPONSE } else { 0 };
            b[field::COMMAND] = command.to_u8();
            b[field::CMD_STATUS] = ata;
            b
        };
        // Long frames of any kind are dropped, frames of 1514 bytes pass.
        assert!(f.apply(frame(1515, true, Command::Ata, 0x40)).is_empty());
        assert_eq!(f.apply(frame(1514, true, Command::Ata, 0x40)).len(), 1);
        // Read and write requests are dropped; IDENTIFY, FLUSH CACHE, query
        // config and every reply pass.
        for cmd in [ATA_READ, ATA_READ_EXT, ATA_WRITE, ATA_WRITE_EXT] {
            assert!(f.apply(frame(60, false, Command::Ata, cmd)).is_empty(), "{cmd:#x}");
        }
        for (response, command, ata) in [
            (false, Command::Ata, crate::wire::ATA_IDENTIFY),
            (false, Command::Ata, crate::wire::ATA_FLUSH),
            (false, Command::QueryConfig, ATA_READ),
            (true, Command::Ata, ATA_READ_EXT),
        ] {
            assert_eq!(f.apply(frame(60, response, command, ata)).len(), 1, "{command:?} {ata:#x}");
        }
        assert_eq!(f.counters.dropped, 5);
    }

    #[test]
    fn no_faults_is_identity() {
        let mut f = FaultInjector::new(FaultConfig::default(), 1);
        for i in 0..100u8 {
            assert_eq!(f.apply(vec![i; 20]), vec![vec![i; 20]]);
        }
    }

    #[test]
    fn rates_are_roughly_honoured_and_nothing_is_lost_but_drops() {
        let cfg = FaultConfig {
            drop: 0.05,
            duplicate: 0.01,
            reorder: 0.02,
            corrupt: 0.0,
            delay: 0.0,
            delay_frames: 4,
            ..Default::default()
        };
        let mut f = FaultInjector::new(cfg, 42);
        let n = 100_000u32;
        let mut seen = std::collections::HashMap::new();
        for i in 0..n {
            for fr in f.apply(i.to_be_bytes().repeat(5)) {
                *seen.entry(fr).or_insert(0u32) += 1;
            }
        }
        for fr in f.release_held() {
            *seen.entry(fr).or_insert(0u32) += 1;
        }
        let c = f.counters;
        assert!((4000..6000).contains(&c.dropped), "{c:?}");
        assert!((700..1300).contains(&c.duplicated), "{c:?}");
        assert!((1500..2500).contains(&c.reordered), "{c:?}");
        let delivered: u32 = seen.values().sum();
        assert_eq!(delivered as u64, n as u64 - c.dropped + c.duplicated);
    }

    #[test]
    fn same_seed_same_faults() {
        let cfg = FaultConfig {
            drop: 0.3,
            duplicate: 0.1,
            reorder: 0.1,
            corrupt: 0.1,
            delay: 0.1,
            delay_frames: 3,
            ..Default::default()
        };
        let run = |seed| {
            let mut f = FaultInjector::new(cfg, seed);
            (0..500u32).flat_map(|i| f.apply(i.to_be_bytes().repeat(8))).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn corruption_flips_one_bit_in_the_addressing_fields() {
        let cfg = FaultConfig { corrupt: 1.0, ..Default::default() };
        let mut f = FaultInjector::new(cfg, 3);
        let orig = vec![0u8; 64];
        let mut hit = std::collections::HashSet::new();
        for _ in 0..2000 {
            let out = f.apply(orig.clone());
            let diff: Vec<usize> = (0..64).filter(|&i| out[0][i] != orig[i]).collect();
            assert_eq!(diff.len(), 1);
            assert!(CORRUPTIBLE.iter().any(|r| r.contains(&diff[0])), "{}", diff[0]);
            assert_eq!((out[0][diff[0]] ^ orig[diff[0]]).count_ones(), 1);
            hit.insert(diff[0]);
        }
        assert_eq!(hit.len(), 16, "every corruptible byte gets hit");
    }

    #[test]
    fn reply_corruption_flips_one_bit_in_the_meaning_fields_of_ata_replies_only() {
        let cfg = FaultConfig { corrupt_reply: 1.0, ..Default::default() };
        let mut f = FaultInjector::new(cfg, 4);
        let frame = |flags: u8, cmd: u8| {
            let mut v = vec![0u8; 60];
            v[field::VER_FLAGS] = 0x10 | flags;
            v[field::COMMAND] = cmd;
            v
        };
        let reply = frame(FLAG_RESPONSE, 0);
        let mut hit = std::collections::HashSet::new();
        for _ in 0..2000 {
            let out = f.apply(reply.clone());
            let diff: Vec<usize> = (0..60).filter(|&i| out[0][i] != reply[i]).collect();
            assert_eq!(diff.len(), 1);
            assert!(CORRUPTIBLE_REPLY.iter().any(|r| r.contains(&diff[0])), "{}", diff[0]);
            assert_eq!((out[0][diff[0]] ^ reply[diff[0]]).count_ones(), 1);
            hit.insert(diff[0]);
        }
        assert_eq!(hit.len(), 12, "every byte of the reply's meaning fields gets hit");
        assert_eq!(f.counters.corrupted_replies, 2000);
        // Requests and config replies pass untouched.
        for other in [frame(0, 0), frame(FLAG_RESPONSE, 1)] {
            assert_eq!(f.apply(other.clone()), vec![other]);
        }
        assert_eq!(f.counters.corrupted_replies, 2000);
    }
}

#[cfg(test)]
mod hold_tests {
    use super::*;

    #[test]
    fn held_frames_come_out_at_their_time_and_in_time_order() {
        let cfg = FaultConfig { hold: 0.5, hold_ms: (20, 200), ..Default::default() };
        let mut f = FaultInjector::new(cfg, 5);
        let mut out = Vec::new();
        for i in 0..1000u32 {
            let now = i as u64 * 1000;
            for fr in f.apply_at(i.to_be_bytes().to_vec(), now) {
                out.push((now, u32::from_be_bytes(fr[..4].try_into().unwrap())));
            }
        }
        let c = f.counters;
        assert!((400..600).contains(&c.held), "{c:?}");
        // Nothing comes out before 20 ms or after 200 ms (+ the 1 ms step).
        for &(at, i) in &out {
            let sent = i as u64 * 1000;
            assert!(at == sent || (sent + 20_000..=sent + 201_000).contains(&at), "frame {i} sent {sent} out {at}");
        }
        let rest = f.release_all().len();
        assert_eq!(out.len() + rest, 1000, "nothing lost");
        assert!(f.next_release().is_none());
        // Without a time, no frame is held for one.
        let mut g = FaultInjector::new(cfg, 5);
        assert!((0..100u8).all(|i| g.apply(vec![i; 20]).len() == 1));
    }
}
