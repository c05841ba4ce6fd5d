//! The tree of the mount as the kernel sees it: inode numbers and what they
//! name (`Node`), attributes, lookups and listings, open and release, and
//! the errnos of the tree itself (no such name, a directory, a name that
//! cannot be made or removed). Each operation of the filesystem adapter
//! (`fs`) is one method here, on inode numbers; the files' contents are
//! `image`, `control_files` and `attrs`.
//!
//! A target's names (image, partitions, `block/eX.Y`, `sys/block/etherd!eX.Y`)
//! are given to the kernel with no entry lifetime, so a path is looked up
//! every time and never leads to the inode of a flushed device (ids are
//! never reused) or of an old partition table; the other names live
//! [`TTL`].

use super::{
    attr_is_command, attr_size, parse_dev_name, parse_file_name, parse_sys_link_name, sys_link_name, sys_link_target,
    BlockFs, Ctl, EmptyReply, Error, ReadReply, WriteReply, ATTRS,
};
use crate::device::Device;
use crate::fs_err;
use crate::partition::MAX_PARTITION_NUMBER;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

/// How long the kernel may keep attributes, and the names that are not a
/// target's (see [`Node::entry_ttl`]).
pub const TTL: Duration = Duration::from_secs(1);

/// The block size the files and statfs report.
pub const BLOCK_SIZE: u32 = 4096;

// Inode numbers. The fixed nodes are below `DEV_BASE`; each device has
// `DEV_STRIDE` numbers from `DEV_BASE + id * DEV_STRIDE`: its image, its
// directory, its attributes, its sys/block link and its partitions.
const ROOT: u64 = 1;
/// The control files, in `Ctl::ALL` order.
const CTL0: u64 = 2;
const BLOCK_DIR: u64 = 7;
const SYS_DIR: u64 = 8;
const SYS_BLOCK_DIR: u64 = 9;
const DEV_BASE: u64 = 1 << 20;
const DEV_STRIDE: u64 = 512;
const DEV_DIR: u64 = 1;
const DEV_ATTR0: u64 = 2;
/// `sys/block/etherd!eX.Y`, the link to `block/eX.Y`.
const DEV_SYS_LINK: u64 = DEV_PART0 - 1;
/// Partition N is `DEV_PART0 + N`.
const DEV_PART0: u64 = 256;

// The numbers of one kind never reach those of the next: a control file
// added to `Ctl::ALL` or an attribute added to `ATTRS` must find room.
const _: () = assert!(CTL0 + (Ctl::ALL.len() as u64) <= BLOCK_DIR, "control files run into block/");
const _: () = assert!(SYS_BLOCK_DIR < DEV_BASE);
const _: () = assert!(DEV_ATTR0 + (ATTRS.len() as u64) <= DEV_SYS_LINK, "attributes run into the sys/block link");
const _: () = assert!(DEV_PART0 + (MAX_PARTITION_NUMBER as u64) < DEV_STRIDE, "partitions run into the next device");

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
        let dev = |id: u32| DEV_BASE + id as u64 * DEV_STRIDE;
        match self {
            Node::Root => ROOT,
            Node::Ctl(c) => CTL0 + Ctl::ALL.iter().position(|x| *x == c).expect("ctl") as u64,
            Node::BlockDir => BLOCK_DIR,
            Node::SysDir => SYS_DIR,
            Node::SysBlockDir => SYS_BLOCK_DIR,
            Node::Image(id, 0) => dev(id),
            Node::Image(id, p) => dev(id) + DEV_PART0 + p as u64,
            Node::DevDir(id) => dev(id) + DEV_DIR,
            Node::Attr(id, i) => dev(id) + DEV_ATTR0 + i as u64,
            Node::SysLink(id) => dev(id) + DEV_SYS_LINK,
        }
    }

    pub fn from_ino(ino: u64) -> Option<Node> {
        match ino {
            ROOT => Some(Node::Root),
            BLOCK_DIR => Some(Node::BlockDir),
            SYS_DIR => Some(Node::SysDir),
            SYS_BLOCK_DIR => Some(Node::SysBlockDir),
            i if (CTL0..CTL0 + Ctl::ALL.len() as u64).contains(&i) => Some(Node::Ctl(Ctl::ALL[(i - CTL0) as usize])),
            i if i >= DEV_BASE => {
                let id = u32::try_from((i - DEV_BASE) / DEV_STRIDE).ok()?;
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

    /// How long the kernel may keep the name of this node. A target's names
    /// (its image, partitions, status directory and sys/block link) are
    /// looked up every time: the same name can lead to another inode at once
    /// (a target flushed and found again is a new device, as ids are never
    /// reused; a partition table read again), and a name the kernel kept
    /// would lead to the old one (ENOENT) while `ls` already lists the new one.
    pub fn entry_ttl(self) -> Duration {
        match self {
            Node::Image(..) | Node::DevDir(_) | Node::SysLink(_) => Duration::ZERO,
            _ => TTL,
        }
    }

    /// The errno policy of setattr, for a node whose size is `size_now`:
    /// owner and mode cannot change (EPERM); a control file or command
    /// attribute may be truncated to 0 (`echo > discover` opens with
    /// O_TRUNC), but not `err`; an image keeps its size (EPERM, as a
    /// block device's cannot change); anything else refuses a size (EACCES).
    fn setattr(self, size_now: u64, owner_or_mode: bool, size: Option<u64>) -> Result<(), Error> {
        if owner_or_mode {
            return Err(fs_err!(libc::EPERM, "owner and mode cannot be changed"));
        }
        match (self, size) {
            (_, None) => Ok(()),
            (Node::Ctl(c), Some(0)) if c != Ctl::Err => Ok(()),
            (Node::Attr(_, i), Some(0)) if attr_is_command(ATTRS[i]) => Ok(()),
            (Node::Image(..), Some(s)) if s == size_now => Ok(()),
            (Node::Image(..), Some(_)) => Err(fs_err!(libc::EPERM, "the size of a disk cannot be changed")),
            (_, Some(_)) => Err(fs_err!(libc::EACCES, "not truncatable")),
        }
    }

    /// The errno policy of open, up to what the device decides (whether an
    /// image exists and may be written: see `BlockFs::open`). `err` and the
    /// status attributes are read-only (EACCES), the command attributes
    /// too on a read-only mount (EROFS); directories and links are not
    /// opened as files (EISDIR).
    fn open_rule(self, write: bool, mount_readonly: bool) -> Result<(), Error> {
        match self {
            Node::Image(..) => Ok(()),
            Node::Attr(_, i) if write && !attr_is_command(ATTRS[i]) => {
                Err(fs_err!(libc::EACCES, "{} is read-only", ATTRS[i]))
            }
            Node::Attr(_, i) if write && mount_readonly => Err(fs_err!(libc::EROFS, "{}: read-only mount", ATTRS[i])),
            Node::Ctl(Ctl::Err) if write => Err(fs_err!(libc::EACCES, "err is read-only")),
            Node::Ctl(_) | Node::Attr(..) => Ok(()),
            _ => Err(is_a_directory()),
        }
    }
}

/// A node's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
    Symlink,
}

/// A node's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub perm: u16,
    pub size: u64,
    pub nlink: u32,
}

/// A name found by lookup: its attributes and how long the kernel may keep
/// the name ([`Node::entry_ttl`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub attr: Attr,
    pub ttl: Duration,
}

/// One name of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: String,
}

/// An open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// An image file, by its handle (`BlockFs::open_image`): read and
    /// written at any offset, past the page cache.
    Image(u64),
    /// A control file or attribute: each read and write is one command,
    /// not seekable, past the page cache.
    Stream,
}

/// What the tree never allows, as in /sys (the tree is the initiator's, as
/// /sys is the kernel's), and what no file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Create,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    /// Extended attributes: ENOSYS, after which the kernel answers
    /// EOPNOTSUPP itself (`ls -l` asks for security.selinux).
    Xattr,
    /// No file is a terminal or takes an ioctl: `isatty()` and the like
    /// get ENOTTY, as on a regular file.
    Ioctl,
}

impl Refused {
    /// sysfs's errnos: EACCES to create a name, EPERM to make, remove,
    /// rename or link one.
    pub fn error(self) -> Error {
        match self {
            Refused::Create => fs_err!(libc::EACCES, "names cannot be created"),
            Refused::Mknod | Refused::Mkdir | Refused::Symlink | Refused::Link => {
                fs_err!(libc::EPERM, "names cannot be made")
            }
            Refused::Unlink | Refused::Rmdir => fs_err!(libc::EPERM, "names cannot be removed"),
            Refused::Rename => fs_err!(libc::EPERM, "names cannot be renamed"),
            Refused::Xattr => fs_err!(libc::ENOSYS, "no extended attributes"),
            Refused::Ioctl => fs_err!(libc::ENOTTY, "no ioctl"),
        }
    }
}

fn no_such_file() -> Error {
    Error::new(libc::ENOENT, "no such file")
}

fn is_a_directory() -> Error {
    Error::new(libc::EISDIR, "is a directory")
}

fn node(ino: u64) -> Result<Node, Error> {
    Node::from_ino(ino).ok_or_else(no_such_file)
}

impl BlockFs {
    /// The device with this id, if it is listed.
    fn visible_device(&self, id: u32) -> Option<Arc<Device>> {
        self.ini.device_by_id(id).filter(|d| d.visible())
    }

    fn visible_named(&self, shelf: u16, slot: u8) -> Option<Arc<Device>> {
        self.ini.device(shelf, slot).filter(|d| d.visible())
    }

    fn visible_devices(&self) -> Vec<Arc<Device>> {
        self.ini.devices().into_iter().filter(|d| d.visible()).collect()
    }

    /// A node's attributes; None if it names nothing (now).
    fn attr_of(&self, node: Node) -> Option<Attr> {
        let (kind, perm, size, nlink) = match node {
            Node::Root => (Kind::Directory, 0o755, 0, 4),
            Node::BlockDir | Node::SysBlockDir => (Kind::Directory, 0o755, 0, 2),
            Node::SysDir => (Kind::Directory, 0o755, 0, 3),
            Node::Ctl(c) => (Kind::File, c.mode(), 0, 1),
            Node::Image(id, part) => {
                let d = self.visible_device(id)?;
                let ro = self.readonly || d.is_readonly();
                let perm = if ro { 0o444 } else { 0o660 };
                (Kind::File, perm, self.region(&d, part)?.len, 1)
            }
            Node::DevDir(id) => {
                self.visible_device(id)?;
                (Kind::Directory, 0o555, 0, 2)
            }
            Node::Attr(id, i) => {
                self.visible_device(id)?;
                let perm = if attr_is_command(ATTRS[i]) && !self.readonly { 0o644 } else { 0o444 };
                (Kind::File, perm, attr_size(ATTRS[i]), 1)
            }
            Node::SysLink(id) => (Kind::Symlink, 0o777, sys_link_target(&*self.visible_device(id)?).len() as u64, 1),
        };
        Some(Attr { ino: node.ino(), kind, perm, size, nlink })
    }

    /// The node `name` names in directory `parent`. A target's names are
    /// found only as the target's own name spells them (`e3.7`, not `e03.7`).
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
                let d = self.visible_named(s, t)?;
                let canonical = if part == 0 { d.name() } else { format!("{}p{part}", d.name()) };
                (canonical == name).then_some(Node::Image(d.id, part))
            }
            Node::BlockDir => {
                let (s, t) = parse_dev_name(name)?;
                let d = self.visible_named(s, t)?;
                (d.name() == name).then_some(Node::DevDir(d.id))
            }
            Node::DevDir(id) => {
                self.visible_device(id)?;
                ATTRS.iter().position(|a| *a == name).map(|i| Node::Attr(id, i))
            }
            Node::SysDir => (name == "block").then_some(Node::SysBlockDir),
            Node::SysBlockDir => {
                let (s, t) = parse_sys_link_name(name)?;
                let d = self.visible_named(s, t)?;
                (sys_link_name(&d) == name).then_some(Node::SysLink(d.id))
            }
            _ => None,
        }
    }

    /// Looks `name` up in directory `parent` (ENOENT if it names nothing).
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Entry, Error> {
        let node = name.to_str().and_then(|n| self.lookup_node(parent, n));
        node.and_then(|n| Some(Entry { ttl: n.entry_ttl(), attr: self.attr_of(n)? })).ok_or_else(no_such_file)
    }

    /// The attributes of inode `ino` (ENOENT if it names nothing now).
    pub fn getattr(&self, ino: u64) -> Result<Attr, Error> {
        self.attr_of(node(ino)?).ok_or_else(no_such_file)
    }

    /// setattr: changes nothing, and refuses what cannot change
    /// ([`Node::setattr`]); answers the attributes.
    pub fn setattr(&self, ino: u64, owner_or_mode: bool, size: Option<u64>) -> Result<Attr, Error> {
        let node = node(ino)?;
        let attr = self.attr_of(node).ok_or_else(no_such_file)?;
        node.setattr(attr.size, owner_or_mode, size)?;
        Ok(attr)
    }

    /// Where a symlink points (EINVAL for anything else).
    pub fn readlink(&self, ino: u64) -> Result<String, Error> {
        match node(ino)? {
            Node::SysLink(id) => self.visible_device(id).map(|d| sys_link_target(&d)).ok_or_else(no_such_file),
            _ => Err(fs_err!(libc::EINVAL, "not a symbolic link")),
        }
    }

    /// The listing of directory `ino`: `.`, `..`, then its names.
    pub fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>, Error> {
        let node = node(ino)?;
        let entry = |ino: u64, kind: Kind, name: String| DirEntry { ino, kind, name };
        let mut v = vec![entry(node.ino(), Kind::Directory, ".".into())];
        match node {
            Node::Root => {
                v.push(entry(ROOT, Kind::Directory, "..".into()));
                for c in Ctl::ALL {
                    v.push(entry(Node::Ctl(c).ino(), Kind::File, c.name().into()));
                }
                v.push(entry(BLOCK_DIR, Kind::Directory, "block".into()));
                v.push(entry(SYS_DIR, Kind::Directory, "sys".into()));
                for d in self.visible_devices() {
                    v.push(entry(Node::Image(d.id, 0).ino(), Kind::File, d.name()));
                    for p in self.partitions(&d).iter() {
                        v.push(entry(
                            Node::Image(d.id, p.number).ino(),
                            Kind::File,
                            format!("{}p{}", d.name(), p.number),
                        ));
                    }
                }
            }
            Node::BlockDir => {
                v.push(entry(ROOT, Kind::Directory, "..".into()));
                for d in self.visible_devices() {
                    v.push(entry(Node::DevDir(d.id).ino(), Kind::Directory, d.name()));
                }
            }
            Node::SysDir => {
                v.push(entry(ROOT, Kind::Directory, "..".into()));
                v.push(entry(SYS_BLOCK_DIR, Kind::Directory, "block".into()));
            }
            Node::SysBlockDir => {
                v.push(entry(SYS_DIR, Kind::Directory, "..".into()));
                for d in self.visible_devices() {
                    v.push(entry(Node::SysLink(d.id).ino(), Kind::Symlink, sys_link_name(&d)));
                }
            }
            Node::DevDir(id) => {
                self.visible_device(id).ok_or_else(no_such_file)?;
                v.push(entry(BLOCK_DIR, Kind::Directory, "..".into()));
                for (i, a) in ATTRS.iter().enumerate() {
                    v.push(entry(Node::Attr(id, i).ino(), Kind::File, a.to_string()));
                }
            }
            _ => return Err(no_such_file()),
        }
        Ok(v)
    }

    /// Opens inode `ino` (`write`: for writing). An image file is counted
    /// open (its device's openers, and its partition table kept in force)
    /// until [`BlockFs::release`]; it is refused (EROFS) for writing on a
    /// read-only mount or target.
    pub fn open(&self, ino: u64, write: bool) -> Result<Opened, Error> {
        let node = node(ino)?;
        node.open_rule(write, self.readonly)?;
        let Node::Image(id, part) = node else { return Ok(Opened::Stream) };
        let d = self.visible_device(id).ok_or_else(no_such_file)?;
        if self.region(&d, part).is_none() {
            return Err(no_such_file());
        }
        if write && (self.readonly || d.is_readonly()) {
            return Err(fs_err!(libc::EROFS, "{}: read-only", d.name()));
        }
        self.open_image(&d, part).map(Opened::Image).ok_or_else(no_such_file)
    }

    /// The last descriptor of an open file is gone.
    pub fn release(&self, ino: u64, fh: u64) {
        if let Some(Node::Image(..)) = Node::from_ino(ino) {
            self.release_image(fh);
        }
    }

    /// Each close(2) of a descriptor, before it returns: a writer of the
    /// partition table closing the disk makes the table be read again.
    pub fn flush(&self, ino: u64, fh: u64) {
        if let Some(Node::Image(..)) = Node::from_ino(ino) {
            self.closing_image(fh);
        }
    }

    /// The image file `ino` as its device and byte range.
    fn image(&self, id: u32, part: u32) -> Result<(Arc<Device>, super::Region), Error> {
        let d = self.visible_device(id).ok_or_else(no_such_file)?;
        let r = self.region(&d, part).ok_or_else(no_such_file)?;
        Ok((d, r))
    }

    /// Reads `size` bytes at `offset` of file `ino`.
    pub fn read(self: &Arc<Self>, ino: u64, offset: u64, size: u32, reply: ReadReply) {
        match Node::from_ino(ino) {
            Some(Node::Image(id, part)) => match self.image(id, part) {
                Ok((d, r)) => self.read_image(&d, r, offset, size, reply),
                Err(e) => reply(Err(e)),
            },
            Some(Node::Ctl(c)) => self.read_ctl(c, offset, size, reply),
            Some(Node::Attr(id, i)) => match self.visible_device(id) {
                Some(d) => self.read_attr(&d, ATTRS[i], offset, size, reply),
                None => reply(Err(no_such_file())),
            },
            _ => reply(Err(is_a_directory())),
        }
    }

    /// Writes `data` at `offset` of file `ino`, opened as handle `fh`.
    pub fn write(self: &Arc<Self>, ino: u64, fh: u64, offset: u64, data: &[u8], reply: WriteReply) {
        match Node::from_ino(ino) {
            Some(Node::Image(id, part)) => match self.image(id, part) {
                Ok((d, r)) => {
                    self.wrote_image(fh, &d, r, offset, data.len());
                    self.write_image(&d, r, offset, data, reply)
                }
                Err(e) => reply(Err(e)),
            },
            Some(Node::Ctl(c)) => match self.write_ctl_at(c, data, offset) {
                Ok(()) => reply(Ok(data.len() as u32)),
                Err(e) => {
                    log::info!("write to {}: {e}", c.name());
                    reply(Err(e.into()))
                }
            },
            Some(Node::Attr(id, i)) => match self.visible_device(id) {
                Some(d) => self.write_attr(&d, ATTRS[i], data, offset, reply),
                None => reply(Err(no_such_file())),
            },
            _ => reply(Err(is_a_directory())),
        }
    }

    /// fsync of file `ino`: FLUSH CACHE for an image, nothing for the rest.
    pub fn fsync(self: &Arc<Self>, ino: u64, reply: EmptyReply) {
        match Node::from_ino(ino) {
            Some(Node::Image(id, _)) => match self.visible_device(id) {
                Some(d) => self.fsync_image(&d, reply),
                None => reply(Err(no_such_file())),
            },
            _ => reply(Ok(())),
        }
    }

    /// The mount's size for statfs: the listed targets' sizes, in
    /// [`BLOCK_SIZE`] blocks, none free.
    pub fn statfs_blocks(&self) -> u64 {
        let per_block = u64::from(BLOCK_SIZE) / crate::wire::SECTOR as u64;
        self.visible_devices().iter().map(|d| d.sectors() / per_block).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of node, at the edges of its numbers.
    fn every_node() -> Vec<Node> {
        let mut v = vec![Node::Root, Node::BlockDir, Node::SysDir, Node::SysBlockDir];
        v.extend(Ctl::ALL.map(Node::Ctl));
        for id in [0, 1, 7, u32::MAX] {
            v.extend([Node::DevDir(id), Node::SysLink(id), Node::Image(id, 0)]);
            v.extend([1, 4, 5, MAX_PARTITION_NUMBER].map(|p| Node::Image(id, p)));
            v.extend((0..ATTRS.len()).map(|i| Node::Attr(id, i)));
        }
        v
    }

    #[test]
    fn every_node_has_its_own_inode_number_and_is_found_by_it() {
        let nodes = every_node();
        for n in &nodes {
            assert_eq!(Node::from_ino(n.ino()), Some(*n), "{n:?} (inode {})", n.ino());
        }
        let mut inos: Vec<u64> = nodes.iter().map(|n| n.ino()).collect();
        inos.sort_unstable();
        inos.dedup();
        assert_eq!(inos.len(), nodes.len(), "two nodes share an inode number");
    }

    #[test]
    fn the_numbers_users_see_stay_as_they_were() {
        // `ls -i` shows them; renumbering would change them under scripts.
        assert_eq!(Node::Root.ino(), 1);
        assert_eq!(Ctl::ALL.map(|c| Node::Ctl(c).ino()), [2, 3, 4, 5, 6]);
        assert_eq!((Node::BlockDir.ino(), Node::SysDir.ino(), Node::SysBlockDir.ino()), (7, 8, 9));
        assert_eq!(Node::Image(3, 0).ino(), (1 << 20) + 3 * 512);
        assert_eq!(Node::Image(3, 2).ino(), (1 << 20) + 3 * 512 + 258);
        assert_eq!(Node::Attr(3, 0).ino(), (1 << 20) + 3 * 512 + 2);
        assert_eq!(Node::SysLink(3).ino(), (1 << 20) + 3 * 512 + 255);
    }

    #[test]
    fn numbers_that_name_nothing_are_no_node() {
        let dev = 1 << 20;
        for ino in [0, 10, 11, dev - 1, dev + 2 + ATTRS.len() as u64, dev + 254, dev + 256, dev + 511 + 1 + 256] {
            assert_eq!(Node::from_ino(ino), None, "inode {ino}");
        }
        // A device id past u32 is no device.
        assert_eq!(Node::from_ino(dev + (u32::MAX as u64 + 1) * 512), None);
    }

    #[test]
    fn only_a_targets_names_are_looked_up_every_time() {
        for n in every_node() {
            let target = matches!(n, Node::Image(..) | Node::DevDir(_) | Node::SysLink(_));
            assert_eq!(n.entry_ttl(), if target { Duration::ZERO } else { TTL }, "{n:?}");
        }
    }

    fn errno<T: std::fmt::Debug>(r: Result<T, Error>) -> i32 {
        r.expect_err("refused").errno()
    }

    fn attr(name: &str) -> Node {
        Node::Attr(0, ATTRS.iter().position(|a| *a == name).unwrap())
    }

    #[test]
    fn setattr_changes_no_owner_or_mode_and_truncates_only_what_takes_commands() {
        for n in every_node() {
            assert_eq!(errno(n.setattr(0, true, None)), libc::EPERM, "{n:?}");
            assert!(n.setattr(0, false, None).is_ok(), "{n:?}: times are accepted and ignored");
        }
        // O_TRUNC of a control file or command attribute (`echo > discover`).
        for c in [Ctl::Discover, Ctl::Interfaces, Ctl::Revalidate, Ctl::Flush] {
            assert!(Node::Ctl(c).setattr(0, false, Some(0)).is_ok(), "{c:?}");
            assert_eq!(errno(Node::Ctl(c).setattr(0, false, Some(1))), libc::EACCES, "{c:?}");
        }
        assert_eq!(errno(Node::Ctl(Ctl::Err).setattr(0, false, Some(0))), libc::EACCES);
        for a in ["config", "masks", "reserve"] {
            assert!(attr(a).setattr(4096, false, Some(0)).is_ok(), "{a}");
        }
        for a in ["state", "stats", "identify"] {
            assert_eq!(errno(attr(a).setattr(4096, false, Some(0))), libc::EACCES, "{a}");
        }
        // A disk keeps its size: truncate(2) to it is a no-op, any other is refused.
        assert!(Node::Image(0, 0).setattr(4096, false, Some(4096)).is_ok());
        assert_eq!(errno(Node::Image(0, 1).setattr(4096, false, Some(0))), libc::EPERM);
        assert_eq!(errno(Node::Root.setattr(0, false, Some(0))), libc::EACCES);
    }

    #[test]
    fn open_refuses_writes_to_what_only_reads_and_opens_no_directory() {
        for (n, ro) in [(Node::Ctl(Ctl::Err), false), (attr("state"), false), (attr("identify"), true)] {
            assert!(n.open_rule(false, ro).is_ok(), "{n:?} is read");
            assert_eq!(errno(n.open_rule(true, ro)), libc::EACCES, "{n:?} is not written");
        }
        for c in [Ctl::Discover, Ctl::Interfaces, Ctl::Revalidate, Ctl::Flush] {
            // A read-only mount still takes control commands (discover, flush...).
            assert!(Node::Ctl(c).open_rule(true, true).is_ok(), "{c:?}");
        }
        assert!(attr("config").open_rule(true, false).is_ok());
        assert_eq!(errno(attr("config").open_rule(true, true)), libc::EROFS);
        assert!(attr("config").open_rule(false, true).is_ok());
        for n in [Node::Root, Node::BlockDir, Node::SysDir, Node::SysBlockDir, Node::DevDir(0), Node::SysLink(0)] {
            assert_eq!(errno(n.open_rule(false, false)), libc::EISDIR, "{n:?}");
        }
    }

    #[test]
    fn names_are_neither_made_nor_removed_with_sysfs_errnos() {
        assert_eq!(Refused::Create.error().errno(), libc::EACCES);
        for r in [
            Refused::Mknod,
            Refused::Mkdir,
            Refused::Symlink,
            Refused::Link,
            Refused::Unlink,
            Refused::Rmdir,
            Refused::Rename,
        ] {
            assert_eq!(r.error().errno(), libc::EPERM, "{r:?}");
        }
        assert_eq!(Refused::Xattr.error().errno(), libc::ENOSYS);
        assert_eq!(Refused::Ioctl.error().errno(), libc::ENOTTY);
    }
}
