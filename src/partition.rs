//! Partition-table parsing (MBR/"msdos" and GPT/"efi"), modelled on the Linux
//! kernel's `block/partitions/msdos.c` and `block/partitions/efi.c`.
//!
//! The parser is pure: it does no I/O of its own and only asks the caller for
//! sectors through a callback, so it can run on top of any block source (an AoE
//! target, a cache, a test fixture). The result lists every partition as a
//! byte range of the disk — start and length in 512-byte sectors — numbered the
//! way Linux numbers `sdXN` / `e0.1pN`.
//!
//! # Behaviour (and where it deliberately differs from Linux)
//!
//! * **MBR** (`0x55 0xAA` at bytes 510–511): the four primary entries at byte
//!   446 are partitions 1–4 (numbering is positional: an empty slot leaves a
//!   hole). An entry is empty if its size is 0 (Linux) *or its type is 0*
//!   (Linux would still register a type-0 entry with a non-zero size; fdisk and
//!   the MBR convention treat type 0 as "unused", and so do we). As in Linux, if
//!   any entry's boot indicator is neither `0x00` nor `0x80`, the sector is not
//!   a partition table (e.g. a FAT boot sector) → [`Scheme::None`].
//! * **Extended partitions** (types `0x05`, `0x0F`, `0x85`) are walked like
//!   Linux's `parse_extended()`: in each EBR every non-empty, non-extended
//!   entry is a logical partition relative to that EBR (entries 3 and 4 only if
//!   they lie inside the EBR's extent, Linux's garbage check), and the first
//!   extended entry links to the next EBR relative to the start of the primary
//!   extended partition. Logical partitions are numbered from 5 in discovery
//!   order. The walk stops at an EBR without the `55AA` signature, at a read
//!   error (keeping what was found), at an EBR already visited (cycle), after
//!   [`MAX_EBRS`] EBRs, after 100 links without a data partition (Linux's
//!   `loopct`), or when partition number 255 is used (Linux's `DISK_MAX_PARTS`
//!   limit of 256 slots incl. the whole disk).
//! * **The extended container itself** is listed as Linux registers it: its
//!   first 2 sectors (1 KiB; 1 if it is 1 sector long), under its primary slot's
//!   number, so `e0.1p3` is what `/sys/block/etherd!e0.1/etherd!e0.1p3` would
//!   be (the first EBR and the sector after it; room for LILO, too small for a
//!   filesystem by mistake).
//! * **GPT**: chosen when the MBR has the signature and any entry of type
//!   `0xEE` starting at LBA 1 (Linux's `is_pmbr_valid()`; hybrid MBRs with more
//!   non-`0xEE` entries are accepted as GPT too, like Linux). The header must
//!   have the `EFI PART` signature, a header size in 92..=512, a valid header
//!   CRC32, `my_lba` equal to the LBA it was read from, usable LBAs inside the
//!   disk and ordered, an entry size that is 128·2ⁿ (Linux insists on exactly
//!   128; the UEFI spec allows larger powers of two), an entry array of at most
//!   [`MAX_GPT_ARRAY_BYTES`], and a matching entry-array CRC32. The primary
//!   header is at LBA 1; if it is invalid the backup header at the last LBA
//!   (`disk_sectors - 1`) is used. (Linux only does that with the `gpt` kernel
//!   parameter; parted, gdisk and sfdisk always do — we follow them.) Entries
//!   with an all-zero type GUID are skipped, as are (like Linux's
//!   `is_pte_valid()`) entries whose start or end LBA lies past the last LBA
//!   and (unlike Linux, which would compute a wrapped size) entries whose end
//!   is before their start. Numbering is entry index + 1; at most the first
//!   255 entries are looked at (Linux: `state->limit - 1`). Names are decoded
//!   as UTF-16LE (up to 36 code units, stopping at the first NUL, invalid
//!   surrogates replaced by U+FFFD; Linux keeps only the low byte of each unit).
//!   If the MBR is protective but neither GPT header is valid, the disk has no
//!   partitions ([`Scheme::None`]), as in Linux, where the msdos parser refuses
//!   any table containing a `0xEE` entry — unless that failure involved a read
//!   error, which is reported as `Err` so the caller can retry.
//! * **Disk end**: as in Linux's `blk_add_partition()`, a partition starting
//!   at or beyond the end of the disk is dropped, one extending past it is
//!   truncated to end at the disk end, and zero-length partitions are dropped.
//! * **Robustness**: never panics; all arithmetic is checked; the callback is
//!   never asked for sectors beyond `disk_sectors`; a callback result shorter
//!   than requested counts as a read error. A read error on LBA 0 is `Err`.
//!
//! The result is sorted by partition number.

/// Sector size assumed for all tables (AoE disks always use 512-byte sectors).
pub const SECTOR_SIZE: u64 = 512;
/// Maximum number of EBRs followed in an extended-partition chain.
pub const MAX_EBRS: usize = 128;
/// Largest GPT partition-entry array accepted (bytes).
pub const MAX_GPT_ARRAY_BYTES: u64 = 1 << 20;
/// Sectors of an extended partition that are listed as its partition
/// (Linux's msdos.c: `min(size, 2)` for 512-byte sectors).
pub const EXTENDED_STUB_SECTORS: u64 = 2;
/// Highest partition number produced (Linux: `DISK_MAX_PARTS` = 256 minors
/// including the whole disk).
pub const MAX_PARTITION_NUMBER: u32 = 255;

/// One partition: number as Linux numbers it (p1..p4 primary MBR, p5.. logical in extended, GPT entries 1..),
/// start and length in 512-byte sectors, and the kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub number: u32,
    pub start: u64,
    pub sectors: u64,
    pub kind: Kind,
}

impl Partition {
    /// Byte offset of the partition on the disk.
    pub fn byte_offset(&self) -> u64 {
        self.start.saturating_mul(SECTOR_SIZE)
    }
    /// Length of the partition in bytes.
    pub fn byte_len(&self) -> u64 {
        self.sectors.saturating_mul(SECTOR_SIZE)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// MBR primary or logical partition. `bootable` is the `0x80` status flag.
    Mbr { type_byte: u8, bootable: bool },
    /// GPT entry. `type_guid` is the 16 bytes as stored on disk (mixed-endian).
    Gpt { type_guid: [u8; 16], name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    None,
    Mbr,
    Gpt,
}

/// Sectors at the start of every disk that a partition table may occupy
/// wherever its other parts are: the MBR (or GPT's protective MBR), the
/// primary GPT header and the usual entry array (128 entries of 128 bytes).
pub const TABLE_HEAD_SECTORS: u64 = 34;
/// The same at the end of the disk: the backup GPT entry array and header.
pub const TABLE_TAIL_SECTORS: u64 = 33;

/// Whether a write of `count` sectors at `lba`, on a disk of `disk_sectors`,
/// touches the sectors that hold its partition table: the first
/// [`TABLE_HEAD_SECTORS`] and last [`TABLE_TAIL_SECTORS`] (a new MBR or GPT,
/// or a wipe, writes there), and `table`, the ranges (start, count) the
/// parser read for the table in use (EBRs, GPT headers and entry arrays
/// wherever they are). Any change of a table writes one of these: a new
/// EBR is linked from LBA 0 or from an EBR already in the chain.
pub fn writes_table(lba: u64, count: u64, disk_sectors: u64, table: &[(u64, u64)]) -> bool {
    let end = lba.saturating_add(count);
    let overlaps = |start: u64, n: u64| n > 0 && lba < start.saturating_add(n) && start < end;
    count > 0
        && (overlaps(0, TABLE_HEAD_SECTORS)
            || overlaps(disk_sectors.saturating_sub(TABLE_TAIL_SECTORS), TABLE_TAIL_SECTORS)
            || table.iter().any(|&(start, n)| overlaps(start, n)))
}

/// A sector read of the parser that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("short read at LBA {lba}: {got} of {want} bytes")]
    Short { lba: u64, got: usize, want: usize },
    #[error("read at LBA {lba} ({count} sectors): {error}")]
    Failed { lba: u64, count: u32, error: std::io::Error },
}

/// Why a partition table could not be read: the reads that failed (a disk
/// without a valid table is no error, [`Scheme::None`]).
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The MBR sector could not be read.
    #[error("reading LBA 0: {}", joined(.0))]
    Mbr(Vec<ReadError>),
    /// Neither GPT header was valid, and a read failed on the way.
    #[error("no valid GPT: {}", joined(.0))]
    Gpt(Vec<ReadError>),
}

/// The failed reads, `; ` between them.
fn joined(errors: &[ReadError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Parses the partition table of a disk of `disk_sectors` 512-byte sectors,
/// reading `count` sectors at `lba` with `read` (fewer bytes, or an error,
/// when it fails). See the module documentation for the exact rules.
pub fn read_table(
    disk_sectors: u64,
    read: &mut dyn FnMut(u64, u32) -> std::io::Result<Vec<u8>>,
) -> Result<(Scheme, Vec<Partition>), TableError> {
    if disk_sectors == 0 {
        return Ok((Scheme::None, Vec::new()));
    }
    let mut rd = Reader { disk_sectors, read, io_errors: Vec::new() };
    let mbr = match rd.sectors(0, 1) {
        Some(s) => s,
        None => return Err(TableError::Mbr(rd.io_errors)),
    };
    if !has_mbr_signature(&mbr) {
        return Ok((Scheme::None, Vec::new()));
    }
    let entries = mbr_entries(&mbr);

    // efi.c: is_pmbr_valid() — any 0xEE entry starting at LBA 1.
    if entries.iter().any(|e| e.type_byte == 0xEE && e.start == 1) {
        return match find_valid_gpt(&mut rd) {
            Some(parts) => Ok((Scheme::Gpt, finish(parts, disk_sectors))),
            None if !rd.io_errors.is_empty() => Err(TableError::Gpt(rd.io_errors)),
            None => Ok((Scheme::None, Vec::new())),
        };
    }

    // msdos.c: boot indicator sanity (otherwise e.g. a FAT boot sector).
    if entries.iter().any(|e| e.status != 0x00 && e.status != 0x80) {
        return Ok((Scheme::None, Vec::new()));
    }
    // msdos.c refuses tables with a (non-protective-looking) 0xEE entry.
    if entries.iter().any(|e| e.type_byte == 0xEE) {
        return Ok((Scheme::None, Vec::new()));
    }

    let mut parts = Vec::new();
    let mut next_logical = 5u32;
    for (i, e) in entries.iter().enumerate() {
        if e.is_empty() {
            continue;
        }
        if e.is_extended() {
            parts.push(Partition {
                number: i as u32 + 1,
                start: u64::from(e.start),
                sectors: u64::from(e.sectors).min(EXTENDED_STUB_SECTORS),
                kind: Kind::Mbr { type_byte: e.type_byte, bootable: e.status == 0x80 },
            });
            parse_extended(&mut rd, u64::from(e.start), u64::from(e.sectors), &mut next_logical, &mut parts);
            continue;
        }
        parts.push(Partition {
            number: i as u32 + 1,
            start: u64::from(e.start),
            sectors: u64::from(e.sectors),
            kind: Kind::Mbr { type_byte: e.type_byte, bootable: e.status == 0x80 },
        });
    }
    Ok((Scheme::Mbr, finish(parts, disk_sectors)))
}

/// Applies the disk-end rules of Linux's `blk_add_partition()` and sorts.
fn finish(parts: Vec<Partition>, disk_sectors: u64) -> Vec<Partition> {
    let mut out: Vec<Partition> = parts
        .into_iter()
        .filter(|p| p.sectors > 0 && p.start < disk_sectors)
        .map(|mut p| {
            let room = disk_sectors - p.start;
            if p.sectors > room {
                p.sectors = room;
            }
            p
        })
        .collect();
    out.sort_by_key(|p| p.number);
    out
}

struct Reader<'a> {
    disk_sectors: u64,
    read: &'a mut dyn FnMut(u64, u32) -> std::io::Result<Vec<u8>>,
    /// Failures reported by the callback (not refusals of out-of-range reads).
    io_errors: Vec<ReadError>,
}

impl Reader<'_> {
    /// Exactly `count * 512` bytes at `lba`, or None.
    fn sectors(&mut self, lba: u64, count: u32) -> Option<Vec<u8>> {
        if count == 0 {
            return Some(Vec::new());
        }
        let end = lba.checked_add(u64::from(count))?;
        if end > self.disk_sectors {
            return None;
        }
        let want = usize::try_from(u64::from(count) * SECTOR_SIZE).ok()?;
        match (self.read)(lba, count) {
            Ok(mut v) if v.len() >= want => {
                v.truncate(want);
                Some(v)
            }
            Ok(v) => {
                self.io_errors.push(ReadError::Short { lba, got: v.len(), want });
                None
            }
            Err(e) => {
                self.io_errors.push(ReadError::Failed { lba, count, error: e });
                None
            }
        }
    }
}

// ---------------------------------------------------------------- MBR / msdos

#[derive(Debug, Clone, Copy)]
struct MbrEntry {
    status: u8,
    type_byte: u8,
    start: u32,
    sectors: u32,
}

impl MbrEntry {
    fn is_empty(&self) -> bool {
        self.type_byte == 0 || self.sectors == 0
    }
    fn is_extended(&self) -> bool {
        matches!(self.type_byte, 0x05 | 0x0F | 0x85)
    }
}

fn has_mbr_signature(sector: &[u8]) -> bool {
    sector.len() >= 512 && sector[510] == 0x55 && sector[511] == 0xAA
}

fn mbr_entries(sector: &[u8]) -> [MbrEntry; 4] {
    let mut out = [MbrEntry { status: 0, type_byte: 0, start: 0, sectors: 0 }; 4];
    for (i, e) in out.iter_mut().enumerate() {
        let b = &sector[446 + 16 * i..446 + 16 * (i + 1)];
        *e = MbrEntry { status: b[0], type_byte: b[4], start: le32(&b[8..12]), sectors: le32(&b[12..16]) };
    }
    out
}

/// Linux `parse_extended()`: walk the EBR chain of the extended partition at
/// `first_sector` (size `first_size`), appending logical partitions.
fn parse_extended(rd: &mut Reader<'_>, first_sector: u64, first_size: u64, next: &mut u32, parts: &mut Vec<Partition>) {
    let mut this_sector = first_sector;
    let mut this_size = first_size;
    let mut visited: Vec<u64> = Vec::new();
    let mut loopct = 0u32;
    loop {
        loopct += 1;
        if loopct > 100 || *next > MAX_PARTITION_NUMBER || visited.len() >= MAX_EBRS {
            return;
        }
        if visited.contains(&this_sector) {
            return; // cycle
        }
        visited.push(this_sector);
        let Some(ebr) = rd.sectors(this_sector, 1) else {
            return;
        };
        if !has_mbr_signature(&ebr) {
            return;
        }
        let entries = mbr_entries(&ebr);

        // Data partitions, relative to this EBR.
        for (i, e) in entries.iter().enumerate() {
            if e.is_empty() || e.is_extended() {
                continue;
            }
            let offs = u64::from(e.start);
            let size = u64::from(e.sectors);
            let Some(start) = this_sector.checked_add(offs) else {
                continue;
            };
            if i >= 2 {
                // 3rd/4th entries sometimes hold garbage: must fit the EBR extent.
                let inside = offs + size <= this_size
                    && start >= first_sector
                    && start + size <= first_sector.saturating_add(first_size);
                if !inside {
                    continue;
                }
            }
            parts.push(Partition {
                number: *next,
                start,
                sectors: size,
                kind: Kind::Mbr { type_byte: e.type_byte, bootable: e.status == 0x80 },
            });
            loopct = 0;
            *next += 1;
            if *next > MAX_PARTITION_NUMBER {
                return;
            }
        }

        // Link to the next EBR, relative to the extended partition start.
        let Some(link) = entries.iter().find(|e| e.sectors != 0 && e.is_extended()) else {
            return;
        };
        let Some(ns) = first_sector.checked_add(u64::from(link.start)) else {
            return;
        };
        this_sector = ns;
        this_size = u64::from(link.sectors);
    }
}

// ----------------------------------------------------------------- GPT / efi

const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
const GPT_HEADER_MIN: usize = 92;

struct GptHeader {
    entry_lba: u64,
    num_entries: u32,
    entry_size: u32,
    array_crc: u32,
}

/// Primary header at LBA 1, else the backup at the last LBA.
fn find_valid_gpt(rd: &mut Reader<'_>) -> Option<Vec<Partition>> {
    if let Some(p) = try_gpt(rd, 1) {
        return Some(p);
    }
    let last = rd.disk_sectors - 1;
    if last > 1 {
        return try_gpt(rd, last);
    }
    None
}

/// Linux `is_gpt_valid()` for the header at `lba`, then the entries.
fn try_gpt(rd: &mut Reader<'_>, lba: u64) -> Option<Vec<Partition>> {
    let last_lba = rd.disk_sectors - 1;
    let sector = rd.sectors(lba, 1)?;
    let hdr = parse_gpt_header(&sector, lba, last_lba)?;
    let array_bytes = u64::from(hdr.num_entries) * u64::from(hdr.entry_size);
    let nsect = u32::try_from(array_bytes.div_ceil(SECTOR_SIZE)).ok()?;
    let array = rd.sectors(hdr.entry_lba, nsect)?;
    let array = &array[..array_bytes as usize];
    if crc32(array) != hdr.array_crc {
        return None;
    }
    let esz = hdr.entry_size as usize;
    let mut parts = Vec::new();
    let limit = hdr.num_entries.min(MAX_PARTITION_NUMBER) as usize;
    for (i, e) in array.chunks_exact(esz).take(limit).enumerate() {
        let mut type_guid = [0u8; 16];
        type_guid.copy_from_slice(&e[0..16]);
        if type_guid == [0u8; 16] {
            continue;
        }
        let first = le64(&e[32..40]);
        let last = le64(&e[40..48]);
        // is_pte_valid(): both ends inside the disk; and a sane order.
        if first > last_lba || last > last_lba || last < first {
            continue;
        }
        parts.push(Partition {
            number: i as u32 + 1,
            start: first,
            sectors: last - first + 1,
            kind: Kind::Gpt { type_guid, name: utf16le_name(&e[56..128]) },
        });
    }
    Some(parts)
}

fn parse_gpt_header(sector: &[u8], lba: u64, last_lba: u64) -> Option<GptHeader> {
    if sector.len() < 512 || &sector[0..8] != GPT_SIGNATURE {
        return None;
    }
    let header_size = le32(&sector[12..16]) as usize;
    if !(GPT_HEADER_MIN..=512).contains(&header_size) {
        return None;
    }
    let stored_crc = le32(&sector[16..20]);
    let mut h = sector[..header_size].to_vec();
    h[16..20].fill(0);
    if crc32(&h) != stored_crc {
        return None;
    }
    if le64(&sector[24..32]) != lba {
        return None;
    }
    let first_usable = le64(&sector[40..48]);
    let last_usable = le64(&sector[48..56]);
    if first_usable > last_lba || last_usable > last_lba || last_usable < first_usable {
        return None;
    }
    let entry_size = le32(&sector[84..88]);
    if entry_size < 128 || !entry_size.is_power_of_two() {
        return None;
    }
    let num_entries = le32(&sector[80..84]);
    if u64::from(num_entries) * u64::from(entry_size) > MAX_GPT_ARRAY_BYTES {
        return None;
    }
    Some(GptHeader { entry_lba: le64(&sector[72..80]), num_entries, entry_size, array_crc: le32(&sector[88..92]) })
}

/// GPT partition name: UTF-16LE, 36 code units, NUL-terminated.
fn utf16le_name(b: &[u8]) -> String {
    let units = b.chunks_exact(2).take(36).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0);
    char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
}

// ------------------------------------------------------------------- helpers

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

const CRC32_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as used by GPT.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC32_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

// --------------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
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

    const MBR2: &str = include_str!("../tests/data/partitions/mbr2.sectors");
    const MBREXT: &str = include_str!("../tests/data/partitions/mbrext.sectors");
    const GPT3: &str = include_str!("../tests/data/partitions/gpt3.sectors");

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
}
