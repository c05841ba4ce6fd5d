//! The control files at the top of the mount: `discover`, `interfaces`,
//! `err`, `revalidate` and `flush`, as the driver has them.

use super::{parse_dev_name, slice_at, BlockFs, CtlError, ReadReply};
use crate::fs_err;
use std::sync::Arc;
use std::time::Duration;

/// Largest write a control file accepts.
pub const CTL_MAX_WRITE: usize = 4096;
/// How long one read of `err` waits before answering EINTR (callers such as
/// cat retry; a reader's Ctrl-C takes effect at that point).
pub const ERR_READ_WAIT: Duration = Duration::from_millis(500);

/// The control files at the top of the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctl {
    Discover,
    Interfaces,
    Err,
    Revalidate,
    Flush,
}

impl Ctl {
    pub const ALL: [Ctl; 5] = [Ctl::Discover, Ctl::Interfaces, Ctl::Err, Ctl::Revalidate, Ctl::Flush];
    pub fn name(self) -> &'static str {
        match self {
            Ctl::Discover => "discover",
            Ctl::Interfaces => "interfaces",
            Ctl::Err => "err",
            Ctl::Revalidate => "revalidate",
            Ctl::Flush => "flush",
        }
    }
    pub fn mode(self) -> u16 {
        match self {
            Ctl::Discover | Ctl::Revalidate | Ctl::Flush => 0o200,
            Ctl::Interfaces => 0o644,
            Ctl::Err => 0o444,
        }
    }
}

impl BlockFs {
    /// Reads a control file. `err` blocks (on a worker) for a bounded time.
    pub fn read_ctl(self: &Arc<Self>, ctl: Ctl, off: u64, size: u32, reply: ReadReply) {
        match ctl {
            Ctl::Interfaces => {
                let s = format!("{}\n", self.ini.interfaces().join(" "));
                reply(Ok(slice_at(s.as_bytes(), off, size)));
            }
            Ctl::Err => {
                let me = self.clone();
                self.pool.spawn(move || match me.ini.errlog.pop_timeout(ERR_READ_WAIT) {
                    Some(m) => reply(Ok(slice_at(m.as_bytes(), 0, size))),
                    None => reply(Err(fs_err!(libc::EINTR, "no message yet"))),
                });
            }
            _ => reply(Err(fs_err!(libc::EBADF, "{} is not readable", ctl.name()))),
        }
    }

    /// Writes a control file: one command per write.
    pub fn write_ctl(&self, ctl: Ctl, data: &[u8]) -> Result<(), CtlError> {
        if data.len() > CTL_MAX_WRITE {
            return Err(CtlError::TooLong);
        }
        if ctl == Ctl::Discover {
            // As with the driver, any write triggers discovery.
            self.ini.discover();
            return Ok(());
        }
        let text = std::str::from_utf8(data).map_err(|_| CtlError::Invalid("not text".into()))?;
        if text.bytes().any(|b| b < 0x20 && !b.is_ascii_whitespace()) {
            return Err(CtlError::Invalid("control characters".into()));
        }
        match ctl {
            Ctl::Discover => unreachable!("handled above"),
            Ctl::Interfaces => {
                let names = crate::link::split_iflist(text);
                if let Some(bad) = names.iter().find(|n| !crate::link::valid_ifname(n)) {
                    return Err(CtlError::Invalid(format!("bad interface name {bad:?}")));
                }
                self.ini.set_interfaces(&names)?;
                self.ini.discover();
                Ok(())
            }
            Ctl::Revalidate => {
                let (shelf, slot) = parse_dev_name(text).ok_or_else(|| CtlError::Invalid(text.into()))?;
                // The driver answers EINVAL for a device it does not know.
                let dev = self
                    .ini
                    .device(shelf, slot)
                    .ok_or_else(|| CtlError::Invalid(format!("no device {}", text.trim())))?;
                self.forget_partitions(&dev);
                self.ini.revalidate(&dev);
                Ok(())
            }
            Ctl::Flush => {
                let t = text.trim();
                let which = if t.is_empty() {
                    None
                } else if t == "all" {
                    Some(None)
                } else {
                    Some(Some(parse_dev_name(t).ok_or_else(|| CtlError::Invalid(t.into()))?))
                };
                let before: Vec<u32> = self.ini.devices().iter().map(|d| d.id).collect();
                self.ini.flush(which)?;
                let after: Vec<u32> = self.ini.devices().iter().map(|d| d.id).collect();
                for id in before.into_iter().filter(|i| !after.contains(i)) {
                    self.cache.drop_device(id);
                }
                Ok(())
            }
            Ctl::Err => Err(CtlError::NotWritable),
        }
    }
}
