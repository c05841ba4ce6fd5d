//! The fuser adapter: inode numbering, attributes and directory listings;
//! every operation is delegated to `blockfs::BlockFs`. Nothing here talks
//! AoE. The core's errors become FUSE replies in one place (`Fail`); the
//! errnos of inode handling itself (ENOENT, EISDIR, ...) are decided here.

use crate::blockfs::{
    attr_is_command, attr_size, parse_dev_name, parse_file_name, parse_sys_link_name, sys_link_name, sys_link_target,
    BlockFs, Ctl, Error, ATTRS,
};
use crate::device::Device;
use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, IoctlFlags, KernelConfig, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const TTL: Duration = Duration::from_secs(1);

/// How long the kernel may keep a name's inode. A target's names (its
/// image, partitions, status directory and sys/block link) are looked up
/// every time: the same name can lead to another inode at once (a target
/// flushed and found again is a new device, as ids are never reused; a
/// partition table read again), and a name the kernel kept would lead to
/// the old one (ENOENT) while `ls` already lists the new one.
fn entry_ttl(node: Node) -> Duration {
    match node {
        Node::Image(..) | Node::DevDir(_) | Node::SysLink(_) => Duration::ZERO,
        _ => TTL,
    }
}
const ROOT: u64 = 1;
const BLOCK_DIR: u64 = 7;
const SYS_DIR: u64 = 8;
const SYS_BLOCK_DIR: u64 = 9;
const DEV_BASE: u64 = 1 << 20;
const DEV_STRIDE: u64 = 512;
const DEV_PART0: u64 = 256;
const DEV_DIR: u64 = 1;
const DEV_ATTR0: u64 = 2;
/// `sys/block/etherd!eX.Y`, the link to `block/eX.Y`.
const DEV_SYS_LINK: u64 = DEV_PART0 - 1;

/// What an inode number names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Root,
    Ctl(Ctl),
    BlockDir,
    /// `sys/` and `sys/block/`: the driver's names, for aoe-stat.
    SysDir,
    SysBlockDir,
    /// The disk (part 0) or one of its partitions.
    Image(u32, u32),
    DevDir(u32),
    Attr(u32, usize),
    /// `sys/block/etherd!eX.Y`, a symlink to `../../block/eX.Y`.
    SysLink(u32),
}

impl Node {
    pub fn ino(self) -> u64 {
        match self {
            Node::Root => ROOT,
            Node::Ctl(c) => 2 + Ctl::ALL.iter().position(|x| *x == c).expect("ctl") as u64,
            Node::BlockDir => BLOCK_DIR,
            Node::SysDir => SYS_DIR,
            Node::SysBlockDir => SYS_BLOCK_DIR,
            Node::Image(id, 0) => DEV_BASE + id as u64 * DEV_STRIDE,
            Node::Image(id, p) => DEV_BASE + id as u64 * DEV_STRIDE + DEV_PART0 + p as u64,
            Node::DevDir(id) => DEV_BASE + id as u64 * DEV_STRIDE + DEV_DIR,
            Node::Attr(id, i) => DEV_BASE + id as u64 * DEV_STRIDE + DEV_ATTR0 + i as u64,
            Node::SysLink(id) => DEV_BASE + id as u64 * DEV_STRIDE + DEV_SYS_LINK,
        }
    }
    pub fn from_ino(ino: u64) -> Option<Node> {
        match ino {
            ROOT => Some(Node::Root),
            2..=6 => Some(Node::Ctl(Ctl::ALL[(ino - 2) as usize])),
            BLOCK_DIR => Some(Node::BlockDir),
            SYS_DIR => Some(Node::SysDir),
            SYS_BLOCK_DIR => Some(Node::SysBlockDir),
            i if i >= DEV_BASE => {
                let id = ((i - DEV_BASE) / DEV_STRIDE) as u32;
                match (i - DEV_BASE) % DEV_STRIDE {
                    0 => Some(Node::Image(id, 0)),
                    DEV_DIR => Some(Node::DevDir(id)),
                    DEV_SYS_LINK => Some(Node::SysLink(id)),
                    p if p > DEV_PART0 => Some(Node::Image(id, (p - DEV_PART0) as u32)),
                    a if a >= DEV_ATTR0 && ((a - DEV_ATTR0) as usize) < ATTRS.len() => {
                        Some(Node::Attr(id, (a - DEV_ATTR0) as usize))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

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

    fn dev(&self, id: u32) -> Option<Arc<Device>> {
        self.core.ini.device_by_id(id).filter(|d| d.visible())
    }

    fn attr(&self, node: Node) -> Option<FileAttr> {
        let (kind, perm, size, nlink) = match node {
            Node::Root => (FileType::Directory, 0o755, 0, 4),
            Node::BlockDir | Node::SysBlockDir => (FileType::Directory, 0o755, 0, 2),
            Node::SysDir => (FileType::Directory, 0o755, 0, 3),
            Node::Ctl(c) => (FileType::RegularFile, c.mode(), 0, 1),
            Node::Image(id, part) => {
                let d = self.dev(id)?;
                let ro = self.core.readonly || d.is_readonly();
                let perm = if ro { 0o444 } else { 0o660 };
                (FileType::RegularFile, perm, self.core.region(&d, part)?.len, 1)
            }
            Node::DevDir(id) => {
                self.dev(id)?;
                (FileType::Directory, 0o555, 0, 2)
            }
            Node::Attr(id, i) => {
                self.dev(id)?;
                let perm = if attr_is_command(ATTRS[i]) && !self.core.readonly { 0o644 } else { 0o444 };
                (FileType::RegularFile, perm, attr_size(ATTRS[i]), 1)
            }
            Node::SysLink(id) => (FileType::Symlink, 0o777, sys_link_target(&*self.dev(id)?).len() as u64, 1),
        };
        Some(FileAttr {
            ino: INodeNo(node.ino()),
            size,
            blocks: size.div_ceil(512),
            atime: self.start,
            mtime: self.start,
            ctime: self.start,
            crtime: self.start,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn lookup_node(&self, parent: u64, name: &str) -> Option<Node> {
        match Node::from_ino(parent)? {
            Node::Root => {
                match name {
                    "block" => return Some(Node::BlockDir),
                    "sys" => return Some(Node::SysDir),
                    _ => {}
                }
                if let Some(c) = Ctl::ALL.iter().find(|c| c.name() == name) {
                    return Some(Node::Ctl(*c));
                }
                let (s, t, part) = parse_file_name(name)?;
                let d = self.core.ini.device(s, t).filter(|d| d.visible())?;
                let canonical = if part == 0 { d.name() } else { format!("{}p{part}", d.name()) };
                (canonical == name).then_some(Node::Image(d.id, part))
            }
            Node::BlockDir => {
                let (s, t) = parse_dev_name(name)?;
                let d = self.core.ini.device(s, t).filter(|d| d.visible())?;
                (d.name() == name).then_some(Node::DevDir(d.id))
            }
            Node::DevDir(id) => {
                self.dev(id)?;
                ATTRS.iter().position(|a| *a == name).map(|i| Node::Attr(id, i))
            }
            Node::SysDir => (name == "block").then_some(Node::SysBlockDir),
            Node::SysBlockDir => {
                let (s, t) = parse_sys_link_name(name)?;
                let d = self.core.ini.device(s, t).filter(|d| d.visible())?;
                (sys_link_name(&d) == name).then_some(Node::SysLink(d.id))
            }
            _ => None,
        }
    }

    fn entries(&self, node: Node) -> Option<Vec<(u64, FileType, String)>> {
        let mut v = vec![(node.ino(), FileType::Directory, ".".to_string())];
        match node {
            Node::Root => {
                v.push((ROOT, FileType::Directory, "..".into()));
                for c in Ctl::ALL {
                    v.push((Node::Ctl(c).ino(), FileType::RegularFile, c.name().into()));
                }
                v.push((BLOCK_DIR, FileType::Directory, "block".into()));
                v.push((SYS_DIR, FileType::Directory, "sys".into()));
                for d in self.core.ini.devices().into_iter().filter(|d| d.visible()) {
                    v.push((Node::Image(d.id, 0).ino(), FileType::RegularFile, d.name()));
                    for p in self.core.partitions(&d).iter() {
                        v.push((
                            Node::Image(d.id, p.number).ino(),
                            FileType::RegularFile,
                            format!("{}p{}", d.name(), p.number),
                        ));
                    }
                }
            }
            Node::BlockDir => {
                v.push((ROOT, FileType::Directory, "..".into()));
                for d in self.core.ini.devices().into_iter().filter(|d| d.visible()) {
                    v.push((Node::DevDir(d.id).ino(), FileType::Directory, d.name()));
                }
            }
            Node::SysDir => {
                v.push((ROOT, FileType::Directory, "..".into()));
                v.push((SYS_BLOCK_DIR, FileType::Directory, "block".into()));
            }
            Node::SysBlockDir => {
                v.push((SYS_DIR, FileType::Directory, "..".into()));
                for d in self.core.ini.devices().into_iter().filter(|d| d.visible()) {
                    v.push((Node::SysLink(d.id).ino(), FileType::Symlink, sys_link_name(&d)));
                }
            }
            Node::DevDir(id) => {
                self.dev(id)?;
                v.push((BLOCK_DIR, FileType::Directory, "..".into()));
                for (i, a) in ATTRS.iter().enumerate() {
                    v.push((Node::Attr(id, i).ino(), FileType::RegularFile, a.to_string()));
                }
            }
            _ => return None,
        }
        Some(v)
    }
}

fn errno(e: i32) -> fuser::Errno {
    fuser::Errno::from_i32(e)
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
                self.error(errno(e.errno()))
            }
        }
    )*};
}
impl_fail!(ReplyData, ReplyWrite, ReplyEmpty);

fn no_such_file() -> Error {
    Error::new(libc::ENOENT, "no such file")
}

impl Filesystem for AoeFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
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
        Ok(())
    }

    fn destroy(&mut self) {
        self.core.ini.shutdown();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let node = name.to_str().and_then(|n| self.lookup_node(parent.0, n));
        match node.and_then(|n| Some((entry_ttl(n), self.attr(n)?))) {
            Some((ttl, a)) => reply.entry(&ttl, &a, Generation(0)),
            None => reply.error(errno(libc::ENOENT)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match Node::from_ino(ino.0) {
            Some(Node::SysLink(id)) => match self.dev(id) {
                Some(d) => reply.data(sys_link_target(&d).as_bytes()),
                None => reply.error(errno(libc::ENOENT)),
            },
            Some(_) => reply.error(errno(libc::EINVAL)),
            None => reply.error(errno(libc::ENOENT)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match Node::from_ino(ino.0).and_then(|n| self.attr(n)) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(errno(libc::ENOENT)),
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
        let Some(node) = Node::from_ino(ino.0) else { return reply.error(errno(libc::ENOENT)) };
        let Some(a) = self.attr(node) else { return reply.error(errno(libc::ENOENT)) };
        if mode.is_some() || uid.is_some() || gid.is_some() {
            return reply.error(errno(libc::EPERM));
        }
        if let Some(s) = size {
            match node {
                // `echo > discover` opens with O_TRUNC: accept it on control files.
                Node::Ctl(c) if c != Ctl::Err && s == 0 => {}
                Node::Attr(_, i) if attr_is_command(ATTRS[i]) && s == 0 => {}
                Node::Image(..) if s == a.size => {}
                Node::Image(..) => return reply.error(errno(libc::EPERM)),
                _ => return reply.error(errno(libc::EACCES)),
            }
        }
        reply.attr(&TTL, &a)
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(node) = Node::from_ino(ino.0) else { return reply.error(errno(libc::ENOENT)) };
        let write = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        match node {
            Node::Image(id, part) => {
                let Some(d) = self.dev(id) else { return reply.error(errno(libc::ENOENT)) };
                if self.core.region(&d, part).is_none() {
                    return reply.error(errno(libc::ENOENT));
                }
                if write && (self.core.readonly || d.is_readonly()) {
                    return reply.error(errno(libc::EROFS));
                }
                match self.core.open_image(&d, part) {
                    Some(fh) => reply
                        .opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES),
                    None => reply.error(errno(libc::ENOENT)),
                }
            }
            Node::Attr(_, i) if write && !attr_is_command(ATTRS[i]) => reply.error(errno(libc::EACCES)),
            Node::Attr(..) if write && self.core.readonly => reply.error(errno(libc::EROFS)),
            Node::Ctl(Ctl::Err) if write => reply.error(errno(libc::EACCES)),
            Node::Ctl(_) | Node::Attr(..) => {
                reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NONSEEKABLE)
            }
            _ => reply.error(errno(libc::EISDIR)),
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
        if let Some(Node::Image(..)) = Node::from_ino(ino.0) {
            self.core.release_image(fh.0);
        }
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
        let answer = move |r: Result<&[u8], Error>| match r {
            Ok(d) => reply.data(d),
            Err(e) => reply.fail("read", e),
        };
        match Node::from_ino(ino.0) {
            Some(Node::Image(id, part)) => match self.dev(id).and_then(|d| Some((self.core.region(&d, part)?, d))) {
                Some((r, d)) => self.core.read_image(&d, r, offset, size, Box::new(answer)),
                None => answer(Err(no_such_file())),
            },
            Some(Node::Ctl(c)) => self.core.read_ctl(c, offset, size, Box::new(answer)),
            Some(Node::Attr(id, i)) => match self.dev(id) {
                Some(d) => self.core.read_attr(&d, ATTRS[i], offset, size, Box::new(answer)),
                None => answer(Err(no_such_file())),
            },
            _ => answer(Err(Error::new(libc::EISDIR, "is a directory"))),
        }
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
        match Node::from_ino(ino.0) {
            Some(Node::Image(id, part)) => match self.dev(id).and_then(|d| Some((self.core.region(&d, part)?, d))) {
                Some((r, d)) => {
                    self.core.wrote_image(fh.0, &d, r, offset, data.len());
                    self.core.write_image(
                        &d,
                        r,
                        offset,
                        data,
                        Box::new(move |r| match r {
                            Ok(n) => reply.written(n),
                            Err(e) => reply.fail("write", e),
                        }),
                    )
                }
                None => reply.error(errno(libc::ENOENT)),
            },
            Some(Node::Ctl(c)) => match self.core.write_ctl_at(c, data, offset) {
                Ok(()) => reply.written(data.len() as u32),
                Err(e) => {
                    log::info!("write to {}: {e}", c.name());
                    reply.error(errno(e.errno()))
                }
            },
            Some(Node::Attr(id, i)) => match self.dev(id) {
                Some(d) => self.core.write_attr(
                    &d,
                    ATTRS[i],
                    data,
                    offset,
                    Box::new(move |r| match r {
                        Ok(n) => reply.written(n),
                        Err(e) => reply.fail("write", e),
                    }),
                ),
                None => reply.error(errno(libc::ENOENT)),
            },
            _ => reply.error(errno(libc::EISDIR)),
        }
    }

    /// Each close(2) of a descriptor, before it returns: a writer of the
    /// partition table closing the disk makes the table be read again.
    fn flush(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: fuser::LockOwner, reply: ReplyEmpty) {
        if let Some(Node::Image(..)) = Node::from_ino(ino.0) {
            self.core.closing_image(fh.0);
        }
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match Node::from_ino(ino.0) {
            Some(Node::Image(id, _)) => match self.dev(id) {
                Some(d) => self.core.fsync_image(
                    &d,
                    Box::new(move |r| match r {
                        Ok(()) => reply.ok(),
                        Err(e) => reply.fail("fsync", e),
                    }),
                ),
                None => reply.error(errno(libc::ENOENT)),
            },
            _ => reply.ok(),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some(entries) = Node::from_ino(ino.0).and_then(|n| self.entries(n)) else {
            return reply.error(errno(libc::ENOENT));
        };
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok()
    }

    // The tree is the initiator's (as /sys is the kernel's): names cannot
    // be made, removed or moved. The errnos are sysfs's.

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
        reply.error(errno(libc::EACCES))
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
        reply.error(errno(libc::EPERM))
    }

    fn mkdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        reply.error(errno(libc::EPERM))
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(errno(libc::EPERM))
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(errno(libc::EPERM))
    }

    fn symlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _target: &Path, reply: ReplyEntry) {
        reply.error(errno(libc::EPERM))
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
        reply.error(errno(libc::EPERM))
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(errno(libc::EPERM))
    }

    // No extended attributes: ENOSYS tells the kernel so once, after which
    // it answers EOPNOTSUPP itself (`ls -l` asks for security.selinux).

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(errno(libc::ENOSYS))
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(errno(libc::ENOSYS))
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
        reply.error(errno(libc::ENOSYS))
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(errno(libc::ENOSYS))
    }

    /// No file here is a terminal or takes an ioctl: `isatty()` and the
    /// like get ENOTTY, as on a regular file.
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
        reply.error(errno(libc::ENOTTY))
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let blocks: u64 = self.core.ini.devices().iter().filter(|d| d.visible()).map(|d| d.sectors() / 8).sum();
        reply.statfs(blocks, 0, 0, 0, 0, 4096, 255, 4096);
    }
}
