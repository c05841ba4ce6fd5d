//! Logging to syslog (the journal) once daemonized.

use crate::logging::Demoting;
use nix::syslog::{openlog, syslog, Facility, LogFlags, Severity};

pub struct SyslogLogger {
    level: log::LevelFilter,
}

impl SyslogLogger {
    /// Opens syslog as "aoefs" (facility daemon) and installs the logger
    /// (behind `logging::Demoting`, as the stderr logger).
    pub fn install(level: log::LevelFilter) {
        // openlog keeps the pointer: the name must live for ever.
        static IDENT: &std::ffi::CStr = c"aoefs";
        let _ = openlog(Some(IDENT), LogFlags::LOG_PID, Facility::LOG_DAEMON);
        if log::set_boxed_logger(Box::new(Demoting(SyslogLogger { level }))).is_ok() {
            log::set_max_level(level);
        }
    }
}

impl log::Log for SyslogLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
    }
    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let severity = match r.level() {
            log::Level::Error => Severity::LOG_ERR,
            log::Level::Warn => Severity::LOG_WARNING,
            log::Level::Info => Severity::LOG_INFO,
            log::Level::Debug | log::Level::Trace => Severity::LOG_DEBUG,
        };
        // syslog(3) takes a C string: a NUL would cut the message short.
        let msg = format!("{}", r.args()).replace('\0', " ");
        let _ = syslog(severity, &msg);
    }
    fn flush(&self) {}
}
