//! Everything the filesystem does, without the kernel: image reads and
//! writes mapped to AoE ATA commands (through the cache, the worker pool and
//! sector range locks), fsync as FLUSH CACHE, the control files and the
//! status attributes. `fs` only adapts fuser to this. Errors become errno
//! values here and nowhere else (`errno_of`, `CtlError`).

use crate::cache::{Cache, BLOCK, BLOCK_SECTORS};
use crate::engine::{IoError, Op};
use crate::pool::Pool;
use crate::target::{CtlFailure, CtlReply, CtlRequest, Device, FlushError, Initiator};
use crate::wire::{AoeError, Directive, Mac, SECTOR};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::Duration;

pub type Errno = i32;

/// The one place I/O errors become errno values.
pub fn errno_of(e: &IoError) -> Errno {
    match e {
        IoError::Ata { .. } | IoError::Aoe(_) | IoError::Dead | IoError::Down | IoError::Timeout => libc::EIO,
    }
}

/// Control-file errors, and their errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlError {
    /// Malformed input, unknown interface, unknown command.
    Invalid(String),
    NoSuchDevice,
    Busy,
    TooLong,
    NotWritable,
    /// The target answered a control command with an AoE error.
    Refused(AoeError),
    /// MAC mask list full.
    ListFull,
    /// No answer from the target.
    Timeout,
}

impl CtlError {
    pub fn errno(&self) -> Errno {
        match self {
            CtlError::Invalid(_) => libc::EINVAL,
            CtlError::NoSuchDevice => libc::ENXIO,
            CtlError::Busy => libc::EBUSY,
            CtlError::TooLong => libc::EFBIG,
            CtlError::NotWritable => libc::EBADF,
            CtlError::Refused(AoeError::ConfigStringPresent) | CtlError::Refused(AoeError::TargetReserved) => {
                libc::EBUSY
            }
            CtlError::Refused(AoeError::BadArgument) | CtlError::Refused(AoeError::BadCommand) => libc::EINVAL,
            CtlError::Refused(_) => libc::EIO,
            CtlError::ListFull => libc::ENOSPC,
            CtlError::Timeout => libc::ETIMEDOUT,
        }
    }
}

/// Largest write a control file accepts.
pub const CTL_MAX_WRITE: usize = 4096;
/// Reads up to this size go through the cache.
pub const CACHE_MAX_READ: usize = 256 * 1024;
/// How long one read of `err` waits before answering EINTR (callers such as
/// cat retry; a reader's Ctrl-C takes effect at that point).
pub const ERR_READ_WAIT: Duration = Duration::from_millis(500);

/// The control files at the top of the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctl {
    Discover,
    Interfaces,
    Err,
    Revalidate,
    Flush,
}

impl Ctl {
    pub const ALL: [Ctl; 5] = [Ctl::Discover, Ctl::Interfaces, Ctl::Err, Ctl::Revalidate, Ctl::Flush];
    pub fn name(self) -> &'static str {
        match self {
            Ctl::Discover => "discover",
            Ctl::Interfaces => "interfaces",
            Ctl::Err => "err",
            Ctl::Revalidate => "revalidate",
            Ctl::Flush => "flush",
        }
    }
    pub fn mode(self) -> u16 {
        match self {
            Ctl::Discover | Ctl::Revalidate | Ctl::Flush => 0o200,
            Ctl::Interfaces => 0o644,
            Ctl::Err => 0o444,
        }
    }
}

/// Status attributes in `block/eX.Y/`.
pub const ATTRS: [&str; 12] = [
    "state",
    "mac",
    "netif",
    "firmware-version",
    "payload",
    "size",
    "model",
    "serial",
    "stats",
    "config",
    "masks",
    "reserve",
];

/// Attributes that send a command to the target when read or written.
pub fn attr_is_command(name: &str) -> bool {
    matches!(name, "config" | "masks" | "reserve")
}

/// Parses a `masks` write: whitespace/comma-separated `+MAC` (add), `-MAC`
/// (delete) or `MAC` (add); `self` stands for this host's MACs. A target
/// with a non-empty list ignores every MAC not on it, this host's too.
pub fn parse_mask_edit(text: &str, own: &[Mac]) -> Result<Vec<Directive>, CtlError> {
    let mut v = Vec::new();
    for tok in text.split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty()) {
        let (dcmd, m) = match tok.as_bytes()[0] {
            b'+' => (1, &tok[1..]),
            b'-' => (2, &tok[1..]),
            _ => (1, tok),
        };
        if m == "self" {
            v.extend(own.iter().map(|&mac| Directive { dcmd, mac }));
            continue;
        }
        let mac = Mac::parse(m).ok_or_else(|| CtlError::Invalid(format!("bad MAC {tok:?}")))?;
        v.push(Directive { dcmd, mac });
    }
    if v.is_empty() || v.len() > 255 {
        return Err(CtlError::Invalid("masks: give 1 to 255 of +MAC or -MAC".into()));
    }
    Ok(v)
}

/// Parses a `reserve` write: MACs to reserve for (`self` = this host's
/// MACs), `!` first to force, nothing or `release` to release.
pub fn parse_reserve(text: &str, own: &[Mac]) -> Result<(Vec<Mac>, bool), CtlError> {
    let t = text.trim();
    let (force, t) = match t.strip_prefix('!') {
        Some(r) => (true, r.trim()),
        None => (false, t),
    };
    if t.is_empty() || t == "release" {
        return Ok((Vec::new(), force));
    }
    let mut macs = Vec::new();
    for tok in t.split(|c: char| c.is_whitespace() || c == ',').filter(|x| !x.is_empty()) {
        if tok == "self" {
            macs.extend_from_slice(own);
            continue;
        }
        macs.push(Mac::parse(tok).ok_or_else(|| CtlError::Invalid(format!("bad MAC {tok:?}")))?);
    }
    if macs.len() > 255 {
        return Err(CtlError::Invalid("reserve: at most 255 MACs".into()));
    }
    Ok((macs, force))
}

/// Parses `e{shelf}.{slot}` (surrounding whitespace allowed).
pub fn parse_dev_name(s: &str) -> Option<(u16, u8)> {
    let s = s.trim().strip_prefix('e')?;
    let (a, b) = s.split_once('.')?;
    let digits = |x: &str| !x.is_empty() && x.len() <= 5 && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let shelf: u32 = a.parse().ok()?;
    let slot: u32 = b.parse().ok()?;
    if shelf >= 0xFFFF || slot >= 0xFF {
        return None;
    }
    Some((shelf as u16, slot as u8))
}

/// Sector range locks: read-modify-write of partial sectors must not
/// interleave with another write to the same sectors.
#[derive(Default)]
pub struct RangeLocks {
    held: Mutex<Vec<(u32, u64, u64)>>,
    cv: Condvar,
}

pub struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    key: (u32, u64, u64),
}

impl RangeLocks {
    /// Waits until no held range of `dev` overlaps, then holds this one.
    pub fn lock(&self, dev: u32, start: u64, end: u64) -> RangeGuard<'_> {
        let mut g = self.held.lock();
        while g.iter().any(|&(d, s, e)| d == dev && s < end && start < e) {
            self.cv.wait(&mut g);
        }
        g.push((dev, start, end));
        RangeGuard { locks: self, key: (dev, start, end) }
    }

    /// Holds the range if nothing overlaps it now; the caller must `unlock`.
    pub fn try_lock(&self, dev: u32, start: u64, end: u64) -> bool {
        let mut g = self.held.lock();
        if g.iter().any(|&(d, s, e)| d == dev && s < end && start < e) {
            return false;
        }
        g.push((dev, start, end));
        true
    }

    pub fn unlock(&self, dev: u32, start: u64, end: u64) {
        let mut g = self.held.lock();
        if let Some(i) = g.iter().position(|k| *k == (dev, start, end)) {
            g.swap_remove(i);
        }
        drop(g);
        self.cv.notify_all();
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let (d, s, e) = self.key;
        self.locks.unlock(d, s, e);
    }
}

/// Waits for one engine completion (worker threads only).
fn wait_io(
    ini: &Initiator,
    dev: &Arc<Device>,
    op: Op,
    lba: u64,
    nsect: u32,
    data: Vec<u8>,
) -> Result<Vec<u8>, IoError> {
    wait_io_for(ini, dev, op, lba, nsect, data, None)
}

/// `wait_io` that gives up waiting after `limit` (the request goes on).
fn wait_io_for(
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

/// A device's partitions, shared with readers.
pub type Partitions = Arc<Vec<crate::partition::Partition>>;

/// A byte range of a device exposed as a file: the whole disk or a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub len: u64,
}

/// How long a directory listing waits for a partition table.
pub const PARTITION_READ_WAIT: Duration = Duration::from_secs(2);

/// Parses an image file name: `e0.1` (part 0, the disk) or `e0.1p2`.
pub fn parse_file_name(s: &str) -> Option<(u16, u8, u32)> {
    match s.rsplit_once('p') {
        Some((dev, n)) if !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()) => {
            let (sh, sl) = parse_dev_name(dev)?;
            let n: u32 = n.parse().ok()?;
            (1..=crate::partition::MAX_PARTITION_NUMBER).contains(&n).then_some((sh, sl, n))
        }
        _ => parse_dev_name(s).map(|(a, b)| (a, b, 0)),
    }
}

/// The filesystem core.
pub struct Core {
    pub ini: Arc<Initiator>,
    pub cache: Cache,
    pub pool: Pool,
    pub ranges: RangeLocks,
    pub readahead: crate::readahead::Readahead,
    pub readonly: bool,
    /// Partition tables by device id, with the device generation they were
    /// read at.
    parts: Mutex<std::collections::HashMap<u32, (u64, Partitions)>>,
}

/// Answers a read with a borrowed slice, so data goes to FUSE straight from
/// the buffer it was received into.
pub type ReadReply = Box<dyn for<'a> FnOnce(Result<&'a [u8], Errno>) + Send>;
pub type WriteReply = Box<dyn FnOnce(Result<u32, Errno>) + Send>;
pub type EmptyReply = Box<dyn FnOnce(Result<(), Errno>) + Send>;

/// About this many bytes of a write are copied and submitted at a time.
pub const WRITE_CHUNK: usize = 128 << 10;

/// The chunk size for a device whose frames carry `payload` bytes: a whole
/// number of frames (no short frame at each chunk's end), about
/// [`WRITE_CHUNK`] bytes.
fn write_chunk(payload: usize) -> usize {
    let payload = payload.max(SECTOR);
    ((WRITE_CHUNK + payload / 2) / payload).max(1) * payload
}

/// Joins the completions of the parts of one request: `done` runs once,
/// after the last part, with the first error of any part.
struct Join(Mutex<JoinState>);

struct JoinState {
    left: usize,
    err: Option<IoError>,
    done: Option<crate::engine::IoDone>,
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

impl Core {
    /// `readahead_bytes`: most bytes fetched ahead of a sequential reader
    /// (0 disables read-ahead).
    pub fn new(
        ini: Arc<Initiator>,
        cache_bytes: usize,
        readahead_bytes: u64,
        workers: usize,
        readonly: bool,
    ) -> Arc<Core> {
        Arc::new(Core {
            ini,
            cache: Cache::new(cache_bytes),
            pool: Pool::new(workers),
            ranges: RangeLocks::default(),
            readahead: crate::readahead::Readahead::new(readahead_bytes),
            readonly,
            parts: Mutex::new(Default::default()),
        })
    }

    /// The device's partitions (read from its MBR/GPT the first time, again
    /// after revalidate or a size change). Waits a bounded time.
    pub fn partitions(&self, dev: &Arc<Device>) -> Partitions {
        let gen = dev.generation.load(std::sync::atomic::Ordering::Acquire);
        if let Some((g, p)) = self.parts.lock().get(&dev.id) {
            if *g == gen {
                return p.clone();
            }
        }
        if !dev.is_up() {
            return Arc::new(Vec::new());
        }
        let mut failed = false;
        let mut read = |lba: u64, n: u32| {
            wait_io_for(&self.ini, dev, Op::Read, lba, n, Vec::new(), Some(PARTITION_READ_WAIT)).map_err(|e| {
                failed = true;
                e.to_string()
            })
        };
        let parts = match crate::partition::read_table(dev.sectors(), &mut read) {
            Ok((_, p)) => p,
            Err(e) => {
                log::info!("{}: partition table: {e}", dev.name());
                Vec::new()
            }
        };
        let parts = Arc::new(parts);
        if !failed {
            self.parts.lock().insert(dev.id, (gen, parts.clone()));
        }
        parts
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

    /// Reports a failed request on `err` (target errors only: a dead target
    /// is reported once, when it goes down) and gives its errno.
    pub fn io_failed(&self, dev: &Device, what: &str, lba: u64, e: &IoError) -> Errno {
        if !matches!(e, IoError::Dead | IoError::Down) {
            self.ini.errlog.push(format!("{}: {what} at sector {lba} failed: {e}", dev.name()));
        }
        errno_of(e)
    }

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
                Box::new(move |r| b.complete(r.map_err(|e| errno_of(&e)))),
            );
        }
    }

    /// Reads `size` bytes at `off` of a region (the disk or a partition);
    /// answers asynchronously.
    pub fn read_image(self: &Arc<Self>, dev: &Arc<Device>, region: Region, off: u64, size: u32, reply: ReadReply) {
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
                    Err(e) => reply(Err(me.io_failed(&dev2, "read", b0 * BLOCK_SECTORS, &e))),
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
                Err(e) => reply(Err(me.io_failed(&dev2, "read", lba0, &e))),
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
        if self.readonly || dev.readonly.load(std::sync::atomic::Ordering::Acquire) {
            reply(Err(libc::EROFS));
            return;
        }
        let disk = dev.sectors() * SECTOR as u64;
        let rlen = region.len.min(disk.saturating_sub(region.base));
        if data.is_empty() {
            reply(Ok(0));
            return;
        }
        if off >= rlen {
            reply(Err(libc::ENOSPC));
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
            let chunk = write_chunk(dev.inner.lock().io.payload());
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

    fn write_blocking(&self, dev: &Arc<Device>, off: u64, data: Vec<u8>) -> Result<u32, Errno> {
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
            let io = |lba: u64, n: u32| wait_io(&self.ini, dev, Op::Read, lba, n, Vec::new()).map_err(|e| errno_of(&e));
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
        let r = wait_io(&self.ini, dev, Op::Write, lba0, nsect as u32, buf);
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
    ) -> Result<u32, Errno> {
        // Invalidate after the target answered, success or not: a failed
        // write may have written some sectors.
        self.cache.invalidate(dev.id, lba0, nsect);
        self.readahead.invalidate(dev.id);
        match r {
            Ok(_) => Ok(len),
            Err(IoError::Ata { error, .. }) if error & crate::wire::ATA_ERR_ABRT != 0 => {
                if !dev.readonly.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    self.ini.errlog.push(format!("{}: target refused a write (ABRT): read-only", dev.name()));
                }
                Err(libc::EROFS)
            }
            Err(e) => Err(self.io_failed(dev, "write", lba0, &e)),
        }
    }

    /// fsync: FLUSH CACHE (EXT when IDENTIFY says so), answered once the
    /// target answered.
    pub fn fsync_image(self: &Arc<Self>, dev: &Arc<Device>, reply: EmptyReply) {
        let supported = dev.inner.lock().identify.as_ref().is_some_and(|i| i.flush || i.flush_ext);
        if !dev.is_up() {
            reply(Err(libc::EIO));
            return;
        }
        if !supported || self.readonly {
            reply(Ok(()));
            return;
        }
        let me = self.clone();
        let dev = dev.clone();
        self.pool.spawn(move || {
            let r = wait_io(&me.ini, &dev, Op::Flush, 0, 0, Vec::new());
            if let Err(e) = &r {
                me.ini.errlog.push(format!("{}: FLUSH CACHE failed: {e}", dev.name()));
            }
            reply(r.map(|_| ()).map_err(|e| errno_of(&e)));
        });
    }

    /// Reads a control file. `err` blocks (on a worker) for a bounded time.
    pub fn read_ctl(self: &Arc<Self>, ctl: Ctl, off: u64, size: u32, reply: ReadReply) {
        match ctl {
            Ctl::Interfaces => {
                let s = format!("{}\n", self.ini.interfaces().join(" "));
                reply(Ok(slice_at(s.as_bytes(), off, size)));
            }
            Ctl::Err => {
                let me = self.clone();
                self.pool.spawn(move || match me.ini.errlog.pop_timeout(ERR_READ_WAIT) {
                    Some(m) => reply(Ok(slice_at(m.as_bytes(), 0, size))),
                    None => reply(Err(libc::EINTR)),
                });
            }
            _ => reply(Err(libc::EBADF)),
        }
    }

    /// Writes a control file: one command per write.
    pub fn write_ctl(&self, ctl: Ctl, data: &[u8]) -> Result<(), CtlError> {
        if data.len() > CTL_MAX_WRITE {
            return Err(CtlError::TooLong);
        }
        if ctl == Ctl::Discover {
            // As with the driver, any write triggers discovery.
            self.ini.discover();
            return Ok(());
        }
        let text = std::str::from_utf8(data).map_err(|_| CtlError::Invalid("not text".into()))?;
        if text.bytes().any(|b| b < 0x20 && !b.is_ascii_whitespace()) {
            return Err(CtlError::Invalid("control characters".into()));
        }
        match ctl {
            Ctl::Discover => unreachable!("handled above"),
            Ctl::Interfaces => {
                let names = crate::link::split_iflist(text);
                if let Some(bad) = names.iter().find(|n| !crate::link::valid_ifname(n)) {
                    return Err(CtlError::Invalid(format!("bad interface name {bad:?}")));
                }
                self.ini.set_interfaces(&names).map_err(CtlError::Invalid)?;
                self.ini.discover();
                Ok(())
            }
            Ctl::Revalidate => {
                let (shelf, slot) = parse_dev_name(text).ok_or_else(|| CtlError::Invalid(text.into()))?;
                // The driver answers EINVAL for a device it does not know.
                let dev = self
                    .ini
                    .device(shelf, slot)
                    .ok_or_else(|| CtlError::Invalid(format!("no device {}", text.trim())))?;
                self.parts.lock().remove(&dev.id);
                self.ini.revalidate(&dev);
                Ok(())
            }
            Ctl::Flush => {
                let t = text.trim();
                let which = if t.is_empty() {
                    None
                } else if t == "all" {
                    Some(None)
                } else {
                    Some(Some(parse_dev_name(t).ok_or_else(|| CtlError::Invalid(t.into()))?))
                };
                let before: Vec<u32> = self.ini.devices().iter().map(|d| d.id).collect();
                self.ini.flush(which).map_err(|e| match e {
                    FlushError::NoSuchDevice => CtlError::NoSuchDevice,
                    FlushError::Busy => CtlError::Busy,
                })?;
                let after: Vec<u32> = self.ini.devices().iter().map(|d| d.id).collect();
                for id in before.into_iter().filter(|i| !after.contains(i)) {
                    self.cache.drop_device(id);
                }
                Ok(())
            }
            Ctl::Err => Err(CtlError::NotWritable),
        }
    }

    /// Reads an attribute; `config`, `masks` and `reserve` ask the target
    /// (on a worker thread), the others answer at once.
    pub fn read_attr(self: &Arc<Self>, dev: &Arc<Device>, attr: &'static str, off: u64, size: u32, reply: ReadReply) {
        if !attr_is_command(attr) {
            return match self.status_attr(dev, attr) {
                Some(s) => reply(Ok(slice_at(s.as_bytes(), off, size))),
                None => reply(Err(libc::ENOENT)),
            };
        }
        let me = self.clone();
        let dev = dev.clone();
        self.pool.spawn(move || {
            let req = match attr {
                "config" => CtlRequest::ConfigRead,
                "masks" => CtlRequest::MaskRead,
                _ => CtlRequest::ReserveRead,
            };
            let text = me.ini.control(&dev, &req).map_err(ctl_failure).and_then(|mut r| match r.remove(0) {
                CtlReply::Config(c) => Ok(format!("{}\n", String::from_utf8_lossy(&c))),
                CtlReply::Masks { macs, .. } | CtlReply::Reserve(macs) => {
                    Ok(macs.iter().map(|m| format!("{}\n", m.hex12())).collect::<String>())
                }
                CtlReply::Error(e) => Err(CtlError::Refused(e)),
            });
            match text {
                Ok(t) => reply(Ok(slice_at(t.as_bytes(), off, size))),
                Err(e) => reply(Err(e.errno())),
            }
        });
    }

    /// Writes `config` (set; `!` first forces), `masks` (+MAC/-MAC edits) or
    /// `reserve` (MACs, `self`, `!` to force, empty or `release` to release).
    pub fn write_attr(self: &Arc<Self>, dev: &Arc<Device>, attr: &'static str, data: Vec<u8>, reply: WriteReply) {
        if !attr_is_command(attr) {
            return reply(Err(libc::EACCES));
        }
        if data.len() > crate::wire::MAX_CONFIG_LEN + 2 {
            return reply(Err(libc::EFBIG));
        }
        let n = data.len() as u32;
        let me = self.clone();
        let dev = dev.clone();
        self.pool.spawn(move || {
            let r = me.command_attr(&dev, attr, &data);
            if let Err(e) = &r {
                me.ini.errlog.push(format!("{}: {attr}: {e:?}", dev.name()));
            }
            reply(r.map(|_| n).map_err(|e| e.errno()))
        });
    }

    fn command_attr(&self, dev: &Arc<Device>, attr: &str, data: &[u8]) -> Result<(), CtlError> {
        let text = std::str::from_utf8(data).map_err(|_| CtlError::Invalid("not text".into()))?;
        let req = match attr {
            "config" => {
                let v = text.strip_suffix('\n').unwrap_or(text);
                let (force, v) = match v.strip_prefix('!') {
                    Some(r) => (true, r),
                    None => (false, v),
                };
                if v.len() > crate::wire::MAX_CONFIG_LEN || v.bytes().any(|b| b == b'\n' || b == 0) {
                    return Err(CtlError::Invalid("config: one line of at most 1024 bytes".into()));
                }
                CtlRequest::ConfigSet { value: v.as_bytes().to_vec(), force }
            }
            "masks" => CtlRequest::MaskEdit(parse_mask_edit(text, &self.ini.local_macs(dev))?),
            _ => {
                let (macs, force) = parse_reserve(text, &self.ini.local_macs(dev))?;
                CtlRequest::ReserveSet { macs, force }
            }
        };
        for r in self.ini.control(dev, &req).map_err(ctl_failure)? {
            match r {
                CtlReply::Error(e) => return Err(CtlError::Refused(e)),
                CtlReply::Masks { merror: 3, .. } => return Err(CtlError::ListFull),
                CtlReply::Masks { merror: 2, .. } => return Err(CtlError::Invalid("bad directive".into())),
                CtlReply::Masks { merror: m, .. } if m != 0 => return Err(CtlError::Refused(AoeError::Other(m))),
                _ => {}
            }
        }
        Ok(())
    }

    /// A status attribute of a device, newline-terminated.
    pub fn status_attr(&self, dev: &Device, attr: &str) -> Option<String> {
        let s = match attr {
            "state" => dev.state_string(),
            "mac" => {
                let g = dev.inner.lock();
                g.io.paths.first().map(|p| p.mac.hex12()).unwrap_or_else(|| "000000000000".into())
            }
            "netif" => {
                let g = dev.inner.lock();
                let mut names: Vec<&str> = Vec::new();
                for p in &g.io.paths {
                    if !names.contains(&p.ifname.as_str()) {
                        names.push(&p.ifname);
                    }
                }
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(",")
                }
            }
            "firmware-version" => format!("0x{:04x}", dev.inner.lock().firmware),
            "payload" => dev.inner.lock().io.payload().to_string(),
            "size" => dev.sectors().to_string(),
            "model" => dev.inner.lock().identify.as_ref().map(|i| i.model.clone()).unwrap_or_default(),
            "serial" => dev.inner.lock().identify.as_ref().map(|i| i.serial.clone()).unwrap_or_default(),
            "stats" => return Some(self.stats_text(dev)),
            _ => return None,
        };
        Some(s + "\n")
    }

    fn stats_text(&self, dev: &Device) -> String {
        use std::fmt::Write;
        let (c, paths, cwnd, maxwin, nout, srtt, rttvar) = self.ini.stats(dev);
        let mut s = String::new();
        let line = |s: &mut String, prefix: &str, c: &crate::engine::Counters| {
            let _ = writeln!(
                s,
                "{prefix}frames_sent {}\n{prefix}frames_received {}\n{prefix}retransmits {}\n{prefix}timeouts {}\n{prefix}errors {}\n{prefix}bytes_read {}\n{prefix}bytes_written {}",
                c.frames_sent, c.frames_received, c.retransmits, c.timeouts, c.errors, c.bytes_read, c.bytes_written
            );
        };
        line(&mut s, "", &c);
        // A stale tag cannot be tied to a path: counted per target only.
        let _ = writeln!(s, "unexpected {}", c.unexpected);
        let _ = writeln!(s, "ignored {}", dev.ignored.load(std::sync::atomic::Ordering::Relaxed));
        let _ = writeln!(
            s,
            "rtt_avg_us {srtt}\nrtt_dev_us {rttvar}\nwindow {cwnd}\nmax_window {maxwin}\noutstanding {nout}"
        );
        // Frames ignored before they could be tied to a target (whole mount).
        let ig = &self.ini.ignored;
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(
            s,
            "mount_ignored_malformed {}\nmount_ignored_unknown_target {}\nmount_ignored_unknown_source {}\nmount_ignored_foreign_tag {}\nmount_ignored_unexpected_tag {}",
            ld(&ig.malformed),
            ld(&ig.unknown_target),
            ld(&ig.unknown_source),
            ld(&ig.foreign_tag),
            ld(&ig.unexpected_tag)
        );
        for p in &paths {
            let prefix = format!("path {} {} ", p.ifname, p.mac.hex12());
            line(&mut s, &prefix, &p.counters);
            let _ = writeln!(s, "{prefix}failed {}", u8::from(p.failed()));
        }
        s
    }
}

fn ctl_failure(f: CtlFailure) -> CtlError {
    match f {
        CtlFailure::NoPath => CtlError::NoSuchDevice,
        CtlFailure::Timeout => CtlError::Timeout,
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

    #[test]
    fn dev_names() {
        assert_eq!(parse_dev_name("e0.2"), Some((0, 2)));
        assert_eq!(parse_dev_name(" e10.3\n"), Some((10, 3)));
        assert_eq!(parse_dev_name("e65534.254"), Some((65534, 254)));
        for bad in
            ["", "e", "e1", "e1.", "e.1", "x1.2", "e1.2.3", "e-1.2", "e65535.1", "e1.255", "e1.2x", "e99999999999.1"]
        {
            assert_eq!(parse_dev_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn range_locks_exclude_overlaps_only() {
        let l = Arc::new(RangeLocks::default());
        assert!(l.try_lock(9, 0, 4));
        assert!(!l.try_lock(9, 3, 5));
        assert!(l.try_lock(9, 4, 5));
        l.unlock(9, 0, 4);
        assert!(l.try_lock(9, 0, 4));
        l.unlock(9, 0, 4);
        l.unlock(9, 4, 5);
        let g1 = l.lock(1, 0, 10);
        let _g2 = l.lock(1, 10, 20); // adjacent: no conflict
        let _g3 = l.lock(2, 0, 10); // other device
        let l2 = l.clone();
        let t = std::thread::spawn(move || {
            let _g = l2.lock(1, 5, 6);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished());
        drop(g1);
        t.join().unwrap();
    }

    #[test]
    fn file_names() {
        assert_eq!(parse_file_name("e0.1"), Some((0, 1, 0)));
        assert_eq!(parse_file_name("e0.1p1"), Some((0, 1, 1)));
        assert_eq!(parse_file_name("e10.3p255"), Some((10, 3, 255)));
        for bad in ["e0.1p0", "e0.1p", "e0.1p256", "e0.1px", "p1", "e0p1", "e0.1p1p2", "e0.1p0001"] {
            assert_eq!(parse_file_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn mask_and_reserve_parsing() {
        let me = [Mac([2, 0, 0, 0, 0, 1])];
        let d = parse_mask_edit("+00:11:22:33:44:55 -001122334466, 001122334477 +self", &me).unwrap();
        assert_eq!(d.iter().map(|x| x.dcmd).collect::<Vec<_>>(), [1, 2, 1, 1]);
        assert_eq!(d[3].mac, me[0]);
        for bad in ["", "   ", "+0011223344", "garbage", "+00112233445566", "-zz1122334455"] {
            assert!(parse_mask_edit(bad, &me).is_err(), "{bad:?}");
        }
        assert_eq!(parse_reserve("", &me).unwrap(), (vec![], false));
        assert_eq!(parse_reserve("release\n", &me).unwrap(), (vec![], false));
        assert_eq!(parse_reserve("!self", &me).unwrap(), (me.to_vec(), true));
        assert_eq!(parse_reserve("001122334455 self", &me).unwrap().0.len(), 2);
        assert!(parse_reserve("nonsense", &me).is_err());
    }

    #[test]
    fn slices() {
        assert_eq!(slice_at(b"hello", 1, 3), b"ell");
        assert_eq!(slice_at(b"hello", 9, 3), b"");
        assert_eq!(slice_at(b"hello", 3, 100), b"lo");
    }
}
