//! The controller's clock: wall-clock time, or (for tests only) wall-clock time sped up by an
//! integer factor from a fixed anchor, so that bakes of hours pass in seconds while every
//! duration keeps its ratio. The anchor and the factor are stored in the database at the first
//! start, so a restarted controller continues the same timeline; a restart with another factor is
//! refused.
//!
//! Controller time is what gates, bakes, silence and report stamps use. Documents hosts verify
//! with their own clocks (offers, `timestamp.json`, reverts) are always stamped with wall-clock
//! time.

/// The controller's clock (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    anchor_ms: u64,
    scale: u32,
}

impl Clock {
    /// A clock running `scale` times as fast as the wall clock from `anchor_ms` (milliseconds since
    /// the Unix epoch); `scale` 1 is the wall clock.
    pub fn new(anchor_ms: u64, scale: u32) -> Clock {
        Clock {
            anchor_ms,
            scale: scale.max(1),
        }
    }

    /// The factor.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// Controller time now, seconds.
    pub fn now(&self) -> u64 {
        self.at(Clock::real_ms()) / 1000
    }

    /// Controller time, milliseconds, at wall-clock `real_ms`.
    pub fn at(&self, real_ms: u64) -> u64 {
        let elapsed = real_ms.saturating_sub(self.anchor_ms);
        self.anchor_ms
            .saturating_add(elapsed.saturating_mul(u64::from(self.scale)))
    }

    /// Wall-clock milliseconds since the Unix epoch.
    pub fn real_ms() -> u64 {
        rulebox_runtime::content::now_unix_ms()
    }

    /// Wall-clock seconds since the Unix epoch.
    pub fn real_secs() -> u64 {
        rulebox_runtime::content::now_unix()
    }

    /// `secs` of controller time as wall-clock seconds (at least 1).
    pub fn to_real_secs(&self, secs: u64) -> u64 {
        (secs / u64::from(self.scale)).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_clock_runs_faster_from_its_anchor_and_scale_one_is_the_wall_clock() {
        let c = Clock::new(1_000_000, 60);
        assert_eq!(c.at(1_000_000), 1_000_000);
        assert_eq!(c.at(1_001_000), 1_060_000);
        assert_eq!(c.to_real_secs(3600), 60);
        assert_eq!(c.to_real_secs(10), 1);
        let wall = Clock::new(5, 1);
        assert_eq!(wall.at(12_345), 12_345);
    }
}
