//! The allowed interfaces: the link table, reconfiguring it (`interfaces`
//! written, interfaces that vanished and came back), and sending frames.
//!
//! The table is an immutable snapshot (`Arc<LinkTable>`): senders clone the
//! `Arc` and send with no lock held, and a change builds a new table after
//! its interfaces were opened, so libpcap opening an interface stalls no
//! submit or capture thread. Links taken out of the table are closed after
//! the new table is in place: closing joins the capture thread, which may be
//! busy handling a frame.

use super::rx::FrameSink;
use super::Initiator;
use crate::engine::{IoError, Outbox, Transmit};
use crate::link::{Link, RxHandler, SEND_BATCH};
use crate::wire::Frame;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Why the allowed interfaces could not be set.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("unknown interface: {0}")]
    UnknownInterface(String),
    #[error("{name}: {source}")]
    Open {
        name: String,
        #[source]
        source: io::Error,
    },
}

impl LinkError {
    /// The interface exists but this process may not capture on it.
    pub fn is_permission(&self) -> bool {
        matches!(self, LinkError::Open { source, .. } if source.kind() == io::ErrorKind::PermissionDenied)
    }
}

/// The open links and the allowed names.
#[derive(Default, Clone)]
pub(super) struct LinkTable {
    /// (link id, link); ids are never reused.
    links: Vec<(usize, Arc<dyn Link>)>,
    /// Names of the allowed interfaces, in order.
    names: Vec<String>,
}

impl LinkTable {
    pub(super) fn get(&self, id: usize) -> Option<&Arc<dyn Link>> {
        self.links.iter().find(|(i, _)| *i == id).map(|(_, l)| l)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<dyn Link>> {
        self.links.iter().map(|(_, l)| l)
    }

    /// Sends `batch` (at most `SEND_BATCH` frames, all for one link) on its
    /// link, if it is still open, in one `Link::send_many`, and tells the
    /// link when each reply may come and how many requests are at once:
    /// the target's commands in flight or the application's requests
    /// (`concurrency`), whichever is more. Returns how many were sent (all
    /// when the link is gone: nothing holds them) and the error of the first
    /// that was not.
    fn send_batch(&self, batch: &[Transmit], concurrency: u32) -> (usize, Option<io::Error>) {
        let Some(l) = batch.first().and_then(|t| self.get(t.link)) else { return (batch.len(), None) };
        let mut parts: [(&[u8], &[u8]); SEND_BATCH] = [(&[], &[]); SEND_BATCH];
        for (p, t) in parts.iter_mut().zip(batch) {
            *p = (&t.head[..], t.data());
        }
        let (sent, err) = l.send_many(&parts[..batch.len().min(SEND_BATCH)]);
        if let Some(e) = &err {
            log::debug!("send on {}: {e}", l.name());
        }
        for t in &batch[..sent] {
            l.expect_reply(t.rtt, t.in_flight.max(concurrency));
        }
        (sent, err)
    }
}

/// Closes links taken out of the link table (outside every lock).
fn close_links(links: impl IntoIterator<Item = Arc<dyn Link>>) {
    for l in links {
        l.close();
    }
}

impl Initiator {
    /// The current link table.
    pub(super) fn links(&self) -> Arc<LinkTable> {
        self.links.read().clone()
    }

    /// Sends what the engine queued, in order, and empties `out`. A frame
    /// the link refuses is not held by its target (`TargetIo::not_sent`);
    /// one refused as too long (EMSGSIZE: the interface's MTU went down)
    /// makes the initiator look at the MTUs at once (`follow_mtus`), which
    /// cuts what no longer fits and sends it again.
    pub(super) fn send(&self, out: &mut Outbox) {
        if out.is_empty() {
            return;
        }
        let links = self.links();
        let concurrency = self.demand.concurrency();
        let mut refused: Vec<(u16, u8, u32)> = Vec::new();
        let mut too_long = false;
        // Runs of frames for one link, a burst per system call.
        let mut i = 0;
        while i < out.len() {
            let link = out[i].link;
            let run = out[i..].iter().take(SEND_BATCH).take_while(|t| t.link == link).count();
            let (sent, err) = links.send_batch(&out[i..i + run], concurrency);
            let sent = sent.min(run);
            i += sent;
            if sent < run {
                // The first not sent was refused; the rest go in the next call.
                too_long |= err.is_some_and(|e| e.raw_os_error() == Some(libc::EMSGSIZE));
                let f = Frame::new_unchecked(&out[i].head[..]);
                refused.push((f.shelf(), f.slot(), f.tag()));
                i += 1;
            }
        }
        out.clear();
        if refused.is_empty() {
            return;
        }
        for (shelf, slot, tag) in refused {
            if let Some(d) = self.device(shelf, slot) {
                d.inner.lock().io.not_sent(tag);
            }
        }
        if too_long {
            self.follow_mtus();
        }
    }

    /// Looks at every link's MTU; where one changed, the paths through it
    /// follow at once (a lower MTU cuts the frames in flight or queued that
    /// no longer fit, and sends them again: `TargetIo::set_link_mtu`). Runs
    /// once a second and whenever a frame was refused as too long.
    pub(super) fn follow_mtus(&self) {
        let changed: Vec<(usize, usize)> = self
            .links()
            .links
            .iter()
            .filter_map(|(id, l)| {
                let old = l.mtu();
                l.refresh_mtu().ok()?;
                (l.mtu() != old).then(|| (*id, l.mtu()))
            })
            .collect();
        if changed.is_empty() {
            return;
        }
        let now = self.now();
        for dev in self.devices() {
            self.step(&dev, |g, fx| {
                for &(link, mtu) in &changed {
                    g.io.set_link_mtu(now, link, mtu, &mut fx.out);
                }
            });
        }
    }

    /// The allowed interfaces, as `interfaces` shows them.
    pub fn interfaces(&self) -> Vec<String> {
        self.links().names.clone()
    }

    /// Replaces the allowed interfaces. Every name must exist; on error
    /// nothing changes. An empty list means every up non-loopback interface.
    pub fn set_interfaces(&self, names: &[String]) -> Result<(), LinkError> {
        let names: Vec<String> = if names.is_empty() { self.provider.default_names() } else { names.to_vec() };
        if let Some(n) = names.iter().find(|n| !self.provider.exists(n)) {
            return Err(LinkError::UnknownInterface(n.clone()));
        }
        let _config = self.link_config.lock();
        let old = self.links();
        // Open the new ones first, with no lock an I/O thread needs, so a
        // failure changes nothing.
        let mut opened: Vec<(usize, Arc<dyn Link>)> = Vec::new();
        for n in names.iter().filter(|n| !old.names.contains(n)) {
            match self.open_link(n) {
                Ok(l) => opened.push(l),
                Err(source) => {
                    close_links(opened.into_iter().map(|(_, l)| l));
                    return Err(LinkError::Open { name: n.clone(), source });
                }
            }
        }
        let (kept, gone): (Vec<_>, Vec<_>) =
            old.links.iter().cloned().partition(|(_, l)| names.iter().any(|n| n == l.name()));
        let mut table = LinkTable { links: kept, names };
        table.links.extend(opened);
        *self.links.write() = Arc::new(table);
        self.forget_links(gone);
        Ok(())
    }

    /// Opens interface `name` under a new link id: its frames go to a
    /// `FrameSink` for that id.
    fn open_link(&self, name: &str) -> io::Result<(usize, Arc<dyn Link>)> {
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let rx: RxHandler = Arc::new(FrameSink::new(self.me.clone(), id));
        Ok((id, self.provider.open(name, rx)?))
    }

    /// Closes links already taken out of the table and drops the devices'
    /// paths through them (their frames in flight go out on other paths on
    /// retransmission).
    fn forget_links(&self, gone: Vec<(usize, Arc<dyn Link>)>) {
        if gone.is_empty() {
            return;
        }
        let ids: Vec<usize> = gone.iter().map(|(i, _)| *i).collect();
        close_links(gone.into_iter().map(|(_, l)| l));
        for d in self.devices() {
            let mut g = d.inner.lock();
            for &id in &ids {
                g.io.remove_link(id);
            }
        }
    }

    /// An allowed interface that vanished (its capture ended: deleted,
    /// renamed, driver unloaded) is closed and its paths dropped; once an
    /// interface of that name exists again it is reopened and discovery
    /// runs, so targets come back without a remount.
    pub(super) fn revive_links(&self) {
        let _config = self.link_config.lock();
        let old = self.links();
        // A link whose interface's MTU grew past what its capture takes is
        // reopened (its frames would be cut short), as a vanished one is.
        let outgrown = |l: &Arc<dyn Link>| l.refresh_mtu().is_ok_and(|m| m > l.mtu());
        let (alive, dead): (Vec<_>, Vec<_>) = old.links.iter().cloned().partition(|(_, l)| l.alive() && !outgrown(l));
        let missing: Vec<String> = old
            .names
            .iter()
            .filter(|n| !alive.iter().any(|(_, l)| l.name() == n.as_str()) && self.provider.exists(n))
            .cloned()
            .collect();
        if dead.is_empty() && missing.is_empty() {
            return;
        }
        let mut table = LinkTable { links: alive, names: old.names.clone() };
        let mut back = Vec::new();
        for name in missing {
            match self.open_link(&name) {
                Ok(l) => {
                    table.links.push(l);
                    back.push(name);
                }
                Err(e) => log::debug!("{name}: reopen: {e}"),
            }
        }
        *self.links.write() = Arc::new(table);
        let mut grown = Vec::new();
        for (_, l) in &dead {
            if l.alive() {
                self.errlog.push(format!("{}: MTU grew past {}; reopened to use it", l.name(), l.mtu()));
                grown.push(l.name().to_string());
            } else {
                self.errlog.push(format!("{}: interface gone; it is reopened when it is back", l.name()));
            }
        }
        self.forget_links(dead);
        for name in back.iter().filter(|n| !grown.contains(n)) {
            self.errlog.push(format!("{name}: interface back"));
        }
        if !back.is_empty() {
            self.discover();
        }
    }

    /// Closes every interface and fails all I/O (at unmount).
    pub fn shutdown(&self) {
        let _config = self.link_config.lock();
        let old = std::mem::take(&mut *self.links.write());
        close_links(old.links.iter().map(|(_, l)| l.clone()));
        for d in self.devices() {
            self.step(&d, |g, _| g.io.fail_all(IoError::Down));
        }
    }
}
