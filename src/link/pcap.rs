//! Real interfaces: libpcap receives (ethertype 0x88A2, incoming only, one
//! capture thread per interface) and an AF_PACKET raw socket sends.

use super::raw::{RawOptions, RawSocket};
use super::{Link, LinkProvider, RxHandler, RX_BURST};
use crate::sys::net::{if_flags, if_index, if_mac, if_mtu, if_names};
use crate::sys::packet;
use crate::wire::{Mac, ETHERTYPE_AOE};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// When the capture thread, once the ring runs empty, keeps checking it
/// instead of sleeping in poll(). Like the kernel's `net.core.busy_poll`,
/// it spends CPU to save the wake-up of the capture thread, which is most
/// of a small request's latency on a machine whose idle CPUs halt.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum BusyPoll {
    /// Never: sleep at once.
    #[default]
    Off,
    /// After every burst of frames, for this long.
    Always(Duration),
    /// Only while a reply is awaited by a caller with nothing else to do: a
    /// frame went out with at most `ADAPTIVE_AT_ONCE` requests at once (its
    /// target's commands in flight, and the application's requests in
    /// progress lately) to a target whose round trip is at most
    /// `ADAPTIVE_RTT_BUDGETS` times this long (`Link::expect_reply`); then
    /// until a round trip and this long after the latest such frame (each
    /// new one moves it on). Never while idle, nor while many commands are
    /// in flight (replies come anyway), nor while the application keeps
    /// several requests going (FUSE and the application need the CPU).
    Adaptive(Duration),
}

/// `BusyPoll::Adaptive` polls while at most this many requests are at once.
pub const ADAPTIVE_AT_ONCE: u32 = 2;

/// `BusyPoll::Adaptive` polls for targets whose round trip is at most this
/// many budgets.
pub const ADAPTIVE_RTT_BUDGETS: u32 = 4;

/// Opens real interfaces in the current network namespace.
#[derive(Default, Clone, Copy)]
pub struct PcapProvider {
    pub busy_poll: BusyPoll,
}

impl LinkProvider for PcapProvider {
    fn default_names(&self) -> Vec<String> {
        let mut v: Vec<String> = if_names()
            .into_iter()
            .filter(|n| if_flags(n).map(|f| f & libc::IFF_UP != 0 && f & libc::IFF_LOOPBACK == 0).unwrap_or(false))
            .collect();
        v.sort();
        v
    }
    fn exists(&self, name: &str) -> bool {
        super::valid_ifname(name) && if_index(name).is_some()
    }
    fn open(&self, name: &str, rx: RxHandler) -> io::Result<Arc<dyn Link>> {
        Ok(PcapLink::open(name, rx, self.busy_poll)?)
    }
}

/// Frames the capture ring holds: two targets at the default `maxout`
/// window (128), more than vblade's or a Coraid shelf's buffer count.
const RING_FRAMES: usize = 256;

/// Capture ring size for frames of up to `snaplen` bytes. libpcap's ring
/// (TPACKET_V2 in immediate mode) puts whole frames in page-multiple blocks,
/// and the kernel copies each received frame into it in the receiving
/// softirq (on a veth pair, the sender's CPU): a ring that stays in the CPU
/// cache makes every frame cheaper (MTU 9000 seq read: 16 MiB ring ~1.86 ms
/// CPU per MB, 4 MiB ~1.68, 2 MiB ~1.62), so it is sized to hold
/// `RING_FRAMES`, and at least 2 MiB.
fn ring_bytes(snaplen: usize) -> usize {
    // Frame: tpacket2_hdr + sockaddr_ll + the data, 16-byte aligned.
    let frame = (snaplen + 32 + 20 + 15) & !15;
    let mut block = 4096;
    while block < frame {
        block <<= 1;
    }
    let per_block = block / frame;
    (RING_FRAMES.div_ceil(per_block) * block).max(2 << 20)
}

/// Checks `fd` for input without sleeping until it has some (true) or
/// `keep_on` says to stop (false); `keep_on` is asked again at each check
/// (an adaptive poll's end moves on as frames are sent, and the capture
/// thread's stop must end it). Between checks it yields, so a thread that
/// shares this CPU (the target's, a FUSE thread) still gets to run: in A/B
/// runs with 50 us that kept 5-20 % more of the sequential throughput than
/// a pure spin, at the same latency.
fn busy_wait(fd: BorrowedFd, keep_on: impl Fn() -> bool) -> bool {
    loop {
        if packet::wait_readable(fd, 0) {
            return true;
        }
        if !keep_on() {
            return false;
        }
        // sched_yield(2).
        std::thread::yield_now();
    }
}

/// Whether an adaptive poll that began at `since` goes on: until the end
/// the sends set (`PollUntil`), and at most `max` after it began.
fn adaptive_poll_on(p: &PollUntil, since: Instant, max: Duration) -> bool {
    !p.left(since, max).is_zero()
}

/// How long after sending a frame an adaptive poll goes on: a round trip
/// (the reply) and the budget `max` after it (the caller's next request),
/// when at most `ADAPTIVE_AT_ONCE` requests are at once (`at_once`) and the
/// target's round trip (`rtt_us`, 0: not known yet) is at most
/// `ADAPTIVE_RTT_BUDGETS` budgets; else no poll. The round trip is measured
/// with the capture thread asleep as often as polling, so it counts the
/// thread's wake-up (20-45 us on a halted vCPU): held to the budget itself,
/// a target that answers in 30 us would seldom be polled for. A caller
/// doing one request at a time sends its next one within the budget of the
/// reply, so the poll goes on from one reply to the next (each frame sent
/// moves its end on), and ends a round trip and a budget after the last.
fn adaptive_poll(rtt_us: u64, at_once: u32, max: Duration) -> Option<Duration> {
    let rtt = Duration::from_micros(rtt_us);
    (rtt_us > 0 && rtt <= ADAPTIVE_RTT_BUDGETS * max && at_once <= ADAPTIVE_AT_ONCE).then_some(rtt + max)
}

/// When an adaptive poll ends: nanoseconds since `epoch` (0: none).
struct PollUntil {
    epoch: Instant,
    until: AtomicU64,
}

impl PollUntil {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
    /// How much longer to poll, at most `max` past `since`.
    fn left(&self, since: Instant, max: Duration) -> Duration {
        let left = Duration::from_nanos(self.until.load(Ordering::Relaxed).saturating_sub(self.now()));
        left.min(max.saturating_sub(since.elapsed()))
    }
}

/// A real interface.
pub struct PcapLink {
    name: String,
    mac: Mac,
    /// The interface's MTU when last looked at, at most `capture_mtu`.
    mtu: AtomicUsize,
    /// The MTU when the link was opened: the capture takes frames that long.
    capture_mtu: usize,
    /// Send-only AF_PACKET socket.
    sender: RawSocket,
    busy_poll: BusyPoll,
    poll_until: Arc<PollUntil>,
    stop: Arc<AtomicBool>,
    /// Set when the capture ended on an error (the interface went away).
    dead: Arc<AtomicBool>,
    thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

fn pcap_err(name: &str, e: pcap::Error) -> io::Error {
    let kind = match &e {
        pcap::Error::PcapError(s) if s.contains("ermission") || s.contains("ot permitted") => {
            io::ErrorKind::PermissionDenied
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{name}: {e}"))
}

impl PcapLink {
    pub fn open(name: &str, rx: RxHandler, busy_poll: BusyPoll) -> io::Result<Arc<PcapLink>> {
        if_index(name).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no such interface: {name}")))?;
        let mac = if_mac(name)?;
        let mtu = if_mtu(name)?;
        let snaplen = (mtu + 14 + 64) as i32;
        let ring = ring_bytes(snaplen as usize);
        let mut cap = pcap::Capture::from_device(name)
            .map_err(|e| pcap_err(name, e))?
            .immediate_mode(true)
            .snaplen(snaplen)
            .buffer_size(ring as i32)
            .timeout(1)
            .open()
            .map_err(|e| pcap_err(name, e))?;
        cap.direction(pcap::Direction::In).map_err(|e| pcap_err(name, e))?;
        cap.filter(&format!("ether proto 0x{ETHERTYPE_AOE:04x}"), true).map_err(|e| pcap_err(name, e))?;
        // Non-blocking capture with our own poll(): libpcap's own timeout
        // does not reliably return in immediate mode, and `close` must be
        // able to stop the thread.
        let mut cap = cap.setnonblock().map_err(|e| pcap_err(name, e))?;
        // libpcap applies `Direction::In` in userspace, after the kernel has
        // cloned every frame this host sends into the capture ring (and run
        // the filter on it). Tell the kernel not to hand them over at all.
        // Older kernels (< 4.20) lack the option; libpcap's own check stays.
        if let Err(e) = packet::ignore_outgoing(cap.as_fd()) {
            log::debug!("{name}: PACKET_IGNORE_OUTGOING: {e}");
        }

        let sender = RawSocket::open(name, RawOptions::default())?;
        let poll_until = Arc::new(PollUntil { epoch: Instant::now(), until: AtomicU64::new(0) });
        let poll_until2 = poll_until.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let dead = Arc::new(AtomicBool::new(false));
        let dead2 = dead.clone();
        let tname = format!("rx-{name}");
        let thread = std::thread::Builder::new().name(tname).spawn(move || {
            'outer: while !stop2.load(Ordering::Relaxed) {
                // Drain everything queued, RX_BURST frames per pcap_dispatch
                // (telling the receiver after each), then wait for more. A
                // short burst means the ring ran dry: asking libpcap again
                // would only cost a poll(2) of its own (it polls once with a
                // zero timeout whenever it finds the ring empty in
                // non-blocking mode), so the thread goes to its own wait.
                loop {
                    match cap.dispatch(Some(RX_BURST), |p| rx.frame(p.data)) {
                        Ok(n) => {
                            if n > 0 {
                                rx.idle();
                            }
                            if stop2.load(Ordering::Relaxed) {
                                break 'outer;
                            }
                            if n < RX_BURST {
                                break;
                            }
                        }
                        Err(e) => {
                            log::warn!("capture stopped: {e}");
                            dead2.store(true, Ordering::Relaxed);
                            break 'outer;
                        }
                    }
                }
                let stopping = || stop2.load(Ordering::Relaxed);
                let polled = match busy_poll {
                    BusyPoll::Off => false,
                    BusyPoll::Always(d) => {
                        let since = Instant::now();
                        busy_wait(cap.as_fd(), || since.elapsed() < d && !stopping())
                    }
                    BusyPoll::Adaptive(max) => {
                        let since = Instant::now();
                        adaptive_poll_on(&poll_until2, since, max)
                            && busy_wait(cap.as_fd(), || adaptive_poll_on(&poll_until2, since, max) && !stopping())
                    }
                };
                if polled {
                    continue;
                }
                packet::wait_readable(cap.as_fd(), 100);
            }
            // Whatever the receiver held back (replies to FUSE among it)
            // must not be lost when the capture ends.
            rx.idle();
        })?;
        Ok(Arc::new(PcapLink {
            name: name.to_string(),
            mac,
            mtu: AtomicUsize::new(mtu),
            capture_mtu: mtu,
            sender,
            busy_poll,
            poll_until,
            stop,
            dead,
            thread: parking_lot::Mutex::new(Some(thread)),
        }))
    }
}

impl Link for PcapLink {
    fn name(&self) -> &str {
        &self.name
    }
    fn mac(&self) -> Mac {
        self.mac
    }
    fn mtu(&self) -> usize {
        self.mtu.load(Ordering::Relaxed)
    }
    fn refresh_mtu(&self) -> io::Result<usize> {
        let mtu = if_mtu(&self.name)?;
        self.mtu.store(mtu.min(self.capture_mtu), Ordering::Relaxed);
        Ok(mtu)
    }
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.sender.send(frame)
    }
    fn expect_reply(&self, rtt_us: u64, at_once: u32) {
        let BusyPoll::Adaptive(max) = self.busy_poll else { return };
        if let Some(d) = adaptive_poll(rtt_us, at_once, max) {
            let p = &self.poll_until;
            p.until.fetch_max(p.now() + d.as_nanos() as u64, Ordering::Relaxed);
        }
    }
    /// Write data goes out of the request's buffer without being copied
    /// into a frame first.
    fn send_parts(&self, head: &[u8], data: &[u8]) -> io::Result<()> {
        self.sender.send_parts(head, data)
    }
    /// A burst in one system call (sendmmsg).
    fn send_many(&self, frames: &[(&[u8], &[u8])]) -> (usize, Option<io::Error>) {
        self.sender.send_many(frames)
    }
    fn alive(&self) -> bool {
        !self.dead.load(Ordering::Relaxed)
    }
    fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.lock().take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for PcapLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    #[test]
    fn busy_wait_sees_input_and_gives_up_when_told() {
        let (r, mut w) = std::io::pipe().unwrap();
        let t0 = Instant::now();
        assert!(!busy_wait(r.as_fd(), || t0.elapsed() < Duration::from_micros(2000)), "nothing to read yet");
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_micros(2000) && waited < Duration::from_millis(500), "{waited:?}");
        w.write_all(b"x").unwrap();
        let t0 = Instant::now();
        assert!(busy_wait(r.as_fd(), || t0.elapsed() < Duration::from_secs(5)));
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    /// An adaptive poll with nothing to read ends when the end the sends set
    /// has passed, and at most `max` after it began, however far that end
    /// is: it never spins on while the line is idle (an expected reply that
    /// never comes, a shutdown).
    #[test]
    fn an_adaptive_poll_with_nothing_to_read_ends_at_its_end_or_its_most() {
        // (end of the poll from now, most it polls, how long it may take)
        for (until_us, max_us, want_us) in [(0, 50, 0), (3_000, 1_000_000, 3_000), (1_000_000_000, 2_000, 2_000)] {
            let (r, _w) = std::io::pipe().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let p = PollUntil { epoch: Instant::now(), until: AtomicU64::new(0) };
                p.until.store(p.now() + until_us * 1000, Ordering::Relaxed);
                let since = Instant::now();
                let max = Duration::from_micros(max_us);
                let got = busy_wait(r.as_fd(), || adaptive_poll_on(&p, since, max));
                tx.send((got, since.elapsed())).unwrap();
            });
            let (got, took) = rx.recv_timeout(Duration::from_secs(5)).expect("the poll ended");
            assert!(!got, "nothing to read");
            let want = Duration::from_micros(want_us);
            assert!(took >= want && took < want + Duration::from_millis(500), "{until_us} {max_us}: {took:?}");
        }
    }

    #[test]
    fn an_adaptive_poll_lasts_a_round_trip_and_its_budget_only_for_a_quick_target_and_few_requests_at_once() {
        let max = Duration::from_micros(50);
        let us = Duration::from_micros;
        assert_eq!(adaptive_poll(20, 1, max), Some(us(70)), "the reply, then a budget for the next request");
        assert_eq!(adaptive_poll(200, ADAPTIVE_AT_ONCE, max), Some(us(250)), "four budgets: a wake-up included");
        assert_eq!(adaptive_poll(201, 1, max), None, "a round trip longer than four budgets");
        assert_eq!(adaptive_poll(0, 1, max), None, "no round trip measured yet");
        assert_eq!(
            adaptive_poll(20, ADAPTIVE_AT_ONCE + 1, max),
            None,
            "many at once: replies come anyway, or FUSE needs the CPU"
        );
        // The poll ends at the deadline the sends set, and at most `max`
        // after it began.
        let p = PollUntil { epoch: Instant::now(), until: AtomicU64::new(0) };
        let since = Instant::now();
        assert_eq!(p.left(since, max), Duration::ZERO, "none expected: idle");
        p.until.store(p.now() + 10_000_000, Ordering::Relaxed);
        assert!(p.left(since, max) <= max && p.left(since, max) > Duration::ZERO);
    }

    #[test]
    fn ring_holds_enough_frames_and_stays_small() {
        // MTU 9000: one frame per 16 KiB block.
        assert_eq!(ring_bytes(9000 + 14 + 64), 256 * 16384);
        // MTU 1500: two frames per 4 KiB block, and the 2 MiB floor.
        assert_eq!(ring_bytes(1500 + 14 + 64), 2 << 20);
        for mtu in [576, 1500, 4000, 9000, 16000] {
            let snap = mtu + 78;
            // Frames never straddle a block, so whole blocks are counted.
            let frame = (snap + 67) & !15;
            let block = (4096usize..).step_by(4096).find(|b| b.is_power_of_two() && *b >= frame).unwrap();
            assert!(ring_bytes(snap) / block * (block / frame) >= 256, "mtu {mtu}");
            assert!(ring_bytes(snap) <= 8 << 20, "mtu {mtu}");
        }
    }
}
