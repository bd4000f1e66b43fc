//! Outlier-detection settings: Istio's `outlierDetection` plus the Envoy knobs
//! Istio does not expose.

use std::time::Duration;

/// Outlier-detection settings of one cluster (Istio `outlierDetection`, Envoy
/// `outlier_detection`).
///
/// [`Default`] is what Istio programs once `outlierDetection` is set:
/// 5 consecutive 5xx, gateway errors off, interval 10 s, base ejection 30 s,
/// maximum ejection 300 s, at most 10 % ejected, panic threshold 0 (so "all
/// ejected" means 503 `UH`), success-rate and failure-percentage ejection off.
/// [`OutlierDetection::envoy`] gives Envoy's own defaults (panic threshold
/// 50 %, success-rate ejection on).
///
/// A count of 0 disables that detector, as in Istio. Durations below 1 ms are
/// raised to 1 ms (Istio's minimum), percentages above 100 are read as 100.
///
/// ```
/// use std::time::Duration;
/// use mesh_breaker::outlier::OutlierDetection;
///
/// let od = OutlierDetection {
///     consecutive_5xx: 3,
///     max_ejection_percent: 50,
///     ..OutlierDetection::default()
/// };
/// assert_eq!(od.interval, Duration::from_secs(10));
/// assert_eq!(od.min_health_percent, 0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierDetection {
    /// `consecutive5xxErrors`: eject after this many 5xx in a row (gateway
    /// errors included, and local-origin failures unless split). 0 disables.
    pub consecutive_5xx: u32,
    /// `consecutiveGatewayErrors`: eject after this many 502/503/504 in a row.
    /// 0 (the default) disables.
    pub consecutive_gateway_errors: u32,
    /// `splitExternalLocalOriginErrors`: count connect failures, resets and
    /// timeouts apart from HTTP errors, in
    /// [`consecutive_local_origin_failures`](Self::consecutive_local_origin_failures).
    pub split_external_local_origin_errors: bool,
    /// `consecutiveLocalOriginFailures` (only read when split). 0 disables.
    pub consecutive_local_origin_failures: u32,
    /// `interval`: the time between sweeps (un-ejection, multiplier decay,
    /// success-rate and failure-percentage ejection).
    pub interval: Duration,
    /// `baseEjectionTime`: an ejection lasts this times the number of times the
    /// endpoint has been ejected.
    pub base_ejection_time: Duration,
    /// Envoy's `max_ejection_time` (not exposed by Istio; 300 s). Read as at
    /// least `base_ejection_time`.
    pub max_ejection_time: Duration,
    /// `maxEjectionPercent`: an ejection happens only if
    /// `(ejected + 1) / hosts ≤ max_ejection_percent` (Envoy's current rule).
    pub max_ejection_percent: u32,
    /// Envoy's `always_eject_one_host`: allow one ejection even past
    /// `max_ejection_percent` when none is active.
    pub always_eject_one_host: bool,
    /// `minHealthPercent`, Envoy's panic threshold: when fewer than this
    /// percent of endpoints are healthy, balance over all of them, ejected
    /// included. 0 disables panic mode: all ejected means 503 `UH`.
    pub min_health_percent: u32,
    /// Envoy's success-rate ejection; `None` (Istio's setting) disables it.
    pub success_rate: Option<SuccessRate>,
    /// Envoy's failure-percentage ejection; `None` disables it.
    pub failure_percentage: Option<FailurePercentage>,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 0,
            split_external_local_origin_errors: false,
            consecutive_local_origin_failures: 5,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            always_eject_one_host: false,
            min_health_percent: 0,
            success_rate: None,
            failure_percentage: None,
        }
    }
}

impl OutlierDetection {
    /// Istio's settings once `outlierDetection` is present (the default).
    pub fn istio() -> Self {
        Self::default()
    }

    /// Envoy's own defaults: panic threshold 50 %, success-rate ejection on.
    pub fn envoy() -> Self {
        OutlierDetection {
            min_health_percent: 50,
            success_rate: Some(SuccessRate::default()),
            ..Self::default()
        }
    }

    /// The settings with their bounds applied.
    pub(crate) fn normalized(mut self) -> Self {
        const MIN: Duration = Duration::from_millis(1);
        self.interval = self.interval.max(MIN);
        self.base_ejection_time = self.base_ejection_time.max(MIN);
        self.max_ejection_time = self.max_ejection_time.max(self.base_ejection_time);
        self.max_ejection_percent = self.max_ejection_percent.min(100);
        self.min_health_percent = self.min_health_percent.min(100);
        if let Some(sr) = &mut self.success_rate {
            sr.minimum_hosts = sr.minimum_hosts.max(1);
            sr.request_volume = sr.request_volume.max(1);
        }
        if let Some(fp) = &mut self.failure_percentage {
            fp.minimum_hosts = fp.minimum_hosts.max(1);
            fp.request_volume = fp.request_volume.max(1);
            fp.threshold = fp.threshold.min(100);
        }
        self
    }
}

/// Envoy's success-rate ejection: at each sweep, among endpoints with at least
/// `request_volume` requests in the interval, when there are at least
/// `minimum_hosts` of them, eject those whose success rate is below
/// `mean − stdev_factor / 1000 × stdev`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuccessRate {
    /// `success_rate_minimum_hosts` (5).
    pub minimum_hosts: u32,
    /// `success_rate_request_volume` (100).
    pub request_volume: u32,
    /// `success_rate_stdev_factor`, in thousandths (1900 = 1.9).
    pub stdev_factor: u32,
}

impl Default for SuccessRate {
    fn default() -> Self {
        SuccessRate {
            minimum_hosts: 5,
            request_volume: 100,
            stdev_factor: 1900,
        }
    }
}

/// Envoy's failure-percentage ejection: at each sweep, among endpoints with at
/// least `request_volume` requests in the interval, when there are at least
/// `minimum_hosts` of them, eject those whose failure percentage is at least
/// `threshold`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailurePercentage {
    /// `failure_percentage_threshold` (85).
    pub threshold: u32,
    /// `failure_percentage_minimum_hosts` (5).
    pub minimum_hosts: u32,
    /// `failure_percentage_request_volume` (50).
    pub request_volume: u32,
}

impl Default for FailurePercentage {
    fn default() -> Self {
        FailurePercentage {
            threshold: 85,
            minimum_hosts: 5,
            request_volume: 50,
        }
    }
}
