//! Non-ATA commands to a target (config string, MAC mask list,
//! reservation), sent from a worker thread with their own tag and matched by
//! tag and source MAC: three tries of one second each.

use super::{Initiator, CTL_TAG};
use crate::device::Device;
use crate::wire::{self, AoeError, Body, ConfigRepr, Directive, Header, Mac, MacMaskRepr, Repr, ReserveRepr};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A non-ATA command to a target (config string, MAC mask list, reservation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlRequest {
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

/// A target's answer to a `CtlRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlReply {
    Config(Vec<u8>),
    /// MAC mask list and its error code (0 ok, 1 unspecified, 2 bad dcmd, 3 full).
    Masks {
        merror: u8,
        macs: Vec<Mac>,
    },
    Reserve(Vec<Mac>),
    Error(AoeError),
}

/// Why a control command got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtlFailure {
    /// The device has no path (down, or its interfaces were removed).
    #[error("no path to the target")]
    NoPath,
    /// No answer after the retries.
    #[error("no answer from the target")]
    Timeout,
}

impl CtlRequest {
    fn body(&self) -> Body<'_> {
        let config = |ccmd, config| Body::Config(ConfigRepr::query(ccmd, config));
        match self {
            CtlRequest::ConfigRead => config(wire::CCMD_READ, &[]),
            CtlRequest::ConfigSet { value, force } => {
                config(if *force { wire::CCMD_FORCE_SET } else { wire::CCMD_SET }, value)
            }
            CtlRequest::MaskRead => Body::MacMask(MacMaskRepr { mcmd: 0, merror: 0, directives: Vec::new() }),
            CtlRequest::MaskEdit(d) => Body::MacMask(MacMaskRepr { mcmd: 1, merror: 0, directives: d.clone() }),
            CtlRequest::ReserveRead => Body::Reserve(ReserveRepr { rcmd: 0, macs: Vec::new() }),
            CtlRequest::ReserveSet { macs, force } => {
                Body::Reserve(ReserveRepr { rcmd: if *force { 2 } else { 1 }, macs: macs.clone() })
            }
        }
    }

    fn is_read(&self) -> bool {
        matches!(self, CtlRequest::ConfigRead | CtlRequest::MaskRead | CtlRequest::ReserveRead)
    }
}

impl Initiator {
    /// Hands a reply to the control command waiting for its tag; true if
    /// one was.
    pub(super) fn deliver_ctl(&self, h: &Header, body: &Body<'_>) -> bool {
        let reply = match body {
            Body::Config(c) => CtlReply::Config(c.config.to_vec()),
            Body::MacMask(m) => {
                CtlReply::Masks { merror: m.merror, macs: m.directives.iter().map(|d| d.mac).collect() }
            }
            Body::Reserve(r) => CtlReply::Reserve(r.macs.clone()),
            Body::Error(_) => CtlReply::Error(h.error.unwrap_or(AoeError::Other(0))),
            Body::Ata(_) => return false,
        };
        if !self.pending_ctl.lock().contains_key(&h.tag) {
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
        match self.pending_ctl.lock().remove(&h.tag) {
            Some(tx) => {
                let _ = tx.send(reply);
                true
            }
            None => false,
        }
    }

    /// Sends a control command to every target MAC of the device (its
    /// verified paths'; reads: to the first) and waits for the answers
    /// (blocking: worker threads only).
    pub fn control(&self, dev: &Device, req: &CtlRequest) -> Result<Vec<CtlReply>, CtlFailure> {
        let mut dests: Vec<(usize, Mac)> = Vec::new();
        for p in dev.inner.lock().io.paths.iter().filter(|p| p.state.verified()) {
            if !dests.iter().any(|(_, m)| *m == p.mac) {
                dests.push((p.link, p.mac));
            }
        }
        if req.is_read() {
            dests.truncate(1);
        }
        if dests.is_empty() {
            return Err(CtlFailure::NoPath);
        }
        dests.into_iter().map(|(link, mac)| self.control_one(dev, link, mac, req)).collect()
    }

    fn control_one(&self, dev: &Device, link: usize, dst: Mac, req: &CtlRequest) -> Result<CtlReply, CtlFailure> {
        for _try in 0..3 {
            let Some(l) = self.links().get(link).cloned() else {
                return Err(CtlFailure::NoPath);
            };
            // Bit 30 set, bit 31 clear; never DISCOVER_TAG itself.
            let tag = match self.ctl_seq.fetch_add(1, Ordering::Relaxed) & (CTL_TAG - 1) {
                0 => CTL_TAG | 1,
                n => CTL_TAG | n,
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
                body: req.body(),
            };
            let mut buf = vec![0u8; repr.buffer_len().max(60)];
            if repr.emit(&mut buf).is_err() {
                return Err(CtlFailure::NoPath);
            }
            let (tx, rx) = std::sync::mpsc::channel();
            self.pending_ctl.lock().insert(tag, tx);
            if let Err(e) = l.send(&buf) {
                log::debug!("control send on {}: {e}", l.name());
            }
            match rx.recv_timeout(Duration::from_millis(1000)) {
                Ok(r) => return Ok(r),
                Err(_) => {
                    self.pending_ctl.lock().remove(&tag);
                }
            }
        }
        Err(CtlFailure::Timeout)
    }

    /// Our MAC on each interface the device is reached through.
    pub fn local_macs(&self, dev: &Device) -> Vec<Mac> {
        let mut v: Vec<Mac> = Vec::new();
        for p in dev.inner.lock().io.paths.iter().filter(|p| p.state.verified()) {
            if !v.contains(&p.local_mac) {
                v.push(p.local_mac);
            }
        }
        v
    }

    /// The target MACs of a device (its verified paths'), without repeats.
    pub(super) fn target_macs(&self, dev: &Device) -> Vec<Mac> {
        let mut v: Vec<Mac> = Vec::new();
        for p in dev.inner.lock().io.paths.iter().filter(|p| p.state.verified()) {
            if !v.contains(&p.mac) {
                v.push(p.mac);
            }
        }
        v
    }
}
