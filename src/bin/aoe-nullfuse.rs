//! aoe-nullfuse: a FUSE filesystem with one file, `null`, whose reads return
//! zeros and whose writes are taken and forgotten, at once, from the FUSE
//! thread that got the request. It is mounted as aoefs mounts (fuser, the
//! same init settings, direct I/O, the same FUSE threads), so that the bench
//! can tell FUSE's own share of a small request (this file) from aoefs's
//! (its core, engine and in-memory link, `aoefs --bench-sim-target`).
//!
//!     aoe-nullfuse MOUNTPOINT [--size BYTES] [--fuse-threads N]
//!
//! It runs in the foreground until unmounted (umount, fusermount3 -u) or
//! SIGINT/SIGTERM. Exit status 0, 2 on usage errors, 1 if the mount fails.

#![deny(unsafe_code)]

use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyWrite, Request, WriteFlags,
};
use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

const ROOT: u64 = 1;
const NULL: u64 = 2;
/// A read is answered out of this many zeros (FUSE asks for at most 1 MiB).
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

struct NullFs {
    size: u64,
    start: SystemTime,
}

impl NullFs {
    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, perm, size, nlink) =
            if ino == ROOT { (FileType::Directory, 0o755, 0, 2) } else { (FileType::RegularFile, 0o644, self.size, 1) };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.start,
            mtime: self.start,
            ctime: self.start,
            crtime: self.start,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

const TTL: Duration = Duration::from_secs(1);

impl Filesystem for NullFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        aoefs::fs::kernel_config(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == ROOT && name == "null" {
            reply.entry(&TTL, &self.attr(NULL), Generation(0));
        } else {
            reply.error(fuser::Errno::from_i32(libc::ENOENT));
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            ROOT | NULL => reply.attr(&TTL, &self.attr(ino.0)),
            _ => reply.error(fuser::Errno::from_i32(libc::ENOENT)),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES)
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let n = (size as u64).min(self.size.saturating_sub(offset)).min(ZEROS.len() as u64) as usize;
        reply.data(&ZEROS[..n])
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.written(data.len() as u32)
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino.0 != ROOT {
            return reply.error(fuser::Errno::from_i32(libc::ENOTDIR));
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (NULL, FileType::RegularFile, "null"),
        ];
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok()
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("aoe-nullfuse: {msg}");
    eprintln!("usage: aoe-nullfuse MOUNTPOINT [--size BYTES] [--fuse-threads N]");
    std::process::exit(2);
}

fn main() {
    let mut mnt = None;
    let mut size: u64 = 64 << 30;
    let mut threads: usize = 2;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        match a.as_str() {
            "--size" => size = val("--size").parse().unwrap_or_else(|_| usage("bad --size")),
            "--fuse-threads" => {
                threads = val("--fuse-threads")
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .unwrap_or_else(|| usage("bad --fuse-threads"))
            }
            s if s.starts_with('-') => usage(&format!("unknown option {s}")),
            _ if mnt.is_none() => mnt = Some(a),
            _ => usage("one mount point"),
        }
    }
    let mnt = mnt.unwrap_or_else(|| usage("need a mount point"));
    let mut config = fuser::Config::default();
    config.mount_options = vec![fuser::MountOption::FSName("aoe-nullfuse".into())];
    config.n_threads = Some(threads);
    config.clone_fd = threads > 1;
    let fs = NullFs { size, start: SystemTime::now() };
    let session = fuser::Session::new(fs, std::path::Path::new(&mnt), &config).unwrap_or_else(|e| {
        eprintln!("aoe-nullfuse: mount {mnt}: {e}");
        std::process::exit(1);
    });
    aoefs::testtools::stop_on_signals();
    let unmounter = std::thread::spawn({
        let mnt = mnt.clone();
        move || {
            while !aoefs::testtools::STOP.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = aoefs::mountpoint::detach(std::path::Path::new(&mnt));
        }
    });
    eprintln!("aoe-nullfuse: mounted {mnt}");
    if let Err(e) = session.run() {
        eprintln!("aoe-nullfuse: {e}");
        std::process::exit(1);
    }
    aoefs::testtools::STOP.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = unmounter.join();
}
