//! A small worker pool for requests that may block (unaligned writes doing
//! read-modify-write, fsync, reads of `err`), so FUSE threads never do.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

struct Shared {
    q: Mutex<(VecDeque<Job>, bool)>,
    cv: Condvar,
}

pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    pub fn new(n: usize) -> Pool {
        let shared = Arc::new(Shared { q: Mutex::new((VecDeque::new(), false)), cv: Condvar::new() });
        let threads = (0..n.max(1))
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || loop {
                        let job = {
                            let mut g = s.q.lock();
                            loop {
                                if let Some(j) = g.0.pop_front() {
                                    break Some(j);
                                }
                                if g.1 {
                                    break None;
                                }
                                s.cv.wait(&mut g);
                            }
                        };
                        match job {
                            Some(j) => j(),
                            None => return,
                        }
                    })
                    .expect("spawn worker thread")
            })
            .collect();
        Pool { shared, threads: Mutex::new(threads) }
    }

    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        self.shared.q.lock().0.push_back(Box::new(f));
        self.shared.cv.notify_one();
    }

    /// Lets queued jobs finish and joins the threads.
    pub fn shutdown(&self) {
        self.shared.q.lock().1 = true;
        self.shared.cv.notify_all();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}
