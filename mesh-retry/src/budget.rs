//! Retry budgets: how many retries the layer may add, so retries cannot
//! multiply an outage.
//!
//! Two forms behind one small trait, [`RetryBudget`]:
//!
//! - [`ConcurrencyBudget`], Envoy's `retry_budget` (Istio's
//!   `trafficPolicy.retryBudget`): retries in flight may not exceed
//!   `budget_percent` of the active requests, and never go below
//!   `min_retry_concurrency`. Two atomics, no lock, no clock.
//! - tower's [`TpsBudget`] (Finagle's, Linkerd's `retryBudget`): a ratio of
//!   retries to requests over a time window, with a minimum rate. Build it
//!   with [`tps_budget`], which checks the parameters tower would otherwise
//!   panic on. Note that tower's implementation takes a `std::sync::Mutex` and
//!   reads the clock on every request.
//!
//! A budget is shared: give the same `Arc` to every route of a destination
//! service, as Envoy shares one per cluster.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tower::retry::budget::Budget;
pub use tower::retry::budget::TpsBudget;

use crate::error::ConfigError;

/// A budget the retry layer asks before each retry.
///
/// The layer calls [`request_started`](Self::request_started) once per request
/// and [`request_ended`](Self::request_ended) when the request is over (its
/// response head returned, it failed, or it was dropped);
/// [`try_retry`](Self::try_retry) before each retry, and
/// [`retry_ended`](Self::retry_ended) when a granted retry is over (its
/// attempt answered, or the request ended during its backoff).
pub trait RetryBudget: Send + Sync + fmt::Debug + 'static {
    /// A request began.
    fn request_started(&self);

    /// A request ended.
    fn request_ended(&self) {}

    /// Whether one more retry may be made now; `true` takes it.
    fn try_retry(&self) -> bool;

    /// A retry granted by [`try_retry`](Self::try_retry) is over.
    fn retry_ended(&self) {}
}

/// Envoy's retry budget: retries in flight ≤ max(`min_retry_concurrency`,
/// `budget_percent` × active requests).
///
/// Active requests are those in flight through the retry layers sharing this
/// budget (Envoy counts the cluster's active and pending requests); a retry is
/// in flight from the moment it is granted, through its backoff, until its
/// attempt answers, as in Envoy.
///
/// ```
/// use mesh_retry::budget::{ConcurrencyBudget, RetryBudget};
///
/// let budget = ConcurrencyBudget::default(); // 20 %, at least 3
/// for _ in 0..20 {
///     budget.request_started();
/// }
/// assert_eq!(budget.allowed(), 4);
/// assert!((0..4).all(|_| budget.try_retry()));
/// assert!(!budget.try_retry(), "a fifth retry would pass 20 % of 20");
/// ```
#[derive(Debug)]
pub struct ConcurrencyBudget {
    percent: f64,
    min_concurrency: usize,
    active: AtomicUsize,
    retries: AtomicUsize,
}

impl ConcurrencyBudget {
    /// Envoy's and Istio's default `budget_percent`, 20 %.
    pub const DEFAULT_PERCENT: f64 = 20.0;
    /// Envoy's and Istio's default `min_retry_concurrency`, 3.
    pub const DEFAULT_MIN_RETRY_CONCURRENCY: u32 = 3;

    /// A budget of `percent` (0–100) of active requests, never below
    /// `min_retry_concurrency`.
    pub fn new(percent: f64, min_retry_concurrency: u32) -> Result<Self, ConfigError> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(ConfigError::InvalidBudget(
                "budget percent must be within 0-100",
            ));
        }
        Ok(ConcurrencyBudget {
            percent,
            min_concurrency: usize::try_from(min_retry_concurrency).unwrap_or(usize::MAX),
            active: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
        })
    }

    /// How many retries may be in flight now.
    pub fn allowed(&self) -> usize {
        let active = self.active.load(Ordering::Acquire);
        // f64 holds any realistic count exactly; `as` saturates.
        let share = (self.percent / 100.0 * active as f64) as usize;
        share.max(self.min_concurrency)
    }

    /// Requests in flight.
    pub fn active_requests(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Retries in flight.
    pub fn retries_in_flight(&self) -> usize {
        self.retries.load(Ordering::Acquire)
    }
}

impl Default for ConcurrencyBudget {
    fn default() -> Self {
        ConcurrencyBudget {
            percent: Self::DEFAULT_PERCENT,
            min_concurrency: Self::DEFAULT_MIN_RETRY_CONCURRENCY as usize,
            active: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
        }
    }
}

impl RetryBudget for ConcurrencyBudget {
    fn request_started(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
    }

    fn request_ended(&self) {
        // Saturating: a stray end never wraps the count.
        let _ = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    fn try_retry(&self) -> bool {
        let allowed = self.allowed();
        self.retries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < allowed).then_some(n + 1)
            })
            .is_ok()
    }

    fn retry_ended(&self) {
        let _ = self
            .retries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// tower's budget as a [`RetryBudget`]: every request deposits, every retry
/// withdraws.
impl RetryBudget for TpsBudget {
    fn request_started(&self) {
        self.deposit();
    }

    fn try_retry(&self) -> bool {
        self.withdraw()
    }
}

/// Any tower [`Budget`] as a [`RetryBudget`] (deposit per request, withdraw
/// per retry).
#[derive(Debug)]
pub struct TowerBudget<B>(pub B);

impl<B: Budget + Send + Sync + fmt::Debug + 'static> RetryBudget for TowerBudget<B> {
    fn request_started(&self) {
        self.0.deposit();
    }

    fn try_retry(&self) -> bool {
        self.0.withdraw()
    }
}

/// tower's [`TpsBudget`]: `retry_ratio` retries per request over a window of
/// `ttl` (1–60 s), plus `min_per_sec` retries a second whatever the traffic.
/// Linkerd's defaults are `10 s, 10, 0.2`.
///
/// Checks what `TpsBudget::new` asserts, so a bad config is an error, not a
/// panic.
pub fn tps_budget(
    ttl: Duration,
    min_per_sec: u32,
    retry_ratio: f32,
) -> Result<TpsBudget, ConfigError> {
    if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&ttl) {
        return Err(ConfigError::InvalidBudget("ttl must be within 1-60 s"));
    }
    if !(0.0..=1000.0).contains(&retry_ratio) {
        return Err(ConfigError::InvalidBudget(
            "retry ratio must be within 0-1000",
        ));
    }
    if min_per_sec >= i32::MAX as u32 {
        return Err(ConfigError::InvalidBudget(
            "min retries per second too large",
        ));
    }
    Ok(TpsBudget::new(ttl, min_per_sec, retry_ratio))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn min_concurrency_holds_with_little_traffic() {
        let b = ConcurrencyBudget::default();
        b.request_started();
        assert_eq!(b.allowed(), 3);
        assert!(b.try_retry() && b.try_retry() && b.try_retry());
        assert!(!b.try_retry());
        b.retry_ended();
        assert!(b.try_retry());
    }

    #[test]
    fn bad_parameters_are_errors_not_panics() {
        assert!(ConcurrencyBudget::new(101.0, 3).is_err());
        assert!(ConcurrencyBudget::new(f64::NAN, 3).is_err());
        assert!(ConcurrencyBudget::new(-1.0, 3).is_err());
        assert!(tps_budget(Duration::from_millis(10), 10, 0.2).is_err());
        assert!(tps_budget(Duration::from_secs(61), 10, 0.2).is_err());
        assert!(tps_budget(Duration::from_secs(10), 10, f32::NAN).is_err());
        assert!(tps_budget(Duration::from_secs(10), u32::MAX, 0.2).is_err());
        assert!(tps_budget(Duration::from_secs(10), 10, 0.2).is_ok());
    }

    #[test]
    fn tps_budget_is_a_ratio_of_requests() {
        // No minimum: only deposits pay for retries; 0.5 → one retry per two requests.
        let b = tps_budget(Duration::from_secs(10), 0, 0.5).unwrap();
        assert!(!RetryBudget::try_retry(&b));
        for _ in 0..10 {
            RetryBudget::request_started(&b);
        }
        let granted = (0..20).filter(|_| RetryBudget::try_retry(&b)).count();
        assert_eq!(granted, 5);
    }

    proptest! {
        /// Whatever the interleaving of starts, ends and retries, retries in
        /// flight never exceed what the budget allowed when each was granted,
        /// and are never above max(min, percent × peak active).
        #[test]
        fn retries_in_flight_stay_within_the_budget(
            percent in 0.0f64..=100.0,
            min in 0u32..5,
            ops in prop::collection::vec(0u8..4, 0..200),
        ) {
            let b = ConcurrencyBudget::new(percent, min).unwrap();
            let (mut active, mut retries) = (0usize, 0usize);
            for op in ops {
                match op {
                    0 => { b.request_started(); active += 1; }
                    1 if active > 0 => { b.request_ended(); active -= 1; }
                    2 => {
                        let allowed = ((percent / 100.0 * active as f64) as usize).max(min as usize);
                        let granted = b.try_retry();
                        prop_assert_eq!(granted, retries < allowed);
                        if granted {
                            retries += 1;
                            prop_assert!(retries <= allowed);
                        }
                    }
                    3 if retries > 0 => { b.retry_ended(); retries -= 1; }
                    _ => {}
                }
                prop_assert_eq!(b.retries_in_flight(), retries);
                prop_assert_eq!(b.active_requests(), active);
            }
        }
    }
}
