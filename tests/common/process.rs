//! Running external commands and waiting, always bounded.

use super::command::{fmt_cmd, run_timeout, run_unchecked_timeout};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Default bound for external commands run through [`run`].
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run_unchecked(cmd: &mut Command) -> Output {
    match run_unchecked_timeout(cmd, CMD_TIMEOUT) {
        Ok(o) => o,
        Err(e) => panic!("{}", e),
    }
}

/// Run a command (bounded by [`CMD_TIMEOUT`]) and assert that it succeeded.
pub fn run(cmd: &mut Command) -> Output {
    run_timeout(cmd, CMD_TIMEOUT)
}

/// Run a command with `input` on its stdin, bounded by [`CMD_TIMEOUT`];
/// panic with its stderr unless it exits 0. Returns its output.
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let desc = fmt_cmd(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn `{}`: {}", desc, e));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.as_bytes().to_vec();
    // A writer thread, so that a child that does not read cannot block us.
    thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
    });
    let out = bounded(&format!("`{}`", desc), CMD_TIMEOUT, move || child.wait_with_output());
    let out = out.unwrap_or_else(|e| panic!("wait on `{}`: {}", desc, e));
    assert!(
        out.status.success(),
        "command failed: `{}`\n  status: {}\n  stderr: {}",
        desc,
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    out
}

/// `run` for a simple argv.
pub fn sh<S: AsRef<OsStr>>(argv: &[S]) -> String {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    String::from_utf8_lossy(&run(&mut c).stdout).into_owned()
}

/// Same as `sh` but ignores failures (teardown).
pub(super) fn sh_quiet<S: AsRef<OsStr>>(argv: &[S]) -> bool {
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

pub(super) fn signal(pid: u32, sig: libc::c_int) {
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// SIGTERM (or `first`), wait up to `grace`, then SIGKILL; always reaps.
pub(super) fn stop_child(child: &mut Child, first: libc::c_int, grace: Duration) -> Option<ExitStatus> {
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

pub(super) fn tail(path: &Path, lines: usize) -> String {
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

/// Command output (or any bytes) as text, lossily.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Is `tool` in PATH?
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {} >/dev/null", tool)])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// SIGKILLs and reaps a child in Drop (the testbed unmounts what it left).
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
