//! Round-trip time estimation and the retransmission timeout, as RFC 6298
//! computes them for TCP, with floors fit for storage targets.

use crate::clock::Micros;

/// The retransmission timeout never goes below this: a target pausing for
/// tens of milliseconds (a seek, garbage collection, a busy CPU) is not a
/// lost frame. Linux TCP uses the same floor (TCP_RTO_MIN, 200 ms), and the
/// kernel's aoe driver scans for retransmissions only every 100 ms.
pub const MIN_RTO: Micros = 200_000;
/// Before the first measurement (RFC 6298 section 2.1; the aoe driver's
/// first estimate of the round trip is 250 ms).
pub const INITIAL_RTO: Micros = 1_000_000;
/// The timer of one transmission backs off (doubles) up to this.
pub const MAX_BACKOFF: Micros = 8_000_000;

/// Smoothed round-trip time and its variation (gains 1/8 and 1/4).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rtt {
    /// 0 until the first sample.
    srtt: Micros,
    rttvar: Micros,
}

impl Rtt {
    pub fn sample(&mut self, r: Micros) {
        let r = r.max(1);
        if self.srtt == 0 {
            self.srtt = r;
            self.rttvar = r / 2;
        } else {
            let err = r.abs_diff(self.srtt);
            self.rttvar = (3 * self.rttvar + err) / 4;
            self.srtt = (7 * self.srtt + r) / 8;
        }
    }

    /// SRTT + 4 RTTVAR, between `MIN_RTO` and `MAX_BACKOFF`.
    pub fn rto(&self) -> Micros {
        if self.srtt == 0 {
            return INITIAL_RTO;
        }
        (self.srtt + 4 * self.rttvar).clamp(MIN_RTO, MAX_BACKOFF)
    }

    /// The timer of the transmission that follows `tries` earlier ones:
    /// the RTO doubled `tries` times, at most `MAX_BACKOFF`.
    pub fn backoff(&self, tries: usize) -> Micros {
        self.rto().saturating_mul(1 << tries.min(16)).min(MAX_BACKOFF)
    }

    pub fn srtt(&self) -> Micros {
        self.srtt
    }
    pub fn rttvar(&self) -> Micros {
        self.rttvar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rto_starts_at_one_second_follows_samples_and_keeps_its_floor() {
        let mut r = Rtt::default();
        assert_eq!(r.rto(), INITIAL_RTO);
        r.sample(300);
        assert_eq!((r.srtt(), r.rttvar()), (300, 150));
        assert_eq!(r.rto(), MIN_RTO, "a 0.3 ms round trip still waits 200 ms");
        for _ in 0..50 {
            r.sample(100_000);
        }
        assert!((95_000..=100_000).contains(&r.srtt()), "{}", r.srtt());
        assert!(r.rto() >= 100_000 && r.rto() < 200_001);
        r.sample(2_000_000);
        assert!(r.rto() > 1_000_000, "a long sample raises the timeout at once: {}", r.rto());
        assert_eq!(r.backoff(0), r.rto());
        assert_eq!(r.backoff(1), (2 * r.rto()).min(MAX_BACKOFF));
        assert_eq!(r.backoff(40), MAX_BACKOFF);
    }
}
