//! The mount point before aoefs mounts on it: what is mounted there already
//! (`/proc/self/mountinfo`), and the dead mount a killed aoefs leaves
//! behind, which is detached so that a new aoefs can take its place.
//!
//! When aoefs dies without unmounting (`kill -9`, a crash), its mount stays
//! in the tree and every access to it fails with ENOTCONN: the kernel's FUSE
//! connection has no daemon any more. Such a mount is detached lazily, as
//! `fusermount3 -u -z` does; programs that still hold files on it get
//! errors, as they already do.

use crate::sys;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One mount on a mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    /// `fuse.aoefs`, `ext4`, ...
    pub fstype: String,
    /// What mount(8) shows as its source (aoefs: `aoefs`).
    pub source: String,
}

impl Mounted {
    /// An aoefs mount (mounted directly or through fusermount3).
    pub fn is_aoefs(&self) -> bool {
        self.fstype == "fuse.aoefs" || (self.fstype.starts_with("fuse") && self.source == "aoefs")
    }
}

/// Why a mount point cannot be used; each says what, for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountPointError {
    /// A usage error: no such directory, not a directory.
    #[error("{0}")]
    Usage(String),
    /// Something is mounted there, or it could not be checked or cleared.
    #[error("{0}")]
    Busy(String),
}

/// Why a mount could not be detached: umount2(MNT_DETACH) failed, and so
/// did `fusermount3 -u -z`.
#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    /// fusermount3 could not be run.
    #[error("umount: {umount}; fusermount3: {fusermount}")]
    NoFusermount { umount: io::Error, fusermount: io::Error },
    /// fusermount3 failed; what it said.
    #[error("umount: {umount}; fusermount3: {stderr}")]
    Fusermount { umount: io::Error, stderr: String },
}

/// A usable mount point.
#[derive(Debug)]
pub struct Prepared {
    /// The mount point, canonical.
    pub path: PathBuf,
    /// How many dead aoefs mounts were detached from it.
    pub detached: usize,
}

/// The mounts on `path` in this process's mount namespace, oldest first
/// (the last one is the one visible). `mountinfo` is the text of
/// `/proc/self/mountinfo`.
pub fn mounts_on(mountinfo: &str, path: &Path) -> Vec<Mounted> {
    let want = path.as_os_str().as_encoded_bytes();
    let mut v = Vec::new();
    for l in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let f: Vec<&str> = l.split(' ').collect();
        if f.get(4).is_none_or(|m| unescape(m) != want) {
            continue;
        }
        let Some(sep) = f.iter().skip(6).position(|x| *x == "-").map(|i| i + 6) else { continue };
        v.push(Mounted {
            fstype: f.get(sep + 1).map(|s| String::from_utf8_lossy(&unescape(s)).into_owned()).unwrap_or_default(),
            source: f.get(sep + 2).map(|s| String::from_utf8_lossy(&unescape(s)).into_owned()).unwrap_or_default(),
        });
    }
    v
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// Detaches the mount on `path` lazily: umount2(MNT_DETACH) as root, else
/// (a user's own FUSE mount) through the setuid `fusermount3 -u -z`.
pub fn detach(path: &Path) -> Result<(), DetachError> {
    let umount = match sys::daemon::unmount_lazily(path) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let out = match Command::new("fusermount3").args(["-u", "-z", "--"]).arg(path).stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(fusermount) => return Err(DetachError::NoFusermount { umount, fusermount }),
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(DetachError::Fusermount { umount, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// Checks that `path` can be mounted on and returns it canonical. A dead
/// aoefs mount on it (the kernel answers ENOTCONN) is detached first; any
/// other mount there makes it busy. Only an aoefs mount is ever accessed
/// (a hung mount of another file system could block the check).
pub fn prepare(path: &Path) -> Result<Prepared, MountPointError> {
    let shown = path.display();
    let p = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            std::path::absolute(path).map_err(|e| MountPointError::Busy(format!("mount point {shown}: {e}")))?
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
            return Err(MountPointError::Usage(format!("mount point {shown}: {e}")))
        }
        Err(e) => return Err(MountPointError::Busy(format!("mount point {shown}: {e}"))),
    };
    let shown = p.display();
    let mut detached = 0;
    // Each round detaches one dead aoefs mount; more than a few stacked on
    // one directory would be a loop, not a crash.
    for _ in 0..8 {
        let Some(top) = mounts_on(&mountinfo(), &p).pop() else { break };
        if !top.is_aoefs() {
            return Err(MountPointError::Busy(format!(
                "mount point {shown} is busy: a {} file system is mounted there",
                top.fstype
            )));
        }
        // Not stat: the kernel may answer it from its cache for a while
        // after the process died.
        match sys::daemon::statfs(&p) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                detach(&p).map_err(|e| {
                    MountPointError::Busy(format!(
                        "mount point {shown}: the dead aoefs mount there could not be detached ({e})"
                    ))
                })?;
                detached += 1;
            }
            Ok(_) => {
                return Err(MountPointError::Busy(format!(
                    "mount point {shown} is busy: an aoefs is already mounted there"
                )))
            }
            Err(e) => return Err(MountPointError::Busy(format!("mount point {shown} is busy: {e}"))),
        }
    }
    match std::fs::metadata(&p) {
        Ok(m) if m.is_dir() => Ok(Prepared { path: p, detached }),
        Ok(_) => Err(MountPointError::Usage(format!("mount point {shown}: not a directory"))),
        Err(e) => Err(MountPointError::Busy(format!("mount point {shown}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
30 22 0:25 / /mnt/etherd rw,nosuid,nodev shared:5 - fuse.aoefs aoefs rw,user_id=0,group_id=0
31 30 0:26 / /mnt/etherd rw,nosuid,nodev - ext4 /dev/loop0 rw
40 1 0:27 / /mnt/a\\040b rw - fuse aoefs rw,user_id=1000
41 1 0:28 / /srv rw master:1 - fuse.sshfs host:/x rw
";

    #[test]
    fn mounts_on_a_path_oldest_first_with_escapes() {
        assert_eq!(
            mounts_on(MOUNTINFO, Path::new("/mnt/etherd")),
            [
                Mounted { fstype: "fuse.aoefs".into(), source: "aoefs".into() },
                Mounted { fstype: "ext4".into(), source: "/dev/loop0".into() }
            ]
        );
        let spaced = mounts_on(MOUNTINFO, Path::new("/mnt/a b"));
        assert_eq!(spaced.len(), 1);
        assert!(spaced[0].is_aoefs(), "fuse with source aoefs (no subtype)");
        assert!(!mounts_on(MOUNTINFO, Path::new("/srv"))[0].is_aoefs());
        assert!(mounts_on(MOUNTINFO, Path::new("/mnt")).is_empty());
        assert!(mounts_on(MOUNTINFO, Path::new("/mnt/etherd/")).is_empty(), "canonical paths only");
    }

    #[test]
    fn usage_errors_and_a_plain_directory() {
        let dir = std::env::temp_dir().join(format!("aoefs-mountpoint-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, b"x").unwrap();
        let p = prepare(&dir).unwrap();
        assert_eq!((p.path, p.detached), (std::fs::canonicalize(&dir).unwrap(), 0));
        assert!(matches!(prepare(&file), Err(MountPointError::Usage(m)) if m.ends_with("not a directory")));
        assert!(matches!(prepare(&dir.join("missing")), Err(MountPointError::Usage(_))));
        assert!(matches!(prepare(&file.join("below")), Err(MountPointError::Usage(_))));
        std::fs::remove_dir_all(&dir).unwrap();
        // Another file system there: busy, and it is not touched.
        match prepare(Path::new("/proc")) {
            Err(MountPointError::Busy(m)) => assert!(m.contains("a proc file system is mounted there"), "{m}"),
            other => panic!("/proc: {other:?}"),
        }
    }
}
