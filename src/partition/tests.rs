//! Tests of the partition-table parser (`partition`): the tables in
//! `tests/data/partitions/` and tables built here.

use super::*;
use std::collections::BTreeMap;

/// A sparse disk image: missing sectors read as zeros.
struct Disk {
    sectors: u64,
    data: BTreeMap<u64, Vec<u8>>,
}

impl Disk {
    fn new(sectors: u64) -> Self {
        Disk { sectors, data: BTreeMap::new() }
    }
    /// Parses a `tests/data/partitions/*.sectors` fixture: a comment line
    /// "... N sectors ...", then "<lba> <hex>" lines (trailing zeros trimmed).
    fn from_fixture(text: &str) -> Self {
        let mut disk = Disk::new(0);
        for line in text.lines() {
            if let Some(c) = line.strip_prefix('#') {
                let w: Vec<&str> = c.split_whitespace().collect();
                disk.sectors = w[1].parse().unwrap();
                continue;
            }
            let (lba, hex) = line.split_once(' ').unwrap();
            let mut s: Vec<u8> =
                (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
            s.resize(512, 0);
            disk.data.insert(lba.parse().unwrap(), s);
        }
        assert!(disk.sectors > 0);
        disk
    }
    fn sector_mut(&mut self, lba: u64) -> &mut Vec<u8> {
        self.data.entry(lba).or_insert_with(|| vec![0; 512])
    }
    fn read(&self, lba: u64, count: u32) -> std::io::Result<Vec<u8>> {
        if lba.checked_add(u64::from(count)).is_none_or(|e| e > self.sectors) {
            return Err(std::io::Error::other(format!("out of range: {lba}+{count}")));
        }
        let mut out = Vec::with_capacity(count as usize * 512);
        for l in lba..lba + u64::from(count) {
            match self.data.get(&l) {
                Some(s) => out.extend_from_slice(s),
                None => out.extend_from_slice(&[0; 512]),
            }
        }
        Ok(out)
    }
    fn parse(&self) -> Result<(Scheme, Vec<Partition>), TableError> {
        read_table(self.sectors, &mut |l, c| self.read(l, c))
    }
}

const MBR2: &str = include_str!("../../tests/data/partitions/mbr2.sectors");
const MBREXT: &str = include_str!("../../tests/data/partitions/mbrext.sectors");
const GPT3: &str = include_str!("../../tests/data/partitions/gpt3.sectors");

fn mbr(number: u32, start: u64, sectors: u64, type_byte: u8, bootable: bool) -> Partition {
    Partition { number, start, sectors, kind: Kind::Mbr { type_byte, bootable } }
}

/// GUID string (as printed by sfdisk) → on-disk mixed-endian bytes.
fn guid(s: &str) -> [u8; 16] {
    let h: String = s.chars().filter(|c| *c != '-').collect();
    let b: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap()).collect();
    let mut g = [0u8; 16];
    g[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
    g[4..6].copy_from_slice(&[b[5], b[4]]);
    g[6..8].copy_from_slice(&[b[7], b[6]]);
    g[8..16].copy_from_slice(&b[8..16]);
    g
}

fn gpt(number: u32, start: u64, sectors: u64, ty: &str, name: &str) -> Partition {
    Partition { number, start, sectors, kind: Kind::Gpt { type_guid: guid(ty), name: name.into() } }
}

fn gpt3_expected() -> Vec<Partition> {
    // From tests/data/partitions/gpt3.sfdisk.json.
    vec![
        gpt(1, 2048, 8192, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI system"),
        gpt(2, 10240, 32768, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "root"),
        gpt(3, 43008, 86016, "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "swap partition ünïcode"),
    ]
}

fn set_entry(s: &mut [u8], slot: usize, status: u8, ty: u8, start: u32, size: u32) {
    let e = &mut s[446 + 16 * slot..446 + 16 * (slot + 1)];
    e.fill(0);
    e[0] = status;
    e[4] = ty;
    e[8..12].copy_from_slice(&start.to_le_bytes());
    e[12..16].copy_from_slice(&size.to_le_bytes());
}

fn sign(s: &mut [u8]) {
    s[510] = 0x55;
    s[511] = 0xAA;
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn writes_to_the_table_sectors_are_recognised() {
    let disk = 196_608; // 96 MiB
                        // The head: MBR, primary GPT header and entries.
    assert!(writes_table(0, 1, disk, &[]));
    assert!(writes_table(33, 8, disk, &[]));
    assert!(!writes_table(34, 8, disk, &[]));
    // A write spanning the head from before its end.
    assert!(writes_table(0, 2048, disk, &[]));
    // The tail: backup GPT entries and header.
    assert!(writes_table(disk - 1, 1, disk, &[]));
    assert!(writes_table(disk - 40, 8, disk, &[]));
    assert!(!writes_table(disk - 41, 8, disk, &[]));
    // EBRs (and anything else the parser read) where the table says.
    let ebrs = [(0, 1), (67584, 1), (86016, 1)];
    assert!(writes_table(67584, 1, disk, &ebrs));
    assert!(writes_table(67580, 8, disk, &ebrs));
    assert!(!writes_table(67585, 8, disk, &ebrs));
    assert!(!writes_table(40 * 2048, 8, disk, &ebrs));
    // Nothing written, nothing touched; a tiny disk is all table.
    assert!(!writes_table(0, 0, disk, &ebrs));
    assert!(writes_table(10, 1, 20, &[]));
    // No overflow at the end of the number range.
    assert!(!writes_table(u64::MAX - 1, 5, disk, &ebrs));
}

#[test]
fn crc32_reference_vectors() {
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
}

#[test]
fn mbr_two_primaries_from_sfdisk() {
    let d = Disk::from_fixture(MBR2);
    let (scheme, parts) = d.parse().unwrap();
    assert_eq!(scheme, Scheme::Mbr);
    // sfdisk --json: p1 2048+20480 type 83 bootable, p2 22528+40960 type 7.
    assert_eq!(parts, vec![mbr(1, 2048, 20480, 0x83, true), mbr(2, 22528, 40960, 0x07, false)]);
    assert_eq!(parts[1].byte_offset(), 22528 * 512);
    assert_eq!(parts[1].byte_len(), 40960 * 512);
}

#[test]
fn mbr_extended_with_three_logicals_from_sfdisk() {
    let d = Disk::from_fixture(MBREXT);
    let (scheme, parts) = d.parse().unwrap();
    assert_eq!(scheme, Scheme::Mbr);
    // sfdisk --json lists p2 (type 5, the container) with its whole
    // size; the kernel, and we, list its first 2 sectors.
    assert_eq!(
        parts,
        vec![
            mbr(1, 2048, 10240, 0x83, false),
            mbr(2, 12288, 2, 0x05, false),
            mbr(5, 14336, 8192, 0x83, false),
            mbr(6, 24576, 16384, 0x82, false),
            mbr(7, 43008, 88064, 0x0B, false),
        ]
    );
}

#[test]
fn gpt_three_named_from_sfdisk() {
    let d = Disk::from_fixture(GPT3);
    let (scheme, parts) = d.parse().unwrap();
    assert_eq!(scheme, Scheme::Gpt);
    assert_eq!(parts, gpt3_expected());
}

#[test]
fn no_table_is_none() {
    let d = Disk::new(131072);
    assert_eq!(d.parse().unwrap(), (Scheme::None, vec![]));
    assert_eq!(Disk::new(0).parse().unwrap(), (Scheme::None, vec![]));
    assert_eq!(Disk::new(1).parse().unwrap(), (Scheme::None, vec![]));
}

#[test]
fn signed_but_empty_mbr_is_mbr_without_partitions() {
    let mut d = Disk::new(1000);
    sign(d.sector_mut(0));
    assert_eq!(d.parse().unwrap(), (Scheme::Mbr, vec![]));
}

#[test]
fn corrupted_primary_gpt_header_uses_backup() {
    let mut d = Disk::from_fixture(GPT3);
    d.sector_mut(1)[40] ^= 0x01; // first_usable_lba bit → header CRC mismatch
    assert_eq!(d.parse().unwrap(), (Scheme::Gpt, gpt3_expected()));

    // Primary header wiped entirely.
    let mut d = Disk::from_fixture(GPT3);
    d.sector_mut(1).fill(0);
    assert_eq!(d.parse().unwrap(), (Scheme::Gpt, gpt3_expected()));

    // Primary entry array corrupted (array CRC mismatch).
    let mut d = Disk::from_fixture(GPT3);
    d.sector_mut(2)[60] ^= 0xFF;
    assert_eq!(d.parse().unwrap(), (Scheme::Gpt, gpt3_expected()));
}

#[test]
fn both_gpt_headers_bad_is_none_and_read_error_is_err() {
    let mut d = Disk::from_fixture(GPT3);
    d.sector_mut(1).fill(0);
    let last = d.sectors - 1;
    d.sector_mut(last).fill(0);
    assert_eq!(d.parse().unwrap(), (Scheme::None, vec![]));

    // Primary corrupt and the backup unreadable → Err (caller may retry).
    let mut d = Disk::from_fixture(GPT3);
    d.sector_mut(1).fill(0);
    let n = d.sectors;
    let r = read_table(n, &mut |l, c| {
        if l == n - 1 {
            Err(std::io::Error::other("EIO"))
        } else {
            d.read(l, c)
        }
    });
    assert!(r.is_err(), "{r:?}");

    // Primary readable: backup I/O error never matters.
    let d = Disk::from_fixture(GPT3);
    let r = read_table(n, &mut |l, c| {
        if l == n - 1 {
            Err(std::io::Error::other("EIO"))
        } else {
            d.read(l, c)
        }
    });
    assert_eq!(r.unwrap(), (Scheme::Gpt, gpt3_expected()));
}

#[test]
fn read_errors_and_short_reads() {
    assert!(read_table(100, &mut |_, _| Err(std::io::Error::other("EIO"))).is_err());
    assert!(read_table(100, &mut |_, _| Ok(vec![0; 100])).is_err());
    // A longer-than-asked answer is fine (truncated).
    let mut big = vec![0u8; 4096];
    sign(&mut big);
    set_entry(&mut big, 0, 0, 0x83, 1, 10);
    let r = read_table(100, &mut |_, _| Ok(big.clone())).unwrap();
    assert_eq!(r, (Scheme::Mbr, vec![mbr(1, 1, 10, 0x83, false)]));
}

#[test]
fn gpt_disk_shrunk_uses_linux_pte_rules() {
    // Same GPT on a "disk" that is now shorter: backup header gone; p3 ends
    // past the last LBA and is dropped like Linux's is_pte_valid(); the
    // header's last_usable_lba is past the end too → primary invalid, and
    // so is the (missing) backup → None.
    let mut d = Disk::from_fixture(GPT3);
    d.sectors = 100_000;
    d.data.retain(|l, _| *l < 100_000);
    assert_eq!(d.parse().unwrap(), (Scheme::None, vec![]));
}

#[test]
fn ebr_self_loop_terminates() {
    let mut d = Disk::new(10_000);
    let s = d.sector_mut(0);
    set_entry(s, 0, 0, 0x05, 100, 5000);
    sign(s);
    let e = d.sector_mut(100);
    set_entry(e, 0, 0, 0x83, 10, 50);
    set_entry(e, 1, 0, 0x05, 0, 5000); // next EBR = the same one
    sign(e);
    let (scheme, parts) = d.parse().unwrap();
    assert_eq!(scheme, Scheme::Mbr);
    assert_eq!(parts, vec![mbr(1, 100, 2, 0x05, false), mbr(5, 110, 50, 0x83, false)]);
}

#[test]
fn ebr_two_cycle_and_long_chain_terminate() {
    // Two EBRs pointing at each other.
    let mut d = Disk::new(10_000);
    let s = d.sector_mut(0);
    set_entry(s, 0, 0x80, 0x0F, 100, 5000);
    sign(s);
    // EBR links are relative to the extended start (100): 100 → 300 → 100.
    for (at, next) in [(100u64, 200u32), (300, 0)] {
        let e = d.sector_mut(at);
        set_entry(e, 0, 0, 0x83, 1, 10);
        set_entry(e, 1, 0, 0x05, next, 100);
        sign(e);
    }
    let (_, parts) = d.parse().unwrap();
    assert_eq!(parts, vec![mbr(1, 100, 2, 0x0F, true), mbr(5, 101, 10, 0x83, false), mbr(6, 301, 10, 0x83, false)]);

    // A 300-long chain of EBRs with data: capped at MAX_EBRS.
    let mut d = Disk::new(1_000_000);
    let s = d.sector_mut(0);
    set_entry(s, 0, 0, 0x85, 1000, 900_000);
    sign(s);
    for k in 0..300u32 {
        let e = d.sector_mut(1000 + u64::from(k) * 100);
        set_entry(e, 0, 0, 0x83, 1, 10);
        set_entry(e, 1, 0, 0x05, (k + 1) * 100, 100);
        sign(e);
    }
    let (_, parts) = d.parse().unwrap();
    assert_eq!(parts.len(), 1 + MAX_EBRS, "the container and MAX_EBRS logicals");
    assert_eq!(parts.last().unwrap().number, 4 + MAX_EBRS as u32);

    // A chain of empty EBRs (links only): stopped by the 100-link guard.
    let mut d = Disk::new(1_000_000);
    let s = d.sector_mut(0);
    set_entry(s, 0, 0, 0x05, 1000, 900_000);
    sign(s);
    for k in 0..300u32 {
        let e = d.sector_mut(1000 + u64::from(k) * 100);
        set_entry(e, 1, 0, 0x05, (k + 1) * 100, 100);
        sign(e);
    }
    let e = d.sector_mut(1000 + 150 * 100);
    set_entry(e, 0, 0, 0x83, 1, 10);
    assert_eq!(d.parse().unwrap(), (Scheme::Mbr, vec![mbr(1, 1000, 2, 0x05, false)]));
}

#[test]
fn numbering_is_positional_and_sorted() {
    let mut d = Disk::new(10_000);
    let s = d.sector_mut(0);
    set_entry(s, 0, 0, 0x83, 0, 0); // empty (size 0)
    set_entry(s, 1, 0, 0x05, 1000, 3000);
    set_entry(s, 2, 0, 0x00, 5000, 100); // type 0 → empty
    set_entry(s, 3, 0x80, 0x0C, 6000, 100);
    sign(s);
    let e = d.sector_mut(1000);
    set_entry(e, 0, 0, 0x83, 63, 100);
    sign(e);
    let (_, parts) = d.parse().unwrap();
    assert_eq!(
        parts,
        vec![mbr(2, 1000, 2, 0x05, false), mbr(4, 6000, 100, 0x0C, true), mbr(5, 1063, 100, 0x83, false)]
    );
}

#[test]
fn partitions_past_disk_end_truncated_or_dropped() {
    let mut d = Disk::new(1000);
    let s = d.sector_mut(0);
    set_entry(s, 0, 0, 0x83, 100, 200);
    set_entry(s, 1, 0, 0x83, 900, 500); // ends past 1000 → truncated to 100
    set_entry(s, 2, 0, 0x83, 1000, 10); // starts at the end → dropped
    set_entry(s, 3, 0, 0x83, u32::MAX, u32::MAX); // far beyond → dropped
    sign(s);
    let (scheme, parts) = d.parse().unwrap();
    assert_eq!(scheme, Scheme::Mbr);
    assert_eq!(parts, vec![mbr(1, 100, 200, 0x83, false), mbr(2, 900, 100, 0x83, false)]);
}

#[test]
fn bad_boot_indicator_means_no_table() {
    let mut d = Disk::new(1000);
    let s = d.sector_mut(0);
    set_entry(s, 0, 0, 0x83, 100, 200);
    set_entry(s, 1, 0x12, 0x83, 300, 200);
    sign(s);
    assert_eq!(d.parse().unwrap(), (Scheme::None, vec![]));
}

#[test]
fn hybrid_mbr_is_gpt_and_misplaced_ee_is_none() {
    let mut d = Disk::from_fixture(GPT3);
    let s = d.sector_mut(0);
    set_entry(s, 1, 0x80, 0x0C, 2048, 8192);
    assert_eq!(d.parse().unwrap(), (Scheme::Gpt, gpt3_expected()));

    // 0xEE entry not starting at LBA 1: not a pMBR, and msdos refuses it.
    let mut d = Disk::new(1000);
    let s = d.sector_mut(0);
    set_entry(s, 0, 0, 0xEE, 2, 900);
    set_entry(s, 1, 0, 0x83, 100, 100);
    sign(s);
    assert_eq!(d.parse().unwrap(), (Scheme::None, vec![]));
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..3000u32 {
        let sectors = match round % 4 {
            0 => 1 + rng.next() % 64,
            1 => 64 + rng.next() % 100_000,
            2 => u64::MAX - rng.next() % 8,
            _ => 34 + rng.next() % 64,
        };
        let mut d = Disk::new(sectors);
        for lba in 0..64u64.min(sectors) {
            let s = d.sector_mut(lba);
            for b in s.iter_mut() {
                *b = rng.next() as u8;
            }
        }
        let mode = rng.next() % 4;
        if mode >= 1 {
            sign(d.sector_mut(0));
            let s = d.sector_mut(0);
            for slot in 0..4 {
                s[446 + 16 * slot] = if rng.next() & 1 == 0 { 0 } else { 0x80 };
            }
        }
        if mode >= 2 {
            // Make it a pMBR and give LBA 1 a GPT header with a valid CRC
            // but random contents.
            let s = d.sector_mut(0);
            set_entry(s, 0, 0, 0xEE, 1, rng.next() as u32);
            let small = mode == 3;
            let h = d.sector_mut(1);
            h[0..8].copy_from_slice(GPT_SIGNATURE);
            let hs = if small { 92 } else { 92 + (rng.next() % 500) as u32 };
            h[12..16].copy_from_slice(&hs.to_le_bytes());
            h[24..32].copy_from_slice(&1u64.to_le_bytes());
            if small {
                h[40..48].copy_from_slice(&(rng.next() % 40).to_le_bytes());
                h[48..56].copy_from_slice(&(40 + rng.next() % 100).to_le_bytes());
                h[72..80].copy_from_slice(&(rng.next() % 70).to_le_bytes());
                h[80..84].copy_from_slice(&((rng.next() % 300) as u32).to_le_bytes());
                h[84..88].copy_from_slice(&(128u32 << (rng.next() % 3)).to_le_bytes());
            }
            h[16..20].fill(0);
            let c = crc32(&h[..hs.min(512) as usize]);
            h[16..20].copy_from_slice(&c.to_le_bytes());
        }
        let r = d.parse();
        if let Ok((_, parts)) = r {
            for p in &parts {
                assert!(p.sectors > 0 && p.start < sectors && p.sectors <= sectors - p.start);
                assert!(p.number >= 1 && p.number <= MAX_PARTITION_NUMBER);
            }
        }
    }
}

#[test]
fn gpt_with_valid_crc_garbage_entries_is_sane() {
    // A hand-built GPT whose entry array (with correct CRC) holds random
    // entries, exercising the entry checks, the 255 cap and name decoding.
    let mut rng = XorShift(12345);
    let sectors = 10_000u64;
    let mut d = Disk::new(sectors);
    let s = d.sector_mut(0);
    set_entry(s, 0, 0, 0xEE, 1, (sectors - 1) as u32);
    sign(s);
    let n = 300u32;
    let mut arr = vec![0u8; (n * 128) as usize];
    for (i, e) in arr.chunks_exact_mut(128).enumerate() {
        if i % 3 == 0 {
            continue; // unused entry
        }
        for b in e.iter_mut() {
            *b = rng.next() as u8;
        }
        if i % 3 == 1 {
            let a = rng.next() % sectors;
            let b = a + rng.next() % (sectors - a);
            e[32..40].copy_from_slice(&a.to_le_bytes());
            e[40..48].copy_from_slice(&b.to_le_bytes());
        }
    }
    for (k, c) in arr.chunks(512).enumerate() {
        d.sector_mut(2 + k as u64)[..c.len()].copy_from_slice(c);
    }
    let h = d.sector_mut(1);
    h[0..8].copy_from_slice(GPT_SIGNATURE);
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&1u64.to_le_bytes());
    h[32..40].copy_from_slice(&(sectors - 1).to_le_bytes());
    h[40..48].copy_from_slice(&100u64.to_le_bytes());
    h[48..56].copy_from_slice(&(sectors - 100).to_le_bytes());
    h[72..80].copy_from_slice(&2u64.to_le_bytes());
    h[80..84].copy_from_slice(&n.to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    h[88..92].copy_from_slice(&crc32(&arr).to_le_bytes());
    let c = crc32(&h[..92]);
    h[16..20].copy_from_slice(&c.to_le_bytes());
    let (scheme, parts) = d.parse().unwrap();
    assert_eq!(scheme, Scheme::Gpt);
    // Only entries i % 3 == 1 (valid ranges) among the first 255 survive.
    let want: Vec<u32> = (0..255u32).filter(|i| i % 3 == 1).map(|i| i + 1).collect();
    let got: Vec<u32> = parts.iter().map(|p| p.number).collect();
    assert_eq!(got, want);
    for p in &parts {
        let Kind::Gpt { name, .. } = &p.kind else { panic!() };
        assert!(name.encode_utf16().count() <= 36);
    }
}
