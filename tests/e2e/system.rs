//! aoefs as a system tool, end to end against the real vblade: starting
//! again after `kill -9` on the same mount point, a user without root
//! mounting, the Debian package (install, mount through the installed
//! helper, man pages, purge; lintian), `aoefs iostat` against known dd runs,
//! `aoefs stat --json`, and the quiet answers of the mount (names that
//! cannot be made, isatty, a killed `err` reader).
//!
//! Run: `cargo test --release --features e2e --test e2e -- --test-threads=2 system::`
//! (as root; the package tests need cargo-deb, man-db and lintian, which
//! .ci/run installs).

use crate::common::*;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// `aoefs ARGS` in the testbed's initiator namespace, bounded; its output.
fn aoefs_in_ns(tb: &Testbed, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", tb.ins_path())).arg(AOEFS).args(args);
    run_unchecked_timeout(&mut c, Duration::from_secs(60)).unwrap()
}

// ---------------------------------------------------------------------------
// kill -9, then start again
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// A user without root
// ---------------------------------------------------------------------------

/// A system user made for one test and removed in Drop.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn new() -> TestUser {
        let name = format!("aoefs-t{}", std::process::id());
        let _ = Command::new("userdel").arg(&name).output();
        run(Command::new("useradd").args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", &name]));
        let id = |flag: &str| text(&run(Command::new("id").args([flag, &name])).stdout).trim().parse().unwrap();
        TestUser { uid: id("-u"), gid: id("-g"), name }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Its processes first (userdel refuses while they run).
        let _ = Command::new("pkill").args(["-KILL", "-U", &self.uid.to_string()]).status();
        for _ in 0..50 {
            match Command::new("userdel").arg(&self.name).output() {
                Ok(o) if o.status.success() => return,
                _ => thread::sleep(Duration::from_millis(100)),
            }
        }
        eprintln!("warning: could not remove the test user {}", self.name);
    }
}

/// What the user needs and nothing more: CAP_NET_RAW on a copy of aoefs
/// (`setcap cap_net_raw+ep`), a /dev/fuse it may open (this host's may be
/// 0600; then a 0666 node is bound over it in a private mount namespace,
/// as udev makes it elsewhere), the setuid fusermount3, and a mount point
/// it owns. The user mounts, writes, reads, and unmounts with
/// `fusermount3 -u`; aoefs then exits 0. Without the capability, and
/// without access to /dev/fuse, aoefs exits 1 saying what is missing.
#[test]
fn a_user_with_cap_net_raw_mounts_writes_reads_and_unmounts() {
    let (tb, img, _) = one_target(1500, 8 * MIB, Fill::Random(13));
    let user = TestUser::new();
    let bin = tb.dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    for d in [&tb.dir, &bin] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let capped = bin.join("aoefs");
    let plain = bin.join("aoefs-nocap");
    fs::copy(AOEFS, &capped).unwrap();
    fs::copy(AOEFS, &plain).unwrap();
    run(Command::new("setcap").arg("cap_net_raw+ep").arg(&capped));
    assert!(text(&run(Command::new("getcap").arg(&capped)).stdout).contains("cap_net_raw=ep"));
    let mnt = tb.mount_dir();
    std::os::unix::fs::chown(&mnt, Some(user.uid), None).unwrap();
    let work = tb.dir.join("user");
    fs::create_dir_all(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(user.uid), None).unwrap();
    let data = Rng::new(5).bytes(MIB as usize);
    fs::write(work.join("data"), &data).unwrap();
    fs::set_permissions(work.join("data"), fs::Permissions::from_mode(0o644)).unwrap();
    let dev_fuse_for_all = fs::metadata("/dev/fuse").unwrap().mode() & 0o666 == 0o666;

    // Everything the user does runs in a private mount namespace (its
    // mount is gone when the namespace ends); `as_user` drops to the
    // user, `in_ns` also enters the testbed's network namespace.
    let script = r#"
set -u
as_user() { setpriv --reuid="$U" --regid="$G" --init-groups "$@"; }
in_ns() { nsenter --net="$NS" setpriv --reuid="$U" --regid="$G" --init-groups "$@"; }
if [ "$FOR_ALL" = 0 ]; then
    in_ns "$CAPPED" "$MNT" -f --iflist "$IF" 2>"$WORK/nofuse.err"
    echo "nofuse-exit=$?"
    mknod "$WORK/fuse" c 10 229 && chmod 666 "$WORK/fuse" && mount --bind "$WORK/fuse" /dev/fuse || exit 90
fi
in_ns "$PLAIN" "$MNT" -f --iflist "$IF" 2>"$WORK/nocap.err"
echo "nocap-exit=$?"
in_ns "$CAPPED" "$MNT" -f --iflist "$IF" >"$WORK/aoefs.log" 2>&1 &
pid=$!
i=0
# (root may not look into a user's FUSE mount: the user checks)
while ! as_user test -e "$MNT/e0.1" && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
grep " $MNT " /proc/self/mountinfo | sed 's/^/mountinfo: /'
if ! grep -q " $MNT " /proc/self/mountinfo; then
    kill $pid 2>/dev/null; wait $pid; echo "not mounted; aoefs-exit=$?"; exit 0
fi
as_user dd if="$WORK/data" of="$MNT/e0.1" bs=64k seek=16 oflag=direct conv=notrunc,nocreat,fsync status=none
echo "write-exit=$?"
as_user dd if="$MNT/e0.1" of="$WORK/back" bs=64k skip=16 count=16 iflag=direct status=none; echo "read-exit=$?"
as_user cat "$MNT/block/e0.1/state" | sed 's/^/state: /'
as_user fusermount3 -u "$MNT"; echo "umount-exit=$?"
wait $pid; echo "aoefs-exit=$?"
"#;
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("U", user.uid.to_string())
        .env("G", user.gid.to_string())
        .env("NS", tb.ins_path())
        .env("IF", tb.init_if(0))
        .env("MNT", &mnt)
        .env("WORK", &work)
        .env("CAPPED", &capped)
        .env("PLAIN", &plain)
        .env("FOR_ALL", if dev_fuse_for_all { "1" } else { "0" });
    let out = run_timeout(&mut c, Duration::from_secs(120));
    let o = text(&out.stdout);
    let log = fs::read_to_string(work.join("aoefs.log")).unwrap_or_default();
    let has = |s: &str| o.lines().any(|l| l == s);
    if !dev_fuse_for_all {
        let e = fs::read_to_string(work.join("nofuse.err")).unwrap();
        assert!(has("nofuse-exit=1") && e.contains("/dev/fuse") && e.contains("readable and writable"), "{o}\n{e}");
    }
    let e = fs::read_to_string(work.join("nocap.err")).unwrap();
    assert!(has("nocap-exit=1"), "{o}\n{e}");
    assert!(e.contains("CAP_NET_RAW") && e.contains("setcap cap_net_raw+ep"), "{e}");
    assert!(
        o.lines().any(|l| l.starts_with("mountinfo: ") && l.contains(&format!("user_id={}", user.uid))),
        "not mounted as the user: {o}\n{log}"
    );
    for step in ["write-exit=0", "read-exit=0", "state: up", "umount-exit=0", "aoefs-exit=0"] {
        assert!(has(step), "{step} missing:\n{o}\n{log}");
    }
    assert_same("read back by the user", &read_all(&work.join("back")), &data);
    assert_same("the backing file", &read_all(&img)[MIB as usize..2 * MIB as usize], &data);
    assert!(!mountinfo_has(&mnt), "the user's mount leaked into the test's namespace");
}

// ---------------------------------------------------------------------------
// The Debian package
// ---------------------------------------------------------------------------

/// Purges the package in Drop if it is still installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if package_installed() {
            let _ = Command::new("dpkg").args(["--purge", "aoefs"]).output();
        }
    }
}

fn package_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "aoefs"])
        .output()
        .map(|o| text(&o.stdout).contains("installed") && !text(&o.stdout).contains("not-installed"))
        .unwrap_or(false)
}

/// Files and links to files the package owns (not directories, nor links
/// to them such as /sbin on a merged /usr).
fn package_files() -> Vec<PathBuf> {
    let out = run(Command::new("dpkg").args(["-L", "aoefs"]));
    text(&out.stdout).lines().map(PathBuf::from).filter(|p| fs::metadata(p).is_ok_and(|m| !m.is_dir())).collect()
}

/// Builds the package with cargo-deb from the binary under test into
/// `dir` (called under [`lock_host`]); the .deb. Its debug symbols go to
/// a -dbgsym .ddeb beside it.
fn build_package(dir: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let v = Command::new(&cargo).args(["deb", "--version"]).output();
    assert!(
        v.as_ref().is_ok_and(|o| o.status.success()),
        "cargo-deb is missing: install it with `cargo install cargo-deb` (.ci/run does)"
    );
    // cargo-deb packages target/release/aoefs: it must be the binary under test.
    let bin = fs::canonicalize(AOEFS).unwrap();
    assert!(bin.ends_with("release/aoefs"), "run the tests with --release (the package takes {})", bin.display());
    let mut c = Command::new(&cargo);
    c.args(["deb", "--no-build", "--fast", "--output"]).arg(dir).current_dir(top);
    run_timeout(&mut c, Duration::from_secs(300));
    let deb =
        fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "deb"));
    deb.expect("cargo deb made no .deb")
}

/// Builds the package with cargo-deb from the binary under test, installs
/// it, mounts through the installed mount.aoefs (mount -t aoefs and an
/// fstab line), checks the man pages, completions and unit, and purges it:
/// nothing it installed or the purge should remove is left.
#[test]
fn the_package_installs_mounts_through_its_helper_and_purges_cleanly() {
    let _lock = lock_host();
    check_prereqs();
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!package_installed(), "the aoefs package is installed on this machine; this test would replace it");
    for p in ["/sbin/mount.aoefs", "/usr/bin/aoefs"] {
        assert!(fs::symlink_metadata(p).is_err(), "{p} exists (install.sh?); this test would replace it");
    }

    let (tb, img, _) = one_target(9000, 16 * MIB, Fill::Random(13));
    let deb = build_package(&tb.dir.join("deb"));

    let _installed = Installed;
    run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(package_installed());
    let files = package_files();
    for (p, mode) in [
        ("/usr/bin/aoefs", 0o755),
        ("/usr/bin/aoefs-status", 0o755),
        ("/sbin/mount.aoefs", 0o755),
        ("/lib/systemd/system/aoefs@.service", 0o644),
        ("/etc/aoefs/aoefs.conf.example", 0o644),
        ("/usr/share/man/man8/aoefs.8.gz", 0o644),
        ("/usr/share/man/man8/mount.aoefs.8.gz", 0o644),
        ("/usr/share/man/man8/aoefs-status.8.gz", 0o644),
        ("/usr/share/doc/aoefs/changelog.Debian.gz", 0o644),
        ("/usr/share/lintian/overrides/aoefs", 0o644),
        ("/usr/share/bash-completion/completions/aoefs", 0o644),
        ("/usr/share/zsh/vendor-completions/_aoefs", 0o644),
        ("/usr/share/doc/aoefs/aoefs.txt", 0o644),
        ("/usr/share/doc/aoefs/README.md", 0o644),
    ] {
        let m = fs::metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(m.mode() & 0o7777, mode, "{p}");
        assert!(files.contains(&PathBuf::from(p)), "{p} is not the package's");
    }
    assert_eq!(fs::read_link("/sbin/mount.fuse.aoefs").unwrap(), PathBuf::from("mount.aoefs"));
    let version = run(Command::new("/usr/bin/aoefs").arg("--version"));
    assert_eq!(text(&version.stdout).trim(), format!("aoefs {}", env!("CARGO_PKG_VERSION")));

    // man, as a user would call it
    for (page, want) in [
        ("aoefs", "/usr/share/man/man8/aoefs.8.gz"),
        ("mount.aoefs", "/usr/share/man/man8/mount.aoefs.8.gz"),
        // man follows the symlink mount.fuse.aoefs.8.gz -> mount.aoefs.8.gz
        ("mount.fuse.aoefs", "/usr/share/man/man8/mount.aoefs.8.gz"),
        ("aoefs-status", "/usr/share/man/man8/aoefs-status.8.gz"),
    ] {
        let out = run(Command::new("man").args(["-w", page]));
        assert_eq!(text(&out.stdout).trim(), want, "man -w {page}");
    }
    assert_eq!(
        fs::read_link("/usr/share/man/man8/mount.fuse.aoefs.8.gz").unwrap(),
        PathBuf::from("mount.aoefs.8.gz"),
        "mount.fuse.aoefs(8) is mount.aoefs(8)"
    );
    let out = run(Command::new("man").args(["-P", "cat", "aoefs"]).env("MANWIDTH", "100"));
    for s in ["SYNOPSIS", "MOUNT OPTIONS", "FILES IN THE MOUNT", "EXIT STATUS", "aoefs iostat", "vblade(8)"] {
        assert!(text(&out.stdout).contains(s), "man aoefs lacks {s}");
    }
    let out = run(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/aoefs && complete -p aoefs && \
         COMP_WORDS=(aoefs io) COMP_CWORD=1 && _aoefs aoefs io aoefs && echo \"${COMPREPLY[@]}\"",
    ]));
    let o = text(&out.stdout);
    assert!(o.lines().any(|l| l.starts_with("complete ") && l.contains("-F _aoefs") && l.ends_with(" aoefs")), "{o}");
    assert!(text(&out.stdout).lines().any(|l| l.split(' ').any(|w| w == "iostat")), "{}", text(&out.stdout));

    // mount -t aoefs through the installed helper, which finds the
    // installed aoefs by itself
    let ifl = tb.init_if(0);
    let mnt = tb.mount_dir();
    let mnt_s = mnt.to_string_lossy().into_owned();
    let in_ns = |argv: &[&str]| {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", tb.ins_path())).args(argv).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        run_timeout(&mut c, Duration::from_secs(60))
    };
    in_ns(&["mount", "-t", "aoefs", &ifl, &mnt_s, "-o", "deadsecs=20"]);
    let use_mount = |what: &str| {
        let disk = mnt.join("e0.1");
        assert!(
            poll_until(APPEAR, || {
                let d = disk.clone();
                bounded("stat", Duration::from_secs(10), move || d.exists())
            }),
            "{what}: no e0.1"
        );
        assert_eq!(mounts_on(&mnt)[0].fstype, "fuse.aoefs", "{what}");
        let pid = tb
            .initiator_pids()
            .into_iter()
            .find(|p| fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == Path::new("/usr/bin/aoefs")))
            .unwrap_or_else(|| panic!("{what}: no /usr/bin/aoefs running"));
        let data = Rng::new(pid as u64).bytes(128 * 1024);
        let (d, p) = (data.clone(), disk.clone());
        bounded("write", Duration::from_secs(30), move || {
            let f = OpenOptions::new().write(true).open(&p).unwrap();
            f.write_all_at(&d, 2 * MIB).unwrap();
            f.sync_all().unwrap();
        });
        assert_same(what, &read_all(&img)[2 * MIB as usize..2 * MIB as usize + data.len()], &data);
        run(Command::new("umount").arg(&mnt));
        assert!(poll_until(Duration::from_secs(10), || !pid_alive(pid)), "{what}: aoefs still runs after umount");
    };
    use_mount("mount -t aoefs");
    // an fstab line of type fuse.aoefs (mount.fuse.aoefs)
    let fstab = tb.dir.join("fstab");
    fs::write(&fstab, format!("{ifl}  {mnt_s}  fuse.aoefs  defaults,_netdev,deadsecs=20,cache_mb=8  0 0\n")).unwrap();
    in_ns(&["mount", "--fstab", &fstab.to_string_lossy(), &mnt_s]);
    use_mount("fstab fuse.aoefs");

    // The unit systemctl would start (its exec lines are tested on the
    // repository's copy in helpers.rs).
    let unit = fs::read_to_string("/lib/systemd/system/aoefs@.service").unwrap();
    assert_eq!(unit, fs::read_to_string(top.join("mount-helpers/aoefs@.service")).unwrap());
    assert!(unit.lines().any(|l| l == "ExecStart=/usr/bin/aoefs %f -f $AOEFS_OPTIONS"), "{unit}");
    if Command::new("systemd-analyze").arg("--version").output().is_ok() {
        let out = run_unchecked(Command::new("systemd-analyze").args([
            "verify",
            "--man=no",
            "/lib/systemd/system/aoefs@mnt-etherd.service",
        ]));
        assert!(out.status.success() && out.stderr.is_empty(), "{}", text(&out.stderr));
    }

    // What an administrator adds, which purge removes too.
    fs::write("/etc/aoefs/mnt-etherd.conf", "AOEFS_OPTIONS=--iflist eth1\n").unwrap();
    let wants = Path::new("/etc/systemd/system/remote-fs.target.wants");
    let wants_existed = wants.exists();
    fs::create_dir_all(wants).unwrap();
    let link = wants.join("aoefs@mnt-etherd.service");
    std::os::unix::fs::symlink("/lib/systemd/system/aoefs@.service", &link).unwrap();

    run(Command::new("dpkg").args(["--purge", "aoefs"]));
    assert!(!package_installed());
    let left: Vec<&PathBuf> = files.iter().filter(|p| fs::symlink_metadata(p).is_ok()).collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
    for d in ["/etc/aoefs", "/usr/share/doc/aoefs"] {
        assert!(!Path::new(d).exists(), "{d} left after purge");
    }
    assert!(fs::symlink_metadata(&link).is_err(), "the enablement link is left");
    assert_eq!(wants.exists(), wants_existed, "{} was made or removed", wants.display());
    assert!(!run_unchecked(Command::new("man").args(["-w", "aoefs"])).status.success(), "man -w aoefs after purge");
}

/// The package passes lintian, Debian's own checker: no error and no
/// warning. Where a tag is right as it is, debian/aoefs.lintian-overrides
/// says why (lintian then reports it as overridden, not as a warning).
#[test]
fn the_package_passes_lintian() {
    let _lock = lock_host();
    check_prereqs();
    assert!(
        Command::new("lintian").arg("--version").output().is_ok_and(|o| o.status.success()),
        "lintian is missing: apt-get install lintian (.ci/run does)"
    );
    let dir = PathBuf::from(format!("/tmp/aoefs-lintian-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let _gone = RemoveOnDrop(dir.clone());
    let deb = build_package(&dir);
    let out = run_unchecked_timeout(
        Command::new("lintian").args(["--fail-on", "error,warning", "--display-info"]).arg(&deb),
        Duration::from_secs(300),
    )
    .unwrap();
    let report = text(&out.stdout);
    let tags: Vec<&str> = report.lines().filter(|l| l.starts_with("E: ") || l.starts_with("W: ")).collect();
    assert!(out.status.success() && tags.is_empty(), "lintian {}:\n{report}{}", deb.display(), text(&out.stderr));
    // Every override matches a tag lintian finds (info tags otherwise).
    assert!(!report.contains("unused-override") && !report.contains("mismatched-override"), "{report}");
}

// ---------------------------------------------------------------------------
// aoefs iostat, aoefs stat --json
// ---------------------------------------------------------------------------

/// One line of an iostat report, by column head.
fn columns(header: &str, line: &str) -> std::collections::HashMap<String, String> {
    header.split_whitespace().map(String::from).zip(line.split_whitespace().map(String::from)).collect()
}

fn num(row: &std::collections::HashMap<String, String>, k: &str) -> f64 {
    row[k].parse().unwrap_or_else(|_| panic!("{k}: {:?}", row[k]))
}

fn dd(args: &[&str]) {
    run(Command::new("dd").args(args).arg("status=none"));
}

fn near(what: &str, got: f64, want: f64) {
    assert!((got - want).abs() <= 0.2 * want, "{what}: {got:.2}, want {want:.2} within 20%");
}

/// `aoefs iostat MNT 1 2` prints two reports. The first covers the time
/// since the mount: its rates times that time are the dd runs done before
/// it. The second covers one second in which dd wrote 32 MiB and read
/// 16 MiB in 64 KiB O_DIRECT requests (one request to the target each:
/// no cache, no read-ahead): 512 writes/s, 256 reads/s, 32 and 16 MB/s.
#[test]
fn iostat_reports_match_known_dd_runs() {
    let (tb, _img, _) = one_target(9000, 64 * MIB, Fill::Random(13));
    let t_mount = Instant::now();
    let m = tb.mount_aoefs(&["--cache-mb", "0", "--readahead-kb", "0"]);
    let disk = m.expect_target("e0.1", APPEAR).to_string_lossy().into_owned();
    let of = format!("of={disk}");
    let iff = format!("if={disk}");
    dd(&["if=/dev/zero", &of, "bs=64k", "count=256", "oflag=direct", "conv=notrunc"]);
    dd(&[&iff, "of=/dev/null", "bs=64k", "count=128", "iflag=direct"]);
    // Long enough that the time from the start of aoefs to its discovery
    // of the target is small against it.
    thread::sleep(Duration::from_secs(2).saturating_sub(t_mount.elapsed()));

    let mut c = Command::new(AOEFS);
    c.arg("iostat").arg(&m.path).args(["1", "2"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let since_mount = t_mount.elapsed().as_secs_f64();
    let mut child = Killed(c.spawn().unwrap());
    // Its lines through a thread, so that a hung iostat fails the test.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            if tx.send(l.unwrap()).is_err() {
                return;
            }
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(10)).expect("iostat printed no more lines");
    let (head1, row1, blank1) = (next(), next(), next());
    // Within the second interval: dd after the first report.
    let t = Instant::now();
    dd(&["if=/dev/zero", &of, "bs=64k", "count=512", "oflag=direct", "conv=notrunc"]);
    dd(&[&iff, "of=/dev/null", "bs=64k", "count=256", "iflag=direct"]);
    let dd_time = t.elapsed();
    let (head2, row2, blank2) = (next(), next(), next());
    let st = child.0.wait().unwrap();
    assert!(st.success(), "iostat: {st}");
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_err(), "more than two reports");
    assert!(dd_time < Duration::from_millis(800), "the dd runs took {dd_time:?}, more than the interval allows");
    assert!(blank1.is_empty() && blank2.is_empty());
    for h in [&head1, &head2] {
        assert_eq!(
            h.split_whitespace().collect::<Vec<_>>(),
            ["Device", "r/s", "w/s", "rMB/s", "wMB/s", "r_await", "w_await", "retrans/s", "window", "state"]
        );
    }
    let (r1, r2) = (columns(&head1, &row1), columns(&head2, &row2));
    eprintln!("{head1}\n{row1}\n{row2}\n(first report over about {since_mount:.2} s; dd runs took {dd_time:?})");
    for r in [&r1, &r2] {
        assert_eq!((r["Device"].as_str(), r["state"].as_str()), ("e0.1", "up"));
        assert_eq!(num(r, "retrans/s"), 0.0);
        assert!(num(r, "window") >= 1.0);
        for k in ["r_await", "w_await"] {
            assert!(num(r, k) > 0.0 && num(r, k) < 100.0, "{k} {}", r[k]);
        }
    }
    near("first report: reads", num(&r1, "r/s") * since_mount, 128.0);
    near("first report: writes", num(&r1, "w/s") * since_mount, 256.0);
    near("first report: MB read", num(&r1, "rMB/s") * since_mount, 8.0);
    near("first report: MB written", num(&r1, "wMB/s") * since_mount, 16.0);
    near("second report: r/s", num(&r2, "r/s"), 256.0);
    near("second report: w/s", num(&r2, "w/s"), 512.0);
    near("second report: rMB/s", num(&r2, "rMB/s"), 16.0);
    near("second report: wMB/s", num(&r2, "wMB/s"), 32.0);
}

/// `aoefs stat --json` is JSON (python3's parser) with the table's fields
/// and the target's path.
#[test]
fn stat_json_parses_and_has_the_table_and_the_paths() {
    let (tb, _img, _) = one_target(1500, 8 * MIB, Fill::Random(13));
    let m = tb.mount_aoefs(&[]);
    m.expect_target("e0.1", APPEAR);
    let out = run(Command::new(AOEFS).arg("stat").arg("--json").arg(&m.path));
    let json = tb.dir.join("stat.json");
    fs::write(&json, &out.stdout).unwrap();
    run(Command::new("python3").args(["-m", "json.tool"]).arg(&json));
    let read = r#"
import json, sys
d = json.load(open(sys.argv[1]))
t = d["targets"][0]
p = t["paths"][0]
print(d["mountpoint"], len(d["targets"]), t["device"], t["sectors"], t["size"], t["netif"], t["payload"], t["state"],
      len(t["paths"]), p["interface"], p["mac"], p["failed"], p["frames_sent"] > 0)
"#;
    let out = run(Command::new("python3").args(["-c", read]).arg(&json));
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "{} 1 e0.1 {} {} {} 1024 up 1 {} {} False True",
            m.path.display(),
            8 * MIB / 512,
            aoe_stat_size(8 * MIB / 512),
            tb.init_if(0),
            tb.init_if(0),
            tb.target_mac(0)
        )
    );
}

// ---------------------------------------------------------------------------
// Quiet answers
// ---------------------------------------------------------------------------

/// Names cannot be made, removed or moved (errnos as on sysfs), isatty()
/// on a disk is false with ENOTTY, `ls -l` finds no extended attributes,
/// and a killed `err` reader is no error: none of it leaves a warning or
/// an error in the log.
#[test]
fn refused_names_isatty_and_a_killed_err_reader_are_quiet() {
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

    // A reader of err killed while it waits for a message.
    let mut cat = Killed(Command::new("cat").arg(m.path.join("err")).stdout(Stdio::null()).spawn().unwrap());
    thread::sleep(Duration::from_millis(200));
    cat.0.kill().unwrap();
    cat.0.wait().unwrap();
    // err answers a waiting read after 0.5 s: the answer to the dead reader
    // has gone (or failed) by now.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(m.read_status("e0.1", "state"), "up\n");
    let log = m.log_text();
    let noisy: Vec<&str> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
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
