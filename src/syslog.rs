//! Logging to syslog (the journal) once daemonized.

use std::ffi::CString;

pub struct SyslogLogger {
    level: log::LevelFilter,
}

impl SyslogLogger {
    /// Opens syslog as "aoefs" (facility daemon) and installs the logger.
    pub fn install(level: log::LevelFilter) {
        static IDENT: &[u8] = b"aoefs\0";
        unsafe { libc::openlog(IDENT.as_ptr() as *const libc::c_char, libc::LOG_PID, libc::LOG_DAEMON) };
        if log::set_boxed_logger(Box::new(SyslogLogger { level })).is_ok() {
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
        let pri = match r.level() {
            log::Level::Error => libc::LOG_ERR,
            log::Level::Warn => libc::LOG_WARNING,
            log::Level::Info => libc::LOG_INFO,
            log::Level::Debug | log::Level::Trace => libc::LOG_DEBUG,
        };
        let msg = CString::new(format!("{}", r.args()).replace('\0', " ")).unwrap_or_default();
        static FMT: &[u8] = b"%s\0";
        unsafe { libc::syslog(pri, FMT.as_ptr() as *const libc::c_char, msg.as_ptr()) };
    }
    fn flush(&self) {}
}
