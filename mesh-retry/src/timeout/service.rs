//! [`Timeout`], the service.

use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use mesh_core::BoxError;
use mesh_core::context::{AttemptDeadline, RequestContext};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::future::ResponseFuture;
use super::layer::{Settings, TimeoutLayer};
use crate::deadline;

/// Fails a request that has not answered by its deadline with
/// [`MeshError::RequestTimeout`](mesh_core::MeshError::RequestTimeout). See
/// the [module docs](crate::timeout).
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    settings: Settings,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with `timeout`, as [`TimeoutLayer::new`] does.
    pub fn new(inner: S, timeout: Duration) -> Self {
        TimeoutLayer::new(timeout).layer(inner)
    }

    pub(super) fn with_settings(inner: S, settings: Settings) -> Self {
        Timeout { inner, settings }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let settings = &self.settings;
        let timeout = deadline::effective(
            settings.timeout,
            settings.deadline_header.as_ref(),
            req.headers(),
        );
        let Some(timeout) = timeout else {
            return ResponseFuture::new(self.inner.call(req), None);
        };
        // The clock is read here, where the timeout starts; the deadline is
        // computed only for whoever needs it (the context, or a timer).
        let start = Instant::now();
        if settings.attempt_deadline
            && let Some(at) = start.checked_add(timeout)
        {
            // An outer layer's earlier deadline stands.
            let ctx = RequestContext::get_mut(req.extensions_mut());
            if ctx.deadline.is_none_or(|d| at < d.0) {
                ctx.deadline = Some(AttemptDeadline(at));
            }
        }
        ResponseFuture::new(self.inner.call(req), Some((start, timeout)))
    }
}
