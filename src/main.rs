//! The `aoefs` command: parse options, discover targets, mount. The
//! command line is `cli`, the settings in `-o` are `mount_options`.

#![deny(unsafe_code)]

mod cli;
mod mount_options;

use aoefs::blockfs::BlockFs;
use aoefs::clock::RealClock;
use aoefs::fs::AoeFs;
use aoefs::initiator::{Initiator, LinkError, Options};
use aoefs::link::{self, pcap::PcapProvider, LinkProvider};
use aoefs::mountpoint::MountPointError;
use aoefs::sys::{
    self,
    daemon::{Forked, ReadyPipe},
    signal::BlockedStopSignals,
};
use clap::Parser;
use cli::{Cli, Cmd};
use mount_options::FuseOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Exit codes.
const EXIT_RUNTIME: i32 = 1;
const EXIT_USAGE: i32 = 2;

/// Why aoefs ends with an exit code other than 0.
enum Failure {
    /// A usage error, worded by clap (exit code 2).
    Clap(clap::Error),
    /// One line on stderr, and the exit code.
    Message(i32, String),
    /// Said already: in the log, or by the daemon before it told its parent.
    Said(i32),
}

impl Failure {
    fn usage(msg: impl Into<String>) -> Failure {
        Failure::Message(EXIT_USAGE, msg.into())
    }

    fn runtime(msg: impl Into<String>) -> Failure {
        Failure::Message(EXIT_RUNTIME, msg.into())
    }

    /// Says why (unless it was said) and gives the exit code.
    fn report(self) -> i32 {
        match self {
            Failure::Clap(e) => {
                let _ = e.print();
                e.exit_code()
            }
            Failure::Message(code, msg) => {
                eprintln!("aoefs: {msg}");
                code
            }
            Failure::Said(code) => code,
        }
    }
}

fn main() {
    let code = match run(Cli::parse()) {
        Ok(code) => code,
        Err(f) => f.report(),
    };
    std::process::exit(code)
}

/// A subcommand, or the mount until it is unmounted. Returns the exit code
/// (in a daemon's parent, the one its child reports).
fn run(mut cli: Cli) -> Result<i32, Failure> {
    if let Some(cmd) = cli.cmd.take() {
        return run_subcommand(cmd).map(|()| 0).map_err(|e| Failure::runtime(e.to_string()));
    }
    // fuser warns when the mount it would unmount at exit is already gone
    // (umount by the user): expected, so not shown by default.
    let default_level = if cli.debug { "debug" } else { "warn,fuser::session=error" };
    let daemon_syslog = !cli.foreground && !cli.debug;
    if !daemon_syslog {
        aoefs::logging::init_stderr(default_level);
    }
    let mountpoint = cli.mountpoint.clone().expect("clap requires the mount point");
    mount_options::apply(&mut cli).map_err(Failure::Clap)?;
    let mount = Mount::check(&cli, &mountpoint)?;
    // Forks into the background (`sys::daemon::daemonize`): the parent
    // waits for the child's "mounted" byte and exits with the status it
    // reports. It must run before any thread starts (fork copies only the
    // calling thread); it fails if one has.
    let mut ready = None;
    if !cli.foreground {
        match sys::daemon::daemonize().map_err(Failure::runtime)? {
            // The child prints its own error before exiting.
            Forked::Parent(startup) => return Ok(startup.wait().map_or(EXIT_RUNTIME, i32::from)),
            Forked::Child(pipe) => ready = Some(pipe),
        }
    }
    if daemon_syslog {
        let level = std::env::var("RUST_LOG").ok().and_then(|v| v.parse().ok()).unwrap_or(log::LevelFilter::Info);
        sys::syslog::SyslogLogger::install(level);
    }
    // Before any thread starts, so that only the signal thread takes them.
    let stop_signals = BlockedStopSignals::block();
    match serve(&cli, mount, stop_signals, &mut ready) {
        Ok(()) => Ok(0),
        Err(f) => {
            // Said before the parent, which exits at once, is told.
            let code = f.report();
            notify_parent(ready, code as u8);
            Err(Failure::Said(code))
        }
    }
}

/// What the checks before the fork found: where and how to mount.
struct Mount {
    mnt: PathBuf,
    provider: Arc<PcapProvider>,
    interfaces: Vec<String>,
    /// `--bench-sim-target MTU`: a simulated target instead of interfaces.
    sim_mtu: Option<u16>,
    opts: Options,
    fuse: FuseOptions,
}

impl Mount {
    /// The mount point (a dead aoefs mount there is detached), /dev/fuse,
    /// the interfaces and the MACs, as `cli` gives them.
    fn check(cli: &Cli, mountpoint: &Path) -> Result<Mount, Failure> {
        let mnt = prepare_mount_point(mountpoint)?;
        check_dev_fuse()?;
        let provider = Arc::new(PcapProvider { busy_poll: cli.busy_poll() });
        let fuse = mount_options::fuse_options(&cli.options);
        if let Some(mtu) = cli.bench_sim_target {
            let opts = Options { deadsecs: cli.deadsecs, maxout: cli.maxout, macs: Vec::new() };
            return Ok(Mount { mnt, provider, interfaces: vec![SIM_PORT.into()], sim_mtu: Some(mtu), opts, fuse });
        }
        let names = link::split_iflist(cli.iflist.as_deref().unwrap_or(""));
        if let Some(n) = names.iter().find(|n| !provider.exists(n)) {
            return Err(Failure::usage(format!("unknown interface: {n}")));
        }
        if cli.iflist.is_some() && names.is_empty() {
            return Err(Failure::usage("--iflist names no interface"));
        }
        if names.is_empty() && provider.default_names().is_empty() {
            return Err(Failure::usage("no usable network interface (none is up besides loopback)"));
        }
        let macs = match cli.macs.as_deref().map(aoefs::initiator::parse_macs) {
            None => Vec::new(),
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                return Err(Failure::usage(format!(
                    "--macs: {e} (MACs as aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or 12 hex digits, separated by \
                     commas; in -o macs=, 12 hex digits separated by colons)"
                )))
            }
        };
        let opts = Options { deadsecs: cli.deadsecs, maxout: cli.maxout, macs };
        Ok(Mount { mnt, provider, interfaces: names, sim_mtu: None, opts, fuse })
    }
}

/// A dead aoefs mount (its aoefs was killed) is detached; anything else
/// mounted there makes the mount point busy.
fn prepare_mount_point(mountpoint: &Path) -> Result<PathBuf, Failure> {
    match aoefs::mountpoint::prepare(mountpoint) {
        Ok(p) => {
            if p.detached > 0 {
                eprintln!(
                    "aoefs: {}: detached the dead aoefs mount left by an aoefs that ended without unmounting",
                    p.path.display()
                );
            }
            Ok(p.path)
        }
        Err(MountPointError::Usage(m)) => Err(Failure::usage(m)),
        Err(MountPointError::Busy(m)) => Err(Failure::runtime(m)),
    }
}

/// fuser opens /dev/fuse, and mounts with mount(2) or, when that is not
/// permitted (a user), through the setuid fusermount3, which opens
/// /dev/fuse with the user's rights as well: without access to it nobody
/// can mount.
fn check_dev_fuse() -> Result<(), Failure> {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => Ok(()),
        Err(e) => Err(Failure::runtime(match e.kind() {
            std::io::ErrorKind::NotFound => "/dev/fuse is missing: load the fuse module (modprobe fuse)".into(),
            std::io::ErrorKind::PermissionDenied => format!(
                "/dev/fuse: {e}: a user can mount only where /dev/fuse is readable and writable by all \
                 (crw-rw-rw-, as udev makes it; fusermount3 opens it with the user's rights too)"
            ),
            _ => format!("/dev/fuse: {e}"),
        })),
    }
}

/// Starts the initiator, mounts, tells the parent, and serves the mount
/// until it is unmounted; then ends the I/O once.
fn serve(cli: &Cli, m: Mount, stop_signals: BlockedStopSignals, ready: &mut Option<ReadyPipe>) -> Result<(), Failure> {
    // (Started here, after the fork: the hub has a thread of its own.)
    let (provider, _sim): (Arc<dyn LinkProvider>, _) = match m.sim_mtu {
        Some(mtu) => {
            let (hub, target) = bench_sim_target(mtu as usize);
            (hub.provider(), Some(target))
        }
        None => (m.provider, None),
    };
    let ini =
        Initiator::new(provider, Arc::new(RealClock::default()), m.opts, &m.interfaces).map_err(initiator_failure)?;
    let timer = aoefs::timer::start(&ini, Duration::from_millis(cli.discover_wait_ms));
    let core = BlockFs::new(
        ini.clone(),
        cli.cache_mb << 20,
        (cli.readahead_kb as u64) << 10,
        cli.workers as usize,
        m.fuse.readonly,
    );
    let session = mount(AoeFs::new(core.clone()), &m.mnt, m.fuse, cli.fuse_threads)?;
    log::info!("mounted {} with {} target(s)", m.mnt.display(), ini.devices().len());
    let done = unmount_on_signals(stop_signals, m.mnt.clone());
    if let Some(p) = &cli.pidfile {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            log::warn!("pidfile {}: {e}", p.display());
        }
    }
    notify_parent(ready.take(), 0);
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
    r.map_err(|e| {
        log::error!("session ended: {e}");
        Failure::Said(EXIT_RUNTIME)
    })
}

/// The interface of `--bench-sim-target`.
const SIM_PORT: &str = "sim0";

/// `--bench-sim-target MTU`: an in-memory hub with a port `SIM_PORT` of
/// that MTU for the initiator and a simulated target e0.1 of 64 GiB that
/// reads as zeros and forgets what is written (no memory for a disk).
fn bench_sim_target(mtu: usize) -> (aoefs::link::mem::Hub, Arc<aoefs::link::mem::SimTarget>) {
    use aoefs::sim::{Backing, SimConfig, SimModel};
    let hub = aoefs::link::mem::Hub::new();
    hub.add_port(SIM_PORT, aoefs::wire::Mac([2, 0, 0, 0, 0, 1]), mtu);
    let cfg = SimConfig { max_sectors: 255, ..SimConfig::new(0, 1, aoefs::wire::Mac([2, 0, 0, 0, 0, 2])) };
    let target = aoefs::link::mem::SimTarget::start_model(
        &hub,
        SimModel::new(cfg, Backing::Junk { sectors: 64 << 21, byte: 0 }),
    );
    (hub, target)
}

/// An interface could not be opened; a permission error gets its hint.
fn initiator_failure(e: LinkError) -> Failure {
    let hint = if e.is_permission() {
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "aoefs".into());
        format!(" (packet capture needs CAP_NET_RAW: run aoefs as root, or give it the capability: setcap cap_net_raw+ep {exe})")
    } else {
        String::new()
    };
    Failure::runtime(format!("{e}{hint}"))
}

/// Mounts `fs` on `mnt` (fuser's: mount(2), or fusermount3 when mount(2)
/// is refused).
fn mount(fs: AoeFs, mnt: &Path, fuse: FuseOptions, threads: u16) -> Result<fuser::Session<AoeFs>, Failure> {
    let mut config = fuser::Config::default();
    config.mount_options = fuse.mount;
    config.acl = fuse.acl;
    config.n_threads = Some(threads as usize);
    config.clone_fd = threads > 1;
    fuser::Session::new(fs, mnt, &config).map_err(|e| {
        Failure::runtime(match e.raw_os_error() {
            Some(libc::EBUSY) => format!("mount point {} is busy (already mounted?)", mnt.display()),
            Some(libc::EPERM) | Some(libc::EACCES) => format!("mount {}: permission denied: {e}", mnt.display()),
            _ => format!("mount {}: {e}", mnt.display()),
        })
    })
}

/// SIGINT/SIGTERM/SIGHUP: unmount; the session loop then ends. The thread
/// waits for the flag it returns (set when the session has ended) for 2 s
/// at most, then exits the process.
fn unmount_on_signals(stop_signals: BlockedStopSignals, mnt: PathBuf) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let sig = stop_signals.wait();
            log::info!("signal {sig}: unmounting {}", mnt.display());
            let _ = aoefs::mountpoint::detach(&mnt);
            // Files still open keep a lazily unmounted FUSE connection
            // alive; do not wait for them for long.
            for _ in 0..40 {
                if done2.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::process::exit(0);
        })
        .expect("spawn signal thread");
    done
}

fn notify_parent(ready: Option<ReadyPipe>, code: u8) {
    if let Some(ready) = ready {
        ready.notify(code);
    }
}

/// A command that works on a mount (`aoefs stat MNT`, ...).
fn run_subcommand(cmd: Cmd) -> Result<(), aoefs::tools::ToolError> {
    use aoefs::tools::{self, Control};
    match cmd {
        Cmd::Stat { mountpoint, json } => {
            let m = tools::check_mount(&mountpoint)?;
            let rows = tools::stat_rows(&m).map_err(|error| tools::ToolError::File { path: m.clone(), error })?;
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
                        .map_err(|e| tools::explain_failure(Control::Config, Some(&device), &f, e))?;
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
