//! The `aoefs` command: parse options, discover targets, mount.

#![deny(unsafe_code)]

use aoefs::blockfs::BlockFs;
use aoefs::clock::RealClock;
use aoefs::fs::AoeFs;
use aoefs::initiator::{Initiator, Options};
use aoefs::link::{self, pcap::PcapProvider, LinkProvider};
use aoefs::mountpoint::MountPointError;
use aoefs::sys::{
    self,
    daemon::{Forked, ReadyPipe},
    signal::BlockedStopSignals,
};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Exit codes.
const EXIT_RUNTIME: i32 = 1;
const EXIT_USAGE: i32 = 2;

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
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Directory to mount on
    #[arg(required = true)]
    mountpoint: Option<PathBuf>,
    /// Interfaces to use for AoE, whitespace- or comma-separated (default: every up non-loopback interface)
    #[arg(long, value_name = "LIST")]
    iflist: Option<String>,
    /// Seconds a read or write may wait for the target's answer before the target is marked down and its I/O fails with EIO; answers to config queries do not count (0: retry forever)
    #[arg(long, default_value_t = 180, value_name = "SECS")]
    deadsecs: u32,
    /// Only these target MACs may become paths (comma-separated; aa:bb:cc:dd:ee:ff, aa-bb-.. or 12 hex digits), and discovery asks them instead of broadcasting. Recommended on a shared LAN, with vblade -m on the targets
    #[arg(long, value_name = "MAC[,MAC...]")]
    macs: Option<String>,
    /// Most frames outstanding to one target (also capped by the target's buffer count)
    #[arg(long, default_value_t = 128, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4096))]
    maxout: u16,
    /// Stay in the foreground (SIGINT/SIGTERM unmount and exit)
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Mount options, comma-separated: ro, rw, allow_other, allow_root, any other FUSE option, and aoefs's own
    /// settings as mount(8) passes them: iflist=eth1:eth3, deadsecs=N, maxout=N, cache_mb=N, readahead_kb=N,
    /// busy_poll_us=N
    #[arg(short = 'o', value_name = "OPTS", value_delimiter = ',')]
    options: Vec<String>,
    /// Read cache size in MiB (0 disables it)
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    cache_mb: usize,
    /// Most data fetched ahead of a sequential reader, per target, in KiB (0 disables read-ahead)
    #[arg(long, default_value_t = 4096, value_name = "KIB", value_parser = clap::value_parser!(u32).range(0..=262144))]
    readahead_kb: u32,
    /// Longest wait for targets to answer the first discovery before the mount appears
    #[arg(long, default_value_t = 1500, value_name = "MS")]
    discover_wait_ms: u64,
    /// Debug logging to stderr (RUST_LOG also works; a daemon logs to syslog)
    #[arg(short = 'd', long)]
    debug: bool,
    /// Write the daemon's process id to this file (removed at exit)
    #[arg(long, value_name = "PATH")]
    pidfile: Option<PathBuf>,
    /// Busy-poll: after the last received frame, the capture thread keeps checking for the next one this many microseconds before it sleeps (0: off). Spends CPU to cut small-request latency, like net.core.busy_poll
    #[arg(long, default_value_t = 0, value_name = "US", value_parser = clap::value_parser!(u32).range(0..=100000))]
    busy_poll_us: u32,
    /// FUSE request threads
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    fuse_threads: u16,
    /// Worker threads for writes, fsync and err reads
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: u16,
}

/// Commands that work on an existing mount.
#[derive(Subcommand, Debug)]
enum Cmd {
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

fn run_subcommand(cmd: Cmd) -> ! {
    use aoefs::tools::{self, Control};
    let res: Result<(), String> = (|| match cmd {
        Cmd::Stat { mountpoint, json } => {
            let m = tools::check_mount(&mountpoint)?;
            let rows = tools::stat_rows(&m).map_err(|e| format!("{}: {e}", m.display()))?;
            if json {
                let stats: Vec<tools::Stats> =
                    rows.iter().map(|r| tools::read_stats(&m, &r.device).unwrap_or_default()).collect();
                print!("{}", tools::format_stat_json(&m, &rows, &stats));
            } else {
                print!("{}", tools::format_stat(&rows));
            }
            Ok(())
        }
        Cmd::Iostat { mountpoint, interval, count } => tools::iostat::run(
            &tools::check_mount(&mountpoint)?,
            interval.map(Duration::from_secs_f64),
            count,
            &mut std::io::stdout().lock(),
        ),
        Cmd::Discover { mountpoint } => {
            tools::write_control(Control::Discover, None, &tools::check_mount(&mountpoint)?.join("discover"), "\n")
        }
        Cmd::Flush { mountpoint, which } => {
            let f = tools::check_mount(&mountpoint)?.join("flush");
            let target = which.as_deref().filter(|w| !w.is_empty() && *w != "all");
            tools::write_control(Control::Flush, target, &f, &which.clone().unwrap_or_default())
        }
        Cmd::Revalidate { mountpoint, device } => {
            let f = tools::check_mount(&mountpoint)?.join("revalidate");
            tools::write_control(Control::Revalidate, Some(&device), &f, &device)
        }
        Cmd::Config { mountpoint, device, value, force } => {
            let m = tools::check_mount(&mountpoint)?;
            tools::check_target(&device)?;
            let f = m.join("block").join(&device).join("config");
            match value {
                None => {
                    let s = std::fs::read_to_string(&f)
                        .map_err(|e| tools::explain_failure(Control::Config, Some(&device), &f, &e))?;
                    print!("{s}");
                    Ok(())
                }
                Some(v) => tools::write_control(
                    Control::Config,
                    Some(&device),
                    &f,
                    &format!("{}{v}", if force { "!" } else { "" }),
                ),
            }
        }
    })();
    match res {
        Ok(()) => std::process::exit(0),
        Err(e) => fail(EXIT_RUNTIME, &e),
    }
}

/// An iostat interval: seconds, more than 0 (fractions allowed).
fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e6 => Ok(v),
        _ => Err(format!("not a number of seconds greater than 0: {s}")),
    }
}

fn fail(code: i32, msg: &str) -> ! {
    eprintln!("aoefs: {msg}");
    std::process::exit(code)
}

/// Forks into the background (`sys::daemon::daemonize`): the parent waits
/// for the child's "mounted" byte and exits with the status it reports.
/// Returns the pipe to report through in the child. It must run before any
/// thread starts (fork copies only the calling thread); it fails if one has.
fn daemonize() -> ReadyPipe {
    match sys::daemon::daemonize() {
        Err(e) => fail(EXIT_RUNTIME, &e),
        Ok(Forked::Child(ready)) => ready,
        // The child prints its own error before exiting.
        Ok(Forked::Parent(startup)) => std::process::exit(startup.wait().map_or(EXIT_RUNTIME, i32::from)),
    }
}

fn notify_parent(ready: Option<ReadyPipe>, code: u8) {
    if let Some(ready) = ready {
        ready.notify(code);
    }
}

/// Takes aoefs's own settings out of `-o` (as mount(8) and fstab pass them):
/// `iflist=eth1:eth3`, `macs=020000000001:020000000002` (12 hex digits
/// each), `deadsecs=N`, `maxout=N`, `cache_mb=N`, `readahead_kb=N`,
/// `busy_poll_us=N`.
fn apply_aoefs_options(cli: &mut Cli) {
    let mut rest = Vec::new();
    for o in std::mem::take(&mut cli.options) {
        let (k, v) = match o.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => {
                rest.push(o);
                continue;
            }
        };
        let num =
            |v: &str| -> u64 { v.parse().unwrap_or_else(|_| fail(EXIT_USAGE, &format!("-o {k}: not a number: {v}"))) };
        match k {
            "iflist" => cli.iflist = Some(v.replace(':', " ")),
            // Colons separate the MACs here (commas separate options).
            "macs" => cli.macs = Some(v.replace(':', ",")),
            "deadsecs" => cli.deadsecs = num(v).min(u32::MAX as u64) as u32,
            "maxout" => {
                let n = num(v);
                if !(1..=4096).contains(&n) {
                    fail(EXIT_USAGE, "-o maxout: must be 1..4096");
                }
                cli.maxout = n as u16
            }
            "cache_mb" => cli.cache_mb = num(v) as usize,
            "readahead_kb" => cli.readahead_kb = num(v).min(262144) as u32,
            "busy_poll_us" => cli.busy_poll_us = num(v).min(100000) as u32,
            _ => rest.push(o),
        }
    }
    cli.options = rest;
}

fn main() {
    let mut cli = Cli::parse();
    if let Some(cmd) = cli.cmd.take() {
        run_subcommand(cmd);
    }
    // fuser warns when the mount it would unmount at exit is already gone
    // (umount by the user): expected, so not shown by default.
    let default_level = if cli.debug { "debug" } else { "warn,fuser::session=error" };
    let daemon_syslog = !cli.foreground && !cli.debug;
    if !daemon_syslog {
        aoefs::logging::init_stderr(default_level);
    }

    let mountpoint = cli.mountpoint.clone().expect("clap requires the mount point");
    apply_aoefs_options(&mut cli);
    // A dead aoefs mount (its aoefs was killed) is detached; anything else
    // mounted there makes the mount point busy.
    let mnt = match aoefs::mountpoint::prepare(&mountpoint) {
        Ok(p) => {
            if p.detached > 0 {
                eprintln!(
                    "aoefs: {}: detached the dead aoefs mount left by an aoefs that ended without unmounting",
                    p.path.display()
                );
            }
            p.path
        }
        Err(MountPointError::Usage(m)) => fail(EXIT_USAGE, &m),
        Err(MountPointError::Busy(m)) => fail(EXIT_RUNTIME, &m),
    };
    // fuser opens /dev/fuse, and mounts with mount(2) or, when that is not
    // permitted (a user), through the setuid fusermount3, which opens
    // /dev/fuse with the user's rights as well: without access to it nobody
    // can mount.
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        fail(
            EXIT_RUNTIME,
            &match e.kind() {
                std::io::ErrorKind::NotFound => "/dev/fuse is missing: load the fuse module (modprobe fuse)".into(),
                std::io::ErrorKind::PermissionDenied => format!(
                    "/dev/fuse: {e}: a user can mount only where /dev/fuse is readable and writable by all \
                     (crw-rw-rw-, as udev makes it; fusermount3 opens it with the user's rights too)"
                ),
                _ => format!("/dev/fuse: {e}"),
            },
        );
    }
    let provider = Arc::new(PcapProvider { busy_poll: std::time::Duration::from_micros(cli.busy_poll_us as u64) });
    let names = link::split_iflist(cli.iflist.as_deref().unwrap_or(""));
    for n in &names {
        if !provider.exists(n) {
            fail(EXIT_USAGE, &format!("unknown interface: {n}"));
        }
    }
    if cli.iflist.is_some() && names.is_empty() {
        fail(EXIT_USAGE, "--iflist names no interface");
    }
    if names.is_empty() && provider.default_names().is_empty() {
        fail(EXIT_USAGE, "no usable network interface (none is up besides loopback)");
    }
    let macs = match cli.macs.as_deref().map(aoefs::initiator::parse_macs) {
        None => Vec::new(),
        Some(Ok(m)) => m,
        Some(Err(e)) => fail(
            EXIT_USAGE,
            &format!(
                "--macs: {e} (MACs as aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or 12 hex digits, separated by \
                 commas; in -o macs=, 12 hex digits separated by colons)"
            ),
        ),
    };
    let mut readonly = false;
    let mut acl = fuser::SessionACL::Owner;
    let mut mount_opts = vec![
        fuser::MountOption::FSName("aoefs".into()),
        fuser::MountOption::Subtype("aoefs".into()),
        // The direct mount(2) path ignores Subtype: pass it to the kernel too, so
        // /proc/mounts says fuse.aoefs (as mount(8) and fstab expect).
        fuser::MountOption::CUSTOM("subtype=aoefs".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
    ];
    for o in cli.options.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match o {
            // The last of ro/rw wins, as with mount(8).
            "ro" => readonly = true,
            "rw" => readonly = false,
            "allow_other" => acl = fuser::SessionACL::All,
            "allow_root" => acl = fuser::SessionACL::RootAndOwner,
            "default_permissions" | "nosuid" | "nodev" | "suid" | "dev" => {}
            other => mount_opts.push(fuser::MountOption::CUSTOM(other.to_string())),
        }
    }
    if readonly {
        mount_opts.push(fuser::MountOption::RO);
    }

    let ready_fd = if cli.foreground { None } else { Some(daemonize()) };
    if daemon_syslog {
        let level = std::env::var("RUST_LOG").ok().and_then(|v| v.parse().ok()).unwrap_or(log::LevelFilter::Info);
        sys::syslog::SyslogLogger::install(level);
    }
    // Before any thread starts, so that only the signal thread takes them.
    let stop_signals = BlockedStopSignals::block();

    let opts = Options { deadsecs: cli.deadsecs, maxout: cli.maxout, macs };
    let ini = match Initiator::new(provider, Arc::new(RealClock::default()), opts, &names) {
        Ok(i) => i,
        Err(e) => {
            let hint = if e.is_permission() {
                let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "aoefs".into());
                format!(" (packet capture needs CAP_NET_RAW: run aoefs as root, or give it the capability: setcap cap_net_raw+ep {exe})")
            } else {
                String::new()
            };
            eprintln!("aoefs: {e}{hint}");
            notify_parent(ready_fd, EXIT_RUNTIME as u8);
            std::process::exit(EXIT_RUNTIME);
        }
    };
    let timer = aoefs::timer::start(&ini, Duration::from_millis(cli.discover_wait_ms));

    let core =
        BlockFs::new(ini.clone(), cli.cache_mb << 20, (cli.readahead_kb as u64) << 10, cli.workers as usize, readonly);
    let fs = AoeFs::new(core.clone());
    let mut config = fuser::Config::default();
    config.mount_options = mount_opts;
    config.acl = acl;
    config.n_threads = Some(cli.fuse_threads as usize);
    config.clone_fd = cli.fuse_threads > 1;
    let session = match fuser::Session::new(fs, &mnt, &config) {
        Ok(s) => s,
        Err(e) => {
            let msg = match e.raw_os_error() {
                Some(libc::EBUSY) => format!("mount point {} is busy (already mounted?)", mnt.display()),
                Some(libc::EPERM) | Some(libc::EACCES) => format!("mount {}: permission denied: {e}", mnt.display()),
                _ => format!("mount {}: {e}", mnt.display()),
            };
            eprintln!("aoefs: {msg}");
            notify_parent(ready_fd, EXIT_RUNTIME as u8);
            std::process::exit(EXIT_RUNTIME);
        }
    };
    log::info!("mounted {} with {} target(s)", mnt.display(), ini.devices().len());

    // SIGINT/SIGTERM/SIGHUP: unmount; the session loop then ends.
    let done = Arc::new(AtomicBool::new(false));
    {
        let mnt = mnt.clone();
        let done = done.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let sig = stop_signals.wait();
                log::info!("signal {sig}: unmounting {}", mnt.display());
                let _ = aoefs::mountpoint::detach(&mnt);
                // Files still open keep a lazily unmounted FUSE connection
                // alive; do not wait for them for long.
                for _ in 0..40 {
                    if done.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::process::exit(0);
            })
            .expect("spawn signal thread");
    }
    if let Some(p) = &cli.pidfile {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            log::warn!("pidfile {}: {e}", p.display());
        }
    }
    notify_parent(ready_fd, 0);
    if !cli.foreground {
        sys::daemon::detach_stdio(cli.debug);
    }
    let r = session.run();
    done.store(true, Ordering::Relaxed);
    timer.stop();
    core.shutdown();
    if let Some(p) = &cli.pidfile {
        let _ = std::fs::remove_file(p);
    }
    if let Err(e) = r {
        log::error!("session ended: {e}");
        std::process::exit(EXIT_RUNTIME);
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// The man page and the completions in the repository are what the
    /// command-line definition makes (`aoefs::docs`); with
    /// AOEFS_UPDATE_DOCS=1 they are rewritten instead.
    #[test]
    fn generated_docs_are_up_to_date() {
        let top = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let update = std::env::var_os("AOEFS_UPDATE_DOCS").is_some_and(|v| v == "1");
        let mut stale = Vec::new();
        for (path, text) in aoefs::docs::generated(Cli::command()) {
            let p = top.join(path);
            if std::fs::read(&p).ok().as_ref() == Some(&text) {
                continue;
            }
            if update {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, &text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            } else {
                stale.push(path);
            }
        }
        assert!(
            stale.is_empty(),
            "{stale:?} differ from what the command-line definition makes: \
             regenerate them with AOEFS_UPDATE_DOCS=1 cargo test --release --bin aoefs docs"
        );
    }
}
