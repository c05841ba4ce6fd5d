//! The partition files `eX.YpN`: each device's partition table, read through
//! the device and kept until it goes stale, and the open image files. A
//! table goes stale when a writer closes an image file after writing the
//! sectors that hold it (as udev's watch rule makes the kernel read a disk's
//! table again when a writer closes it), on `revalidate`, and when the
//! device's size changes. A stale table is read again on next use, but never
//! while one of its partition files is open: an open partition file is not
//! remapped under its opener, and no new partition is listed over it (the
//! kernel refuses to re-read a table then, with EBUSY; here the read waits
//! until the last partition file of the device is closed, and `err` says so).

use super::{wait_io, BlockFs, Partitions, Region, PARTITION_READ_WAIT};
use crate::device::Device;
use crate::engine::Op;
use crate::partition::{read_table, writes_table};
use crate::wire::SECTOR;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A device's partition table as it was read.
struct Table {
    /// The device generation it was read at (a new size reads it again).
    gen: u64,
    /// The disk's size then, in sectors.
    disk_sectors: u64,
    parts: Partitions,
    /// What the parser read, as (start, count): where a write changes the table.
    sectors: Vec<(u64, u64)>,
    /// Written or revalidated since: read again once no partition file is open.
    stale: bool,
    /// The partition files open, by number, with how often each is.
    open: BTreeMap<u32, u32>,
}

impl Table {
    /// Whether the table is used as it is: it is current, or a partition
    /// file of it is open.
    fn in_force(&self, gen: u64) -> bool {
        (self.gen == gen && !self.stale) || !self.open.is_empty()
    }
}

/// One open image file (the disk, part 0, or a partition).
struct Handle {
    dev: u32,
    part: u32,
    /// It wrote the sectors that hold the partition table since it was
    /// opened or last closed (a close of one of its descriptors).
    wrote_table: bool,
}

/// The partition tables by device id, and the open image files by handle.
/// Leaf locks, never held together.
#[derive(Default)]
pub(super) struct Tables {
    tables: Mutex<HashMap<u32, Table>>,
    handles: Mutex<HashMap<u64, Handle>>,
    last_handle: AtomicU64,
}

/// `e0.1p5, e0.1p6`: the names of a device's open partition files.
fn open_names(dev: &str, open: &BTreeMap<u32, u32>) -> String {
    open.keys().map(|n| format!("{dev}p{n}")).collect::<Vec<_>>().join(", ")
}

impl BlockFs {
    /// The device's partitions, read from its MBR/GPT the first time and
    /// again when the table went stale (see the module), unless a partition
    /// file of it is open. A read blocks the calling thread (a FUSE thread,
    /// for lookups and listings) for up to `PARTITION_READ_WAIT` per sector
    /// read; a table that could not be read is not kept, so the next call
    /// tries again.
    pub fn partitions(&self, dev: &Arc<Device>) -> Partitions {
        let gen = dev.generation.load(Ordering::Acquire);
        if let Some(t) = self.tables.tables.lock().get(&dev.id) {
            if t.in_force(gen) {
                return t.parts.clone();
            }
        }
        if !dev.is_up() {
            return Arc::new(Vec::new());
        }
        let disk_sectors = dev.sectors();
        let mut failed = false;
        let mut sectors = Vec::new();
        let mut read = |lba: u64, n: u32| {
            sectors.push((lba, u64::from(n)));
            wait_io(&self.ini, dev, Op::Read, lba, n, Vec::new(), Some(PARTITION_READ_WAIT)).map_err(|e| {
                failed = true;
                std::io::Error::other(e)
            })
        };
        let parts = match read_table(disk_sectors, &mut read) {
            Ok((_, p)) => Arc::new(p),
            Err(e) => {
                log::info!("{}: partition table: {e}", dev.name());
                Arc::new(Vec::new())
            }
        };
        if failed {
            return parts;
        }
        let new = Table { gen, disk_sectors, parts: parts.clone(), sectors, stale: false, open: BTreeMap::new() };
        let mut g = self.tables.tables.lock();
        match g.get_mut(&dev.id) {
            // A partition file was opened from the old table meanwhile.
            Some(t) if !t.open.is_empty() => t.parts.clone(),
            Some(t) => {
                if t.parts != parts {
                    log::info!("{}: partition table read again: {} partitions", dev.name(), parts.len());
                }
                *t = new;
                parts
            }
            None => {
                g.insert(dev.id, new);
                parts
            }
        }
    }

    /// The byte range of `e{shelf}.{slot}` (part 0) or of partition `part`.
    pub fn region(&self, dev: &Arc<Device>, part: u32) -> Option<Region> {
        if part == 0 {
            return Some(Region { base: 0, len: dev.sectors() * SECTOR as u64 });
        }
        self.partitions(dev)
            .iter()
            .find(|p| p.number == part)
            .map(|p| Region { base: p.start * SECTOR as u64, len: p.sectors * SECTOR as u64 })
    }

    /// Opens image `part` of `dev` (0: the disk): counts it as open (the
    /// device's opener count, and the partition's, which keeps its table in
    /// force) and returns its handle; None if there is no such partition.
    pub fn open_image(&self, dev: &Arc<Device>, part: u32) -> Option<u64> {
        if part > 0 {
            self.partitions(dev);
            let mut g = self.tables.tables.lock();
            let t = g.get_mut(&dev.id)?;
            if !t.parts.iter().any(|p| p.number == part) {
                return None;
            }
            *t.open.entry(part).or_insert(0) += 1;
        }
        dev.opened();
        let fh = self.tables.last_handle.fetch_add(1, Ordering::Relaxed) + 1;
        self.tables.handles.lock().insert(fh, Handle { dev: dev.id, part, wrote_table: false });
        Some(fh)
    }

    /// Notes a write of `len` bytes at `off` of image `region` through
    /// handle `fh`: whether it touches the sectors of the partition table
    /// (`partition::writes_table`), which is then read again when the
    /// writer closes the file.
    pub fn wrote_image(&self, fh: u64, dev: &Device, region: Region, off: u64, len: usize) {
        let start = region.base.saturating_add(off.min(region.len));
        let end = region.base.saturating_add(off.saturating_add(len as u64).min(region.len));
        let lba = start / SECTOR as u64;
        let count = end.div_ceil(SECTOR as u64).saturating_sub(lba);
        let hit = {
            let g = self.tables.tables.lock();
            match g.get(&dev.id) {
                Some(t) => writes_table(lba, count, t.disk_sectors, &t.sectors),
                // No table read yet, so the write is to the disk (part 0).
                None => writes_table(lba, count, region.len / SECTOR as u64, &[]),
            }
        };
        if hit {
            if let Some(h) = self.tables.handles.lock().get_mut(&fh) {
                h.wrote_table = true;
            }
        }
    }

    /// A descriptor of handle `fh` is closed (FUSE flush, before close(2)
    /// returns): if it wrote the partition table, the table goes stale.
    pub fn closing_image(&self, fh: u64) {
        let (dev, part) = match self.tables.handles.lock().get_mut(&fh) {
            Some(h) if h.wrote_table => {
                h.wrote_table = false;
                (h.dev, h.part)
            }
            _ => return,
        };
        self.partitions_stale(dev, "rewritten", part);
    }

    /// The last descriptor of handle `fh` is gone (FUSE release): the file
    /// is no longer open; the device's last closer may bring a down target
    /// back.
    pub fn release_image(&self, fh: u64) {
        let Some(h) = self.tables.handles.lock().remove(&fh) else { return };
        if h.wrote_table {
            self.partitions_stale(h.dev, "rewritten", h.part);
        }
        if h.part > 0 {
            if let Some(t) = self.tables.tables.lock().get_mut(&h.dev) {
                if let Some(n) = t.open.get_mut(&h.part) {
                    *n -= 1;
                    if *n == 0 {
                        t.open.remove(&h.part);
                    }
                }
            }
        }
        // The device may have been flushed meanwhile: look it up even if no
        // longer visible.
        if let Some(d) = self.ini.device_by_id(h.dev) {
            self.ini.closed(&d);
        }
    }

    /// The device's partition table is to be read again (`why`: it was
    /// rewritten, or revalidated); `err` says so when partition files keep
    /// the old one in force, other than `own` (the writer's own partition,
    /// written through and being closed; 0: none).
    pub(super) fn partitions_stale(&self, dev: u32, why: &str, own: u32) {
        let mut open = match self.tables.tables.lock().get_mut(&dev) {
            Some(t) => {
                t.stale = true;
                t.open.clone()
            }
            None => return,
        };
        if let Some(n) = open.get_mut(&own) {
            *n -= 1;
            if *n == 0 {
                open.remove(&own);
            }
        }
        if open.is_empty() {
            return;
        }
        let Some(d) = self.ini.device_by_id(dev) else { return };
        let name = d.name();
        self.ini.errlog.push(format!(
            "{name}: partition table {why} while {} open: its partitions stay as they are until every partition \
             file of {name} is closed",
            open_names(&name, &open),
        ));
    }

    /// Forgets a flushed device's partition table.
    pub(super) fn forget_partitions(&self, dev: u32) {
        self.tables.tables.lock().remove(&dev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(gen: u64, stale: bool, open: &[u32]) -> Table {
        Table {
            gen,
            disk_sectors: 1000,
            parts: Arc::new(Vec::new()),
            sectors: Vec::new(),
            stale,
            open: open.iter().map(|&n| (n, 1)).collect(),
        }
    }

    #[test]
    fn a_table_stays_in_force_while_a_partition_file_is_open() {
        assert!(table(3, false, &[]).in_force(3));
        // Read again: rewritten or revalidated, or the size changed...
        assert!(!table(3, true, &[]).in_force(3));
        assert!(!table(3, false, &[]).in_force(4));
        // ...but not under an open partition file.
        assert!(table(3, true, &[5]).in_force(3));
        assert!(table(3, false, &[1, 5]).in_force(4));
        assert_eq!(open_names("e0.1", &[(5, 2), (1, 1)].into_iter().collect()), "e0.1p1, e0.1p5");
    }
}
