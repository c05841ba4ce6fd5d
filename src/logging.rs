//! What the two loggers of `aoefs` share (stderr through env_logger, and
//! `sys::syslog` for a daemon): messages of other crates that are expected
//! in normal use are demoted to debug level before the logger filters them.
//!
//! fuser logs "Failed to send FUSE reply" as an ERROR (target
//! `fuser::reply`) whenever the kernel no longer wants an answer: the caller
//! was interrupted or killed while it waited, as a `cat err` ended with
//! Ctrl-C or `kill` is. Nothing is lost then, so it is a debug message.

use log::{Level, Log, Metadata, Record};

/// fuser's module that logs failed replies.
const FUSER_REPLY: &str = "fuser::reply";

/// The level a message is logged at.
pub fn level(target: &str, level: Level) -> Level {
    if target == FUSER_REPLY {
        level.max(Level::Debug)
    } else {
        level
    }
}

/// A logger that passes every record on to `L` at its `level`.
pub struct Demoting<L>(pub L);

impl<L: Log> Log for Demoting<L> {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        self.0.enabled(&Metadata::builder().level(level(m.target(), m.level())).target(m.target()).build())
    }

    fn log(&self, r: &Record<'_>) {
        let lvl = level(r.target(), r.level());
        if lvl == r.level() {
            return self.0.log(r);
        }
        self.0.log(
            &Record::builder()
                .args(*r.args())
                .level(lvl)
                .target(r.target())
                .module_path(r.module_path())
                .file(r.file())
                .line(r.line())
                .build(),
        )
    }

    fn flush(&self) {
        self.0.flush()
    }
}

/// Installs env_logger (stderr; RUST_LOG, else `default_filter`) behind
/// [`Demoting`].
pub fn init_stderr(default_filter: &str) {
    let logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter)).build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Demoting(logger))).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what reaches it, at `Info` and above.
    #[derive(Default)]
    struct Sink(Mutex<Vec<(Level, String)>>);

    impl Log for Sink {
        fn enabled(&self, m: &Metadata<'_>) -> bool {
            m.level() <= Level::Info
        }
        fn log(&self, r: &Record<'_>) {
            if self.enabled(r.metadata()) {
                self.0.lock().unwrap().push((r.level(), r.args().to_string()));
            }
        }
        fn flush(&self) {}
    }

    fn record(l: &Demoting<Sink>, target: &str, level: Level, msg: &str) {
        l.log(&Record::builder().args(format_args!("{msg}")).level(level).target(target).build());
    }

    #[test]
    fn failed_fuse_replies_become_debug_messages_and_nothing_else_changes() {
        let l = Demoting(Sink::default());
        record(&l, "fuser::reply", Level::Error, "Failed to send FUSE reply: No such file or directory");
        record(&l, "fuser::session", Level::Error, "session error");
        record(&l, "aoefs::initiator", Level::Warn, "capture stopped");
        assert_eq!(
            *l.0 .0.lock().unwrap(),
            [(Level::Error, "session error".to_string()), (Level::Warn, "capture stopped".to_string())]
        );
        let meta = |t| Metadata::builder().level(Level::Error).target(t).build();
        assert!(!l.enabled(&meta("fuser::reply")));
        assert!(l.enabled(&meta("fuser::reply2")));
        assert_eq!(level("fuser::reply", Level::Trace), Level::Trace);
    }
}
