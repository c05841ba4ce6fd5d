//! The stop signals, SIGINT, SIGTERM and SIGHUP: taken by a thread of their
//! own (the daemon), or turned into a flag (the test tools).

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::atomic::{AtomicBool, Ordering};

const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The stop signals, blocked: a thread takes them with `wait`.
pub struct BlockedStopSignals(SigSet);

impl BlockedStopSignals {
    /// Blocks the stop signals in the calling thread, and so in every thread
    /// it starts afterwards: call it before starting threads, so that no
    /// thread but the one that calls `wait` ever takes them.
    pub fn block() -> BlockedStopSignals {
        let mut set = SigSet::empty();
        for sig in STOP_SIGNALS {
            set.add(sig);
        }
        let _ = set.thread_block();
        BlockedStopSignals(set)
    }

    /// Waits for one of the stop signals (sigwait): its number, or 0 if
    /// the wait failed.
    pub fn wait(&self) -> i32 {
        self.0.wait().map_or(0, |sig| sig as i32)
    }
}

/// Set by the stop signals once `set_flag_on_stop_signals` ran.
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn set_stop_flag(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes the stop signals set [`STOP`] instead of killing the process.
pub fn set_flag_on_stop_signals() {
    let sa = SigAction::new(SigHandler::Handler(set_stop_flag), SaFlags::empty(), SigSet::empty());
    for sig in STOP_SIGNALS {
        // SAFETY: the handler does nothing but one lock-free atomic store,
        // which is async-signal-safe, and it takes over signals that
        // neither Rust's runtime nor our libraries handle themselves.
        let _ = unsafe { sigaction(sig, &sa) };
    }
}
