//! `aoefs iostat MOUNTPOINT [INTERVAL [COUNT]]`: per-target I/O rates in the
//! manner of `iostat -x` and `nfsiostat`, from the targets' `stats` files.
//!
//! Each report has one line per target: read and write requests per second
//! (requests as aoefs sends them to the target: a read as the cache and
//! read-ahead issue it, a write in chunks of about 128 KiB), MB/s read and
//! written (MB = 2^20 bytes, as iostat's), the average time of a read and
//! of a write request from submission to completion in milliseconds,
//! retransmissions per second, the current window and the state. The first
//! report covers the time since the target was found (since the mount,
//! unless the target appeared later), as iostat's first report covers the
//! time since boot; each further one the last interval. Rates are over the
//! target's own clock (`age_us` in `stats`), so a slow read of the files
//! does not distort them.

use super::{attr_or_na, devices, read_stats, ToolError};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// What one report needs of a target, read from `block/eX.Y/`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub device: String,
    pub state: String,
    /// The counters' age in microseconds.
    pub age_us: u64,
    pub read_requests: u64,
    pub write_requests: u64,
    pub read_wait_us: u64,
    pub write_wait_us: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub retransmits: u64,
    pub window: u64,
}

/// Reads every target's `stats` and `state`, sorted by shelf and slot. A
/// target whose files vanish meanwhile (flushed) is left out.
pub fn sample(mnt: &Path) -> std::io::Result<Vec<Sample>> {
    let mut v = Vec::new();
    for (device, dir) in devices(mnt)? {
        let Ok(st) = read_stats(mnt, &device) else { continue };
        let c = st.counters;
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        v.push(Sample {
            age_us: get("age_us"),
            read_requests: get("read_requests"),
            write_requests: get("write_requests"),
            read_wait_us: get("read_wait_us"),
            write_wait_us: get("write_wait_us"),
            bytes_read: get("bytes_read"),
            bytes_written: get("bytes_written"),
            retransmits: get("retransmits"),
            window: get("window"),
            state: attr_or_na(&dir, "state"),
            device,
        });
    }
    Ok(v)
}

/// One line of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub device: String,
    pub reads_per_s: f64,
    pub writes_per_s: f64,
    pub read_mb_per_s: f64,
    pub write_mb_per_s: f64,
    /// Milliseconds per request (0 without requests).
    pub read_await_ms: f64,
    pub write_await_ms: f64,
    pub retransmits_per_s: f64,
    pub window: u64,
    pub state: String,
}

const MB: f64 = (1u64 << 20) as f64;

/// The report of `now` against the `prev` samples: over the interval
/// between them, or over the whole life of a target that is new (or whose
/// counters started again: flushed and found again).
pub fn report(prev: &[Sample], now: &[Sample]) -> Vec<Row> {
    let zero = Sample::default();
    now.iter()
        .map(|n| {
            let p = prev.iter().find(|p| p.device == n.device && p.age_us <= n.age_us).unwrap_or(&zero);
            let secs = (n.age_us - p.age_us) as f64 / 1e6;
            let rate = |a: u64, b: u64| if secs > 0.0 { a.saturating_sub(b) as f64 / secs } else { 0.0 };
            let wait = |w1: u64, w0: u64, r1: u64, r0: u64| {
                let n = r1.saturating_sub(r0);
                if n > 0 {
                    w1.saturating_sub(w0) as f64 / n as f64 / 1000.0
                } else {
                    0.0
                }
            };
            Row {
                device: n.device.clone(),
                reads_per_s: rate(n.read_requests, p.read_requests),
                writes_per_s: rate(n.write_requests, p.write_requests),
                read_mb_per_s: rate(n.bytes_read, p.bytes_read) / MB,
                write_mb_per_s: rate(n.bytes_written, p.bytes_written) / MB,
                read_await_ms: wait(n.read_wait_us, p.read_wait_us, n.read_requests, p.read_requests),
                write_await_ms: wait(n.write_wait_us, p.write_wait_us, n.write_requests, p.write_requests),
                retransmits_per_s: rate(n.retransmits, p.retransmits),
                window: n.window,
                state: n.state.clone(),
            }
        })
        .collect()
}

/// The column heads of a report.
pub fn header() -> String {
    format!(
        "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}  {}",
        "Device", "r/s", "w/s", "rMB/s", "wMB/s", "r_await", "w_await", "retrans/s", "window", "state"
    )
}

/// A report as printed: the heads, one line per target, an empty line.
pub fn format(rows: &[Row]) -> String {
    let mut s = header() + "\n";
    for r in rows {
        s.push_str(&format!(
            "{:<10} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>7}  {}\n",
            r.device,
            r.reads_per_s,
            r.writes_per_s,
            r.read_mb_per_s,
            r.write_mb_per_s,
            r.read_await_ms,
            r.write_await_ms,
            r.retransmits_per_s,
            r.window,
            r.state
        ));
    }
    s.push('\n');
    s
}

/// Prints a report to `out` now and then every `interval`, `count` reports
/// in all: without an interval one report, without a count until the
/// output fails (a closed pipe) or the process is stopped.
pub fn run(mnt: &Path, interval: Option<Duration>, count: Option<u64>, out: &mut impl Write) -> Result<(), ToolError> {
    let count = if interval.is_none() { Some(1) } else { count };
    let start = Instant::now();
    let mut prev = Vec::new();
    let mut n = 0u64;
    loop {
        let now = sample(mnt).map_err(|error| ToolError::File { path: mnt.to_path_buf(), error })?;
        out.write_all(format(&report(&prev, &now)).as_bytes()).and_then(|()| out.flush()).map_err(ToolError::Output)?;
        prev = now;
        n += 1;
        if count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        // On a fixed schedule, so that reports do not drift.
        let next = start + interval.expect("an interval when more than one report") * n as u32;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(device: &str, age_s: f64, reads: u64, bytes_read: u64, read_wait_us: u64) -> Sample {
        Sample {
            device: device.into(),
            state: "up".into(),
            age_us: (age_s * 1e6) as u64,
            read_requests: reads,
            read_wait_us,
            bytes_read,
            window: 16,
            ..Default::default()
        }
    }

    #[test]
    fn first_report_covers_the_life_of_each_target_then_intervals() {
        let t0 = [s("e0.1", 10.0, 100, 10 << 20, 50_000)];
        let first = report(&[], &t0);
        assert_eq!(first[0].reads_per_s, 10.0);
        assert_eq!(first[0].read_mb_per_s, 1.0);
        assert_eq!(first[0].read_await_ms, 0.5);
        assert_eq!(first[0].writes_per_s, 0.0);
        assert_eq!(first[0].write_await_ms, 0.0, "no writes: no wait, not NaN");
        let t1 = [s("e0.1", 12.0, 300, 30 << 20, 250_000), s("e0.2", 4.0, 8, 1 << 20, 800)];
        let next = report(&t0, &t1);
        assert_eq!((next[0].reads_per_s, next[0].read_mb_per_s, next[0].read_await_ms), (100.0, 10.0, 1.0));
        assert_eq!(next[1].reads_per_s, 2.0, "a target found since the last report: over its life");
        // Flushed and found again: the counters started over.
        let t2 = [s("e0.1", 1.0, 5, 0, 0)];
        assert_eq!(report(&t1, &t2)[0].reads_per_s, 5.0);
        // No time passed: no rates rather than infinities.
        assert_eq!(report(&t1, &t1)[0].reads_per_s, 0.0);
    }

    #[test]
    fn the_report_lines_up_under_its_header() {
        let t = format(&report(&[], &[s("e10.255", 2.0, 3, 3 << 20, 3000)]));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], header());
        assert_eq!(lines[1], "e10.255        1.50     0.00     1.50     0.00     1.00     0.00      0.00      16  up");
        assert_eq!(lines[2], "");
        // Each number ends under the end of its column head.
        for head in ["r/s", "rMB/s", "r_await", "retrans/s", "window"] {
            let end = lines[0].find(head).unwrap() + head.len();
            assert!(lines[1].as_bytes()[end - 1].is_ascii_digit(), "{head}");
            assert_eq!(lines[1].as_bytes()[end], b' ', "{head}");
        }
    }
}
