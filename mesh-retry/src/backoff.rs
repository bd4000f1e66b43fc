//! Envoy's fully jittered exponential backoff.

use std::time::Duration;

use rand::{Rng, RngExt};

use crate::error::ConfigError;

/// The wait before each retry: Envoy's `retry_back_off`, a fully jittered
/// exponential backoff.
///
/// Retry `n` (1 for the first retry) waits a uniformly random time in
/// `[0, (2ⁿ − 1)·base)`, clipped at `max`: with Envoy's defaults (25 ms base,
/// 250 ms max) that is 0–25 ms, 0–75 ms, 0–175 ms, then at most 250 ms. So a
/// wait always lies in `[0, min(max, base·2ⁿ)]`.
///
/// ```
/// use std::time::Duration;
/// use mesh_retry::Backoff;
///
/// let backoff = Backoff::default();
/// assert_eq!(backoff.base(), Duration::from_millis(25));
/// assert_eq!(backoff.max(), Duration::from_millis(250));
/// assert_eq!(backoff.ceiling(2), Duration::from_millis(75));
/// let wait = backoff.wait(2, &mut rand::rng());
/// assert!(wait < Duration::from_millis(75));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// Envoy's default base interval, 25 ms.
    pub const DEFAULT_BASE: Duration = Duration::from_millis(25);

    /// Envoy's default: 25 ms base, 250 ms max.
    pub const DEFAULT: Backoff = Backoff {
        base: Self::DEFAULT_BASE,
        max: Duration::from_millis(250),
    };

    /// A backoff from `base` with Envoy's maximum of ten times the base (what
    /// Istio's `retries.backoff` sets).
    pub fn new(base: Duration) -> Result<Self, ConfigError> {
        Self::with_max(base, base.saturating_mul(10))
    }

    /// A backoff from `base` up to `max`; `base` must be above zero and `max`
    /// at least `base`.
    pub fn with_max(base: Duration, max: Duration) -> Result<Self, ConfigError> {
        if base.is_zero() || max < base {
            return Err(ConfigError::InvalidBackoff { base, max });
        }
        Ok(Backoff { base, max })
    }

    /// The base interval.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The maximum wait.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The exclusive upper end of retry `n`'s random draw, `(2ⁿ − 1)·base`,
    /// before the clip at [`max`](Self::max). `n` counts from 1; 0 is read
    /// as 1.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let n = retry.max(1);
        let multiplier = if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
        self.base.saturating_mul(multiplier)
    }

    /// The wait before retry `n` (from 1), drawn from `rng`.
    pub fn wait<R: Rng + ?Sized>(&self, retry: u32, rng: &mut R) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        // `base > 0`, so the ceiling is at least one nanosecond.
        let drawn = Duration::from_nanos(rng.random_range(0..ceiling.max(1)));
        drawn.min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn envoy_defaults_and_istio_base() {
        let b = Backoff::new(Duration::from_millis(100)).unwrap();
        assert_eq!(b.max(), Duration::from_secs(1));
        assert_eq!(Backoff::default().ceiling(1), Duration::from_millis(25));
        assert_eq!(Backoff::default().ceiling(3), Duration::from_millis(175));
        assert!(Backoff::new(Duration::ZERO).is_err());
        assert!(Backoff::with_max(Duration::from_secs(2), Duration::from_secs(1)).is_err());
        assert_eq!(
            Backoff::default().ceiling(200),
            Backoff::default().ceiling(40)
        );
    }

    #[test]
    fn waits_spread_over_the_range() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        let waits: Vec<Duration> = (0..1000).map(|_| b.wait(1, &mut rng)).collect();
        assert!(waits.iter().all(|w| *w < Duration::from_millis(25)));
        assert!(waits.iter().any(|w| *w < Duration::from_millis(5)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(20)));
    }

    proptest! {
        /// The issue's invariant: a wait lies in [0, min(cap, base·2ⁿ)], and
        /// Envoy's tighter one: below (2ⁿ − 1)·base unless clipped to the cap.
        #[test]
        fn waits_stay_within_bounds(
            base_us in 1u64..1_000_000,
            factor in 1u32..100,
            retry in 1u32..80,
            seed in any::<u64>(),
        ) {
            let base = Duration::from_micros(base_us);
            let max = base * factor;
            let b = Backoff::with_max(base, max).unwrap();
            let mut rng = StdRng::seed_from_u64(seed);
            for _ in 0..8 {
                let w = b.wait(retry, &mut rng);
                let doubling = base.saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX));
                prop_assert!(w <= max.min(doubling), "{w:?} > min({max:?}, {doubling:?})");
                prop_assert!(w < b.ceiling(retry) || w == max);
            }
        }
    }
}
