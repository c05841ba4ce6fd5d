//! The host outside the testbeds: its /sbin, /usr and /etc, and
//! directories in /tmp.

use std::fs;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// Held by each test that changes /sbin, /usr or /etc (the Debian package,
/// the mount helper installed into /sbin) or whose outcome depends on what
/// is installed there (the mount helper looks for aoefs in PATH, systemd
/// for units in /lib/systemd): such tests run one at a time.
pub fn lock_host() -> MutexGuard<'static, ()> {
    static HOST: Mutex<()> = Mutex::new(());
    HOST.lock().unwrap_or_else(|e| e.into_inner())
}

/// A directory outside the testbeds (in /tmp), removed with everything in
/// it in Drop.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
