//! The fuser adapter: each FUSE operation is one call into `blockfs` (its
//! `tree` methods, on inode numbers) and a reply. Nothing here decides an
//! errno or talks AoE: the core's `Error` becomes a FUSE reply in one
//! place (`Fail`), and the core's attributes become fuser's `FileAttr`.

use crate::blockfs::{Attr, BlockFs, Error, Kind, Opened, Refused, BLOCK_SIZE, TTL};
use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, IoctlFlags, KernelConfig, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

pub struct AoeFs {
    pub core: Arc<BlockFs>,
    uid: u32,
    gid: u32,
    start: SystemTime,
}

impl AoeFs {
    pub fn new(core: Arc<BlockFs>) -> AoeFs {
        let (uid, gid) = crate::sys::user_ids();
        AoeFs { core, uid, gid, start: SystemTime::now() }
    }

    /// The core's attributes as fuser's: owned by the mount's user, all
    /// times the mount's start.
    fn file_attr(&self, a: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: self.start,
            mtime: self.start,
            ctime: self.start,
            crtime: self.start,
            kind: file_type(a.kind),
            perm: a.perm,
            nlink: a.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Directory => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
    }
}

/// Answers a FUSE request with the core's error: its errno, and its message
/// in the debug log (users see failures through the errno and the `err`
/// file; a message per failed request would flood the log).
trait Fail {
    fn fail(self, op: &str, e: Error);
}

macro_rules! impl_fail {
    ($($t:ty),*) => {$(
        impl Fail for $t {
            fn fail(self, op: &str, e: Error) {
                log::debug!("{op}: {e}");
                self.error(fuser::Errno::from_i32(e.errno()))
            }
        }
    )*};
}
impl_fail!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyEmpty,
    ReplyEntry,
    ReplyIoctl,
    ReplyOpen,
    ReplyWrite,
    ReplyXattr
);

/// What aoefs asks of the kernel's FUSE at `init` (aoe-nullfuse, the
/// bench's null file, asks the same, so that it measures what aoefs gets).
pub fn kernel_config(config: &mut KernelConfig) {
    let _ = config.set_max_write(1 << 20);
    let _ = config.set_max_readahead(1 << 20);
    let _ = config.set_max_background(128);
    let _ = config.set_congestion_threshold(96);
    // O_TRUNC arrives as an open flag instead of a truncate: opening an
    // image with O_TRUNC (dd without conv=notrunc, `>` redirection) is
    // ignored as on a block device, while truncate(2) is refused.
    let _ = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC);
    // Let the kernel send several O_DIRECT requests of one file at once
    // (io_submit with a queue depth, loop devices): without it a
    // reader's queue depth reaches aoefs one request at a time.
    let _ = config.add_capabilities(fuser::InitFlags::FUSE_ASYNC_DIO);
}

impl Filesystem for AoeFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        kernel_config(config);
        Ok(())
    }

    // No `destroy`: the mount's I/O is shut down once, by its owner
    // (`BlockFs::shutdown`, after the session ends).

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.core.lookup(parent.0, name) {
            Ok(e) => reply.entry(&e.ttl, &self.file_attr(&e.attr), Generation(0)),
            Err(e) => reply.fail("lookup", e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.core.readlink(ino.0) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => reply.fail("readlink", e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.core.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &self.file_attr(&a)),
            Err(e) => reply.fail("getattr", e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.core.setattr(ino.0, mode.is_some() || uid.is_some() || gid.is_some(), size) {
            Ok(a) => reply.attr(&TTL, &self.file_attr(&a)),
            Err(e) => reply.fail("setattr", e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        match self.core.open(ino.0, write) {
            Ok(Opened::Image(fh)) => {
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES)
            }
            Ok(Opened::Stream) => {
                reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NONSEEKABLE)
            }
            Err(e) => reply.fail("open", e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.core.release(ino.0, fh.0);
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        self.core.read(
            ino.0,
            offset,
            size,
            Box::new(move |r: Result<&[u8], Error>| match r {
                Ok(d) => reply.data(d),
                Err(e) => reply.fail("read", e),
            }),
        )
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        self.core.write(
            ino.0,
            fh.0,
            offset,
            data,
            Box::new(move |r| match r {
                Ok(n) => reply.written(n),
                Err(e) => reply.fail("write", e),
            }),
        )
    }

    /// Each close(2) of a descriptor, before it returns.
    fn flush(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: fuser::LockOwner, reply: ReplyEmpty) {
        self.core.flush(ino.0, fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.core.fsync(
            ino.0,
            Box::new(move |r| match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.fail("fsync", e),
            }),
        )
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let entries = match self.core.readdir(ino.0) {
            Ok(v) => v,
            Err(e) => return reply.fail("readdir", e),
        };
        for (i, e) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), (i + 1) as u64, file_type(e.kind), &e.name) {
                break;
            }
        }
        reply.ok()
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.fail("create", Refused::Create.error())
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.fail("mknod", Refused::Mknod.error())
    }

    fn mkdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        reply.fail("mkdir", Refused::Mkdir.error())
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.fail("unlink", Refused::Unlink.error())
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.fail("rmdir", Refused::Rmdir.error())
    }

    fn symlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _target: &Path, reply: ReplyEntry) {
        reply.fail("symlink", Refused::Symlink.error())
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.fail("rename", Refused::Rename.error())
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.fail("link", Refused::Link.error())
    }

    // Answered here rather than by fuser's defaults, which warn in the log.

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.fail("getxattr", Refused::Xattr.error())
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.fail("listxattr", Refused::Xattr.error())
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.fail("setxattr", Refused::Xattr.error())
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.fail("removexattr", Refused::Xattr.error())
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.fail("ioctl", Refused::Ioctl.error())
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(self.core.statfs_blocks(), 0, 0, 0, 0, BLOCK_SIZE, 255, BLOCK_SIZE);
    }
}
