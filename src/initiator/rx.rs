//! Frames from the capture threads: `FrameSink` is the initiator's side of a
//! link. Each frame is parsed and checked, then handed to the target's
//! engine (ATA replies), to discovery (config responses) or to a waiting
//! `TargetCommand`. While a burst of frames lasts, the commands the replies
//! free up and the requests they complete are collected in the sink's
//! batch (`Effects`); `idle` sends the commands in one go and then answers the
//! requests. The target then gets several commands per wake-up and the FUSE
//! caller several replies per wake-up, where before each frame cost a
//! wake-up of both (at QD32 about a third of the machine's time went to
//! wake-ups).

use super::effects::{run_completions, Effects};
use super::{Initiator, DISCOVER_TAG, NON_ATA_TAG};
use crate::engine::ReplyOutcome;
use crate::link::Receiver;
use crate::wire::{self, Body, Frame, Header, Repr};
use parking_lot::Mutex;
use std::sync::atomic::Ordering;
use std::sync::Weak;

/// The initiator's receiver on one link.
pub(super) struct FrameSink {
    ini: Weak<Initiator>,
    link: usize,
    /// What the burst of frames so far left to do: commands to send (and
    /// config queries: new paths' verifications), then requests to answer.
    /// Only this link's capture thread uses it; the lock is never contended.
    batch: Mutex<Effects>,
}

impl FrameSink {
    pub(super) fn new(ini: Weak<Initiator>, link: usize) -> FrameSink {
        FrameSink { ini, link, batch: Mutex::new(Effects::default()) }
    }
}

impl Receiver for FrameSink {
    fn frame(&self, f: &[u8]) {
        if let Some(ini) = self.ini.upgrade() {
            ini.handle_frame(self.link, f, &mut self.batch.lock());
        }
    }

    fn idle(&self) {
        let mut fx = std::mem::take(&mut *self.batch.lock());
        // Commands first (the target works while we answer), then replies.
        match self.ini.upgrade() {
            Some(ini) => ini.apply(&mut fx),
            None => {
                fx.out.clear();
                fx.queries.clear();
                run_completions(fx.done.drain(..));
            }
        }
        // The batch keeps its allocations for the next burst (only this
        // capture thread fills it, so it is still empty).
        *self.batch.lock() = fx;
    }
}

impl Initiator {
    /// One received frame. What it leads to (commands to send, requests to
    /// answer) goes into `batch`, for the sink's `idle`.
    fn handle_frame(&self, link: usize, bytes: &[u8], batch: &mut Effects) {
        let f = match Frame::new_checked(bytes) {
            Ok(f) => f,
            Err(_) => {
                self.ignored.malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if !f.is_response() {
            // Another initiator's request: not for us.
            self.ignored.not_response.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if wire::is_user_tool_tag(f.tag()) {
            // An answer to aoeping, aoecfg or another userland tool beside
            // us: theirs, as the kernel driver leaves it to them.
            self.ignored.foreign_tag.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let repr = match Repr::parse(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.ignored.malformed.fetch_add(1, Ordering::Relaxed);
                self.count_ignored(f.shelf(), f.slot());
                log::debug!("ignored frame from {}: {e}", f.src());
                return;
            }
        };
        let h = repr.header;
        let command_reply = h.tag & NON_ATA_TAG != 0
            && !matches!(repr.body, Body::Ata(_) | Body::Error(wire::Command::Ata))
            && self.deliver_reply(&h, &repr.body);
        match &repr.body {
            // Config responses count when unsolicited (announcements, tag 0)
            // or answering our discovery or a `TargetCommand`; others (a
            // damaged ATA reply, a stray) would rewrite the target's settings.
            Body::Config(c) if h.tag == 0 || h.tag == DISCOVER_TAG || command_reply => {
                self.on_config(link, &h, c, batch)
            }
            // Another initiator's query answered (the kernel driver's, on
            // this host or sharing its MAC): counted, nothing else.
            Body::Config(_) => {
                self.ignored.unexpected_tag.fetch_add(1, Ordering::Relaxed);
            }
            Body::Ata(a) => self.on_ata(link, &h, Ok(a), batch),
            Body::Error(wire::Command::Ata) => {
                self.on_ata(link, &h, Err(h.error.expect("error body has an error")), batch)
            }
            Body::Error(wire::Command::QueryConfig) if h.tag == DISCOVER_TAG => self.config_failed(&h),
            // An error answering one of our `TargetCommand`s went to the
            // command's caller, which reports it; others answer someone else.
            Body::Error(_) => {
                if !command_reply {
                    self.ignored.unexpected_tag.fetch_add(1, Ordering::Relaxed);
                }
            }
            Body::MacMask(_) | Body::Reserve(_) => {}
        }
    }

    pub(super) fn count_ignored(&self, shelf: u16, slot: u8) {
        if let Some(d) = self.device(shelf, slot) {
            d.ignored.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_ata(&self, link: usize, h: &Header, reply: Result<&wire::AtaRepr<'_>, wire::AoeError>, batch: &mut Effects) {
        let Some(dev) = self.device(h.shelf, h.slot) else {
            self.ignored.unknown_target.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if self.links().get(link).is_none() {
            self.ignored.stale_link.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = self.now();
        let outcome = self.collect(&dev, batch, |g, fx| g.io.on_reply(now, h.src, h.tag, reply, &mut fx.out));
        match outcome {
            ReplyOutcome::Accepted => {
                if let Err(e) = reply {
                    self.errlog.push(format!("{}: AoE error {}: {}", dev.name(), e.to_u8(), e.describe()));
                }
            }
            // A command already completed by another of its transmissions.
            ReplyOutcome::Late => {}
            ReplyOutcome::Unexpected => {
                self.ignored.unexpected_tag.fetch_add(1, Ordering::Relaxed);
                self.errlog.push(format!(
                    "unexpected rsp e{}.{} tag={:08x} s={} d={}",
                    h.shelf,
                    h.slot,
                    h.tag,
                    h.src.hex12(),
                    h.dst.hex12()
                ));
            }
            ReplyOutcome::Short => {
                self.ignored.malformed.fetch_add(1, Ordering::Relaxed);
                dev.ignored.fetch_add(1, Ordering::Relaxed);
            }
            ReplyOutcome::UnknownSource => {
                self.ignored.unknown_source.fetch_add(1, Ordering::Relaxed);
                dev.ignored.fetch_add(1, Ordering::Relaxed);
                self.errlog.push(format!("e{}.{}: reply from unknown MAC {} ignored", h.shelf, h.slot, h.src.hex12()));
            }
        }
    }
}
