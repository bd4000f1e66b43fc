//! The retry policy of a route: Istio's `retries` and `timeout`.

use std::time::Duration;

use http::HeaderName;
use mesh_core::body::DEFAULT_REPLAY_CAP;

use crate::backoff::Backoff;
use crate::deadline::GRPC_TIMEOUT;
use crate::error::ConfigError;
use crate::retry_on::RetryOn;

/// What the retry layer does for each request: how many retries, on what,
/// with which timeouts, backoff and hedging.
///
/// Plain data, built once per route; start from a constructor and set fields
/// with struct update syntax. [`RetryPolicy::from_istio`] maps an Istio
/// `HTTPRoute`'s `retries` and `timeout`. A zero duration disables a timeout,
/// as Istio's `0s` does.
///
/// ```
/// use std::time::Duration;
/// use mesh_retry::RetryPolicy;
///
/// let policy = RetryPolicy {
///     per_try_timeout: Some(Duration::from_millis(500)),
///     timeout: Some(Duration::from_secs(2)),
///     ..RetryPolicy::new(3, "5xx,reset".parse().unwrap())
/// };
/// assert!(policy.retries_enabled());
/// assert_eq!(RetryPolicy::istio_default().attempts, 2);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries (Istio's `attempts`: total tries = 1 + attempts). 0 disables
    /// retries; timeouts still apply.
    pub attempts: u32,
    /// What is retried (Istio's `retryOn`).
    pub retry_on: RetryOn,
    /// Istio's `perTryTimeout`: each attempt, the first included, must produce
    /// response headers within it ([`MeshError::PerTryTimeout`], 504 `UT`).
    /// It is retried only under `5xx`, `gateway-error` or `reset`.
    ///
    /// [`MeshError::PerTryTimeout`]: mesh_core::MeshError::PerTryTimeout
    pub per_try_timeout: Option<Duration>,
    /// Istio's route `timeout`: bounds all attempts and backoffs together
    /// ([`MeshError::RequestTimeout`], 504 `UT`, never retried).
    ///
    /// [`MeshError::RequestTimeout`]: mesh_core::MeshError::RequestTimeout
    pub timeout: Option<Duration>,
    /// The wait before each retry.
    pub backoff: Backoff,
    /// Hedging (Envoy's `hedge_on_per_try_timeout`, beyond Istio): when an
    /// attempt has not answered within this delay, start another beside it.
    /// The hedge is a retry (it needs an attempt left and the budget's
    /// consent); the first acceptable answer wins and the other is cancelled.
    pub hedge_delay: Option<Duration>,
    /// A request body larger than this is sent once and never retried.
    pub replay_cap: usize,
    /// The request header carrying the caller's deadline (`grpc-timeout` by
    /// default; `None` ignores callers). It shortens [`timeout`](Self::timeout),
    /// never lengthens it; with no route timeout it is the timeout, as Istio
    /// honours `grpc-timeout` uncapped. Read by [`deadline::parse_timeout`].
    ///
    /// [`deadline::parse_timeout`]: crate::deadline::parse_timeout
    pub deadline_header: Option<HeaderName>,
    /// Whether to send `x-envoy-attempt-count` upstream (Istio turns it on
    /// for every virtual host).
    pub attempt_count_header: bool,
    /// Whether each attempt's deadline (the earlier of its per-try and the
    /// overall timeout) goes into the request's
    /// [`RequestContext`](mesh_core::context::RequestContext), so that
    /// outlier detection below counts an attempt dropped at its deadline as
    /// a timeout of its endpoint, as Envoy does. On by default; without an
    /// outlier detector below, turning it off spares the request context
    /// (three allocations) on a request whose only need for one it was.
    pub attempt_deadline: bool,
    /// Whether an attempt with a per-try timeout carries an
    /// [`EndpointSlot`](mesh_core::context::EndpointSlot) in its request
    /// context, in which the balancer below writes the endpoint it chose: when
    /// the per-try timeout drops the attempt (so no response names the
    /// endpoint), the retry then avoids that endpoint, as Envoy's
    /// previous-hosts predicate (which Istio sets) does. On by default;
    /// without a balancer below that writes it, turning it off spares each
    /// first attempt the slot, and the request context too when
    /// [`attempt_deadline`](Self::attempt_deadline) is off as well.
    pub attempt_endpoint: bool,
}

impl RetryPolicy {
    /// `attempts` retries on `retry_on`; no timeouts, Envoy's backoff, no
    /// hedging, a 64 KiB replay cap, `grpc-timeout` honoured,
    /// `x-envoy-attempt-count` sent.
    pub fn new(attempts: u32, retry_on: RetryOn) -> Self {
        RetryPolicy {
            attempts,
            retry_on,
            per_try_timeout: None,
            timeout: None,
            backoff: Backoff::DEFAULT,
            hedge_delay: None,
            replay_cap: DEFAULT_REPLAY_CAP,
            deadline_header: Some(GRPC_TIMEOUT),
            attempt_count_header: true,
            attempt_deadline: true,
            attempt_endpoint: true,
        }
    }

    /// What Istio programs for a route without `retries`: 2 retries on
    /// `connect-failure,refused-stream,unavailable,cancelled,
    /// retriable-status-codes`.
    pub fn istio_default() -> Self {
        Self::new(2, RetryOn::istio_default())
    }

    /// No retries (Istio's `attempts: 0`).
    pub fn disabled() -> Self {
        Self::new(0, RetryOn::none())
    }

    /// Maps an Istio route: its `retries` block (`None`: Istio's default
    /// policy) and its `timeout` (`None` or zero: disabled, as Istio writes
    /// `0s`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_retry::{IstioRetries, RetryPolicy};
    ///
    /// let retries = IstioRetries {
    ///     attempts: Some(3),
    ///     retry_on: Some("gateway-error,connect-failure,503".into()),
    ///     per_try_timeout: Some(Duration::from_secs(2)),
    ///     ..Default::default()
    /// };
    /// let policy = RetryPolicy::from_istio(Some(&retries), Some(Duration::from_secs(10))).unwrap();
    /// assert_eq!(policy.attempts, 3);
    /// assert_eq!(policy.timeout, Some(Duration::from_secs(10)));
    ///
    /// let bad = IstioRetries { retry_on: Some("5xx,teapot".into()), ..Default::default() };
    /// assert!(RetryPolicy::from_istio(Some(&bad), None).is_err());
    /// ```
    pub fn from_istio(
        retries: Option<&IstioRetries>,
        timeout: Option<Duration>,
    ) -> Result<Self, ConfigError> {
        let policy = match retries {
            None => Self::istio_default(),
            Some(r) => r.to_policy()?,
        };
        Ok(RetryPolicy {
            timeout: nonzero(timeout),
            ..policy
        })
    }

    /// Whether the policy can ever make a second attempt.
    pub fn retries_enabled(&self) -> bool {
        self.attempts > 0 && !self.retry_on.is_empty()
    }
}

pub(crate) fn nonzero(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

impl Default for RetryPolicy {
    /// Istio's default policy.
    fn default() -> Self {
        Self::istio_default()
    }
}

/// Istio's `HTTPRetry`, as read from YAML (by `mesh-proxy`); convert with
/// [`RetryPolicy::from_istio`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IstioRetries {
    /// `attempts`: retries, not tries. Absent: Istio's default of 2.
    pub attempts: Option<i64>,
    /// `perTryTimeout` (≥ 1 ms).
    pub per_try_timeout: Option<Duration>,
    /// `retryOn`: Istio's comma list. Absent or empty: Istio's default list.
    pub retry_on: Option<String>,
    /// `backoff` (Istio 1.26+): the base interval; the max is ten times it.
    pub backoff: Option<Duration>,
}

impl IstioRetries {
    /// Validates as Istio does and builds the policy.
    pub fn to_policy(&self) -> Result<RetryPolicy, ConfigError> {
        let attempts = match self.attempts {
            None => 2,
            Some(n) if n < 0 => return Err(ConfigError::NegativeAttempts(n)),
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
        };
        if attempts == 0
            && (self.per_try_timeout.is_some() || self.retry_on.is_some() || self.backoff.is_some())
        {
            return Err(ConfigError::ZeroAttemptsWithOtherFields);
        }
        if let Some(d) = self.per_try_timeout
            && d < Duration::from_millis(1)
        {
            return Err(ConfigError::PerTryTimeoutTooShort(d));
        }
        let retry_on: RetryOn = match &self.retry_on {
            Some(s) => s.parse()?,
            None => RetryOn::istio_default(),
        };
        let backoff = match self.backoff {
            Some(base) => Backoff::new(base)?,
            None => Backoff::DEFAULT,
        };
        Ok(RetryPolicy {
            per_try_timeout: self.per_try_timeout,
            backoff,
            ..RetryPolicy::new(attempts, retry_on)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry_on::RetryCondition;

    #[test]
    fn istio_validation() {
        let neg = IstioRetries {
            attempts: Some(-1),
            ..Default::default()
        };
        assert_eq!(neg.to_policy(), Err(ConfigError::NegativeAttempts(-1)));
        let zero_with = IstioRetries {
            attempts: Some(0),
            retry_on: Some("5xx".into()),
            ..Default::default()
        };
        assert_eq!(
            zero_with.to_policy(),
            Err(ConfigError::ZeroAttemptsWithOtherFields)
        );
        let zero = IstioRetries {
            attempts: Some(0),
            ..Default::default()
        };
        assert!(!zero.to_policy().unwrap().retries_enabled());
        let short = IstioRetries {
            per_try_timeout: Some(Duration::from_micros(10)),
            ..Default::default()
        };
        assert!(matches!(
            short.to_policy(),
            Err(ConfigError::PerTryTimeoutTooShort(_))
        ));
    }

    #[test]
    fn istio_fields_map_onto_the_policy() {
        let r = IstioRetries {
            attempts: None,
            per_try_timeout: Some(Duration::from_millis(300)),
            retry_on: Some("5xx,409".into()),
            backoff: Some(Duration::from_millis(50)),
        };
        let p = RetryPolicy::from_istio(Some(&r), Some(Duration::ZERO)).unwrap();
        assert_eq!(p.attempts, 2, "Istio's default attempts");
        assert_eq!(p.timeout, None, "0s disables the route timeout");
        assert_eq!(p.per_try_timeout, Some(Duration::from_millis(300)));
        assert!(p.retry_on.contains(RetryCondition::FiveXx));
        assert_eq!(p.backoff.max(), Duration::from_millis(500));
        let d = RetryPolicy::from_istio(None, None).unwrap();
        assert_eq!(d, RetryPolicy::istio_default());
    }
}
