//! Who may become a path. AoE has no authentication, so on a shared LAN any host can claim any
//! shelf.slot with one config response (see `Documentation/design.md`,
//! "Paths and trust"):
//!
//! - `--macs`: when given, only those target MACs become paths at all, and
//!   discovery asks them (unicast) instead of broadcasting.
//! - The first MAC of a target not yet identified is trusted; a new MAC of a
//!   target that has a verified path, or was identified, is *unverified*: it
//!   carries nothing until it has answered a unicast query config (with the
//!   same config string) and a pinned IDENTIFY whose serial, model and size
//!   match. It is then in use; otherwise *refused*, once on `err`.
//!
//! How many targets the device table holds is `table`'s.

use super::effects::{ConfigQuery, Effects};
use super::{retry_delay, Initiator, DISCOVER_TAG};
use crate::clock::Micros;
use crate::device::{DevInner, Device};
use crate::engine::{IoError, IoResult, Outbox, PathState};
use crate::wire::{ConfigRepr, Header, Identify, Mac};
use std::sync::Arc;

/// A new path's unicast query config is sent this often, this many times.
const QUERY_INTERVAL: Micros = 500_000;
const QUERY_TRIES: u32 = 3;
/// Verifications of one target start at most this often.
const VERIFY_SPACING: Micros = 100_000;
/// A verification cut short (AoE error, target flushed or dead) is retried
/// with backoff; after this many the path is refused.
const VERIFY_FAILURES: u32 = 3;

/// Why a list of MACs (`--macs`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacListError {
    /// Not a MAC in any of the spellings.
    #[error("bad MAC {0:?}")]
    Bad(String),
    /// A multicast (or broadcast) MAC: no target has it.
    #[error("{0}: not a unicast MAC")]
    NotUnicast(String),
    #[error("no MAC given")]
    Empty,
}

/// Parses a list of MACs (`--macs`): separated by commas or whitespace,
/// each as `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` or twelve hex digits.
pub fn parse_macs(list: &str) -> Result<Vec<Mac>, MacListError> {
    let mut v = Vec::new();
    for tok in list.split(|c: char| c == ',' || c.is_whitespace()).filter(|t| !t.is_empty()) {
        let m = Mac::parse(tok).ok_or_else(|| MacListError::Bad(tok.to_string()))?;
        if m.is_multicast() {
            return Err(MacListError::NotUnicast(tok.to_string()));
        }
        if !v.contains(&m) {
            v.push(m);
        }
    }
    if v.is_empty() {
        return Err(MacListError::Empty);
    }
    Ok(v)
}

/// The state of a new path from `mac`: in use when it is the target's first
/// (no verified path, never identified) or a MAC the target is already
/// reached at on another interface; unverified otherwise.
pub(super) fn new_path_state(g: &DevInner, mac: Mac) -> PathState {
    let verified = || g.io.paths().iter().filter(|p| p.state.verified());
    if (g.identify.is_none() && verified().next().is_none()) || verified().any(|p| p.mac == mac) {
        PathState::InUse
    } else {
        PathState::Unverified
    }
}

/// What differs between the target's IDENTIFY and a new path's.
fn identify_differences(want: &Identify, got: &Identify) -> Vec<&'static str> {
    let mut v = Vec::new();
    if got.serial != want.serial {
        v.push("serial");
    }
    if got.model != want.model {
        v.push("model");
    }
    if got.sectors != want.sectors {
        v.push("size");
    }
    v
}

impl Initiator {
    /// Whether a config response from `mac` may make a path (`--macs`).
    pub(super) fn mac_allowed(&self, mac: Mac) -> bool {
        self.opts.macs.is_empty() || self.opts.macs.contains(&mac)
    }

    /// Where discovery's query config goes: broadcast, or the `--macs`.
    pub(super) fn discovery_dests(&self) -> Vec<Mac> {
        if self.opts.macs.is_empty() {
            vec![Mac::BROADCAST]
        } else {
            self.opts.macs.clone()
        }
    }

    /// A config response from an unverified path's MAC: a different config
    /// string refuses it at once; an answer to our query counts for its
    /// verification, which starts (or ends) here if due.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn candidate_config(
        &self,
        dev: &Arc<Device>,
        g: &mut DevInner,
        id: u32,
        h: &Header,
        c: &ConfigRepr<'_>,
        now: Micros,
        fx: &mut Effects,
    ) {
        if c.config != g.config.as_slice() {
            self.refuse_path(dev, g, id, now, "config string differs");
            return;
        }
        if let Some(v) = g.verifications.get_mut(&id) {
            if v.started.is_some() && h.tag == DISCOVER_TAG {
                v.config_answered = true;
            }
        }
        self.verify_paths(dev, g, now, fx);
    }

    /// Moves the verifications of the device's unverified paths on: starts
    /// the due ones (once the device's own IDENTIFY is known), asks again
    /// for a config not answered, refuses a path that never answers it, and
    /// puts a path that passed in use (when the table has room).
    pub(super) fn verify_paths(&self, dev: &Arc<Device>, g: &mut DevInner, now: Micros, fx: &mut Effects) {
        let ids: Vec<u32> = g.io.paths().iter().filter(|p| p.state == PathState::Unverified).map(|p| p.id).collect();
        // Verifications of paths no longer unverified (promoted, refused,
        // gone) are over.
        g.verifications.retain(|id, _| ids.contains(id));
        if g.identify.is_none() || ids.is_empty() {
            return;
        }
        for id in ids {
            let Some(p) = g.io.path(id) else { continue };
            let (link, mac) = (p.link, p.mac);
            let v = g.verifications.get(&id).copied().unwrap_or_default();
            let query = ConfigQuery { link, shelf: dev.shelf, slot: dev.slot, dst: mac };
            match v.started {
                None if now >= v.not_before && now >= g.next_verify => {
                    g.next_verify = now + VERIFY_SPACING;
                    self.start_verification(dev, g, id, now, &mut fx.out);
                    fx.queries.push(query);
                }
                None => {}
                Some(_) if v.config_answered && v.identify_matched => self.try_promote(dev, g, id, now, &mut fx.out),
                Some(_) if !v.config_answered && now >= v.next_query => {
                    if v.queries >= QUERY_TRIES {
                        self.refuse_path(dev, g, id, now, "no answer to query config");
                    } else {
                        let v = g.verifications.entry(id).or_default();
                        v.queries += 1;
                        v.next_query = now + QUERY_INTERVAL;
                        fx.queries.push(query);
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Sends the pinned IDENTIFY of path `id` (the caller queues the first
    /// config query).
    fn start_verification(&self, dev: &Arc<Device>, g: &mut DevInner, id: u32, now: Micros, out: &mut Outbox) {
        let Some(p) = g.io.path(id) else { return };
        log::info!("{}: verifying path {} via {}", dev.name(), p.mac, p.ifname);
        let v = g.verifications.entry(id).or_default();
        v.started = Some(now);
        v.queries = 1;
        v.next_query = now + QUERY_INTERVAL;
        v.config_answered = false;
        v.identify_matched = false;
        let d = dev.clone();
        let me = self.me.clone();
        let done = Box::new(move |res: IoResult| {
            if let Some(ini) = me.upgrade() {
                ini.verification_identified(&d, id, res);
            }
        });
        self.wake_timer(dev, g);
        g.io.submit_pinned_identify(now, id, done, out);
    }

    /// The answer (or failure) of a new path's pinned IDENTIFY.
    fn verification_identified(&self, dev: &Arc<Device>, id: u32, res: IoResult) {
        let now = self.now();
        self.step(dev, |g, fx| {
            if g.io.path(id).is_some_and(|p| p.state == PathState::Unverified) {
                self.identified_path(dev, g, id, res, now, fx);
            }
        });
    }

    fn identified_path(
        &self,
        dev: &Arc<Device>,
        g: &mut DevInner,
        id: u32,
        res: IoResult,
        now: Micros,
        fx: &mut Effects,
    ) {
        let parsed = res.map(|b| Identify::parse(&b));
        let reason = match (&parsed, g.identify.as_ref()) {
            (Ok(Ok(got)), Some(want)) => {
                let diff = identify_differences(want, got);
                if diff.is_empty() {
                    if g.io.path(id).is_some() {
                        g.verifications.entry(id).or_default().identify_matched = true;
                    }
                    self.verify_paths(dev, g, now, fx);
                    return;
                }
                format!("IDENTIFY differs ({})", diff.join(", "))
            }
            (Ok(Ok(_)), None) => "target not identified".into(),
            (Ok(Err(e)), _) => format!("IDENTIFY unreadable: {e}"),
            (Err(IoError::Timeout), _) => "no answer to IDENTIFY".into(),
            (Err(e @ IoError::Ata { .. }), _) => format!("IDENTIFY failed: {e}"),
            (Err(e), _) => {
                // Cut short (AoE error, the target died or was flushed):
                // tried again later.
                if g.io.path(id).is_none() {
                    return;
                }
                let v = g.verifications.entry(id).or_default();
                v.failures += 1;
                if v.failures < VERIFY_FAILURES {
                    v.started = None;
                    v.not_before = now + retry_delay(v.failures);
                    return;
                }
                format!("IDENTIFY failed: {e}")
            }
        };
        self.refuse_path(dev, g, id, now, &reason);
    }

    /// Path `id` passed its verification: in use when the table has room
    /// (else it waits, and is tried again on the next sweep). It is a sign
    /// of life of the target: frames unanswered on its other paths were
    /// lost, and a down target nobody has open comes back.
    fn try_promote(&self, dev: &Arc<Device>, g: &mut DevInner, id: u32, now: Micros, out: &mut Outbox) {
        if !g.io.promote(id, now) {
            return;
        }
        let Some(p) = g.io.path(id) else { return };
        log::info!("{}: path {} via {} verified: in use", dev.name(), p.mac, p.ifname);
        let mac = p.mac;
        self.revive(dev, g, mac, now, out);
    }

    /// Path `id` failed its verification: refused, reported once on `err`
    /// and counted in `stats`.
    fn refuse_path(&self, dev: &Device, g: &mut DevInner, id: u32, now: Micros, reason: &str) {
        let Some(p) = g.io.path(id) else { return };
        let msg = format!("{}: path from MAC {} ({}) refused: {reason}", dev.name(), p.mac.hex12(), p.ifname);
        g.io.refuse(id, now);
        g.refused_paths += 1;
        self.errlog.push(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_lists_parse_in_every_spelling() {
        let want = vec![Mac([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x00]), Mac([2, 0, 0, 0, 0, 1])];
        for s in
            ["aa:bb:cc:dd:ee:00,02:00:00:00:00:01", "aa-bb-cc-dd-ee-00 020000000001", " AABBCCDDEE00, 020000000001,"]
        {
            assert_eq!(parse_macs(s).unwrap(), want, "{s:?}");
        }
        assert_eq!(parse_macs("020000000001,02:00:00:00:00:01").unwrap().len(), 1, "repeats are dropped");
        for bad in ["", " , ", "aa:bb", "0200000000012", "zz0000000001", "ffffffffffff", "010000000001"] {
            assert!(parse_macs(bad).is_err(), "{bad:?}");
        }
    }
}
