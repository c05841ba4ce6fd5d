// Round-trip and robustness tests for the wire module, built on real frames
// captured from vblade 25 on a veth pair (MTU 1500) between two network
// namespaces, read from the .pcap files in tests/data/captures (how they were
// captured: the README.md there). No tshark needed.
//
// Initiator MAC 02:00:00:00:0a:01, vblade MAC 02:00:00:00:0b:01, target e0.1,
// backing file 1 MiB (2048 sectors). Every tag the initiator sent has bit 31 set.
//
// vblade-b16.pcap (default buffer count 16), by index; a request comes just
// before its reply:
//   0 announcement (tag 0, version nibble 0)      1, 2 broadcast query config
//   3, 4 IDENTIFY                                 5, 6 READ EXT 2 @4 (zeros)
//   7, 8 WRITE EXT 2 @4 (pattern; 60-byte reply)  9, 10 READ EXT 2 @4 (pattern)
//   11, 12 FLUSH CACHE                            13, 14 FLUSH CACHE EXT (ABRT)
//   15, 16 READ EXT 1 @2048 (past end: IDNF)      17, 18 MAC mask read
//   19, 20 reserve read                           21, 22 READ EXT 3 sectors (AoE error 2)
//   23, 24 LBA28 READ 1 @4                        25, 26 unknown command 9 (AoE error 1)
// vblade-b4.pcap (-b 4):
//   0 announcement                                1, 2 broadcast query config
//   3, 4 unicast query config                     5, 6 config SET "aoefs capture config string v1"
//   7, 8 config read (with string)                9, 10 config SET "other" (AoE error 4)
//   11, 12 config test-prefix "aoefs" (broadcast) 13, 14 IDENTIFY

use super::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

static B16_PCAP: &[u8] = include_bytes!("../../tests/data/captures/vblade-b16.pcap");
static B4_PCAP: &[u8] = include_bytes!("../../tests/data/captures/vblade-b4.pcap");

/// The frames of a classic libpcap file (either byte order, Ethernet), in
/// capture order.
fn pcap_frames(file: &[u8]) -> Vec<&[u8]> {
    let u32_at: fn(&[u8]) -> u32 = match file[..4] {
        // Microsecond or nanosecond timestamps, written little- or big-endian.
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => |b| u32::from_le_bytes(b[..4].try_into().unwrap()),
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => |b| u32::from_be_bytes(b[..4].try_into().unwrap()),
        _ => panic!("not a pcap file"),
    };
    assert_eq!(u32_at(&file[20..24]), 1, "link type Ethernet");
    let mut off = 24;
    let mut out = Vec::new();
    while off < file.len() {
        let rec = &file[off..off + 16];
        let (incl, orig) = (u32_at(&rec[8..12]) as usize, u32_at(&rec[12..16]) as usize);
        assert_eq!(incl, orig, "capture was sliced");
        off += 16;
        out.push(&file[off..off + incl]);
        off += incl;
    }
    out
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const INI: Mac = Mac([0x02, 0, 0, 0, 0x0a, 0x01]);
const TGT: Mac = Mac([0x02, 0, 0, 0, 0x0b, 0x01]);
/// vblade 25 reports firmware version 0x4019 (= 16409).
const VBLADE_FW: u16 = 0x4019;
const CFG_STRING: &[u8] = b"aoefs capture config string v1";
const TAG_BIT31: u32 = 0x8000_0000;

/// Frame `i` of vblade-b16.pcap.
fn b16(i: usize) -> Vec<u8> {
    pcap_frames(B16_PCAP)[i].to_vec()
}
/// Frame `i` of vblade-b4.pcap.
fn b4(i: usize) -> Vec<u8> {
    pcap_frames(B4_PCAP)[i].to_vec()
}

/// Every captured frame with a name.
fn all_frames() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for (name, file) in [("b16", B16_PCAP), ("b4", B4_PCAP)] {
        for (i, f) in pcap_frames(file).into_iter().enumerate() {
            v.push((format!("{name}[{i}]"), f.to_vec()));
        }
    }
    v
}

/// The data pattern send.py wrote: byte i = i*7 + 3.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn parse_ok(b: &[u8]) -> Repr<'_> {
    match Repr::parse(b) {
        Ok(r) => r,
        Err(e) => panic!("parse failed: {e:?} for {}", hexs(b)),
    }
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ata<'a>(r: &Repr<'a>) -> AtaRepr<'a> {
    match r.body {
        Body::Ata(a) => a,
        ref b => panic!("not ATA: {b:?}"),
    }
}
fn cfg<'a>(r: &Repr<'a>) -> ConfigRepr<'a> {
    match r.body {
        Body::Config(c) => c,
        ref b => panic!("not config: {b:?}"),
    }
}

/// A request header from INI to TGT.
fn ata_header(shelf: u16, slot: u8, tag: u32, aflags: u8, sector_count: u8, cmd: u8, lba: u64) -> AtaHeader {
    AtaHeader { dst: TGT, src: INI, shelf, slot, tag, aflags, sector_count, cmd, lba }
}

fn emit_vec(r: &Repr<'_>) -> Vec<u8> {
    let mut out = vec![0u8; r.buffer_len()];
    let n = r.emit(&mut out).expect("emit");
    assert_eq!(n, r.buffer_len());
    out
}

/// The crate's seeded PRNG, with the helpers these tests use.
struct XorShift(crate::link::fault::Rng);
impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(crate::link::fault::Rng::new(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The minimum length a frame with this (complete) header needs, from its
/// header fields alone, or None when the header itself is rejected.
fn needed_len(b: &[u8]) -> Option<usize> {
    if b.len() < AOE_HDR_LEN || u16::from_be_bytes([b[12], b[13]]) != ETHERTYPE_AOE || b[14] >> 4 != 1 || b[19] > 3 {
        return None;
    }
    if b[14] & FLAG_ERROR != 0 {
        return Some(AOE_HDR_LEN);
    }
    Some(match b[19] {
        0 => ATA_HDR_LEN,
        1 => {
            if b.len() < CFG_HDR_LEN {
                CFG_HDR_LEN
            } else {
                CFG_HDR_LEN + u16::from_be_bytes([b[30], b[31]]) as usize
            }
        }
        2 => {
            if b.len() < 28 {
                28
            } else {
                28 + 8 * b[27] as usize
            }
        }
        _ => {
            if b.len() < 26 {
                26
            } else {
                26 + 6 * b[25] as usize
            }
        }
    })
}

/// Parses `b` behind catch_unwind and checks everything that must hold for
/// any input. Returns a description of the first violation.
fn check_any_input(b: &[u8]) -> std::result::Result<(), String> {
    let parsed = catch_unwind(AssertUnwindSafe(|| Repr::parse(b)));
    let parsed = match parsed {
        Ok(p) => p,
        Err(_) => return Err(format!("Repr::parse panicked on {}", hexs(b))),
    };
    if b.len() < AOE_HDR_LEN && parsed != Err(WireError::Truncated) {
        return Err(format!("short frame ({} bytes) gave {parsed:?}", b.len()));
    }
    if b.len() >= AOE_HDR_LEN {
        let et = u16::from_be_bytes([b[12], b[13]]);
        if et != ETHERTYPE_AOE && parsed != Err(WireError::NotAoe) {
            return Err(format!("ethertype {et:04x} gave {parsed:?}"));
        }
    }
    if let Some(need) = needed_len(b) {
        let cfg_too_long = b[19] == 1
            && b[14] & FLAG_ERROR == 0
            && b.len() >= CFG_HDR_LEN
            && u16::from_be_bytes([b[30], b[31]]) as usize > MAX_CONFIG_LEN;
        if cfg_too_long {
            if parsed != Err(WireError::BadField("config string length")) {
                return Err(format!("config length > 1024 gave {parsed:?}"));
            }
        } else if b.len() < need && parsed != Err(WireError::Truncated) {
            return Err(format!("{} bytes < needed {need} gave {parsed:?}: {}", b.len(), hexs(b)));
        } else if b.len() >= need && parsed.is_err() {
            return Err(format!("complete frame gave {parsed:?}: {}", hexs(b)));
        }
    }
    let repr = match parsed {
        Ok(r) => r,
        Err(_) => {
            check_identify_any(b)?;
            return Ok(());
        }
    };
    // Re-emit must not panic, must give the documented length and reproduce
    // the input except for the bits the Repr deliberately drops.
    let emitted = catch_unwind(AssertUnwindSafe(|| {
        let mut out = vec![0u8; repr.buffer_len()];
        let n = repr.emit(&mut out);
        (n, out)
    }));
    let (n, out) = match emitted {
        Ok(x) => x,
        Err(_) => return Err(format!("emit panicked for {repr:?}")),
    };
    let n = n.map_err(|e| format!("emit of parsed {repr:?} failed: {e:?}"))?;
    if n != repr.buffer_len() || n > b.len() {
        return Err(format!("emit length {n}, buffer_len {}, input {}", repr.buffer_len(), b.len()));
    }
    let mut exp = b[..n].to_vec();
    exp[14] &= 0xF0 | FLAG_RESPONSE | FLAG_ERROR;
    if exp[14] >> 4 == 0 {
        // vblade's version-0 announcement is accepted and re-emitted as version 1.
        exp[14] |= AOE_VERSION << 4;
    }
    if repr.header.error.is_none() {
        exp[15] = 0;
    }
    match &repr.body {
        Body::Ata(_) => {
            exp[34] = 0;
            exp[35] = 0;
        }
        Body::MacMask(m) => {
            exp[24] = 0;
            for i in 0..m.directives.len() {
                exp[28 + 8 * i] = 0;
            }
        }
        _ => {}
    }
    if out != exp {
        return Err(format!("re-emit differs:\n in  {}\n out {}", hexs(&exp), hexs(&out)));
    }
    // Parsing what we emitted gives the same Repr back.
    match Repr::parse(&out) {
        Ok(r2) if r2 == repr => {}
        other => return Err(format!("reparse gave {other:?}, want {repr:?}")),
    }
    if let Body::Ata(a) = repr.body {
        check_identify_any(a.data)?;
    }
    Ok(())
}

fn check_identify_any(b: &[u8]) -> std::result::Result<(), String> {
    let r = catch_unwind(AssertUnwindSafe(|| Identify::parse(b)));
    match r {
        Err(_) => Err(format!("Identify::parse panicked on {}", hexs(b))),
        Ok(Err(WireError::Truncated)) if b.len() < 512 => Ok(()),
        Ok(Ok(_)) if b.len() >= 512 => Ok(()),
        Ok(other) => Err(format!("Identify::parse of {} bytes gave {other:?}", b.len())),
    }
}

fn run_all(inputs: impl IntoIterator<Item = (String, Vec<u8>)>) {
    let mut failures = Vec::new();
    let mut count = 0usize;
    for (name, b) in inputs {
        count += 1;
        if let Err(e) = check_any_input(&b) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(count > 0);
    assert!(
        failures.is_empty(),
        "{} of {count} inputs failed; first ones:\n{}",
        failures.len(),
        failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------
// The captures themselves
// ---------------------------------------------------------------------------

#[test]
fn captures_hold_the_frames_these_tests_expect() {
    let b16_lens = [
        32, 32, 32, 36, 548, 36, 1060, 1060, 60, 36, 1060, 36, 60, 36, 60, 36, 36, 28, 28, 26, 26, 36, 60, 36, 548, 32,
        32,
    ];
    let b4_lens = [32, 32, 32, 32, 32, 62, 62, 32, 62, 37, 62, 37, 62, 36, 548];
    for (file, lens) in [(B16_PCAP, &b16_lens[..]), (B4_PCAP, &b4_lens[..])] {
        let got: Vec<usize> = pcap_frames(file).iter().map(|f| f.len()).collect();
        assert_eq!(got, lens);
    }
}

#[test]
fn pcap_reader_reads_both_byte_orders() {
    // The same file with every header field written big-endian.
    let le = B4_PCAP;
    let mut be = le.to_vec();
    let swap = |b: &mut [u8], at: usize, n: usize| b[at..at + n].reverse();
    swap(&mut be, 0, 4); // magic
    swap(&mut be, 4, 2); // version major
    swap(&mut be, 6, 2); // version minor
    for at in (8..24).step_by(4) {
        swap(&mut be, at, 4);
    }
    let mut off = 24;
    while off < be.len() {
        let incl = u32::from_le_bytes(le[off + 8..off + 12].try_into().unwrap()) as usize;
        for at in (off..off + 16).step_by(4) {
            swap(&mut be, at, 4);
        }
        off += 16 + incl;
    }
    assert_eq!(&be[..4], &[0xa1, 0xb2, 0xc3, 0xd4]);
    assert_eq!(pcap_frames(&be), pcap_frames(le));
    assert_eq!(pcap_frames(le).len(), 15);
}

#[test]
fn capture_sanity() {
    // Requests come from us with tag bit 31; replies come from vblade with the
    // same tag; nothing but AoE in the captures.
    for file in [B16_PCAP, B4_PCAP] {
        for b in pcap_frames(file).into_iter().skip(1) {
            let f = Frame::new_checked(b).unwrap();
            assert_eq!(f.ethertype(), ETHERTYPE_AOE);
            assert!(f.tag() & TAG_BIT31 != 0, "tag {:#x}", f.tag());
            if f.is_response() {
                assert_eq!(f.src(), TGT);
                assert_eq!(f.dst(), INI);
            } else {
                assert_eq!(f.src(), INI);
                assert!(f.dst() == TGT || f.dst().is_broadcast());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Decoding every captured frame
// ---------------------------------------------------------------------------

#[test]
fn every_captured_frame_parses_and_reemits_exactly() {
    for (name, b) in all_frames() {
        let f = Frame::new_checked(&b[..]).unwrap();
        if f.version() == 0 {
            // vblade's announcement: see `announcement_*`.
            assert!(matches!(Repr::parse(&b), Ok(Repr { body: Body::Config(_), .. })), "{name}");
            continue;
        }
        if f.command() == 9 {
            assert_eq!(Repr::parse(&b), Err(WireError::UnknownCommand(9)), "{name}");
            continue;
        }
        let r = Repr::parse(&b).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(r.header.dst, f.dst(), "{name}");
        assert_eq!(r.header.src, f.src(), "{name}");
        assert_eq!(r.header.tag, f.tag(), "{name}");
        assert_eq!(r.header.shelf, f.shelf(), "{name}");
        assert_eq!(r.header.slot, f.slot(), "{name}");
        assert_eq!(r.header.response, f.is_response(), "{name}");
        assert_eq!(r.command().to_u8(), f.command(), "{name}");
        let out = emit_vec(&r);
        assert!(out.len() <= b.len(), "{name}");
        assert_eq!(hexs(&out), hexs(&b[..out.len()]), "{name}: re-emit differs");
        // What the Repr does not cover: only error replies (body not
        // interpreted) leave a tail; ATA data covers the whole rest.
        let tail = &b[out.len()..];
        if r.header.error.is_none() {
            assert!(tail.is_empty(), "{name}: uncovered tail {}", hexs(tail));
        } else {
            assert_eq!(out.len(), AOE_HDR_LEN, "{name}");
        }
        // And the full check used by the robustness tests agrees.
        check_any_input(&b).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn announcement_is_visible_through_frame_view() {
    // vblade announces itself at start: broadcast, tag 0, response flag, but
    // header version nibble 0 (byte 14 = 0x08). The config body itself says
    // AoE version 1.
    for (b, bufcnt) in [(b16(0), 16u16), (b4(0), 4)] {
        assert_eq!(b.len(), 32);
        let f = Frame::new_checked(&b[..]).unwrap();
        assert!(f.dst().is_broadcast());
        assert_eq!(f.src(), TGT);
        assert_eq!(f.version(), 0);
        assert!(f.is_response());
        assert!(!f.is_error());
        assert_eq!((f.shelf(), f.slot(), f.command(), f.tag()), (0, 1, 1, 0));
        let p = f.payload();
        assert_eq!(u16::from_be_bytes([p[0], p[1]]), bufcnt);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), VBLADE_FW);
        assert_eq!(p[4], 2); // max sectors
        assert_eq!(p[5], 0x10); // AoE version 1, ccmd read
        assert_eq!(&p[6..8], &[0, 0]); // no config string
                                       // The whole-frame parser accepts this one quirk (config response).
        assert!(Repr::parse(&b).is_ok());
    }
}

/// What the Linux aoe driver does (it never checks the header version, and
/// unsolicited config responses count for discovery).
#[test]
fn announcement_parses_as_config_response() {
    let b = b16(0);
    let r = Repr::parse(&b).expect("vblade announcement");
    assert!(r.header.response);
    assert_eq!(r.header.tag, 0);
    let c = cfg(&r);
    assert_eq!((c.buffer_count, c.firmware, c.max_sectors), (16, VBLADE_FW, 2));
}

#[test]
fn query_config_requests() {
    for b in [b16(1), b4(1)] {
        assert_eq!(b.len(), 32);
        let r = parse_ok(&b);
        assert!(r.header.dst.is_broadcast());
        assert_eq!(r.header.src, INI);
        assert!(!r.header.response);
        assert_eq!(r.header.error, None);
        assert_eq!((r.header.shelf, r.header.slot), (SHELF_ALL, SLOT_ALL));
        assert_eq!(r.header.tag, TAG_BIT31 | 1);
        let c = cfg(&r);
        assert_eq!((c.buffer_count, c.firmware, c.max_sectors, c.aoe_version, c.ccmd), (0, 0, 0, 0, CCMD_READ));
        assert!(c.config.is_empty());
    }
    let b = b4(3);
    let r = parse_ok(&b);
    assert_eq!((r.header.dst, r.header.shelf, r.header.slot), (TGT, 0, 1));
}

#[test]
fn query_config_replies_short_frames() {
    // 32-byte replies (not padded to 60) with buffer count 16 and 4.
    for (b, bufcnt, tag) in [(b16(2), 16u16, 1u32), (b4(2), 4, 1), (b4(4), 4, 0x21)] {
        assert_eq!(b.len(), 32, "vblade does not pad its config replies");
        let r = parse_ok(&b);
        assert_eq!(r.header.dst, INI);
        assert_eq!(r.header.src, TGT);
        assert!(r.header.response);
        assert_eq!(r.header.error, None);
        assert_eq!((r.header.shelf, r.header.slot, r.header.tag), (0, 1, TAG_BIT31 | tag));
        let c = cfg(&r);
        assert_eq!(c.buffer_count, bufcnt);
        assert_eq!(c.firmware, VBLADE_FW);
        assert_eq!(c.max_sectors, 2);
        assert_eq!(c.effective_max_sectors(), 2);
        assert_eq!(c.aoe_version, 1);
        assert_eq!(c.ccmd, CCMD_READ);
        assert_eq!(c.config.len(), 0);
        assert_eq!(emit_vec(&r), b);
    }
}

#[test]
fn config_string_set_read_conflict_and_prefix() {
    // SET request (62 bytes, ccmd 3).
    let b = b4(5);
    let r = parse_ok(&b);
    let c = cfg(&r);
    assert_eq!((c.ccmd, c.config), (CCMD_SET, CFG_STRING));
    assert_eq!(emit_vec(&r), b);
    // SET reply: vblade echoes ccmd 3 and the string.
    let b = b4(6);
    let r = parse_ok(&b);
    let c = cfg(&r);
    assert_eq!(b.len(), CFG_HDR_LEN + 30);
    assert_eq!((c.buffer_count, c.firmware, c.ccmd, c.aoe_version), (4, VBLADE_FW, CCMD_SET, 1));
    assert_eq!(c.config.len(), 30);
    assert_eq!(c.config, CFG_STRING);
    // Plain read after the set returns the string.
    let b = b4(8);
    let r = parse_ok(&b);
    assert_eq!(r.header.tag, TAG_BIT31 | 0x23);
    let c = cfg(&r);
    assert_eq!((c.ccmd, c.config), (CCMD_READ, CFG_STRING));
    // SET of another string: AoE error 4, body not interpreted.
    let b = b4(10);
    let r = parse_ok(&b);
    assert_eq!(r.header.error, Some(AoeError::ConfigStringPresent));
    assert_eq!(r.body, Body::Error(Command::QueryConfig));
    assert_eq!(r.header.tag, TAG_BIT31 | 0x24);
    assert_eq!(emit_vec(&r), b[..AOE_HDR_LEN].to_vec());
    // Test-prefix "aoefs" (broadcast) matches: answered with ccmd 2.
    let b = b4(11);
    let r = parse_ok(&b);
    assert_eq!(r.header.shelf, SHELF_ALL);
    assert_eq!(cfg(&r).config, b"aoefs");
    let b = b4(12);
    let r = parse_ok(&b);
    assert_eq!((cfg(&r).ccmd, cfg(&r).config), (CCMD_TEST_PREFIX, CFG_STRING));
}

#[test]
fn identify_reply_decodes() {
    for b in [b16(4), b4(14)] {
        assert_eq!(b.len(), ATA_HDR_LEN + SECTOR);
        let r = parse_ok(&b);
        assert_eq!(r.header.error, None);
        let a = ata(&r);
        assert_eq!(a.cmd_status, ATA_STATUS_DRDY);
        assert_eq!(a.err_feature, 0);
        assert!(!a.failed());
        assert_eq!(a.data.len(), SECTOR);
        let id = Identify::parse(a.data_exact(SECTOR).unwrap()).unwrap();
        assert_eq!(id.sectors, 2048, "1 MiB backing file");
        assert!(id.lba48);
        assert!(id.flush);
        assert!(!id.flush_ext);
        assert_eq!(id.model, "Coraid EtherDrive vblade");
        // vblade puts "shelf.slot:hostname" in the serial; the capture host was "vm".
        assert_eq!(id.serial, "0.1:vm");
        assert_eq!(id.firmware, "V25");
        // Raw words the facts sheet names.
        let w = |i: usize| u16::from_le_bytes([a.data[2 * i], a.data[2 * i + 1]]);
        assert_eq!(w(83), 0x5400);
        assert_eq!((w(60), w(61)), (2048, 0));
        assert_eq!((w(100), w(101), w(102), w(103)), (2048, 0, 0, 0));
        // Identify::emit/parse round trip of what vblade told us.
        let again = Identify::parse(&id.emit()).unwrap();
        assert_eq!(again, id);
        // emit sets the same capability word 83 as vblade.
        let e = id.emit();
        assert_eq!(u16::from_le_bytes([e[166], e[167]]), 0x5400);
    }
}

#[test]
fn ata_read_and_write_replies() {
    // READ EXT of 2 sectors at LBA 4 of the zeroed file.
    let b = b16(6);
    assert_eq!(b.len(), ATA_HDR_LEN + 2 * SECTOR);
    let r = parse_ok(&b);
    let a = ata(&r);
    assert_eq!((a.aflags, a.err_feature, a.cmd_status, a.lba), (AFLAG_EXT, 0, ATA_STATUS_DRDY, 4));
    assert_eq!(a.sector_count, 0, "vblade answers with sector count 0");
    assert!(a.data_exact(2 * SECTOR).unwrap().iter().all(|&x| x == 0));
    // WRITE EXT request carries the pattern.
    let b = b16(7);
    let r = parse_ok(&b);
    let a = ata(&r);
    assert!(a.is_write());
    assert_eq!((a.aflags, a.sector_count, a.cmd_status, a.lba), (AFLAG_EXT | AFLAG_WRITE, 2, ATA_WRITE_EXT, 4));
    assert_eq!(a.data, &pattern(2 * SECTOR)[..]);
    // WRITE reply: 60 bytes; the 24 bytes after the ATA header are not zero
    // padding but stale buffer contents (the start of the written data).
    let b = b16(8);
    assert_eq!(b.len(), 60);
    let r = parse_ok(&b);
    let a = ata(&r);
    assert_eq!((a.aflags, a.cmd_status, a.err_feature, a.lba), (AFLAG_EXT | AFLAG_WRITE, ATA_STATUS_DRDY, 0, 4));
    assert!(!a.failed());
    assert_eq!(a.data.len(), 24);
    assert_eq!(a.data, &pattern(24)[..]);
    assert_eq!(a.data_exact(24).unwrap().len(), 24);
    assert_eq!(a.data_exact(25), Err(WireError::Truncated));
    // READ EXT after the write returns the pattern.
    let b = b16(10);
    let r = parse_ok(&b);
    let a = ata(&r);
    assert_eq!(a.data_exact(2 * SECTOR).unwrap(), &pattern(2 * SECTOR)[..]);
    assert_eq!(emit_vec(&r), b);
}

#[test]
fn ata_flush_and_flush_ext() {
    // FLUSH CACHE: success, 60-byte frame with stale tail. vblade reports
    // status 0x00 here (not 0x40 as for reads/writes): only the failure bits
    // may be checked.
    let b = b16(12);
    let a = ata(&parse_ok(&b));
    assert_eq!((a.cmd_status, a.err_feature, a.failed()), (0x00, 0, false));
    assert_eq!(a.data, &pattern(24)[..]);
    // FLUSH CACHE EXT: ABRT in the ATA registers, no AoE error.
    let b = b16(14);
    let r = parse_ok(&b);
    assert_eq!(r.header.error, None);
    let a = ata(&r);
    assert_eq!(a.cmd_status, 0x41);
    assert_eq!(a.err_feature, ATA_ERR_ABRT);
    assert!(a.failed());
}

#[test]
fn ata_read_past_end_is_idnf_without_aoe_error() {
    let req = b16(15);
    let a = ata(&parse_ok(&req));
    assert_eq!((a.lba, a.sector_count, a.cmd_status), (2048, 1, ATA_READ_EXT));
    let b = b16(16);
    assert_eq!(b.len(), ATA_HDR_LEN, "36-byte reply, no data, no padding");
    let r = parse_ok(&b);
    assert_eq!(r.header.error, None);
    assert!(r.header.response);
    let a = ata(&r);
    assert_eq!((a.cmd_status, a.err_feature, a.sector_count, a.lba), (0x41, ATA_ERR_IDNF, 1, 2048));
    assert!(a.failed());
    assert!(a.data.is_empty());
    assert_eq!(a.data_exact(0), Ok(&[][..]));
    assert_eq!(a.data_exact(SECTOR), Err(WireError::Truncated));
    assert_eq!(emit_vec(&r), b);
}

#[test]
fn ata_too_many_sectors_is_aoe_bad_argument() {
    let req = b16(21);
    let a = ata(&parse_ok(&req));
    assert_eq!(a.sector_count, 3);
    let b = b16(22);
    let r = parse_ok(&b);
    assert!(r.header.response);
    assert_eq!(r.header.error, Some(AoeError::BadArgument));
    assert_eq!(r.header.tag, TAG_BIT31 | 11);
    assert_eq!(r.body, Body::Error(Command::Ata));
    assert_eq!(r.command(), Command::Ata);
    let out = emit_vec(&r);
    assert_eq!(out, b[..AOE_HDR_LEN].to_vec());
    // The uncovered rest is vblade's echo of our ATA header plus stale bytes.
    assert_eq!(&b[24..36], &b16(21)[24..36]);
    assert_eq!(&b[36..], &pattern(24)[..]);
}

#[test]
fn ata_lba28_read() {
    let req = b16(23);
    let a = ata(&parse_ok(&req));
    assert_eq!((a.aflags, a.sector_count, a.cmd_status, a.lba), (0, 1, ATA_READ, 0xE000_0004));
    let b = b16(24);
    let a = ata(&parse_ok(&b));
    assert_eq!((a.aflags, a.cmd_status, a.lba), (0, ATA_STATUS_DRDY, 0xE000_0004));
    assert_eq!(a.data_exact(SECTOR).unwrap(), &pattern(SECTOR)[..], "LBA28 sector 4 = pattern");
}

#[test]
fn mac_mask_and_reserve_read() {
    for (b, resp) in [(b16(17), false), (b16(18), true)] {
        assert_eq!(b.len(), 28);
        let r = parse_ok(&b);
        assert_eq!(r.header.response, resp);
        assert_eq!(r.body, Body::MacMask(MacMaskRepr { mcmd: 0, merror: 0, directives: vec![] }));
        assert_eq!(emit_vec(&r), b);
    }
    for (b, resp) in [(b16(19), false), (b16(20), true)] {
        assert_eq!(b.len(), 26);
        let r = parse_ok(&b);
        assert_eq!(r.header.response, resp);
        assert_eq!(r.body, Body::Reserve(ReserveRepr { rcmd: 0, macs: vec![] }));
        assert_eq!(emit_vec(&r), b);
    }
}

#[test]
fn unknown_command_error_reply() {
    // vblade answers AoE command 9 with error 1 (bad command) and echoes
    // command 9, which Repr cannot represent.
    let b = b16(26);
    let f = Frame::new_checked(&b[..]).unwrap();
    assert!(f.is_response() && f.is_error());
    assert_eq!(AoeError::from_u8(f.error_code()), AoeError::BadCommand);
    assert_eq!(f.command(), 9);
    assert_eq!(Repr::parse(&b), Err(WireError::UnknownCommand(9)));
}

/// Copies every field of `b` through the `Frame` accessors and setters into
/// a buffer of stale bytes: the result must be `b` again.
fn rebuild_through_setters(b: &[u8]) -> Vec<u8> {
    let f = Frame::new_checked(b).unwrap();
    let mut out = vec![0x5Au8; b.len()];
    let mut g = Frame::new_unchecked(&mut out[..]);
    g.set_dst(f.dst());
    g.set_src(f.src());
    g.set_ethertype(f.ethertype());
    g.set_version(f.version());
    g.set_flags(f.flags());
    g.set_error_code(f.error_code());
    g.set_shelf(f.shelf());
    g.set_slot(f.slot());
    g.set_command(f.command());
    g.set_tag(f.tag());
    let rest = match f.command() {
        0 if b.len() >= ATA_HDR_LEN => {
            g.set_aflags(f.aflags());
            g.set_err_feature(f.err_feature());
            g.set_sector_count(f.sector_count());
            g.set_cmd_status(f.cmd_status());
            g.set_lba(f.lba());
            field::ATA_RESERVED.start
        }
        1 if b.len() >= CFG_HDR_LEN => {
            g.set_buffer_count(f.buffer_count());
            g.set_firmware(f.firmware());
            g.set_max_sectors(f.max_sectors());
            g.set_config_version(f.config_version());
            g.set_ccmd(f.ccmd());
            g.set_config_len(f.config_len());
            CFG_HDR_LEN
        }
        2 if b.len() >= MASK_HDR_LEN => {
            g.as_bytes_mut()[field::MASK_RESERVED] = b[field::MASK_RESERVED];
            g.set_mcmd(f.mcmd());
            g.set_merror(f.merror());
            g.set_dir_count(f.dir_count());
            MASK_HDR_LEN
        }
        3 if b.len() >= RESERVE_HDR_LEN => {
            g.set_rcmd(f.rcmd());
            g.set_nmacs(f.nmacs());
            RESERVE_HDR_LEN
        }
        _ => AOE_HDR_LEN,
    };
    out[rest..].copy_from_slice(&b[rest..]);
    out
}

#[test]
fn frame_setters_write_what_accessors_read() {
    for (name, b) in all_frames() {
        assert_eq!(hexs(&rebuild_through_setters(&b)), hexs(&b), "{name}");
    }
    // Each setter writes its own field and nothing else.
    let mut buf = [0u8; ATA_HDR_LEN];
    let mut f = Frame::new_unchecked(&mut buf[..]);
    f.set_version(AOE_VERSION);
    f.set_flags(FLAG_RESPONSE | FLAG_ERROR);
    f.set_lba(0xFFFF_0102_0304_0506);
    f.set_shelf(0xABCD);
    f.set_tag(0x0102_0304);
    f.set_flags(FLAG_RESPONSE);
    assert_eq!(
        (f.version(), f.flags(), f.lba(), f.shelf(), f.tag()),
        (1, FLAG_RESPONSE, 0x0102_0304_0506, 0xABCD, 0x0102_0304)
    );
    assert_eq!(buf[14], 0x18);
    assert_eq!(&buf[16..18], &[0xAB, 0xCD]);
    assert_eq!(&buf[20..24], &[1, 2, 3, 4]);
    assert_eq!(&buf[28..36], &[6, 5, 4, 3, 2, 1, 0, 0]);
    assert_eq!(buf.iter().filter(|&&x| x != 0).count(), 1 + 2 + 4 + 6);
}

// ---------------------------------------------------------------------------
// Emitting requests: byte-identical to what send.py put on the wire
// ---------------------------------------------------------------------------

#[test]
fn ata_header_emit_matches_repr_emit_and_capture() {
    // (frame index in vblade-b16.pcap, lba48?, logical lba, sector count, command)
    let cases: [(usize, bool, u64, u8, u8); 8] = [
        (3, false, 0, 1, ATA_IDENTIFY),
        (5, true, 4, 2, ATA_READ_EXT),
        (7, true, 4, 2, ATA_WRITE_EXT),
        (11, false, 0, 0, ATA_FLUSH),
        (13, true, 0, 0, ATA_FLUSH_EXT),
        (15, true, 2048, 1, ATA_READ_EXT),
        (21, true, 0, 3, ATA_READ_EXT),
        (23, false, 4, 1, ATA_READ),
    ];
    for (idx, lba48, lba, count, cmd) in cases {
        let captured = b16(idx);
        let tag = TAG_BIT31 | (idx as u32 / 2 + 1);
        let (mut aflags, wire_lba) = match cmd {
            // send.py sent IDENTIFY and FLUSH CACHE with aflags 0 and lba 0.
            ATA_IDENTIFY | ATA_FLUSH => (0, 0),
            _ => ata_lba_fields(lba48, lba),
        };
        let data = if cmd == ATA_WRITE_EXT { pattern(count as usize * SECTOR) } else { Vec::new() };
        if !data.is_empty() {
            aflags |= AFLAG_WRITE;
        }
        // Hot path: header + data written in place.
        let mut hot = vec![0xAAu8; ATA_HDR_LEN + data.len()];
        ata_header(0, 1, tag, aflags, count, cmd, wire_lba).emit(&mut hot);
        hot[ATA_HDR_LEN..].copy_from_slice(&data);
        assert_eq!(hexs(&hot), hexs(&captured), "AtaHeader::emit, frame {idx}");
        // Same request through Repr::emit.
        let repr = Repr {
            header: Header { dst: TGT, src: INI, response: false, error: None, shelf: 0, slot: 1, tag },
            body: Body::Ata(AtaRepr {
                aflags,
                err_feature: 0,
                sector_count: count,
                cmd_status: cmd,
                lba: wire_lba,
                data: &data,
            }),
        };
        assert_eq!(emit_vec(&repr), hot, "Repr::emit, frame {idx}");
        assert_eq!(Repr::parse(&captured).unwrap(), repr, "parse, frame {idx}");
    }
}

#[test]
fn repr_emit_reproduces_captured_non_ata_requests() {
    let hdr = |dst: Mac, shelf: u16, slot: u8, tag: u32| Header {
        dst,
        src: INI,
        response: false,
        error: None,
        shelf,
        slot,
        tag,
    };
    let qc = ConfigRepr::query;
    let cases: Vec<(Vec<u8>, Repr<'static>)> = vec![
        (
            b16(1),
            Repr {
                header: hdr(Mac::BROADCAST, SHELF_ALL, SLOT_ALL, TAG_BIT31 | 1),
                body: Body::Config(qc(CCMD_READ, b"")),
            },
        ),
        (b4(3), Repr { header: hdr(TGT, 0, 1, TAG_BIT31 | 0x21), body: Body::Config(qc(CCMD_READ, b"")) }),
        (b4(5), Repr { header: hdr(TGT, 0, 1, TAG_BIT31 | 0x22), body: Body::Config(qc(CCMD_SET, CFG_STRING)) }),
        (b4(9), Repr { header: hdr(TGT, 0, 1, TAG_BIT31 | 0x24), body: Body::Config(qc(CCMD_SET, b"other")) }),
        (
            b4(11),
            Repr {
                header: hdr(Mac::BROADCAST, SHELF_ALL, SLOT_ALL, TAG_BIT31 | 0x25),
                body: Body::Config(qc(CCMD_TEST_PREFIX, b"aoefs")),
            },
        ),
        (
            b16(17),
            Repr {
                header: hdr(TGT, 0, 1, TAG_BIT31 | 9),
                body: Body::MacMask(MacMaskRepr { mcmd: 0, merror: 0, directives: vec![] }),
            },
        ),
        (
            b16(19),
            Repr { header: hdr(TGT, 0, 1, TAG_BIT31 | 10), body: Body::Reserve(ReserveRepr { rcmd: 0, macs: vec![] }) },
        ),
    ];
    for (captured, repr) in cases {
        assert_eq!(hexs(&emit_vec(&repr)), hexs(&captured));
        assert_eq!(Repr::parse(&captured).unwrap(), repr);
    }
}

#[test]
fn ata_lba_fields_lba28_and_lba48() {
    assert_eq!(ata_lba_fields(true, 0), (AFLAG_EXT, 0));
    assert_eq!(ata_lba_fields(true, 4), (AFLAG_EXT, 4));
    assert_eq!(ata_lba_fields(true, 0x0000_FFFF_FFFF_FFFF), (AFLAG_EXT, 0xFFFF_FFFF_FFFF));
    assert_eq!(ata_lba_fields(true, 0x1234_5678_9ABC_DEF0), (AFLAG_EXT, 0x5678_9ABC_DEF0));
    assert_eq!(ata_lba_fields(false, 0), (0, 0xE000_0000));
    assert_eq!(ata_lba_fields(false, 4), (0, 0xE000_0004));
    assert_eq!(ata_lba_fields(false, 0x0FFF_FFFF), (0, 0xEFFF_FFFF));
    assert_eq!(ata_lba_fields(false, 0x1234_5678), (0, 0xE234_5678));
    assert_eq!(ata_lba_fields(false, u64::MAX), (0, 0xEFFF_FFFF));
    // On the wire: byte 31 (lba3) = 0xE0 | lba bits 24..27, bytes 32-33 zero.
    let mut buf = [0u8; ATA_HDR_LEN];
    let (fl, l) = ata_lba_fields(false, 0x0A0B_0C0D);
    ata_header(0, 1, 1, fl, 1, ATA_READ, l).emit(&mut buf);
    assert_eq!(&buf[28..34], &[0x0D, 0x0C, 0x0B, 0xEA, 0, 0]);
    let (fl, l) = ata_lba_fields(true, 0x0102_0304_0506);
    ata_header(0, 1, 1, fl, 1, ATA_READ_EXT, l).emit(&mut buf);
    assert_eq!(buf[24], AFLAG_EXT);
    assert_eq!(&buf[28..34], &[6, 5, 4, 3, 2, 1]);
    // AtaHeader::emit writes every header byte (no stale bytes survive).
    let mut a = [0x00u8; ATA_HDR_LEN];
    let mut b = [0xFFu8; ATA_HDR_LEN];
    let h = ata_header(7, 9, 0xDEAD_BEEF, 0x41, 2, ATA_WRITE_EXT, 99);
    h.emit(&mut a);
    h.emit(&mut b);
    assert_eq!(a, b);
}

#[test]
fn mac_parse_hex12_display() {
    let b = b16(2);
    let f = Frame::new_checked(&b[..]).unwrap();
    let m = f.src();
    assert_eq!(m, TGT);
    assert_eq!(m.hex12(), "020000000b01");
    assert_eq!(m.to_string(), "02:00:00:00:0b:01");
    assert_eq!(format!("{m:?}"), "02:00:00:00:0b:01");
    assert_eq!(Mac::parse("02:00:00:00:0b:01"), Some(m));
    assert_eq!(Mac::parse("02-00-00-00-0B-01"), Some(m));
    assert_eq!(Mac::parse(" 020000000b01\n"), Some(m));
    assert_eq!(Mac::parse(&m.hex12()), Some(m));
    assert_eq!(Mac::parse(&m.to_string()), Some(m));
    assert_eq!(Mac::parse("ff:ff:ff:ff:ff:ff"), Some(Mac::BROADCAST));
    assert!(Mac::BROADCAST.is_broadcast() && Mac::BROADCAST.is_multicast());
    assert!(!m.is_multicast() && !m.is_broadcast());
    for bad in [
        "",
        "02:00:00:00:0b",
        "02:00:00:00:0b:01:02",
        "02:00:00:00:0b:0g",
        "+2:00:00:00:0b:01",
        "é2:00:00:00:0b:0",
        "0x0000000b01",
    ] {
        assert_eq!(Mac::parse(bad), None, "{bad:?}");
    }
    let mut rng = XorShift::new(0x1234_5678_9abc_def1);
    for _ in 0..1000 {
        let m = Mac(std::array::from_fn(|_| rng.byte()));
        assert_eq!(Mac::parse(&m.hex12()), Some(m));
        assert_eq!(Mac::parse(&m.to_string()), Some(m));
        assert_eq!(m.hex12().len(), 12);
    }
    assert_eq!(Mac::from_slice(&b[6..14]), TGT, "from_slice takes the first 6 bytes");
}

// ---------------------------------------------------------------------------
// Robustness: malformed input never panics
// ---------------------------------------------------------------------------

#[test]
fn every_truncation_of_every_frame() {
    let mut inputs = Vec::new();
    for (name, b) in all_frames() {
        for n in 0..=b.len() {
            inputs.push((format!("{name}[..{n}]"), b[..n].to_vec()));
        }
    }
    run_all(inputs);
    // Spot checks of the expected errors.
    let id = b16(4);
    for n in 0..AOE_HDR_LEN {
        assert_eq!(Repr::parse(&id[..n]), Err(WireError::Truncated), "{n}");
    }
    for n in AOE_HDR_LEN..ATA_HDR_LEN {
        assert_eq!(Repr::parse(&id[..n]), Err(WireError::Truncated), "{n}");
    }
    let r = Repr::parse(&id[..ATA_HDR_LEN + 100]).unwrap();
    assert_eq!(ata(&r).data.len(), 100);
    assert_eq!(ata(&r).data_exact(SECTOR), Err(WireError::Truncated));
    assert_eq!(Identify::parse(ata(&r).data), Err(WireError::Truncated));
    let c = b4(6);
    for n in AOE_HDR_LEN..c.len() {
        assert_eq!(Repr::parse(&c[..n]), Err(WireError::Truncated), "config {n}");
    }
    let ann = b16(0);
    for n in AOE_HDR_LEN..ann.len() {
        assert_eq!(Repr::parse(&ann[..n]), Err(WireError::Truncated), "announcement {n}");
    }
    assert!(Repr::parse(&ann).is_ok());
    // An error reply needs only the common header.
    let e = b16(22);
    assert!(Repr::parse(&e[..AOE_HDR_LEN]).is_ok());
    // Identify: every prefix of the IDENTIFY block.
    let data = &id[ATA_HDR_LEN..];
    for n in 0..data.len() {
        assert_eq!(Identify::parse(&data[..n]), Err(WireError::Truncated), "{n}");
    }
    assert!(Identify::parse(data).is_ok());
}

#[test]
fn every_single_byte_corruption_of_every_frame() {
    let mut inputs = Vec::new();
    for (name, b) in all_frames() {
        for i in 0..b.len() {
            for (how, v) in [("=00", 0x00u8), ("=ff", 0xff), ("^80", b[i] ^ 0x80)] {
                let mut c = b.clone();
                c[i] = v;
                inputs.push((format!("{name}[{i}]{how}"), c));
            }
        }
    }
    run_all(inputs);
    // Corrupting the IDENTIFY block itself.
    let id = b16(4)[ATA_HDR_LEN..].to_vec();
    for i in 0..id.len() {
        for v in [0x00u8, 0xff, id[i] ^ 0x80] {
            let mut c = id.clone();
            c[i] = v;
            check_identify_any(&c).unwrap();
        }
    }
}

#[test]
fn random_inputs_never_panic() {
    let mut rng = XorShift::new(0x9E37_79B9_7F4A_7C15);
    let mut inputs = Vec::new();
    for len in 0..2000usize {
        // Plain noise (almost always NotAoe / Truncated).
        let noise: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        inputs.push((format!("noise {len}"), noise.clone()));
        // Noise with a valid-looking AoE header so the bodies get exercised.
        let mut f = noise;
        if len >= 14 {
            f[12] = 0x88;
            f[13] = 0xA2;
        }
        if len >= 15 {
            f[14] = 0x10 | (f[14] & 0x0f & !(if rng.below(4) == 0 { 0 } else { FLAG_ERROR }));
        }
        if len >= 20 {
            f[19] = rng.below(5) as u8;
        }
        // Keep length fields small most of the time so frames can be complete.
        if len >= 32 && f[19] == 1 && rng.below(2) == 0 {
            let l = rng.below(len - 31 + 8);
            f[30..32].copy_from_slice(&(l as u16).to_be_bytes());
        }
        if len >= 28 && f[19] == 2 && rng.below(2) == 0 {
            f[27] = rng.below((len - 28) / 8 + 2) as u8;
        }
        if len >= 26 && f[19] == 3 && rng.below(2) == 0 {
            f[25] = rng.below((len - 26) / 6 + 2) as u8;
        }
        inputs.push((format!("aoe-shaped {len}"), f));
        // Random Identify blocks.
        let blk: Vec<u8> = (0..512 + rng.below(4)).map(|_| rng.byte()).collect();
        check_identify_any(&blk).unwrap();
    }
    // Every parsed outcome kind should have been reached.
    let mut kinds = std::collections::BTreeSet::new();
    for (_, b) in &inputs {
        kinds.insert(match Repr::parse(b) {
            Ok(r) => format!("ok {:?}", r.command()),
            Err(WireError::BadField(_)) => "badfield".into(),
            Err(e) => format!("{:?}", std::mem::discriminant(&e)),
        });
    }
    assert!(kinds.len() >= 8, "coverage: {kinds:?}");
    run_all(inputs);
}

#[test]
fn config_length_over_1024() {
    let base = b4(6); // 62-byte config reply with a 30-byte string
    for (l, want) in [
        (1025u16, Err(WireError::BadField("config string length"))),
        (0xFFFF, Err(WireError::BadField("config string length"))),
        (1024, Err(WireError::Truncated)),
        (31, Err(WireError::Truncated)),
    ] {
        let mut b = base.clone();
        b[30..32].copy_from_slice(&l.to_be_bytes());
        assert_eq!(Repr::parse(&b).map(|_| ()), want, "len {l}");
        check_any_input(&b).unwrap();
    }
    // A full 1024-byte string parses; a shorter declared length ignores the rest.
    let mut b = base[..CFG_HDR_LEN].to_vec();
    b.extend(std::iter::repeat_n(b'x', 1024));
    b[30..32].copy_from_slice(&1024u16.to_be_bytes());
    let r = parse_ok(&b);
    assert_eq!(cfg(&r).config.len(), 1024);
    assert_eq!(emit_vec(&r), b);
    b[30..32].copy_from_slice(&5u16.to_be_bytes());
    assert_eq!(cfg(&parse_ok(&b)).config, b"xxxxx");
    // emit refuses > 1024.
    let big = vec![b'y'; 1025];
    let mut r = parse_ok(&base);
    if let Body::Config(ref mut c) = r.body {
        c.config = &big;
    }
    let mut out = vec![0u8; r.buffer_len()];
    assert_eq!(r.emit(&mut out), Err(WireError::BadField("config string length")));
}

#[test]
fn mac_mask_count_larger_than_frame() {
    let base = b16(18);
    for n in [1u8, 2, 255] {
        let mut b = base.clone();
        b[27] = n;
        assert_eq!(Repr::parse(&b), Err(WireError::Truncated), "count {n}");
        // Padding to 60 bytes is still not enough for 5+ directives.
        b.resize(60, 0);
        let want = if n as usize * 8 <= 32 { "ok" } else { "trunc" };
        assert_eq!(Repr::parse(&b).is_ok(), want == "ok", "count {n} padded");
    }
    // One real directive.
    let mut b = base.clone();
    b[25] = 1; // edit
    b[27] = 1;
    b.extend_from_slice(&[0, 1, 2, 0, 0, 0, 0x0a, 0x01]);
    let r = parse_ok(&b);
    assert_eq!(
        r.body,
        Body::MacMask(MacMaskRepr { mcmd: 1, merror: 0, directives: vec![Directive { dcmd: 1, mac: INI }] })
    );
    assert_eq!(emit_vec(&r), b);
}

#[test]
fn reserve_count_larger_than_frame() {
    let base = b16(20);
    for n in [1u8, 3, 255] {
        let mut b = base.clone();
        b[25] = n;
        assert_eq!(Repr::parse(&b), Err(WireError::Truncated), "count {n}");
    }
    let mut b = base.clone();
    b[24] = 1; // set
    b[25] = 2;
    b.extend_from_slice(&INI.0);
    b.extend_from_slice(&TGT.0);
    let r = parse_ok(&b);
    assert_eq!(r.body, Body::Reserve(ReserveRepr { rcmd: 1, macs: vec![INI, TGT] }));
    assert_eq!(emit_vec(&r), b);
    // Link padding after the list is ignored by the Repr.
    let mut p = b.clone();
    p.resize(60, 0);
    assert_eq!(parse_ok(&p), r);
}

#[test]
fn wrong_version_and_ethertype() {
    for (name, b) in all_frames() {
        for v in [0u8, 2, 15] {
            let mut c = b.clone();
            c[14] = (v << 4) | (c[14] & 0x0f);
            let announce_quirk = v == 0 && c[19] == 1 && c[14] & FLAG_RESPONSE != 0;
            if announce_quirk {
                assert!(Repr::parse(&c).is_ok(), "{name} v{v}");
            } else {
                assert_eq!(Repr::parse(&c), Err(WireError::BadVersion(v)), "{name} v{v}");
            }
        }
        for et in [0x0800u16, 0x86DD, 0x88A3, 0xA288, 0x0000] {
            let mut c = b.clone();
            c[12..14].copy_from_slice(&et.to_be_bytes());
            assert_eq!(Repr::parse(&c), Err(WireError::NotAoe), "{name} {et:04x}");
            // Too short to tell: truncated wins.
            assert_eq!(Repr::parse(&c[..20]), Err(WireError::Truncated));
        }
    }
    assert!(Frame::new_checked(&[0u8; 23][..]).is_err());
}

#[test]
fn frames_shorter_than_60_bytes_accepted() {
    // (frame, length) pairs straight from vblade: nothing was padded.
    for (b, len) in [(b16(2), 32), (b16(16), 36), (b16(18), 28), (b16(20), 26), (b4(2), 32), (b4(4), 32)] {
        assert_eq!(b.len(), len);
        assert!(Repr::parse(&b).is_ok(), "{len}-byte frame");
    }
    // And the same frames padded with zeros to 60 decode to the same values,
    // except ATA data, which keeps the padding (the consumer takes what it needs).
    for b in [b16(2), b16(18), b16(20), b4(2)] {
        let mut p = b.clone();
        p.resize(60, 0);
        assert_eq!(Repr::parse(&p).unwrap(), Repr::parse(&b).unwrap());
    }
    let mut p = b16(16);
    p.resize(60, 0);
    assert_eq!(ata(&parse_ok(&p)).data.len(), 24);
}

#[test]
fn emit_buffer_too_small_and_count_limits() {
    for (name, b) in all_frames() {
        let Ok(r) = Repr::parse(&b) else { continue };
        let need = r.buffer_len();
        for n in 0..need {
            let mut out = vec![0u8; n];
            assert_eq!(r.emit(&mut out), Err(WireError::BufferTooSmall), "{name} into {n}");
        }
        // A larger buffer is fine and only `need` bytes are written.
        let mut out = vec![0xEEu8; need + 10];
        assert_eq!(r.emit(&mut out), Ok(need));
        assert!(out[need..].iter().all(|&x| x == 0xEE), "{name}");
    }
    let hdr = Header { dst: TGT, src: INI, response: false, error: None, shelf: 0, slot: 1, tag: 1 };
    let r = Repr {
        header: hdr,
        body: Body::MacMask(MacMaskRepr { mcmd: 1, merror: 0, directives: vec![Directive { dcmd: 1, mac: INI }; 256] }),
    };
    assert_eq!(r.emit(&mut vec![0u8; r.buffer_len()]), Err(WireError::BadField("directive count")));
    let r = Repr { header: hdr, body: Body::Reserve(ReserveRepr { rcmd: 1, macs: vec![INI; 256] }) };
    assert_eq!(r.emit(&mut vec![0u8; r.buffer_len()]), Err(WireError::BadField("MAC count")));
    let r = Repr { header: hdr, body: Body::Reserve(ReserveRepr { rcmd: 1, macs: vec![INI; 255] }) };
    let out = emit_vec(&r);
    assert_eq!(out.len(), AOE_HDR_LEN + 2 + 6 * 255);
    assert_eq!(parse_ok(&out), r);
}

#[test]
fn command_and_error_code_roundtrip() {
    for v in 0..=255u8 {
        match Command::from_u8(v) {
            Ok(c) => assert_eq!(c.to_u8(), v),
            Err(e) => {
                assert!(v > 3);
                assert_eq!(e, WireError::UnknownCommand(v));
            }
        }
        assert_eq!(AoeError::from_u8(v).to_u8(), v);
        assert!(!AoeError::from_u8(v).describe().is_empty());
    }
    // Error replies keep their code through parse/emit for every code.
    let base = b16(22);
    for code in 0..=255u8 {
        let mut b = base[..AOE_HDR_LEN].to_vec();
        b[15] = code;
        let r = parse_ok(&b);
        assert_eq!(r.header.error, Some(AoeError::from_u8(code)));
        assert_eq!(emit_vec(&r), b);
    }
    for e in [
        WireError::Truncated,
        WireError::NotAoe,
        WireError::BadVersion(0),
        WireError::BadField("x"),
        WireError::UnknownCommand(9),
        WireError::BufferTooSmall,
    ] {
        assert!(!e.to_string().is_empty());
    }
}
