//! aoefs: a userspace ATA-over-Ethernet initiator that mounts AoE targets
//! with FUSE. See Documentation/design.md for the structure.
//!
//! Unsafe code lives in `sys` only (the system calls), each block with a
//! `// SAFETY:` comment.

#![deny(unsafe_code)]

pub mod blockfs;
pub mod cache;
pub mod clock;
pub mod device;
pub mod docs;
pub mod engine;
pub mod errlog;
pub mod fs;
pub mod initiator;
pub mod link;
pub mod logging;
pub mod mountpoint;
pub mod partition;
pub mod pool;
pub mod sim;
#[allow(unsafe_code)]
pub mod sys;
pub mod testtools;
pub mod timer;
pub mod tools;
pub mod wire;
