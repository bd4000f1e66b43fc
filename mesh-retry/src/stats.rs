//! Counters of what the retry layer did, Envoy's `upstream_rq_retry*` stats.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the clones of one retry layer. Only failure paths touch
/// them; the success path counts nothing.
#[derive(Clone, Default)]
pub struct RetryStats {
    inner: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    retries: AtomicU64,
    hedges: AtomicU64,
    limit_exceeded: AtomicU64,
    overflow: AtomicU64,
    abandoned: AtomicU64,
    per_try_timeouts: AtomicU64,
    request_timeouts: AtomicU64,
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident => $inc:ident,)*) => {
        impl RetryStats {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> u64 {
                    self.inner.$name.load(Ordering::Relaxed)
                }

                pub(crate) fn $inc(&self) {
                    self.inner.$name.fetch_add(1, Ordering::Relaxed);
                }
            )*
        }

        impl fmt::Debug for RetryStats {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("RetryStats")
                    $(.field(stringify!($name), &self.$name()))*
                    .finish()
            }
        }
    };
}

counters! {
    /// Retries made (`upstream_rq_retry`), hedges included.
    retries => inc_retries,
    /// Hedged attempts started beside a running one.
    hedges => inc_hedges,
    /// Retryable failures returned because no attempt was left
    /// (`upstream_rq_retry_limit_exceeded`, flag `URX`).
    limit_exceeded => inc_limit_exceeded,
    /// Retries refused by the budget or the retry limit
    /// (`upstream_rq_retry_overflow`).
    overflow => inc_overflow,
    /// Retries abandoned because the request body passed the replay cap
    /// (`retry_or_shadow_abandoned`).
    abandoned => inc_abandoned,
    /// Attempts that hit the per-try timeout.
    per_try_timeouts => inc_per_try_timeouts,
    /// Requests that hit the overall timeout (`upstream_rq_timeout`).
    request_timeouts => inc_request_timeouts,
}
