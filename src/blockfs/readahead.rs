//! Sequential read-ahead: when a device is read sequentially, the next
//! chunks are fetched before they are asked for, so the target's window
//! stays full between one request and the next (a reader doing one 1 MiB
//! read at a time would otherwise drain it at every request boundary).
//! Buffers are dropped when any write to the device completes, so a read
//! that starts after an acknowledged write never sees older data.

use super::ReadReply;
use crate::engine::IoError;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

pub type Waiter = Box<dyn FnOnce(Result<Arc<Vec<u8>>, IoError>) + Send>;

pub enum BufState {
    Pending(Vec<Waiter>),
    Ready(Arc<Vec<u8>>),
    Failed,
}

/// One prefetched byte range of a device.
pub struct RaBuf {
    pub off: u64,
    pub len: u64,
    pub state: Mutex<BufState>,
}

impl RaBuf {
    fn end(&self) -> u64 {
        self.off + self.len
    }

    /// Stores the fetched data (or the failure) and wakes the waiters.
    pub fn complete(&self, res: Result<Vec<u8>, IoError>) {
        let (waiters, res) = {
            let mut st = self.state.lock();
            let res = res.map(Arc::new);
            let new = match &res {
                Ok(d) => BufState::Ready(d.clone()),
                Err(_) => BufState::Failed,
            };
            match std::mem::replace(&mut *st, new) {
                BufState::Pending(w) => (w, res),
                _ => (Vec::new(), res),
            }
        };
        for w in waiters {
            w(res.clone());
        }
    }
}

#[derive(Default)]
struct Stream {
    last_end: Option<u64>,
    bufs: VecDeque<Arc<RaBuf>>,
}

/// Read-ahead state of every device.
pub struct Readahead {
    streams: Mutex<HashMap<u32, Stream>>,
    /// Most bytes fetched ahead of a reader (0 disables read-ahead).
    max_ahead: u64,
}

pub const MIN_CHUNK: u64 = 64 * 1024;
pub const MAX_CHUNK: u64 = 1024 * 1024;
pub const CHUNKS_AHEAD: u64 = 4;

impl Readahead {
    pub fn new(max_ahead: u64) -> Readahead {
        Readahead { streams: Mutex::new(HashMap::new()), max_ahead }
    }

    /// Serves `[off, end)` from a prefetched buffer if one covers it: `reply`
    /// gets the bytes now or when the fetch completes. Gives `reply` back
    /// when nothing covers the range (or the fetch failed).
    pub fn try_serve(&self, dev: u32, off: u64, end: u64, reply: ReadReply) -> Result<(), ReadReply> {
        let buf = {
            let s = self.streams.lock();
            match s.get(&dev).and_then(|st| st.bufs.iter().find(|b| b.off <= off && end <= b.end()).cloned()) {
                Some(b) => b,
                None => return Err(reply),
            }
        };
        let (o, e) = ((off - buf.off) as usize, (end - buf.off) as usize);
        let mut st = buf.state.lock();
        match &mut *st {
            BufState::Ready(d) => {
                let d = d.clone();
                drop(st);
                reply(Ok(&d[o..e]));
                Ok(())
            }
            BufState::Pending(w) => {
                w.push(Box::new(move |r| match r {
                    Ok(d) => reply(Ok(&d[o..e])),
                    Err(e) => reply(Err(e.into())),
                }));
                Ok(())
            }
            BufState::Failed => Err(reply),
        }
    }

    /// Records a read of `[off, end)` and returns the buffers to fetch now
    /// (the caller submits them and calls `RaBuf::complete`).
    pub fn plan(&self, dev: u32, off: u64, end: u64, disk_end: u64) -> Vec<Arc<RaBuf>> {
        if self.max_ahead == 0 {
            return Vec::new();
        }
        let mut streams = self.streams.lock();
        let s = streams.entry(dev).or_default();
        let sequential = s.last_end == Some(off);
        s.last_end = Some(end);
        let req = end - off;
        if !sequential || !off.is_multiple_of(512) || !req.is_multiple_of(512) {
            s.bufs.clear();
            return Vec::new();
        }
        let chunk = req.clamp(MIN_CHUNK, MAX_CHUNK) / 512 * 512;
        let ahead = (chunk * CHUNKS_AHEAD).min(self.max_ahead).max(chunk);
        s.bufs.retain(|b| b.end() > off);
        let mut next = s.bufs.back().map(|b| b.end()).unwrap_or(end).max(end);
        if s.bufs.front().is_some_and(|b| b.off > end) {
            // A gap: start again at the reader.
            s.bufs.clear();
            next = end;
        }
        let mut out = Vec::new();
        while next < disk_end && next < end + ahead {
            let len = chunk.min(disk_end - next);
            let b = Arc::new(RaBuf { off: next, len, state: Mutex::new(BufState::Pending(Vec::new())) });
            s.bufs.push_back(b.clone());
            out.push(b);
            next += len;
        }
        out
    }

    /// Forgets every buffer of a device (a write to it completed).
    pub fn invalidate(&self, dev: u32) {
        self.streams.lock().remove(&dev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn sequential_reads_prefetch_and_are_served() {
        let ra = Readahead::new(4 << 20);
        assert!(ra.plan(1, 0, 1 << 20, 1 << 30).is_empty(), "first read is not yet a stream");
        let bufs = ra.plan(1, 1 << 20, 2 << 20, 1 << 30);
        assert_eq!(bufs.len(), 4);
        assert_eq!(bufs[0].off, 2 << 20);
        assert_eq!(bufs[3].off + bufs[3].len, 6 << 20);
        // Served while pending, answered on completion.
        let (tx, rx) = mpsc::channel();
        let t2 = tx.clone();
        assert!(ra
            .try_serve(
                1,
                2 << 20,
                3 << 20,
                Box::new(move |r: Result<&[u8], crate::blockfs::Error>| t2.send(r.map(|d| d.to_vec())).unwrap())
            )
            .is_ok());
        bufs[0].complete(Ok(vec![7u8; 1 << 20]));
        assert_eq!(rx.recv().unwrap().unwrap(), vec![7u8; 1 << 20]);
        // Ready buffer serves a sub-range at once.
        assert!(ra
            .try_serve(
                1,
                (2 << 20) + 512,
                (2 << 20) + 1024,
                Box::new(move |r: Result<&[u8], crate::blockfs::Error>| tx.send(r.map(|d| d.to_vec())).unwrap())
            )
            .is_ok());
        assert_eq!(rx.recv().unwrap().unwrap(), vec![7u8; 512]);
        // Next read extends the stream by one chunk.
        let more = ra.plan(1, 2 << 20, 3 << 20, 1 << 30);
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].off, 6 << 20);
    }

    #[test]
    fn random_reads_and_writes_stop_read_ahead() {
        let ra = Readahead::new(4 << 20);
        ra.plan(1, 0, 4096, 1 << 30);
        assert!(!ra.plan(1, 4096, 8192, 1 << 30).is_empty());
        assert!(ra.plan(1, 1 << 20, (1 << 20) + 4096, 1 << 30).is_empty(), "a jump ends the stream");
        ra.plan(1, (1 << 20) + 4096, (1 << 20) + 8192, 1 << 30);
        ra.invalidate(1);
        let r = ra.try_serve(
            1,
            (1 << 20) + 8192,
            (1 << 20) + 12288,
            Box::new(|_: Result<&[u8], crate::blockfs::Error>| {}),
        );
        assert!(r.is_err(), "a completed write drops prefetched data");
    }

    #[test]
    fn never_past_the_end_and_failed_fetches_fall_back() {
        let ra = Readahead::new(4 << 20);
        ra.plan(1, 0, 65536, 200_000);
        let b = ra.plan(1, 65536, 131072, 200_000);
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].off + b[1].len, 200_000);
        b[0].complete(Err(IoError::Dead));
        assert!(ra.try_serve(1, 131072, 196608, Box::new(|_: Result<&[u8], crate::blockfs::Error>| {})).is_err());
        assert!(Readahead::new(0).plan(1, 0, 4096, 1 << 20).is_empty());
    }
}
