//! The timer thread, which calls `Initiator::tick` whenever it is due
//! (retransmission, deadsecs, probes, sweeps, rediscovery), and [`start`]:
//! the timer and the first discovery, as a mount begins.

use crate::initiator::Initiator;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// The finest the timer ticks: every this long while a target has
/// requests in flight (`initiator::BUSY_TICK`).
pub const TICK: Duration = Duration::from_micros(crate::initiator::BUSY_TICK);

/// The timer sleeps at least this long between ticks (deadlines closer
/// than this are met a little late rather than spun for).
const MIN_SLEEP: Duration = Duration::from_millis(1);
/// ... and at most this long.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The running timer thread. It ends when [`Timer::stop`] is called or when
/// the initiator is gone (the thread holds no reference that keeps it);
/// dropping the handle lets it run on.
pub struct Timer {
    stop: Arc<AtomicBool>,
    ini: Weak<Initiator>,
    thread: JoinHandle<()>,
}

impl Timer {
    /// Starts ticking `ini`: each tick says when the next is due, and new
    /// work for an engine (`TimerWake`) wakes the thread sooner.
    pub fn spawn(ini: &Arc<Initiator>) -> Timer {
        let weak: Weak<Initiator> = Arc::downgrade(ini);
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, weak2, wake) = (stop.clone(), weak.clone(), ini.timer_wake.clone());
        let thread = std::thread::Builder::new()
            .name("timer".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    let (at, wait) = {
                        let Some(ini) = weak2.upgrade() else { return };
                        wake.ticking();
                        let next = ini.tick();
                        let now = ini.now();
                        let wait = Duration::from_micros(next.saturating_sub(now)).clamp(MIN_SLEEP, MAX_SLEEP);
                        (now + wait.as_micros() as u64, wait)
                    };
                    if stop2.load(Ordering::Relaxed) {
                        return;
                    }
                    wake.wait(at, wait);
                }
            })
            .expect("spawn timer thread");
        Timer { stop, ini: weak, thread }
    }

    /// Stops the thread and waits for its last tick to end.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ini) = self.ini.upgrade() {
            ini.timer_wake.wake();
        }
        let _ = self.thread.join();
    }
}

/// Starts the timer thread, sends the first discovery and waits for its
/// answers (`Initiator::wait_discovery`, at most `discover_wait`), so that
/// a mount shows the targets that answered from its first listing.
pub fn start(ini: &Arc<Initiator>, discover_wait: Duration) -> Timer {
    let timer = Timer::spawn(ini);
    ini.discover();
    ini.wait_discovery(discover_wait);
    timer
}
