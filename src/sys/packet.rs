//! AF_PACKET sockets (`link::raw::RawSocket` holds one) and waiting for
//! input on a descriptor.
//!
//! nix lacks most of what is needed here: its `SockProtocol` has no value
//! for an arbitrary ethertype, its `LinkAddr` (sockaddr_ll) cannot be built
//! from fields, it has no PACKET_* socket options, and its `recvfrom` takes
//! no flags. Those calls are raw libc; socket buffer sizes, `poll` and
//! `recvmmsg` go through nix.

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{setsockopt, sockopt, MsgFlags, MultiHeaders, SetSockOpt};
use std::io;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// PACKET_IGNORE_OUTGOING (Linux 4.20), not in every libc crate version.
const PACKET_IGNORE_OUTGOING: i32 = 23;
/// PACKET_STATISTICS.
const PACKET_STATISTICS: i32 = 6;

/// A zeroed sockaddr_ll.
fn sockaddr_ll() -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is a plain C struct of integers and a byte array;
    // all zero bytes is a valid value of it.
    unsafe { std::mem::zeroed() }
}

/// Sets a socket option to the bytes of `val`. Raw libc: nix has none of
/// the PACKET_* options.
fn setopt<T: Copy>(fd: BorrowedFd, level: i32, opt: i32, val: &T) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor for the call; the pointer and
    // length describe `val`, which is borrowed (so alive and readable) for
    // the call, and the kernel only reads from it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            val as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A new AF_PACKET SOCK_RAW socket (close-on-exec) for ethertype `proto`
/// (host order; 0: receives nothing).
pub fn open(proto: u16) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; any arguments are safe to pass.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto.to_be() as i32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket(2) succeeded, so `fd` is a new open descriptor that
    // nothing else owns or will close.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The receive buffer in bytes: SO_RCVBUFFORCE (above `net.core.rmem_max`
/// if need be), which needs CAP_NET_ADMIN; without it SO_RCVBUF, which the
/// kernel caps at `rmem_max`.
pub fn set_rcvbuf(fd: BorrowedFd, bytes: usize) -> io::Result<()> {
    set_buf(fd, bytes, sockopt::RcvBufForce, sockopt::RcvBuf, ("SO_RCVBUFFORCE", "SO_RCVBUF"), "rmem_max")
}

/// The send buffer in bytes: SO_SNDBUFFORCE (above `net.core.wmem_max` if
/// need be), which needs CAP_NET_ADMIN; without it SO_SNDBUF, which the
/// kernel caps at `wmem_max`.
pub fn set_sndbuf(fd: BorrowedFd, bytes: usize) -> io::Result<()> {
    set_buf(fd, bytes, sockopt::SndBufForce, sockopt::SndBuf, ("SO_SNDBUFFORCE", "SO_SNDBUF"), "wmem_max")
}

/// A socket buffer size: the forced option, or the plain one when the
/// forced one is not permitted.
fn set_buf<F, P>(fd: BorrowedFd, bytes: usize, forced: F, plain: P, names: (&str, &str), max: &str) -> io::Result<()>
where
    F: SetSockOpt<Val = usize>,
    P: SetSockOpt<Val = usize>,
{
    let n = bytes.min(i32::MAX as usize);
    match setsockopt(&fd, forced, &n) {
        Err(Errno::EPERM) => {
            log::debug!("{} needs CAP_NET_ADMIN: {} (at most net.core.{max})", names.0, names.1);
            Ok(setsockopt(&fd, plain, &n)?)
        }
        r => Ok(r?),
    }
}

/// Sets PACKET_IGNORE_OUTGOING on an AF_PACKET socket (the pcap capture's
/// among them): frames this host sends are not looped back to it.
pub fn ignore_outgoing(fd: BorrowedFd) -> io::Result<()> {
    setopt(fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &(1 as libc::c_int))
}

/// Binds the socket to interface `ifindex` and ethertype `proto` (host
/// order).
pub fn bind(fd: BorrowedFd, ifindex: i32, proto: u16) -> io::Result<()> {
    let mut sll = sockaddr_ll();
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: `fd` is open for the call; the address pointer and length
    // describe `sll`, a whole sockaddr_ll that lives across the call and
    // that the kernel only reads.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Puts interface `ifindex` in promiscuous mode for as long as the socket
/// is open (PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC).
pub fn add_promiscuous(fd: BorrowedFd, ifindex: i32) -> io::Result<()> {
    // SAFETY: packet_mreq is a plain C struct of integers and a byte array;
    // all zero bytes is a valid value of it.
    let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mr.mr_ifindex = ifindex;
    mr.mr_type = libc::PACKET_MR_PROMISC as u16;
    setopt(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mr)
}

/// Where a frame whose header is `head` (at least a MAC long) goes: out of
/// interface `ifindex`, to its destination MAC, with sll_protocol `proto`
/// (host order).
fn destination(ifindex: i32, proto: u16, head: &[u8]) -> libc::sockaddr_ll {
    let mut sll = sockaddr_ll();
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&head[..6]);
    sll
}

/// Sends one frame: `head` (Ethernet header first) followed by `data`, in
/// one sendmsg with two iovecs, out of interface `ifindex` with sll_protocol
/// `proto` (host order). EINTR is retried; other errors (ENOBUFS on a full
/// queue among them) are the caller's to judge. Raw libc: nix's `sendmsg`
/// needs a `LinkAddr`, which cannot be built from a MAC and an index.
/// Nothing is allocated: this runs once per frame.
#[inline]
pub fn send_parts(fd: BorrowedFd, ifindex: i32, proto: u16, head: &[u8], data: &[u8]) -> io::Result<()> {
    if head.len() < 6 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame shorter than a MAC"));
    }
    let mut sll = destination(ifindex, proto, head);
    // The kernel only reads through these pointers (sendmsg's iovecs are
    // *mut in the C declaration only).
    let mut iov = [
        libc::iovec { iov_base: head.as_ptr() as *mut libc::c_void, iov_len: head.len() },
        libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() },
    ];
    // SAFETY: msghdr is a plain C struct of pointers and integers; all zero
    // bytes (null pointers, zero lengths) is a valid value of it.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = &mut sll as *mut libc::sockaddr_ll as *mut libc::c_void;
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = if data.is_empty() { 1 } else { 2 };
    loop {
        // SAFETY: `fd` is open for the call. `msg` points at `sll` (a whole
        // sockaddr_ll, as msg_namelen says) and at `msg_iovlen` (1 or 2)
        // entries of `iov`, whose pointers and lengths describe the borrowed
        // slices `head` and `data`; all of them outlive the call, and the
        // kernel only reads them. No control data (null, length 0).
        if unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, 0) } >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Most frames one `send_many` call hands the kernel at once (its arrays
/// live on the stack).
pub const SEND_BATCH: usize = 32;

/// Sends frames in order, each `head` (Ethernet header first) followed by
/// its `data`, as `send_parts` would one by one, but up to [`SEND_BATCH`]
/// in one sendmmsg: one system call for a burst. Returns how many were
/// sent and, if not all, the error of the first that was not (the rest
/// were not tried). EINTR is retried. A frame shorter than a MAC is
/// refused (EINVAL) before anything is sent after it. Nothing is
/// allocated.
pub fn send_many(fd: BorrowedFd, ifindex: i32, proto: u16, frames: &[(&[u8], &[u8])]) -> (usize, Option<io::Error>) {
    let mut sent = 0;
    while sent < frames.len() {
        let batch = &frames[sent..frames.len().min(sent + SEND_BATCH)];
        // Frames up to the first one too short to carry a MAC.
        let n = batch.iter().position(|(h, _)| h.len() < 6).unwrap_or(batch.len());
        if n == 0 {
            return (sent, Some(io::Error::new(io::ErrorKind::InvalidInput, "frame shorter than a MAC")));
        }
        let mut sll = [sockaddr_ll(); SEND_BATCH];
        let mut iov = [[libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 2]; SEND_BATCH];
        // SAFETY: mmsghdr is a plain C struct of a msghdr (pointers and
        // integers) and an integer; all zero bytes is a valid value of it.
        let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
        for (i, (head, data)) in batch[..n].iter().enumerate() {
            let a = &mut sll[i];
            *a = destination(ifindex, proto, head);
            // The kernel only reads through these pointers (the iovecs are
            // *mut in the C declaration only).
            iov[i] = [
                libc::iovec { iov_base: head.as_ptr() as *mut libc::c_void, iov_len: head.len() },
                libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() },
            ];
            let m = &mut msgs[i].msg_hdr;
            m.msg_name = a as *mut libc::sockaddr_ll as *mut libc::c_void;
            m.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            m.msg_iov = iov[i].as_mut_ptr();
            m.msg_iovlen = if data.is_empty() { 1 } else { 2 };
        }
        // SAFETY: `fd` is open for the call. The first `n` entries of `msgs`
        // each point at their own whole sockaddr_ll in `sll` (as msg_namelen
        // says) and at `msg_iovlen` (1 or 2) entries of their row of `iov`,
        // whose pointers and lengths describe the borrowed slices of
        // `frames`; all of them outlive the call, and the kernel only reads
        // them (it writes msg_len of each entry, which is ours). No control
        // data (null, length 0).
        let r = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return (sent, Some(e));
        }
        if r == 0 {
            // Not for a non-empty batch; never loop on it.
            return (sent, Some(io::Error::other("sendmmsg sent nothing")));
        }
        // At least one went (sendmmsg fails only when the first does); when
        // fewer than asked went, the next call reports the error of the
        // first that did not.
        sent += r as usize;
    }
    (sent, None)
}

/// Waits up to `ms` milliseconds (negative: for ever) for something to read
/// on `fd`. Errors (EINTR among them) count as nothing to read. Nothing is
/// allocated: the capture thread calls this between bursts.
#[inline]
pub fn wait_readable(fd: BorrowedFd, ms: i32) -> bool {
    let timeout = PollTimeout::try_from(ms.max(-1)).unwrap_or(PollTimeout::NONE);
    let mut pfd = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(nix::poll::poll(&mut pfd, timeout), Ok(n) if n > 0)
}

/// Receives one frame without waiting: its length and packet type
/// (PACKET_HOST, PACKET_OUTGOING, ...), or None when nothing is queued or a
/// signal interrupted the call. Raw libc: nix's `recvfrom` takes no flags
/// (MSG_DONTWAIT).
pub fn recv(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<Option<(usize, u8)>> {
    let mut sll = sockaddr_ll();
    let mut alen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `fd` is open for the call; the kernel writes at most
    // `buf.len()` bytes into `buf`, which is mutably borrowed for the call,
    // and at most `alen` (the size of a sockaddr_ll) bytes into `sll`.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MSG_DONTWAIT,
            &mut sll as *mut libc::sockaddr_ll as *mut libc::sockaddr,
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

/// Frames the kernel dropped on this socket (receive buffer full) since the
/// last call (PACKET_STATISTICS; 0 if it cannot be read). Raw libc: nix has
/// no PACKET_* options.
pub fn drops(fd: BorrowedFd) -> u32 {
    // struct tpacket_stats: packets, drops.
    let mut st = [0u32; 2];
    let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
    // SAFETY: `fd` is open for the call; the kernel writes at most `len`
    // bytes (the size of `st`) into `st`, which lives across the call.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
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

/// Up to `N` frames received with one recvmmsg. The buffers and headers are
/// allocated once, in `new`.
pub struct RecvBatch<const N: usize> {
    bufs: [Vec<u8>; N],
    lens: [usize; N],
    hdrs: MultiHeaders<()>,
}

impl<const N: usize> RecvBatch<N> {
    /// `N` buffers of `size` bytes each.
    pub fn new(size: usize) -> RecvBatch<N> {
        RecvBatch {
            bufs: std::array::from_fn(|_| vec![0u8; size]),
            lens: [0; N],
            hdrs: MultiHeaders::preallocate(N, None),
        }
    }

    /// Receives what is queued on `fd`, up to `N` frames, without waiting:
    /// how many arrived (0 when none, or on an error).
    pub fn recv(&mut self, fd: BorrowedFd) -> usize {
        let mut iovs: [[IoSliceMut; 1]; N] = self.bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        let Ok(got) =
            nix::sys::socket::recvmmsg(fd.as_raw_fd(), &mut self.hdrs, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)
        else {
            return 0;
        };
        let mut k = 0;
        for (len, m) in self.lens.iter_mut().zip(got) {
            *len = m.bytes;
            k += 1;
        }
        k
    }

    /// Frame `i` of the last `recv`.
    pub fn frame(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i].min(self.bufs[i].len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn wait_readable_sees_input_and_times_out() {
        let (a, b) = UnixDatagram::pair().unwrap();
        let t0 = std::time::Instant::now();
        assert!(!wait_readable(a.as_fd(), 20));
        assert!(t0.elapsed() >= std::time::Duration::from_millis(20));
        b.send(b"x").unwrap();
        assert!(wait_readable(a.as_fd(), -1));
    }

    #[test]
    fn recv_batch_takes_what_is_queued_up_to_its_size() {
        let (a, b) = UnixDatagram::pair().unwrap();
        let mut batch = RecvBatch::<4>::new(8);
        assert_eq!(batch.recv(a.as_fd()), 0, "nothing queued: no wait");
        for m in [&b"one"[..], b"two", b"three", b"four", b"five", b"a datagram longer than 8"] {
            b.send(m).unwrap();
        }
        assert_eq!(batch.recv(a.as_fd()), 4);
        assert_eq!(
            [batch.frame(0), batch.frame(1), batch.frame(2), batch.frame(3)],
            [b"one", &b"two"[..], b"three", b"four"]
        );
        assert_eq!(batch.recv(a.as_fd()), 2);
        assert_eq!(batch.frame(0), b"five");
        assert_eq!(batch.frame(1), b"a datagr", "cut to the buffer");
        assert_eq!(batch.recv(a.as_fd()), 0);
    }
}
