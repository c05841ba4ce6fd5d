//! The end-to-end tests: aoefs against the real vblade target, each test in
//! its own pair of network namespaces (see tests/common/mod.rs). One test
//! binary, one module a subject; tests/common, their harness, is compiled
//! once for all of them, so a helper no test uses is a warning.
//!
//! Run (as root): `cargo test --release --features e2e --test e2e -- --test-threads=2`;
//! one subject: `... --test e2e -- --test-threads=2 faults::`. On failure
//! the aoefs log is printed; `AOEFS_TEST_SHOW_LOG=1` prints it always and
//! `AOEFS_TEST_LOG=debug` sets aoefs' RUST_LOG.
#![cfg(feature = "e2e")]

#[path = "../common/mod.rs"]
mod common;

mod access;
mod compat;
mod control_files;
mod data;
mod discovery;
mod faults;
mod harness;
mod lifecycle;
mod link;
mod mount_helpers;
mod package;
mod partitions;
mod subcommands;
mod trust;
