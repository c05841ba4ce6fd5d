//! Tests of the files in mount-helpers/ (mount.aoefs, status.sh, install.sh,
//! aoefs@.service) against the real vblade, through the harness in
//! tests/common/mod.rs.
//!
//! Run: `cargo test --release --features e2e --test e2e -- --test-threads=2 mount_helpers::`
//! (as root).
//!
//! Every aoefs started here runs inside a testbed's initiator namespace
//! (`nsenter --net=/run/netns/NS ...`) with an explicit interface list of
//! testbed veths. Mounts made by mount(8) or the helper (aoefs daemonizes)
//! are undone by [`ExtMount`]'s Drop, and the testbed kills whatever is left
//! in its namespaces. The mount(8) tests install the helper into /sbin for
//! their duration (mount(8) looks for helpers there only) and restore /sbin
//! in Drop, under the host lock (`lock_host`) that the package tests hold
//! too.

use crate::common::*;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

const IMG: u64 = 8 * MIB;

fn helpers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mount-helpers")
}

fn helper(name: &str) -> PathBuf {
    helpers_dir().join(name)
}

/// aoefs asks for subtype "aoefs" (fuse.aoefs); older builds show "fuse".
fn assert_fuse(fstype: &str) {
    assert!(fstype == "fuse.aoefs" || fstype == "fuse", "file system type {:?}", fstype);
}

fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{}/cmdline", pid))
        .map(|b| {
            b.split(|c| *c == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
        })
        .unwrap_or_default()
}

/// Does `argv` contain `flag` immediately followed by `value`?
fn has_flag(argv: &[String], flag: &str, value: &str) -> bool {
    argv.windows(2).any(|w| w[0] == flag && w[1] == value)
}

/// An aoefs mount made by someone else (mount(8), the helper): aoefs
/// daemonized inside the testbed's initiator namespace. Drop unmounts it
/// and stops the daemon (SIGTERM, then SIGKILL), bounded.
struct ExtMount<'a> {
    tb: &'a Testbed,
    path: PathBuf,
}

impl<'a> ExtMount<'a> {
    fn new(tb: &'a Testbed, path: &Path) -> ExtMount<'a> {
        ExtMount { tb, path: path.to_path_buf() }
    }

    /// pids of the aoefs daemons serving this mount point.
    fn daemons(&self) -> Vec<u32> {
        let p = self.path.to_string_lossy().into_owned();
        self.tb
            .initiator_pids()
            .into_iter()
            .filter(|pid| {
                let argv = cmdline(*pid);
                argv.first().is_some_and(|a| a.ends_with("aoefs")) && argv.contains(&p)
            })
            .collect()
    }

    /// The single aoefs daemon of this mount and its argv.
    fn daemon(&self) -> (u32, Vec<String>) {
        let d = self.daemons();
        assert_eq!(d.len(), 1, "expected one aoefs daemon for {}, found {:?}", self.path.display(), d);
        (d[0], cmdline(d[0]))
    }

    fn wait_ready(&self) {
        let d = self.path.join("discover");
        let ok = poll_until(Duration::from_secs(10), || {
            let d = d.clone();
            bounded("stat", Duration::from_secs(10), move || fs::metadata(&d).is_ok())
        });
        assert!(ok, "{} is not an aoefs mount (no discover)", self.path.display());
    }

    fn read(&self, rel: &str) -> io::Result<String> {
        let p = self.path.join(rel);
        bounded(&format!("read {}", p.display()), Duration::from_secs(30), move || fs::read_to_string(&p))
    }

    fn expect_target(&self, name: &str) {
        let p = self.path.join(name);
        let ok = poll_until(APPEAR, || {
            let p = p.clone();
            bounded("stat", Duration::from_secs(10), move || fs::metadata(&p).is_ok())
        });
        assert!(ok, "{} did not appear", p.display());
    }

    /// `umount MNT` and check that the daemon exits by itself.
    fn umount_and_check_exit(&self) {
        let pids = self.daemons();
        run(Command::new("umount").arg(&self.path));
        assert!(!mountinfo_has(&self.path), "still mounted after umount");
        let ok = poll_until(Duration::from_secs(10), || pids.iter().all(|p| !pid_alive(*p)));
        assert!(ok, "aoefs {:?} still running 10 s after umount", pids);
    }
}

impl Drop for ExtMount<'_> {
    fn drop(&mut self) {
        let pids = self.daemons();
        if mountinfo_has(&self.path) {
            let p = self.path.to_string_lossy().into_owned();
            let mut c = Command::new("fusermount3");
            c.args(["-u", "-z", &p]);
            let ok =
                run_unchecked_timeout(&mut c, Duration::from_secs(20)).map(|o| o.status.success()).unwrap_or(false);
            if !ok {
                let mut c = Command::new("umount");
                c.args(["-l", &p]);
                let _ = run_unchecked_timeout(&mut c, Duration::from_secs(20));
            }
        }
        for sig in [libc::SIGTERM, libc::SIGKILL] {
            let alive: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
            if alive.is_empty() {
                break;
            }
            for p in &alive {
                unsafe {
                    libc::kill(*p as libc::pid_t, sig);
                }
            }
            poll_until(Duration::from_secs(5), || alive.iter().all(|p| !pid_alive(*p)));
        }
    }
}

/// Run a command in the initiator namespace (`nsenter --net=...`), bounded.
fn in_ns(tb: &Testbed, argv: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", tb.ins_path())).args(argv);
    for (k, v) in env {
        c.env(k, v);
    }
    run_timeout(&mut c, Duration::from_secs(60))
}

fn write_fails_erofs(p: &Path) {
    let p = p.to_path_buf();
    let r =
        bounded("open for write", Duration::from_secs(30), move || OpenOptions::new().write(true).open(&p).map(|_| ()));
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => {}
        other => panic!("opening the image for writing on a ro mount: {:?}, want EROFS", other),
    }
}

/// Writes 64 KiB at offset 4096 of `p` through the mount and checks that it
/// reached the backing file `img`.
fn write_reaches_image(p: &Path, img: &Path) {
    use std::os::unix::fs::FileExt;
    let data = Rng::new(7).bytes(64 * 1024);
    let (pp, d) = (p.to_path_buf(), data.clone());
    bounded("write through the mount", Duration::from_secs(30), move || {
        let f = OpenOptions::new().write(true).open(&pp).unwrap();
        f.write_all_at(&d, 4096).unwrap();
        f.sync_all().unwrap();
    });
    let back = read_all(img);
    assert_same("backing file after a write through the mount", &back[4096..4096 + data.len()], &data);
}

// ---------------------------------------------------------------------------
// /sbin/mount.aoefs for the mount(8) tests
// ---------------------------------------------------------------------------

/// Installs mount-helpers/mount.aoefs as /sbin/mount.aoefs plus the
/// /sbin/mount.fuse.aoefs symlink for one test; Drop removes them and
/// restores whatever was there before. Holds the host lock
/// ([`lock_host`]) so that tests using /sbin do not overlap.
struct SbinHelper {
    _lock: std::sync::MutexGuard<'static, ()>,
    saved: Vec<(PathBuf, PathBuf)>,
    created: Vec<PathBuf>,
}

impl SbinHelper {
    fn install() -> SbinHelper {
        let lock = lock_host();
        let mut h = SbinHelper { _lock: lock, saved: Vec::new(), created: Vec::new() };
        let sbin = Path::new("/sbin");
        for name in ["mount.aoefs", "mount.fuse.aoefs"] {
            let p = sbin.join(name);
            if fs::symlink_metadata(&p).is_ok() {
                let b = sbin.join(format!(".{}.aoefs-test-saved.{}", name, std::process::id()));
                fs::rename(&p, &b).unwrap_or_else(|e| panic!("move {} aside: {}", p.display(), e));
                eprintln!("note: moved the existing {} aside for this test", p.display());
                h.saved.push((p.clone(), b));
            }
        }
        let dst = sbin.join("mount.aoefs");
        fs::copy(helper("mount.aoefs"), &dst).unwrap_or_else(|e| panic!("install {}: {}", dst.display(), e));
        h.created.push(dst.clone());
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
        let link = sbin.join("mount.fuse.aoefs");
        std::os::unix::fs::symlink("mount.aoefs", &link).unwrap();
        h.created.push(link);
        h
    }
}

impl Drop for SbinHelper {
    fn drop(&mut self) {
        for p in &self.created {
            let _ = fs::remove_file(p);
        }
        for (orig, saved) in &self.saved {
            if let Err(e) = fs::rename(saved, orig) {
                eprintln!("warning: could not restore {}: {}", orig.display(), e);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// mount.aoefs
// ---------------------------------------------------------------------------

/// The helper run exactly as mount(8) runs it, options translated.
#[test]
fn mount_helper_direct_translates_options() {
    let (tb, img, _) = one_target(1500, IMG, Fill::Random(42));
    let mnt = tb.mount_dir();
    let m = ExtMount::new(&tb, &mnt);
    let ifl = tb.init_if(0);
    let mnt_s = mnt.to_string_lossy().into_owned();
    let tmac = tb.target_mac(0);
    let out = in_ns(
        &tb,
        &[
            &helper("mount.aoefs").to_string_lossy(),
            &ifl,
            &mnt_s,
            "-o",
            &format!(
                "defaults,deadsecs=30,ro,maxout=8,cache_mb=0,_netdev,x-systemd.automount,noauto,nofail,\
                 macs=020000000001:{tmac}"
            ),
            "-n",
        ],
        &[("AOEFS", AOEFS)],
    );
    assert!(mountinfo_has(&mnt), "helper exited 0 but nothing is mounted: {:?}", out);
    m.wait_ready();
    m.expect_target("e0.1");
    let MountInfo { fstype, options: opts, .. } = mounts_on(&mnt).remove(0);
    assert_fuse(&fstype);
    assert!(opts.split(',').any(|o| o == "ro"), "mount options {:?} lack ro", opts);

    let (_, argv) = m.daemon();
    assert!(has_flag(&argv, "--iflist", &ifl), "{:?}", argv);
    assert!(has_flag(&argv, "--deadsecs", "30"), "{:?}", argv);
    assert!(has_flag(&argv, "--maxout", "8"), "{:?}", argv);
    assert!(has_flag(&argv, "--cache-mb", "0"), "{:?}", argv);
    assert!(has_flag(&argv, "--macs", &format!("020000000001,{tmac}")), "{:?}", argv);
    assert!(has_flag(&argv, "-o", "ro"), "{:?}", argv);
    for bad in ["defaults", "_netdev", "noauto", "nofail", "x-systemd"] {
        assert!(!argv.iter().any(|a| a.contains(bad)), "{} passed on: {:?}", bad, argv);
    }

    assert_eq!(m.read("block/e0.1/state").unwrap(), "up\n");
    assert_eq!(m.read("block/e0.1/netif").unwrap().trim_end(), ifl);
    write_fails_erofs(&mnt.join("e0.1"));
    let got = bounded("read image", Duration::from_secs(30), {
        let p = mnt.join("e0.1");
        move || fs::read(p).unwrap()
    });
    assert_same("image read through the helper's mount", &got, &read_all(&img));
    m.umount_and_check_exit();
}

/// Usage errors and unknown interfaces: nothing mounted, mount(8)'s exit codes.
#[test]
fn mount_helper_rejects_bad_input() {
    let (tb, _img, _) = one_target(1500, IMG, Fill::Random(42));
    let mnt = tb.mount_dir();
    let _m = ExtMount::new(&tb, &mnt);
    let mnt_s = mnt.to_string_lossy().into_owned();
    let h = helper("mount.aoefs").to_string_lossy().into_owned();
    let cases: &[(&[&str], i32)] = &[
        (&[&h, "aoei0", &mnt_s, "-o", "deadsecs=soon"], 1),
        (&[&h, "aoei0"], 1),
        // an interface that does not exist in the namespace: aoefs exits 2
        (&[&h, "nosuchif9", &mnt_s], 1),
    ];
    for (argv, want) in cases {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", tb.ins_path())).args(*argv).env("AOEFS", AOEFS);
        let out = run_unchecked_timeout(&mut c, Duration::from_secs(30)).unwrap();
        assert_eq!(out.status.code(), Some(*want), "{:?}: {}", argv, text(&out.stderr));
        assert!(!text(&out.stderr).trim().is_empty(), "{:?}: no message", argv);
        assert!(!mountinfo_has(&mnt), "{:?} mounted something", argv);
    }
    // -f (fake) prints the command and mounts nothing
    let out = in_ns(
        &tb,
        &[&h, "aoei0:aoei0", &mnt_s, "-fv", "-o", "iflist=aoei0,readahead_kb=0,busy_poll_us=30,allow_other"],
        &[("AOEFS", AOEFS)],
    );
    let e = text(&out.stderr);
    assert!(
        e.contains("--iflist aoei0 ")
            && e.contains("--readahead-kb 0")
            && e.contains("--busy-poll-us 30")
            && e.contains("-o allow_other"),
        "{}",
        e
    );
    assert!(!mountinfo_has(&mnt));
    // No binary anywhere: a copy of the helper whose installed locations do
    // not exist (the helper falls back to /usr/local/bin/aoefs, where
    // install.sh may have put one on this machine, and /usr/bin/aoefs, the
    // package's).
    let installed = "\ninstalled_aoefs=/usr/local/bin/aoefs\n";
    let package = " /usr/bin/aoefs; do";
    let script = fs::read_to_string(&h).unwrap();
    assert!(script.contains(installed), "mount.aoefs has no `{}` line", installed.trim());
    assert!(script.contains(package), "mount.aoefs does not look for `{package}`");
    let copy = tb.dir.join("mount.aoefs");
    let script = script.replace(installed, "\ninstalled_aoefs=/nonexistent/aoefs\n").replace(package, "; do");
    fs::write(&copy, script).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Command::new(&copy);
    c.args(["aoei0", &mnt_s, "-f"]).env_remove("AOEFS").env("PATH", "/nonexistent");
    let out = run_unchecked_timeout(&mut c, Duration::from_secs(30)).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot find the aoefs program"), "{}", text(&out.stderr));
}

/// `mount -t aoefs IFACE MNT` through util-linux mount(8).
#[test]
fn util_linux_mount_t_aoefs() {
    let (tb, img, _) = one_target(9000, IMG, Fill::Random(42));
    let _sbin = SbinHelper::install();
    let mnt = tb.mount_dir();
    let m = ExtMount::new(&tb, &mnt);
    let ifl = tb.init_if(0);
    let mnt_s = mnt.to_string_lossy().into_owned();
    in_ns(&tb, &["mount", "-t", "aoefs", &ifl, &mnt_s, "-o", "deadsecs=30,maxout=16"], &[("AOEFS", AOEFS)]);
    m.wait_ready();
    m.expect_target("e0.1");
    let MountInfo { fstype, options: opts, .. } = mounts_on(&mnt).remove(0);
    assert_fuse(&fstype);
    assert!(opts.split(',').any(|o| o == "rw"), "{}", opts);
    let (_, argv) = m.daemon();
    assert!(has_flag(&argv, "--deadsecs", "30") && has_flag(&argv, "--maxout", "16"), "{:?}", argv);
    assert_eq!(m.read("block/e0.1/payload").unwrap(), "8704\n");
    write_reaches_image(&mnt.join("e0.1"), &img);
    m.umount_and_check_exit();
}

/// An fstab line of type fuse.aoefs: mount(8) runs /sbin/mount.fuse.aoefs.
#[test]
fn fstab_line_fuse_aoefs() {
    let (tb, img, _) = one_target(1500, IMG, Fill::Random(42));
    let _sbin = SbinHelper::install();
    let mnt = tb.mount_dir();
    let m = ExtMount::new(&tb, &mnt);
    let ifl = tb.init_if(0);
    let fstab = tb.dir.join("fstab");
    fs::write(
        &fstab,
        format!(
            "# test fstab\n{}  {}  fuse.aoefs  defaults,_netdev,nofail,deadsecs=30,cache_mb=8  0 0\n",
            ifl,
            mnt.display()
        ),
    )
    .unwrap();
    in_ns(&tb, &["mount", "--fstab", &fstab.to_string_lossy(), &mnt.to_string_lossy()], &[("AOEFS", AOEFS)]);
    m.wait_ready();
    m.expect_target("e0.1");
    assert_fuse(&mounts_on(&mnt)[0].fstype);
    let (_, argv) = m.daemon();
    assert!(has_flag(&argv, "--iflist", &ifl), "{:?}", argv);
    assert!(has_flag(&argv, "--deadsecs", "30") && has_flag(&argv, "--cache-mb", "8"), "{:?}", argv);
    assert!(!argv.iter().any(|a| a.contains("_netdev") || a.contains("defaults")), "{:?}", argv);
    write_reaches_image(&mnt.join("e0.1"), &img);
    m.umount_and_check_exit();
}

// ---------------------------------------------------------------------------
// status.sh
// ---------------------------------------------------------------------------

fn status_table(rows: &[(&str, &str, &str)]) -> String {
    let mut rows: Vec<_> = rows.to_vec();
    rows.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    rows.iter().map(|(d, n, s)| format!("{:>8}\t{:>8}\t{:>8}\n", d, n, s)).collect()
}

fn run_status(arg: Option<&Path>, env_dir: Option<&Path>) -> std::process::Output {
    let mut c = Command::new("sh");
    c.arg(helper("status.sh"));
    if let Some(a) = arg {
        c.arg(a);
    }
    c.env_remove("sysfs_dir");
    if let Some(d) = env_dir {
        c.env("sysfs_dir", d);
    }
    run_unchecked_timeout(&mut c, Duration::from_secs(60)).unwrap()
}

#[test]
fn status_sh_prints_the_kernel_table() {
    let tb = Testbed::new(1500);
    tb.add_veth(1500);
    let mut vbs = Vec::new();
    for (k, shelf, slot) in [(0usize, 0u16, 1u8), (0, 0, 2), (1, 10, 0), (1, 4, 3)] {
        let img = tb.make_image(&format!("d{}.{}.img", shelf, slot), 4 * MIB, Fill::Zero);
        vbs.push(tb.start_vblade_on(k, shelf, slot, &img, None));
    }
    let m = tb.mount_aoefs_iflist("aoei0,aoei1", &["--deadsecs", "2", "--cache-mb", "0", "--readahead-kb", "0"]);
    for t in ["e0.1", "e0.2", "e10.0", "e4.3"] {
        m.expect_target(t, APPEAR);
        assert_eq!(m.wait_status(t, "state", "up\n", APPEAR), "up\n", "{}", t);
    }
    let mut want =
        vec![("e0.1", "aoei0", "up"), ("e0.2", "aoei0", "up"), ("e10.0", "aoei1", "up"), ("e4.3", "aoei1", "up")];
    let out = run_status(Some(&m.path), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = text(&out.stdout);
    assert_eq!(got, status_table(&want), "status.sh MNT");
    // byte order, as the kernel's example: e10.0 before e4.3
    let order: Vec<&str> = got.lines().map(|l| l.trim_start().split('\t').next().unwrap()).collect();
    assert_eq!(order, ["e0.1", "e0.2", "e10.0", "e4.3"]);
    // sysfs_dir, as aoe-stat: the mount point or its sys/ (the kernel's names)
    let out = run_status(None, Some(&m.path));
    assert_eq!(text(&out.stdout), status_table(&want), "sysfs_dir=MNT status.sh");
    let out = run_status(None, Some(&m.path.join("sys")));
    assert_eq!(text(&out.stdout), status_table(&want), "sysfs_dir=MNT/sys status.sh");

    // a target that stops answering goes down, and the table says so
    tb.kill_vblade(vbs[1]);
    let p = m.target("e0.2");
    let r = bounded("read of a dead target", Duration::from_secs(30), move || {
        use std::os::unix::fs::FileExt;
        let f = fs::File::open(&p)?;
        let mut b = vec![0u8; 4096];
        f.read_exact_at(&mut b, 1 << 20)
    });
    assert_eq!(r.map_err(|e| e.raw_os_error()), Err(Some(libc::EIO)), "read from a killed vblade");
    let st = m.wait_status("e0.2", "state", "down\n", Duration::from_secs(10));
    assert_eq!(st, "down\n");
    want[1].2 = "down";
    let out = run_status(Some(&m.path), None);
    assert_eq!(text(&out.stdout), status_table(&want), "after e0.2 died");

    // not an aoefs mount
    let out = run_status(Some(&tb.dir), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("aoefs mount"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

// ---------------------------------------------------------------------------
// install.sh
// ---------------------------------------------------------------------------

/// Every regular file and symlink below `root`, relative, sorted.
fn files_below(root: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            let ft = fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut v = Vec::new();
    walk(root, root, &mut v);
    v.sort();
    v
}

fn install_sh(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new("sh");
    c.arg(helper("install.sh")).args(args).env("AOEFS_BIN", AOEFS);
    for v in ["DESTDIR", "PREFIX", "SBINDIR", "UNITDIR", "SYSCONFDIR"] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    run_timeout(&mut c, Duration::from_secs(60))
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap_or_else(|e| panic!("{}: {}", p.display(), e)).mode() & 0o7777
}

#[test]
fn install_sh_destdir_and_uninstall() {
    let stage = PathBuf::from(format!("/tmp/aoefs-stage-{}", std::process::id()));
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage).unwrap();
    let _rm = RemoveOnDrop(stage.clone());
    let d = stage.to_string_lossy().into_owned();
    install_sh(&[], &[("DESTDIR", &d)]);
    let mut want = vec![
        "etc/aoefs/aoefs.conf.example",
        "etc/systemd/system/aoefs@.service",
        "sbin/mount.aoefs",
        "sbin/mount.fuse.aoefs",
        "usr/local/bin/aoefs",
        "usr/local/bin/aoefs-status",
    ];
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("Documentation/aoefs.txt");
    if doc.exists() {
        want.push("usr/local/share/doc/aoefs/aoefs.txt");
    }
    want.sort();
    assert_eq!(files_below(&stage), want);
    assert_eq!(read_all(&stage.join("usr/local/bin/aoefs")), read_all(Path::new(AOEFS)));
    assert_eq!(mode(&stage.join("usr/local/bin/aoefs")), 0o755);
    assert_eq!(mode(&stage.join("usr/local/bin/aoefs-status")), 0o755);
    assert_eq!(mode(&stage.join("sbin/mount.aoefs")), 0o755);
    assert_eq!(mode(&stage.join("etc/systemd/system/aoefs@.service")), 0o644);
    assert_eq!(fs::read_link(stage.join("sbin/mount.fuse.aoefs")).unwrap(), PathBuf::from("mount.aoefs"));
    assert_eq!(read_all(&stage.join("usr/local/bin/aoefs-status")), read_all(&helper("status.sh")));
    // installed files name final paths, never the staging dir
    let h = fs::read_to_string(stage.join("sbin/mount.aoefs")).unwrap();
    assert!(h.lines().any(|l| l == "installed_aoefs=/usr/local/bin/aoefs"), "mount.aoefs: no installed_aoefs line");
    let unit = fs::read_to_string(stage.join("etc/systemd/system/aoefs@.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/aoefs %f -f"), "{}", unit);
    for (f, t) in [("mount.aoefs", &h), ("aoefs@.service", &unit)] {
        assert!(!t.contains(&d), "{} mentions DESTDIR", f);
    }
    // installing again is fine (upgrade)
    install_sh(&[], &[("DESTDIR", &d)]);
    assert_eq!(files_below(&stage), want);

    let out = install_sh(&["--uninstall"], &[("DESTDIR", &d)]);
    assert_eq!(files_below(&stage), Vec::<String>::new(), "left after --uninstall: {}", text(&out.stdout));
    assert!(!stage.join("etc/aoefs").exists(), "etc/aoefs not removed");
    // uninstalling twice is fine
    install_sh(&["--uninstall"], &[("DESTDIR", &d)]);
}

/// A real (non-staged) install under a temp PREFIX: the installed helper
/// finds the installed aoefs without AOEFS or PATH, the installed unit
/// passes systemd-analyze verify, aoefs-status works.
#[test]
fn install_sh_prefix_install_works() {
    // The installed helper finds aoefs in PATH too, where the package test
    // puts one (/usr/bin/aoefs): not at the same time.
    let _host = lock_host();
    let (tb, _img, _) = one_target(1500, IMG, Fill::Random(42));
    let root = tb.dir.join("inst");
    let prefix = root.join("prefix");
    let sbin = root.join("sbin");
    let unitdir = root.join("units");
    let etc = root.join("etc");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    install_sh(
        &[&format!("PREFIX={}", s(&prefix)), &format!("SBINDIR={}", s(&sbin))],
        &[("UNITDIR", &s(&unitdir)), ("SYSCONFDIR", &s(&etc))],
    );
    let bin = prefix.join("bin/aoefs");
    let unit = unitdir.join("aoefs@.service");
    let utext = fs::read_to_string(&unit).unwrap();
    assert!(utext.contains(&format!("ExecStart={} %f -f", bin.display())), "{}", utext);
    assert!(utext.contains(&format!("EnvironmentFile=-{}/aoefs/%i.conf", etc.display())), "{}", utext);

    if have("systemd-analyze") {
        let mut c = Command::new("systemd-analyze");
        c.args(["verify", "--man=no"]).arg(unitdir.join("aoefs@mnt-etherd.service"));
        let out = run_unchecked_timeout(&mut c, Duration::from_secs(60)).unwrap();
        assert!(
            out.status.success() && text(&out.stderr).trim().is_empty(),
            "systemd-analyze verify of the installed unit: {}\n{}",
            out.status,
            text(&out.stderr)
        );
    } else {
        eprintln!("SKIPPED: systemd-analyze verify (systemd-analyze is not installed)");
    }

    // the installed helper, through the mount.fuse.aoefs name, with no hint
    // where aoefs is
    let mnt = tb.mount_dir();
    let m = ExtMount::new(&tb, &mnt);
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", tb.ins_path()))
        .arg(sbin.join("mount.fuse.aoefs"))
        .arg(tb.init_if(0))
        .arg(&mnt)
        .args(["-o", "rw,deadsecs=20"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    run_timeout(&mut c, Duration::from_secs(60));
    m.wait_ready();
    m.expect_target("e0.1");
    let (pid, _) = m.daemon();
    assert_eq!(fs::read_link(format!("/proc/{}/exe", pid)).unwrap(), bin, "daemon binary");
    let out = run(Command::new(prefix.join("bin/aoefs-status")).arg(&mnt));
    assert_eq!(text(&out.stdout), status_table(&[("e0.1", &tb.init_if(0), "up")]));
    m.umount_and_check_exit();

    install_sh(
        &["--uninstall", &format!("PREFIX={}", s(&prefix)), &format!("SBINDIR={}", s(&sbin))],
        &[("UNITDIR", &s(&unitdir)), ("SYSCONFDIR", &s(&etc))],
    );
    assert_eq!(files_below(&root), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// aoefs@.service
// ---------------------------------------------------------------------------

/// `systemd-escape --path`.
fn escape_path(p: &str) -> String {
    let p = p.trim_matches('/');
    let mut out = String::new();
    for (i, b) in p.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b':' => out.push(b as char),
            _ => out.push_str(&format!("\\x{:02x}", b)),
        }
    }
    out
}

/// `%f` of an instance: unescaped, with "/" in front.
fn unescape_path(i: &str) -> String {
    let b = i.as_bytes();
    let mut out = vec![b'/'];
    let mut k = 0;
    while k < b.len() {
        if b[k] == b'-' {
            out.push(b'/');
            k += 1;
        } else if b[k] == b'\\' && k + 4 <= b.len() && b[k + 1] == b'x' {
            out.push(u8::from_str_radix(&i[k + 2..k + 4], 16).unwrap());
            k += 4;
        } else {
            out.push(b[k]);
            k += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Keys of the [Service] section (all values of repeated keys).
fn unit_section(unit: &str, section: &str) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    let mut cur = String::new();
    for l in unit.lines() {
        let l = l.trim();
        if l.starts_with('#') || l.starts_with(';') || l.is_empty() {
            continue;
        }
        if l.starts_with('[') {
            cur = l.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        if cur == section {
            if let Some((k, v)) = l.split_once('=') {
                m.entry(k.trim().to_string()).or_default().push(v.trim().to_string());
            }
        }
    }
    m
}

/// An environment file as systemd reads it (KEY=VALUE, # comments, quotes).
fn parse_env_file(t: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for l in t.lines() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            m.insert(k.trim().to_string(), v.to_string());
        }
    }
    m
}

/// A command line of a unit as systemd would run it: prefixes (-@:+!)
/// stripped, words split with quotes, specifiers %f %i %I %% and
/// environment variables ($X split into words, ${X} one word) expanded.
fn expand_exec(line: &str, instance: &str, env: &HashMap<String, String>) -> Vec<String> {
    let line = line.trim_start_matches(['-', '@', ':', '+', '!']);
    let mut words: Vec<(String, bool)> = Vec::new(); // (word, was quoted)
    let mut cur = String::new();
    let mut quoted = false;
    let mut q: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match q {
            Some(qc) if c == qc => q = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                q = Some(c);
                quoted = true;
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push((std::mem::take(&mut cur), quoted));
                    quoted = false;
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push((cur, quoted));
    }
    let spec = |w: &str| {
        w.replace("%%", "\u{1}")
            .replace("%f", &unescape_path(instance))
            .replace("%i", instance)
            .replace("%I", &unescape_path(instance)[1..])
            .replace('\u{1}', "%")
    };
    let mut out = Vec::new();
    for (w, quoted) in words {
        let w = spec(&w);
        if !quoted && w.starts_with('$') && !w.starts_with("${") {
            let v = env.get(&w[1..]).cloned().unwrap_or_default();
            out.extend(v.split_whitespace().map(|s| s.to_string()));
            continue;
        }
        let mut s = w.clone();
        for (k, v) in env {
            s = s.replace(&format!("${{{}}}", k), v);
        }
        out.push(s);
    }
    out
}

#[test]
fn systemd_unit_verifies_and_its_exec_lines_work() {
    // Not while the package test has its copy of the unit in /lib/systemd.
    let _host = lock_host();
    let unit_path = helper("aoefs@.service");
    let unit = fs::read_to_string(&unit_path).unwrap();
    let svc = unit_section(&unit, "Service");
    let unit_sec = unit_section(&unit, "Unit");
    assert!(unit_sec["After"].iter().any(|v| v.contains("network-online.target")));
    assert!(unit_sec["Wants"].iter().any(|v| v.contains("network-online.target")));
    assert!(svc.contains_key("Restart"), "no restart policy");
    assert_eq!(svc["ExecStart"].len(), 1);

    // systemd-analyze verify (on a copy naming the built aoefs, since it
    // checks that the programs exist)
    let (tb, img, _) = one_target(1500, IMG, Fill::Random(42));
    if have("systemd-analyze") {
        let d = tb.dir.join("unit");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("aoefs@.service"), unit.replace("/usr/bin/aoefs", AOEFS)).unwrap();
        let mut c = Command::new("systemd-analyze");
        c.args(["verify", "--man=no"]).arg(d.join("aoefs@mnt-etherd.service"));
        let out = run_unchecked_timeout(&mut c, Duration::from_secs(60)).unwrap();
        assert!(
            out.status.success() && text(&out.stderr).trim().is_empty(),
            "systemd-analyze verify: {}\n{}",
            out.status,
            text(&out.stderr)
        );
    } else {
        eprintln!("SKIPPED: systemd-analyze verify (systemd-analyze is not installed); the ExecStart test still runs");
    }

    // the instance names the mount point
    let mnt = tb.mount_dir();
    let mnt_s = mnt.to_string_lossy().into_owned();
    let instance = escape_path(&mnt_s);
    if have("systemd-escape") {
        let out = run(Command::new("systemd-escape").arg("--path").arg(&mnt));
        assert_eq!(text(&out.stdout).trim(), instance, "escape of {}", mnt_s);
    }
    assert_eq!(unescape_path(&instance), mnt_s);
    // the environment file of the instance: the test's own, same format
    assert_eq!(svc["EnvironmentFile"], vec!["-/etc/aoefs/%i.conf".to_string()]);
    let example = parse_env_file(&fs::read_to_string(helper("aoefs.conf.example")).unwrap());
    assert!(example.contains_key("AOEFS_OPTIONS"), "aoefs.conf.example sets no AOEFS_OPTIONS");
    // the example itself, with the testbed's interface for eth1
    let conf = tb.dir.join(format!("{}.conf", instance));
    let ex = fs::read_to_string(helper("aoefs.conf.example")).unwrap();
    assert!(ex.contains("--iflist eth1 "), "the example no longer says --iflist eth1");
    fs::write(&conf, ex.replace("--iflist eth1 ", &format!("--iflist {} ", tb.init_if(0)))).unwrap();
    let env = parse_env_file(&fs::read_to_string(&conf).unwrap());

    let _ = fs::remove_dir(&mnt); // ExecStartPre makes it
    for pre in svc.get("ExecStartPre").cloned().unwrap_or_default() {
        let argv = expand_exec(&pre, &instance, &env);
        run(Command::new(&argv[0]).args(&argv[1..]));
    }
    assert!(mnt.is_dir(), "ExecStartPre did not create {}", mnt_s);

    let mut argv = expand_exec(&svc["ExecStart"][0], &instance, &env);
    assert_eq!(argv[0], "/usr/bin/aoefs", "the package's path");
    assert_eq!(argv[1], mnt_s);
    assert!(argv.iter().any(|a| a == "-f"), "ExecStart must keep aoefs in the foreground: {:?}", argv);
    assert!(has_flag(&argv, "--iflist", &tb.init_if(0)) && has_flag(&argv, "--deadsecs", "60"), "{:?}", argv);
    argv[0] = AOEFS.to_string();
    let mut m = tb.mount_with_command(&mnt, &argv, &[]);
    m.expect_target("e0.1", APPEAR);
    assert_eq!(m.wait_status("e0.1", "state", "up\n", APPEAR), "up\n");
    write_reaches_image(&m.target("e0.1"), &img);

    for post in svc.get("ExecStartPost").cloned().unwrap_or_default() {
        let argv = expand_exec(&post, &instance, &env);
        run_timeout(Command::new(&argv[0]).args(&argv[1..]), Duration::from_secs(30));
    }

    // ExecStop unmounts; aoefs then exits 0 by itself
    let stop = svc.get("ExecStop").expect("ExecStop");
    let t0 = Instant::now();
    for s in stop {
        let argv = expand_exec(s, &instance, &env);
        run(Command::new(&argv[0]).args(&argv[1..]));
    }
    assert!(!mountinfo_has(&mnt), "still mounted after ExecStop");
    let mut st = None;
    while t0.elapsed() < Duration::from_secs(10) {
        st = m.exited();
        if st.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let st = st.expect("aoefs still running 10 s after ExecStop");
    assert_eq!(st.code(), Some(0), "aoefs exit status after ExecStop");
}
