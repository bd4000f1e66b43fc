//! Which algorithm a balancer runs, with Istio's names and Envoy's defaults.

use std::fmt;
use std::time::Duration;

use crate::hash_key::HashKey;

/// A load-balancing algorithm: Istio's `loadBalancer.simple` and
/// `consistentHash`.
///
/// ```
/// use mesh_lb::{HashKey, LoadBalancer};
///
/// let lb = LoadBalancer::least_request();
/// assert_eq!(lb.name(), "LEAST_REQUEST");
/// let sticky = LoadBalancer::ring_hash(HashKey::header("x-user").unwrap());
/// assert_eq!(sticky.name(), "RING_HASH");
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LoadBalancer {
    /// `ROUND_ROBIN`: strict rotation for equal weights; weighted endpoints are
    /// interleaved by an earliest-deadline-first schedule, as Envoy does.
    RoundRobin,
    /// `RANDOM`: a (weighted) random endpoint.
    Random,
    /// `LEAST_REQUEST` (Istio's default): the fewest requests in flight among
    /// `choice_count` random endpoints; Envoy's dynamic-weight schedule when
    /// weights differ.
    LeastRequest(LeastRequest),
    /// Latency-aware least load (peak EWMA of round-trip time × requests in
    /// flight, with two random choices), as tower and Linkerd do.
    PeakEwma(PeakEwma),
    /// `consistentHash.ringHash`: Envoy's ketama ring.
    RingHash(RingHash),
    /// `consistentHash.maglev`: a Maglev lookup table.
    Maglev(Maglev),
}

impl LoadBalancer {
    /// `LEAST_REQUEST` with Envoy's defaults.
    pub fn least_request() -> Self {
        LoadBalancer::LeastRequest(LeastRequest::default())
    }

    /// Peak EWMA with Linkerd's defaults.
    pub fn peak_ewma() -> Self {
        LoadBalancer::PeakEwma(PeakEwma::default())
    }

    /// A ring hash over `key` with the default minimum ring size (1024).
    pub fn ring_hash(key: HashKey) -> Self {
        LoadBalancer::RingHash(RingHash::new(key))
    }

    /// Maglev over `key` with the default table size (65537).
    pub fn maglev(key: HashKey) -> Self {
        LoadBalancer::Maglev(Maglev::new(key))
    }

    /// The Istio/Envoy name of the algorithm.
    pub fn name(&self) -> &'static str {
        match self {
            LoadBalancer::RoundRobin => "ROUND_ROBIN",
            LoadBalancer::Random => "RANDOM",
            LoadBalancer::LeastRequest(_) => "LEAST_REQUEST",
            LoadBalancer::PeakEwma(_) => "PEAK_EWMA",
            LoadBalancer::RingHash(_) => "RING_HASH",
            LoadBalancer::Maglev(_) => "MAGLEV",
        }
    }

    /// The hash key, for the consistent-hash algorithms.
    pub fn hash_key(&self) -> Option<&HashKey> {
        match self {
            LoadBalancer::RingHash(r) => Some(&r.key),
            LoadBalancer::Maglev(m) => Some(&m.key),
            _ => None,
        }
    }

    /// Checks the numbers: a choice count of at least 2, a non-negative bias,
    /// ring sizes within Envoy's bounds, a prime Maglev table no larger than
    /// 5,000,011.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            LoadBalancer::LeastRequest(lr) => {
                if lr.choice_count < 2 {
                    return Err(ConfigError(
                        "leastRequest choice_count must be at least 2".into(),
                    ));
                }
                if !(lr.active_request_bias >= 0.0 && lr.active_request_bias.is_finite()) {
                    return Err(ConfigError(
                        "active_request_bias must be a finite number >= 0".into(),
                    ));
                }
            }
            LoadBalancer::RingHash(r) => {
                if r.minimum_ring_size == 0 || r.minimum_ring_size > MAX_RING_SIZE {
                    return Err(ConfigError(format!(
                        "minimumRingSize must be between 1 and {MAX_RING_SIZE}, got {}",
                        r.minimum_ring_size
                    )));
                }
                if r.maximum_ring_size < r.minimum_ring_size || r.maximum_ring_size > MAX_RING_SIZE
                {
                    return Err(ConfigError(format!(
                        "maximum ring size must be between minimumRingSize and {MAX_RING_SIZE}, got {}",
                        r.maximum_ring_size
                    )));
                }
            }
            LoadBalancer::Maglev(m) => {
                if m.table_size > MAX_MAGLEV_TABLE || !is_prime(m.table_size) {
                    return Err(ConfigError(format!(
                        "maglev tableSize must be a prime no larger than {MAX_MAGLEV_TABLE}, got {}",
                        m.table_size
                    )));
                }
            }
            LoadBalancer::RoundRobin | LoadBalancer::Random | LoadBalancer::PeakEwma(_) => {}
        }
        Ok(())
    }
}

impl Default for LoadBalancer {
    /// Istio's default: `LEAST_REQUEST`.
    fn default() -> Self {
        LoadBalancer::least_request()
    }
}

/// Envoy's largest ring: 8M entries.
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Envoy's largest Maglev table.
pub const MAX_MAGLEV_TABLE: u64 = 5_000_011;

/// Settings of `LEAST_REQUEST`.
#[derive(Clone, Debug, PartialEq)]
pub struct LeastRequest {
    /// How many random endpoints to compare (Envoy default 2: "power of two
    /// choices").
    pub choice_count: usize,
    /// With unequal weights, an endpoint's weight is divided by
    /// `(active + 1) ^ active_request_bias` (default 1.0; 0 ignores load).
    pub active_request_bias: f64,
}

impl Default for LeastRequest {
    fn default() -> Self {
        LeastRequest {
            choice_count: 2,
            active_request_bias: 1.0,
        }
    }
}

/// Settings of the peak-EWMA balancer.
#[derive(Clone, Debug, PartialEq)]
pub struct PeakEwma {
    /// The round-trip time assumed for an endpoint before any sample (Linkerd
    /// floors it at 1 ms so that new endpoints do not look free).
    pub default_rtt: Duration,
    /// How fast old samples lose weight (Linkerd's default 10 s).
    pub decay: Duration,
}

impl Default for PeakEwma {
    fn default() -> Self {
        PeakEwma {
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
        }
    }
}

/// Settings of the ring hash.
#[derive(Clone, Debug, PartialEq)]
pub struct RingHash {
    /// What to hash.
    pub key: HashKey,
    /// `minimumRingSize` (default 1024).
    pub minimum_ring_size: u64,
    /// Envoy's `maximum_ring_size` (default 8M).
    pub maximum_ring_size: u64,
}

impl RingHash {
    /// A ring over `key` with Envoy's default sizes.
    pub fn new(key: HashKey) -> Self {
        RingHash {
            key,
            minimum_ring_size: 1024,
            maximum_ring_size: MAX_RING_SIZE,
        }
    }
}

/// Settings of Maglev.
#[derive(Clone, Debug, PartialEq)]
pub struct Maglev {
    /// What to hash.
    pub key: HashKey,
    /// `tableSize`: a prime (default 65537).
    pub table_size: u64,
}

impl Maglev {
    /// A table over `key` with the default size.
    pub fn new(key: HashKey) -> Self {
        Maglev {
            key,
            table_size: 65537,
        }
    }
}

/// A balancer configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub(crate) String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_bounds_are_checked() {
        assert!(LoadBalancer::least_request().validate().is_ok());
        let mut m = Maglev::new(HashKey::SourceIp);
        assert!(LoadBalancer::Maglev(m.clone()).validate().is_ok());
        m.table_size = 65536;
        assert!(LoadBalancer::Maglev(m.clone()).validate().is_err());
        m.table_size = 5_000_011;
        assert!(LoadBalancer::Maglev(m).validate().is_ok());
        let mut r = RingHash::new(HashKey::SourceIp);
        r.minimum_ring_size = 0;
        assert!(LoadBalancer::RingHash(r).validate().is_err());
        let lr = LeastRequest {
            choice_count: 1,
            ..Default::default()
        };
        assert!(LoadBalancer::LeastRequest(lr).validate().is_err());
        assert_eq!(LoadBalancer::default().name(), "LEAST_REQUEST");
    }
}
