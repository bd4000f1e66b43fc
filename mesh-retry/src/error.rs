//! Configuration errors.

use std::fmt;
use std::time::Duration;

/// A retry configuration that cannot be used, naming the offending value.
///
/// Istio rejects the same inputs at validation time; the proxy reports these
/// with the file and field they came from.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A `retryOn` token that neither Envoy nor Istio knows.
    UnknownRetryOn(String),
    /// A `retryOn` token Istio accepts but this layer does not implement
    /// (`retriable-headers`, `http3-post-connect-failure`).
    UnsupportedRetryOn(String),
    /// An integer in `retryOn` that is not an HTTP status (100–599).
    InvalidStatusCode(String),
    /// `attempts` below zero.
    NegativeAttempts(i64),
    /// `attempts: 0` together with another retry field (Istio rejects it).
    ZeroAttemptsWithOtherFields,
    /// `perTryTimeout` below Istio's minimum of 1 ms.
    PerTryTimeoutTooShort(Duration),
    /// A backoff whose base is zero or whose maximum is below the base.
    InvalidBackoff {
        /// The base interval given.
        base: Duration,
        /// The maximum interval given.
        max: Duration,
    },
    /// A retry budget parameter out of its range.
    InvalidBudget(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownRetryOn(v) => write!(f, "unknown retryOn value {v:?}"),
            ConfigError::UnsupportedRetryOn(v) => {
                write!(f, "retryOn value {v:?} is not supported by this proxy")
            }
            ConfigError::InvalidStatusCode(v) => {
                write!(
                    f,
                    "retryOn value {v:?} is not an HTTP status code (100-599)"
                )
            }
            ConfigError::NegativeAttempts(n) => write!(f, "retries.attempts must be >= 0, got {n}"),
            ConfigError::ZeroAttemptsWithOtherFields => f.write_str(
                "retries.attempts is 0 (retries disabled) but other retry fields are set",
            ),
            ConfigError::PerTryTimeoutTooShort(d) => {
                write!(f, "retries.perTryTimeout must be >= 1ms, got {d:?}")
            }
            ConfigError::InvalidBackoff { base, max } => write!(
                f,
                "retry backoff needs a base > 0 and a max >= base, got base {base:?}, max {max:?}"
            ),
            ConfigError::InvalidBudget(why) => write!(f, "invalid retry budget: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}
