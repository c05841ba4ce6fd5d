//! The image files: reads through the cache and read-ahead, writes (whole
//! sectors straight to the target in chunks; partial sectors read, merged
//! and written back under a sector range lock on the worker pool), and
//! fsync as FLUSH CACHE.

use super::{wait_io, BlockFs, EmptyReply, Error, ReadReply, Region, WriteReply};
use crate::cache::{BLOCK, BLOCK_SECTORS};
use crate::device::Device;
use crate::engine::{IoDone, IoError, Op};
use crate::fs_err;
use crate::initiator::Ticket;
use crate::wire::SECTOR;
use parking_lot::Mutex;
use std::sync::Arc;

/// Reads up to this size go through the cache.
pub const CACHE_MAX_READ: usize = 256 * 1024;

/// About this many bytes of a write are copied and submitted at a time.
pub const WRITE_CHUNK: usize = 128 << 10;

/// The chunk size for a device whose frames carry `payload` bytes: a whole
/// number of frames (no short frame at each chunk's end), about
/// [`WRITE_CHUNK`] bytes.
fn write_chunk(payload: usize) -> usize {
    let payload = payload.max(SECTOR);
    ((WRITE_CHUNK + payload / 2) / payload).max(1) * payload
}

/// Ends the application's request `t` (`Initiator::demand`: each read,
/// write and fsync of an image counts from when it is taken), then
/// answers it: the caller's next request must find this one ended.
fn ended<R>(t: Ticket, reply: impl FnOnce(R), res: R) {
    drop(t);
    reply(res)
}

/// Joins the completions of the parts of one request: `done` runs once,
/// after the last part, with the first error of any part.
struct Join(Mutex<JoinState>);

struct JoinState {
    left: usize,
    err: Option<IoError>,
    done: Option<IoDone>,
}

impl Join {
    fn new(parts: usize, done: impl FnOnce(Result<Vec<u8>, IoError>) + Send + 'static) -> Arc<Join> {
        Arc::new(Join(Mutex::new(JoinState { left: parts, err: None, done: Some(Box::new(done)) })))
    }

    fn part_done(&self, r: Result<Vec<u8>, IoError>) {
        let (done, err) = {
            let mut g = self.0.lock();
            if let Err(e) = r {
                g.err.get_or_insert(e);
            }
            g.left -= 1;
            if g.left > 0 {
                return;
            }
            (g.done.take(), g.err.take())
        };
        // Called without the lock held: `done` answers FUSE.
        if let Some(done) = done {
            done(err.map_or(Ok(Vec::new()), Err));
        }
    }
}

impl BlockFs {
    /// Records a read for read-ahead and fetches what the stream needs next.
    fn read_ahead(&self, dev: &Arc<Device>, off: u64, end: u64, disk: u64) {
        for buf in self.readahead.plan(dev.id, off, end, disk) {
            let b = buf.clone();
            self.ini.submit(
                dev,
                Op::Read,
                buf.off / SECTOR as u64,
                (buf.len / SECTOR as u64) as u32,
                Vec::new(),
                Box::new(move |r| b.complete(r)),
            );
        }
    }

    /// Reads `size` bytes at `off` of a region (the disk or a partition);
    /// answers asynchronously.
    pub fn read_image(self: &Arc<Self>, dev: &Arc<Device>, region: Region, off: u64, size: u32, reply: ReadReply) {
        let t = self.ini.demand.begin();
        let reply: ReadReply = Box::new(move |r| ended(t, reply, r));
        let disk = dev.sectors() * SECTOR as u64;
        let rlen = region.len.min(disk.saturating_sub(region.base));
        if off >= rlen || size == 0 {
            reply(Ok(&[]));
            return;
        }
        let end = region.base + (off + size as u64).min(rlen);
        let off = region.base + off;
        // Read-ahead hit (possibly still in flight).
        let reply = match self.readahead.try_serve(dev.id, off, end, reply) {
            Ok(()) => {
                self.read_ahead(dev, off, end, disk);
                return;
            }
            Err(reply) => reply,
        };
        self.read_uncached_or_cached(dev, off, end, disk, reply);
        // After the demand read, so that it is queued first.
        self.read_ahead(dev, off, end, disk);
    }

    fn read_uncached_or_cached(self: &Arc<Self>, dev: &Arc<Device>, off: u64, end: u64, disk: u64, reply: ReadReply) {
        let sectors = disk / SECTOR as u64;
        // Cached path: whole 4 KiB blocks inside the disk.
        let b0 = off / BLOCK as u64;
        let b1 = end.div_ceil(BLOCK as u64);
        if self.cache.enabled() && (end - off) as usize <= CACHE_MAX_READ && b1 * BLOCK_SECTORS <= sectors {
            let nb = b1 - b0;
            let mut buf = vec![0u8; nb as usize * BLOCK];
            let skip = (off - b0 * BLOCK as u64) as usize;
            let len = (end - off) as usize;
            if self.cache.get(dev.id, b0, nb, &mut buf) {
                reply(Ok(&buf[skip..skip + len]));
                return;
            }
            let epoch = self.cache.epoch(dev.id);
            let me = self.clone();
            let id = dev.id;
            let dev2 = dev.clone();
            self.ini.submit(
                dev,
                Op::Read,
                b0 * BLOCK_SECTORS,
                (nb * BLOCK_SECTORS) as u32,
                Vec::new(),
                Box::new(move |r| match r {
                    Ok(data) => {
                        me.cache.insert(id, b0, &data, epoch);
                        reply(Ok(&data[skip..skip + len]));
                    }
                    Err(e) => reply(Err(me.io_failed(&dev2, "read", b0 * BLOCK_SECTORS, e))),
                }),
            );
            return;
        }
        let lba0 = off / SECTOR as u64;
        let lba1 = end.div_ceil(SECTOR as u64);
        let skip = (off - lba0 * SECTOR as u64) as usize;
        let len = (end - off) as usize;
        let me = self.clone();
        let dev2 = dev.clone();
        self.ini.submit(
            dev,
            Op::Read,
            lba0,
            (lba1 - lba0) as u32,
            Vec::new(),
            Box::new(move |r| match r {
                Ok(data) => reply(Ok(&data[skip..skip + len])),
                Err(e) => reply(Err(me.io_failed(&dev2, "read", lba0, e))),
            }),
        );
    }

    /// Writes `data` (borrowed: fuser's request buffer) at `off` in `region`,
    /// and answers once the target acknowledged all of it. A whole-sector
    /// write is copied and submitted in chunks of about [`WRITE_CHUNK`]
    /// bytes, so its first frames are on the wire while the rest is copied;
    /// partial sectors are read, merged and written back under a sector
    /// range lock, on the worker pool.
    pub fn write_image(self: &Arc<Self>, dev: &Arc<Device>, region: Region, off: u64, data: &[u8], reply: WriteReply) {
        let t = self.ini.demand.begin();
        let reply: WriteReply = Box::new(move |r| ended(t, reply, r));
        if self.readonly || dev.is_readonly() {
            reply(Err(fs_err!(libc::EROFS, "{}: read-only", dev.name())));
            return;
        }
        let disk = dev.sectors() * SECTOR as u64;
        let rlen = region.len.min(disk.saturating_sub(region.base));
        if data.is_empty() {
            reply(Ok(0));
            return;
        }
        if off >= rlen {
            reply(Err(fs_err!(libc::ENOSPC, "{}: write at {off} past the end ({rlen} bytes)", dev.name())));
            return;
        }
        let data = &data[..data.len().min((rlen - off) as usize)];
        let off = region.base + off;
        let len = data.len() as u64;
        let (lba0, lba1) = (off / SECTOR as u64, (off + len).div_ceil(SECTOR as u64));
        // Whole sectors with nothing overlapping in progress: straight to the
        // target from this thread, answered from the completion.
        if off.is_multiple_of(SECTOR as u64)
            && len.is_multiple_of(SECTOR as u64)
            && self.ranges.try_lock(dev.id, lba0, lba1)
        {
            let me = self.clone();
            let d2 = dev.clone();
            let chunk = write_chunk(dev.payload());
            let join = Join::new(data.len().div_ceil(chunk), move |r| {
                let res = me.write_done(&d2, lba0, lba1 - lba0, len as u32, r);
                me.ranges.unlock(d2.id, lba0, lba1);
                reply(res);
            });
            for (i, part) in data.chunks(chunk).enumerate() {
                let j = join.clone();
                let lba = lba0 + (i * chunk / SECTOR) as u64;
                self.ini.submit(
                    dev,
                    Op::Write,
                    lba,
                    (part.len() / SECTOR) as u32,
                    part.to_vec(),
                    Box::new(move |r| j.part_done(r)),
                );
            }
            return;
        }
        let me = self.clone();
        let dev = dev.clone();
        let data = data.to_vec();
        self.pool.spawn(move || {
            let r = me.write_blocking(&dev, off, data);
            reply(r);
        });
    }

    fn write_blocking(&self, dev: &Arc<Device>, off: u64, data: Vec<u8>) -> Result<u32, Error> {
        let len = data.len();
        let end = off + len as u64;
        let lba0 = off / SECTOR as u64;
        let lba1 = end.div_ceil(SECTOR as u64);
        let nsect = lba1 - lba0;
        let _g = self.ranges.lock(dev.id, lba0, lba1);
        let head = (off % SECTOR as u64) as usize;
        let tail = (end % SECTOR as u64) as usize;
        let buf = if head == 0 && tail == 0 {
            data
        } else {
            let mut buf = vec![0u8; nsect as usize * SECTOR];
            // Read the partial first and last sectors (one read when they are
            // the same sector or adjacent).
            let io =
                |lba: u64, n: u32| wait_io(&self.ini, dev, Op::Read, lba, n, Vec::new(), None).map_err(Error::from);
            if nsect <= 2 {
                buf.copy_from_slice(&io(lba0, nsect as u32)?);
            } else {
                if head != 0 {
                    buf[..SECTOR].copy_from_slice(&io(lba0, 1)?);
                }
                if tail != 0 {
                    let o = (nsect as usize - 1) * SECTOR;
                    buf[o..].copy_from_slice(&io(lba1 - 1, 1)?);
                }
            }
            buf[head..head + len].copy_from_slice(&data);
            buf
        };
        let r = wait_io(&self.ini, dev, Op::Write, lba0, nsect as u32, buf, None);
        self.write_done(dev, lba0, nsect, len as u32, r)
    }

    /// After the target answered a write: invalidate, map the result.
    fn write_done(
        &self,
        dev: &Device,
        lba0: u64,
        nsect: u64,
        len: u32,
        r: Result<Vec<u8>, IoError>,
    ) -> Result<u32, Error> {
        // Invalidate after the target answered, success or not: a failed
        // write may have written some sectors.
        self.cache.invalidate(dev.id, lba0, nsect);
        self.readahead.invalidate(dev.id);
        match r {
            Ok(_) => Ok(len),
            // A refusal as `vblade -r` answers it: ERR status, ABRT error.
            // (An ABRT bit with a good status is a damaged reply: EIO.)
            Err(IoError::Ata { status, error })
                if status & crate::wire::ATA_STATUS_ERR != 0 && error & crate::wire::ATA_ERR_ABRT != 0 =>
            {
                if !dev.readonly.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    self.ini.errlog.push(format!("{}: target refused a write (ABRT): read-only", dev.name()));
                }
                Err(fs_err!(libc::EROFS, "{}: the target refused a write: read-only", dev.name()))
            }
            Err(e) => Err(self.io_failed(dev, "write", lba0, e)),
        }
    }

    /// fsync: FLUSH CACHE (EXT when IDENTIFY says so), answered once the
    /// target answered.
    pub fn fsync_image(self: &Arc<Self>, dev: &Arc<Device>, reply: EmptyReply) {
        let t = self.ini.demand.begin();
        let reply: EmptyReply = Box::new(move |r| ended(t, reply, r));
        if !dev.is_up() {
            reply(Err(IoError::Down.into()));
            return;
        }
        if !dev.can_flush() || self.readonly {
            reply(Ok(()));
            return;
        }
        let me = self.clone();
        let dev = dev.clone();
        self.pool.spawn(move || {
            let r = wait_io(&me.ini, &dev, Op::Flush, 0, 0, Vec::new(), None);
            if let Err(e) = &r {
                me.ini.errlog.push(format!("{}: FLUSH CACHE failed: {e}", dev.name()));
            }
            reply(r.map(|_| ()).map_err(Error::from));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_chunks_are_whole_frames_of_about_128k() {
        assert_eq!(write_chunk(1024), 128 << 10);
        assert_eq!(write_chunk(8704), 15 * 8704);
        assert_eq!(write_chunk(512 * 255), 512 * 255);
        // A payload not yet known (0) still gives whole sectors.
        assert_eq!(write_chunk(0), 128 << 10);
        for p in (1..=255).map(|n| n * SECTOR) {
            let c = write_chunk(p);
            assert!(c.is_multiple_of(p) && c.abs_diff(WRITE_CHUNK) <= p / 2, "{p} -> {c}");
        }
    }

    #[test]
    fn join_answers_once_after_the_last_part_with_the_first_error() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let j = Join::new(3, move |r| g.lock().push(r.map(|v| v.len())));
        j.part_done(Ok(vec![1]));
        j.part_done(Err(IoError::Dead));
        assert!(got.lock().is_empty(), "answered before the last part");
        j.part_done(Err(IoError::Down));
        assert_eq!(got.lock().len(), 1);
        assert!(matches!(got.lock()[0], Err(IoError::Dead)), "{:?}", got.lock());

        let g = got.clone();
        let j = Join::new(2, move |r| g.lock().push(r.map(|v| v.len())));
        j.part_done(Ok(vec![1, 2]));
        j.part_done(Ok(vec![3]));
        assert!(matches!(got.lock()[1], Ok(0)), "parts' buffers are not passed on");
        assert_eq!(got.lock().len(), 2);
    }
}
