//! The control files at the top of the mount: `discover`, `interfaces`,
//! `err`, `revalidate` and `flush`, as the driver has them.

use super::{parse_dev_name, slice_at, BlockFs, CtlError, ReadReply};
use crate::fs_err;
use crate::initiator::Forget;
use std::sync::Arc;
use std::time::Duration;

/// Largest write a control file accepts.
pub const CTL_MAX_WRITE: usize = 4096;
/// How long one read of `err` waits before answering EINTR (callers such as
/// cat retry; a reader's Ctrl-C takes effect at that point).
pub const ERR_READ_WAIT: Duration = Duration::from_millis(500);

/// The command in one write to a control file or a command attribute, at
/// `offset` of the open file: `None` when the write only ends the line of an
/// earlier write on the same open file (newlines or NULs after offset 0, as
/// Python's unbuffered print() writes the text and then "\n"), which is no
/// second command; else the bytes without the NULs that end them
/// (aoe-interfaces writes `printf '%s\0'`, which the driver accepts). A
/// newline alone at offset 0 is a command (`echo > flush`).
pub fn command_bytes(data: &[u8], offset: u64) -> Option<&[u8]> {
    if offset > 0 && !data.is_empty() && data.iter().all(|&b| matches!(b, b'\n' | b'\r' | 0)) {
        return None;
    }
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    Some(&data[..end])
}

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

    /// Writes one command to a control file, as the first write to it.
    pub fn write_ctl(&self, ctl: Ctl, data: &[u8]) -> Result<(), CtlError> {
        self.write_ctl_at(ctl, data, 0)
    }

    /// Writes a control file at `offset` of the open file: one command per
    /// write (see `command_bytes`).
    pub fn write_ctl_at(&self, ctl: Ctl, data: &[u8], offset: u64) -> Result<(), CtlError> {
        if data.len() > CTL_MAX_WRITE {
            return Err(CtlError::TooLong);
        }
        let Some(data) = command_bytes(data, offset) else {
            return Ok(());
        };
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
                self.partitions_stale(dev.id, "revalidated", 0);
                self.ini.revalidate(&dev);
                Ok(())
            }
            Ctl::Flush => {
                // The driver's name: it forgets devices (not FLUSH CACHE).
                let t = text.trim();
                let which = if t.is_empty() {
                    Forget::DownUnused
                } else if t == "all" {
                    Forget::AllUnused
                } else {
                    let (shelf, slot) = parse_dev_name(t).ok_or_else(|| CtlError::Invalid(t.into()))?;
                    Forget::Target { shelf, slot }
                };
                let before: Vec<u32> = self.ini.devices().iter().map(|d| d.id).collect();
                self.ini.forget_devices(which)?;
                let after: Vec<u32> = self.ini.devices().iter().map(|d| d.id).collect();
                for id in before.into_iter().filter(|i| !after.contains(i)) {
                    self.cache.drop_device(id);
                    self.forget_partitions(id);
                }
                Ok(())
            }
            Ctl::Err => Err(CtlError::NotWritable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::command_bytes;

    #[test]
    fn a_command_may_end_in_nuls_and_a_later_line_end_is_none() {
        // aoe-interfaces: printf '%s\0'
        assert_eq!(command_bytes(b"eth1 eth3\0", 0), Some(&b"eth1 eth3"[..]));
        assert_eq!(command_bytes(b"eth1\n\0\0", 0), Some(&b"eth1\n"[..]));
        // A NUL inside stays (and is refused as a control character).
        assert_eq!(command_bytes(b"eth1\0eth3", 0), Some(&b"eth1\0eth3"[..]));
        // print() unbuffered: "!rack 7", then "\n" at offset 7.
        assert_eq!(command_bytes(b"!rack 7", 0), Some(&b"!rack 7"[..]));
        assert_eq!(command_bytes(b"\n", 7), None);
        assert_eq!(command_bytes(b"\r\n", 7), None);
        assert_eq!(command_bytes(b"\0", 4), None);
        // A newline alone as the first write is a command (echo > flush),
        // and so is any text after an earlier write.
        assert_eq!(command_bytes(b"\n", 0), Some(&b"\n"[..]));
        assert_eq!(command_bytes(b"", 0), Some(&b""[..]));
        assert_eq!(command_bytes(b"e0.2\n", 5), Some(&b"e0.2\n"[..]));
        assert_eq!(command_bytes(b" \n", 5), Some(&b" \n"[..]));
        assert_eq!(command_bytes(b"\0\0", 0), Some(&b""[..]));
    }
}
