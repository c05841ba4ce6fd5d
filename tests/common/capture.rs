//! tshark: capturing AoE frames in a namespace and decoding the capture.

use super::process::{poll_until, run};
use super::testbed::Testbed;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

impl Testbed {
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

/// The values of `fields` (tshark field names, e.g. `aoe.ata.cmd`) of each
/// frame in `pcap` matching display filter `filter`, in capture order.
pub fn tshark_fields(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut c = Command::new("tshark");
    c.arg("-n").arg("-r").arg(pcap).args(["-Y", filter, "-T", "fields", "-E", "separator=,"]);
    for f in fields {
        c.args(["-e", f]);
    }
    let out = run(&mut c);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(|v| v.trim().to_string()).collect())
        .collect()
}
