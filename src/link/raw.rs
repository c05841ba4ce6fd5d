//! A raw AF_PACKET socket on one interface: the pcap link sends through it,
//! and the test and benchmark tools (`src/bin/`) send and receive with it.

use crate::sys::{self, packet};
use crate::wire::ETHERTYPE_AOE;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// What a socket receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receive {
    /// Nothing: a send-only socket.
    Nothing,
    /// AoE frames (ethertype 0x88A2) of the interface.
    Aoe,
    /// Every frame, outgoing ones of other sockets included (ETH_P_ALL).
    All,
}

/// How to open a `RawSocket`.
#[derive(Debug, Clone, Copy)]
pub struct RawOptions {
    pub receive: Receive,
    /// Also frames addressed to other hosts (a forwarder).
    pub promiscuous: bool,
    /// Do not receive what this host sends (PACKET_IGNORE_OUTGOING).
    pub ignore_outgoing: bool,
    /// Socket buffer sizes in bytes (0: the system's default). Without
    /// CAP_NET_ADMIN the kernel caps them at `net.core.rmem_max` and
    /// `wmem_max`.
    pub rcvbuf: usize,
    pub sndbuf: usize,
}

impl Default for RawOptions {
    fn default() -> Self {
        RawOptions { receive: Receive::Nothing, promiscuous: false, ignore_outgoing: false, rcvbuf: 0, sndbuf: 8 << 20 }
    }
}

/// An AF_PACKET SOCK_RAW socket bound to one interface.
pub struct RawSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawSocket {
    pub fn open(ifname: &str, opts: RawOptions) -> io::Result<RawSocket> {
        let ifindex = sys::net::if_index(ifname)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no such interface: {ifname}")))?
            as i32;
        let proto: u16 = match opts.receive {
            Receive::Nothing => 0,
            Receive::Aoe => ETHERTYPE_AOE,
            Receive::All => libc::ETH_P_ALL as u16,
        };
        // From here on, the descriptor is closed on every error path.
        let s = RawSocket { fd: packet::open(proto)?, ifindex };
        let fd = s.fd.as_fd();
        if opts.rcvbuf > 0 {
            packet::set_rcvbuf(fd, opts.rcvbuf)?;
        }
        if opts.sndbuf > 0 {
            packet::set_sndbuf(fd, opts.sndbuf)?;
        }
        if opts.ignore_outgoing {
            packet::ignore_outgoing(fd)?;
        }
        if opts.receive != Receive::Nothing {
            packet::bind(fd, ifindex, proto)?;
        }
        if opts.promiscuous {
            packet::add_promiscuous(fd, ifindex)?;
        }
        Ok(s)
    }

    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Sends one frame: `head` (Ethernet header first) followed by `data`,
    /// in one sendmsg with two iovecs. EINTR is retried; other errors
    /// (ENOBUFS on a full queue among them) are the caller's to judge.
    pub fn send_parts(&self, head: &[u8], data: &[u8]) -> io::Result<()> {
        packet::send_parts(self.fd.as_fd(), self.ifindex, ETHERTYPE_AOE, head, data)
    }

    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.send_parts(frame, &[])
    }

    /// Sends frames (header, data) in order, a burst per system call
    /// (`sys::packet::send_many`): how many went, and the error of the
    /// first that did not.
    pub fn send_many(&self, frames: &[(&[u8], &[u8])]) -> (usize, Option<io::Error>) {
        packet::send_many(self.fd.as_fd(), self.ifindex, ETHERTYPE_AOE, frames)
    }

    /// Waits up to `ms` milliseconds for something to read.
    pub fn wait(&self, ms: i32) -> bool {
        packet::wait_readable(self.fd.as_fd(), ms)
    }

    /// Receives one frame, waiting up to `ms` milliseconds: its length and
    /// packet type (PACKET_HOST, PACKET_OUTGOING, ...), or None on timeout.
    pub fn recv(&self, buf: &mut [u8], ms: i32) -> io::Result<Option<(usize, u8)>> {
        if !self.wait(ms) {
            return Ok(None);
        }
        packet::recv(self.fd.as_fd(), buf)
    }

    /// Frames the kernel dropped on this socket (receive buffer full) since
    /// the last call.
    pub fn drops(&self) -> u32 {
        packet::drops(self.fd.as_fd())
    }
}

impl AsFd for RawSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
