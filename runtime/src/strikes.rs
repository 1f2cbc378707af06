//! Budget strikes that decay: a rule slow once in a while is never quarantined for it.

use std::time::{Duration, Instant};

/// Counts a new strike at `now` on a counter whose last strike was at `*last`: first each full
/// `decay` period since the last strike takes one strike off, then the new one is added. Returns
/// the count with the new strike.
pub(crate) fn add(
    count: &mut u32,
    last: &mut Option<Instant>,
    now: Instant,
    decay: Duration,
) -> u32 {
    if let Some(then) = *last {
        let periods = now.saturating_duration_since(then).as_nanos() / decay.as_nanos().max(1);
        *count = count.saturating_sub(u32::try_from(periods).unwrap_or(u32::MAX));
    }
    *last = Some(now);
    *count = count.saturating_add(1);
    *count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strikes_decay_one_per_full_period_since_the_last() {
        let decay = Duration::from_secs(60);
        let t0 = Instant::now();
        let (mut n, mut last) = (0, None);
        assert_eq!(add(&mut n, &mut last, t0, decay), 1);
        assert_eq!(
            add(&mut n, &mut last, t0 + Duration::from_secs(59), decay),
            2
        );
        // 61 s after the last strike: one period, one strike off, then the new one.
        assert_eq!(
            add(&mut n, &mut last, t0 + Duration::from_secs(120), decay),
            2
        );
        // Long quiet: everything forgotten.
        assert_eq!(
            add(&mut n, &mut last, t0 + Duration::from_secs(3600), decay),
            1
        );
    }
}
