//! Fault-test helpers (tests/e2e/faults.rs): a middle namespace with the frame
//! forwarder, the hostile-frame injector, `stats` parsing.

use super::process::{poll_until, sh, sh_quiet};
use super::testbed::{veth, Testbed, VethPair};
use super::COUNTER;
use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

/// Path of the fault-injecting frame forwarder.
pub const AOE_FAULTFWD: &str = env!("CARGO_BIN_EXE_aoe-faultfwd");

/// Path of the hostile-frame injector.
pub const AOE_INJECT: &str = env!("CARGO_BIN_EXE_aoe-inject");

#[derive(Default)]
pub struct FaultBed {
    /// Middle namespace (created on first use of `add_forwarded_pair`).
    mns: Option<String>,
    /// pair index -> (middle-side interface towards the initiator, towards the target)
    fwd_ifs: Vec<(usize, String, String)>,
}

/// A running `aoe-faultfwd` (a testbed helper: killed in teardown).
pub struct Forwarder {
    pub helper: usize,
    pub stats: PathBuf,
    pub log: PathBuf,
}

/// A running `aoe-inject` (a testbed helper: killed in teardown).
pub struct Injector {
    pub helper: usize,
    pub stats: PathBuf,
    pub log: PathBuf,
}

/// Parses `key value` lines (last token is the number) into a map keyed by
/// everything before the number, e.g. `retransmits` or
/// `path aoei0 02aabbccddee frames_sent`.
pub fn parse_counters(text: &str) -> HashMap<String, u64> {
    let mut m = std::collections::HashMap::new();
    for l in text.lines() {
        let l = l.trim();
        if let Some((k, v)) = l.rsplit_once(' ') {
            if let Ok(n) = v.parse::<u64>() {
                m.insert(k.trim().to_string(), n);
            }
        }
    }
    m
}

fn wait_log(log: &Path, want: &str, timeout: Duration) -> bool {
    poll_until(timeout, || fs::read_to_string(log).map(|s| s.contains(want)).unwrap_or(false))
}

impl Testbed {
    /// The middle namespace (created on first call).
    pub fn middle_ns(&self) -> String {
        let mut fb = self.faultbed.lock().unwrap();
        if let Some(m) = &fb.mns {
            return m.clone();
        }
        let m = format!("aoefs-m-{}-{}", std::process::id(), self.id);
        // record first, so that a failure below still tears it down
        fb.mns = Some(m.clone());
        drop(fb);
        sh(&["ip", "netns", "add", &m]);
        sh(&["ip", "-n", &m, "link", "set", "lo", "up"]);
        m
    }

    /// Add pair `k` whose frames pass through the middle namespace:
    /// `aoei<k>` (initiator ns) <-> `aoefa<k>` (middle) and `aoefb<k>`
    /// (middle) <-> `aoet<k>` (target ns). Nothing passes until
    /// `start_forwarder(k, ..)` runs. `init_if(k)`, `target_if(k)`,
    /// `start_vblade_on(k, ..)` and `mount_aoefs_iflist` work as for a direct pair.
    pub fn add_forwarded_pair(&self, mtu: u32) -> usize {
        let mns = self.middle_ns();
        let mut pairs = self.pairs.lock().unwrap();
        let k = pairs.len();
        let p = VethPair { init_if: format!("aoei{}", k), target_if: format!("aoet{}", k) };
        let fa = format!("aoefa{}", k);
        let fb = format!("aoefb{}", k);
        let ok = veth((&self.ins, &p.init_if), (&mns, &fa), mtu) && veth((&mns, &fb), (&self.tns, &p.target_if), mtu);
        assert!(ok, "forwarded pair {} did not come up", k);
        pairs.push(p);
        self.faultbed.lock().unwrap().fwd_ifs.push((k, fa, fb));
        k
    }

    /// Start `aoe-faultfwd` for forwarded pair `k` with `faults`
    /// (`FaultConfig::parse` syntax) and `seed`; waits until it forwards.
    pub fn start_forwarder(&self, k: usize, faults: &str, seed: u64) -> Forwarder {
        let mns = self.middle_ns();
        let (fa, fb) = {
            let fbd = self.faultbed.lock().unwrap();
            let (_, a, b) = fbd
                .fwd_ifs
                .iter()
                .find(|(i, _, _)| *i == k)
                .unwrap_or_else(|| panic!("pair {} is not a forwarded pair", k))
                .clone();
            (a, b)
        };
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let stats = self.dir.join(format!("faultfwd-{}-{}.stats", k, n));
        let log = self.dir.join(format!("faultfwd-{}-{}.log", k, n));
        let logf = File::create(&log).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &mns, AOE_FAULTFWD, &fa, &fb, "--faults", faults])
            .args(["--seed", &seed.to_string(), "--stats"])
            .arg(&stats);
        let helper = self.start_tool("aoe-faultfwd", cmd, logf, &log, "forwarding");
        Forwarder { helper, stats, log }
    }

    /// SIGTERM the forwarder; returns its final counters.
    pub fn stop_forwarder(&self, f: &Forwarder) -> HashMap<String, u64> {
        let st = self.stop_helper(f.helper, libc::SIGTERM, Duration::from_secs(5));
        let text = fs::read_to_string(&f.stats).unwrap_or_default();
        assert!(
            st.is_some_and(|s| s.success()),
            "aoe-faultfwd exit {:?}; log:\n{}",
            st,
            fs::read_to_string(&f.log).unwrap_or_default()
        );
        parse_counters(&text)
    }

    /// Start `aoe-inject` on the target side of pair `k` against
    /// e`shelf`.`slot` with extra arguments (`--seconds`, `--rate`, ...).
    pub fn start_injector(&self, k: usize, shelf: u16, slot: u8, args: &[&str]) -> Injector {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let stats = self.dir.join(format!("inject-{}-{}.stats", k, n));
        let log = self.dir.join(format!("inject-{}-{}.log", k, n));
        let logf = File::create(&log).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.tns, AOE_INJECT])
            .arg(self.target_if(k))
            .arg(format!("{}.{}", shelf, slot))
            .args(args)
            .arg("--stats")
            .arg(&stats);
        let helper = self.start_tool("aoe-inject", cmd, logf, &log, "ready");
        Injector { helper, stats, log }
    }

    /// Spawns a test tool with its output in `log` and waits (bounded) for
    /// the line that says it is ready.
    pub(super) fn start_tool(&self, name: &str, mut cmd: Command, logf: File, log: &Path, ready: &str) -> usize {
        cmd.stdin(Stdio::null()).stdout(logf.try_clone().unwrap()).stderr(logf);
        let helper = self.spawn_helper(name, cmd);
        assert!(
            wait_log(log, ready, Duration::from_secs(10)),
            "{} did not start: {}",
            name,
            fs::read_to_string(log).unwrap_or_default()
        );
        helper
    }

    /// Wait (bounded by `timeout`) for the injector to finish; returns its counters.
    pub fn wait_injector(&self, inj: &Injector, timeout: Duration) -> HashMap<String, u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let done = {
                let mut v = self.extra_children.lock().unwrap();
                matches!(v[inj.helper].1.try_wait(), Ok(Some(_)))
            };
            if done || Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.stop_injector(inj)
    }

    /// SIGTERM an aoe-inject (the fault injector, or a bridge's third
    /// host); it must exit cleanly. Returns its counters.
    pub fn stop_injector(&self, inj: &Injector) -> HashMap<String, u64> {
        let st = self.stop_helper(inj.helper, libc::SIGTERM, Duration::from_secs(5));
        assert!(
            st.is_some_and(|s| s.success()),
            "aoe-inject exit {:?}; log:\n{}",
            st,
            fs::read_to_string(&inj.log).unwrap_or_default()
        );
        parse_counters(&fs::read_to_string(&inj.stats).unwrap_or_default())
    }

    pub(super) fn faultbed_teardown(&self) {
        let mns = self.faultbed.lock().map(|f| f.mns.clone()).unwrap_or(None);
        if let Some(m) = mns {
            self.kill_leftovers(&m);
            sh_quiet(&["ip", "netns", "del", &m]);
        }
    }
}
