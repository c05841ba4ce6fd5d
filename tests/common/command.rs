//! Running an external command to completion, bounded, with its output:
//! the part of `process` that the fuzzing regressions use too.

use std::fmt::Write as _;
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub(super) fn fmt_cmd(cmd: &Command) -> String {
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
