//! Loss recovery: when a transmission is presumed lost, the reordering
//! window that delays fast retransmit, the probes (a unicast query config:
//! TCP's tail-loss probe) and their backoff, and how long a ghost lives.
//! The per-path marks that fast retransmit and probes leave
//! (`Path::overtaken_below`, `Path::probed_below`) are the paths'.

use super::inflight::Sent;
use super::rtt::{Rtt, MAX_BACKOFF};
use super::Micros;

/// A transmission that timed out is presumed lost after this long even if
/// the target answered nothing sent after it (a pause longer than this is
/// treated as loss).
pub const PAUSE_MAX: Micros = 3_000_000;
/// A ghost lives (and a write's ghost blocks overlapping writes) at least
/// this long after its newest unanswered transmission was sent: five times
/// the RTO floor.
pub const GHOST_HOLD_MIN: Micros = 1_000_000;
/// ... and at most this long.
pub const GHOST_HOLD_MAX: Micros = 60_000_000;
/// A transmission is resent without waiting for its timer once the target
/// has answered this many transmissions sent after it (TCP's fast
/// retransmit after three duplicate acknowledgements): a target that works
/// in order has lost it.
pub(super) const FAST_RETRANSMIT_AFTER: u64 = 3;
/// ... and only once it has waited the reordering window: how long a reply
/// may come after replies to later frames without being lost. It starts at
/// `REORDER_MIN` and doubles, up to `REORDER_MAX`, each time a frame resent
/// this way is answered after all (the target or the network reorders:
/// it delays a reply by tens of milliseconds, a busy CPU or a seek on one
/// disk of a shelf, while answering others); it halves again after
/// `REORDER_DECAY` without such a case. TCP's RACK works the same way.
pub const REORDER_MIN: Micros = 2_000;
pub const REORDER_MAX: Micros = 64_000;
const REORDER_DECAY: Micros = 10_000_000;
/// When the target has answered nothing for this long (and at least twice
/// the round trip) while frames are out, it is asked whether it is alive (a
/// unicast query config, TCP's tail loss probe): a target that works in
/// order answers it only after what was sent before, so if its answer comes
/// first, those frames were lost and go again at once instead of after the
/// RTO.
pub const MIN_PROBE_TIMEOUT: Micros = 10_000;

pub(super) struct Recovery {
    /// Latest send time of a transmission the target answered (or of a
    /// config query it answered): everything sent before it that is not
    /// answered and timed out is presumed lost.
    answered_sent_at: Micros,
    /// Longest this target took to answer a transmission.
    longest_wait: Micros,
    /// The probe asked for and not answered yet: its place in the sending
    /// order and when.
    probe: Option<(u64, Micros)>,
    /// Probes sent since the target last answered an ATA command, and when
    /// the latest went: each waits twice as long as the one before, so a
    /// target whose network answers while its disk does not is asked a
    /// few times a second at first and every `MAX_BACKOFF` at most later.
    probes_unanswered: u32,
    last_probe: Micros,
    /// When the target last answered an ATA command.
    pub(super) last_answer: Micros,
    /// The reordering window (see `REORDER_MIN`), and when a frame resent
    /// by it last turned out not lost.
    reorder_window: Micros,
    last_reorder: Micros,
}

impl Recovery {
    pub(super) fn new() -> Recovery {
        Recovery {
            answered_sent_at: 0,
            longest_wait: 0,
            probe: None,
            probes_unanswered: 0,
            last_probe: 0,
            last_answer: 0,
            reorder_window: REORDER_MIN,
            last_reorder: 0,
        }
    }

    /// The target answered transmission `t`: it is alive and has worked
    /// through what was sent before it. A transmission resent as lost that
    /// is answered after all widens the reordering window.
    pub(super) fn answered(&mut self, now: Micros, t: &Sent) {
        if t.overtaken {
            // Resent as lost, yet answered: replies come out of order.
            self.reorder_window = (2 * self.reorder_window).min(REORDER_MAX);
            self.last_reorder = now;
        } else if now.saturating_sub(self.last_reorder) >= REORDER_DECAY {
            // (At the minimum already this changes nothing.)
            self.reorder_window = (self.reorder_window / 2).max(REORDER_MIN);
            self.last_reorder = now;
        }
        self.last_answer = now;
        self.answered_sent_at = self.answered_sent_at.max(t.at);
        self.longest_wait = self.longest_wait.max(now.saturating_sub(t.at));
        self.probes_unanswered = 0;
    }

    /// A config response: what timed out before now was lost.
    pub(super) fn sign_of_life(&mut self, now: Micros) {
        self.answered_sent_at = self.answered_sent_at.max(now);
    }

    /// `t` is held, timed out, and the target has answered something sent
    /// after it (or a probe), or it has waited `PAUSE_MAX`.
    pub(super) fn presumed_lost(&self, t: &Sent, now: Micros) -> bool {
        t.held && now >= t.deadline && (t.at < self.answered_sent_at || now - t.at >= PAUSE_MAX)
    }

    /// `t` has waited the round trip and the reordering window: later
    /// answers may now tell that it was lost.
    pub(super) fn waited_reorder(&self, t: &Sent, now: Micros, rtt: &Rtt) -> bool {
        now.saturating_sub(t.at) >= rtt.srtt() + self.reorder_window
    }

    /// The target answered an ATA command after `at`.
    pub(super) fn answered_after(&self, at: Micros) -> bool {
        self.last_answer > at
    }

    /// How long a ghost lives (and a write's ghost blocks overlapping
    /// writes) after its newest transmission was sent, or after its last
    /// late answer: at least `GHOST_HOLD_MIN` and four RTOs, and twice the
    /// longest this target took to answer a transmission.
    pub(super) fn ghost_hold(&self, rto: Micros) -> Micros {
        GHOST_HOLD_MIN.max(4 * rto).max(2 * self.longest_wait).min(GHOST_HOLD_MAX)
    }

    /// How long the target may be quiet while frames wait before it is
    /// probed: twice the round trip, at least `MIN_PROBE_TIMEOUT`, at most
    /// the RTO.
    pub(super) fn probe_timeout(rtt: &Rtt) -> Micros {
        (2 * rtt.srtt()).max(MIN_PROBE_TIMEOUT).min(rtt.rto())
    }

    /// The target has answered no command for `pto`.
    pub(super) fn quiet(&self, now: Micros, pto: Micros) -> bool {
        now.saturating_sub(self.last_answer) >= pto
    }

    /// When the next probe may go: one at a time (a lost one is replaced
    /// after an RTO), and each one sent while the target answers no command
    /// twice as long after the one before.
    pub(super) fn next_probe_at(&self, rto: Micros, pto: Micros) -> Micros {
        let replaced = self.probe.map_or(0, |(_, at)| at + rto);
        let backed_off = if self.probes_unanswered == 0 {
            0
        } else {
            self.last_probe + pto.saturating_mul(1 << self.probes_unanswered.min(16)).min(MAX_BACKOFF)
        };
        replaced.max(backed_off)
    }

    /// A probe goes now, at place `seq` of the sending order.
    pub(super) fn probe_sent(&mut self, seq: u64, now: Micros) {
        self.probe = Some((seq, now));
        self.last_probe = now;
        self.probes_unanswered += 1;
    }

    /// The place of the probe not answered yet.
    pub(super) fn probe_seq(&self) -> Option<u64> {
        self.probe.map(|(seq, _)| seq)
    }

    /// Every path in use answered the probe.
    pub(super) fn probe_answered(&mut self) {
        self.probe = None;
    }

    /// Everything in flight failed (the target is dead or flushed).
    pub(super) fn restart(&mut self) {
        self.probe = None;
        self.probes_unanswered = 0;
    }
}

/// The rules of loss recovery, on `Recovery` alone.
#[cfg(test)]
mod tests {
    use super::*;

    /// A transmission sent at `at`, timing out at `deadline`, held.
    fn sent(at: Micros, deadline: Micros) -> Sent {
        Sent { gen: 0, path: 1, seq: 0, at, deadline, held: true, overtaken: false }
    }

    #[test]
    fn the_reordering_window_doubles_on_a_frame_resent_in_vain_and_halves_after_quiet() {
        let mut r = Recovery::new();
        let overtaken = Sent { overtaken: true, ..sent(0, 0) };
        r.answered(1_000, &overtaken);
        r.answered(2_000, &overtaken);
        assert_eq!(r.reorder_window, 4 * REORDER_MIN);
        r.answered(2_000 + REORDER_DECAY - 1, &sent(0, 0));
        assert_eq!(r.reorder_window, 4 * REORDER_MIN, "not yet");
        r.answered(2_000 + REORDER_DECAY, &sent(0, 0));
        assert_eq!(r.reorder_window, 2 * REORDER_MIN, "halved after REORDER_DECAY");
        r.answered(2_000 + 2 * REORDER_DECAY, &sent(0, 0));
        r.answered(2_000 + 3 * REORDER_DECAY, &sent(0, 0));
        assert_eq!(r.reorder_window, REORDER_MIN, "never below the minimum");
        for i in 0..20 {
            r.answered(3 * REORDER_DECAY + i, &overtaken);
        }
        assert_eq!(r.reorder_window, REORDER_MAX, "nor above the maximum");
    }

    #[test]
    fn a_timed_out_transmission_is_presumed_lost_once_something_sent_after_it_was_answered() {
        let mut r = Recovery::new();
        let t = sent(100, 1_000);
        assert!(!r.presumed_lost(&t, 1_000), "nothing answered since");
        r.answered(500, &sent(100, 1_000));
        assert!(!r.presumed_lost(&t, 1_000), "an answer to one sent at the same time");
        r.answered(600, &sent(101, 1_000));
        assert!(!r.presumed_lost(&t, 999), "not before its timeout");
        assert!(r.presumed_lost(&t, 1_000));
        assert!(!r.presumed_lost(&Sent { held: false, ..t }, 1_000), "not held: nothing to presume");
        // Or after PAUSE_MAX with no answer at all.
        let r = Recovery::new();
        assert!(!r.presumed_lost(&t, 100 + PAUSE_MAX - 1));
        assert!(r.presumed_lost(&t, 100 + PAUSE_MAX));
    }

    #[test]
    fn a_config_answer_presumes_lost_what_timed_out_before_it() {
        let mut r = Recovery::new();
        let t = sent(100, 1_000);
        assert!(!r.presumed_lost(&t, 1_000));
        r.sign_of_life(1_000);
        assert!(r.presumed_lost(&t, 1_000));
        assert!(!r.presumed_lost(&sent(1_500, 2_000), 2_000), "sent after it");
    }

    #[test]
    fn answered_after_and_quiet_read_the_last_answer() {
        let mut r = Recovery::new();
        r.answered(5_000, &sent(4_000, 0));
        assert!(r.answered_after(4_999));
        assert!(!r.answered_after(5_000));
        assert!(!r.quiet(5_000 + MIN_PROBE_TIMEOUT - 1, MIN_PROBE_TIMEOUT));
        assert!(r.quiet(5_000 + MIN_PROBE_TIMEOUT, MIN_PROBE_TIMEOUT));
    }

    #[test]
    fn the_probe_timeout_is_twice_the_round_trip_within_its_bounds() {
        let mut rtt = Rtt::default();
        rtt.sample(20_000);
        assert_eq!(Recovery::probe_timeout(&rtt), 40_000);
        let mut fast = Rtt::default();
        fast.sample(100);
        assert_eq!(Recovery::probe_timeout(&fast), MIN_PROBE_TIMEOUT);
        let mut slow = Rtt::default();
        slow.sample(150_000);
        assert_eq!(Recovery::probe_timeout(&slow), slow.rto().min(300_000));
    }

    #[test]
    fn probes_go_one_at_a_time_each_twice_as_long_after_the_last_until_answered() {
        let (rto, pto) = (200_000, 10_000);
        let mut r = Recovery::new();
        assert_eq!(r.next_probe_at(rto, pto), 0, "none sent: any time");
        r.probe_sent(7, 1_000);
        assert_eq!(r.probe_seq(), Some(7));
        // Replaced after an RTO; backed off by 2 probe timeouts.
        assert_eq!(r.next_probe_at(rto, pto), 1_000 + rto);
        r.probe_answered();
        assert_eq!(r.probe_seq(), None);
        assert_eq!(r.next_probe_at(rto, pto), 1_000 + 2 * pto);
        r.probe_sent(9, 30_000);
        r.probe_answered();
        assert_eq!(r.next_probe_at(rto, pto), 30_000 + 4 * pto);
        // An ATA answer ends the backoff.
        r.answered(40_000, &sent(35_000, 0));
        assert_eq!(r.next_probe_at(rto, pto), 0);
        // So does a restart, and it forgets the probe.
        r.probe_sent(11, 50_000);
        r.restart();
        assert_eq!((r.probe_seq(), r.next_probe_at(rto, pto)), (None, 0));
    }
}
