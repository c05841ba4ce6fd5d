//! End-to-end tests of aoefs with the tools people already run against the
//! Linux aoe driver, and of the places where it behaves as the driver does
//! (issue 21): Debian's aoetools (aoe-stat, aoe-interfaces and aoe-flush's
//! name check), writes as shell and Python scripts make them, a partition
//! table rewritten by sfdisk, a target flushed and found again, messages a
//! user can act on, and the raw IDENTIFY block decoded by hdparm. Each test
//! runs the real vblade in its own network namespaces.
//!
//! Run: `cargo test --release --features e2e --test compat -- --test-threads=2`
//! (as root; needs aoetools, fdisk, python3 and hdparm, which .ci/run
//! installs).
#![cfg(feature = "e2e")]
mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const MIB: u64 = 1 << 20;
const APPEAR: Duration = Duration::from_secs(5);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `aoefs ARGS` (a subcommand working through the mount's files).
fn aoefs(args: &[&str]) -> Output {
    run_unchecked(Command::new(AOEFS).args(args))
}

/// Names in MNT/block.
fn block_names(m: &Mount) -> Vec<String> {
    let p = m.path.join("block");
    let mut v = bounded("readdir block", Duration::from_secs(10), move || {
        fs::read_dir(&p).map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect::<Vec<_>>())
    })
    .unwrap_or_else(|e| panic!("readdir block: {e}"));
    v.sort();
    v
}

/// `sfdisk -q FILE` with `script` on its stdin.
fn sfdisk(file: &Path, script: &str) {
    let mut cmd = Command::new("sfdisk");
    cmd.arg("-q").arg(file);
    run_with_stdin(&mut cmd, script);
}

/// Rule: `sysfs_dir=MNT/sys aoe-stat` prints exactly the driver's table:
/// each target once, named eX.Y, with the kernel's columns (so aoe-flush's
/// check of a name against aoe-stat's first column finds it), while the
/// status directories stay at MNT/block/eX.Y.
#[test]
fn aoe_stat_on_mnt_sys_prints_the_drivers_table() {
    let tb = Testbed::new(1500);
    let img1 = tb.make_image("disk1.img", 64 * MIB, Fill::Zero);
    // Partition files (e0.1p1, ...) must not count as targets.
    sfdisk(&img1, "label: dos\n,16M,83\n,,83\n");
    let img2 = tb.make_image("disk2.img", 8 * MIB, Fill::Zero);
    tb.start_vblade(0, 1, &img1, None);
    tb.start_vblade(1, 2, &img2, None);
    let m = tb.mount_aoefs(&[]);
    m.expect_target("e0.1", APPEAR);
    m.expect_target("e1.2", APPEAR);
    assert!(m.list().contains(&"e0.1p2".to_string()), "{:?}", m.list());
    let ifname = tb.init_if(0);
    let row = |dev: &str, sectors: u64| {
        format!("{:>10} {:>15} {:>10} {:<5} {:<14}\n", dev, aoe_stat_size(sectors), ifname, "1024", "up")
    };
    let want = row("e0.1", 64 * MIB / 512) + &row("e1.2", 8 * MIB / 512);
    let sys = m.path.join("sys");
    let out = run(Command::new("aoe-stat").env("sysfs_dir", &sys));
    assert_eq!(text(&out.stdout), want, "sysfs_dir={} aoe-stat", sys.display());
    assert!(out.stderr.is_empty(), "aoe-stat: {}", text(&out.stderr));
    // aoe-stat skips every path with a "p" in it, the mount point's too;
    // from inside MNT/sys, a relative sysfs_dir has none.
    let out = run(Command::new("aoe-stat").env("sysfs_dir", ".").current_dir(&sys));
    assert_eq!(text(&out.stdout), want, "cd {} && sysfs_dir=. aoe-stat", sys.display());
    // The same table as `aoefs stat`.
    assert_eq!(text(&aoefs(&["stat", &m.path.to_string_lossy()]).stdout), want);
    // aoe-flush's check of each name it is given.
    for (dev, found) in [("e0.1", "e0.1\n"), ("e1.2", "e1.2\n"), ("e9.9", "")] {
        let out = run(Command::new("sh")
            .args(["-c", "aoe-stat | awk -vd=\"$1\" '$1==d{print $1}'", "sh", dev])
            .env("sysfs_dir", &sys));
        assert_eq!(text(&out.stdout), found, "aoe-flush's name check of {dev}");
    }
    // The status directories are where they were.
    assert_eq!(m.read_status("e0.1", "state"), "up\n");
    assert_eq!(block_names(&m), ["e0.1", "e1.2"]);
    assert_eq!(
        m.bounded_read(&sys.join("block/etherd!e1.2/size")).unwrap(),
        format!("{}\n", 8 * MIB / 512),
        "the driver's name in MNT/sys/block leads to the target's attributes"
    );
}
