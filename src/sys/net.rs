//! Interface queries: flags, MTU, hardware address, index, names.

use crate::wire::Mac;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use std::io;
use std::os::fd::AsRawFd;

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is a plain C struct (a name array and a union of
    // integers, arrays and sockaddrs) for which all zero bytes is a valid
    // value: an empty name and a zero union.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= req.ifr_name.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
    }
    for (i, c) in b.iter().enumerate() {
        req.ifr_name[i] = *c as libc::c_char;
    }
    Ok(req)
}

/// One SIOCGIF* request on a throwaway datagram socket. Raw libc: nix has
/// no call for these ioctls (only macros that declare unsafe functions).
fn ioctl_ifreq(name: &str, req_no: libc::c_ulong) -> io::Result<libc::ifreq> {
    let mut req = ifreq(name)?;
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    // SAFETY: `sock` is an open socket for the whole call, and the three
    // requests used here (SIOCGIFFLAGS, SIOCGIFMTU, SIOCGIFHWADDR) read a
    // struct ifreq whose name is NUL-terminated (`ifreq` checked the length
    // against the zeroed array) and write only inside that struct, which
    // `req` is and which lives across the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), req_no as _, &mut req) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(req)
    }
}

/// Interface flags (IFF_*).
pub fn if_flags(name: &str) -> io::Result<i32> {
    let r = ioctl_ifreq(name, libc::SIOCGIFFLAGS)?;
    // SAFETY: SIOCGIFFLAGS succeeded, so the kernel wrote the flags member
    // of the union; any bit pattern is a valid c_short.
    Ok(unsafe { r.ifr_ifru.ifru_flags } as i32)
}

/// Interface MTU.
pub fn if_mtu(name: &str) -> io::Result<usize> {
    let r = ioctl_ifreq(name, libc::SIOCGIFMTU)?;
    // SAFETY: SIOCGIFMTU succeeded, so the kernel wrote the mtu member of
    // the union; any bit pattern is a valid c_int.
    Ok(unsafe { r.ifr_ifru.ifru_mtu } as usize)
}

/// Interface hardware address.
pub fn if_mac(name: &str) -> io::Result<Mac> {
    let r = ioctl_ifreq(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR succeeded, so the kernel wrote the hwaddr
    // member (a sockaddr: integers and a byte array, valid for any bits).
    let sa = unsafe { r.ifr_ifru.ifru_hwaddr };
    let mut m = [0u8; 6];
    for (i, b) in m.iter_mut().enumerate() {
        *b = sa.sa_data[i] as u8;
    }
    Ok(Mac(m))
}

/// Interface index, or None when no such interface exists.
pub fn if_index(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// All interface names in this network namespace.
pub fn if_names() -> Vec<String> {
    match nix::net::if_::if_nameindex() {
        Ok(list) => list.iter().map(|i| i.name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_answers_every_query() {
        // Every network namespace has `lo`.
        assert!(if_names().iter().any(|n| n == "lo"));
        assert!(if_index("lo").is_some());
        let flags = if_flags("lo").unwrap();
        assert_ne!(flags & libc::IFF_LOOPBACK, 0);
        assert!(if_mtu("lo").unwrap() >= 1500);
        assert_eq!(if_mac("lo").unwrap(), Mac([0; 6]));
    }

    #[test]
    fn bad_names_are_errors() {
        for name in ["", "a-name-longer-than-ifnamsiz", "a\0b"] {
            assert!(if_index(name).is_none(), "{name:?}");
        }
        assert_eq!(if_mtu("").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(if_flags("a-name-longer-than-ifnamsiz").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(if_mac("nosuchif0").unwrap_err().raw_os_error(), Some(libc::ENODEV));
    }
}
