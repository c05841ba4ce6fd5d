//! vblade processes in a testbed's target namespace.

use super::command::fmt_cmd;
use super::process::{poll_until, stop_child, tail};
use super::testbed::Testbed;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

/// Handle to a vblade process started by a testbed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VbladeHandle(usize);

/// A vblade the testbed started: how (for restarts), its log, and the
/// process while it runs.
pub(super) struct Vblade {
    pub(super) child: Option<Child>,
    /// veth pair whose target side it serves
    k: usize,
    shelf: u16,
    slot: u8,
    file: PathBuf,
    /// options before SHELF SLOT (e.g. `-b 16`, `-s`)
    args: Vec<String>,
    log: PathBuf,
}

impl Testbed {
    /// Start `vblade [-b bufcnt] SHELF SLOT aoet0 FILE` in the target namespace.
    pub fn start_vblade(&self, shelf: u16, slot: u8, file: &Path, bufcnt: Option<u32>) -> VbladeHandle {
        self.start_vblade_on(0, shelf, slot, file, bufcnt)
    }

    /// Like `start_vblade`, on the target side of veth pair `k`.
    /// Waits (bounded) until vblade has printed its start line.
    pub fn start_vblade_on(&self, k: usize, shelf: u16, slot: u8, file: &Path, bufcnt: Option<u32>) -> VbladeHandle {
        let b = bufcnt.map(|b| b.to_string());
        let args: Vec<&str> = b.iter().flat_map(|b| ["-b", b.as_str()]).collect();
        self.start_vblade_with(k, shelf, slot, file, &args)
    }

    /// pid of a running vblade
    pub fn vblade_pid(&self, h: VbladeHandle) -> Option<u32> {
        self.vblades()[h.0].child.as_ref().map(|c| c.id())
    }

    /// SIGKILL a vblade and reap it.
    pub fn kill_vblade(&self, h: VbladeHandle) {
        if let Some(mut c) = self.vblades()[h.0].child.take() {
            stop_child(&mut c, libc::SIGKILL, Duration::from_secs(5));
        }
    }

    /// `vblade ARGS SHELF SLOT aoet<k> FILE` in the target namespace, with
    /// extra vblade options (e.g. `-s`). Waits (bounded) until vblade has
    /// printed its start line.
    pub fn start_vblade_with(&self, k: usize, shelf: u16, slot: u8, file: &Path, args: &[&str]) -> VbladeHandle {
        let mut vbs = self.vblades();
        let idx = vbs.len();
        vbs.push(Vblade {
            child: None,
            k,
            shelf,
            slot,
            file: file.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            log: self.dir.join(format!("vblade-{}.{}-{}.log", shelf, slot, idx)),
        });
        drop(vbs);
        let h = VbladeHandle(idx);
        self.restart_vblade(h);
        h
    }

    /// (Re)start a vblade after `kill_vblade` (same interface, file and
    /// options; the log is appended to). Waits (bounded) for its start line.
    pub fn restart_vblade(&self, h: VbladeHandle) {
        let mut vbs = self.vblades();
        let vb = &vbs[h.0];
        assert!(vb.child.is_none(), "vblade {:?} is still running", h);
        let log = vb.log.clone();
        let before = fs::read_to_string(&log).map(|s| s.len()).unwrap_or(0);
        let logf = OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.tns, "vblade"])
            .args(&vb.args)
            .arg(vb.shelf.to_string())
            .arg(vb.slot.to_string())
            .arg(self.target_if(vb.k))
            .arg(&vb.file)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        let desc = fmt_cmd(&cmd);
        // `ip netns exec` execs the command, so the child pid is vblade's.
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn `{}`: {}", desc, e));
        let want = format!("e{}.{}", vb.shelf, vb.slot);
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
        // vblade announces itself right after the start line; give the frame
        // a moment to leave.
        thread::sleep(Duration::from_millis(50));
    }

    /// The vblades, also after a panic while they were locked (teardown).
    pub(super) fn vblades(&self) -> MutexGuard<'_, Vec<Vblade>> {
        self.vblades.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Print all vblade logs (used on failure).
    pub(super) fn dump_logs(&self) {
        for v in self.vblades().iter() {
            eprintln!("----- vblade e{}.{} log ({}) -----\n{}", v.shelf, v.slot, v.log.display(), tail(&v.log, 30));
        }
    }
}
