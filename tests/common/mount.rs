//! [`Mount`]: aoefs mounted in a testbed's initiator namespace, with loop
//! devices and filesystems on it, a watchdog, and its teardown.

use super::command::fmt_cmd;
use super::faultbed::parse_counters;
use super::process::{bounded, poll_until, run, sh_quiet, signal, stop_child, tail};
use super::testbed::Testbed;
use super::{AOEFS, COUNTER};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// How long a mount may take to show `MNT/discover`.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a target may take to show up after mount.
pub const APPEAR: Duration = Duration::from_secs(5);
/// A test whose mount lives longer than this is considered hung.
pub const WATCHDOG: Duration = Duration::from_secs(300);

pub fn mountinfo_has(path: &Path) -> bool {
    let p = path.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// A mount on a path (a line of /proc/self/mountinfo).
pub struct MountInfo {
    /// The file system type (`fuse.aoefs`).
    pub fstype: String,
    /// The mount source (`aoefs`).
    pub source: String,
    /// The per-mount options (`rw,nosuid,...`).
    pub options: String,
}

/// The mounts on `path`, oldest first.
pub fn mounts_on(path: &Path) -> Vec<MountInfo> {
    let p = path.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.get(4) != Some(&p.as_str()) {
                return None;
            }
            let sep = f.iter().position(|x| *x == "-")?;
            Some(MountInfo {
                fstype: f.get(sep + 1)?.to_string(),
                source: f.get(sep + 2)?.to_string(),
                options: f.get(5)?.to_string(),
            })
        })
        .collect()
}

/// All mount points at or below `dir` (deepest first).
pub(super) fn mounts_below(dir: &Path) -> Vec<String> {
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

pub(super) fn lazy_unmount(path: &str) {
    // fusermount3 for FUSE mounts, umount -l for anything else.
    if !sh_quiet(&["fusermount3", "-u", "-z", path]) {
        sh_quiet(&["umount", "-l", path]);
    }
}

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

    /// The lines of the aoefs log so far that are warnings or errors.
    pub fn log_warnings_and_errors(&self) -> Vec<String> {
        self.log_text().lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).map(String::from).collect()
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

impl Testbed {
    /// Mount aoefs with `--iflist` = initiator side of pair 0.
    pub fn mount_aoefs(&self, extra_args: &[&str]) -> Mount {
        let ifl = self.init_if(0);
        self.mount_aoefs_iflist(&ifl, extra_args)
    }

    /// Spawn aoefs in the initiator namespace without waiting for the mount.
    /// Returns (child, mountpoint, log path).
    pub fn spawn_aoefs(&self, iflist: &str, extra_args: &[&str]) -> (Child, PathBuf, PathBuf) {
        let mnt = self.mount_dir();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
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

    /// A fresh, empty mount point under /mnt (aoe-stat ignores any path
    /// containing the letter "p", so not /tmp), registered with the testbed: whatever is still mounted there at
    /// teardown is lazily unmounted and the directory removed.
    pub fn mount_dir(&self) -> PathBuf {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let mnt = PathBuf::from(format!("/mnt/aoefs-{}-{}-{}", std::process::id(), self.id, n));
        let _ = fs::remove_dir(&mnt);
        fs::create_dir_all(&mnt).unwrap_or_else(|e| panic!("mkdir {}: {}", mnt.display(), e));
        self.mnt_dirs.lock().unwrap().push(mnt.clone());
        mnt
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
