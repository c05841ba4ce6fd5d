//! The subcommands that work on a mounted aoefs through its files
//! (`aoefs stat|discover|flush|revalidate|config MOUNTPOINT ...`), for people
//! who would rather not echo into control files.

use std::io::Write;
use std::path::{Path, PathBuf};

/// One row of `stat`, read from `MOUNTPOINT/block/eX.Y/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatRow {
    pub device: String,
    pub sectors: Option<u64>,
    pub netif: String,
    pub payload: String,
    pub state: String,
}

fn attr(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name)).ok().map(|s| s.trim_end_matches('\n').to_string())
}

/// Size the way aoe-stat prints it: decimal GB with three decimals.
pub fn gb(sectors: u64) -> String {
    let n = sectors * 512 / 1_000_000; // in MB
    format!("{}.{:03}GB", n / 1000, n % 1000)
}

/// Reads every target's status directory, sorted by shelf and slot.
pub fn stat_rows(mnt: &Path) -> std::io::Result<Vec<StatRow>> {
    let block = mnt.join("block");
    let mut rows = Vec::new();
    for e in std::fs::read_dir(&block)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if crate::blockfs::parse_dev_name(&name).is_none() {
            continue;
        }
        let d = e.path();
        rows.push(StatRow {
            sectors: attr(&d, "size").and_then(|s| s.parse().ok()),
            netif: attr(&d, "netif").unwrap_or_else(|| "(NA)".into()),
            payload: attr(&d, "payload").unwrap_or_else(|| "(NA)".into()),
            state: attr(&d, "state").unwrap_or_else(|| "(NA)".into()),
            device: name,
        });
    }
    rows.sort_by_key(|r| crate::blockfs::parse_dev_name(&r.device));
    Ok(rows)
}

/// aoe-stat's table: `%10s %15s %10s %-5s %-14s`.
pub fn format_stat(rows: &[StatRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let size = r.sectors.map(gb).unwrap_or_else(|| "(NA)".into());
        s.push_str(&format!("{:>10} {:>15} {:>10} {:<5} {:<14}\n", r.device, size, r.netif, r.payload, r.state));
    }
    s
}

/// Writes one command to a control file of the mount.
pub fn write_control(path: &Path, data: &str) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(data.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks that `mnt` is an aoefs mount (it has the control files).
pub fn check_mount(mnt: &Path) -> Result<PathBuf, String> {
    if mnt.join("discover").exists() && mnt.join("block").is_dir() {
        Ok(mnt.to_path_buf())
    } else {
        Err(format!("{}: not an aoefs mount", mnt.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_aoe_stat() {
        assert_eq!(gb(524288), "0.268GB");
        assert_eq!(gb(2_000_000_000 / 512), "2.000GB");
        assert_eq!(gb(0), "0.000GB");
    }

    #[test]
    fn table_rows_and_order() {
        let dir = std::env::temp_dir().join(format!("aoefs-stat-test-{}", std::process::id()));
        for (d, size) in [("e10.0", "100"), ("e2.1", "524288")] {
            let p = dir.join("block").join(d);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("size"), format!("{size}\n")).unwrap();
            std::fs::write(p.join("netif"), "eth1\n").unwrap();
            std::fs::write(p.join("payload"), "1024\n").unwrap();
            std::fs::write(p.join("state"), "up\n").unwrap();
        }
        std::fs::create_dir_all(dir.join("block").join("junk")).unwrap();
        let rows = stat_rows(&dir).unwrap();
        assert_eq!(rows.iter().map(|r| r.device.as_str()).collect::<Vec<_>>(), ["e2.1", "e10.0"]);
        let t = format_stat(&rows);
        assert_eq!(t.lines().next().unwrap(), "      e2.1         0.268GB       eth1 1024  up            ");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
