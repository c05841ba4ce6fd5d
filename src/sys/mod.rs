//! System calls: the crate's calls into libc and `nix`.
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
//! unmounting), `signal` (the stop signals).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod daemon;
pub mod net;
pub mod packet;
pub mod signal;
