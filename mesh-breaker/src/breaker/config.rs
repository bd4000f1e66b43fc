//! Breaker settings.

use std::time::Duration;

/// Settings of a classic circuit breaker.
///
/// The window counts the last [`window`](Self::window) outcomes (a count-based
/// sliding window, no clock read per request). The breaker opens when at least
/// [`min_requests`](Self::min_requests) are in the window and the failure
/// ratio reaches [`failure_ratio`](Self::failure_ratio); it stays open for
/// [`open_for`](Self::open_for), then lets [`half_open_probes`](Self::half_open_probes)
/// requests through: all succeed → closed, one fails → open again.
///
/// ```
/// use mesh_breaker::breaker::CircuitBreakerConfig;
/// let c = CircuitBreakerConfig::default();
/// assert_eq!((c.window, c.min_requests, c.half_open_probes), (100, 20, 1));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CircuitBreakerConfig {
    /// Failure ratio (0.0–1.0) that opens the breaker (0.5).
    pub failure_ratio: f64,
    /// Outcomes in the sliding window (100; at least 1).
    pub window: u32,
    /// Outcomes needed in the window before it can open (20).
    pub min_requests: u32,
    /// How long it stays open (30 s).
    pub open_for: Duration,
    /// Probes let through when half-open (1; at least 1).
    pub half_open_probes: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            failure_ratio: 0.5,
            window: 100,
            min_requests: 20,
            open_for: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

impl CircuitBreakerConfig {
    pub(crate) fn normalized(mut self) -> Self {
        self.window = self.window.max(1);
        self.half_open_probes = self.half_open_probes.max(1);
        self.min_requests = self.min_requests.max(1);
        if !self.failure_ratio.is_finite() {
            self.failure_ratio = 1.0;
        }
        self.failure_ratio = self.failure_ratio.clamp(0.0, 1.0);
        self
    }
}
