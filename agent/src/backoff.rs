//! Exponential backoff with full jitter, capped, for calls to the curator.
//!
//! "Full jitter" (a uniform delay in `[base/2, base]` here, so a retry never
//! comes back at once) spreads the agents of a whole cluster that lost the
//! curator at the same moment, instead of having them all return together.

use core::time::Duration;

/// Backoff state: the next delay grows from `initial` by doubling up to `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max` (`max >= initial`
    /// is enforced by raising `max`).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The failures counted since the last [`reset`](Self::reset).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The un-jittered delay after `attempt` failures: `initial * 2^(attempt-1)`,
    /// capped.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// Records a failure and returns how long to wait, given a uniform random
    /// `unit` in `[0, 1)` (the caller's RNG; a parameter so tests are exact).
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let base = self.base_delay(self.attempt);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        base.mul_f64(0.5 + unit / 2.0)
    }

    /// Records a failure and returns a jittered delay using the thread RNG.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::random::<f64>())
    }

    /// After a success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay_with(1.0)).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis)
        );
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.next_delay_with(1.0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        assert_eq!(b.next_delay_with(0.0), Duration::from_millis(50));
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        for _ in 0..100 {
            let attempt = b.attempts() + 1;
            let base = b.base_delay(attempt);
            let d = b.next_delay();
            assert!(d >= base / 2 && d <= base, "{d:?} vs {base:?}");
        }
    }

    #[test]
    fn never_overflows_and_ignores_bad_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..1000 {
            assert!(b.next_delay_with(f64::NAN) <= Duration::from_secs(60));
        }
        // A cap below the start is raised to it.
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.next_delay_with(1.0), Duration::from_secs(2));
    }
}
