//! aoefs: a userspace ATA-over-Ethernet initiator that mounts AoE targets
//! with FUSE. See Documentation/design.md for the structure.

pub mod wire;
pub mod engine;
pub mod errlog;
pub mod link;
pub mod pool;
pub mod target;
pub mod cache;
pub mod core;
pub mod fs;
pub mod readahead;
pub mod syslog;
pub mod tools;
pub mod testtools;
pub mod partition;
