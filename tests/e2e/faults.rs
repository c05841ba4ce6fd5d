//! Fault tests of aoefs against real vblade processes in network namespaces:
//! a lossy link (frames forwarded through `aoe-faultfwd` in a middle
//! namespace), a disk that hangs, MTUs that change, multipath with a path
//! dying and coming back, an interface that goes away and comes back, dead
//! targets and target restarts within and beyond `--deadsecs`, ATA and AoE
//! error replies, crash safety and hostile frames (`aoe-inject`).
//!
//! Run: `cargo test --release --features e2e --test e2e -- --test-threads=2 faults::`
//! (as root; needs vblade, fio, sha256sum). `AOEFS_TEST_SHOW_LOG=1`
//! prints the aoefs logs.

use crate::common::*;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn sha256(p: &Path) -> String {
    let out = run_timeout(Command::new("sha256sum").arg(p), Duration::from_secs(120));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// Per-path counter `name` of the path on interface `ifname`.
fn path_counter(st: &HashMap<String, u64>, ifname: &str, name: &str) -> Option<u64> {
    st.iter()
        .find(|(k, _)| {
            let w: Vec<&str> = k.split_whitespace().collect();
            w.len() == 4 && w[0] == "path" && w[1] == ifname && w[3] == name
        })
        .map(|(_, v)| *v)
}

/// `fio --verify=crc32c` on `dev`: random O_DIRECT writes of 4-64 KiB over
/// `size` bytes, then a verify pass; fails the test on any fio error or verify
/// error. `how` says in the log what the frames went through.
fn fio_verify(dev: &Path, size: u64, engine: &[&str], seed: u64, how: &str) {
    let t0 = Instant::now();
    let out = run_unchecked_timeout(
        Command::new("fio")
            .arg("--name=v")
            .arg(format!("--filename={}", dev.display()))
            .args(["--rw=randwrite", "--bsrange=4k-64k", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1"])
            .arg(format!("--size={size}"))
            .arg("--direct=1")
            .args(engine)
            .arg(format!("--randseed={seed}")),
        Duration::from_secs(150),
    )
    .unwrap_or_else(|e| panic!("{}", e));
    let fio_out = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("fio {how} took {:?}", t0.elapsed());
    assert!(out.status.success(), "fio failed ({}):\n{}", out.status, fio_out);
    assert!(!fio_out.contains("verify: bad"), "fio reported verify errors:\n{}", fio_out);
}

// ---------------------------------------------------------------------------
// lossy link: 5% loss, 1% duplication, 2% reordering, 0.1% corruption
// ---------------------------------------------------------------------------

#[test]
fn fio_verify_over_lossy_link() {
    let tb = Testbed::new(1500);
    let k = tb.add_forwarded_pair(1500);
    let size = 32 * MIB;
    let img = tb.make_image("disk.img", size, Fill::Zero);
    let fwd = tb.start_forwarder(k, "drop=0.05,dup=0.01,reorder=0.02,corrupt=0.001", seeded("aoe-faultfwd", 4242));
    let _vb = tb.start_vblade_on(k, 0, 1, &img, None);
    let m = tb.mount_aoefs_iflist(&tb.init_if(k), &["--cache-mb", "0"]);
    let dev = m.expect_target(T, APPEAR);
    assert_eq!(fs::metadata(&dev).unwrap().len(), size);

    fio_verify(&dev, size, &["--ioengine=psync"], seeded("fio", 1234), "over the lossy link");

    // the image read through aoefs (again over the lossy link) == backing file
    let via_aoefs = sha256(&dev);
    let backing = sha256(&img);
    assert_eq!(via_aoefs, backing, "sha256 of e0.1 through aoefs vs backing file");

    let st = m.stats(T);
    let fc = tb.stop_forwarder(&fwd);
    eprintln!("aoefs stats: {:?}\nforwarder: {:?}", st, fc);
    for c in ["dropped", "duplicated", "reordered", "corrupted"] {
        assert!(fc.get(c).copied().unwrap_or(0) > 0, "forwarder {} nothing: {:?}", c, fc);
    }
    assert!(st["retransmits"] > 0, "no retransmits under 5% loss: {:?}", st);
    assert_eq!(st["errors"], 0, "I/O errors under loss: {:?}", st);
    assert_eq!(m.read_status(T, "state"), "up\n");
}

/// Frames held 20-200 ms on the way (both ways): replies come late, some
/// after the command was resent, and vblade executes some requests after
/// later ones. `fio --verify` must see exactly what it wrote.
#[test]
fn fio_verify_through_held_frames() {
    let tb = Testbed::new(1500);
    let k = tb.add_forwarded_pair(1500);
    let size = 16 * MIB;
    let img = tb.make_image("disk.img", size, Fill::Zero);
    let fwd = tb.start_forwarder(k, "hold=0.05,hold_ms=20-200", seeded("aoe-faultfwd", 4343));
    let _vb = tb.start_vblade_on(k, 0, 1, &img, None);
    let m = tb.mount_aoefs_iflist(&tb.init_if(k), &["--cache-mb", "0"]);
    let dev = m.expect_target(T, APPEAR);

    fio_verify(&dev, size, &["--ioengine=libaio", "--iodepth=8"], seeded("fio", 4321), "through held frames");
    assert_eq!(sha256(&dev), sha256(&img), "sha256 of e0.1 through aoefs vs backing file");

    let st = m.stats(T);
    let fc = tb.stop_forwarder(&fwd);
    eprintln!("aoefs stats: {:?}\nforwarder: {:?}", st, fc);
    assert!(fc.get("held").copied().unwrap_or(0) > 100, "forwarder held too few frames: {:?}", fc);
    eprintln!("retransmits {} late {} unexpected {}", st["retransmits"], st["late"], st["unexpected"]);
    assert!(st["late"] > 0, "no late replies: the hazard was not exercised: {:?}", st);
    assert_eq!(st["errors"], 0, "I/O errors: {:?}", st);
    assert_eq!(m.read_status(T, "state"), "up\n");
}

// ---------------------------------------------------------------------------
// the network answers, the I/O does not: a hung disk, a jumbo black hole, an
// MTU lowered under the mount
// ---------------------------------------------------------------------------

/// Every `err` line queued now (non-blocking: the file answers EINTR
/// within half a second when it has none).
fn err_lines(m: &Mount) -> Vec<String> {
    m.err_messages(1000)
}

/// Writes `data` at offset 0 of `dev` with `dd oflag=direct` in 1 MiB
/// blocks; returns how long it took.
fn dd_direct(tb: &Testbed, dev: &Path, data: &[u8], limit: Duration) -> Duration {
    let src = tb.dir.join("dd-src.bin");
    fs::write(&src, data).unwrap();
    let t0 = Instant::now();
    let out = run_unchecked_timeout(
        Command::new("dd").arg(format!("if={}", src.display())).arg(format!("of={}", dev.display())).args([
            "bs=1M",
            "oflag=direct",
            "conv=notrunc,fsync",
        ]),
        limit,
    )
    .unwrap_or_else(|e| panic!("dd: {e}"));
    assert!(out.status.success(), "dd failed: {}", String::from_utf8_lossy(&out.stderr));
    t0.elapsed()
}

/// The target answers query config and IDENTIFY, but every read and write
/// is lost on the way (`aoe-faultfwd` with `drop_rw=1`): a shelf whose disk
/// hangs. A read fails with EIO at deadsecs, the target goes down, `err`
/// says so, and few frames were sent for it.
#[test]
fn a_disk_that_hangs_while_its_network_answers_gives_eio_at_deadsecs() {
    let tb = Testbed::new(1500);
    let k = tb.add_forwarded_pair(1500);
    let img = tb.make_image("disk.img", 8 * MIB, Fill::Random(41));
    let fwd = tb.start_forwarder(k, "drop_rw=1", 1);
    let _vb = tb.start_vblade_on(k, 0, 1, &img, None);
    let m = tb.mount_aoefs_iflist(&tb.init_if(k), &["--deadsecs", "10", "--cache-mb", "0", "--readahead-kb", "0"]);
    let dev = m.expect_target(T, APPEAR);
    err_lines(&m);
    let sent = m.stats(T)["frames_sent"];
    let f = Arc::new(File::open(&dev).unwrap());
    let t0 = Instant::now();
    let f2 = f.clone();
    let r = bounded("a read from a hung disk", Duration::from_secs(40), move || pread(&f2, 0, 4096));
    let el = t0.elapsed();
    eprintln!("hung disk: EIO after {el:?}");
    assert_eq!(errno_of(&r), Some(libc::EIO), "expected EIO, got {:?}", r.map(|v| v.len()));
    assert!(el >= Duration::from_millis(9500) && el <= Duration::from_secs(13), "EIO after {el:?}, deadsecs 10");
    assert_eq!(m.wait_status(T, "state", "down,closewait\n", Duration::from_secs(3)), "down,closewait\n");
    let lines = err_lines(&m);
    assert!(lines.iter().any(|l| l == "e0.1: no response for 10 s, device marked down"), "{lines:?}");
    let st = m.stats(T);
    let fc = tb.stop_forwarder(&fwd);
    let ata = st["frames_sent"] - sent;
    let from_initiator = fc[&format!("aoefa{k}->aoefb{k} received")];
    eprintln!("hung disk: {ata} ATA frames; {from_initiator} frames from the initiator in all (mount included)");
    assert!(ata <= 60, "{ata} ATA frames for one 4 KiB read");
    assert!(from_initiator <= 80, "{from_initiator} frames from the initiator");
    assert!(st["timeouts"] > 0, "{st:?}");
}

/// Initiator and target have MTU 9000; the switch between them forwards
/// no frame over 1514 bytes. An 8 MiB O_DIRECT write falls back to
/// 1024-byte frames and completes; the bytes read back and on the target's
/// file are exact; `err`, `lost_jumbo` and `payload` say what happened.
#[test]
fn a_switch_that_drops_jumbo_frames_makes_aoefs_fall_back_and_writes_land_exact() {
    let tb = Testbed::jumbo_black_hole();
    let img = tb.make_image("disk.img", 64 * MIB, Fill::Zero);
    let _vb = tb.start_vblade(0, 1, &img, None);
    let m = tb.mount_aoefs(&["--deadsecs", "60", "--cache-mb", "0"]);
    let dev = m.expect_target(T, APPEAR);
    assert_eq!(m.read_status(T, "payload"), "8704\n");
    err_lines(&m);
    let data = Rng::new(seeded("black hole data", 61)).bytes(8 * MIB as usize);
    let took = dd_direct(&tb, &dev, &data, Duration::from_secs(120));
    eprintln!("jumbo black hole: 8 MiB O_DIRECT write took {took:?}");
    assert_same("e0.1 read back", &read_all(&dev)[..data.len()], &data);
    assert_same("the target's file", &read_all(&img)[..data.len()], &data);
    assert_eq!(m.read_status(T, "payload"), "1024\n");
    let st = m.stats(T);
    assert!(st["lost_jumbo"] > 0, "{st:?}");
    assert_eq!(st["errors"], 0, "{st:?}");
    let lines: Vec<String> = err_lines(&m).into_iter().filter(|l| l.contains("falling back")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("e0.1: 8704-byte frames lost on aoei0 "), "{lines:?}");
    assert!(lines[0].ends_with("falling back to 1024"), "{lines:?}");
    assert_eq!(m.read_status(T, "state"), "up\n");
}

/// The initiator's interface goes from MTU 9000 to 1500 while the target
/// is mounted and idle; the next 8 MiB O_DIRECT write completes, exact,
/// in small frames.
#[test]
fn an_mtu_lowered_under_the_mount_is_followed_and_writes_land_exact() {
    let tb = Testbed::new(9000);
    let img = tb.make_image("disk.img", 64 * MIB, Fill::Zero);
    let _vb = tb.start_vblade(0, 1, &img, None);
    let m = tb.mount_aoefs(&["--deadsecs", "60", "--cache-mb", "0"]);
    let dev = m.expect_target(T, APPEAR);
    assert_eq!(m.read_status(T, "payload"), "8704\n");
    err_lines(&m);
    sh(&["ip", "-n", &tb.ins, "link", "set", &tb.init_if(0), "mtu", "1500"]);
    let data = Rng::new(seeded("lowered mtu data", 62)).bytes(8 * MIB as usize);
    let took = dd_direct(&tb, &dev, &data, Duration::from_secs(120));
    eprintln!("MTU lowered: 8 MiB O_DIRECT write took {took:?}");
    assert_same("e0.1 read back", &read_all(&dev)[..data.len()], &data);
    assert_same("the target's file", &read_all(&img)[..data.len()], &data);
    assert_eq!(m.read_status(T, "payload"), "1024\n");
    let lines: Vec<String> = err_lines(&m).into_iter().filter(|l| l.contains("MTU")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("e0.1: MTU of aoei0 is now 1500"), "{lines:?}");
    assert_eq!(m.stats(T)["errors"], 0);
}

/// Both hosts go from MTU 1500 to 9000 under the mount, and vblade is
/// restarted (it sizes its buffers from the MTU at start): aoefs reopens the
/// interface (its capture must take the longer frames), finds the target
/// again, and reads in 8704-byte frames, exact.
#[test]
fn an_mtu_raised_under_the_mount_is_followed_and_reads_land_exact() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 16 * MIB, Fill::Random(63));
    let vb = tb.start_vblade(0, 1, &img, None);
    let m = tb.mount_aoefs(&["--cache-mb", "0"]);
    let dev = m.expect_target(T, APPEAR);
    assert_eq!(m.read_status(T, "payload"), "1024\n");
    err_lines(&m);
    sh(&["ip", "-n", &tb.ins, "link", "set", &tb.init_if(0), "mtu", "9000"]);
    sh(&["ip", "-n", &tb.tns, "link", "set", &tb.target_if(0), "mtu", "9000"]);
    tb.kill_vblade(vb);
    tb.restart_vblade(vb);
    let t0 = Instant::now();
    assert_eq!(m.wait_status(T, "payload", "8704\n", Duration::from_secs(10)), "8704\n");
    eprintln!("MTU raised: payload 8704 after {:?}", t0.elapsed());
    assert_same("e0.1 in jumbo frames", &read_all(&dev), &read_all(&img));
    let lines = err_lines(&m);
    assert!(lines.iter().any(|l| l == "aoei0: MTU grew past 1500; reopened to use it"), "{lines:?}");
    assert_eq!(m.stats(T)["errors"], 0);
}

// ---------------------------------------------------------------------------
// multipath: two vblades (same file, same shelf.slot) on two veth pairs
// ---------------------------------------------------------------------------

/// Two vblades exporting one image as e0.1, one on each of two veth pairs,
/// and aoefs mounted on both interfaces with both paths known. (Fields drop
/// in order: the mount before the testbed.)
struct TwoPaths {
    m: Mount,
    dev: PathBuf,
    if0: String,
    if1: String,
    img: PathBuf,
    vb1: VbladeHandle,
    tb: Testbed,
}

fn two_paths(size: u64, fill: Fill, aoefs_args: &[&str]) -> TwoPaths {
    let tb = Testbed::new(1500);
    tb.add_veth(1500);
    let img = tb.make_image("disk.img", size, fill);
    tb.start_vblade_with(0, 0, 1, &img, &[]);
    let vb1 = tb.start_vblade_with(1, 0, 1, &img, &[]);
    let (if0, if1) = (tb.init_if(0), tb.init_if(1));
    let m = tb.mount_aoefs_iflist(&format!("{} {}", if0, if1), aoefs_args);
    let dev = m.expect_target(T, APPEAR);
    let ok = poll_until(Duration::from_secs(5), || {
        let st = m.stats(T);
        path_counter(&st, &if0, "frames_sent").is_some() && path_counter(&st, &if1, "frames_sent").is_some()
    });
    assert!(ok, "two paths expected: {}", m.read_status(T, "stats"));
    TwoPaths { m, dev, if0, if1, img, vb1, tb }
}

/// Taking an interface away (a write to `interfaces`) while reads run on
/// it: the write returns (closing a link waits for its capture thread,
/// which must not be left waiting for the link table the write holds), the
/// reads go on over the other path, and every byte read is right.
#[test]
fn interface_removed_during_io_returns_and_io_goes_on() {
    let size = 32 * MIB;
    let p = two_paths(size, Fill::Random(11), &["--cache-mb", "0", "--readahead-kb", "0"]);
    let (m, dev, if0, if1, img) = (&p.m, p.dev.clone(), p.if0.clone(), p.if1.clone(), p.img.clone());
    let want = fs::read(&img).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4u64)
        .map(|k| {
            let (dev, stop, want) = (dev.clone(), stop.clone(), want.clone());
            thread::spawn(move || -> Result<u64, String> {
                // (aoefs opens image files with direct I/O: no page cache.)
                let f = File::open(&dev).map_err(|e| e.to_string())?;
                let mut rng = Rng::new(seeded("reader", 0xface + k));
                let mut buf = vec![0u8; 256 * 1024];
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let len = 4096 * (1 + rng.below(64) as usize);
                    let off = 4096 * rng.below((size - len as u64) / 4096);
                    let b = &mut buf[..len];
                    f.read_exact_at(b, off).map_err(|e| format!("read {len} at {off}: {e}"))?;
                    if b[..] != want[off as usize..off as usize + len] {
                        return Err(format!("wrong data: {len} bytes at {off}"));
                    }
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(700));
    // The write, bounded: a hang here is the bug this test is for.
    let (tx, rx) = std::sync::mpsc::channel();
    let ctl = m.path.join("interfaces");
    let line = format!("{}\n", if0);
    thread::spawn(move || {
        let r = fs::write(&ctl, line.as_bytes());
        let _ = tx.send(r);
    });
    let t0 = Instant::now();
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(r) => r.expect("write to interfaces"),
        Err(_) => panic!("write to interfaces did not return in 10 s (capture thread and link table deadlocked?)"),
    }
    eprintln!("interfaces written in {:?}", t0.elapsed());
    thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        let n = r.join().unwrap().unwrap_or_else(|e| panic!("reader: {e}"));
        assert!(n > 10, "reader made only {n} reads");
    }
    assert_eq!(m.read_ctl("interfaces").trim(), if0);
    let st = m.stats(T);
    assert!(
        path_counter(&st, &if1, "frames_sent").is_none(),
        "path on {if1} still there: {}",
        m.read_status(T, "stats")
    );
    assert_eq!(st["errors"], 0, "{}", m.read_status(T, "stats"));
    assert_eq!(m.read_status(T, "state"), "up\n");
}

#[test]
fn multipath_survives_a_dying_path_and_reuses_it() {
    let size = 80 * MIB;
    let p = two_paths(size, Fill::Zero, &["--cache-mb", "0"]);
    let (tb, m, vb1) = (&p.tb, &p.m, p.vb1);
    let (dev, if0, if1, img) = (p.dev.clone(), p.if0.clone(), p.if1.clone(), p.img.clone());
    let netif = m.read_status(T, "netif");
    assert!(netif.contains(&if0) && netif.contains(&if1), "netif {:?}", netif);

    // 64 MiB of data, written with dd oflag=direct in the background
    let total = 64 * MIB;
    let data = Rng::new(0x5eed).bytes(total as usize);
    let src = tb.dir.join("data.bin");
    fs::write(&src, &data).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let dd = {
        let (src, dev, done) = (src.clone(), dev.clone(), done.clone());
        thread::spawn(move || {
            let r = run_unchecked_timeout(
                Command::new("dd").arg(format!("if={}", src.display())).arg(format!("of={}", dev.display())).args([
                    "bs=1M",
                    "oflag=direct",
                    "conv=notrunc",
                ]),
                Duration::from_secs(120),
            );
            done.store(true, Ordering::SeqCst);
            r
        })
    };
    // kill the second vblade once a quarter has been written
    let mut killed_at = None;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) && !done.load(Ordering::SeqCst) {
        let st = m.stats(T);
        if st.get("bytes_written").copied().unwrap_or(0) >= total / 4 {
            let s0 = path_counter(&st, &if0, "frames_sent").unwrap();
            let s1 = path_counter(&st, &if1, "frames_sent").unwrap();
            assert!(s0 > 100 && s1 > 100, "frames not spread over both paths: {} / {}", s0, s1);
            // roughly even round-robin
            assert!(s0.min(s1) * 3 > s0.max(s1), "uneven spread: {} / {}", s0, s1);
            tb.kill_vblade(vb1);
            killed_at = Some(st["bytes_written"]);
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let killed_at = killed_at.expect("dd finished (or stalled) before a quarter was written");
    let out = dd.join().unwrap().unwrap_or_else(|e| panic!("{}", e));
    assert!(out.status.success(), "dd failed after a path died: {}", String::from_utf8_lossy(&out.stderr));
    assert!(killed_at < total, "vblade was killed only after the write ended");
    let st = m.stats(T);
    eprintln!("after the write: {}", m.read_status(T, "stats"));
    assert_eq!(path_counter(&st, &if1, "failed"), Some(1), "dead path not marked failed");
    assert_eq!(path_counter(&st, &if0, "failed"), Some(0), "live path marked failed");
    assert_eq!(st["errors"], 0);

    // nothing lost: through aoefs and in the backing file
    let f = File::open(&dev).unwrap();
    let got = pread(&f, 0, total as usize).unwrap();
    assert_same("e0.1 after the path died", &got, &data);
    let backing = pread(&File::open(&img).unwrap(), 0, total as usize).unwrap();
    assert_same("backing file after the path died", &backing, &data);

    // restart the dead path's vblade: the path is re-probed (about once a
    // second while I/O runs) and used again
    tb.restart_vblade(vb1);
    let before = path_counter(&m.stats(T), &if1, "frames_sent").unwrap();
    let mut last = String::new();
    let back = poll_until(Duration::from_secs(15), || {
        pread(&f, (total / 2) + (Rng::from_time().below(8) * MIB), MIB as usize).expect("read after restart");
        let st = m.stats(T);
        last = format!("{:?}", st);
        path_counter(&st, &if1, "failed") == Some(0) && path_counter(&st, &if1, "frames_sent").unwrap() > before + 200
    });
    assert!(back, "restarted path not used again (frames_sent before {}): {}", before, last);
    assert_eq!(m.read_status(T, "state"), "up\n");
}

// ---------------------------------------------------------------------------
// an interface that goes away and comes back
// ---------------------------------------------------------------------------

#[test]
fn an_interface_that_vanishes_and_returns_is_reopened() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 8 * MIB, Fill::Random(11));
    let vb = tb.start_vblade(0, 1, &img, None);
    let m = tb.mount_aoefs(&["--deadsecs", "30"]);
    let t = m.expect_target("e0.1", APPEAR);
    let want = read_all(&img);
    assert_same("before", &read_all(&t)[..65536], &want[..65536]);
    // The veth pair goes away (both ends), and with it vblade's interface.
    tb.kill_vblade(vb);
    let (i, o) = (tb.init_if(0), tb.target_if(0));
    run(Command::new("ip").args(["-n", &tb.ins, "link", "del", &i]));
    assert!(
        poll_until(Duration::from_secs(5), || m.err_messages(50).iter().any(|l| l.contains("interface gone"))),
        "err reports the vanished interface"
    );
    // It comes back under the same name, and so does the target.
    run(Command::new("ip")
        .args(["link", "add", &i, "netns", &tb.ins, "type", "veth", "peer", "name", &o, "netns", &tb.tns]));
    run(Command::new("ip").args(["-n", &tb.ins, "link", "set", &i, "up"]));
    run(Command::new("ip").args(["-n", &tb.tns, "link", "set", &o, "up"]));
    tb.start_vblade(0, 1, &img, None);
    assert!(
        poll_until(Duration::from_secs(10), || {
            let s = m.read_status("e0.1", "stats");
            s.lines().any(|l| l.starts_with(&format!("path {i} ")))
        }),
        "path back through the reopened interface"
    );
    let f = OpenOptions::new().read(true).open(&t).unwrap();
    let mut buf = vec![0u8; 65536];
    f.read_exact_at(&mut buf, 1 << 20).unwrap();
    assert_same("after", &buf, &want[1 << 20..(1 << 20) + 65536]);
    assert_eq!(m.read_status("e0.1", "state"), "up\n");
}

// ---------------------------------------------------------------------------
// dead targets and target restarts
// ---------------------------------------------------------------------------

#[test]
fn dead_target_gives_eio_within_deadsecs() {
    let deadsecs = 3u64;
    let s = setup(1500, 32 * MIB, Fill::Random(4), &["--deadsecs", "3"]);
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
fn target_restart_within_deadsecs_stalls_io_without_error() {
    let tb = Testbed::new(1500);
    let size = 16 * MIB;
    let img = tb.make_image("disk.img", size, Fill::Random(21));
    let vb = tb.start_vblade_with(0, 0, 1, &img, &[]);
    let m = tb.mount_aoefs(&["--deadsecs", "10", "--cache-mb", "0"]);
    let dev = m.expect_target(T, APPEAR);
    let mut model = read_all(&img);
    let f = Arc::new(open_rw(&dev));
    pread(&f, 0, 4096).expect("read while the target is alive");

    tb.kill_vblade(vb);
    let t0 = Instant::now();
    let wdata = Rng::new(22).bytes(MIB as usize);
    let (f1, f2, wd) = (f.clone(), f.clone(), wdata.clone());
    let reader = thread::spawn(move || {
        let r = pread(&f1, 5 * MIB, MIB as usize);
        (r, t0.elapsed())
    });
    let writer = thread::spawn(move || {
        let r = f2.write_all_at(&wd, 9 * MIB + 512);
        (r, t0.elapsed())
    });
    thread::sleep(Duration::from_secs(2));
    assert!(!reader.is_finished() && !writer.is_finished(), "I/O finished while the target was dead");
    tb.restart_vblade(vb);
    let (r, rt) = bounded("read across the restart", Duration::from_secs(20), move || reader.join().unwrap());
    let (w, wt) = bounded("write across the restart", Duration::from_secs(20), move || writer.join().unwrap());
    let got = r.unwrap_or_else(|e| panic!("read across a 2 s outage failed: {}", e));
    w.unwrap_or_else(|e| panic!("write across a 2 s outage failed: {}", e));
    eprintln!("read completed after {:?}, write after {:?}", rt, wt);
    assert!(rt >= Duration::from_secs(2) && wt >= Duration::from_secs(2), "did not stall: {:?} {:?}", rt, wt);
    assert!(rt < Duration::from_secs(10) && wt < Duration::from_secs(10), "too slow: {:?} {:?}", rt, wt);
    assert_same("read across the restart", &got, &model[5 * MIB as usize..6 * MIB as usize]);
    let o = 9 * MIB as usize + 512;
    model[o..o + wdata.len()].copy_from_slice(&wdata);
    assert_eq!(m.read_status(T, "state"), "up\n");
    drop(f);
    assert_same("e0.1 after the restart", &read_all(&dev), &model);
    assert_same("backing file after the restart", &read_all(&img), &model);
}

#[test]
fn target_dead_beyond_deadsecs_gives_eio_then_comes_back() {
    let deadsecs = 3u64;
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 8 * MIB, Fill::Random(31));
    let vb = tb.start_vblade_with(0, 0, 1, &img, &[]);
    let m = tb.mount_aoefs(&["--deadsecs", "3", "--cache-mb", "0"]);
    let dev = m.expect_target(T, APPEAR);
    let f = Arc::new(File::open(&dev).unwrap());
    pread(&f, 0, 4096).expect("read while alive");

    tb.kill_vblade(vb);
    let t0 = Instant::now();
    let f2 = f.clone();
    let r = bounded("read from a dead target", Duration::from_secs(deadsecs + 20), move || pread(&f2, 3 * MIB, 65536));
    let el = t0.elapsed();
    assert_eq!(errno_of(&r), Some(libc::EIO), "expected EIO, got {:?}", r.map(|v| v.len()));
    assert!(
        el >= Duration::from_secs(deadsecs - 1) && el <= Duration::from_secs(deadsecs + 5),
        "EIO after {:?} with deadsecs {}",
        el,
        deadsecs
    );
    assert_eq!(m.wait_status(T, "state", "down,closewait\n", Duration::from_secs(3)), "down,closewait\n");
    // the target comes back while we still hold the file open: it stays down
    tb.restart_vblade(vb);
    m.discover();
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(m.read_status(T, "state"), "down,closewait\n", "came back while still open");
    assert_eq!(errno_of(&pread(&f, 0, 512)), Some(libc::EIO), "I/O on a closewait device");
    // The last close asks the target at once (no discover, no 60 s
    // rediscovery): it is back up within seconds.
    drop(f);
    let t1 = Instant::now();
    assert_eq!(m.wait_status(T, "state", "up\n", Duration::from_secs(5)), "up\n", "not up after the last close");
    eprintln!("up {:?} after the last close", t1.elapsed());
    let got = read_all(&dev);
    assert_same("e0.1 after coming back", &got, &read_all(&img));
}

// ---------------------------------------------------------------------------
// ATA error replies from the real vblade: a read past its end (IDNF)
// ---------------------------------------------------------------------------

#[test]
fn ata_error_from_vblade_fails_only_that_request() {
    let tb = Testbed::new(1500);
    let size = 16 * MIB;
    let img = tb.make_image("disk.img", size, Fill::Random(41));
    let vb = tb.start_vblade_with(0, 0, 1, &img, &[]);
    let m = tb.mount_aoefs(&["--cache-mb", "0"]);
    let dev = m.expect_target(T, APPEAR);
    // Restart vblade on a file half as large: aoefs keeps the size of its
    // IDENTIFY, so the upper half is now past vblade's end and vblade answers
    // there with ATA status ERR, error IDNF (no AoE error flag).
    tb.kill_vblade(vb);
    let f = File::options().write(true).open(&img).unwrap();
    f.set_len(size / 2).unwrap();
    drop(f);
    tb.restart_vblade(vb);
    let model = read_all(&img);
    assert_eq!(m.read_status(T, "size").trim(), (size / 512).to_string(), "size changed without revalidate");
    let f = Arc::new(open_rw(&dev));
    // wait until the restarted vblade answers
    assert!(poll_until(Duration::from_secs(10), || pread(&f, 0, 4096).is_ok()));

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bg = {
        let (f, stop, model, reads) = (f.clone(), stop.clone(), model.clone(), reads.clone());
        thread::spawn(move || {
            let mut rng = Rng::new(seeded("background reads", 42));
            while !stop.load(Ordering::SeqCst) {
                let off = rng.below(size / 2 - 65536) & !511;
                let got = pread(&f, off, 65536).unwrap_or_else(|e| panic!("read at {} during the errors: {}", off, e));
                assert_same("background read", &got, &model[off as usize..off as usize + 65536]);
                reads.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // The errors come while the background reads go on (the first one done).
    assert!(poll_until(Duration::from_secs(10), || reads.load(Ordering::SeqCst) > 0), "no background read done");
    for i in 0..10u64 {
        let off = size / 2 + i * 512 * 1024;
        let t0 = Instant::now();
        let r = pread(&f, off, 8192);
        assert_eq!(errno_of(&r), Some(libc::EIO), "read past vblade's end at {}", off);
        assert!(t0.elapsed() < Duration::from_secs(2), "EIO took {:?}", t0.elapsed());
        let t0 = Instant::now();
        let w = f.write_all_at(&[0x5a; 4096], off);
        assert_eq!(errno_of(&w), Some(libc::EIO), "write past vblade's end at {}", off);
        assert!(t0.elapsed() < Duration::from_secs(2), "EIO took {:?}", t0.elapsed());
    }
    // a read straddling vblade's end fails as a whole
    assert_eq!(errno_of(&pread(&f, size / 2 - 4096, 8192)), Some(libc::EIO));
    stop.store(true, Ordering::SeqCst);
    bg.join().expect("background reads failed");
    assert!(reads.load(Ordering::SeqCst) > 0);
    assert_eq!(m.read_status(T, "state"), "up\n");
    let st = m.stats(T);
    assert!(st["errors"] >= 21, "error replies not counted: {:?}", st);
    let errs = m.err_messages(200);
    assert!(errs.iter().any(|l| l.contains("e0.1")), "no message about e0.1 on err: {:?}", errs);
    // the lower half still reads and writes fine
    f.write_all_at(&[0x77; 8192], 4096).unwrap();
    assert_eq!(pread(&f, 4096, 8192).unwrap(), vec![0x77; 8192]);
}

/// AoE error replies over a real link: vblade is stopped (SIGSTOP) and
/// `aoe-inject --kinds target-error` answers in its place, from its MAC, with
/// AoE error 6 (target reserved). vblade 25 cannot be made to send error 3 or
/// 6 to us (aoefs sends no reserve command; a MAC mask just drops frames).
#[test]
fn aoe_error_reply_fails_the_request_promptly() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 8 * MIB, Fill::Random(45));
    let vb = tb.start_vblade_with(0, 0, 1, &img, &[]);
    let m = tb.mount_aoefs(&["--deadsecs", "60", "--cache-mb", "0"]);
    let dev = m.expect_target(T, APPEAR);
    let f = Arc::new(open_rw(&dev));
    pread(&f, 0, 4096).expect("read while the target runs");
    let errors0 = m.stats(T)["errors"];
    let pid = tb.vblade_pid(vb).unwrap();
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
    let inj =
        tb.start_injector(0, 0, 1, &["--kinds", "target-error", "--error", "6", "--rate", "500", "--seconds", "6"]);
    for (i, off) in [MIB, 3 * MIB + 512, 6 * MIB].into_iter().enumerate() {
        let t0 = Instant::now();
        let f2 = f.clone();
        let r = if i == 1 {
            bounded("write", Duration::from_secs(30), move || f2.write_all_at(&[1u8; 4096], off))
        } else {
            bounded("read", Duration::from_secs(30), move || pread(&f2, off, 8192).map(|_| ()))
        };
        assert_eq!(errno_of(&r), Some(libc::EIO), "I/O answered with AoE error 6 at {}: {:?}", off, r);
        assert!(t0.elapsed() < Duration::from_secs(3), "AoE error took {:?} (deadsecs 60)", t0.elapsed());
    }
    let ic = tb.wait_injector(&inj, Duration::from_secs(10));
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
    assert!(ic["sent target-error"] > 0);
    assert_eq!(m.read_status(T, "state"), "up\n", "an AoE error must not take the device down");
    assert!(m.stats(T)["errors"] >= errors0 + 3);
    let errs = m.err_messages(500);
    assert!(
        errs.iter().any(|l| l.contains("AoE error 6") || l.contains("reserved")),
        "no AoE error 6 message on err: {:?}",
        errs
    );
    // the target answers again: I/O works (vblade may still carry out the
    // requests queued while it was stopped, so the failed write's range is
    // not compared)
    let got = bounded("read after SIGCONT", Duration::from_secs(30), {
        let f = f.clone();
        move || pread(&f, 5 * MIB, 8192)
    })
    .expect("read after the target resumed");
    assert_same("data after the target resumed", &got, &read_all(&img)[5 * MIB as usize..5 * MIB as usize + 8192]);
}

// ---------------------------------------------------------------------------
// crash safety: vblade -s, fsync, kill -9 aoefs
// ---------------------------------------------------------------------------

#[test]
fn fsynced_data_survives_kill_9_of_aoefs() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 16 * MIB, Fill::Zero);
    let _vb = tb.start_vblade_with(0, 0, 1, &img, &["-s"]);
    let m = tb.mount_aoefs(&[]);
    let dev = m.expect_target(T, APPEAR);
    let f = open_rw(&dev);
    let mut rng = Rng::new(seeded("writes", 51));
    let mut model = vec![0u8; 16 * MIB as usize];
    for _ in 0..40 {
        let len = 1 + rng.below(200_000) as usize;
        let off = rng.below(16 * MIB - len as u64) as usize;
        let d = rng.bytes(len);
        f.write_all_at(&d, off as u64).unwrap();
        model[off..off + len].copy_from_slice(&d);
    }
    f.sync_all().expect("fsync");
    m.kill(libc::SIGKILL);
    // the backing file holds everything fsync covered
    assert_same("backing file after kill -9 of aoefs", &read_all(&img), &model);
    assert!(poll_until(Duration::from_secs(5), || !pid_alive(m.pid())), "aoefs survived SIGKILL");
    drop(f);
}

// ---------------------------------------------------------------------------
// hostile frames during real I/O
// ---------------------------------------------------------------------------

#[test]
fn hostile_frames_do_not_corrupt_data() {
    let tb = Testbed::new(1500);
    let size = 16 * MIB;
    let img = tb.make_image("disk.img", size, Fill::Random(61));
    let _vb = tb.start_vblade_with(0, 0, 1, &img, &[]);
    let mut m = tb.mount_aoefs(&["--cache-mb", "0"]);
    let dev = m.expect_target(T, APPEAR);
    let mut model = read_all(&img);
    let secs = 8u64;
    let seed = seeded("aoe-inject", 7).to_string();
    let inj = tb.start_injector(0, 0, 1, &["--seconds", &secs.to_string(), "--rate", "3000", "--seed", &seed]);
    let st0 = m.stats(T);
    let f = open_rw(&dev);
    let mut rng = Rng::new(seeded("I/O", 62));
    let t0 = Instant::now();
    let mut rounds = 0;
    // write and read back, with dd-sized chunks, for as long as the injector runs
    while t0.elapsed() < Duration::from_secs(secs) {
        let len = 4096 * (1 + rng.below(64) as usize);
        let off = (rng.below(size - len as u64) & !511) as usize;
        let d = rng.bytes(len);
        f.write_all_at(&d, off as u64).unwrap_or_else(|e| panic!("write during injection: {}", e));
        model[off..off + len].copy_from_slice(&d);
        let roff = (rng.below(size - 262144) & !511) as usize;
        let got = pread(&f, roff as u64, 262144).unwrap_or_else(|e| panic!("read during injection: {}", e));
        assert_same("read during injection", &got, &model[roff..roff + 262144]);
        rounds += 1;
    }
    let ic = tb.wait_injector(&inj, Duration::from_secs(10));
    eprintln!("{} rounds; injector: {:?}", rounds, ic);
    for k in aoefs::testtools::INJECT_KINDS {
        assert!(ic.get(&format!("sent {}", k)).copied().unwrap_or(0) > 50, "injector sent few {}: {:?}", k, ic);
    }
    assert!(m.exited().is_none(), "aoefs died");
    assert_eq!(m.read_status(T, "state"), "up\n");
    let st = m.stats(T);
    eprintln!("stats before {:?}\nafter {:?}", st0, st);
    assert_eq!(st["errors"], 0, "a hostile frame failed I/O: {:?}", st);
    // stale and unknown tags from the target's MAC are counted as unexpected
    let stale = ic["sent stale-tag"] + ic["sent unknown-tag"];
    assert!(
        st["unexpected"] - st0["unexpected"] >= stale / 2,
        "unexpected moved by {} for {} stale/unknown-tag frames",
        st["unexpected"] - st0["unexpected"],
        stale
    );
    let errs = m.err_messages(1024);
    assert!(
        errs.iter().any(|l| l.contains("unknown MAC")),
        "no 'unknown MAC' on err: {:?}",
        &errs[..errs.len().min(20)]
    );
    assert!(errs.iter().any(|l| l.contains("unexpected rsp")), "no 'unexpected rsp' on err");
    drop(f);
    assert_same("e0.1 after injection", &read_all(&dev), &model);
    assert_same("backing file after injection", &read_all(&img), &model);
}
