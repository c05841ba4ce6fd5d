//! Test data: the seeded PRNG, buffer comparisons, file reads and their
//! errnos, partition tables.

use super::process::run_with_stdin;
use super::seed::seeded;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// A mebibyte.
pub const MIB: u64 = 1 << 20;

/// The crate's seeded PRNG (`aoefs::link::fault::Rng`), with the helpers
/// the tests use.
#[derive(Clone)]
pub struct Rng(aoefs::link::fault::Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(aoefs::link::fault::Rng::new(seed))
    }
    /// A generator seeded from the clock; the seed is printed (shown with
    /// the test's output when it fails), so that a failure can be replayed
    /// with `Rng::new(seed)`.
    pub fn from_time() -> Rng {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        Rng::new(seeded("Rng::from_time", t ^ (std::process::id() as u64) << 32))
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

/// Opens a file for reading and writing, or panics naming it.
pub fn open_rw(p: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(p).unwrap_or_else(|e| panic!("open {}: {}", p.display(), e))
}

/// The errno of a failed call (None if it succeeded or has no errno).
pub fn errno_of<T>(r: &io::Result<T>) -> Option<i32> {
    r.as_ref().err().and_then(|e| e.raw_os_error())
}

/// `sfdisk -q FILE` with `script` on its stdin: writes a partition table.
pub fn sfdisk(file: &Path, script: &str) {
    let mut cmd = Command::new("sfdisk");
    cmd.arg("-q").arg(file);
    run_with_stdin(&mut cmd, script);
}
