//! Partitions, end to end against the real vblade: the partitions of a DOS
//! or GPT table on the target are files beside the disk (eX.YpN), writes
//! through them land at the partition's offset, revalidate reads a new
//! table, and a table rewritten through the mount (sfdisk) is read again
//! when the writer closes the disk, as udev makes the kernel do.
//!
//! Run: `cargo test --release --features e2e --test e2e -- --test-threads=2 partitions::`
//! (as root; needs fdisk).

use crate::common::*;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The partition files of e0.1 in the mount root, sorted by number.
fn partition_files(m: &Mount) -> Vec<String> {
    let mut v: Vec<String> = m.list().into_iter().filter(|n| n.starts_with("e0.1p")).collect();
    v.sort_by_key(|n| n[5..].parse::<u32>().unwrap_or(0));
    v
}

/// The partitions sfdisk reads from `file` (number, start sector, sectors),
/// from `sfdisk -d`: what the tests compare the mount with.
fn sfdisk_dump(file: &Path) -> Vec<(u32, u64, u64)> {
    let out = run(Command::new("sfdisk").arg("-d").arg(file));
    let name = file.to_string_lossy().into_owned();
    let mut v = Vec::new();
    for l in text(&out.stdout).lines() {
        let Some((dev, rest)) = l.split_once(" : ") else { continue };
        let Some(n) = dev.trim().strip_prefix(name.as_str()).and_then(|n| n.parse().ok()) else { continue };
        let field = |k: &str| -> u64 {
            let i = rest.find(&format!("{k}=")).unwrap_or_else(|| panic!("no {k} in {l}"));
            rest[i + k.len() + 1..].split(',').next().unwrap().trim().parse().unwrap()
        };
        v.push((n, field("start"), field("size")));
    }
    v
}

#[test]
fn partitions_appear_as_files_and_follow_revalidate() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 96 * MIB, Fill::Zero);
    sfdisk(&img, "label: dos\n,16M,83\n,,83\n");
    tb.start_vblade(0, 1, &img, None);
    let m = tb.mount_aoefs(&[]);
    m.expect_target("e0.1", APPEAR);
    let names = m.list();
    assert!(names.contains(&"e0.1p1".to_string()) && names.contains(&"e0.1p2".to_string()), "{names:?}");
    let p1 = m.path.join("e0.1p1");
    assert_eq!(fs::metadata(&p1).unwrap().len(), 16 * MIB);
    assert_eq!(fs::metadata(m.path.join("e0.1p2")).unwrap().len(), 96 * MIB - 16 * MIB - MIB);
    // Writes through p1 land at the partition's offset (1 MiB, sfdisk's default).
    let data = vec![0x5au8; 8192];
    OpenOptions::new().write(true).open(&p1).unwrap().write_all_at(&data, 4096).unwrap();
    let back = read_all(&img);
    assert_same("partition write", &back[(MIB + 4096) as usize..(MIB + 4096 + 8192) as usize], &data);
    // Past the partition's end: short write, then ENOSPC.
    let f = OpenOptions::new().write(true).open(&p1).unwrap();
    assert_eq!(f.write_at(&[1u8; 1024], 16 * MIB - 512).unwrap(), 512);
    assert_eq!(f.write_at(&[1u8; 512], 16 * MIB).unwrap_err().raw_os_error(), Some(libc::ENOSPC));
    drop(f);
    // mkfs + mount through a loop device on the partition file.
    let dev = m.losetup(&m.path.join("e0.1p2"));
    run(Command::new("mkfs.ext4").args(["-q", "-F", &dev]));
    let dir = tb.dir.join("p2");
    fs::create_dir_all(&dir).unwrap();
    m.mount_dev(&dev, &dir);
    fs::write(dir.join("hello"), b"partition").unwrap();
    m.umount_dev(&dir);
    run(Command::new("fsck.ext4").args(["-n", "-f", &dev]));
    m.detach_loop(&dev);
    // Repartition (GPT, 3 partitions) through the image, then revalidate.
    sfdisk(&m.path.join("e0.1"), "label: gpt\nsize=8M, name=a\nsize=8M, name=b\nsize=8M, name=c\n");
    m.write_ctl("revalidate", b"e0.1").unwrap();
    assert!(poll_until(Duration::from_secs(5), || m.list().contains(&"e0.1p3".to_string())), "{:?}", m.list());
    assert_eq!(fs::metadata(m.path.join("e0.1p3")).unwrap().len(), 8 * MIB);
}

/// Rule: when a writer closes the disk after writing the sectors that hold
/// its partition table, the table is read again (as udev makes the kernel
/// do); while a partition file is open the table it belongs to stays (the
/// open file is never remapped) until the last partition file is closed.
/// The extended partition itself is listed as the kernel lists it: its
/// first 2 sectors.
#[test]
fn a_rewritten_partition_table_is_read_again_when_the_writer_closes() {
    let tb = Testbed::new(1500);
    let img = tb.make_image("disk.img", 96 * MIB, Fill::Zero);
    sfdisk(&img, "label: dos\n,16M,83\n,16M,83\n,,5\n,8M,83\n,8M,83\n");
    let dos = sfdisk_dump(&img);
    assert_eq!(dos.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3, 5, 6], "sfdisk made {dos:?}");
    tb.start_vblade(0, 1, &img, None);
    let m = tb.mount_aoefs(&[]);
    let disk = m.expect_target("e0.1", APPEAR);
    let file = |n: u32| m.path.join(format!("e0.1p{n}"));
    assert_eq!(partition_files(&m), ["e0.1p1", "e0.1p2", "e0.1p3", "e0.1p5", "e0.1p6"]);
    for &(n, _, sectors) in &dos {
        // The extended partition: 2 sectors (1 KiB), as /sys/block shows it.
        let want = if n == 3 { 1024 } else { sectors * 512 };
        assert_eq!(fs::metadata(file(n)).unwrap().len(), want, "size of e0.1p{n}");
    }
    let (_, ext_start, _) = dos[2];
    let ebr = &read_all(&img)[(ext_start * 512) as usize..(ext_start * 512 + 1024) as usize];
    assert_same("e0.1p3 is the extended partition's first 2 sectors", &read_all(&file(3)), ebr);
    assert_eq!(&ebr[510..512], [0x55, 0xaa], "the first EBR");

    // Relabel as GPT through the mount while e0.1p5 is open.
    let (_, p5_start, _) = dos[3];
    let p5 = open_rw(&file(5));
    sfdisk(&disk, "label: gpt\nsize=8M, name=a\nsize=8M, name=b\nsize=8M, name=c\n");
    let gpt = sfdisk_dump(&img);
    assert_eq!(gpt.len(), 3, "sfdisk wrote {gpt:?}");
    // The old table stays while e0.1p5 is open; writes through it land
    // where they did.
    assert_eq!(partition_files(&m), ["e0.1p1", "e0.1p2", "e0.1p3", "e0.1p5", "e0.1p6"], "while e0.1p5 is open");
    p5.write_all_at(b"still p5", 4096).unwrap();
    p5.sync_all().unwrap();
    let at = (p5_start * 512 + 4096) as usize;
    assert_eq!(&read_all(&img)[at..at + 8], b"still p5");
    let errs = m.err_messages(100);
    assert!(errs.iter().any(|l| l.starts_with("e0.1: ") && l.contains("e0.1p5")), "err says why: {errs:?}");
    // Closed: the new table, without revalidate (FUSE's release comes
    // after close returns: poll).
    drop(p5);
    let names: Vec<String> = gpt.iter().map(|p| format!("e0.1p{}", p.0)).collect();
    assert!(poll_until(Duration::from_secs(3), || partition_files(&m) == names), "{:?}", partition_files(&m));
    for &(n, start, sectors) in &gpt {
        assert_eq!(fs::metadata(file(n)).unwrap().len(), sectors * 512, "size of GPT e0.1p{n}");
        let tag = format!("GPT partition {n}");
        open_rw(&file(n)).write_all_at(tag.as_bytes(), 512).unwrap();
        let at = (start * 512 + 512) as usize;
        assert_eq!(&read_all(&img)[at..at + tag.len()], tag.as_bytes(), "write through e0.1p{n}");
    }

    // With nothing open, the listing changes as soon as sfdisk has closed
    // the disk (close waits for FUSE's flush).
    sfdisk(&disk, "label: dos\n,32M,83\n");
    assert_eq!(partition_files(&m), ["e0.1p1"]);
    assert_eq!(fs::metadata(file(1)).unwrap().len(), 32 * MIB);
    // A write elsewhere on the disk (not the table) changes nothing.
    open_rw(&disk).write_all_at(&[0x55; 4096], 40 * MIB).unwrap();
    assert_eq!(partition_files(&m), ["e0.1p1"]);
}
