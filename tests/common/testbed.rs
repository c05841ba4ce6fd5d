//! [`Testbed`]: the initiator and target namespaces joined by veth pairs,
//! backing images, helper processes, and the teardown of all of it.

use super::command::{fmt_cmd, run_unchecked_timeout};
use super::data::Rng;
use super::faultbed::FaultBed;
use super::mount::{lazy_unmount, mounts_below};
use super::process::{have, poll_until, sh, sh_quiet, signal, stop_child};
use super::vblade::Vblade;
use super::COUNTER;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::Duration;

/// Panics unless this process can run the e2e tests: root, the tools and
/// /dev/fuse. Checked once per test binary; every test that needs a testbed
/// then fails at once with the same message. `Testbed::new` calls it; a test
/// that catches panics around its testbed calls it first.
pub fn check_prereqs() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = CHECKED.get_or_init(prereqs) {
        panic!("{}", e);
    }
}

fn prereqs() -> Result<(), String> {
    if unsafe { libc::geteuid() } != 0 {
        return Err("the aoefs e2e tests (cargo feature `e2e`) need root (network namespaces, FUSE, loop \
                    devices); run them as root, or without `--features e2e` for the unit and in-memory tests"
            .into());
    }
    for tool in ["ip", "vblade", "nsenter", "fusermount3"] {
        if !have(tool) {
            return Err(format!("required tool `{}` is not installed (see .ci/run)", tool));
        }
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse missing (modprobe fuse)".into());
    }
    Ok(())
}

/// One veth pair: `init_if` lives in the initiator namespace, `target_if` in
/// the target namespace.
#[derive(Clone, Debug)]
pub struct VethPair {
    pub init_if: String,
    pub target_if: String,
}

/// How to fill a backing file.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    /// Sparse file of zeros.
    Zero,
    /// Pseudo-random bytes from the given seed.
    Random(u64),
}

pub struct Testbed {
    pub id: usize,
    /// initiator namespace name (in /run/netns)
    pub ins: String,
    /// target namespace name
    pub tns: String,
    /// temp directory (backing files, logs, mount points)
    pub dir: PathBuf,
    pub(super) pairs: Mutex<Vec<VethPair>>,
    pub(super) vblades: Mutex<Vec<Vblade>>,
    pub(super) extra_children: Mutex<Vec<(String, Child)>>,
    pub(super) mnt_dirs: Mutex<Vec<PathBuf>>,
    /// State of the fault-test helpers (the middle namespace, forwarded pairs).
    pub(super) faultbed: Mutex<FaultBed>,
}

impl Testbed {
    /// Two namespaces joined by one veth pair with MTU `mtu`, both ends up.
    pub fn new(mtu: u32) -> Testbed {
        let tb = Testbed::empty();
        tb.add_veth(mtu);
        tb
    }

    /// The initiator and target namespaces, not joined yet.
    pub(super) fn empty() -> Testbed {
        check_prereqs();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let id = n;
        let ins = format!("aoefs-i-{}-{}", pid, n);
        let tns = format!("aoefs-t-{}-{}", pid, n);
        let dir = PathBuf::from(format!("/tmp/aoefs-test-{}-{}", pid, n));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {}", dir.display(), e));
        // Build the struct first so that a failure below still tears down.
        let tb = Testbed {
            id,
            ins,
            tns,
            dir,
            pairs: Mutex::new(Vec::new()),
            vblades: Mutex::new(Vec::new()),
            extra_children: Mutex::new(Vec::new()),
            mnt_dirs: Mutex::new(Vec::new()),
            faultbed: Mutex::new(FaultBed::default()),
        };
        sh(&["ip", "netns", "add", &tb.ins]);
        sh(&["ip", "netns", "add", &tb.tns]);
        // loopback up in both (harmless, makes tools happier)
        sh(&["ip", "-n", &tb.ins, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", &tb.tns, "link", "set", "lo", "up"]);
        tb
    }

    /// Path of the initiator namespace for nsenter.
    pub fn ins_path(&self) -> String {
        format!("/run/netns/{}", self.ins)
    }

    /// Add another veth pair (MTU `mtu`, both ends up); returns its index.
    /// Names: `aoei<k>` in the initiator namespace, `aoet<k>` in the target
    /// namespace. The pair is created directly inside the namespaces, so the
    /// names never exist in the root namespace and parallel testbeds do not
    /// collide.
    pub fn add_veth(&self, mtu: u32) -> usize {
        let mut pairs = self.pairs.lock().unwrap();
        let k = pairs.len();
        let p = VethPair { init_if: format!("aoei{}", k), target_if: format!("aoet{}", k) };
        let ok = veth((&self.ins, &p.init_if), (&self.tns, &p.target_if), mtu);
        assert!(ok, "veth {}/{} did not come up", p.init_if, p.target_if);
        pairs.push(p);
        k
    }

    pub fn pair(&self, k: usize) -> VethPair {
        self.pairs.lock().unwrap()[k].clone()
    }

    /// Initiator-side interface of pair `k`.
    pub fn init_if(&self, k: usize) -> String {
        self.pair(k).init_if
    }

    /// Target-side interface of pair `k`.
    pub fn target_if(&self, k: usize) -> String {
        self.pair(k).target_if
    }

    fn mac_of(&self, ns: &str, ifname: &str) -> String {
        let out = sh(&["ip", "-n", ns, "-o", "link", "show", ifname]);
        let idx = out.find("link/ether ").unwrap_or_else(|| panic!("no MAC in `{}`", out));
        let mac = &out[idx + 11..idx + 11 + 17];
        mac.replace(':', "").to_lowercase()
    }

    /// MAC of the target-side interface of pair `k`: 12 lowercase hex digits.
    pub fn target_mac(&self, k: usize) -> String {
        self.mac_of(&self.tns, &self.target_if(k))
    }

    /// MAC of the initiator-side interface of pair `k`: 12 lowercase hex digits.
    pub fn init_mac(&self, k: usize) -> String {
        self.mac_of(&self.ins, &self.init_if(k))
    }

    /// Create a backing file `name` of `size` bytes in the testbed dir.
    pub fn make_image(&self, name: &str, size: u64, fill: Fill) -> PathBuf {
        let path = self.dir.join(name);
        let f = File::create(&path).unwrap_or_else(|e| panic!("create {}: {}", path.display(), e));
        match fill {
            Fill::Zero => f.set_len(size).unwrap(),
            Fill::Random(seed) => {
                let mut rng = Rng::new(seed);
                let mut buf = vec![0u8; 1 << 20];
                let mut off = 0u64;
                while off < size {
                    let n = ((size - off) as usize).min(buf.len());
                    rng.fill(&mut buf[..n]);
                    f.write_all_at(&buf[..n], off).unwrap();
                    off += n as u64;
                }
                f.set_len(size).unwrap();
            }
        }
        f.sync_all().unwrap();
        path
    }

    /// Spawn an arbitrary long-running helper (e.g. tshark); it is killed in
    /// teardown if still running. Returns its index for `stop_helper`.
    pub fn spawn_helper(&self, name: &str, mut cmd: Command) -> usize {
        let desc = fmt_cmd(&cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn `{}`: {}", desc, e));
        let mut v = self.extra_children.lock().unwrap();
        v.push((name.to_string(), child));
        v.len() - 1
    }

    /// Stop a helper with `sig`, waiting up to `grace` before SIGKILL.
    pub fn stop_helper(&self, idx: usize, sig: libc::c_int, grace: Duration) -> Option<ExitStatus> {
        let mut v = self.extra_children.lock().unwrap();
        stop_child(&mut v[idx].1, sig, grace)
    }

    /// pids of every process in the initiator namespace (all of them were
    /// started by this testbed).
    pub fn initiator_pids(&self) -> Vec<u32> {
        netns_pids(&self.ins)
    }

    /// Safety net of the teardown: anything still running in namespace `ns`
    /// was started by this testbed (e.g. a Mount leaked by mem::forget);
    /// SIGKILL it by pid.
    pub(super) fn kill_leftovers(&self, ns: &str) {
        for pid in netns_pids(ns) {
            eprintln!("testbed {}: killing leftover pid {} in {}", self.id, pid, ns);
            signal(pid, libc::SIGKILL);
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if thread::panicking() {
            self.dump_logs();
        }
        // helpers (tshark)
        if let Ok(mut v) = self.extra_children.lock() {
            for (_, c) in v.iter_mut() {
                stop_child(c, libc::SIGTERM, Duration::from_secs(3));
            }
        }
        // vblades
        for vb in self.vblades().iter_mut() {
            if let Some(mut c) = vb.child.take() {
                stop_child(&mut c, libc::SIGKILL, Duration::from_secs(5));
            }
        }
        for ns in [&self.ins, &self.tns] {
            self.kill_leftovers(ns);
        }
        // Any mount left under our dirs (FUSE or ext4): lazy unmount.
        let mnt_dirs: Vec<PathBuf> = self.mnt_dirs.lock().map(|v| v.clone()).unwrap_or_default();
        for d in &mnt_dirs {
            for m in mounts_below(d) {
                eprintln!("testbed {}: lazily unmounting leftover {}", self.id, m);
                lazy_unmount(&m);
            }
            let _ = fs::remove_dir(d);
        }
        for m in mounts_below(&self.dir) {
            eprintln!("testbed {}: lazily unmounting leftover {}", self.id, m);
            lazy_unmount(&m);
        }
        sh_quiet(&["ip", "netns", "del", &self.ins]);
        sh_quiet(&["ip", "netns", "del", &self.tns]);
        self.faultbed_teardown();
        if mounts_below(&self.dir).is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "testbed {}: not removing {} because something is still mounted there",
                self.id,
                self.dir.display()
            );
        }
    }
}

/// pids of every process in network namespace `ns` (none if `ip netns pids`
/// fails).
/// Creates a veth pair with one end in each namespace (`(namespace,
/// name)`), both at MTU `mtu` and up, directly inside the namespaces (the
/// names never exist in the root namespace, so parallel testbeds do not
/// collide). Waits (bounded) for carrier on both ends; false if it did not
/// come.
pub(super) fn veth(a: (&str, &str), b: (&str, &str), mtu: u32) -> bool {
    sh(&["ip", "link", "add", a.1, "netns", a.0, "type", "veth", "peer", "name", b.1, "netns", b.0]);
    let m = mtu.to_string();
    for (ns, ifn) in [a, b] {
        sh(&["ip", "-n", ns, "link", "set", ifn, "mtu", &m]);
        sh(&["ip", "-n", ns, "link", "set", ifn, "up"]);
    }
    poll_until(Duration::from_secs(5), || {
        [a, b].iter().all(|(ns, ifn)| sh(&["ip", "-n", ns, "-o", "link", "show", ifn]).contains("LOWER_UP"))
    })
}

fn netns_pids(ns: &str) -> Vec<u32> {
    let mut c = Command::new("ip");
    c.args(["netns", "pids", ns]);
    match run_unchecked_timeout(&mut c, Duration::from_secs(10)) {
        Ok(o) => String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|s| s.parse().ok()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Names of all network namespaces in /run/netns.
pub fn netns_list() -> Vec<String> {
    fs::read_dir("/run/netns")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}
