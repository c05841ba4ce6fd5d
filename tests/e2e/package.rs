//! The Debian package, end to end: built with cargo-deb from the binary
//! under test, installed, mounted through its helper (mount -t aoefs and an
//! fstab line), its man pages, completions and unit checked, and purged;
//! and lintian's verdict on it.
//!
//! Run: `cargo test --release --features e2e --test e2e -- --test-threads=2 package::`
//! (as root; needs cargo-deb, man-db and lintian, which .ci/run installs).

use crate::common::*;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
    // repository's copy in mount_helpers.rs).
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
