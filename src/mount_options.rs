//! `-o`: aoefs's own settings as mount(8) and fstab pass them
//! (`iflist=eth1:eth3`, `macs=020000000001:020000000002`, `deadsecs=N`,
//! `maxout=N`, `cache_mb=N`, `readahead_kb=N`, `busy_poll_us=N`), and the
//! FUSE mount options that remain. A number is parsed by its flag's parser
//! (`cli::parse`): the same limits, refused in the same words (clap's),
//! exit code 2.

use crate::cli::{parse, Cli};
use clap::builder::TypedValueParser;
use clap::error::{ContextKind, ContextValue};
use clap::CommandFactory;
use std::ffi::OsStr;

/// Takes aoefs's own settings out of `cli.options` into the fields their
/// flags set (an `-o` setting wins over the flag); the rest stay.
pub fn apply(cli: &mut Cli) -> Result<(), clap::Error> {
    let mut rest = Vec::new();
    for o in std::mem::take(&mut cli.options) {
        let Some((k, v)) = o.split_once('=').map(|(k, v)| (k.trim(), v.trim())) else {
            rest.push(o);
            continue;
        };
        match k {
            "iflist" => cli.iflist = Some(v.replace(':', " ")),
            // Colons separate the MACs here (commas separate options).
            "macs" => cli.macs = Some(v.replace(':', ",")),
            "deadsecs" => cli.deadsecs = number(parse::deadsecs(), k, v)?,
            "maxout" => cli.maxout = number(parse::maxout(), k, v)?,
            "cache_mb" => cli.cache_mb = number(parse::cache_mb(), k, v)?,
            "readahead_kb" => cli.readahead_kb = number(parse::readahead_kb(), k, v)?,
            "busy_poll_us" => cli.busy_poll_us = Some(number(parse::busy_poll_us(), k, v)?),
            "busy_poll" => {
                cli.busy_poll =
                    Some(<crate::cli::BusyPollMode as clap::ValueEnum>::from_str(v, false).map_err(|_| {
                        clap::Error::raw(
                            clap::error::ErrorKind::InvalidValue,
                            format!("invalid value '{v}' for '-o busy_poll': off, on or auto\n"),
                        )
                    })?)
            }
            _ => rest.push(o),
        }
    }
    cli.options = rest;
    Ok(())
}

/// `value` of `-o key=value`, by its flag's parser; an error names `-o key`.
fn number<P: TypedValueParser>(parser: P, key: &str, value: &str) -> Result<P::Value, clap::Error> {
    parser.parse_ref(&Cli::command(), None, OsStr::new(value)).map_err(|mut e| {
        e.insert(ContextKind::InvalidArg, ContextValue::String(format!("-o {key}")));
        e
    })
}

/// The FUSE side of `-o`.
pub struct FuseOptions {
    pub readonly: bool,
    pub acl: fuser::SessionACL,
    pub mount: Vec<fuser::MountOption>,
}

/// The mount options for fuser from what `-o` left (see `apply`): the
/// last of `ro` and `rw` wins, as with mount(8); `allow_other` and
/// `allow_root` set who may use the mount; aoefs always mounts with
/// default_permissions, nosuid and nodev; anything else goes to FUSE.
pub fn fuse_options(options: &[String]) -> FuseOptions {
    let mut readonly = false;
    let mut acl = fuser::SessionACL::Owner;
    let mut mount = vec![
        fuser::MountOption::FSName("aoefs".into()),
        fuser::MountOption::Subtype("aoefs".into()),
        // The direct mount(2) path ignores Subtype: pass it to the kernel too, so
        // /proc/mounts says fuse.aoefs (as mount(8) and fstab expect).
        fuser::MountOption::CUSTOM("subtype=aoefs".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
    ];
    for o in options.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "allow_other" => acl = fuser::SessionACL::All,
            "allow_root" => acl = fuser::SessionACL::RootAndOwner,
            "default_permissions" | "nosuid" | "nodev" | "suid" | "dev" => {}
            other => mount.push(fuser::MountOption::CUSTOM(other.to_string())),
        }
    }
    if readonly {
        mount.push(fuser::MountOption::RO);
    }
    FuseOptions { readonly, acl, mount }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["aoefs", "/mnt"].iter().chain(args))
    }

    fn with_o(o: &str) -> Result<Cli, clap::Error> {
        let mut c = cli(&["-o", o])?;
        apply(&mut c).map(|()| c)
    }

    #[test]
    fn each_number_in_o_takes_exactly_what_its_flag_takes() {
        let cases = [
            ("deadsecs", "--deadsecs", &["0", "180", "4294967295", "4294967296", "-1", "abc", ""][..]),
            ("maxout", "--maxout", &["0", "1", "4096", "4097", "x"]),
            ("cache_mb", "--cache-mb", &["0", "64", "1048576", "-1", "1.5"]),
            ("readahead_kb", "--readahead-kb", &["0", "262144", "262145"]),
            ("busy_poll_us", "--busy-poll-us", &["0", "100000", "100001"]),
        ];
        for (key, flag, values) in cases {
            for v in values {
                let by_flag = cli(&[&format!("{flag}={v}")]);
                let by_o = with_o(&format!("{key}={v}"));
                assert_eq!(by_o.is_ok(), by_flag.is_ok(), "-o {key}={v} and {flag}={v}");
                if let (Ok(a), Ok(b)) = (by_flag, by_o) {
                    assert_eq!(format!("{a:?}"), format!("{b:?}"), "the same value");
                }
            }
        }
    }

    #[test]
    fn busy_polling_is_auto_unless_turned_off_or_on() {
        use aoefs::link::pcap::BusyPoll;
        use std::time::Duration;
        let us = Duration::from_micros;
        for (args, want) in [
            (&[][..], BusyPoll::Adaptive(us(50))),
            (&["--busy-poll-us", "0"], BusyPoll::Off),
            (&["--busy-poll-us", "30"], BusyPoll::Adaptive(us(30))),
            (&["--busy-poll", "off"], BusyPoll::Off),
            (&["--busy-poll", "on", "--busy-poll-us", "0"], BusyPoll::Always(us(50))),
            (&["--busy-poll", "on"], BusyPoll::Always(us(50))),
            (&["--busy-poll", "auto"], BusyPoll::Adaptive(us(50))),
            (&["--busy-poll", "auto", "--busy-poll-us", "80"], BusyPoll::Adaptive(us(80))),
            (&["--busy-poll", "off", "--busy-poll-us", "80"], BusyPoll::Off),
        ] {
            assert_eq!(cli(args).unwrap().busy_poll(), want, "{args:?}");
        }
        assert_eq!(with_o("busy_poll=auto,busy_poll_us=20").unwrap().busy_poll(), BusyPoll::Adaptive(us(20)));
        assert_eq!(with_o("busy_poll_us=0").unwrap().busy_poll(), BusyPoll::Off);
        assert_eq!(with_o("busy_poll=on").unwrap().busy_poll(), BusyPoll::Always(us(50)));
        assert!(with_o("busy_poll=sometimes").is_err());
        assert!(cli(&["--busy-poll", "sometimes"]).is_err());
    }

    #[test]
    fn a_number_out_of_range_in_o_is_a_usage_error_in_clap_words() {
        let flag = cli(&["--maxout", "0"]).unwrap_err();
        let o = with_o("maxout=0").unwrap_err();
        assert_eq!((o.kind(), o.exit_code()), (flag.kind(), 2));
        assert!(flag.to_string().starts_with("error: invalid value '0' for '--maxout <N>': 0 is not in 1..=4096"));
        assert!(o.to_string().starts_with("error: invalid value '0' for '-o maxout': 0 is not in 1..=4096"), "{o}");
        let o = with_o("deadsecs=abc").unwrap_err();
        assert!(o.to_string().starts_with("error: invalid value 'abc' for '-o deadsecs': invalid digit"), "{o}");
    }

    #[test]
    fn aoefs_settings_leave_o_and_win_over_their_flags() {
        let mut c =
            cli(&["--maxout", "64", "-o", "ro,maxout=8,iflist=eth1:eth3,macs=020000000001:020000000002,x=y"]).unwrap();
        apply(&mut c).unwrap();
        assert_eq!(c.maxout, 8);
        assert_eq!(c.iflist.as_deref(), Some("eth1 eth3"));
        assert_eq!(c.macs.as_deref(), Some("020000000001,020000000002"));
        assert_eq!(c.options, ["ro", "x=y"]);
        // Spaces around the = are allowed (fstab fields are trimmed).
        assert_eq!(with_o(" deadsecs = 30 ").unwrap().deadsecs, 30);
    }

    #[test]
    fn the_last_of_ro_and_rw_wins_and_the_rest_goes_to_fuse() {
        let opts = |o: &[&str]| fuse_options(&o.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(opts(&["rw", "ro"]).readonly);
        assert!(!opts(&["ro", "rw"]).readonly);
        assert!(opts(&["ro"]).mount.contains(&fuser::MountOption::RO));
        assert_eq!(opts(&["allow_other"]).acl, fuser::SessionACL::All);
        assert_eq!(opts(&["allow_root"]).acl, fuser::SessionACL::RootAndOwner);
        assert_eq!(opts(&[]).acl, fuser::SessionACL::Owner);
        let base = opts(&[]).mount.len();
        let f = opts(&["nosuid", "dev", "default_permissions", "", "fsname=x"]);
        assert_eq!(f.mount.len(), base + 1);
        assert_eq!(f.mount.last(), Some(&fuser::MountOption::CUSTOM("fsname=x".into())));
    }
}
