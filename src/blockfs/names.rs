//! Names in the mount: `e{shelf}.{slot}` for a target and `e{shelf}.{slot}p{N}`
//! for its partitions, and `sys/block/etherd!e{shelf}.{slot}`, the name the
//! driver's status directory has in /sys/block.

use crate::device::Device;

/// What the kernel puts before a target's name in /sys/block
/// (`/sys/block/etherd!e0.1`). aoe-stat prints a directory's name without
/// everything up to the `!`.
pub const SYS_BLOCK_PREFIX: &str = "etherd!";

/// `etherd!eX.Y`: the target's name in `sys/block/`.
pub fn sys_link_name(dev: &Device) -> String {
    format!("{SYS_BLOCK_PREFIX}{}", dev.name())
}

/// Where `sys/block/etherd!eX.Y` points: the status directory `block/eX.Y`.
pub fn sys_link_target(dev: &Device) -> String {
    format!("../../block/{}", dev.name())
}

/// Parses `etherd!e{shelf}.{slot}`.
pub fn parse_sys_link_name(s: &str) -> Option<(u16, u8)> {
    parse_dev_name(s.strip_prefix(SYS_BLOCK_PREFIX)?)
}

/// Parses `e{shelf}.{slot}` (surrounding whitespace allowed).
pub fn parse_dev_name(s: &str) -> Option<(u16, u8)> {
    let s = s.trim().strip_prefix('e')?;
    let (a, b) = s.split_once('.')?;
    let digits = |x: &str| !x.is_empty() && x.len() <= 5 && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let shelf: u32 = a.parse().ok()?;
    let slot: u32 = b.parse().ok()?;
    if shelf >= 0xFFFF || slot >= 0xFF {
        return None;
    }
    Some((shelf as u16, slot as u8))
}

/// Parses an image file name: `e0.1` (part 0, the disk) or `e0.1p2`.
pub fn parse_file_name(s: &str) -> Option<(u16, u8, u32)> {
    match s.rsplit_once('p') {
        Some((dev, n)) if !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()) => {
            let (sh, sl) = parse_dev_name(dev)?;
            let n: u32 = n.parse().ok()?;
            (1..=crate::partition::MAX_PARTITION_NUMBER).contains(&n).then_some((sh, sl, n))
        }
        _ => parse_dev_name(s).map(|(a, b)| (a, b, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_names() {
        assert_eq!(parse_dev_name("e0.2"), Some((0, 2)));
        assert_eq!(parse_dev_name(" e10.3\n"), Some((10, 3)));
        assert_eq!(parse_dev_name("e65534.254"), Some((65534, 254)));
        for bad in
            ["", "e", "e1", "e1.", "e.1", "x1.2", "e1.2.3", "e-1.2", "e65535.1", "e1.255", "e1.2x", "e99999999999.1"]
        {
            assert_eq!(parse_dev_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sys_block_names() {
        let d = Device::new(3, 10, 4, 16, 0);
        assert_eq!(sys_link_name(&d), "etherd!e10.4");
        assert_eq!(sys_link_target(&d), "../../block/e10.4");
        assert_eq!(parse_sys_link_name("etherd!e10.4"), Some((10, 4)));
        for bad in ["e10.4", "etherd!", "etherd!e10", "etherd e10.4", "Etherd!e10.4"] {
            assert_eq!(parse_sys_link_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn file_names() {
        assert_eq!(parse_file_name("e0.1"), Some((0, 1, 0)));
        assert_eq!(parse_file_name("e0.1p1"), Some((0, 1, 1)));
        assert_eq!(parse_file_name("e10.3p255"), Some((10, 3, 255)));
        for bad in ["e0.1p0", "e0.1p", "e0.1p256", "e0.1px", "p1", "e0p1", "e0.1p1p2", "e0.1p0001"] {
            assert_eq!(parse_file_name(bad), None, "{bad:?}");
        }
    }
}
