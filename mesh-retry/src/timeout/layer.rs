//! [`TimeoutLayer`], and the settings it shares with its services.

use std::time::Duration;

use http::HeaderName;
use tower::Layer;

use super::service::Timeout;
use crate::deadline::GRPC_TIMEOUT;
use crate::policy::nonzero;

/// What a [`Timeout`] applies to each request.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Settings {
    /// The route's timeout; `None` leaves only the caller's.
    pub(super) timeout: Option<Duration>,
    /// The header carrying the caller's deadline.
    pub(super) deadline_header: Option<HeaderName>,
    /// Whether the deadline goes into the request context.
    pub(super) attempt_deadline: bool,
}

/// Applies [`Timeout`] to services: Istio's route `timeout` for a stack
/// without retries. See the [module docs](crate::timeout).
#[derive(Clone, Debug, PartialEq)]
pub struct TimeoutLayer {
    settings: Settings,
}

impl TimeoutLayer {
    /// Times requests out after `timeout` (zero: no timeout of its own, as
    /// Istio's `0s`), shortened by a caller's `grpc-timeout`, with the
    /// deadline in the request context.
    pub fn new(timeout: Duration) -> Self {
        TimeoutLayer {
            settings: Settings {
                timeout: nonzero(Some(timeout)),
                deadline_header: Some(GRPC_TIMEOUT),
                attempt_deadline: true,
            },
        }
    }

    /// Reads the caller's deadline from `header` instead (`None` ignores
    /// callers), in the forms [`parse_timeout`](crate::deadline::parse_timeout)
    /// reads.
    #[must_use]
    pub fn deadline_header(mut self, header: Option<HeaderName>) -> Self {
        self.settings.deadline_header = header;
        self
    }

    /// Whether the request's deadline goes into its
    /// [`RequestContext`](mesh_core::context::RequestContext) for the layers
    /// below (on by default). Without an outlier detector below, turning it
    /// off spares each timed request http's extensions map.
    #[must_use]
    pub fn attempt_deadline(mut self, on: bool) -> Self {
        self.settings.attempt_deadline = on;
        self
    }

    /// The route's timeout, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.settings.timeout
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::with_settings(inner, self.settings.clone())
    }
}
