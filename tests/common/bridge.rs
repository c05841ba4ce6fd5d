//! A shared segment for the trust tests (tests/e2e/trust.rs): the initiator's
//! interface, vblade's and a third host's, joined by a bridge in the middle
//! namespace, as three hosts on one LAN. The third host is `aoe-inject
//! --respond` (a host claiming the target), or a flood of config responses.

use super::faultbed::{Injector, AOE_INJECT};
use super::process::{poll_until, sh};
use super::testbed::{veth, Testbed, VethPair};
use super::COUNTER;
use std::fs::File;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The third host's interface (in the target namespace).
pub const HOSTILE_IF: &str = "aoeh0";

impl Testbed {
    /// A testbed whose pair 0 (`aoei0` in the initiator namespace, `aoet0`
    /// in the target namespace) and the third host's interface
    /// [`HOSTILE_IF`] (target namespace) are ports of one bridge in the
    /// middle namespace. `start_vblade`, `mount_aoefs` and the rest work as
    /// on a direct pair.
    pub fn bridged(mtu: u32) -> Testbed {
        Testbed::bridge(mtu, true)
    }

    /// Initiator (`aoei0`) and target (`aoet0`) with MTU 9000, joined by a
    /// bridge whose port towards the target has MTU 1500: a switch that
    /// forwards no frame longer than 1514 bytes between two jumbo hosts,
    /// either way (the most common AoE misconfiguration).
    pub fn jumbo_black_hole() -> Testbed {
        let tb = Testbed::bridge(9000, false);
        sh(&["ip", "-n", &tb.middle_ns(), "link", "set", "aoebt0", "mtu", "1500"]);
        tb
    }

    /// Pair 0 through a bridge in the middle namespace, and the third
    /// host's port if `third_host`.
    fn bridge(mtu: u32, third_host: bool) -> Testbed {
        let tb = Testbed::empty();
        let mns = tb.middle_ns();
        sh(&["ip", "-n", &mns, "link", "add", "aoebr", "type", "bridge"]);
        sh(&["ip", "-n", &mns, "link", "set", "aoebr", "up"]);
        let ports = [(&tb.ins, "aoei0", "aoebi0"), (&tb.tns, "aoet0", "aoebt0"), (&tb.tns, HOSTILE_IF, "aoebh0")];
        for (ns, outer, inner) in ports.into_iter().take(if third_host { 3 } else { 2 }) {
            assert!(veth((ns, outer), (&mns, inner), mtu), "bridged interface {outer} did not come up");
            sh(&["ip", "-n", &mns, "link", "set", inner, "master", "aoebr"]);
        }
        tb.pairs.lock().unwrap().push(VethPair { init_if: "aoei0".into(), target_if: "aoet0".into() });
        tb
    }

    /// MAC of the third host's interface: 12 lowercase hex digits.
    pub fn hostile_mac(&self) -> String {
        let out = sh(&["ip", "-n", &self.tns, "-o", "link", "show", HOSTILE_IF]);
        let i = out.find("link/ether ").expect("a MAC");
        out[i + 11..i + 28].replace(':', "")
    }

    /// Gives the target side of pair `k` a new MAC (`aa:bb:cc:dd:ee:ff`),
    /// as a NIC swap would; a vblade on it must be restarted to use it.
    pub fn set_target_mac(&self, k: usize, mac: &str) {
        let ifname = self.target_if(k);
        sh(&["ip", "-n", &self.tns, "link", "set", &ifname, "down"]);
        sh(&["ip", "-n", &self.tns, "link", "set", &ifname, "address", mac]);
        sh(&["ip", "-n", &self.tns, "link", "set", &ifname, "up"]);
        let up = poll_until(Duration::from_secs(5), || {
            sh(&["ip", "-n", &self.tns, "-o", "link", "show", &ifname]).contains("LOWER_UP")
        });
        assert!(up, "{ifname} did not come back up");
    }

    /// Runs `aoe-inject HOSTILE_IF SHELF.SLOT ARGS` on the third host (e.g.
    /// `--respond --bufcnt 1`, or `--config-flood N`); waits until it is
    /// ready.
    pub fn start_hostile(&self, shelf: u16, slot: u8, args: &[&str]) -> Injector {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let stats = self.dir.join(format!("hostile-{n}.stats"));
        let log = self.dir.join(format!("hostile-{n}.log"));
        let logf = File::create(&log).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.tns, AOE_INJECT, HOSTILE_IF])
            .arg(format!("{shelf}.{slot}"))
            .args(args)
            .arg("--stats")
            .arg(&stats);
        let helper = self.start_tool("aoe-inject", cmd, logf, &log, "ready");
        Injector { helper, stats, log }
    }
}
