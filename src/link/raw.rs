//! A raw AF_PACKET socket on one interface: the pcap link sends through it,
//! and the test and benchmark tools (`src/bin/`) send and receive with it.

use crate::wire::ETHERTYPE_AOE;
use std::io;

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
    /// Socket buffer sizes in bytes (0: the system's default).
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
    fd: i32,
    ifindex: i32,
}

fn setopt(fd: i32, level: i32, opt: i32, val: &[u8]) -> io::Result<()> {
    let r = unsafe { libc::setsockopt(fd, level, opt, val.as_ptr() as *const libc::c_void, val.len() as u32) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn int(v: usize) -> [u8; 4] {
    (v.min(i32::MAX as usize) as libc::c_int).to_ne_bytes()
}

/// PACKET_IGNORE_OUTGOING (Linux 4.20), not in every libc crate version.
const PACKET_IGNORE_OUTGOING: i32 = 23;
/// PACKET_STATISTICS.
const PACKET_STATISTICS: i32 = 6;

/// Sets PACKET_IGNORE_OUTGOING on an AF_PACKET socket (the pcap capture's
/// among them): frames this host sends are not looped back to it.
pub fn ignore_outgoing(fd: i32) -> io::Result<()> {
    setopt(fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &int(1))
}

impl RawSocket {
    pub fn open(ifname: &str, opts: RawOptions) -> io::Result<RawSocket> {
        let ifindex = crate::sys::net::if_index(ifname)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no such interface: {ifname}")))?
            as i32;
        let proto: u16 = match opts.receive {
            Receive::Nothing => 0,
            Receive::Aoe => ETHERTYPE_AOE,
            Receive::All => libc::ETH_P_ALL as u16,
        };
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto.to_be() as i32) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // From here on, Drop closes the descriptor on every error path.
        let s = RawSocket { fd, ifindex };
        if opts.rcvbuf > 0 {
            setopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &int(opts.rcvbuf))?;
        }
        if opts.sndbuf > 0 {
            setopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &int(opts.sndbuf))?;
        }
        if opts.ignore_outgoing {
            ignore_outgoing(fd)?;
        }
        if opts.receive != Receive::Nothing {
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto.to_be();
            sll.sll_ifindex = ifindex;
            let r = unsafe {
                libc::bind(
                    fd,
                    &sll as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if opts.promiscuous {
            let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mr.mr_ifindex = ifindex;
            mr.mr_type = libc::PACKET_MR_PROMISC as u16;
            let b = unsafe {
                std::slice::from_raw_parts(&mr as *const _ as *const u8, std::mem::size_of::<libc::packet_mreq>())
            };
            setopt(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, b)?;
        }
        Ok(s)
    }

    pub fn fd(&self) -> i32 {
        self.fd
    }

    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Sends one frame: `head` (Ethernet header first) followed by `data`,
    /// in one sendmsg with two iovecs. EINTR is retried; other errors
    /// (ENOBUFS on a full queue among them) are the caller's to judge.
    pub fn send_parts(&self, head: &[u8], data: &[u8]) -> io::Result<()> {
        if head.len() < 6 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame shorter than a MAC"));
        }
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETHERTYPE_AOE.to_be();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&head[..6]);
        let mut iov = [
            libc::iovec { iov_base: head.as_ptr() as *mut libc::c_void, iov_len: head.len() },
            libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() },
        ];
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = &mut sll as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = if data.is_empty() { 1 } else { 2 };
        loop {
            if unsafe { libc::sendmsg(self.fd, &msg, 0) } >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.send_parts(frame, &[])
    }

    /// Waits up to `ms` milliseconds for something to read.
    pub fn wait(&self, ms: i32) -> bool {
        let mut pfd = libc::pollfd { fd: self.fd, events: libc::POLLIN, revents: 0 };
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    /// Receives one frame, waiting up to `ms` milliseconds: its length and
    /// packet type (PACKET_HOST, PACKET_OUTGOING, ...), or None on timeout.
    pub fn recv(&self, buf: &mut [u8], ms: i32) -> io::Result<Option<(usize, u8)>> {
        if !self.wait(ms) {
            return Ok(None);
        }
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut alen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let n = unsafe {
            libc::recvfrom(
                self.fd,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_DONTWAIT,
                &mut sll as *mut _ as *mut libc::sockaddr,
                &mut alen,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some((n as usize, sll.sll_pkttype)))
    }

    /// Frames the kernel dropped on this socket (receive buffer full) since
    /// the last call.
    pub fn drops(&self) -> u32 {
        let mut st = [0u32; 2];
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        let r = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                st.as_mut_ptr() as *mut libc::c_void,
                &mut len,
            )
        };
        if r == 0 {
            st[1]
        } else {
            0
        }
    }
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        unsafe { libc::close(self.fd) };
    }
}
