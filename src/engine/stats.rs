//! The counters of a target and of each of its paths, and what else the
//! status files (`stats`) read of a target's engine.

use super::{Micros, Op, TargetIo};

/// Counters, per target and per path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames_sent: u64,
    pub frames_received: u64,
    pub retransmits: u64,
    pub timeouts: u64,
    pub unexpected: u64,
    /// Replies to a transmission of a command that another transmission had
    /// already completed.
    pub late: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub errors: u64,
    /// Read and write requests completed without error (per target only: a
    /// request's frames may take several paths), and the sum of their times
    /// from submission to completion, queueing included (iostat's await).
    pub read_requests: u64,
    pub write_requests: u64,
    pub read_wait_us: u64,
    pub write_wait_us: u64,
    /// Transmissions larger than a small frame that were lost because of
    /// their size: on a path that then fell back to small frames (a switch
    /// that drops jumbo frames), or in flight when the local interface's MTU
    /// went below them.
    pub lost_jumbo: u64,
}

impl Counters {
    /// Counts a read or write request that completed without error after
    /// `wait` microseconds.
    pub(super) fn request_done(&mut self, op: Op, wait: Micros) {
        match op {
            Op::Read => {
                self.read_requests += 1;
                self.read_wait_us += wait;
            }
            Op::Write => {
                self.write_requests += 1;
                self.write_wait_us += wait;
            }
            Op::Identify | Op::Flush => {}
        }
    }
}

/// What the status files show of the engine's state.
impl TargetIo {
    /// The retransmission timeout of a first transmission.
    pub fn rto(&self) -> Micros {
        self.rtt.rto()
    }
    /// Smoothed round-trip time (0 before the first reply).
    pub fn srtt(&self) -> Micros {
        self.rtt.srtt()
    }
    pub fn rttvar(&self) -> Micros {
        self.rtt.rttvar()
    }
    /// The congestion window and its cap (min(maxout, buffer count)).
    pub fn window(&self) -> u32 {
        self.window.cwnd
    }
    pub fn max_window(&self) -> u32 {
        self.window.max
    }
    /// Commands in flight (pinned ones apart).
    pub fn outstanding(&self) -> u32 {
        self.flight.nout
    }
    /// When the target last answered a command of ours (0: never).
    pub fn last_progress(&self) -> Micros {
        self.last_progress
    }
    /// Transmissions the target may still hold.
    pub fn held(&self) -> u32 {
        self.flight.held
    }
    pub fn pending_frames(&self) -> usize {
        self.pending.len()
    }
    /// Completed commands with transmissions still unanswered.
    pub fn ghosts(&self) -> usize {
        self.flight.ghosts.len()
    }
}
