//! Self-tests of the integration harness (tests/common): namespaces, veth,
//! vblade, tshark capture and teardown. These do not need aoefs to work,
//! but for the teardown of a test that panics with aoefs mounted.

use crate::common::*;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[test]
fn harness_testbed_veth_vblade_capture() {
    let tb = Testbed::new(9000);
    let k = tb.add_veth(1500);
    assert_eq!(k, 1);
    // interfaces exist in the namespaces with the right MTU, not in the root namespace
    for (ns, ifn, mtu) in [
        (&tb.ins, tb.init_if(0), 9000),
        (&tb.tns, tb.target_if(0), 9000),
        (&tb.ins, tb.init_if(1), 1500),
        (&tb.tns, tb.target_if(1), 1500),
    ] {
        let out = sh(&["ip", "-n", ns, "-o", "link", "show", &ifn]);
        assert!(out.contains(&format!("mtu {} ", mtu)), "{}", out);
        assert!(out.contains("LOWER_UP"), "{}", out);
        assert!(ifn.len() <= 15);
    }
    let root = sh(&["ip", "-o", "link"]);
    assert!(!root.contains(&format!("{}@", tb.init_if(0))), "veth leaked into root ns: {}", root);
    assert_eq!(tb.target_mac(0).len(), 12);
    assert!(tb.target_mac(0).chars().all(|c| c.is_ascii_hexdigit()));

    let img = tb.make_image("disk.img", 8 << 20, Fill::Random(7));
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 8 << 20);

    // capture vblade's start-up announcement on the initiator side? We capture
    // on the target side as the e2e tests do: outgoing frames are captured too.
    let pcap = tb.dir.join("cap.pcapng");
    let cap = tb.start_capture(0, &pcap, 30);
    let vb = tb.start_vblade(0, 1, &img, Some(8));
    let pid = tb.vblade_pid(vb).unwrap();
    assert!(pid_alive(pid));
    std::thread::sleep(Duration::from_millis(500));
    tb.stop_helper(cap, libc::SIGINT, Duration::from_secs(10));
    assert!(tshark_count(&pcap, "aoe") >= 1, "no AoE frame captured");
    assert_eq!(
        tshark_count(&pcap, "_ws.malformed || _ws.expert.severity >= warning"),
        0,
        "{}",
        tshark_list(&pcap, "_ws.malformed || _ws.expert.severity >= warning", 20)
    );
    tb.kill_vblade(vb);
    assert!(!pid_alive(pid), "vblade survived kill_vblade");
}

#[test]
fn harness_teardown_on_panic() {
    check_prereqs();
    let mut names = None;
    let mut pid = None;
    let mut dir = None;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let tb = Testbed::new(1500);
        let img = tb.make_image("x.img", 1 << 20, Fill::Zero);
        let vb = tb.start_vblade(3, 4, &img, None);
        names = Some((tb.ins.clone(), tb.tns.clone()));
        pid = tb.vblade_pid(vb);
        dir = Some(tb.dir.clone());
        panic!("deliberate panic to test teardown");
    }));
    assert!(r.is_err());
    let (ins, tns) = names.unwrap();
    let ns = netns_list();
    assert!(!ns.contains(&ins) && !ns.contains(&tns), "namespaces left: {:?}", ns);
    assert!(!pid_alive(pid.unwrap()), "vblade left running");
    assert!(!dir.unwrap().exists(), "temp dir left");
}

#[test]
fn harness_parallel_testbeds() {
    check_prereqs();
    let hs: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let tb = Testbed::new(1500 + i * 100);
                let img = tb.make_image("p.img", 1 << 20, Fill::Zero);
                let _vb = tb.start_vblade(i as u16, 1, &img, None);
                (tb.ins.clone(), tb.tns.clone())
            })
        })
        .collect();
    let names: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    let ns = netns_list();
    for (i, t) in names {
        assert!(!ns.contains(&i) && !ns.contains(&t));
    }
}

#[test]
fn harness_run_reports_failures() {
    let r = std::panic::catch_unwind(|| {
        run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]));
    });
    let msg = r.unwrap_err();
    let msg = msg.downcast_ref::<String>().unwrap();
    assert!(msg.contains("exit status: 3") && msg.contains("err"), "{}", msg);
    let r = run_unchecked_timeout(Command::new("sleep").arg("5"), Duration::from_millis(200));
    assert!(r.is_err());
    assert!(Path::new(AOEFS).is_absolute());
    assert_eq!(aoe_stat_size(131072), "0.067GB");
}

/// The harness itself: a test that panics with aoefs mounted, a loop device
/// attached and ext4 mounted on it must leave nothing behind.
#[test]
fn teardown_after_panic_leaves_nothing() {
    struct Seen {
        ins: String,
        tns: String,
        mnt: PathBuf,
        ext: PathBuf,
        loopdev: String,
        aoefs: u32,
        vblade: u32,
        dir: PathBuf,
    }
    check_prereqs();
    let mut seen: Option<Seen> = None;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let s = setup(1500, 16 * MIB, Fill::Zero, &[]);
        let dev = s.m.losetup(&s.m.target("e0.1"));
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&dev));
        let ext = s.tb.dir.join("ext");
        s.m.mount_dev(&dev, &ext);
        fs::write(ext.join("hello"), b"hello").unwrap();
        let _open = File::open(ext.join("hello")).unwrap();
        let _open2 = File::open(s.m.target("e0.1")).unwrap();
        seen = Some(Seen {
            ins: s.tb.ins.clone(),
            tns: s.tb.tns.clone(),
            mnt: s.m.path.clone(),
            ext: ext.clone(),
            loopdev: dev.clone(),
            aoefs: s.m.pid(),
            vblade: s.tb.vblade_pid(s.vb).unwrap(),
            dir: s.tb.dir.clone(),
        });
        panic!("deliberate panic to test teardown");
    }));
    assert!(r.is_err());
    let s = seen.expect("setup did not complete");
    let ns = netns_list();
    assert!(!ns.contains(&s.ins) && !ns.contains(&s.tns), "namespaces left: {:?}", ns);
    assert!(!mountinfo_has(&s.mnt), "FUSE mount left");
    assert!(!mountinfo_has(&s.ext), "ext4 mount left");
    assert!(!s.mnt.exists(), "mount point dir left");
    assert!(!pid_alive(s.aoefs), "aoefs left running");
    assert!(!pid_alive(s.vblade), "vblade left running");
    let l = sh(&["losetup", "-a"]);
    assert!(
        !l.contains(&format!("{}:", s.loopdev)) || !l.contains(&s.mnt.to_string_lossy().to_string()),
        "loop device left: {}",
        l
    );
    assert!(!s.dir.exists(), "temp dir left");
}
