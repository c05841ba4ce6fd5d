//! The subcommands that work through a mount's files, end to end against
//! the real vblade: stat, discover, flush and revalidate, `aoefs iostat`
//! against known dd runs, and `aoefs stat --json`.
//!
//! Run: `cargo test --release --features e2e --test e2e -- --test-threads=2 subcommands::`
//! (as root; needs aoetools and python3).

use crate::common::*;
use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn subcommands_stat_discover_flush_revalidate() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 64 * MIB, Fill::Zero);
    tb.start_vblade(2, 5, &img, None);
    let m = tb.mount_aoefs(&[]);
    m.expect_target("e2.5", APPEAR);
    let mnt = m.path.to_string_lossy().to_string();
    let out = run(Command::new(AOEFS).args(["stat", &mnt]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let want = format!("{:>10} {:>15} {:>10} {:<5} {:<14}\n", "e2.5", "0.067GB", tb.init_if(0), "1024", "up");
    assert_eq!(text, want);
    // aoe-stat from aoetools reads the same tree.
    let out = run(Command::new("aoe-stat").env("sysfs_dir", &mnt));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0.067GB"));
    // A late target, found through the discover subcommand.
    let img2 = tb.make_image("disk2.img", 8 * MIB, Fill::Zero);
    let vb2 = tb.start_vblade(2, 6, &img2, None);
    run(Command::new(AOEFS).args(["discover", &mnt]));
    m.expect_target("e2.6", APPEAR);
    run(Command::new(AOEFS).args(["revalidate", &mnt, "e2.6"]));
    // Bad input: one-line error, non-zero exit.
    let out = run_unchecked(Command::new(AOEFS).args(["revalidate", &mnt, "garbage"]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let out = run_unchecked(Command::new(AOEFS).args(["stat", "/nonexistent-aoefs"]));
    assert_eq!(out.status.code(), Some(1));
    // flush: a down, unused target is forgotten.
    tb.kill_vblade(vb2);
    m.write_ctl("flush", b"e2.6").unwrap();
    assert!(!m.list().contains(&"e2.6".to_string()));
    run(Command::new(AOEFS).args(["flush", &mnt]));
    assert!(m.list().contains(&"e2.5".to_string()), "an up target stays");
}

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
