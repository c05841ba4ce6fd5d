//! Forking into the background, the pipe the daemon reports its start-up
//! through, and unmounting.

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, ForkResult};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::path::Path;

/// What `daemonize` returns in each of the two processes.
pub enum Forked {
    /// In the parent: what the child reports.
    Parent(Startup),
    /// In the child (the daemon): where to report.
    Child(ReadyPipe),
}

/// The parent's end of the start-up pipe.
pub struct Startup(OwnedFd);

impl Startup {
    /// Waits for the child's status byte (0: mounted): None when the child
    /// closed the pipe without one (it died).
    pub fn wait(self) -> Option<u8> {
        let mut b = [0u8; 1];
        match nix::unistd::read(&self.0, &mut b) {
            Ok(1) => Some(b[0]),
            _ => None,
        }
    }
}

/// The daemon's end of the start-up pipe.
pub struct ReadyPipe(OwnedFd);

impl ReadyPipe {
    /// Reports how start-up ended (0: mounted) and closes the pipe.
    pub fn notify(self, code: u8) {
        let _ = nix::unistd::write(&self.0, &[code]);
    }
}

/// How many threads this process runs, if /proc says.
fn threads() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

/// Forks into a daemon: a pipe, then fork(2); the child starts a new session
/// (setsid) and gets the pipe's write end, the parent its read end, to wait
/// until the daemon reports start-up (the parent then exits).
///
/// It must run before any thread starts, and it checks: with more than one
/// thread it fails (and does not fork). fork(2) copies only the calling
/// thread, so locks that other threads held at that moment (malloc's,
/// stdio's, a logger's, parking_lot's) would stay locked for ever in the
/// child, and their threads would be missing. The errors are messages
/// ("pipe: ...", "fork: ...").
pub fn daemonize() -> Result<Forked, String> {
    if let Some(n) = threads().filter(|&n| n > 1) {
        return Err(format!("fork: {n} threads are running; the daemon must fork before any thread starts"));
    }
    let (read, write) = nix::unistd::pipe().map_err(|e| format!("pipe: {}", io::Error::from(e)))?;
    // SAFETY: the check above found this process running one thread (this
    // one; nothing between it and here starts another), so the child is a
    // whole copy of the process: no lock is held by a thread it lacks, and it
    // may go on to do anything the parent could.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(format!("fork: {}", io::Error::from(e))),
        Ok(ForkResult::Child) => {
            drop(read);
            let _ = nix::unistd::setsid();
            Ok(Forked::Child(ReadyPipe(write)))
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(write);
            Ok(Forked::Parent(Startup(read)))
        }
    }
}

/// Points stdin and stdout (and stderr unless `keep_stderr`) at /dev/null.
pub fn detach_stdio(keep_stderr: bool) {
    let Ok(null) = open("/dev/null", OFlag::O_RDWR, Mode::empty()) else { return };
    let _ = dup2_stdin(&null);
    let _ = dup2_stdout(&null);
    if !keep_stderr {
        let _ = dup2_stderr(&null);
    }
    if null.as_raw_fd() <= 2 {
        // It was opened as one of stdin, stdout, stderr (that one was
        // closed): keep it open as that.
        let _ = null.into_raw_fd();
    }
}

/// Detaches the mount on `path` (umount2 with MNT_DETACH): gone from the
/// tree at once, torn down when its last user lets go.
pub fn unmount_lazily(path: &Path) -> io::Result<()> {
    Ok(nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)?)
}

/// Asks the file system mounted on `path` for its statistics (statfs):
/// FUSE passes the request to the file system's process every time, so a
/// mount whose process is gone answers ENOTCONN (a stat may still be
/// answered from the kernel's cache).
pub fn statfs(path: &Path) -> io::Result<()> {
    nix::sys::statfs::statfs(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemonize_refuses_to_fork_with_threads_running() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        match daemonize() {
            Err(e) => assert!(e.contains("must fork before any thread starts"), "{e}"),
            // The check failed: end the copy at once, and fail in the parent.
            Ok(Forked::Child(_)) => std::process::exit(1),
            Ok(Forked::Parent(startup)) => panic!("forked with threads running (child: {:?})", startup.wait()),
        }
        drop(tx);
        let _ = t.join();
    }
}
