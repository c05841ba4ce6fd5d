//! System calls. This module holds every call into libc or `nix` the crate
//! makes, and all of its `unsafe` code: the rest of the crate (and the
//! binaries) deny `unsafe_code` and call the safe functions here.
//!
//! Rules for this module:
//! - Where `nix` offers a call safely, it is used; raw libc only where `nix`
//!   lacks the call (each such place says so).
//! - Every `unsafe` block has a `// SAFETY:` comment that says why it is sound.
//! - File descriptors are held as `OwnedFd` (closed on drop) and lent as
//!   `BorrowedFd`, never passed around as bare integers.
//!
//! Submodules by subject: `net` (interface queries), `packet` (AF_PACKET
//! sockets and waiting for input), `daemon` (forking into the background,
//! unmounting), `signal` (the stop signals), `syslog` (the daemon's logger).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod daemon;
pub mod net;
pub mod packet;
pub mod signal;
pub mod syslog;

/// The real user and group ids of this process (the owner of the files a
/// mount shows).
pub fn user_ids() -> (u32, u32) {
    (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_ids_are_the_real_ones() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let real = |key: &str| -> u32 {
            let line = status.lines().find(|l| l.starts_with(key)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        assert_eq!(super::user_ids(), (real("Uid:"), real("Gid:")));
    }
}
