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

/// The window's rules, on `Window` alone.
#[cfg(test)]
mod tests {
    use super::*;

    fn window(bufcnt: u16) -> Window {
        let mut w = Window::new(128);
        w.set_buffer_count(bufcnt);
        w
    }

    #[test]
    fn slow_start_adds_one_per_answer_up_to_the_threshold_then_one_per_window() {
        let mut w = window(64);
        assert_eq!((w.cwnd, w.ssthresh, w.max), (32, 64, 64));
        w.ssthresh = 34;
        w.on_ack();
        assert_eq!(w.cwnd, 33, "below the threshold: +1");
        w.on_ack();
        assert_eq!(w.cwnd, 34, "+1 up to it");
        // At the threshold: one more per window of answers.
        for i in 1..34 {
            w.on_ack();
            assert_eq!(w.cwnd, 34, "answer {i} of the window");
        }
        w.on_ack();
        assert_eq!(w.cwnd, 35, "the 34th answer opens it by one");
        for _ in 0..34 {
            w.on_ack();
        }
        assert_eq!(w.cwnd, 35, "35 answers for the next");
        w.on_ack();
        assert_eq!(w.cwnd, 36);
    }

    #[test]
    fn the_window_never_grows_past_the_buffer_count() {
        let mut w = window(4);
        for _ in 0..100 {
            w.on_ack();
        }
        assert_eq!(w.cwnd, 4);
        assert!(w.open(3) && !w.open(4));
        assert!(!w.full(3) && w.full(4));
    }

    #[test]
    fn a_loss_halves_the_window_a_timeout_cuts_it_to_one_once_per_rto() {
        let rto = 200_000;
        let mut w = window(64);
        let t0 = 1_000_000;
        w.on_loss(t0, rto, false);
        assert_eq!((w.cwnd, w.ssthresh), (16, 16), "fast retransmit: half");
        w.on_loss(t0 + rto - 1, rto, true);
        assert_eq!((w.cwnd, w.ssthresh), (16, 16), "the same loss event");
        w.on_loss(t0 + rto, rto, true);
        assert_eq!((w.cwnd, w.ssthresh), (1, 8), "timeout: one, the threshold halved");
        // A cut resets the count of answers towards the next +1.
        let mut w = window(64);
        w.ssthresh = 32;
        for _ in 0..31 {
            w.on_ack();
        }
        w.on_loss(t0, rto, false);
        assert_eq!(w.cwnd, 16);
        for _ in 0..15 {
            w.on_ack();
        }
        assert_eq!(w.cwnd, 16, "15 of the 16 answers the window needs");
    }

    #[test]
    fn a_restart_opens_the_window_at_half_the_buffer_count() {
        let mut w = window(64);
        w.on_loss(1_000_000, 200_000, true);
        assert_eq!(w.cwnd, 1);
        w.restart();
        assert_eq!((w.cwnd, w.ssthresh), (32, 64));
        let mut one = window(1);
        one.restart();
        assert_eq!(one.cwnd, 1, "never below one");
    }
}
