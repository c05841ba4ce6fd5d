//! End-to-end tests of aoefs against the real vblade target, each in its own
//! pair of network namespaces (see tests/common/mod.rs).
//!
//! Run: `cargo test --release --features e2e --test e2e -- --test-threads=2 data::`
//! (as root).

use crate::common::*;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Image size of the data tests.
const IMG: u64 = 32 * MIB;

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
fn random_writes_reach_backing_file() {
    let s = setup(1500, IMG, Fill::Zero, &[]);
    let mut model = vec![0u8; IMG as usize];
    let mut rng = Rng::from_time();
    let f = open_rw(&s.m.target("e0.1"));
    for _ in 0..150 {
        let len = 1 + rng.below(64 * 1024) as usize;
        let off = rng.below(IMG - len as u64) as usize;
        let data = rng.bytes(len);
        f.write_all_at(&data, off as u64).unwrap_or_else(|e| panic!("write {} bytes at {}: {}", len, off, e));
        model[off..off + len].copy_from_slice(&data);
    }
    f.sync_all().expect("fsync");
    drop(f);
    // through aoefs
    let got = read_all(&s.m.target("e0.1"));
    assert_same("e0.1 read back through aoefs", &got, &model);
    // vblade's backing file
    let backing = read_all(&s.img);
    assert_same("backing file", &backing, &model);
}

#[test]
fn backing_file_written_before_mount_reads_back() {
    let tb = Testbed::new(9000);
    let img = tb.make_image("disk.img", IMG, Fill::Random(0xA0E));
    let _vb = tb.start_vblade(0, 1, &img, Some(32));
    let m = tb.mount_aoefs(&[]);
    let dev = m.expect_target("e0.1", APPEAR);
    let got = read_all(&dev);
    let want = read_all(&img);
    assert_same("e0.1 vs backing file", &got, &want);
}

#[test]
fn backing_file_written_after_mount_reads_back_uncached() {
    let s = setup(1500, IMG, Fill::Random(1), &["--cache-mb", "0"]);
    let mut rng = Rng::from_time();
    // prime: read some regions through aoefs first
    let f = File::open(s.m.target("e0.1")).unwrap();
    let mut regions = Vec::new();
    for _ in 0..40 {
        let len = 1 + rng.below(20000) as usize;
        let off = rng.below(IMG - len as u64);
        pread(&f, off, len).expect("priming read");
        regions.push((off, len));
    }
    drop(f);
    // overwrite those regions (and a few others) directly in the backing file
    let b = OpenOptions::new().write(true).open(&s.img).unwrap();
    for _ in 0..10 {
        let len = 1 + rng.below(20000) as usize;
        regions.push((rng.below(IMG - len as u64), len));
    }
    for &(off, len) in &regions {
        b.write_all_at(&rng.bytes(len), off).unwrap();
    }
    b.sync_all().unwrap();
    drop(b);
    let want = read_all(&s.img);
    let f = File::open(s.m.target("e0.1")).unwrap();
    drop_cache(&f);
    for &(off, len) in &regions {
        let got = pread(&f, off, len).unwrap_or_else(|e| panic!("read {}+{}: {}", off, len, e));
        assert_same(
            &format!("region {}+{} after backing-file write", off, len),
            &got,
            &want[off as usize..off as usize + len],
        );
    }
}

#[test]
fn unaligned_writes() {
    let s = setup(1500, IMG, Fill::Random(2), &[]);
    let mut model = read_all(&s.img);
    let mut rng = Rng::from_time();
    let f = open_rw(&s.m.target("e0.1"));
    let sz = IMG as usize;
    let cases: Vec<(usize, usize)> = vec![
        (513, 1000),
        (1, 3),
        (0, 1),
        (511, 2),
        (1023, 1026),
        (4095, 4098),
        (1024 - 1, 1),
        (17 * 512 - 1, 3),
        (8704 * 3 + 5, 8704),
        (12345, 70000),
        (1 << 20, 1),
        ((1 << 20) + 511, 513),
        (sz - 3, 3),
        (sz - 1000, 1000),
        (sz - 1, 1),
        (777_777, 129 * 1024 + 7),
    ];
    let check = |f: &File, model: &Vec<u8>, off: usize, len: usize| {
        let lo = off.saturating_sub(700);
        let hi = (off + len + 700).min(sz);
        let got = pread(f, lo as u64, hi - lo).unwrap_or_else(|e| panic!("read {}..{}: {}", lo, hi, e));
        assert_same(&format!("after write of {} bytes at {} (checked {}..{})", len, off, lo, hi), &got, &model[lo..hi]);
    };
    for &(off, len) in &cases {
        let data = rng.bytes(len);
        f.write_all_at(&data, off as u64).unwrap_or_else(|e| panic!("write {} bytes at {}: {}", len, off, e));
        model[off..off + len].copy_from_slice(&data);
        check(&f, &model, off, len);
    }
    // many small odd writes in one region
    for _ in 0..300 {
        let off = 3 * MIB as usize + rng.below(64 * 1024) as usize;
        let len = 1 + rng.below(1500) as usize;
        let data = rng.bytes(len);
        f.write_all_at(&data, off as u64).unwrap();
        model[off..off + len].copy_from_slice(&data);
    }
    check(&f, &model, 3 * MIB as usize, 66 * 1024);
    f.sync_all().expect("fsync");
    drop(f);
    assert_same("e0.1 through aoefs", &read_all(&s.m.target("e0.1")), &model);
    assert_same("backing file", &read_all(&s.img), &model);
}

#[test]
fn concurrent_interleaved_writes() {
    // With busy-polling on (given the fstab way), so that its receive loop
    // is also exercised under load, with the data checked.
    let s = setup(1500, IMG, Fill::Random(3), &["-o", "busy_poll_us=200"]);
    let mut model = read_all(&s.img);
    let dev = s.m.target("e0.1");
    const THREADS: usize = 8;
    const SLICE: usize = 100;
    const ROUNDS: usize = 256;
    for (round, base) in [(0u64, MIB as usize + 300), (1, 5 * MIB as usize + 17)] {
        // each thread writes its own 100-byte slices, interleaved so that
        // every sector is shared by several threads
        let mut pieces = Vec::new();
        for t in 0..THREADS {
            let mut rng = Rng::new(round * 1000 + t as u64 + 1);
            let mut v = Vec::new();
            for k in 0..ROUNDS {
                let off = base + (k * THREADS + t) * SLICE;
                v.push((off, rng.bytes(SLICE)));
            }
            pieces.push(v);
        }
        for v in &pieces {
            for (off, d) in v {
                model[*off..*off + SLICE].copy_from_slice(d);
            }
        }
        let shared = Arc::new(open_rw(&dev));
        let handles: Vec<_> = pieces
            .into_iter()
            .enumerate()
            .map(|(t, v)| {
                // even threads share one handle, odd threads open their own
                let f = if t % 2 == 0 { shared.clone() } else { Arc::new(open_rw(&dev)) };
                thread::spawn(move || {
                    for (off, d) in v {
                        f.write_all_at(&d, off as u64)
                            .unwrap_or_else(|e| panic!("thread {} write at {}: {}", t, off, e));
                    }
                    f.sync_all().expect("fsync");
                })
            })
            .collect();
        for h in handles {
            h.join().expect("writer thread panicked");
        }
        shared.sync_all().expect("fsync");
    }
    let len = THREADS * SLICE * ROUNDS;
    let f = File::open(&dev).unwrap();
    for base in [MIB as usize + 300, 5 * MIB as usize + 17] {
        let got = pread(&f, base as u64, len).unwrap();
        assert_same("interleaved region through aoefs", &got, &model[base..base + len]);
    }
    drop(f);
    assert_same("e0.1 through aoefs", &read_all(&dev), &model);
    assert_same("backing file", &read_all(&s.img), &model);
}

fn gen_tree(dir: &Path, rng: &mut Rng) -> u64 {
    let mut total = 0;
    for d in 0..4 {
        let sub = dir.join(format!("dir{}", d)).join(format!("nested{}", d));
        fs::create_dir_all(&sub).unwrap();
        for i in 0..8 {
            let len = match i {
                0 => 0,
                1 => 1,
                2 => 4096,
                3 => 4097,
                _ => rng.below(300 * 1024) as usize,
            };
            fs::write(sub.join(format!("f{}.bin", i)), rng.bytes(len)).unwrap();
            total += len as u64;
        }
    }
    let big = rng.bytes(2 * MIB as usize + 123);
    total += big.len() as u64;
    fs::write(dir.join("big.bin"), big).unwrap();
    total
}

#[test]
fn ext4_on_loop_device() {
    let s = setup(9000, 64 * MIB, Fill::Zero, &[]);
    let src = s.tb.dir.join("src");
    fs::create_dir_all(&src).unwrap();
    let docs = Path::new("/usr/share/doc/aoetools");
    if docs.is_dir() {
        run(Command::new("cp").arg("-a").arg(docs).arg(src.join("aoetools-doc")));
    }
    let total = gen_tree(&src.join("gen"), &mut Rng::from_time());
    assert!(total > 2 * MIB);

    let dev = s.m.losetup(&s.m.target("e0.1"));
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&dev));
    let ext = s.tb.dir.join("ext");
    s.m.mount_dev(&dev, &ext);
    run(Command::new("cp").arg("-a").arg(&src).arg(ext.join("tree")));
    run(Command::new("sync").arg("-f").arg(ext.join("tree")));
    s.m.umount_dev(&ext);
    // -f: check even though the fs is marked clean
    let out = run(Command::new("fsck.ext4").args(["-n", "-f"]).arg(&dev));
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    s.m.mount_dev(&dev, &ext);
    run(Command::new("diff").arg("-r").arg(&src).arg(ext.join("tree")));
    s.m.umount_dev(&ext);
    s.m.detach_loop(&dev);
    // and the file system is also intact in vblade's backing file
    let out = run(Command::new("fsck.ext4").args(["-n", "-f"]).arg(&s.img));
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
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

/// aoeping and aoecfg beside the mount send tags with bit 31 set, the space
/// the kernel driver leaves to userland tools. aoefs leaves their replies to
/// them, as the driver does: no `err` line, nothing counted as unexpected or
/// ignored for the target, only `mount_ignored_foreign_tag`.
#[test]
fn aoeping_and_aoecfg_beside_the_mount_leave_no_trace() {
    let s = setup(1500, 8 * MIB, Fill::Zero, &[]);
    let (m, tb) = (&s.m, &s.tb);
    // The tools drop replies shorter than 60 bytes: a config string of 30
    // bytes makes vblade's config replies long enough.
    fs::write(m.attr_path("e0.1", "config"), "aoefs-config-string-of-30-byte").unwrap();
    m.err_messages(100);
    let st0 = m.stats("e0.1");
    let tool = |argv: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &tb.ins]).args(argv);
        run_unchecked_timeout(&mut c, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    };
    let ifname = tb.init_if(0);
    // Query config, then IDENTIFY.
    let ping = tool(&["aoeping", "-i", "-s", "5", "0", "1", &ifname]);
    assert!(ping.status.success(), "aoeping: {}", String::from_utf8_lossy(&ping.stderr));
    // A set the target refuses (it holds another string: AoE error 4), and a read.
    tool(&["aoecfg", "-c", "set", "-s", "another", "-t", "1", "0", "1", &ifname]);
    let read = tool(&["aoecfg", "-t", "1", "0", "1", &ifname]);
    assert!(String::from_utf8_lossy(&read.stdout).contains("aoefs-config-string-of-30-byte"), "{read:?}");
    let st = m.stats("e0.1");
    let moved = |k: &str| st[k] - st0[k];
    assert!(moved("mount_ignored_foreign_tag") >= 4, "their replies were seen: {st:?}");
    assert_eq!(moved("unexpected"), 0, "{st:?}");
    assert_eq!(moved("ignored"), 0, "{st:?}");
    assert_eq!(moved("mount_ignored_unexpected_tag"), 0, "{st:?}");
    let errs = m.err_messages(100);
    assert!(errs.is_empty(), "err: {errs:?}");
    assert_eq!(m.read_status("e0.1", "state"), "up\n");
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

#[test]
fn unknown_iflist_interface_exits_2_without_mounting() {
    let tb = Testbed::new(1500);
    let mnt = tb.dir.join("mnt-bad");
    fs::create_dir_all(&mnt).unwrap();
    let out = run_unchecked_timeout(
        Command::new("nsenter")
            .arg(format!("--net={}", tb.ins_path()))
            .arg(AOEFS)
            .arg(&mnt)
            .args(["-f", "--iflist", "nosuch0", "--discover-wait-ms", "300"])
            .env_remove("RUST_LOG"),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{}", e));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!mountinfo_has(&mnt), "mounted despite unknown interface");
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {}", stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got: {:?}", lines);
    assert!(lines[0].contains("nosuch0"), "error should name the interface: {}", lines[0]);
}

#[test]
fn dead_target_gives_eio_within_deadsecs() {
    let deadsecs = 3u64;
    let s = setup(1500, IMG, Fill::Random(4), &["--deadsecs", "3"]);
    let f = Arc::new(File::open(s.m.target("e0.1")).unwrap());
    pread(&f, 0, 4096).expect("read while target is alive");
    s.tb.kill_vblade(s.vb);
    let t0 = Instant::now();
    let f2 = f.clone();
    // a never-read offset far from offset 0, so no cache can serve it
    let r =
        bounded("read from dead target", Duration::from_secs(deadsecs + 30), move || pread(&f2, 24 * MIB + 8192, 4096));
    let el = t0.elapsed();
    match r {
        Ok(_) => panic!("read from a killed target succeeded"),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "expected EIO, got {}", e),
    }
    assert!(el <= Duration::from_secs(deadsecs + 6), "EIO took {:?} (deadsecs {})", el, deadsecs);
    assert_eq!(
        s.m.wait_status("e0.1", "state", "down,closewait\n", Duration::from_secs(3)),
        "down,closewait\n",
        "state while still open"
    );
    // further I/O (at another never-read offset) fails at once
    let t1 = Instant::now();
    let e = pread(&f, 16 * MIB + 4096, 512).map(|_| ()).expect_err("read at a fresh offset after the device went down");
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert!(t1.elapsed() < Duration::from_secs(3), "EIO on a down device took {:?}", t1.elapsed());
    drop(f);
    // FUSE release is asynchronous: poll
    assert_eq!(s.m.wait_status("e0.1", "state", "down\n", Duration::from_secs(5)), "down\n", "state after close");
}

#[test]
fn bad_control_writes_fail_and_change_nothing() {
    let s = setup(1500, 8 * MIB, Fill::Zero, &[]);
    let m = &s.m;
    let before = m.read_ctl("interfaces");
    assert_eq!(before.trim(), s.tb.init_if(0));
    // collect every problem, report them all at the end
    let mut problems: Vec<String> = Vec::new();
    let mut expect_einval = |what: &str, file: &str, data: &[u8]| {
        let r = m.write_ctl(file, data);
        if errno_of(&r) != Some(libc::EINVAL) {
            problems.push(format!("{}: expected EINVAL, got {:?}", what, r));
        }
    };
    expect_einval("interfaces <- unknown name", "interfaces", b"nosuch0\n");
    expect_einval(
        "interfaces <- one good, one unknown",
        "interfaces",
        format!("{} nosuch0\n", s.tb.init_if(0)).as_bytes(),
    );
    expect_einval("revalidate <- garbage", "revalidate", b"garbage\n");
    expect_einval("revalidate <- unknown device e9.9", "revalidate", b"e9.9\n");
    expect_einval("flush <- nonsense", "flush", b"nonsense\n");
    let after = m.read_ctl("interfaces");
    if after != before {
        problems.push(format!("interfaces changed by rejected writes: {:?} -> {:?}", before, after));
    }

    let r = m.write_ctl("err", b"hello\n");
    eprintln!("write to err: {:?}", r);
    if r.is_ok() {
        problems.push("writing to the read-only err file succeeded".into());
    }

    let mut junk = Rng::new(99).bytes(MIB as usize);
    for b in junk.iter_mut() {
        if *b == b'\n' {
            *b = b'x';
        }
    }
    let r = m.write_ctl("interfaces", &junk);
    eprintln!("1 MiB junk to interfaces: {:?}", r);
    if r.is_ok() {
        problems.push("1 MiB of junk into interfaces was accepted".into());
    }
    let after = m.read_ctl("interfaces");
    if after != before {
        problems.push(format!("interfaces changed by junk: {:?}", &after[..after.len().min(80)]));
    }

    // the device is unaffected
    let st = m.read_status("e0.1", "state");
    if st != "up\n" {
        problems.push(format!("e0.1 state after bad control writes: {:?}", st));
    }
    let f = File::open(m.target("e0.1")).unwrap();
    if let Err(e) = pread(&f, 0, 4096) {
        problems.push(format!("I/O after bad control writes: {}", e));
    }
    assert!(problems.is_empty(), "control-file problems:\n  {}", problems.join("\n  "));
}

#[test]
fn valid_control_writes_are_accepted() {
    let s = setup(1500, 8 * MIB, Fill::Zero, &[]);
    let m = &s.m;
    m.write_ctl("discover", b"\n").expect("discover");
    m.write_ctl("discover", b"anything").expect("discover <- anything");
    m.write_ctl("revalidate", b"e0.1\n").expect("revalidate e0.1");
    assert_eq!(m.wait_status("e0.1", "state", "up\n", APPEAR), "up\n");
    m.write_ctl("flush", b"\n").expect("flush (empty)");
    m.write_ctl("flush", b"").expect("flush \"\"");
    // an up device is not forgotten by a plain flush
    assert!(m.target("e0.1").exists(), "flush removed an up device");
    let ifl = format!("{}\n", s.tb.init_if(0));
    m.write_ctl("interfaces", ifl.as_bytes()).expect("interfaces <- same list");
    assert_eq!(m.read_ctl("interfaces").trim(), s.tb.init_if(0));
}

/// Size of e0.1 as the mount shows it: (block/e0.1/size in sectors, the
/// image file's length in bytes).
fn sizes(m: &Mount) -> (u64, u64) {
    let sectors = m.read_status("e0.1", "size").trim_end().parse().unwrap();
    (sectors, fs::metadata(m.target("e0.1")).unwrap().len())
}

#[test]
fn revalidate_picks_up_a_new_size_and_nothing_else_does() {
    let s = setup(1500, 8 * MIB, Fill::Zero, &[]);
    let m = &s.m;
    assert_eq!(sizes(m), (8 * MIB / 512, 8 * MIB));
    for size in [16 * MIB, 4 * MIB] {
        let before = sizes(m);
        // vblade comes back on a file of another size (it announces itself).
        s.tb.kill_vblade(s.vb);
        File::options().write(true).open(&s.img).unwrap().set_len(size).unwrap();
        s.tb.restart_vblade(s.vb);
        // The target answers; the size stays what IDENTIFY said (the file
        // attributes live 1 s in the kernel: wait longer than that).
        pread(&File::open(m.target("e0.1")).unwrap(), 0, 4096).expect("read after the restart");
        thread::sleep(Duration::from_millis(1500));
        assert_eq!(sizes(m), before, "size changed without revalidate (file now {} bytes)", size);
        m.write_ctl("revalidate", b"e0.1\n").expect("revalidate e0.1");
        let want = (size / 512, size);
        let mut last = before;
        assert!(
            poll_until(Duration::from_secs(5), || {
                last = sizes(m);
                last == want
            }),
            "size after revalidate {:?}, want {:?}",
            last,
            want
        );
    }
    assert_eq!(m.read_status("e0.1", "state"), "up\n");
}

#[test]
fn revalidate_makes_a_read_only_target_that_became_writable_writable() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 8 * MIB, Fill::Zero);
    let ro = tb.start_vblade_with(0, 0, 1, &img, &["-r"]);
    let m = tb.mount_aoefs(&[]);
    let t = m.expect_target("e0.1", APPEAR);
    let e = open_rw(&t).write_at(&[1u8; 512], 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "write to vblade -r: {}", e);
    // The target becomes writable: aoefs does not know until revalidate.
    tb.kill_vblade(ro);
    tb.start_vblade(0, 1, &img, None);
    pread(&File::open(&t).unwrap(), 0, 4096).expect("read after the restart");
    let e = OpenOptions::new().write(true).open(&t).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "open for writing before revalidate: {}", e);
    m.write_ctl("revalidate", b"e0.1\n").expect("revalidate e0.1");
    let f = OpenOptions::new().write(true).open(&t).expect("open for writing after revalidate");
    f.write_all_at(b"writable again", 4096).expect("write after revalidate");
    assert_eq!(&read_all(&img)[4096..4096 + 14], b"writable again");
}

#[test]
fn plain_flush_forgets_a_down_closed_target_and_keeps_an_up_one() {
    let tb = Testbed::new(1500);
    let img1 = tb.make_image("disk1.img", 8 * MIB, Fill::Zero);
    let img2 = tb.make_image("disk2.img", 8 * MIB, Fill::Zero);
    let vb1 = tb.start_vblade(0, 1, &img1, None);
    tb.start_vblade(0, 2, &img2, None);
    let m = tb.mount_aoefs(&["--deadsecs", "2"]);
    m.expect_target("e0.1", APPEAR);
    m.expect_target("e0.2", APPEAR);
    // e0.1 dies: a read finds it dead after deadsecs; it stays down (its
    // vblade stays stopped, so the probes of a down target go unanswered).
    tb.kill_vblade(vb1);
    let f = File::open(m.target("e0.1")).unwrap();
    let r = bounded("read from a dead target", Duration::from_secs(30), move || pread(&f, 4 * MIB, 4096).map(|_| ()));
    assert_eq!(r.map_err(|e| e.raw_os_error()), Err(Some(libc::EIO)), "read from a dead target");
    assert_eq!(m.wait_status("e0.1", "state", "down\n", Duration::from_secs(5)), "down\n", "closed");
    assert_eq!(m.read_status("e0.2", "state"), "up\n");
    assert_eq!(m.targets(), ["e0.1", "e0.2"]);
    // `echo > flush`: forgets down, unused targets only.
    m.write_ctl("flush", b"\n").expect("flush");
    assert_eq!(m.targets(), ["e0.2"], "after flush");
    let block = m.path.join("block");
    let mut names: Vec<String> = bounded("readdir block", Duration::from_secs(10), move || {
        fs::read_dir(block).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    });
    names.sort();
    assert_eq!(names, ["e0.2"], "block/ after flush");
    assert_eq!(m.read_status("e0.2", "state"), "up\n");
}

#[test]
fn fsync_sends_one_flush_cache_after_the_writes_before_it() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 8 * MIB, Fill::Zero);
    let pcap = tb.dir.join("fsync.pcapng");
    let cap = tb.start_capture(0, &pcap, 120);
    tb.start_vblade(0, 1, &img, None);
    let m = tb.mount_aoefs(&[]);
    let f = open_rw(&m.expect_target("e0.1", APPEAR));
    let mut rng = Rng::from_time();
    // Two batches of writes (sectors 1..197 and 585..684), each followed by an fsync.
    let (a, b) = (rng.bytes(100_000), rng.bytes(50_000));
    f.write_all_at(&a, 777).unwrap();
    f.sync_all().expect("sync_all");
    f.write_all_at(&b, 300_000).unwrap();
    f.sync_data().expect("sync_data");
    drop(f);
    let back = read_all(&img);
    assert_same("backing file, first batch", &back[777..777 + a.len()], &a);
    assert_same("backing file, second batch", &back[300_000..300_000 + b.len()], &b);
    thread::sleep(Duration::from_millis(500));
    tb.stop_helper(cap, libc::SIGINT, Duration::from_secs(10));
    // The ATA commands aoefs sent, in order: (command, LBA).
    let cmds: Vec<(String, u64)> =
        tshark_fields(&pcap, "aoe.cmd == 0 && aoe.response == 0", &["aoe.ata.cmd", "aoe.lba"])
            .into_iter()
            .map(|v| {
                let lba = match v[1].strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => v[1].parse(),
                };
                (v[0].clone(), lba.unwrap_or_else(|_| panic!("LBA {:?} of {:?}", v[1], v)))
            })
            .collect();
    let pos = |pred: &dyn Fn(&(String, u64)) -> bool| -> Vec<usize> {
        cmds.iter().enumerate().filter(|(_, c)| pred(c)).map(|(i, _)| i).collect()
    };
    let flushes = pos(&|c| c.0 == "0xe7" || c.0 == "0xea");
    let writes_a = pos(&|c| c.0 == "0x34" && c.1 < 200);
    let writes_b = pos(&|c| c.0 == "0x34" && (500..700).contains(&c.1));
    let summary = format!(
        "{} ATA commands; flushes at {:?}; writes of batch 1 at {:?}..{:?}, of batch 2 at {:?}..{:?}",
        cmds.len(),
        flushes,
        writes_a.first(),
        writes_a.last(),
        writes_b.first(),
        writes_b.last()
    );
    assert!(!writes_a.is_empty() && !writes_b.is_empty(), "writes not captured: {}", summary);
    // vblade's IDENTIFY offers FLUSH CACHE (0xE7), not FLUSH CACHE EXT.
    assert!(pos(&|c| c.0 == "0xea").is_empty(), "FLUSH CACHE EXT sent: {}", summary);
    assert_eq!(flushes.len(), 2, "one FLUSH CACHE per fsync: {}", summary);
    assert!(flushes[0] > *writes_a.last().unwrap(), "a flush before the first batch's writes: {}", summary);
    assert!(flushes[0] < writes_b[0] && flushes[1] > *writes_b.last().unwrap(), "{}", summary);
}

#[test]
fn sigterm_unmounts_and_exits_0() {
    let mut s = setup(1500, 8 * MIB, Fill::Zero, &[]);
    let st = s.m.terminate(Duration::from_secs(10)).expect("aoefs did not exit within 10 s of SIGTERM");
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {:?}", st);
    assert!(!mountinfo_has(&s.m.path), "still mounted after SIGTERM");
}

#[test]
fn wire_traffic_is_well_formed() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", IMG, Fill::Random(5));
    let pcap = tb.dir.join("aoe.pcapng");
    let cap = tb.start_capture(0, &pcap, 120);
    let _vb = tb.start_vblade(0, 1, &img, None);
    let m = tb.mount_aoefs(&[]);
    let dev = m.expect_target("e0.1", APPEAR);
    let mut rng = Rng::from_time();
    let data = rng.bytes(MIB as usize + 1234);
    let f = open_rw(&dev);
    f.write_all_at(&data, 4096 + 3).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let f = File::open(&dev).unwrap();
    drop_cache(&f);
    assert_same("read back", &pread(&f, 4096 + 3, data.len()).unwrap(), &data);
    pread(&f, 20 * MIB, 100_000).unwrap();
    drop(f);
    m.discover();
    thread::sleep(Duration::from_millis(500));
    tb.stop_helper(cap, libc::SIGINT, Duration::from_secs(10));
    let n = tshark_count(&pcap, "aoe");
    assert!(n > 0, "no AoE frames captured");
    let bad = "_ws.malformed || _ws.expert.severity >= warning";
    let nbad = tshark_count(&pcap, bad);
    assert_eq!(nbad, 0, "{} of {} frames malformed or with expert warnings:\n{}", nbad, n, tshark_list(&pcap, bad, 20));
    eprintln!("{} AoE frames captured, none malformed", n);
}

/// The harness itself: a test that panics with aoefs mounted, a loop device
/// attached and ext4 mounted on it must leave nothing behind.
#[test]
fn teardown_after_panic_leaves_nothing() {
    struct Seen {
        ins: String,
        tns: String,
        mnt: PathBuf,
        ext: PathBuf,
        loopdev: String,
        aoefs: u32,
        vblade: u32,
        dir: PathBuf,
    }
    check_prereqs();
    let mut seen: Option<Seen> = None;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let s = setup(1500, 16 * MIB, Fill::Zero, &[]);
        let dev = s.m.losetup(&s.m.target("e0.1"));
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&dev));
        let ext = s.tb.dir.join("ext");
        s.m.mount_dev(&dev, &ext);
        fs::write(ext.join("hello"), b"hello").unwrap();
        let _open = File::open(ext.join("hello")).unwrap();
        let _open2 = File::open(s.m.target("e0.1")).unwrap();
        seen = Some(Seen {
            ins: s.tb.ins.clone(),
            tns: s.tb.tns.clone(),
            mnt: s.m.path.clone(),
            ext: ext.clone(),
            loopdev: dev.clone(),
            aoefs: s.m.pid(),
            vblade: s.tb.vblade_pid(s.vb).unwrap(),
            dir: s.tb.dir.clone(),
        });
        panic!("deliberate panic to test teardown");
    }));
    assert!(r.is_err());
    let s = seen.expect("setup did not complete");
    let ns = netns_list();
    assert!(!ns.contains(&s.ins) && !ns.contains(&s.tns), "namespaces left: {:?}", ns);
    assert!(!mountinfo_has(&s.mnt), "FUSE mount left");
    assert!(!mountinfo_has(&s.ext), "ext4 mount left");
    assert!(!s.mnt.exists(), "mount point dir left");
    assert!(!pid_alive(s.aoefs), "aoefs left running");
    assert!(!pid_alive(s.vblade), "vblade left running");
    let l = sh(&["losetup", "-a"]);
    assert!(
        !l.contains(&format!("{}:", s.loopdev)) || !l.contains(&s.mnt.to_string_lossy().to_string()),
        "loop device left: {}",
        l
    );
    assert!(!s.dir.exists(), "temp dir left");
}
