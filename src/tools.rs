//! The subcommands that work on a mounted aoefs through its files
//! (`aoefs stat|discover|flush|revalidate|config MOUNTPOINT ...`), for people
//! who would rather not echo into control files.

pub mod iostat;

use std::collections::BTreeMap;
use std::fmt::Write as _;
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

/// The targets' directories under `MOUNTPOINT/block/` (their names and
/// paths), sorted by shelf and slot.
pub fn devices(mnt: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(mnt.join("block"))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if crate::blockfs::parse_dev_name(&name).is_some() {
            v.push((name, e.path()));
        }
    }
    v.sort_by_key(|(name, _)| crate::blockfs::parse_dev_name(name));
    Ok(v)
}

/// A target's status attribute without its newline, or "(NA)".
fn attr_or_na(dir: &Path, name: &str) -> String {
    attr(dir, name).unwrap_or_else(|| "(NA)".into())
}

/// Reads every target's status directory, sorted by shelf and slot.
pub fn stat_rows(mnt: &Path) -> std::io::Result<Vec<StatRow>> {
    Ok(devices(mnt)?
        .into_iter()
        .map(|(device, d)| StatRow {
            sectors: attr(&d, "size").and_then(|s| s.parse().ok()),
            netif: attr_or_na(&d, "netif"),
            payload: attr_or_na(&d, "payload"),
            state: attr_or_na(&d, "state"),
            device,
        })
        .collect())
}

/// Reads and parses the `stats` file of target `device`.
pub fn read_stats(mnt: &Path, device: &str) -> std::io::Result<Stats> {
    Ok(parse_stats(&std::fs::read_to_string(mnt.join("block").join(device).join("stats"))?))
}

/// A target's `stats` file: the target's counters, then each path's
/// (lines `path IFNAME MAC KEY VALUE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub counters: BTreeMap<String, u64>,
    pub paths: Vec<PathStats>,
}

/// One path of a target in its `stats` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathStats {
    pub ifname: String,
    /// The target's MAC on this path, 12 hex digits.
    pub mac: String,
    pub counters: BTreeMap<String, u64>,
}

/// Parses a `stats` file; lines it does not understand are skipped.
pub fn parse_stats(text: &str) -> Stats {
    let mut st = Stats::default();
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["path", ifname, mac, key, value] => {
                let Ok(v) = value.parse() else { continue };
                let i = match st.paths.iter().position(|p| p.ifname == *ifname && p.mac == *mac) {
                    Some(i) => i,
                    None => {
                        st.paths.push(PathStats {
                            ifname: ifname.to_string(),
                            mac: mac.to_string(),
                            ..Default::default()
                        });
                        st.paths.len() - 1
                    }
                };
                st.paths[i].counters.insert(key.to_string(), v);
            }
            [key, value] => {
                if let Ok(v) = value.parse() {
                    st.counters.insert(key.to_string(), v);
                }
            }
            _ => {}
        }
    }
    st
}

/// A JSON string: quoted, with `"`, `\\` and control characters escaped.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `aoefs stat --json`: the table's fields for every target (`sectors`
/// and `payload` as numbers, `null` when unknown; `size` as the table
/// shows it) and its paths from `stats` (interface, the target's MAC,
/// `failed` as a boolean, and the path's counters), on one line.
pub fn format_stat_json(mnt: &Path, rows: &[StatRow], stats: &[Stats]) -> String {
    let num = |n: Option<u64>| n.map_or_else(|| "null".to_string(), |n| n.to_string());
    let mut s = format!("{{\"mountpoint\":{},\"targets\":[", json_string(&mnt.to_string_lossy()));
    for (i, (r, st)) in rows.iter().zip(stats).enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"device\":{},\"sectors\":{},\"size\":{},\"netif\":{},\"payload\":{},\"state\":{},\"paths\":[",
            json_string(&r.device),
            num(r.sectors),
            r.sectors.map_or_else(|| "null".to_string(), |n| json_string(&gb(n))),
            json_string(&r.netif),
            num(r.payload.parse().ok()),
            json_string(&r.state),
        );
        for (j, p) in st.paths.iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            let _ = write!(s, "{{\"interface\":{},\"mac\":{}", json_string(&p.ifname), json_string(&p.mac));
            for (k, v) in &p.counters {
                if k == "failed" {
                    let _ = write!(s, ",\"failed\":{}", *v != 0);
                } else {
                    let _ = write!(s, ",{}:{v}", json_string(k));
                }
            }
            s.push('}');
        }
        s.push_str("]}");
    }
    s.push_str("]}\n");
    s
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

/// Why a subcommand failed, worded for its user: what it is about first.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}: not a target name (eX.Y, such as e0.1)")]
    NotATarget(String),
    #[error("{}: not an aoefs mount", .0.display())]
    NotAMount(PathBuf),
    #[error("{0}: no such target")]
    NoSuchTarget(String),
    #[error("{0}: in use: close it first (unmount its filesystems, losetup -d its loop devices)")]
    InUse(String),
    #[error("{0}: the target holds another config string; --force overrides it")]
    ConfigPresent(String),
    #[error("{0}: no answer from the target")]
    NoAnswer(String),
    /// A file of the mount could not be read or written.
    #[error("{}: {error}", path.display())]
    File { path: PathBuf, error: std::io::Error },
    /// The report could not be written (a closed pipe).
    #[error("output: {0}")]
    Output(std::io::Error),
}

/// The control file a subcommand writes its command to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Discover,
    Flush,
    Revalidate,
    /// `block/eX.Y/config`
    Config,
}

/// Checks a target's name as a user gave it: `eX.Y`.
pub fn check_target(name: &str) -> Result<(), ToolError> {
    match crate::blockfs::parse_dev_name(name) {
        Some(_) if name.trim() == name => Ok(()),
        _ => Err(ToolError::NotATarget(name.to_string())),
    }
}

/// What a failed write of a subcommand to `path` (its control file `ctl`,
/// about `target` when it names one) means: the target named when there is
/// no such target, and what to do when the target or the mount refuses.
pub fn explain_failure(ctl: Control, target: Option<&str>, path: &Path, e: std::io::Error) -> ToolError {
    let t = || target.unwrap_or_default().to_string();
    match (ctl, target, e.raw_os_error()) {
        // flush answers ENXIO for a target it does not know; a target's
        // status directory that does not exist is ENOENT.
        (_, Some(_), Some(libc::ENXIO | libc::ENOENT)) => ToolError::NoSuchTarget(t()),
        // revalidate answers EINVAL for a target it does not know, as the
        // driver does (the name itself was checked before).
        (Control::Revalidate, Some(_), Some(libc::EINVAL)) => ToolError::NoSuchTarget(t()),
        (Control::Flush, Some(_), Some(libc::EBUSY)) => ToolError::InUse(t()),
        (Control::Config, Some(_), Some(libc::EBUSY)) => ToolError::ConfigPresent(t()),
        (_, Some(_), Some(libc::ETIMEDOUT)) => ToolError::NoAnswer(t()),
        _ => ToolError::File { path: path.to_path_buf(), error: e },
    }
}

/// Writes one command to a control file of the mount (`ctl` at `path`),
/// about `target` when it names one; a failure as `explain_failure` words it.
pub fn write_control(ctl: Control, target: Option<&str>, path: &Path, data: &str) -> Result<(), ToolError> {
    if let Some(t) = target {
        check_target(t)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(data.as_bytes()))
        .map_err(|e| explain_failure(ctl, target, path, e))
}

/// Checks that `mnt` is an aoefs mount (it has the control files).
pub fn check_mount(mnt: &Path) -> Result<PathBuf, ToolError> {
    if mnt.join("discover").exists() && mnt.join("block").is_dir() {
        Ok(mnt.to_path_buf())
    } else {
        Err(ToolError::NotAMount(mnt.to_path_buf()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_target_and_what_to_do() {
        let p = Path::new("/mnt/etherd/flush");
        let err = |n| std::io::Error::from_raw_os_error(n);
        let t = Some("e9.9");
        let explain = |ctl, t, e| explain_failure(ctl, t, p, e).to_string();
        assert_eq!(explain(Control::Flush, t, err(libc::ENXIO)), "e9.9: no such target");
        assert_eq!(explain(Control::Revalidate, t, err(libc::EINVAL)), "e9.9: no such target");
        assert_eq!(explain(Control::Config, t, err(libc::ENOENT)), "e9.9: no such target");
        assert!(explain(Control::Flush, t, err(libc::EBUSY)).starts_with("e9.9: in use: close it first"));
        let e = explain(Control::Config, t, err(libc::EBUSY));
        assert!(e.contains("another config string") && e.contains("--force"), "{e}");
        assert_eq!(explain(Control::Config, t, err(libc::ETIMEDOUT)), "e9.9: no answer from the target");
        // Without a target, or an errno that says nothing more: the file and the error.
        assert_eq!(
            explain(Control::Flush, None, err(libc::EINVAL)),
            "/mnt/etherd/flush: Invalid argument (os error 22)"
        );
        assert!(explain(Control::Flush, t, err(libc::EIO)).starts_with("/mnt/etherd/flush: "));
        assert_eq!(check_target("e0.1").map_err(|e| e.to_string()), Ok(()));
        for bad in ["garbage", " e0.1", "e0.1\n", "e0.1p1", ""] {
            assert_eq!(
                check_target(bad).map_err(|e| e.to_string()),
                Err(format!("{bad}: not a target name (eX.Y, such as e0.1)"))
            );
        }
    }

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

    #[test]
    fn stats_files_parse_into_target_and_path_counters() {
        let st = parse_stats(
            "frames_sent 10\nretransmits 2\nnot a counter line\nrtt_avg_us x\n\
             path eth1 0a0b0c0d0e0f frames_sent 6\npath eth1 0a0b0c0d0e0f failed 0\n\
             path eth3 0a0b0c0d0e10 frames_sent 4\npath eth3 0a0b0c0d0e10 failed 1\n",
        );
        assert_eq!(st.counters.len(), 2);
        assert_eq!(st.counters["retransmits"], 2);
        assert_eq!(st.paths.len(), 2);
        assert_eq!((st.paths[1].ifname.as_str(), st.paths[1].mac.as_str()), ("eth3", "0a0b0c0d0e10"));
        assert_eq!(st.paths[1].counters["failed"], 1);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("e0.1"), r#""e0.1""#);
        // Control characters escaped; DEL and non-ASCII may stay as they are.
        assert_eq!(json_string("a\"b\\c\nd\te\u{1}f\u{7f}é"), "\"a\\\"b\\\\c\\nd\\te\\u0001f\u{7f}é\"");
    }

    #[test]
    fn stat_json_has_the_table_and_the_paths() {
        let rows = [
            StatRow {
                device: "e0.1".into(),
                sectors: Some(524288),
                netif: "eth1".into(),
                payload: "8704".into(),
                state: "up".into(),
            },
            StatRow {
                device: "e0.2".into(),
                sectors: None,
                netif: "(NA)".into(),
                payload: "(NA)".into(),
                state: "down".into(),
            },
        ];
        let stats =
            [parse_stats("path eth1 0a0b0c0d0e0f frames_sent 6\npath eth1 0a0b0c0d0e0f failed 0\n"), Stats::default()];
        assert_eq!(
            format_stat_json(Path::new("/mnt/a\"b"), &rows, &stats),
            concat!(
                r#"{"mountpoint":"/mnt/a\"b","targets":["#,
                r#"{"device":"e0.1","sectors":524288,"size":"0.268GB","netif":"eth1","payload":8704,"state":"up","#,
                r#""paths":[{"interface":"eth1","mac":"0a0b0c0d0e0f","failed":false,"frames_sent":6}]},"#,
                r#"{"device":"e0.2","sectors":null,"size":null,"netif":"(NA)","payload":null,"state":"down","paths":[]}]}"#,
                "\n"
            )
        );
    }
}
