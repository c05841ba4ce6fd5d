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
mod tests;
