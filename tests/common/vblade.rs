//! vblade processes in a testbed's target namespace.

use super::process::{fmt_cmd, poll_until, stop_child, tail};
use super::testbed::Testbed;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

/// Handle to a vblade process started by a testbed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VbladeHandle(usize);

pub(super) struct Vblade {
    pub(super) child: Option<Child>,
    shelf: u16,
    slot: u8,
    log: PathBuf,
}

/// How a vblade started by `start_vblade_with` was started (for restarts).
#[derive(Clone, Debug)]
pub(super) struct VbladeSpec {
    k: usize,
    shelf: u16,
    slot: u8,
    file: PathBuf,
    args: Vec<String>,
}

impl Testbed {
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

    /// Print all vblade logs (used on failure).
    pub(super) fn dump_logs(&self) {
        for v in self.vblades.lock().unwrap().iter() {
            eprintln!("----- vblade e{}.{} log ({}) -----\n{}", v.shelf, v.slot, v.log.display(), tail(&v.log, 30));
        }
    }
}
