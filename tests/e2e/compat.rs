//! End-to-end tests of aoefs with the tools people already run against the
//! Linux aoe driver, and of the places where it behaves as the driver does
//! (issue 21): Debian's aoetools (aoe-stat, aoe-interfaces and aoe-flush's
//! name check; aoeping and aoecfg beside the mount), writes as shell and
//! Python scripts make them, a target flushed and found again, messages a
//! user can act on, and the raw IDENTIFY block decoded by hdparm (a
//! partition table rewritten by sfdisk: partitions.rs). Each test runs the
//! real vblade in its own network namespaces.
//!
//! Run: `cargo test --release --features e2e --test e2e -- --test-threads=2 compat::`
//! (as root; needs aoetools, fdisk, python3 and hdparm, which .ci/run
//! installs).

use crate::common::*;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// `aoefs ARGS` (a subcommand working through the mount's files).
fn aoefs(args: &[&str]) -> Output {
    run_unchecked(Command::new(AOEFS).args(args))
}

/// Opens `p` for writing and writes each of `writes` with one write(2),
/// as a program that writes a line in pieces does; the first error.
fn write_pieces(p: &Path, writes: &[&[u8]]) -> io::Result<()> {
    let p = p.to_path_buf();
    let writes: Vec<Vec<u8>> = writes.iter().map(|w| w.to_vec()).collect();
    bounded(&format!("write {}", p.display()), Duration::from_secs(30), move || {
        let mut f = OpenOptions::new().write(true).open(&p)?;
        for w in &writes {
            let n = f.write(w)?;
            if n != w.len() {
                return Err(io::Error::other(format!("short write {n} of {}", w.len())));
            }
        }
        Ok(())
    })
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

/// Rule: a command may end in a NUL or a newline (aoe-interfaces writes
/// `printf '%s\0'`, which the driver accepts), and a write of only a
/// newline after a command on the same open file (Python's print() without
/// buffering writes the line and then "\n") is not a second command.
#[test]
fn nul_terminated_and_split_lines_are_one_command() {
    let tb = Testbed::new(1500);
    tb.add_veth(1500);
    let img = tb.make_image("disk.img", 8 * MIB, Fill::Zero);
    tb.start_vblade(0, 1, &img, None);
    let (if0, if1) = (tb.init_if(0), tb.init_if(1));
    let m = tb.mount_aoefs_iflist(&if0, &[]);
    m.expect_target("e0.1", APPEAR);
    // The real aoe-interfaces, in a mount namespace of its own where the
    // driver's parameter file is MNT/interfaces and /sys shows the
    // initiator namespace's interfaces (which it checks).
    let iflist = m.path.join("interfaces");
    let script = r#"set -e
        mount -t sysfs sysfs /sys
        mount -t tmpfs tmpfs /sys/module
        mkdir -p /sys/module/aoe/parameters
        : > /sys/module/aoe/parameters/aoe_iflist
        mount --bind "$1" /sys/module/aoe/parameters/aoe_iflist
        shift
        aoe-interfaces "$@"
        aoe-interfaces"#;
    let out = run(Command::new("nsenter").arg(format!("--net={}", tb.ins_path())).args([
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        &iflist.to_string_lossy(),
        &if0,
        &if1,
    ]));
    assert_eq!(text(&out.stdout), format!("{if0} {if1}\n"), "aoe-interfaces lists what it set");
    assert_eq!(m.read_ctl("interfaces"), format!("{if0} {if1}\n"));
    // The same write without aoe-interfaces, and with a newline before the NUL.
    m.write_ctl("interfaces", format!("{if0}\0").as_bytes()).expect("interfaces <- \"IF\\0\"");
    assert_eq!(m.read_ctl("interfaces"), format!("{if0}\n"));
    m.write_ctl("interfaces", format!("{if0} {if1}\n\0").as_bytes()).expect("interfaces <- \"IF IF\\n\\0\"");
    assert_eq!(m.read_ctl("interfaces"), format!("{if0} {if1}\n"));
    // A NUL inside a command is still refused.
    let r = m.write_ctl("interfaces", format!("{if0}\0{if1}").as_bytes());
    assert_eq!(r.map_err(|e| e.raw_os_error()), Err(Some(libc::EINVAL)), "a NUL inside the list");

    // print() of Python, unbuffered (PYTHONUNBUFFERED=1 or -u): the line,
    // then "\n", in two writes.
    let config = m.attr_path("e0.1", "config");
    m.write_ctl("block/e0.1/config", b"rack 3\n").expect("set the first config string");
    let py = "python3 -u -c 'print(\"!rack 7 disk 2\")' > \"$1\"";
    let out = run_unchecked(Command::new("sh").args(["-c", py, "sh", &config.to_string_lossy()]));
    assert!(out.status.success(), "{py}: {}", text(&out.stderr));
    assert_eq!(m.bounded_read(&config).unwrap(), "rack 7 disk 2\n");
    // The same two writes, to a control file: one revalidate, no EINVAL.
    write_pieces(&m.path.join("revalidate"), &[b"e0.1", b"\n"]).expect("revalidate in two writes");
    // A string and its newline to reserve: the newline releases nothing.
    write_pieces(&m.attr_path("e0.1", "reserve"), &[b"self", b"\n"]).expect("reserve in two writes");
    assert_eq!(m.bounded_read(&m.attr_path("e0.1", "reserve")).unwrap(), format!("{}\n", tb.init_mac(0)));
    write_pieces(&m.attr_path("e0.1", "reserve"), &[b"release"]).expect("release");
    // A newline alone as the first write is still a command: `echo >
    // flush` forgets targets that are down and unused (none here).
    m.write_ctl("flush", b"\n").expect("echo > flush");
    assert_eq!(m.targets(), ["e0.1"]);
}

/// Rule: a name is listed only once its files exist: right after a target
/// is flushed and found again, its status directory and its image open.
#[test]
fn a_target_flushed_and_found_again_is_whole_when_listed() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 8 * MIB, Fill::Zero);
    tb.start_vblade(1, 2, &img, None);
    let m = tb.mount_aoefs(&[]);
    m.expect_target("e1.2", APPEAR);
    let mnt = m.path.to_string_lossy().into_owned();
    for round in 0..3 {
        // Looked up just before: the kernel may keep the names for a while.
        assert_eq!(m.read_status("e1.2", "state"), "up\n", "round {round}");
        File::open(m.target("e1.2")).unwrap();
        let out = aoefs(&["flush", &mnt, "e1.2"]);
        assert!(out.status.success(), "aoefs flush: {}", text(&out.stderr));
        assert_eq!(block_names(&m), Vec::<String>::new(), "round {round}: flushed");
        m.discover();
        assert!(poll_until(APPEAR, || block_names(&m) == ["e1.2"]), "round {round}: not found again");
        let state = m.bounded_read(&m.attr_path("e1.2", "state"));
        assert_eq!(state.map_err(|e| e.to_string()), Ok("up\n".to_string()), "round {round}: state once listed");
        File::open(m.target("e1.2")).unwrap_or_else(|e| panic!("round {round}: open e1.2 once listed: {e}"));
        let stat = text(&aoefs(&["stat", &mnt]).stdout);
        assert!(stat.contains(" up") && !stat.contains("(NA)"), "round {round}: aoefs stat: {stat:?}");
    }
}

/// Rule: what fails says what to do: the subcommands name the target that
/// does not exist, a refused config string says --force overrides it, and
/// a target that comes back up after being down says so on `err`, as its
/// going down does.
#[test]
fn messages_name_the_target_and_what_to_do() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 8 * MIB, Fill::Zero);
    let vb = tb.start_vblade(0, 1, &img, None);
    let m = tb.mount_aoefs(&["--deadsecs", "2", "--cache-mb", "0", "--readahead-kb", "0"]);
    let disk = m.expect_target("e0.1", APPEAR);
    let mnt = m.path.to_string_lossy().into_owned();
    for args in [["flush", &mnt, "e9.9"], ["revalidate", &mnt, "e9.9"]] {
        let out = aoefs(&args);
        assert_eq!(out.status.code(), Some(1), "aoefs {args:?}");
        assert_eq!(text(&out.stderr), "aoefs: e9.9: no such target\n", "aoefs {args:?}");
    }
    let out = aoefs(&["revalidate", &mnt, "garbage"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("garbage") && text(&out.stderr).contains("eX.Y"), "{}", text(&out.stderr));
    // A config string that differs from the target's.
    let out = aoefs(&["config", &mnt, "e0.1", "rack 1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    m.err_messages(1000);
    let out = aoefs(&["config", &mnt, "e0.1", "rack 2"]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(e.starts_with("aoefs: e0.1: ") && e.contains("another config string") && e.contains("--force"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    let errs = m.err_messages(10);
    assert!(
        errs.iter().any(|l| l.starts_with("e0.1: config: ") && l.contains("another config string") && l.contains('!')),
        "err: {errs:?}"
    );
    // Down, and up again.
    tb.kill_vblade(vb);
    let f = File::open(&disk).unwrap();
    let r = bounded("read from a dead target", Duration::from_secs(30), move || pread(&f, 4 * MIB, 4096).map(|_| ()));
    assert_eq!(r.map_err(|e| e.raw_os_error()), Err(Some(libc::EIO)));
    assert_eq!(m.wait_status("e0.1", "state", "down\n", APPEAR), "down\n");
    tb.restart_vblade(vb);
    assert_eq!(m.wait_status("e0.1", "state", "up\n", APPEAR), "up\n");
    let errs = m.err_messages(100);
    let down = errs.iter().position(|l| l == "e0.1: no response for 2 s, device marked down");
    let up = errs.iter().position(|l| l.starts_with("e0.1: ") && l.ends_with("device marked up"));
    assert!(down.is_some() && up > down, "err: {errs:?}");
}

/// Rule: block/eX.Y/identify is the target's 512-byte IDENTIFY block, as
/// the target sent it: hdparm decodes it (through the hex words its
/// --Istdin reads, as the documentation shows).
#[test]
fn identify_is_the_raw_block_and_hdparm_decodes_it() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 64 * MIB, Fill::Zero);
    tb.start_vblade(0, 1, &img, None);
    let m = tb.mount_aoefs(&[]);
    m.expect_target("e0.1", APPEAR);
    let p = m.attr_path("e0.1", "identify");
    assert_eq!(fs::metadata(&p).unwrap().len(), 512);
    let id = read_all(&p);
    assert_eq!(id.len(), 512);
    let word = |w: usize| u16::from_le_bytes([id[2 * w], id[2 * w + 1]]) as u64;
    // vblade 25: LBA48 size in words 100-103; word 83 0x5400.
    assert_eq!(word(83), 0x5400);
    assert_eq!((0..4).map(|i| word(100 + i) << (16 * i)).sum::<u64>(), 64 * MIB / 512);
    let ata_string = |first: usize, words: usize| -> String {
        (first..first + words).flat_map(|w| [(word(w) >> 8) as u8 as char, word(w) as u8 as char]).collect()
    };
    assert_eq!(ata_string(27, 20).trim_end(), m.read_status("e0.1", "model").trim_end());
    assert_eq!(ata_string(10, 10).trim_end(), m.read_status("e0.1", "serial").trim_end());
    assert!(
        Command::new("hdparm").arg("-V").output().is_ok(),
        "hdparm is missing: apt-get install hdparm (.ci/run does)"
    );
    let out = run(Command::new("sh").args([
        "-c",
        "od -An -tx2 -v \"$1\" | sed 's/^ *//' | hdparm --Istdin",
        "sh",
        &p.to_string_lossy(),
    ]));
    let o = text(&out.stdout);
    for want in [
        "Model Number:       Coraid EtherDrive vblade".to_string(),
        format!("Serial Number:      {}", m.read_status("e0.1", "serial").trim_end()),
        format!("LBA48  user addressable sectors:      {}", 64 * MIB / 512),
    ] {
        assert!(o.contains(&want), "hdparm --Istdin lacks {want:?}:\n{o}");
    }
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
