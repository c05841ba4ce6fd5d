//! Integration-test harness for aoefs.
//!
//! Every test builds its own [`Testbed`]: two fresh network namespaces (an
//! initiator side and a target side) joined by a veth pair that is created
//! directly inside the namespaces, so no test interface ever exists in the
//! root namespace and no frame ever touches a real interface.
//!
//! * vblade runs in the target namespace (`ip netns exec TNS vblade ...`).
//! * aoefs runs in the initiator namespace through
//!   `nsenter --net=/run/netns/INS aoefs MNT -f --iflist VETH ...`; nsenter
//!   only switches the network namespace, so the FUSE mount is visible to
//!   the test in the root mount namespace.
//!
//! Everything is torn down in `Drop` (also while unwinding from a panic):
//! ext4 mounts, loop devices, aoefs (SIGTERM, then SIGKILL), the FUSE mount,
//! vblade, tshark, the namespaces and the temp directories. Every wait is
//! bounded; a per-mount watchdog kills aoefs and aborts the FUSE connection if
//! a test hangs, so a blocked syscall in the test returns an error instead of
//! hanging the suite.
//!
//! By subject:
//! * `command`: running a command to completion, bounded, with its output
//! * `process`: running commands (bounded), polling, stopping children
//! * `seed`: printing the seed of a randomised test
//! * `data`: the seeded PRNG, buffer comparisons, file reads and their errnos,
//!   partition tables
//! * `testbed`: [`Testbed`] (namespaces, veth pairs, backing images,
//!   helper processes) and its teardown
//! * `vblade`: vblade processes in the target namespace, restartable
//! * `capture`: tshark captures and their decoding
//! * `mount`: [`Mount`] (aoefs mounted in the initiator namespace, loop
//!   devices and filesystems on it, the watchdog) and its teardown
//! * `faultbed`: the fault tests' middle namespace with the frame forwarder,
//!   the hostile-frame injector, `stats` parsing
//! * `bridge`: the trust tests' shared segment (initiator, vblade and a third
//!   host on one bridge), MAC changes, the third host (`aoe-inject --respond`)
//! * `setup`: one target, and one target mounted, where most tests start
//! * `host`: the lock of the tests that change the host's /sbin, /usr, /etc;
//!   directories in /tmp removed in Drop
//!
//! The end-to-end tests (tests/e2e/) are one test binary that compiles this
//! module once, so a helper no test uses is a dead-code warning. The
//! in-memory tests and the fuzzing regressions declare only the module they
//! use (`seed`, `command`).

mod bridge;
mod capture;
mod command;
mod data;
mod faultbed;
mod host;
mod mount;
mod process;
mod seed;
mod setup;
mod testbed;
mod vblade;

// One flat namespace for the tests (`use crate::common::*`); `bridge` and
// `faultbed` only add methods to `Testbed`.
pub use {capture::*, command::*, data::*, host::*, mount::*, process::*, seed::*, setup::*, testbed::*, vblade::*};

use std::sync::atomic::AtomicUsize;

/// Path of the aoefs binary cargo built for this test run.
pub const AOEFS: &str = env!("CARGO_BIN_EXE_aoefs");

/// Numbers the testbeds, mount points and helper logs of this process.
static COUNTER: AtomicUsize = AtomicUsize::new(0);
