//! Starting and stopping aoefs, end to end against the real vblade: errors
//! at start-up (one line; exit 2 for a usage error such as an unknown
//! interface or a missing mount point, 1 for a busy mount point or a missing
//! permission), SIGTERM, daemon mode with a pid file, and a new aoefs on the
//! mount point a killed one left.
//!
//! Run: `cargo test --release --features e2e --test e2e -- --test-threads=2 lifecycle::`
//! (as root).

use crate::common::*;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

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
fn startup_errors_are_one_line_with_exit_codes() {
    let tb = Testbed::new(1500);
    let ns = format!("--net={}", tb.ins_path());
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["/nonexistent-mnt".into(), "--iflist".into(), tb.init_if(0)], 2, "mount point"),
        (vec!["/mnt".into(), "--iflist".into(), "nosuchif9".into()], 2, "unknown interface"),
        (vec!["/mnt".into(), "--iflist".into(), tb.init_if(0), "--maxout".into(), "0".into()], 2, "maxout"),
        (vec!["/mnt".into(), "--iflist".into(), tb.init_if(0), "-o".into(), "deadsecs=abc".into()], 2, "deadsecs"),
    ];
    for (args, code, word) in cases {
        let out = run_unchecked(Command::new("nsenter").arg(&ns).arg(AOEFS).args(&args));
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(word), "{args:?}: {err}");
    }
    // No permission for raw capture (an unprivileged user).
    let out = run_unchecked(
        Command::new("nsenter")
            .arg(&ns)
            .args(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(AOEFS)
            .args(["/mnt", "-f", "--iflist", &tb.init_if(0)]),
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Where users may not open /dev/fuse (mode 0600), that is what is
    // missing first (access.rs checks the capability's message with a
    // /dev/fuse the user may open).
    let fuse_for_all = fs::metadata("/dev/fuse").is_ok_and(|m| m.mode() & 0o666 == 0o666);
    assert!(err.contains(if fuse_for_all { "CAP_NET_RAW" } else { "/dev/fuse" }), "{err}");
    // A busy mount point: mount once, then again on the same directory.
    let m = tb.mount_aoefs(&[]);
    let out = run_unchecked_timeout(
        Command::new("nsenter").arg(&ns).arg(AOEFS).arg(&m.path).args([
            "-f",
            "--iflist",
            &tb.init_if(0),
            "--discover-wait-ms",
            "100",
        ]),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("busy"), "{err}");
}

/// `aoefs ARGS` in the testbed's initiator namespace, bounded; its output.
fn aoefs_in_ns(tb: &Testbed, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", tb.ins_path())).arg(AOEFS).args(args);
    run_unchecked_timeout(&mut c, Duration::from_secs(60)).unwrap()
}

/// A mount point in use is a failure at run time (exit 1) with a clear
/// message and stays as it is; a missing one is a usage error (exit 2).
#[test]
fn a_busy_mount_point_exits_1_and_a_missing_one_2() {
    let (tb, _img, _) = one_target(1500, 8 * MIB, Fill::Random(13));
    let ifl = tb.init_if(0);
    let m = tb.mount_aoefs(&[]);
    m.expect_target("e0.1", APPEAR);
    let out = aoefs_in_ns(&tb, &[&m.path.to_string_lossy(), "-f", "--iflist", &ifl]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is busy: an aoefs is already mounted there"), "{}", text(&out.stderr));
    assert_eq!(mounts_on(&m.path).len(), 1);
    assert_eq!(m.read_status("e0.1", "state"), "up\n", "the running mount is untouched");

    // Another file system there.
    let other = tb.mount_dir();
    run(Command::new("mount").args(["-t", "tmpfs", "aoefs-test-tmpfs"]).arg(&other));
    let out = aoefs_in_ns(&tb, &[&other.to_string_lossy(), "-f", "--iflist", &ifl]);
    let _ = Command::new("umount").arg(&other).status();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is busy: a tmpfs file system is mounted there"), "{}", text(&out.stderr));

    let missing = tb.dir.join("no-such-dir");
    let out = aoefs_in_ns(&tb, &[&missing.to_string_lossy(), "-f", "--iflist", &ifl]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).lines().count(), 1, "{}", text(&out.stderr));
}

#[test]
fn sigterm_unmounts_and_exits_0() {
    let mut s = setup(1500, 8 * MIB, Fill::Zero, &[]);
    let st = s.m.terminate(Duration::from_secs(10)).expect("aoefs did not exit within 10 s of SIGTERM");
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {:?}", st);
    assert!(!mountinfo_has(&s.m.path), "still mounted after SIGTERM");
}

/// A daemon started by a test, killed and unmounted on drop.
struct Daemon {
    pidfile: PathBuf,
    mnt: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(p) = fs::read_to_string(&self.pidfile) {
            if let Ok(pid) = p.trim().parse::<i32>() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if mountinfo_has(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        let _ = fs::remove_dir(&self.mnt);
    }
}

#[test]
fn daemon_mode_returns_when_mounted_writes_pidfile_and_stops_on_sigterm() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 8 * MIB, Fill::Zero);
    tb.start_vblade(0, 1, &img, None);
    let mnt = PathBuf::from(format!("/mnt/aoefs-daemon-{}", std::process::id()));
    fs::create_dir_all(&mnt).unwrap();
    let pidfile = tb.dir.join("aoefs.pid");
    let d = Daemon { pidfile: pidfile.clone(), mnt: mnt.clone() };
    let out = run_timeout(
        Command::new("nsenter").arg(format!("--net={}", tb.ins_path())).arg(AOEFS).arg(&mnt).args([
            "--iflist",
            &tb.init_if(0),
            "--pidfile",
            &pidfile.to_string_lossy(),
        ]),
        Duration::from_secs(20),
    );
    assert!(out.status.success());
    // Returned only once mounted, with the target already there.
    assert!(mnt.join("e0.1").exists(), "target visible when the command returns");
    let pid: i32 = fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(fs::read_to_string(mnt.join("block/e0.1/state")).unwrap(), "up\n");
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(
        poll_until(Duration::from_secs(5), || !Path::new(&format!("/proc/{pid}")).exists()),
        "daemon exits on SIGTERM"
    );
    assert!(!mountinfo_has(&mnt), "and unmounts");
    assert!(!pidfile.exists(), "pid file removed");
    drop(d);
}

/// aoefs killed with SIGKILL leaves a dead mount (ENOTCONN); a new aoefs on
/// the same mount point detaches it, says so in one line, and mounts; the
/// data fsync'd before the kill is there.
#[test]
fn a_new_aoefs_starts_on_the_mount_point_a_killed_one_left() {
    let (tb, img, _) = one_target(1500, 16 * MIB, Fill::Random(13));
    let mnt = tb.mount_dir();
    let mnt_s = mnt.to_string_lossy().into_owned();
    let ifl = tb.init_if(0);
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", tb.ins_path()))
        .args([AOEFS, &mnt_s, "-f", "--iflist", &ifl])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut first = Killed(c.spawn().unwrap());
    let disk = mnt.join("e0.1");
    assert!(
        poll_until(Duration::from_secs(10), || {
            let d = disk.clone();
            bounded("stat", Duration::from_secs(10), move || d.exists())
        }),
        "the first aoefs did not mount"
    );
    let data = Rng::new(99).bytes(256 * 1024);
    {
        let (d, p) = (data.clone(), disk.clone());
        bounded("write and fsync", Duration::from_secs(30), move || {
            let f = OpenOptions::new().write(true).open(&p).unwrap();
            f.write_all_at(&d, MIB).unwrap();
            f.sync_all().unwrap();
        });
    }
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    // statfs, which FUSE always passes on (a stat may come from the cache).
    let m = mnt.clone();
    let e = bounded("statfs of the dead mount", Duration::from_secs(10), move || nix::sys::statfs::statfs(&m).err());
    assert_eq!(e, Some(nix::errno::Errno::ENOTCONN), "the killed aoefs left no dead mount");
    assert_eq!(mounts_on(&mnt).len(), 1);

    // The same command again, as a restarting service would run it.
    let argv: Vec<String> = [AOEFS, &mnt_s, "-f", "--iflist", &ifl].map(String::from).to_vec();
    let second = tb.mount_with_command(&mnt, &argv, &[]);
    second.expect_target("e0.1", APPEAR);
    let log = second.log_text();
    let said: Vec<&str> = log.lines().filter(|l| l.contains("detached the dead aoefs mount")).collect();
    assert_eq!(said.len(), 1, "one line about the dead mount: {log}");
    assert!(said[0].contains(&mnt_s), "{}", said[0]);
    let on: Vec<(String, String)> = mounts_on(&mnt).into_iter().map(|i| (i.fstype, i.source)).collect();
    assert_eq!(on, [("fuse.aoefs".to_string(), "aoefs".to_string())], "not stacked on the dead one");
    let p = disk.clone();
    let back = bounded("read back", Duration::from_secs(30), move || {
        let f = fs::File::open(&p).unwrap();
        pread(&f, MIB, 256 * 1024).unwrap()
    });
    assert_same("data fsync'd before the kill, read by the new aoefs", &back, &data);
    assert_same("the backing file", &read_all(&img)[MIB as usize..MIB as usize + data.len()], &data);
}
