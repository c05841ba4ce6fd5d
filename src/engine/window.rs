//! The congestion window: how many transmissions the target may hold.
//! Starts at half of min(maxout, buffer count), slow start up to it, +1 per
//! window of acknowledgements after that; cut to 1 (threshold halved) on a
//! timeout and halved on a fast retransmit, once per RTO (as TCP does).

use super::inflight::MAX_ENTRIES;
use super::Micros;

pub(super) struct Window {
    /// `--maxout`.
    maxout: u16,
    /// min(maxout, buffer count): no more frames are ever held.
    pub(super) max: u32,
    pub(super) cwnd: u32,
    pub(super) ssthresh: u32,
    ack_credit: u32,
    last_loss: Micros,
}

impl Window {
    pub(super) fn new(maxout: u16) -> Window {
        Window { maxout: maxout.max(1), max: 1, cwnd: 1, ssthresh: 1, ack_credit: 0, last_loss: 0 }
    }

    /// The target's buffer count (the smallest of the paths in use): a
    /// change of the cap restarts the window at half of it.
    pub(super) fn set_buffer_count(&mut self, bufcnt: u16) {
        let max = (bufcnt.max(1).min(self.maxout) as u32).min(MAX_ENTRIES as u32);
        if max != self.max {
            self.max = max;
            self.cwnd = (max / 2).max(1);
            self.ssthresh = max;
            self.ack_credit = 0;
        }
    }

    /// A new frame may go while the target holds fewer than this.
    pub(super) fn open(&self, held: u32) -> bool {
        held < self.cwnd.min(self.max)
    }

    /// The target may hold as many as it can buffer: nothing more may be
    /// sent, not even a retransmission.
    pub(super) fn full(&self, held: u32) -> bool {
        held >= self.max
    }

    /// A transmission was answered.
    pub(super) fn on_ack(&mut self) {
        if self.cwnd < self.ssthresh {
            self.cwnd += 1;
        } else {
            self.ack_credit += 1;
            if self.ack_credit >= self.cwnd {
                self.ack_credit = 0;
                self.cwnd += 1;
            }
        }
        self.cwnd = self.cwnd.min(self.max);
    }

    /// Frames were lost (`timeout`: found by their timer, else by later
    /// answers): one cut per loss event, at most once per `rto`.
    pub(super) fn on_loss(&mut self, now: Micros, rto: Micros, timeout: bool) {
        if now.saturating_sub(self.last_loss) < rto {
            return;
        }
        self.last_loss = now;
        self.ssthresh = (self.cwnd / 2).max(1);
        self.cwnd = if timeout { 1 } else { self.ssthresh };
        self.ack_credit = 0;
    }

    /// Everything in flight failed (the target is dead or flushed).
    pub(super) fn restart(&mut self) {
        self.cwnd = (self.max / 2).max(1);
        self.ssthresh = self.max;
    }
}
