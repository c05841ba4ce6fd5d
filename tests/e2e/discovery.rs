//! Discovery and the mount's tree, end to end against the real vblade: the
//! files of a mount at MTU 1500 and 9000 with their modes and what the
//! target's attributes say, targets on two shelves, a target found only
//! through `discover`, the interface list, and the names the tree refuses.
//!
//! Run: `cargo test --release --features e2e --test e2e -- --test-threads=2 discovery::`
//! (as root).

use crate::common::*;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

fn check_layout(mtu: u32, payload: u64) {
    let size = 64 * MIB;
    let tb = Testbed::new(mtu);
    let img = tb.make_image("disk.img", size, Fill::Zero);
    let _vb = tb.start_vblade(0, 1, &img, None);
    let m = tb.mount_aoefs(&[]);
    let dev = m.expect_target("e0.1", APPEAR);

    let names = m.list();
    for f in ["discover", "interfaces", "err", "revalidate", "flush", "block", "sys", "e0.1"] {
        assert!(names.iter().any(|n| n == f), "{} missing from {:?}", f, names);
    }
    let md = fs::metadata(&dev).unwrap();
    assert!(md.is_file(), "e0.1 is not a regular file");
    assert_eq!(md.len(), size, "e0.1 size != backing file size");
    assert_eq!(md.mode() & 0o777, 0o660, "e0.1 mode {:o}", md.mode());
    for (f, mode) in
        [("discover", 0o200), ("interfaces", 0o644), ("err", 0o444), ("revalidate", 0o200), ("flush", 0o200)]
    {
        let md = fs::metadata(m.path.join(f)).unwrap();
        assert_eq!(md.mode() & 0o777, mode, "mode of {}: {:o}", f, md.mode());
    }

    assert_eq!(m.wait_status("e0.1", "state", "up\n", APPEAR), "up\n", "state");
    let mac = m.read_status("e0.1", "mac");
    assert_eq!(mac.trim_end(), tb.target_mac(0), "mac attribute");
    assert_eq!(mac.trim_end().len(), 12);
    assert_eq!(m.read_status("e0.1", "netif").trim_end(), tb.init_if(0), "netif");
    assert_eq!(m.read_status("e0.1", "payload").trim_end(), payload.to_string(), "payload at MTU {}", mtu);
    assert_eq!(m.read_status("e0.1", "size").trim_end(), (size / 512).to_string(), "size in sectors");
    // What vblade 25 says about itself. ata.c, atainit(): IDENTIFY's model
    // is "Coraid EtherDrive vblade"; its serial is the `serial` that aoe.c's
    // setserial() writes: "SHELF.SLOT:HOSTNAME" cut to Nserial - 1 = 19
    // characters (dat.h: Nserial = 20). The config response's firmware
    // version is FWV = 0x4000 + VBLADE_VERSION (dat.h), 0x4019 for 25.
    assert_eq!(m.read_status("e0.1", "firmware-version"), "0x4019\n", "firmware-version");
    assert_eq!(m.read_status("e0.1", "model"), "Coraid EtherDrive vblade\n", "model");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let serial: String = format!("0.1:{}", host.trim_end()).chars().take(19).collect();
    assert_eq!(m.read_status("e0.1", "serial"), format!("{}\n", serial), "serial");

    // aoe-stat from aoetools reads MNT/sys as the kernel's /sys
    let out = run(Command::new("aoe-stat").env("sysfs_dir", m.path.join("sys")));
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some("e0.1"))
        .unwrap_or_else(|| panic!("aoe-stat does not list e0.1:\n{}", out));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols.get(1).copied(), Some(aoe_stat_size(size / 512).as_str()), "{}", line);
    assert!(cols.contains(&tb.init_if(0).as_str()), "{}", line);
    assert!(cols.contains(&"up"), "{}", line);
    assert!(cols.contains(&payload.to_string().as_str()), "{}", line);
}

#[test]
fn discover_and_layout_mtu1500() {
    check_layout(1500, 1024);
}

#[test]
fn discover_and_layout_mtu9000() {
    check_layout(9000, 8704);
}

#[test]
fn two_targets_on_two_shelves() {
    let tb = Testbed::new(1500);
    let a = tb.make_image("a.img", 16 * MIB, Fill::Random(10));
    let b = tb.make_image("b.img", 8 * MIB, Fill::Random(11));
    tb.start_vblade(1, 0, &a, None);
    tb.start_vblade(2, 3, &b, None);
    let m = tb.mount_aoefs(&[]);
    let ea = m.expect_target("e1.0", APPEAR);
    let eb = m.expect_target("e2.3", APPEAR);
    assert_eq!(fs::metadata(&ea).unwrap().len(), 16 * MIB);
    assert_eq!(fs::metadata(&eb).unwrap().len(), 8 * MIB);
    assert_eq!(m.wait_status("e1.0", "state", "up\n", APPEAR), "up\n");
    assert_eq!(m.wait_status("e2.3", "state", "up\n", APPEAR), "up\n");
    assert_eq!(m.targets(), vec!["e1.0".to_string(), "e2.3".to_string()]);
    // data is routed to the right target
    for (dev, img) in [(&ea, &a), (&eb, &b)] {
        let f = File::open(dev).unwrap();
        let got = pread(&f, 0, 64 * 1024).unwrap();
        let want = pread(&File::open(img).unwrap(), 0, 64 * 1024).unwrap();
        assert_same(&format!("{}", dev.display()), &got, &want);
    }
}

#[test]
fn target_whose_announcement_was_missed_appears_after_discover() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("late.img", 8 * MIB, Fill::Zero);
    // A pair whose frames pass through a forwarder, which is not running
    // yet: vblade's announcement at start is lost on the way, so only a
    // query reaches it.
    let k = tb.add_forwarded_pair(1500);
    let m = tb.mount_aoefs_iflist(&tb.init_if(k), &["--discover-wait-ms", "300"]);
    assert!(m.targets().is_empty(), "unexpected targets {:?}", m.targets());
    tb.start_vblade_on(k, 0, 7, &img, None);
    thread::sleep(Duration::from_millis(300));
    tb.start_forwarder(k, "", 0);
    thread::sleep(Duration::from_millis(1500));
    assert!(m.targets().is_empty(), "e0.7 appeared without discover: {:?}", m.targets());
    let t0 = Instant::now();
    m.discover();
    let p = m.target("e0.7");
    assert!(
        m.wait_for(&p, Duration::from_secs(3)),
        "e0.7 did not appear within 3 s of writing discover; mount has {:?}",
        m.list()
    );
    eprintln!("e0.7 appeared {:?} after discover", t0.elapsed());
    assert_eq!(fs::metadata(&p).unwrap().len(), 8 * MIB);
    assert_eq!(m.wait_status("e0.7", "state", "up\n", APPEAR), "up\n");
}

#[test]
fn iflist_excludes_other_interfaces() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 8 * MIB, Fill::Zero);
    let k = tb.add_veth(1500); // second pair, no vblade on it
    tb.start_vblade_on(0, 0, 1, &img, None);
    let only = tb.init_if(k);
    let m = tb.mount_aoefs_iflist(&only, &["--discover-wait-ms", "500"]);
    assert_eq!(m.read_ctl("interfaces").trim(), only, "interfaces");
    m.discover();
    thread::sleep(Duration::from_secs(2));
    assert!(m.targets().is_empty(), "target seen through an excluded interface: {:?}", m.targets());
    // sanity: the target is reachable once the interface is allowed
    m.write_ctl("interfaces", format!("{}\n", tb.init_if(0)).as_bytes()).expect("write a valid interface list");
    assert_eq!(m.read_ctl("interfaces").trim(), tb.init_if(0));
    m.discover();
    m.expect_target("e0.1", Duration::from_secs(3));
    assert_eq!(m.read_status("e0.1", "netif").trim_end(), tb.init_if(0));
}

/// Names cannot be made, removed or moved (errnos as on sysfs), isatty()
/// on a disk is false with ENOTTY, and `ls -l` finds no extended
/// attributes: none of it leaves a warning or an error in the log (a killed
/// `err` reader: control_files.rs).
#[test]
fn refused_names_and_isatty_are_quiet() {
    let (tb, _img, _) = one_target(1500, 8 * MIB, Fill::Random(13));
    let m = tb.mount_aoefs(&[]);
    let disk = m.expect_target("e0.1", APPEAR);
    let p = m.path.clone();
    let errnos = bounded("name operations", Duration::from_secs(30), move || {
        let e = |r: std::io::Result<()>| errno_of(&r);
        vec![
            ("create", e(OpenOptions::new().write(true).create_new(true).open(p.join("new")).map(|_| ()))),
            ("mkdir", e(fs::create_dir(p.join("dir")))),
            ("mknod", e(run_mknod(&p.join("fifo")))),
            ("rename", e(fs::rename(p.join("flush"), p.join("flush2")))),
            ("unlink", e(fs::remove_file(p.join("e0.1")))),
            ("rmdir", e(fs::remove_dir(p.join("block/e0.1")))),
            ("symlink", e(std::os::unix::fs::symlink("e0.1", p.join("link")))),
            ("link", e(fs::hard_link(p.join("e0.1"), p.join("hard")))),
        ]
    });
    for (op, errno) in errnos {
        let want = if op == "create" { libc::EACCES } else { libc::EPERM };
        assert_eq!(errno, Some(want), "{op}");
    }
    let d = disk.clone();
    let (tty, errno) = bounded("isatty", Duration::from_secs(30), move || {
        let f = fs::File::open(&d).unwrap();
        let r = unsafe { libc::isatty(std::os::fd::AsRawFd::as_raw_fd(&f)) };
        (r, std::io::Error::last_os_error().raw_os_error())
    });
    assert_eq!((tty, errno), (0, Some(libc::ENOTTY)));
    // `ls -l` asks for extended attributes (security.selinux).
    run(Command::new("ls").arg("-l").arg(&m.path).arg(m.path.join("block/e0.1")));
    assert_eq!(m.read_status("e0.1", "state"), "up\n");
    let noisy = m.log_warnings_and_errors();
    assert!(noisy.is_empty(), "warnings or errors in the log: {noisy:?}");
}

/// mknod(2) of a FIFO.
fn run_mknod(p: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFIFO | 0o644, 0) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
