//! Data through aoefs, end to end against the real vblade: writes and reads
//! that land exact in the target's file (random, unaligned, concurrent, ext4
//! on a loop device), the target's file written beside the mount, the image
//! file's size and end, and the frames on the wire for them (one FLUSH CACHE
//! per fsync, none malformed).
//!
//! Run: `cargo test --release --features e2e --test e2e -- --test-threads=2 data::`
//! (as root).

use crate::common::*;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Image size of the data tests.
const IMG: u64 = 32 * MIB;

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
    // With busy-polling on after every burst (given the fstab way; the
    // other tests poll as the default `auto` does), so that its receive
    // loop is also exercised under load, with the data checked.
    let s = setup(1500, IMG, Fill::Random(3), &["-o", "busy_poll=on,busy_poll_us=200"]);
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
fn image_file_truncate_refused_and_writes_stop_at_the_end() {
    let tb = Testbed::new(1500);
    let size = 8 * MIB;
    let img = tb.make_image("disk.img", size, Fill::Random(91));
    let _vb = tb.start_vblade(0, 1, &img, None);
    let m = tb.mount_aoefs(&[]);
    let dev = m.expect_target(T, APPEAR);
    let mut model = read_all(&img);
    let f = open_rw(&dev);
    for len in [0, 4096, size - 512, size + 4096] {
        let r = f.set_len(len);
        assert_eq!(errno_of(&r), Some(libc::EPERM), "truncate to {}: {:?}", len, r);
    }
    // same size: a no-op that succeeds
    f.set_len(size).expect("truncate to the current size");
    // O_TRUNC at open is ignored, as on a block device
    drop(OpenOptions::new().write(true).truncate(true).open(&dev).expect("open O_TRUNC"));
    assert_eq!(fs::metadata(&dev).unwrap().len(), size);
    // a write across the end is short; at the end: ENOSPC
    let d = Rng::new(92).bytes(4096);
    let n = f.write_at(&d, size - 1024).expect("write across the end");
    assert_eq!(n, 1024, "write across the end should be short");
    model[size as usize - 1024..].copy_from_slice(&d[..1024]);
    let r = f.write_at(&d, size);
    assert_eq!(errno_of(&r), Some(libc::ENOSPC), "write at the end: {:?}", r);
    let r = f.write_at(&d, size + 10 * MIB);
    assert_eq!(errno_of(&r), Some(libc::ENOSPC), "write past the end: {:?}", r);
    // a read across the end is short, at the end empty
    let mut buf = vec![0u8; 4096];
    assert_eq!(f.read_at(&mut buf, size - 100).unwrap(), 100);
    assert_eq!(f.read_at(&mut buf, size).unwrap(), 0);
    f.sync_all().unwrap();
    assert_eq!(fs::metadata(&dev).unwrap().len(), size);
    assert_same("backing file", &read_all(&img), &model);
    assert_eq!(fs::metadata(&img).unwrap().len(), size, "backing file size changed");
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

/// CPU time (user + system, clock ticks) the process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // After the command name in parentheses: fields 3.. ; utime and stime
    // are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Busy-polling (`auto`, the default) polls for replies a caller waits for,
/// never once the reads stopped: a mount left idle after small reads one at
/// a time uses no CPU. (With a budget long enough that every read's reply
/// is polled for.)
#[test]
fn an_idle_mount_after_small_reads_uses_no_cpu() {
    let s = setup(1500, IMG, Fill::Random(5), &["--cache-mb", "0", "--busy-poll-us", "1000"]);
    let f = File::open(s.m.target("e0.1")).expect("open");
    let mut buf = vec![0u8; 4096];
    for i in 0..2000u64 {
        // Not sequential: no read-ahead, each read goes to the target.
        f.read_exact_at(&mut buf, (i * 7919 % 8000) * 4096).expect("read");
    }
    std::thread::sleep(Duration::from_millis(300));
    let t0 = cpu_ticks(s.m.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(s.m.pid()) - t0;
    // 200 ticks would be a CPU spinning all along.
    assert!(used <= 10, "aoefs used {used} clock ticks of CPU in 2 s idle");
}
