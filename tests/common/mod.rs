//! Integration-test harness for aoefs.
//!
//! Every test builds its own [`Testbed`]: two fresh network namespaces (an
//! initiator side and a target side) joined by a veth pair that is created
//! directly inside the namespaces, so no test interface ever exists in the
//! root namespace and no frame ever touches a real interface.
//!
//! * vblade runs in the target namespace (`ip netns exec TNS vblade ...`).
//! * aoefs runs in the initiator namespace through
//!   `nsenter --net=/run/netns/INS aoefs MNT -f --iflist VETH ...`; nsenter
//!   only switches the network namespace, so the FUSE mount is visible to
//!   the test in the root mount namespace.
//!
//! Everything is torn down in `Drop` (also while unwinding from a panic):
//! ext4 mounts, loop devices, aoefs (SIGTERM, then SIGKILL), the FUSE mount,
//! vblade, tshark, the namespaces and the temp directories. Every wait is
//! bounded; a per-mount watchdog kills aoefs and aborts the FUSE connection if
//! a test hangs, so a blocked syscall in the test returns an error instead of
//! hanging the suite.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Path of the aoefs binary cargo built for this test run.
pub const AOEFS: &str = env!("CARGO_BIN_EXE_aoefs");

/// Default bound for external commands run through [`run`].
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a mount may take to show `MNT/discover`.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);
/// A test whose mount lives longer than this is considered hung.
pub const WATCHDOG: Duration = Duration::from_secs(300);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------------------
// small utilities
// ---------------------------------------------------------------------------

fn fmt_cmd(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(' ') {
            let _ = write!(s, "'{}'", a);
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Run a command to completion (bounded by `timeout`), capturing its output.
/// Returns Err only if it could not be spawned or timed out (it is killed).
pub fn run_unchecked_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let desc = fmt_cmd(cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot spawn `{}`: {}", desc, e))?;
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return Err(format!("wait on `{}` failed: {}", desc, e)),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            // The reader threads may stay blocked if a grandchild holds the
            // pipe; do not join them.
            return Err(format!("`{}` timed out after {:?} (killed)", desc, timeout));
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    Ok(Output { status, stdout, stderr })
}

pub fn run_unchecked(cmd: &mut Command) -> Output {
    match run_unchecked_timeout(cmd, CMD_TIMEOUT) {
        Ok(o) => o,
        Err(e) => panic!("{}", e),
    }
}

/// Run a command, bounded by `timeout`; panic with a detailed message unless it
/// exits 0.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = fmt_cmd(cmd);
    let out = match run_unchecked_timeout(cmd, timeout) {
        Ok(o) => o,
        Err(e) => panic!("{}", e),
    };
    if !out.status.success() {
        panic!(
            "command failed: `{}`\n  status: {}\n  stdout: {}\n  stderr: {}",
            desc,
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    out
}

/// Run a command (bounded by [`CMD_TIMEOUT`]) and assert that it succeeded.
pub fn run(cmd: &mut Command) -> Output {
    run_timeout(cmd, CMD_TIMEOUT)
}

/// `run` for a simple argv.
pub fn sh<S: AsRef<OsStr>>(argv: &[S]) -> String {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    String::from_utf8_lossy(&run(&mut c).stdout).into_owned()
}

/// Same as `sh` but ignores failures (teardown).
fn sh_quiet<S: AsRef<OsStr>>(argv: &[S]) -> bool {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    match run_unchecked_timeout(&mut c, Duration::from_secs(30)) {
        Ok(o) => o.status.success(),
        Err(_) => false,
    }
}

/// Run `f` on a helper thread and wait at most `timeout` for it. Panics on
/// timeout (the helper thread is abandoned; teardown will unblock it by
/// killing aoefs).
pub fn bounded<T: Send + 'static>(what: &str, timeout: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(timeout) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{} did not finish within {:?}", what, timeout)
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{}: helper thread panicked", what),
    }
}

/// Poll `cond` every 50 ms until it returns true or `timeout` passes.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The crate's seeded PRNG (`aoefs::link::fault::Rng`), with the helpers
/// the tests use.
#[derive(Clone)]
pub struct Rng(aoefs::link::fault::Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(aoefs::link::fault::Rng::new(seed))
    }
    pub fn from_time() -> Rng {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        Rng::new(t ^ (std::process::id() as u64) << 32)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform-ish in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
}

/// Find the first differing byte of two buffers, for readable assertions.
pub fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Assert two buffers are equal, printing only the first mismatch.
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    if let Some(i) = first_diff(got, want) {
        let end = (i + 16).min(got.len()).min(want.len());
        panic!(
            "{}: first difference at byte {} (sector {}, lengths got {} want {}): got {:02x?} want {:02x?}",
            what,
            i,
            i / 512,
            got.len(),
            want.len(),
            &got[i.min(got.len())..end.max(i.min(got.len()))],
            &want[i.min(want.len())..end.max(i.min(want.len()))]
        );
    }
}

/// Read a whole file at `path` with pread in 1 MiB chunks.
pub fn read_all(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {}", path.display(), e))
}

pub fn mountinfo_has(path: &Path) -> bool {
    let p = path.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// All mount points at or below `dir` (deepest first).
fn mounts_below(dir: &Path) -> Vec<String> {
    let p = dir.to_string_lossy().into_owned();
    let mut v: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(|s| s.to_string()))
        .filter(|m| m == &p || m.starts_with(&format!("{}/", p)))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

fn lazy_unmount(path: &str) {
    // fusermount3 for FUSE mounts, umount -l for anything else.
    if !sh_quiet(&["fusermount3", "-u", "-z", path]) {
        sh_quiet(&["umount", "-l", path]);
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// SIGTERM (or `first`), wait up to `grace`, then SIGKILL; always reaps.
fn stop_child(child: &mut Child, first: libc::c_int, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    signal(child.id(), first);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    // SIGKILL'd processes blocked in uninterruptible FUSE calls may take a
    // moment; bound the reap.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

fn tail(path: &Path, lines: usize) -> String {
    let s = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {}>", path.display(), e));
    let v: Vec<&str> = s.lines().collect();
    let start = v.len().saturating_sub(lines);
    let mut out = String::new();
    if start > 0 {
        let _ = writeln!(out, "... ({} earlier lines omitted)", start);
    }
    for l in &v[start..] {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Panics unless this process can run the e2e tests: root, the tools and
/// /dev/fuse. Checked once per test binary; every test that needs a testbed
/// then fails at once with the same message.
fn check_prereqs() {
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
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {} >/dev/null", tool)])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err(format!("required tool `{}` is not installed (see .ci/run)", tool));
        }
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse missing (modprobe fuse)".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Testbed
// ---------------------------------------------------------------------------

/// One veth pair: `init_if` lives in the initiator namespace, `target_if` in
/// the target namespace.
#[derive(Clone, Debug)]
pub struct VethPair {
    pub init_if: String,
    pub target_if: String,
    pub mtu: u32,
}

/// How to fill a backing file.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    /// Sparse file of zeros.
    Zero,
    /// Pseudo-random bytes from the given seed.
    Random(u64),
}

/// Handle to a vblade process started by a testbed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VbladeHandle(usize);

struct Vblade {
    child: Option<Child>,
    shelf: u16,
    slot: u8,
    log: PathBuf,
}

pub struct Testbed {
    pub id: usize,
    /// initiator namespace name (in /run/netns)
    pub ins: String,
    /// target namespace name
    pub tns: String,
    /// temp directory (backing files, logs, mount points)
    pub dir: PathBuf,
    pairs: Mutex<Vec<VethPair>>,
    vblades: Mutex<Vec<Vblade>>,
    extra_children: Mutex<Vec<(String, Child)>>,
    mnt_dirs: Mutex<Vec<PathBuf>>,
    /// State of the fault-test helpers (middle namespaces, restartable vblades).
    faultbed: Mutex<FaultBed>,
}

impl Testbed {
    /// Two namespaces joined by one veth pair with MTU `mtu`, both ends up.
    pub fn new(mtu: u32) -> Testbed {
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
        tb.add_veth(mtu);
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
        let p = VethPair { init_if: format!("aoei{}", k), target_if: format!("aoet{}", k), mtu };
        sh(&[
            "ip",
            "link",
            "add",
            &p.init_if,
            "netns",
            &self.ins,
            "type",
            "veth",
            "peer",
            "name",
            &p.target_if,
            "netns",
            &self.tns,
        ]);
        let m = mtu.to_string();
        sh(&["ip", "-n", &self.ins, "link", "set", &p.init_if, "mtu", &m]);
        sh(&["ip", "-n", &self.tns, "link", "set", &p.target_if, "mtu", &m]);
        sh(&["ip", "-n", &self.ins, "link", "set", &p.init_if, "up"]);
        sh(&["ip", "-n", &self.tns, "link", "set", &p.target_if, "up"]);
        // wait (bounded) for carrier on both ends
        let ok = poll_until(Duration::from_secs(5), || {
            let i = sh(&["ip", "-n", &self.ins, "-o", "link", "show", &p.init_if]);
            let t = sh(&["ip", "-n", &self.tns, "-o", "link", "show", &p.target_if]);
            i.contains("LOWER_UP") && t.contains("LOWER_UP")
        });
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

    /// Start `vblade [-b bufcnt] SHELF SLOT aoet0 FILE` in the target namespace.
    pub fn start_vblade(&self, shelf: u16, slot: u8, file: &Path, bufcnt: Option<u32>) -> VbladeHandle {
        self.start_vblade_on(0, shelf, slot, file, bufcnt)
    }

    /// Like `start_vblade`, on the target side of veth pair `k`.
    /// Waits (bounded) until vblade has printed its start line.
    pub fn start_vblade_on(&self, k: usize, shelf: u16, slot: u8, file: &Path, bufcnt: Option<u32>) -> VbladeHandle {
        let iface = self.target_if(k);
        let mut vbs = self.vblades.lock().unwrap();
        let idx = vbs.len();
        let log = self.dir.join(format!("vblade-{}.{}-{}.log", shelf, slot, idx));
        let logf = File::create(&log).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.tns, "vblade"]);
        if let Some(b) = bufcnt {
            cmd.args(["-b", &b.to_string()]);
        }
        cmd.arg(shelf.to_string())
            .arg(slot.to_string())
            .arg(&iface)
            .arg(file)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        let desc = fmt_cmd(&cmd);
        // `ip netns exec` execs the command, so the child pid is vblade's.
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn `{}`: {}", desc, e));
        let want = format!("e{}.{}", shelf, slot);
        let started = poll_until(Duration::from_secs(5), || {
            fs::read_to_string(&log).map(|s| s.contains(&want)).unwrap_or(false)
                || matches!(child.try_wait(), Ok(Some(_)))
        });
        let exited = child.try_wait().ok().flatten();
        let logtxt = fs::read_to_string(&log).unwrap_or_default();
        vbs.push(Vblade { child: Some(child), shelf, slot, log: log.clone() });
        if let Some(st) = exited {
            panic!("vblade `{}` exited at start ({}): {}", desc, st, logtxt);
        }
        assert!(started, "vblade `{}` did not start within 5 s: {}", desc, logtxt);
        // vblade announces itself right after the start line; give the frame
        // a moment to leave.
        thread::sleep(Duration::from_millis(50));
        VbladeHandle(idx)
    }

    /// pid of a running vblade
    pub fn vblade_pid(&self, h: VbladeHandle) -> Option<u32> {
        self.vblades.lock().unwrap()[h.0].child.as_ref().map(|c| c.id())
    }

    /// SIGKILL a vblade and reap it.
    pub fn kill_vblade(&self, h: VbladeHandle) {
        let mut vbs = self.vblades.lock().unwrap();
        if let Some(mut c) = vbs[h.0].child.take() {
            stop_child(&mut c, libc::SIGKILL, Duration::from_secs(5));
        }
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

    /// Start a tshark capture of AoE frames on the target side of pair `k`
    /// into `pcap`; waits (bounded) until tshark reports it is capturing.
    /// Bounded by `max_secs` (tshark's autostop) as well.
    pub fn start_capture(&self, k: usize, pcap: &Path, max_secs: u32) -> usize {
        let iface = self.target_if(k);
        let log = self.dir.join(format!("tshark-{}.log", k));
        let logf = File::create(&log).unwrap();
        // tshark drops privileges / writes via dumpcap; make the dir writable
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.tns, "tshark", "-n", "-i", &iface, "-f", "ether proto 0x88a2"])
            .args(["-a", &format!("duration:{}", max_secs), "-w"])
            .arg(pcap)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        let h = self.spawn_helper("tshark", cmd);
        let ok = poll_until(Duration::from_secs(20), || {
            fs::read_to_string(&log).map(|s| s.contains("Capturing on")).unwrap_or(false)
        });
        assert!(ok, "tshark did not start capturing: {}", fs::read_to_string(&log).unwrap_or_default());
        // dumpcap prints "Capturing on" just before the pcap loop starts
        thread::sleep(Duration::from_millis(500));
        h
    }

    /// Mount aoefs with `--iflist` = initiator side of pair 0.
    pub fn mount_aoefs(&self, extra_args: &[&str]) -> Mount {
        let ifl = self.init_if(0);
        self.mount_aoefs_iflist(&ifl, extra_args)
    }

    /// Spawn aoefs in the initiator namespace without waiting for the mount.
    /// Returns (child, mountpoint, log path).
    pub fn spawn_aoefs(&self, iflist: &str, extra_args: &[&str]) -> (Child, PathBuf, PathBuf) {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // aoe-stat ignores any path containing the letter "p" (so not /tmp):
        // mount points live in /mnt.
        let mnt = PathBuf::from(format!("/mnt/aoefs-{}-{}-{}", std::process::id(), self.id, n));
        let _ = fs::remove_dir(&mnt);
        fs::create_dir_all(&mnt).unwrap();
        self.mnt_dirs.lock().unwrap().push(mnt.clone());
        let log = self.dir.join(format!("aoefs-{}.log", n));
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ins_path())).arg(AOEFS).arg(&mnt).arg("-f").arg("--iflist").arg(iflist);
        if !extra_args.iter().any(|a| a.starts_with("--discover-wait-ms")) {
            cmd.args(["--discover-wait-ms", "1500"]);
        }
        cmd.args(extra_args);
        let desc = fmt_cmd(&cmd);
        fs::write(&log, format!("### {}\n", desc)).unwrap();
        // append mode, so the child does not overwrite the header line
        let logf = OpenOptions::new().append(true).open(&log).unwrap();
        cmd.env("RUST_LOG", std::env::var("AOEFS_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        // nsenter (without --pid/--user) execs the program: child pid == aoefs pid.
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn `{}`: {}", desc, e));
        (child, mnt, log)
    }

    /// Panics unless every interface in `iflist` (comma- or space-separated)
    /// is one this testbed created: aoefs never runs on a real interface.
    fn assert_own_interfaces(&self, iflist: &str) {
        let pairs = self.pairs.lock().unwrap();
        for name in iflist.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()) {
            assert!(
                pairs.iter().any(|p| p.init_if == name),
                "refusing to start aoefs with an interface the testbed did not create: {}",
                name
            );
        }
    }

    /// Mount aoefs restricted to `iflist` (must name only testbed interfaces).
    pub fn mount_aoefs_iflist(&self, iflist: &str, extra_args: &[&str]) -> Mount {
        self.assert_own_interfaces(iflist);
        let (child, mnt, log) = self.spawn_aoefs(iflist, extra_args);
        let mut m = Mount::new(child, mnt, log);
        let discover = m.path.join("discover");
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if let Ok(Some(st)) = m.child.as_mut().unwrap().try_wait() {
                panic!("aoefs exited before the mount was ready ({}); log:\n{}", st, tail(&m.log, 100));
            }
            // a stat of a FUSE mount can block: bound it
            let d = discover.clone();
            let ok = bounded("stat of MNT/discover", Duration::from_secs(10), move || fs::metadata(&d).is_ok());
            if ok {
                break;
            }
            if Instant::now() >= deadline {
                panic!(
                    "aoefs mount not ready (no {}) within {:?}; log:\n{}",
                    discover.display(),
                    MOUNT_TIMEOUT,
                    tail(&m.log, 100)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        m
    }

    /// Print all vblade logs (used on failure).
    fn dump_logs(&self) {
        for v in self.vblades.lock().unwrap().iter() {
            eprintln!("----- vblade e{}.{} log ({}) -----\n{}", v.shelf, v.slot, v.log.display(), tail(&v.log, 30));
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
        if let Ok(mut v) = self.vblades.lock() {
            for vb in v.iter_mut() {
                if let Some(mut c) = vb.child.take() {
                    stop_child(&mut c, libc::SIGKILL, Duration::from_secs(5));
                }
            }
        }
        // Safety net: anything still running inside our namespaces was started
        // by this testbed (e.g. a Mount leaked by mem::forget); kill it by pid.
        for ns in [&self.ins, &self.tns] {
            let mut c = Command::new("ip");
            c.args(["netns", "pids", ns]);
            if let Ok(o) = run_unchecked_timeout(&mut c, Duration::from_secs(10)) {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<u32>() {
                        eprintln!("testbed {}: killing leftover pid {} in {}", self.id, pid, ns);
                        signal(pid, libc::SIGKILL);
                    }
                }
            }
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

// ---------------------------------------------------------------------------
// Mount
// ---------------------------------------------------------------------------

pub struct Mount {
    /// the FUSE mount point
    pub path: PathBuf,
    /// aoefs stdout+stderr
    pub log: PathBuf,
    child: Option<Child>,
    pid: u32,
    loops: Mutex<Vec<String>>,
    fs_mounts: Mutex<Vec<PathBuf>>,
    watchdog: Option<(mpsc::Sender<()>, thread::JoinHandle<()>)>,
}

impl Mount {
    fn new(child: Child, path: PathBuf, log: PathBuf) -> Mount {
        let pid = child.id();
        let (tx, rx) = mpsc::channel::<()>();
        let wpath = path.clone();
        let wlog = log.clone();
        let jh = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(WATCHDOG) {
                eprintln!(
                    "WATCHDOG: mount {} alive for more than {:?}: killing aoefs pid {} and aborting the mount",
                    wpath.display(),
                    WATCHDOG,
                    pid
                );
                let _ = writeln!(OpenOptions::new().append(true).open(&wlog).unwrap(), "### WATCHDOG fired");
                signal(pid, libc::SIGKILL);
                lazy_unmount(&wpath.to_string_lossy());
            }
        });
        Mount {
            path,
            log,
            child: Some(child),
            pid,
            loops: Mutex::new(Vec::new()),
            fs_mounts: Mutex::new(Vec::new()),
            watchdog: Some((tx, jh)),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// MNT/e{shelf}.{slot}
    pub fn target(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
    /// MNT/block/NAME/ATTR
    pub fn attr_path(&self, target: &str, attr: &str) -> PathBuf {
        self.path.join("block").join(target).join(attr)
    }
    /// Content of MNT/block/NAME/ATTR (panics on error).
    pub fn read_status(&self, target: &str, attr: &str) -> String {
        let p = self.attr_path(target, attr);
        self.bounded_read(&p).unwrap_or_else(|e| panic!("read {}: {}", p.display(), e))
    }
    /// Read a file on the mount, bounded by 30 s.
    pub fn bounded_read(&self, p: &Path) -> io::Result<String> {
        let p = p.to_path_buf();
        bounded(&format!("read {}", p.display()), Duration::from_secs(30), move || fs::read_to_string(&p))
    }
    /// Content of a control file, e.g. `interfaces`.
    pub fn read_ctl(&self, name: &str) -> String {
        let p = self.path.join(name);
        self.bounded_read(&p).unwrap_or_else(|e| panic!("read {}: {}", p.display(), e))
    }
    /// Open MNT/NAME write-only (no create/truncate) and write `data` in one
    /// write(2). Returns the first error of open or write.
    pub fn write_ctl(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let p = self.path.join(name);
        let data = data.to_vec();
        bounded(&format!("write {}", p.display()), Duration::from_secs(30), move || {
            let mut f = OpenOptions::new().write(true).open(&p)?;
            let n = f.write(&data)?;
            if n != data.len() {
                return Err(io::Error::other(format!("short write {} of {}", n, data.len())));
            }
            Ok(())
        })
    }
    /// `echo > MNT/discover`
    pub fn discover(&self) {
        self.write_ctl("discover", b"\n").expect("write to discover");
    }

    /// Wait (bounded) until `path` exists. Returns whether it did.
    pub fn wait_for(&self, path: &Path, timeout: Duration) -> bool {
        let p = path.to_path_buf();
        poll_until(timeout, || {
            let p = p.clone();
            bounded("stat", Duration::from_secs(10), move || fs::metadata(&p).is_ok())
        })
    }
    /// Wait for target `name` (e.g. "e0.1") to appear; panics with the log if not.
    pub fn expect_target(&self, name: &str, timeout: Duration) -> PathBuf {
        let p = self.target(name);
        if !self.wait_for(&p, timeout) {
            panic!("{} did not appear within {:?}; mount has {:?}", p.display(), timeout, self.list());
        }
        p
    }
    /// Wait until a status attribute reads `want`; returns the last value.
    pub fn wait_status(&self, target: &str, attr: &str, want: &str, timeout: Duration) -> String {
        let mut last = String::new();
        poll_until(timeout, || {
            last = self.bounded_read(&self.attr_path(target, attr)).unwrap_or_else(|e| format!("<error {}>", e));
            last == want
        });
        last
    }
    /// Names in the mount root.
    pub fn list(&self) -> Vec<String> {
        let p = self.path.clone();
        let mut v = bounded("readdir", Duration::from_secs(30), move || {
            fs::read_dir(&p)
                .map(|rd| {
                    rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>()
                })
                .unwrap_or_else(|e| vec![format!("<readdir error: {}>", e)])
        });
        v.sort();
        v
    }
    /// Target files (names starting with `e` followed by a digit).
    pub fn targets(&self) -> Vec<String> {
        self.list()
            .into_iter()
            .filter(|n| n.starts_with('e') && n[1..].starts_with(|c: char| c.is_ascii_digit()))
            .collect()
    }

    /// Whole aoefs log so far.
    pub fn log_text(&self) -> String {
        fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// `losetup --find --show FILE`; detached in Drop.
    pub fn losetup(&self, file: &Path) -> String {
        let out = run(Command::new("losetup").arg("--find").arg("--show").arg(file));
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup printed {:?}", dev);
        self.loops.lock().unwrap().push(dev.clone());
        dev
    }
    /// Detach a loop device created by `losetup`.
    pub fn detach_loop(&self, dev: &str) {
        run(Command::new("losetup").arg("-d").arg(dev));
        self.loops.lock().unwrap().retain(|d| d != dev);
    }
    /// `mount DEV DIR` (DIR created); unmounted in Drop if still mounted.
    pub fn mount_dev(&self, dev: &str, dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        run(Command::new("mount").arg(dev).arg(dir));
        self.fs_mounts.lock().unwrap().push(dir.to_path_buf());
    }
    /// `umount DIR`
    pub fn umount_dev(&self, dir: &Path) {
        run(Command::new("umount").arg(dir));
        self.fs_mounts.lock().unwrap().retain(|d| d != dir);
    }

    /// Send SIGTERM and wait (bounded) for aoefs to exit; returns its status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Has aoefs exited? (non-blocking)
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        // filesystems on loop devices first, then the loop devices
        let fsm: Vec<PathBuf> = self.fs_mounts.lock().map(|v| v.clone()).unwrap_or_default();
        for d in fsm.iter().rev() {
            if mountinfo_has(d) && !sh_quiet(&["umount", &d.to_string_lossy()]) {
                sh_quiet(&["umount", "-l", &d.to_string_lossy()]);
            }
        }
        let loops: Vec<String> = self.loops.lock().map(|v| v.clone()).unwrap_or_default();
        for l in loops.iter().rev() {
            if !sh_quiet(&["losetup", "-d", l]) {
                eprintln!("warning: losetup -d {} failed", l);
            }
        }
        // aoefs: SIGTERM, then SIGKILL
        let status = self.child.as_mut().and_then(|c| stop_child(c, libc::SIGTERM, Duration::from_secs(5)));
        if mountinfo_has(&self.path) {
            lazy_unmount(&self.path.to_string_lossy());
        }
        if let Some((tx, jh)) = self.watchdog.take() {
            let _ = tx.send(());
            let _ = jh.join();
        }
        let _ = fs::remove_dir(&self.path);
        if panicking || std::env::var_os("AOEFS_TEST_SHOW_LOG").is_some() {
            eprintln!(
                "----- aoefs log ({}; exit: {:?}; exit signal: {:?}) -----\n{}----- end of aoefs log -----",
                self.log.display(),
                status.map(|s| s.code()),
                status.and_then(|s| s.signal()),
                tail(&self.log, 200)
            );
        }
    }
}

/// Compute the size string `aoe-stat` prints for `sectors`.
pub fn aoe_stat_size(sectors: u64) -> String {
    let psize = (512000 * sectors) / (1000 * 1000 * 1000);
    let s = format!("{:04}", psize);
    let (a, b) = s.split_at(s.len() - 3);
    format!("{}.{}GB", a, b)
}

/// Small helper for tests: pread exactly `len` bytes at `off`.
pub fn pread(f: &File, off: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, off)?;
    Ok(buf)
}

/// Drop the kernel page cache for a file (best effort).
pub fn drop_cache(f: &File) {
    use std::os::unix::io::AsRawFd;
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// Number of frames in `pcap` matching display filter `filter` (`tshark -r -Y`).
/// Panics if tshark fails (e.g. an invalid filter).
pub fn tshark_count(pcap: &Path, filter: &str) -> usize {
    let out = run(Command::new("tshark").arg("-n").arg("-r").arg(pcap).arg("-Y").arg(filter));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
}

/// Human-readable listing of the frames in `pcap` matching `filter` (for messages).
pub fn tshark_list(pcap: &Path, filter: &str, max: usize) -> String {
    let out = run(Command::new("tshark").arg("-n").arg("-r").arg(pcap).arg("-Y").arg(filter));
    String::from_utf8_lossy(&out.stdout).lines().take(max).collect::<Vec<_>>().join("\n")
}

/// Does a process with this pid exist (and is not a zombie)?
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{}/stat", pid)) {
        Ok(s) => {
            // state is the field after the ")"
            let st = s.rsplit(')').next().unwrap_or("").trim_start();
            !st.starts_with('Z') && !st.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Names of all network namespaces in /run/netns.
pub fn netns_list() -> Vec<String> {
    fs::read_dir("/run/netns")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Mounts made by other programs (mount helpers, a systemd ExecStart line)
// ---------------------------------------------------------------------------

impl Testbed {
    /// A fresh, empty mount point under /mnt (no letter "p" in its path),
    /// registered with the testbed: whatever is still mounted there at
    /// teardown is lazily unmounted and the directory removed.
    pub fn mount_dir(&self) -> PathBuf {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let mnt = PathBuf::from(format!("/mnt/aoefs-{}-{}-{}", std::process::id(), self.id, n));
        let _ = fs::remove_dir(&mnt);
        fs::create_dir_all(&mnt).unwrap_or_else(|e| panic!("mkdir {}: {}", mnt.display(), e));
        self.mnt_dirs.lock().unwrap().push(mnt.clone());
        mnt
    }

    /// pids of every process in the initiator namespace (all of them were
    /// started by this testbed).
    pub fn initiator_pids(&self) -> Vec<u32> {
        let mut c = Command::new("ip");
        c.args(["netns", "pids", &self.ins]);
        match run_unchecked_timeout(&mut c, Duration::from_secs(10)) {
            Ok(o) => String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|s| s.parse().ok()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Run `argv` (a program that mounts aoefs at `mnt` and stays in the
    /// foreground, e.g. a unit's ExecStart line) in the initiator namespace
    /// with `env` added, and wait (bounded) until `mnt/discover` exists.
    /// `argv` must pass `--iflist` with testbed interfaces only (checked).
    /// The returned [`Mount`] stops the program and unmounts in Drop.
    pub fn mount_with_command(&self, mnt: &Path, argv: &[String], env: &[(&str, &str)]) -> Mount {
        let pos = argv
            .iter()
            .position(|a| a == "--iflist")
            .unwrap_or_else(|| panic!("refusing to run {:?} without --iflist", argv));
        let ifl = argv.get(pos + 1).expect("--iflist value");
        self.assert_own_interfaces(ifl);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let log = self.dir.join(format!("cmd-mount-{}.log", n));
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ins_path())).args(argv);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let desc = fmt_cmd(&cmd);
        fs::write(&log, format!("### {}\n", desc)).unwrap();
        let logf = OpenOptions::new().append(true).open(&log).unwrap();
        cmd.stdin(Stdio::null()).stdout(logf.try_clone().unwrap()).stderr(logf);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn `{}`: {}", desc, e));
        let mut m = Mount::new(child, mnt.to_path_buf(), log);
        let discover = mnt.join("discover");
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if let Ok(Some(st)) = m.child.as_mut().unwrap().try_wait() {
                panic!("`{}` exited before the mount was ready ({}); log:\n{}", desc, st, tail(&m.log, 100));
            }
            let d = discover.clone();
            if bounded("stat of MNT/discover", Duration::from_secs(10), move || fs::metadata(&d).is_ok()) {
                return m;
            }
            if Instant::now() >= deadline {
                panic!("`{}`: no {} within {:?}; log:\n{}", desc, discover.display(), MOUNT_TIMEOUT, tail(&m.log, 100));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------
// Fault-test helpers (tests/faults.rs): a middle namespace with the frame
// forwarder, the hostile-frame injector, restartable vblades with extra
// arguments, `stats` parsing, `err` draining.
// ---------------------------------------------------------------------------

/// Path of the fault-injecting frame forwarder.
pub const AOE_FAULTFWD: &str = env!("CARGO_BIN_EXE_aoe-faultfwd");
/// Path of the hostile-frame injector.
pub const AOE_INJECT: &str = env!("CARGO_BIN_EXE_aoe-inject");

/// How a vblade started by `start_vblade_with` was started (for restarts).
#[derive(Clone, Debug)]
struct VbladeSpec {
    k: usize,
    shelf: u16,
    slot: u8,
    file: PathBuf,
    args: Vec<String>,
}

#[derive(Default)]
pub struct FaultBed {
    /// Middle namespace (created on first use of `add_forwarded_pair`).
    mns: Option<String>,
    /// pair index -> (middle-side interface towards the initiator, towards the target)
    fwd_ifs: Vec<(usize, String, String)>,
    /// vblade handle index -> how to restart it
    specs: Vec<(usize, VbladeSpec)>,
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
pub fn parse_counters(text: &str) -> std::collections::HashMap<String, u64> {
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
        let p = VethPair { init_if: format!("aoei{}", k), target_if: format!("aoet{}", k), mtu };
        let fa = format!("aoefa{}", k);
        let fb = format!("aoefb{}", k);
        sh(&["ip", "link", "add", &p.init_if, "netns", &self.ins, "type", "veth", "peer", "name", &fa, "netns", &mns]);
        sh(&[
            "ip",
            "link",
            "add",
            &fb,
            "netns",
            &mns,
            "type",
            "veth",
            "peer",
            "name",
            &p.target_if,
            "netns",
            &self.tns,
        ]);
        let m = mtu.to_string();
        for (ns, ifn) in [(&self.ins, &p.init_if), (&mns, &fa), (&mns, &fb), (&self.tns, &p.target_if)] {
            sh(&["ip", "-n", ns, "link", "set", ifn, "mtu", &m]);
            sh(&["ip", "-n", ns, "link", "set", ifn, "up"]);
        }
        let ok = poll_until(Duration::from_secs(5), || {
            [(&self.ins, &p.init_if), (&mns, &fa), (&mns, &fb), (&self.tns, &p.target_if)]
                .iter()
                .all(|(ns, ifn)| sh(&["ip", "-n", ns, "-o", "link", "show", ifn]).contains("LOWER_UP"))
        });
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
    pub fn stop_forwarder(&self, f: &Forwarder) -> std::collections::HashMap<String, u64> {
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
    fn start_tool(&self, name: &str, mut cmd: Command, logf: File, log: &Path, ready: &str) -> usize {
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
    pub fn wait_injector(&self, inj: &Injector, timeout: Duration) -> std::collections::HashMap<String, u64> {
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
        let st = self.stop_helper(inj.helper, libc::SIGTERM, Duration::from_secs(5));
        assert!(
            st.is_some_and(|s| s.success()),
            "aoe-inject exit {:?}; log:\n{}",
            st,
            fs::read_to_string(&inj.log).unwrap_or_default()
        );
        parse_counters(&fs::read_to_string(&inj.stats).unwrap_or_default())
    }

    /// `vblade ARGS SHELF SLOT aoet<k> FILE` in the target namespace, with
    /// extra vblade options (e.g. `-s`); restartable with `restart_vblade`.
    pub fn start_vblade_with(&self, k: usize, shelf: u16, slot: u8, file: &Path, args: &[&str]) -> VbladeHandle {
        let spec =
            VbladeSpec { k, shelf, slot, file: file.to_path_buf(), args: args.iter().map(|s| s.to_string()).collect() };
        let mut vbs = self.vblades.lock().unwrap();
        let idx = vbs.len();
        vbs.push(Vblade {
            child: None,
            shelf,
            slot,
            log: self.dir.join(format!("vblade-{}.{}-{}.log", shelf, slot, idx)),
        });
        drop(vbs);
        self.faultbed.lock().unwrap().specs.push((idx, spec));
        let h = VbladeHandle(idx);
        self.restart_vblade(h);
        h
    }

    /// (Re)start a vblade created by `start_vblade_with` after `kill_vblade`
    /// (same interface, file and options; the log is appended to). Waits
    /// (bounded) for its start line.
    pub fn restart_vblade(&self, h: VbladeHandle) {
        let spec = {
            let fb = self.faultbed.lock().unwrap();
            fb.specs
                .iter()
                .find(|(i, _)| *i == h.0)
                .map(|(_, s)| s.clone())
                .expect("restart_vblade needs a handle from start_vblade_with")
        };
        let mut vbs = self.vblades.lock().unwrap();
        assert!(vbs[h.0].child.is_none(), "vblade {:?} is still running", h);
        let log = vbs[h.0].log.clone();
        let before = fs::read_to_string(&log).map(|s| s.len()).unwrap_or(0);
        let logf = OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.tns, "vblade"])
            .args(&spec.args)
            .arg(spec.shelf.to_string())
            .arg(spec.slot.to_string())
            .arg(self.target_if(spec.k))
            .arg(&spec.file)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        let desc = fmt_cmd(&cmd);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn `{}`: {}", desc, e));
        let want = format!("e{}.{}", spec.shelf, spec.slot);
        let started = poll_until(Duration::from_secs(5), || {
            fs::read_to_string(&log).map(|s| s.len() > before && s[before..].contains(&want)).unwrap_or(false)
                || matches!(child.try_wait(), Ok(Some(_)))
        });
        let exited = child.try_wait().ok().flatten();
        vbs[h.0].child = Some(child);
        drop(vbs);
        let logtxt = fs::read_to_string(&log).unwrap_or_default();
        if let Some(st) = exited {
            panic!("vblade `{}` exited at start ({}): {}", desc, st, logtxt);
        }
        assert!(started, "vblade `{}` did not start within 5 s: {}", desc, logtxt);
        thread::sleep(Duration::from_millis(50));
    }

    fn faultbed_teardown(&self) {
        let mns = self.faultbed.lock().map(|f| f.mns.clone()).unwrap_or(None);
        if let Some(m) = mns {
            let mut c = Command::new("ip");
            c.args(["netns", "pids", &m]);
            if let Ok(o) = run_unchecked_timeout(&mut c, Duration::from_secs(10)) {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<u32>() {
                        eprintln!("testbed {}: killing leftover pid {} in {}", self.id, pid, m);
                        signal(pid, libc::SIGKILL);
                    }
                }
            }
            sh_quiet(&["ip", "netns", "del", &m]);
        }
    }
}

impl Mount {
    /// Send `sig` to aoefs (e.g. SIGKILL for crash tests); Drop still
    /// reaps it and lazily unmounts the dead mount.
    pub fn kill(&self, sig: libc::c_int) {
        signal(self.pid, sig);
    }

    /// Drain the `err` file: one read(2) per message, stopping at the first
    /// read that returns nothing, EINTR (none within the file's wait) or
    /// after `max` messages. Bounded by 30 s.
    pub fn err_messages(&self, max: usize) -> Vec<String> {
        let p = self.path.join("err");
        bounded("read err", Duration::from_secs(30), move || {
            let mut v = Vec::new();
            let Ok(mut f) = File::open(&p) else { return v };
            let mut buf = vec![0u8; 4096];
            while v.len() < max {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => v.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string()),
                }
            }
            v
        })
    }

    /// `block/NAME/stats` parsed with `parse_counters`.
    pub fn stats(&self, target: &str) -> std::collections::HashMap<String, u64> {
        parse_counters(&self.read_status(target, "stats"))
    }
}

/// Opens a file for reading and writing, or panics naming it.
pub fn open_rw(p: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(p).unwrap_or_else(|e| panic!("open {}: {}", p.display(), e))
}
