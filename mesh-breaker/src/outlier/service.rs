//! The endpoint gate and the cluster guard.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use http::{Request, Response};
use mesh_core::BoxError;
use mesh_core::classify::{Classify, HttpClassifier};
use mesh_core::context::RequestContext;
use tower::Service;

use super::detector::{OutlierDetector, Registration, Shared};
use super::future::{ClusterFuture, ResponseFuture};
use super::layer::{ClusterHealthLayer, OutlierGateLayer};
use crate::body::ReportBody;

/// One endpoint's service behind its outlier gate: not ready while the
/// endpoint is ejected (unless the cluster is in panic mode), and every
/// response's outcome is accounted to the endpoint.
///
/// Made by [`OutlierDetector::gate`] or [`OutlierGateLayer`]. Clones share the
/// endpoint's state; the endpoint leaves the cluster when its last gate is
/// dropped.
///
/// While ejected, `poll_ready` registers the task's waker and returns
/// `Pending`; the sweep that returns the endpoint to service (or a change
/// into panic mode) wakes it.
pub struct OutlierGate<S, C = HttpClassifier> {
    inner: S,
    registration: Arc<Registration>,
    classifier: C,
    waker: Option<Arc<AtomicWaker>>,
}

impl<S, C> OutlierGate<S, C> {
    pub(crate) fn new(
        inner: S,
        detector: &OutlierDetector,
        addr: SocketAddr,
        classifier: C,
    ) -> Self {
        OutlierGate {
            inner,
            registration: detector.register(addr),
            classifier,
            waker: None,
        }
    }

    /// A layer making gates for the endpoint at `addr`.
    pub fn layer(detector: &OutlierDetector, addr: SocketAddr) -> OutlierGateLayer {
        OutlierGateLayer::new(detector.clone(), addr)
    }

    /// Whether the endpoint is ejected now.
    pub fn is_ejected(&self) -> bool {
        self.registration.host.is_ejected()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the gate.
    pub fn into_inner(self) -> S {
        self.inner
    }

    #[inline]
    fn closed(&self) -> bool {
        self.registration.host.is_ejected() && !self.registration.shared.in_panic()
    }
}

impl<S: Clone, C: Clone> Clone for OutlierGate<S, C> {
    fn clone(&self) -> Self {
        OutlierGate {
            inner: self.inner.clone(),
            registration: self.registration.clone(),
            classifier: self.classifier.clone(),
            waker: None,
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for OutlierGate<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutlierGate")
            .field("inner", &self.inner)
            .field("endpoint", &self.registration)
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl<S, C, ReqB, ResB> Service<Request<ReqB>> for OutlierGate<S, C>
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
        if self.closed() {
            let shared = &self.registration.shared;
            self.waker
                .get_or_insert_with(|| shared.register_waker())
                .register(cx.waker());
            // Re-check after registering: a sweep in between would have woken
            // a waker we had not registered yet.
            if self.closed() {
                return Poll::Pending;
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let deadline = RequestContext::get(req.extensions())
            .and_then(|c| c.deadline)
            .map(|d| d.0);
        ResponseFuture::new(
            self.inner.call(req),
            self.registration.clone(),
            self.classifier.clone(),
            deadline,
        )
    }
}

/// The cluster-level guard, above the balancer: when every endpoint is ejected
/// and panic mode does not apply, it is ready at once and answers with
/// [`MeshError::NoHealthyEndpoint`](mesh_core::MeshError::NoHealthyEndpoint)
/// (503 `UH`), where the balancer would wait for an endpoint to become ready.
/// Otherwise it passes through.
pub struct ClusterHealth<S> {
    inner: S,
    shared: Arc<Shared>,
    fail_fast: bool,
    waker: Option<Arc<AtomicWaker>>,
}

impl<S> ClusterHealth<S> {
    /// Guards `inner`, the balancer over the endpoints `detector` watches.
    pub fn new(inner: S, detector: &OutlierDetector) -> Self {
        ClusterHealth {
            inner,
            shared: detector.shared.clone(),
            fail_fast: false,
            waker: None,
        }
    }

    /// A layer guarding balancers with `detector`.
    pub fn layer(detector: &OutlierDetector) -> ClusterHealthLayer {
        ClusterHealthLayer::new(detector.clone())
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the guard.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for ClusterHealth<S> {
    fn clone(&self) -> Self {
        ClusterHealth {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            fail_fast: false,
            waker: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ClusterHealth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterHealth")
            .field("inner", &self.inner)
            .field("none_healthy", &self.shared.none_healthy())
            .finish()
    }
}

impl<S, R> Service<R> for ClusterHealth<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ClusterFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.shared.none_healthy() {
            self.fail_fast = true;
            return Poll::Ready(Ok(()));
        }
        self.fail_fast = false;
        match self.inner.poll_ready(cx) {
            Poll::Ready(r) => Poll::Ready(r.map_err(Into::into)),
            Poll::Pending => {
                let shared = &self.shared;
                self.waker
                    .get_or_insert_with(|| shared.register_waker())
                    .register(cx.waker());
                if self.shared.none_healthy() {
                    self.fail_fast = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
        }
    }

    fn call(&mut self, req: R) -> Self::Future {
        if std::mem::take(&mut self.fail_fast) {
            tracing::debug!("outlier detection: no healthy endpoint, answering 503 UH");
            return ClusterFuture::no_healthy();
        }
        ClusterFuture::inner(self.inner.call(req))
    }
}
