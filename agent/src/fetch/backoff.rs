//! Full jitter and capped exponential backoff: a fleet that restarts together, or that loses its
//! controller together, does not come back together.

use std::time::Duration;

/// A uniform random fraction in `[0, 1]` from the operating system's generator (0.5 if it fails:
/// the schedule is then deterministic, never a tight loop).
fn unit() -> f64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

/// Full jitter: a uniform delay in `[0, max]`.
pub fn full_jitter(max: Duration) -> Duration {
    max.mul_f64(unit())
}

/// The backoff schedule of one kind of request: the ceiling doubles from `base` on every failure,
/// up to `cap`; each wait is drawn with full jitter under the ceiling, and never shorter than
/// `floor` (so that a failing server is never hammered).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    floor: Duration,
    failures: u32,
}

impl Backoff {
    /// A schedule doubling from `base`, capped at `cap`, each wait at least `floor`.
    pub fn new(base: Duration, cap: Duration, floor: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            floor,
            failures: 0,
        }
    }

    /// Sets the base (the controller's interval), keeping the failure count.
    pub fn set_base(&mut self, base: Duration) {
        self.base = base;
        self.cap = self.cap.max(base);
    }

    /// Failures in a row so far.
    #[cfg(test)]
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The ceiling of the next wait after `failures` failures in a row.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.failures.min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        full_jitter(self.ceiling()).max(self.floor)
    }

    /// Records a success: the next wait is the plain interval with full jitter.
    pub fn succeeded(&mut self) -> Duration {
        self.failures = 0;
        full_jitter(self.base).max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_its_cap_with_full_jitter_and_resets_on_success() {
        let s = Duration::from_secs(1);
        let mut b = Backoff::new(s * 10, s * 3600, Duration::from_millis(100));
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            let wait = b.failed();
            ceilings.push(b.ceiling());
            assert!(wait <= b.ceiling() && wait >= Duration::from_millis(100));
        }
        assert_eq!(ceilings[0], s * 20);
        assert_eq!(ceilings[1], s * 40);
        assert_eq!(*ceilings.last().unwrap(), s * 3600, "capped at one hour");
        assert!(b.succeeded() <= s * 10);
        assert_eq!(b.failures(), 0);
        // Full jitter: waits spread over the whole range, not clustered at the ceiling.
        let waits: Vec<_> = (0..200).map(|_| full_jitter(s * 100)).collect();
        assert!(waits.iter().any(|w| *w < s * 30) && waits.iter().any(|w| *w > s * 70));
    }
}
