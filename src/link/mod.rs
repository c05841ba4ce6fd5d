//! Sending and receiving Ethernet frames. One trait, several implementations:
//! `pcap` (real interfaces: a libpcap capture thread per interface for
//! receiving, an AF_PACKET socket for sending), `mem` (an in-memory hub for
//! tests) and `fault` (a seeded fault-injecting wrapper around any hub).

pub mod fault;
pub mod mem;
pub mod pcap;
pub mod raw;

use crate::wire::Mac;
use std::io;
use std::sync::Arc;

/// Where a link delivers what it receives.
pub trait Receiver: Send + Sync {
    /// One incoming frame.
    fn frame(&self, f: &[u8]);
    /// The link has delivered what it had queued (or `RX_BURST` frames in a
    /// row) and may now wait. A receiver may hold back work the frames
    /// caused until here (the initiator batches the next commands and the
    /// FUSE replies), so every link calls this after delivering frames.
    fn idle(&self) {}
}

/// A plain closure receives frames and has nothing to do when idle.
impl<F: Fn(&[u8]) + Send + Sync> Receiver for F {
    fn frame(&self, f: &[u8]) {
        self(f)
    }
}

/// A link's receive side delivers every incoming AoE frame here.
pub type RxHandler = Arc<dyn Receiver>;

/// Most frames the initiator hands `Link::send_many` at once: as many as
/// the pcap link hands the kernel in one sendmmsg.
pub const SEND_BATCH: usize = crate::sys::packet::SEND_BATCH;

/// Most frames a link delivers before it calls `Receiver::idle`.
pub const RX_BURST: usize = 16;

/// One local network interface.
pub trait Link: Send + Sync {
    /// Interface name (e.g. `eth1`).
    fn name(&self) -> &str;
    /// Our MAC address on this interface.
    fn mac(&self) -> Mac;
    /// MTU in bytes (Ethernet payload) as last looked at: frames this long
    /// can be sent and received.
    fn mtu(&self) -> usize;
    /// Looks at the interface's MTU again (it may have been changed under
    /// us) and returns it; `mtu` follows it, up to the largest frame the
    /// receive side can take (a link whose interface's MTU grew past that
    /// must be reopened to use it).
    fn refresh_mtu(&self) -> io::Result<usize> {
        Ok(self.mtu())
    }
    /// Sends one whole frame (Ethernet header included).
    fn send(&self, frame: &[u8]) -> io::Result<()>;
    /// A frame just sent expects its reply in about `rtt_us` (the target's
    /// smoothed round trip; 0: not known), with `at_once` requests at once
    /// (its target's commands in flight, or the application's requests in
    /// progress, whichever is more): a link that busy-polls adaptively may
    /// poll for it (`pcap::BusyPoll::Adaptive`).
    fn expect_reply(&self, _rtt_us: u64, _at_once: u32) {}
    /// Sends the frame `head` followed by `data`.
    fn send_parts(&self, head: &[u8], data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            self.send(head)
        } else {
            self.send(&[head, data].concat())
        }
    }
    /// Sends frames in order, each a header followed by its data, as
    /// `send_parts` would one by one; returns how many were sent and, if
    /// not all, the error of the first that was not (the rest were not
    /// tried). A link may hand them to the kernel together (pcap: one
    /// sendmmsg for the lot). Callers pass at most [`SEND_BATCH`].
    fn send_many(&self, frames: &[(&[u8], &[u8])]) -> (usize, Option<io::Error>) {
        for (i, (head, data)) in frames.iter().enumerate() {
            if let Err(e) = self.send_parts(head, data) {
                return (i, Some(e));
            }
        }
        (frames.len(), None)
    }
    /// Stops the receive side; no handler call starts after this returns.
    fn close(&self);
    /// False once the receive side ended by itself (interface gone).
    fn alive(&self) -> bool {
        true
    }
}

/// Opens links by interface name.
pub trait LinkProvider: Send + Sync {
    /// Names usable by default (all up, non-loopback interfaces).
    fn default_names(&self) -> Vec<String>;
    /// Whether an interface of this name exists.
    fn exists(&self, name: &str) -> bool;
    /// Opens the interface and starts delivering incoming AoE frames to `rx`.
    fn open(&self, name: &str, rx: RxHandler) -> io::Result<Arc<dyn Link>>;
}

/// Splits an interface list as the driver's `aoe_iflist` does: whitespace
/// or commas.
pub fn split_iflist(s: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for n in s.split(|c: char| c.is_whitespace() || c == ',').filter(|n| !n.is_empty()) {
        if !v.iter().any(|x| x == n) {
            v.push(n.to_string());
        }
    }
    v
}

/// A valid Linux interface name: 1..=15 bytes, no '/', no whitespace, no NUL.
pub fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n != "."
        && n != ".."
        && n.bytes().all(|b| b > 0x20 && b < 0x7f && b != b'/' && b != b':' && b != b',')
}
