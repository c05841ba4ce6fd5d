//! The filesystem without the kernel: the tree of inodes, its lookups,
//! listings, opens and errnos (`tree`), image files mapped to AoE ATA
//! commands (`image`), the control files (`control_files`), the status
//! attributes (`attrs`), names (`names`), partition tables and open image
//! files (`partitions`), sector range locks (`range_lock`) and read-ahead
//! (`readahead`). `fs` only adapts fuser to this (one method of `tree`
//! per FUSE operation), and errors become errno values in `error`.

mod attrs;
mod control_files;
mod error;
mod image;
mod names;
mod partitions;
mod range_lock;
pub mod readahead;
mod reply;
mod tree;

pub use attrs::{attr_is_command, attr_size, parse_mask_edit, parse_reserve, ATTRS};
pub use control_files::{command_bytes, Ctl, CTL_MAX_WRITE, ERR_READ_WAIT};
pub use error::{CtlError, Errno, Error};
pub use image::{CACHE_MAX_READ, WRITE_CHUNK};
pub use names::{
    parse_dev_name, parse_file_name, parse_sys_link_name, sys_link_name, sys_link_target, SYS_BLOCK_PREFIX,
};
pub use range_lock::{RangeGuard, RangeLocks};
pub use reply::{EmptyReply, ReadReply, WriteReply};
pub use tree::{Attr, DirEntry, Entry, Kind, Node, Opened, Refused, BLOCK_SIZE, TTL};

use crate::cache::Cache;
use crate::device::Device;
use crate::engine::{IoError, Op};
use crate::initiator::Initiator;
use crate::pool::Pool;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::Duration;

/// A device's partitions, shared with readers.
pub type Partitions = Arc<Vec<crate::partition::Partition>>;

/// A byte range of a device exposed as a file: the whole disk or a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub len: u64,
}

/// How long a lookup or listing waits for a partition table.
pub const PARTITION_READ_WAIT: Duration = Duration::from_secs(2);

/// The filesystem core.
pub struct BlockFs {
    pub ini: Arc<Initiator>,
    pub cache: Cache,
    pub pool: Pool,
    pub ranges: RangeLocks,
    pub readahead: readahead::Readahead,
    pub readonly: bool,
    /// Partition tables by device, and the open image files.
    tables: partitions::Tables,
}

/// Waits for one engine completion (worker threads only), or until `limit`
/// passed (`IoError::Timeout`; the request goes on).
fn wait_io(
    ini: &Initiator,
    dev: &Arc<Device>,
    op: Op,
    lba: u64,
    nsect: u32,
    data: Vec<u8>,
    limit: Option<Duration>,
) -> Result<Vec<u8>, IoError> {
    let slot = Arc::new((Mutex::new(None), Condvar::new()));
    let s2 = slot.clone();
    ini.submit(
        dev,
        op,
        lba,
        nsect,
        data,
        Box::new(move |r| {
            *s2.0.lock() = Some(r);
            s2.1.notify_one();
        }),
    );
    let deadline = limit.map(|l| std::time::Instant::now() + l);
    let mut g = slot.0.lock();
    while g.is_none() {
        match deadline {
            Some(d) => {
                if slot.1.wait_until(&mut g, d).timed_out() && g.is_none() {
                    return Err(IoError::Timeout);
                }
            }
            None => slot.1.wait(&mut g),
        }
    }
    g.take().expect("result")
}

impl BlockFs {
    /// `readahead_bytes`: most bytes fetched ahead of a sequential reader
    /// (0 disables read-ahead).
    pub fn new(
        ini: Arc<Initiator>,
        cache_bytes: usize,
        readahead_bytes: u64,
        workers: usize,
        readonly: bool,
    ) -> Arc<BlockFs> {
        Arc::new(BlockFs {
            ini,
            cache: Cache::new(cache_bytes),
            pool: Pool::new(workers),
            ranges: RangeLocks::default(),
            readahead: readahead::Readahead::new(readahead_bytes),
            readonly,
            tables: partitions::Tables::default(),
        })
    }

    /// Ends the mount's I/O, once the adapter has stopped: the initiator
    /// closes its links and fails what is pending, the workers finish.
    pub fn shutdown(&self) {
        self.ini.shutdown();
        self.pool.shutdown();
    }

    /// Reports a failed request on `err` (target errors only: a dead target
    /// is reported once, when it goes down) and gives the caller's error.
    pub fn io_failed(&self, dev: &Device, what: &str, lba: u64, e: IoError) -> Error {
        if !matches!(e, IoError::Dead | IoError::Down) {
            self.ini.errlog.push(format!("{}: {what} at sector {lba} failed: {e}", dev.name()));
        }
        e.into()
    }
}

/// `buf[off..off+size]`, clamped.
pub fn slice_at(buf: &[u8], off: u64, size: u32) -> &[u8] {
    let o = (off as usize).min(buf.len());
    let e = o.saturating_add(size as usize).min(buf.len());
    &buf[o..e]
}

#[cfg(test)]
mod tests {
    use super::slice_at;

    #[test]
    fn slices() {
        assert_eq!(slice_at(b"hello", 1, 3), b"ell");
        assert_eq!(slice_at(b"hello", 9, 3), b"");
        assert_eq!(slice_at(b"hello", 3, 100), b"lo");
    }
}
