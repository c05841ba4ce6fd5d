//! Shared by the test tools in `src/bin/` (`aoe-faultfwd`, `aoe-inject`)
//! and the tests that drive them: the stop flag their signal handlers set,
//! and the hostile-frame kinds `aoe-inject` sends.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGTERM, SIGINT and SIGHUP once `stop_on_signals` ran: the tool
/// then ends its loop and writes its counters.
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGTERM, SIGINT and SIGHUP set `STOP` instead of killing the tool.
pub fn stop_on_signals() {
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The hostile frames `aoe-inject` sends unless `--kinds` names others.
pub const INJECT_KINDS: [&str; 10] = [
    "foreign-mac",
    "foreign-error",
    "wrong-target",
    "stale-tag",
    "unknown-tag",
    "truncated",
    "oversized",
    "bad-version",
    "no-tag-bit",
    "garbage",
];
