//! Regression inputs found by fuzzing (tests/fuzz): every saved input and
//! seed goes through the parsers without a panic. Needs neither root nor the
//! `e2e` feature.

// Of the harness, only the bounded command (`tests/common/command.rs`).
mod common {
    pub mod command;
}

use common::command::run_timeout;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn fuzz_inputs(sub: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz").join(sub);
    let mut v = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = fs::read(&p) {
                v.push((p, b));
            }
        }
    }
    v.sort();
    v
}

fn parse_everything(data: &[u8]) {
    let _ = aoefs::wire::Repr::parse(data);
    let _ = aoefs::wire::Identify::parse(data);
    let s = String::from_utf8_lossy(data);
    let _ = aoefs::blockfs::parse_dev_name(&s);
    for n in aoefs::link::split_iflist(&s) {
        assert!(!n.is_empty());
        let _ = aoefs::link::valid_ifname(&n);
    }
}

#[test]
fn fuzz_regressions_and_seed_corpus_parse_without_panic() {
    let mut n = 0;
    for sub in ["regressions", "seeds"] {
        for (p, data) in fuzz_inputs(sub) {
            let r = std::panic::catch_unwind(|| parse_everything(&data));
            assert!(r.is_ok(), "panic on {}", p.display());
            n += 1;
        }
    }
    assert!(n > 0, "no fuzz seeds found under tests/fuzz/seeds");
}

/// A short fuzzing run of every target (20 s each; needs cargo-fuzz and a
/// nightly toolchain or RUSTC_BOOTSTRAP=1; see tests/fuzz/README.md). Not
/// run in CI: `cargo test --release --test fuzz_regressions -- --ignored
/// fuzz_quick`.
#[test]
#[ignore = "needs cargo-fuzz (cargo install cargo-fuzz) and nightly or RUSTC_BOOTSTRAP=1; \
            run: cargo test --release --test fuzz_regressions -- --ignored fuzz_quick"]
fn fuzz_quick() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/run.sh");
    let out = run_timeout(Command::new("bash").arg(&script).arg("20"), Duration::from_secs(1200));
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}
