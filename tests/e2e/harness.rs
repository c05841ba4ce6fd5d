//! Self-tests of the integration harness (tests/common): namespaces, veth,
//! vblade, tshark capture and teardown. These do not need aoefs to work.

use crate::common::*;
use std::path::Path;
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
