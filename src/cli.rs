//! The command line (clap derive): the mount's options and the
//! subcommands. The numbers `-o` also takes (as mount(8) passes them) are
//! parsed by the functions in `parse`, for the flag and for `-o`
//! (`mount_options`): each limit is defined once.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// The parsers of the numbers `-o` also takes: a flag's and its `-o`
/// form's, so both take the same values.
pub mod parse {
    use clap::builder::{RangedI64ValueParser, TypedValueParser};

    /// `--deadsecs`, `-o deadsecs=`: seconds, 0 to 2^32-1.
    pub fn deadsecs() -> RangedI64ValueParser<u32> {
        clap::value_parser!(u32)
    }

    /// `--maxout`, `-o maxout=`: frames, 1 to 4096.
    pub fn maxout() -> RangedI64ValueParser<u16> {
        clap::value_parser!(u16).range(1..=4096)
    }

    /// `--cache-mb`, `-o cache_mb=`: MiB, any size.
    pub fn cache_mb() -> impl TypedValueParser<Value = usize> {
        |s: &str| s.parse::<usize>()
    }

    /// `--readahead-kb`, `-o readahead_kb=`: KiB, at most 256 MiB.
    pub fn readahead_kb() -> RangedI64ValueParser<u32> {
        clap::value_parser!(u32).range(0..=262144)
    }

    /// `--busy-poll-us`, `-o busy_poll_us=`: microseconds, at most 0.1 s.
    pub fn busy_poll_us() -> RangedI64ValueParser<u32> {
        clap::value_parser!(u32).range(0..=100000)
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "aoefs",
    version,
    about = "Mount ATA-over-Ethernet targets as files (a userspace AoE initiator)",
    long_about = "Discovers AoE targets (vblade, Coraid shelves) on the allowed interfaces and mounts them \
with FUSE: each target is an image file e{shelf}.{slot}; the control files discover, interfaces, err, \
revalidate and flush and the status directories block/e{shelf}.{slot}/ behave like the Linux aoe driver's.",
    after_help = "Example:\n  aoefs /mnt/etherd --iflist eth1\n  losetup /dev/loop0 /mnt/etherd/e0.2\n  cat /mnt/etherd/block/e0.2/state\n  aoefs stat /mnt/etherd\n  umount /mnt/etherd\n\nExit codes: 0 mounted (or subcommand done), 1 runtime failure (mount point busy, no FUSE,\nno permission for raw capture), 2 usage error (bad option, unknown interface, missing mount point).",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    /// Directory to mount on
    #[arg(required = true)]
    pub mountpoint: Option<PathBuf>,
    /// Interfaces to use for AoE, whitespace- or comma-separated (default: every up non-loopback interface)
    #[arg(long, value_name = "LIST")]
    pub iflist: Option<String>,
    /// Seconds a read or write may wait for the target's answer before the target is marked down and its I/O fails with EIO; answers to config queries do not count (0: retry forever)
    #[arg(long, default_value_t = 180, value_name = "SECS", value_parser = parse::deadsecs())]
    pub deadsecs: u32,
    /// Only these target MACs may become paths (comma-separated; aa:bb:cc:dd:ee:ff, aa-bb-.. or 12 hex digits), and discovery asks them instead of broadcasting. Recommended on a shared LAN, with vblade -m on the targets
    #[arg(long, value_name = "MAC[,MAC...]")]
    pub macs: Option<String>,
    /// Most frames outstanding to one target (also capped by the target's buffer count)
    #[arg(long, default_value_t = 128, value_name = "N", value_parser = parse::maxout())]
    pub maxout: u16,
    /// Stay in the foreground (SIGINT/SIGTERM unmount and exit)
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Mount options, comma-separated: ro, rw, allow_other, allow_root, any other FUSE option, and aoefs's own
    /// settings as mount(8) passes them: iflist=eth1:eth3, deadsecs=N, maxout=N, cache_mb=N, readahead_kb=N,
    /// busy_poll_us=N, busy_poll=off|on|auto
    #[arg(short = 'o', value_name = "OPTS", value_delimiter = ',')]
    pub options: Vec<String>,
    /// Read cache size in MiB (0 disables it)
    #[arg(long, default_value_t = 64, value_name = "MIB", value_parser = parse::cache_mb())]
    pub cache_mb: usize,
    /// Most data fetched ahead of a sequential reader, per target, in KiB (0 disables read-ahead)
    #[arg(long, default_value_t = 4096, value_name = "KIB", value_parser = parse::readahead_kb())]
    pub readahead_kb: u32,
    /// Longest wait for targets to answer the first discovery before the mount appears
    #[arg(long, default_value_t = 1500, value_name = "MS")]
    pub discover_wait_ms: u64,
    /// Debug logging to stderr (RUST_LOG also works; a daemon logs to syslog)
    #[arg(short = 'd', long)]
    pub debug: bool,
    /// Write the daemon's process id to this file (removed at exit)
    #[arg(long, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,
    /// Busy-poll budget: how many microseconds the capture thread keeps checking for the next frame before it
    /// sleeps (default 50; 0: no busy-polling). Spends CPU to cut small-request latency, like net.core.busy_poll
    #[arg(long, value_name = "US", value_parser = parse::busy_poll_us())]
    pub busy_poll_us: Option<u32>,
    /// When the capture thread busy-polls: auto (the default: only while a reply is awaited by a caller with
    /// nothing else to do: at most 2 requests at once, the target's commands in flight and the application's
    /// requests alike, and a round trip within four budgets; until a round trip and a budget after the last such
    /// frame; never while idle); on (after every burst of frames);
    /// off
    #[arg(long, value_enum, value_name = "MODE")]
    pub busy_poll: Option<BusyPollMode>,
    /// FUSE request threads
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub fuse_threads: u16,
    /// Worker threads for writes, fsync and err reads
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,
    /// For the bench (tests/bench): instead of network interfaces, one simulated target e0.1 (64 GiB that read as
    /// zeros and forget what is written) in this process, over an in-memory link of this MTU: aoefs and FUSE
    /// without a network or a target's cost (the "FUSE floor")
    #[arg(long, hide = true, value_name = "MTU", value_parser = clap::value_parser!(u16).range(1100..=9000))]
    pub bench_sim_target: Option<u16>,
}

/// `--busy-poll`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyPollMode {
    Off,
    On,
    Auto,
}

/// The busy-poll budget without `--busy-poll-us`.
pub const BUSY_POLL_DEFAULT_US: u32 = 50;

impl Cli {
    /// What `--busy-poll` and `--busy-poll-us` ask of the capture threads.
    pub fn busy_poll(&self) -> aoefs::link::pcap::BusyPoll {
        use aoefs::link::pcap::BusyPoll;
        // An explicit on or auto with a budget of 0 polls the default budget.
        let us = |n: Option<u32>| {
            Duration::from_micros(match n {
                None | Some(0) => BUSY_POLL_DEFAULT_US,
                Some(n) => n,
            } as u64)
        };
        match (self.busy_poll, self.busy_poll_us) {
            (None, Some(0)) | (Some(BusyPollMode::Off), _) => BusyPoll::Off,
            (Some(BusyPollMode::On), n) => BusyPoll::Always(us(n)),
            (None, n) | (Some(BusyPollMode::Auto), n) => BusyPoll::Adaptive(us(n)),
        }
    }
}

/// Commands that work on an existing mount.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List the targets of a mount as aoe-stat does (device, size, netif, payload, state)
    Stat {
        mountpoint: PathBuf,
        /// The same fields and each target's paths (interface, MAC, counters) as JSON, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Per-target I/O rates like iostat -x: reads/s, writes/s, MB/s, latency, retransmits/s, window, state.
    /// The first report covers the time since the mount, each further one the last INTERVAL
    Iostat {
        mountpoint: PathBuf,
        /// Seconds between reports (without it: one report)
        #[arg(value_parser = parse_interval)]
        interval: Option<f64>,
        /// Number of reports (without it: until interrupted)
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// Broadcast a query config on the allowed interfaces (echo > MNT/discover)
    Discover { mountpoint: PathBuf },
    /// Forget targets: down and unused ones, `all` unused ones, or one (eX.Y)
    Flush {
        mountpoint: PathBuf,
        /// `all`, or a target (eX.Y); without it the targets that are down and unused
        which: Option<String>,
    },
    /// Query config and IDENTIFY a target again (eX.Y)
    Revalidate {
        mountpoint: PathBuf,
        /// The target (eX.Y)
        device: String,
    },
    /// Print a target's config string, or set it (--force overrides a different one)
    Config {
        mountpoint: PathBuf,
        /// The target (eX.Y)
        device: String,
        /// New config string
        value: Option<String>,
        /// Set it even when the target holds a different config string
        #[arg(long)]
        force: bool,
    },
}

/// An iostat interval: seconds, more than 0 (fractions allowed).
fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e6 => Ok(v),
        _ => Err(format!("not a number of seconds greater than 0: {s}")),
    }
}
