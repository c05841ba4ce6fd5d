//! Shared by the test tools in `src/bin/` (`aoe-faultfwd`, `aoe-inject`)
//! and the tests that drive them: the stop flag their signal handlers set,
//! and the hostile-frame kinds `aoe-inject` sends.

/// Set by SIGTERM, SIGINT and SIGHUP once `stop_on_signals` ran: the tool
/// then ends its loop and writes its counters.
pub use crate::sys::signal::STOP;

/// Makes SIGTERM, SIGINT and SIGHUP set `STOP` instead of killing the tool.
pub fn stop_on_signals() {
    crate::sys::signal::set_flag_on_stop_signals();
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
    "user-tool-tag",
    "garbage",
];
