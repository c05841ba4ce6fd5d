//! Who may do what, end to end against the real vblade: a read-only mount
//! (`-o ro`) and a target that refuses writes (vblade -r), other users on a
//! mount with and without allow_other, and a user without root who mounts
//! with CAP_NET_RAW.
//!
//! Run: `cargo test --release --features e2e --test e2e -- --test-threads=2 access::`
//! (as root; needs setpriv, setcap, useradd).

use crate::common::*;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

/// `-o ro` (other `-o` options parsed beside it): the image is 0444 (so
/// that allow_other readers can read), every open for writing (O_WRONLY,
/// O_RDWR, O_APPEND, O_TRUNC) fails with EROFS, reads are right, and the
/// target's file is unchanged. A target that refuses writes (vblade -r) on a
/// read-write mount becomes read-only: EROFS, then 0444.
#[test]
fn read_only_mount_and_read_only_target() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 8 * MIB, Fill::Random(81));
    tb.start_vblade(0, 1, &img, None);
    let img2 = tb.make_image("disk2.img", 8 * MIB, Fill::Zero);
    let mut vb = Command::new("ip");
    vb.args(["netns", "exec", &tb.tns, "vblade", "-r", "0", "2", &tb.target_if(0), &img2.to_string_lossy()]);
    tb.spawn_helper("vblade-ro", vb);
    // -o ro: images 0444, open for write EROFS, reads fine, -o options parsed.
    let m = tb.mount_aoefs(&["-o", "ro,deadsecs=30,cache_mb=8"]);
    let dev = m.expect_target(T, APPEAR);
    let mode = fs::metadata(&dev).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o444, "image mode on -o ro (contract: 0444 so allow_other readers can read)");
    for (what, wr, app) in [("O_WRONLY", true, false), ("O_RDWR", true, false), ("O_APPEND", false, true)] {
        let mut o = OpenOptions::new();
        if app {
            o.append(true);
        } else {
            o.write(wr);
        }
        if what == "O_RDWR" {
            o.read(true);
        }
        let r = o.open(&dev).map(|_| ());
        assert_eq!(errno_of(&r), Some(libc::EROFS), "open {} on -o ro: {:?}", what, r);
    }
    assert_same("ro read", &read_all(&dev)[..4096], &read_all(&img)[..4096]);
    let f = File::open(&dev).expect("open O_RDONLY on -o ro");
    assert_same("read on -o ro", &pread(&f, 0, MIB as usize).unwrap(), &read_all(&img)[..MIB as usize]);
    let r = bounded("truncate on ro", Duration::from_secs(10), {
        let dev = dev.clone();
        move || OpenOptions::new().write(true).truncate(true).open(&dev).map(|_| ())
    });
    assert_eq!(errno_of(&r), Some(libc::EROFS));
    assert_same("backing file unchanged", &read_all(&img), &read_all(&dev));
    drop(f);
    drop(m);
    // A target that refuses writes (vblade -r) becomes read-only: 0444, EROFS.
    let m = tb.mount_aoefs(&[]);
    let t = m.expect_target("e0.2", APPEAR);
    assert_eq!(fs::metadata(&t).unwrap().mode() & 0o777, 0o660);
    let f = OpenOptions::new().write(true).open(&t).unwrap();
    assert_eq!(f.write_at(&[1u8; 512], 0).unwrap_err().raw_os_error(), Some(libc::EROFS));
    drop(f);
    assert!(poll_until(Duration::from_secs(3), || fs::metadata(&t).unwrap().mode() & 0o777 == 0o444));
    assert!(read_all(&img2).iter().all(|&b| b == 0), "nothing written");
}

/// Runs `argv` as nobody (uid/gid 65534, no groups); returns (exit ok, stdout, stderr).
fn as_nobody(argv: &[&str]) -> (bool, Vec<u8>, String) {
    let out = run_unchecked_timeout(
        Command::new("setpriv").args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).args(argv),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{}", e));
    (out.status.success(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn mount_permissions_for_other_users() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 4 * MIB, Fill::Random(101));
    let _vb = tb.start_vblade(0, 1, &img, None);
    let want = read_all(&img)[..4096].to_vec();
    let dd = |dev: &Path| as_nobody(&["dd", &format!("if={}", dev.display()), "bs=4096", "count=1", "status=none"]);

    // 1. no allow_other: FUSE itself denies every access by another user,
    //    even to the mount root
    let m1 = tb.mount_aoefs(&[]);
    let dev1 = m1.expect_target(T, APPEAR);
    let (ok, _, err) = dd(&dev1);
    assert!(!ok && err.contains("Permission denied"), "nobody read e0.1 without allow_other: {}", err);
    let (ok, _, err) = as_nobody(&["stat", &m1.path.to_string_lossy()]);
    assert!(!ok && err.contains("Permission denied"), "nobody could stat the mount root without allow_other: {}", err);
    drop(m1);

    // 2. allow_other, rw: the root is listable, the 0660 root-owned image is not readable
    let m2 = tb.mount_aoefs(&["-o", "allow_other"]);
    let dev2 = m2.expect_target(T, APPEAR);
    let (ok, out, err) = as_nobody(&["ls", &m2.path.to_string_lossy()]);
    assert!(ok && String::from_utf8_lossy(&out).contains("e0.1"), "nobody cannot list with allow_other: {}", err);
    assert_eq!(fs::metadata(&dev2).unwrap().mode() & 0o777, 0o660);
    let (ok, _, err) = dd(&dev2);
    assert!(!ok && err.contains("Permission denied"), "nobody read a 0660 root image: {}", err);
    drop(m2);

    // 3. allow_other,ro: images are 0444, nobody reads them (and cannot write)
    let m3 = tb.mount_aoefs(&["-o", "allow_other,ro"]);
    let dev3 = m3.expect_target(T, APPEAR);
    let mode = fs::metadata(&dev3).unwrap().mode() & 0o777;
    let (ok, out, err) = dd(&dev3);
    assert!(ok, "nobody cannot read e0.1 on allow_other,ro (image mode {:o}): {}", mode, err);
    assert_same("e0.1 read by nobody", &out, &want);
    let (ok, _, err) = as_nobody(&[
        "dd",
        "if=/dev/zero",
        &format!("of={}", dev3.display()),
        "bs=512",
        "count=1",
        "conv=notrunc",
        "status=none",
    ]);
    assert!(!ok && (err.contains("Read-only") || err.contains("Permission denied")), "nobody wrote on ro: {}", err);
}

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
