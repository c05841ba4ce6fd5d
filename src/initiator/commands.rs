//! The AoE commands to a target other than ATA and discovery (config
//! string, MAC mask list, reservation: `TargetCommand`), sent from a worker
//! thread with their own tag and matched by tag and source MAC: three tries
//! of one second each.

use super::{DeviceError, Initiator, NON_ATA_TAG};
use crate::device::Device;
use crate::wire::{self, AoeError, Body, ConfigRepr, Directive, Header, Mac, MacMaskRepr, Repr, ReserveRepr};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// An AoE command to a target: read or set its config string, read or edit
/// its MAC mask list, read or set its reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetCommand {
    ConfigRead,
    /// Set the config string; `force` overrides a different one.
    ConfigSet {
        value: Vec<u8>,
        force: bool,
    },
    MaskRead,
    MaskEdit(Vec<Directive>),
    ReserveRead,
    /// Reserve for these MACs (none: release); `force` overrides another's.
    ReserveSet {
        macs: Vec<Mac>,
        force: bool,
    },
}

/// A target's answer to a `TargetCommand`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandReply {
    Config(Vec<u8>),
    /// MAC mask list and its error code (0 ok, 1 unspecified, 2 bad dcmd, 3 full).
    Masks {
        merror: u8,
        macs: Vec<Mac>,
    },
    Reserve(Vec<Mac>),
    Error(AoeError),
}

impl TargetCommand {
    fn body(&self) -> Body<'_> {
        let config = |ccmd, config| Body::Config(ConfigRepr::query(ccmd, config));
        match self {
            TargetCommand::ConfigRead => config(wire::CCMD_READ, &[]),
            TargetCommand::ConfigSet { value, force } => {
                config(if *force { wire::CCMD_FORCE_SET } else { wire::CCMD_SET }, value)
            }
            TargetCommand::MaskRead => Body::MacMask(MacMaskRepr { mcmd: 0, merror: 0, directives: Vec::new() }),
            TargetCommand::MaskEdit(d) => Body::MacMask(MacMaskRepr { mcmd: 1, merror: 0, directives: d.clone() }),
            TargetCommand::ReserveRead => Body::Reserve(ReserveRepr { rcmd: 0, macs: Vec::new() }),
            TargetCommand::ReserveSet { macs, force } => {
                Body::Reserve(ReserveRepr { rcmd: if *force { 2 } else { 1 }, macs: macs.clone() })
            }
        }
    }

    fn is_read(&self) -> bool {
        matches!(self, TargetCommand::ConfigRead | TargetCommand::MaskRead | TargetCommand::ReserveRead)
    }
}

impl Initiator {
    /// Hands a reply to the `TargetCommand` waiting for its tag; true if
    /// one was.
    pub(super) fn deliver_reply(&self, h: &Header, body: &Body<'_>) -> bool {
        let reply = match body {
            Body::Config(c) => CommandReply::Config(c.config.to_vec()),
            Body::MacMask(m) => {
                CommandReply::Masks { merror: m.merror, macs: m.directives.iter().map(|d| d.mac).collect() }
            }
            Body::Reserve(r) => CommandReply::Reserve(r.macs.clone()),
            Body::Error(_) => CommandReply::Error(h.error.unwrap_or(AoeError::Other(0))),
            Body::Ata(_) => return false,
        };
        if !self.pending_commands.lock().contains_key(&h.tag) {
            return false;
        }
        // Only a reply from one of the device's target MACs counts (a
        // verified path's).
        let known = self.device(h.shelf, h.slot).is_some_and(|d| self.target_macs(&d).contains(&h.src));
        if !known {
            self.ignored.unknown_source.fetch_add(1, Ordering::Relaxed);
            self.count_ignored(h.shelf, h.slot);
            return false;
        }
        match self.pending_commands.lock().remove(&h.tag) {
            Some(tx) => {
                let _ = tx.send(reply);
                true
            }
            None => false,
        }
    }

    /// Sends a command to every target MAC of the device (its verified
    /// paths'; reads: to the first) and waits for the answers (blocking:
    /// worker threads only). `NoSuchDevice` when it has no verified path
    /// (down, or its interfaces were removed), `Timeout` when a MAC did not
    /// answer three tries.
    pub fn command(&self, dev: &Device, cmd: &TargetCommand) -> Result<Vec<CommandReply>, DeviceError> {
        let mut dests: Vec<(usize, Mac)> = Vec::new();
        for p in dev.inner.lock().io.paths().iter().filter(|p| p.state.verified()) {
            if !dests.iter().any(|(_, m)| *m == p.mac) {
                dests.push((p.link, p.mac));
            }
        }
        if cmd.is_read() {
            dests.truncate(1);
        }
        if dests.is_empty() {
            return Err(DeviceError::NoSuchDevice);
        }
        dests.into_iter().map(|(link, mac)| self.command_one(dev, link, mac, cmd)).collect()
    }

    fn command_one(
        &self,
        dev: &Device,
        link: usize,
        dst: Mac,
        cmd: &TargetCommand,
    ) -> Result<CommandReply, DeviceError> {
        for _try in 0..3 {
            let Some(l) = self.links().get(link).cloned() else {
                return Err(DeviceError::NoSuchDevice);
            };
            // Bit 30 set, bit 31 clear; never DISCOVER_TAG itself.
            let tag = match self.command_seq.fetch_add(1, Ordering::Relaxed) & (NON_ATA_TAG - 1) {
                0 => NON_ATA_TAG | 1,
                n => NON_ATA_TAG | n,
            };
            let repr = Repr {
                header: Header {
                    dst,
                    src: l.mac(),
                    response: false,
                    error: None,
                    shelf: dev.shelf,
                    slot: dev.slot,
                    tag,
                },
                body: cmd.body(),
            };
            let mut buf = vec![0u8; repr.buffer_len().max(60)];
            if repr.emit(&mut buf).is_err() {
                return Err(DeviceError::NoSuchDevice);
            }
            let (tx, rx) = std::sync::mpsc::channel();
            self.pending_commands.lock().insert(tag, tx);
            if let Err(e) = l.send(&buf) {
                log::debug!("command send on {}: {e}", l.name());
            }
            match rx.recv_timeout(Duration::from_millis(1000)) {
                Ok(r) => return Ok(r),
                Err(_) => {
                    self.pending_commands.lock().remove(&tag);
                }
            }
        }
        Err(DeviceError::Timeout)
    }

    /// Our MAC on each interface the device is reached through.
    pub fn local_macs(&self, dev: &Device) -> Vec<Mac> {
        let mut v: Vec<Mac> = Vec::new();
        for p in dev.inner.lock().io.paths().iter().filter(|p| p.state.verified()) {
            if !v.contains(&p.local_mac) {
                v.push(p.local_mac);
            }
        }
        v
    }

    /// The target MACs of a device (its verified paths'), without repeats.
    pub(super) fn target_macs(&self, dev: &Device) -> Vec<Mac> {
        let mut v: Vec<Mac> = Vec::new();
        for p in dev.inner.lock().io.paths().iter().filter(|p| p.state.verified()) {
            if !v.contains(&p.mac) {
                v.push(p.mac);
            }
        }
        v
    }
}
