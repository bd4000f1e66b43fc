//! The breaker service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use mesh_core::BoxError;
use mesh_core::classify::{Classify, HttpClassifier};
use tower::Service;

use super::future::ResponseFuture;
use super::state::{Admission, BreakerState, Shared};
use crate::body::ReportBody;

/// A service behind a classic circuit breaker. Closed: calls pass and their
/// outcomes fill the window. Open: ready at once, and the call fails with
/// [`MeshError::Overloaded`](mesh_core::MeshError::Overloaded)`(CircuitOpen)`
/// (503 `UO`) without reaching the inner service. Half-open: a limited number
/// of probes pass.
///
/// Clones share the breaker; each holds its own admission.
pub struct CircuitBreaker<S, C = HttpClassifier> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
    admission: Option<Admission>,
}

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, classifier: C) -> Self {
        CircuitBreaker {
            inner,
            shared,
            classifier,
            admission: None,
        }
    }

    /// The breaker's state now.
    pub fn state(&self) -> BreakerState {
        self.shared.state()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        CircuitBreaker::new(
            self.inner.clone(),
            self.shared.clone(),
            self.classifier.clone(),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("state", &self.shared.state())
            .finish()
    }
}

impl<S, C, ReqB, ResB> Service<Request<ReqB>> for CircuitBreaker<S, C>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    C: Classify,
{
    type Response = Response<ReportBody<ResB, C::Eos>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let admission = self.admission.get_or_insert_with(|| self.shared.admit());
        if matches!(admission, Admission::Reject) {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                self.admission = None;
                Poll::Ready(Err(e.into()))
            }
            other => other.map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // The common case first, with nothing opaque before the inner call.
        if let Some(Admission::Pass { word }) = self.admission {
            self.admission = None;
            let future = self.inner.call(req);
            let recorder = self.shared.pass(word);
            return ResponseFuture::new(future, recorder, self.classifier.clone());
        }
        // A probe, a refusal, or a call without poll_ready (a contract
        // breach: decide now).
        let admission = self.admission.take().unwrap_or_else(|| self.shared.admit());
        match self.shared.recorder(admission) {
            None => {
                tracing::debug!("circuit breaker: open, refusing (503 UO)");
                ResponseFuture::rejected()
            }
            Some(recorder) => {
                ResponseFuture::new(self.inner.call(req), recorder, self.classifier.clone())
            }
        }
    }
}
