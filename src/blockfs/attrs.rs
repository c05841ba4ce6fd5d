//! The status directory of a target, `block/eX.Y/`: attributes answered from
//! the device's snapshot (`state`, `mac`, `stats`, ...) and the ones that
//! send a command to the target (`config`, `masks`, `reserve`).

use super::{command_bytes, slice_at, BlockFs, CtlError, ReadReply, WriteReply};
use crate::device::{Device, Snapshot};
use crate::engine::{Counters, PathState};
use crate::fs_err;
use crate::initiator::{CommandReply, TargetCommand};
use crate::wire::{AoeError, Directive, Mac};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Status attributes in `block/eX.Y/`.
pub const ATTRS: [&str; 14] = [
    "state",
    "mac",
    "paths",
    "netif",
    "firmware-version",
    "payload",
    "size",
    "model",
    "serial",
    "identify",
    "stats",
    "config",
    "masks",
    "reserve",
];

/// Attributes that send a command to the target when read or written.
pub fn attr_is_command(name: &str) -> bool {
    matches!(name, "config" | "masks" | "reserve")
}

/// The size an attribute file shows: `identify` is the 512-byte IDENTIFY
/// block; the text attributes show a page, as sysfs does.
pub fn attr_size(name: &str) -> u64 {
    if name == "identify" {
        crate::wire::SECTOR as u64
    } else {
        4096
    }
}

/// Parses a `masks` write: whitespace/comma-separated `+MAC` (add), `-MAC`
/// (delete) or `MAC` (add); `self` stands for this host's MACs. A target
/// with a non-empty list ignores every MAC not on it, this host's too.
pub fn parse_mask_edit(text: &str, own: &[Mac]) -> Result<Vec<Directive>, CtlError> {
    let mut v = Vec::new();
    for tok in text.split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty()) {
        let (dcmd, m) = match tok.as_bytes()[0] {
            b'+' => (1, &tok[1..]),
            b'-' => (2, &tok[1..]),
            _ => (1, tok),
        };
        if m == "self" {
            v.extend(own.iter().map(|&mac| Directive { dcmd, mac }));
            continue;
        }
        let mac = Mac::parse(m).ok_or_else(|| CtlError::Invalid(format!("bad MAC {tok:?}")))?;
        v.push(Directive { dcmd, mac });
    }
    if v.is_empty() || v.len() > 255 {
        return Err(CtlError::Invalid("masks: give 1 to 255 of +MAC or -MAC".into()));
    }
    Ok(v)
}

/// Parses a `reserve` write: MACs to reserve for (`self` = this host's
/// MACs), `!` first to force, nothing or `release` to release.
pub fn parse_reserve(text: &str, own: &[Mac]) -> Result<(Vec<Mac>, bool), CtlError> {
    let t = text.trim();
    let (force, t) = match t.strip_prefix('!') {
        Some(r) => (true, r.trim()),
        None => (false, t),
    };
    if t.is_empty() || t == "release" {
        return Ok((Vec::new(), force));
    }
    let mut macs = Vec::new();
    for tok in t.split(|c: char| c.is_whitespace() || c == ',').filter(|x| !x.is_empty()) {
        if tok == "self" {
            macs.extend_from_slice(own);
            continue;
        }
        macs.push(Mac::parse(tok).ok_or_else(|| CtlError::Invalid(format!("bad MAC {tok:?}")))?);
    }
    if macs.len() > 255 {
        return Err(CtlError::Invalid("reserve: at most 255 MACs".into()));
    }
    Ok((macs, force))
}

impl BlockFs {
    /// Reads an attribute; `config`, `masks` and `reserve` ask the target
    /// (on a worker thread), the others answer at once.
    pub fn read_attr(self: &Arc<Self>, dev: &Arc<Device>, attr: &'static str, off: u64, size: u32, reply: ReadReply) {
        if attr == "identify" {
            // The raw block, as the target sent it (9front's `ident`).
            let raw = dev.snapshot().identify_raw.unwrap_or_else(|| Arc::from(&[][..]));
            return reply(Ok(slice_at(&raw, off, size)));
        }
        if !attr_is_command(attr) {
            return match self.status_attr(dev, attr) {
                Some(s) => reply(Ok(slice_at(s.as_bytes(), off, size))),
                None => reply(Err(fs_err!(libc::ENOENT, "no attribute {attr}"))),
            };
        }
        let me = self.clone();
        let dev = dev.clone();
        self.pool.spawn(move || {
            let cmd = match attr {
                "config" => TargetCommand::ConfigRead,
                "masks" => TargetCommand::MaskRead,
                _ => TargetCommand::ReserveRead,
            };
            let text = me.ini.command(&dev, &cmd).map_err(CtlError::from).and_then(|mut r| match r.remove(0) {
                CommandReply::Config(c) => Ok(format!("{}\n", String::from_utf8_lossy(&c))),
                CommandReply::Masks { macs, .. } | CommandReply::Reserve(macs) => {
                    Ok(macs.iter().map(|m| format!("{}\n", m.hex12())).collect::<String>())
                }
                CommandReply::Error(e) => Err(CtlError::Refused(e)),
            });
            match text {
                Ok(t) => reply(Ok(slice_at(t.as_bytes(), off, size))),
                Err(e) => reply(Err(e.into())),
            }
        });
    }

    /// Writes `config` (set; `!` first forces), `masks` (+MAC/-MAC edits) or
    /// `reserve` (MACs, `self`, `!` to force, empty or `release` to release),
    /// at `offset` of the open file: a write that only ends the line of an
    /// earlier one is no command (`command_bytes`).
    pub fn write_attr(
        self: &Arc<Self>,
        dev: &Arc<Device>,
        attr: &'static str,
        data: &[u8],
        offset: u64,
        reply: WriteReply,
    ) {
        if !attr_is_command(attr) {
            return reply(Err(fs_err!(libc::EACCES, "{attr} is read-only")));
        }
        if data.len() > crate::wire::MAX_CONFIG_LEN + 2 {
            return reply(Err(fs_err!(libc::EFBIG, "{attr}: write too long")));
        }
        let n = data.len() as u32;
        let Some(data) = command_bytes(data, offset).map(<[u8]>::to_vec) else {
            return reply(Ok(n));
        };
        let me = self.clone();
        let dev = dev.clone();
        self.pool.spawn(move || {
            let r = me.command_attr(&dev, attr, &data);
            if let Err(e) = &r {
                me.ini.errlog.push(format!("{}: {attr}: {e}", dev.name()));
            }
            reply(r.map(|_| n).map_err(Into::into))
        });
    }

    fn command_attr(&self, dev: &Arc<Device>, attr: &str, data: &[u8]) -> Result<(), CtlError> {
        let text = std::str::from_utf8(data).map_err(|_| CtlError::Invalid("not text".into()))?;
        let cmd = match attr {
            "config" => {
                let v = text.strip_suffix('\n').unwrap_or(text);
                let (force, v) = match v.strip_prefix('!') {
                    Some(r) => (true, r),
                    None => (false, v),
                };
                if v.len() > crate::wire::MAX_CONFIG_LEN || v.bytes().any(|b| b == b'\n' || b == 0) {
                    return Err(CtlError::Invalid("config: one line of at most 1024 bytes".into()));
                }
                TargetCommand::ConfigSet { value: v.as_bytes().to_vec(), force }
            }
            "masks" => TargetCommand::MaskEdit(parse_mask_edit(text, &self.ini.local_macs(dev))?),
            _ => {
                let (macs, force) = parse_reserve(text, &self.ini.local_macs(dev))?;
                TargetCommand::ReserveSet { macs, force }
            }
        };
        let set_config = matches!(cmd, TargetCommand::ConfigSet { .. });
        for r in self.ini.command(dev, &cmd)? {
            match r {
                CommandReply::Error(AoeError::ConfigStringPresent) if set_config => {
                    return Err(CtlError::ConfigPresent)
                }
                CommandReply::Error(e) => return Err(CtlError::Refused(e)),
                CommandReply::Masks { merror: 3, .. } => return Err(CtlError::ListFull),
                CommandReply::Masks { merror: 2, .. } => return Err(CtlError::Invalid("bad directive".into())),
                CommandReply::Masks { merror: m, .. } if m != 0 => return Err(CtlError::Refused(AoeError::Other(m))),
                _ => {}
            }
        }
        Ok(())
    }

    /// A status attribute of a device, newline-terminated.
    pub fn status_attr(&self, dev: &Device, attr: &str) -> Option<String> {
        let snap = dev.snapshot();
        let s = match attr {
            "state" => snap.state_string().to_string(),
            // One MAC, as the driver's attribute shows: the first path in
            // use (else the first failed one); never a path not verified.
            "mac" => {
                let first = |st: PathState| snap.paths.iter().find(|p| p.state == st);
                first(PathState::InUse)
                    .or_else(|| first(PathState::Failed))
                    .map(|p| p.mac.hex12())
                    .unwrap_or_else(|| "000000000000".into())
            }
            // Every path: target MAC, interface, state.
            "paths" => {
                return Some(
                    snap.paths.iter().map(|p| format!("{} {} {}\n", p.mac.hex12(), p.ifname, p.state)).collect(),
                )
            }
            "netif" => {
                let mut names: Vec<&str> = Vec::new();
                for p in snap.paths.iter().filter(|p| p.state.verified()) {
                    if !names.contains(&p.ifname.as_str()) {
                        names.push(&p.ifname);
                    }
                }
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(",")
                }
            }
            "firmware-version" => format!("0x{:04x}", snap.firmware),
            "payload" => snap.payload.to_string(),
            "size" => snap.identify.as_ref().map_or(0, |i| i.sectors).to_string(),
            "model" => snap.identify.as_ref().map(|i| i.model.clone()).unwrap_or_default(),
            "serial" => snap.identify.as_ref().map(|i| i.serial.clone()).unwrap_or_default(),
            "stats" => return Some(self.stats_text(&snap)),
            _ => return None,
        };
        Some(s + "\n")
    }

    fn stats_text(&self, snap: &Snapshot) -> String {
        let mut s = String::new();
        let line = |s: &mut String, prefix: &str, c: &Counters| {
            let _ = writeln!(
                s,
                "{prefix}frames_sent {}\n{prefix}frames_received {}\n{prefix}retransmits {}\n{prefix}timeouts {}\n{prefix}errors {}\n{prefix}bytes_read {}\n{prefix}bytes_written {}\n{prefix}lost_jumbo {}",
                c.frames_sent, c.frames_received, c.retransmits, c.timeouts, c.errors, c.bytes_read, c.bytes_written, c.lost_jumbo
            );
        };
        line(&mut s, "", &snap.counters);
        // A stale tag cannot be tied to a path: counted per target only.
        let _ = writeln!(s, "unexpected {}", snap.counters.unexpected);
        // Answers to a transmission of a command another transmission had
        // already completed.
        let _ = writeln!(s, "late {}", snap.counters.late);
        let _ = writeln!(s, "ignored {}", snap.ignored);
        // Requests completed without error and their summed time from
        // submission to completion (per target; what `aoefs iostat` reads),
        // and how long these counters have been counting.
        let c = &snap.counters;
        let _ = writeln!(
            s,
            "read_requests {}\nwrite_requests {}\nread_wait_us {}\nwrite_wait_us {}\nage_us {}",
            c.read_requests,
            c.write_requests,
            c.read_wait_us,
            c.write_wait_us,
            self.ini.now().saturating_sub(snap.created)
        );
        // New paths (MACs) whose verification failed.
        let _ = writeln!(s, "paths_refused {}", snap.refused_paths);
        let _ = writeln!(
            s,
            "rtt_avg_us {}\nrtt_dev_us {}\nrto_us {}\nwindow {}\nmax_window {}\noutstanding {}\nheld {}\nqueued {}\nghosts {}",
            snap.srtt,
            snap.rttvar,
            snap.rto,
            snap.cwnd,
            snap.max_window,
            snap.outstanding,
            snap.held,
            snap.queued,
            snap.ghosts
        );
        // Frames ignored before they could be tied to a target (whole mount).
        let ig = &self.ini.ignored;
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "mount_ignored_malformed {}\nmount_ignored_unknown_target {}\nmount_ignored_unknown_source {}\nmount_ignored_foreign_tag {}\nmount_ignored_unexpected_tag {}\nmount_ignored_untrusted_mac {}\nmount_dropped_targets {}",
            ld(&ig.malformed),
            ld(&ig.unknown_target),
            ld(&ig.unknown_source),
            ld(&ig.foreign_tag),
            ld(&ig.unexpected_tag),
            ld(&ig.untrusted_mac),
            ld(&ig.dropped_target)
        );
        for p in &snap.paths {
            let prefix = format!("path {} {} ", p.ifname, p.mac.hex12());
            line(&mut s, &prefix, &p.counters);
            let _ = writeln!(s, "{prefix}failed {}", u8::from(p.state == PathState::Failed));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_and_reserve_parsing() {
        let me = [Mac([2, 0, 0, 0, 0, 1])];
        let d = parse_mask_edit("+00:11:22:33:44:55 -001122334466, 001122334477 +self", &me).unwrap();
        assert_eq!(d.iter().map(|x| x.dcmd).collect::<Vec<_>>(), [1, 2, 1, 1]);
        assert_eq!(d[3].mac, me[0]);
        for bad in ["", "   ", "+0011223344", "garbage", "+00112233445566", "-zz1122334455"] {
            assert!(parse_mask_edit(bad, &me).is_err(), "{bad:?}");
        }
        assert_eq!(parse_reserve("", &me).unwrap(), (vec![], false));
        assert_eq!(parse_reserve("release\n", &me).unwrap(), (vec![], false));
        assert_eq!(parse_reserve("!self", &me).unwrap(), (me.to_vec(), true));
        assert_eq!(parse_reserve("001122334455 self", &me).unwrap().0.len(), 2);
        assert!(parse_reserve("nonsense", &me).is_err());
    }
}
