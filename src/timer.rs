//! The timer thread, which calls `Initiator::tick` every [`TICK`]
//! (retransmission, deadsecs, probes, rediscovery), and [`start`]: the
//! timer and the first discovery, as a mount begins.

use crate::initiator::Initiator;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the timer thread ticks the initiator.
pub const TICK: Duration = Duration::from_millis(5);

/// The running timer thread. It ends when [`Timer::stop`] is called or when
/// the initiator is gone (the thread holds no reference that keeps it);
/// dropping the handle lets it run on.
pub struct Timer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Timer {
    /// Starts ticking `ini` every [`TICK`].
    pub fn spawn(ini: &Arc<Initiator>) -> Timer {
        let weak: Weak<Initiator> = Arc::downgrade(ini);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("timer".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(ini) => ini.tick(),
                        None => return,
                    }
                }
            })
            .expect("spawn timer thread");
        Timer { stop, thread }
    }

    /// Stops the thread and waits for its last tick to end.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
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
