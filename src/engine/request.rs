//! Requests and their frames: what a caller asked for (an `Op`, its buffer
//! and its callback), the frames (`Job`s) it is cut into, and the table of
//! requests waiting for their frames. A request is answered once: at its
//! first error, or when its last frame is done.

use super::Micros;
use crate::wire::{self, AoeError, SECTOR};
use std::sync::Arc;

/// Why an I/O failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// The target answered with ATA status failure.
    #[error("ATA error status=0x{status:02x} error=0x{error:02x}")]
    Ata { status: u8, error: u8 },
    /// The target answered with an AoE error.
    #[error("AoE error {}: {}", .0.to_u8(), .0.describe())]
    Aoe(AoeError),
    /// No progress for deadsecs: the target was declared down.
    #[error("target timed out (deadsecs)")]
    Dead,
    /// The target is down (or was flushed) and takes no I/O.
    #[error("target is down")]
    Down,
    /// A bounded wait ended before the answer (the request goes on).
    #[error("no answer in time")]
    Timeout,
}

pub type IoResult = Result<Vec<u8>, IoError>;
/// Called once when a request completes (never under the target's lock).
pub type IoDone = Box<dyn FnOnce(IoResult) + Send>;
/// Finished requests, to be run after the caller drops the target's lock.
pub type Completions = Vec<(IoDone, IoResult)>;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Identify,
    Flush,
}

/// Whether an error register says a write was refused: ABRT, IDNF or WP
/// (0x40, UNC on reads).
pub(super) fn write_refused(error: u8) -> bool {
    error & (wire::ATA_ERR_ABRT | wire::ATA_ERR_IDNF | 0x40) != 0
}

/// A request's data: filled by replies (reads, IDENTIFY) or sent (writes;
/// shared, so that frames can carry it after the target's lock is dropped).
pub(super) enum ReqBuf {
    In(Vec<u8>),
    Out(Arc<Vec<u8>>),
}

impl ReqBuf {
    pub(super) fn len(&self) -> usize {
        match self {
            ReqBuf::In(b) => b.len(),
            ReqBuf::Out(b) => b.len(),
        }
    }
}

struct Req {
    buf: ReqBuf,
    frames_left: u32,
    err: Option<IoError>,
    done: Option<IoDone>,
    /// What it does and when it was submitted (for the request counters).
    op: Op,
    submitted: Micros,
    /// Unique for the target's life (a request's index is reused): ties a
    /// ghost left by re-planning a frame to the pieces that replace it.
    serial: u64,
}

/// One frame's command.
#[derive(Clone, Copy, Debug)]
pub(super) struct Job {
    pub(super) req: u32,
    pub(super) lba: u64,
    pub(super) count: u8,
    pub(super) off: u32,
    pub(super) cmd: u8,
    pub(super) write: bool,
    /// Stays on its entry's path (a new path's verification): outside the
    /// window and the target's estimates, and never a ghost.
    pub(super) pinned: bool,
    /// When the command was first sent (kept when it is re-planned into
    /// smaller frames): deadsecs counts from here, as the kernel driver
    /// counts each frame's whole wait.
    pub(super) first_sent: Option<Micros>,
    /// Transmissions of the frame it was re-planned from: its timers go on
    /// backing off from there.
    pub(super) tries: u8,
}

impl Job {
    pub(super) fn overlaps(&self, other: &Job) -> bool {
        self.lba < other.lba + other.count as u64 && other.lba < self.lba + self.count as u64
    }
    pub(super) fn is_flush(&self) -> bool {
        matches!(self.cmd, wire::ATA_FLUSH | wire::ATA_FLUSH_EXT)
    }
    /// Carries (or asks for) more data than a small frame.
    pub(super) fn is_big(&self) -> bool {
        self.count > super::FALLBACK_SECTORS
    }
    /// Bytes of data its reply carries: reads, and IDENTIFY (a command of
    /// one sector in); FLUSH CACHE has a count of 0.
    pub(super) fn data_in(&self) -> usize {
        if self.write {
            0
        } else {
            self.count as usize * SECTOR
        }
    }
    /// The frame cut into frames of at most `sectors` sectors, in order.
    pub(super) fn split(self, sectors: u8) -> impl Iterator<Item = Job> {
        let sectors = sectors.max(1);
        (0..self.count).step_by(sectors as usize).map(move |s| Job {
            lba: self.lba + s as u64,
            count: sectors.min(self.count - s),
            off: self.off + s as u32 * SECTOR as u32,
            ..self
        })
    }
}

/// The requests waiting for their frames, by index (reused once answered).
#[derive(Default)]
pub(super) struct Requests {
    reqs: Vec<Option<Req>>,
    free: Vec<u32>,
    /// The serial of the last request.
    serial: u64,
}

impl Requests {
    /// A new request of `frames` frames; returns its index.
    pub(super) fn add(&mut self, op: Op, buf: ReqBuf, frames: u32, done: IoDone, now: Micros) -> u32 {
        self.serial += 1;
        let req =
            Req { buf, frames_left: frames, err: None, done: Some(done), op, submitted: now, serial: self.serial };
        if let Some(i) = self.free.pop() {
            self.reqs[i as usize] = Some(req);
            i
        } else {
            self.reqs.push(Some(req));
            (self.reqs.len() - 1) as u32
        }
    }

    /// The request was answered already (an error, or gone): its frames
    /// still out are not worth sending or waiting for.
    pub(super) fn failed(&self, req: u32) -> bool {
        self.reqs[req as usize].as_ref().is_none_or(|r| r.err.is_some())
    }

    /// The request's serial (0 once it is gone).
    pub(super) fn serial(&self, req: u32) -> u64 {
        self.reqs[req as usize].as_ref().map_or(0, |r| r.serial)
    }

    /// The request's serial while it is waiting without an error.
    pub(super) fn live_serial(&self, req: u32) -> Option<u64> {
        self.reqs[req as usize].as_ref().filter(|r| r.err.is_none()).map(|r| r.serial)
    }

    /// The request was cut into `n` more frames.
    pub(super) fn add_frames(&mut self, req: u32, n: u32) {
        if let Some(r) = self.reqs[req as usize].as_mut() {
            r.frames_left += n;
        }
    }

    /// The write data a frame of `req` carries: `len` bytes at `off`.
    pub(super) fn data_out(&self, req: u32, off: u32, len: u32) -> Option<(Arc<Vec<u8>>, u32, u32)> {
        match &self.reqs[req as usize].as_ref().expect("frame of a finished request").buf {
            ReqBuf::Out(b) => Some((b.clone(), off, len)),
            ReqBuf::In(_) => None,
        }
    }

    /// Copies a reply's data into the request's buffer at `off`.
    pub(super) fn fill(&mut self, req: u32, off: usize, data: &[u8]) {
        if let Some(Req { buf: ReqBuf::In(b), .. }) = self.reqs[req as usize].as_mut() {
            b[off..off + data.len()].copy_from_slice(data);
        }
    }

    /// Counts one frame of `req` as finished; answers the request at its
    /// first error, and completes it when it was the last frame. Returns
    /// what a request that completed without error did and when it was
    /// submitted.
    pub(super) fn frame_done(
        &mut self,
        req: u32,
        err: Option<IoError>,
        completed: &mut Completions,
    ) -> Option<(Op, Micros)> {
        let r = self.reqs[req as usize].as_mut()?;
        if r.err.is_none() {
            if let Some(e) = err {
                // The first error answers the request at once; its other
                // frames still in flight finish quietly.
                if let Some(done) = r.done.take() {
                    completed.push((done, Err(e.clone())));
                }
                r.err = Some(e);
            }
        }
        r.frames_left -= 1;
        if r.frames_left > 0 {
            return None;
        }
        let r = self.reqs[req as usize].take().expect("request");
        self.free.push(req);
        let ok = r.err.is_none();
        let res = match (r.err, r.buf) {
            (Some(e), _) => Err(e),
            (None, ReqBuf::In(b)) => Ok(b),
            (None, ReqBuf::Out(_)) => Ok(Vec::new()),
        };
        if let Some(done) = r.done {
            completed.push((done, res));
        }
        ok.then_some((r.op, r.submitted))
    }

    /// Answers every request with `err` (or the error it already had).
    pub(super) fn fail_all(&mut self, err: &IoError, completed: &mut Completions) {
        for i in 0..self.reqs.len() {
            if let Some(r) = self.reqs[i].take() {
                self.free.push(i as u32);
                if let Some(d) = r.done {
                    completed.push((d, Err(r.err.unwrap_or_else(|| err.clone()))));
                }
            }
        }
    }
}
