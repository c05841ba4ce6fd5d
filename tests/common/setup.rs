//! Where most tests start: one target, and one target mounted.

use super::mount::{Mount, APPEAR};
use super::testbed::{Fill, Testbed};
use super::vblade::VbladeHandle;
use std::path::PathBuf;

/// The target of [`one_target`], and of most tests.
pub const T: &str = "e0.1";

/// A testbed (MTU `mtu`) with one vblade serving e0.1 from `disk.img`,
/// `size` bytes filled with `fill`: the testbed, the image and the vblade.
pub fn one_target(mtu: u32, size: u64, fill: Fill) -> (Testbed, PathBuf, VbladeHandle) {
    let tb = Testbed::new(mtu);
    let img = tb.make_image("disk.img", size, fill);
    let vb = tb.start_vblade(0, 1, &img, None);
    (tb, img, vb)
}

/// [`one_target`] mounted, with e0.1 there. Field order matters: the mount
/// is dropped before the testbed.
pub struct Setup {
    pub m: Mount,
    pub vb: VbladeHandle,
    pub img: PathBuf,
    pub tb: Testbed,
}

/// [`one_target`] mounted with the aoefs arguments `extra`; waits for e0.1.
pub fn setup(mtu: u32, size: u64, fill: Fill, extra: &[&str]) -> Setup {
    let (tb, img, vb) = one_target(mtu, size, fill);
    let m = tb.mount_aoefs(extra);
    m.expect_target(T, APPEAR);
    Setup { m, vb, img, tb }
}
