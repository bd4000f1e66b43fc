//! Response futures of the gate and the cluster guard.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use mesh_core::classify::{Classified, Classify, Failure, Outcome};
use mesh_core::{BoxError, MeshError};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::detector::Registration;
use crate::body::{Recorder, ReportBody};

/// Records a deferred outcome (gRPC trailers) to its endpoint.
#[derive(Debug)]
pub(crate) struct OutlierRecorder(Arc<Registration>);

impl OutlierRecorder {
    pub(crate) fn record(self, outcome: Outcome) {
        self.0.record(outcome);
    }
}

pin_project! {
    /// The response future of [`OutlierGate`](super::OutlierGate): accounts the
    /// outcome to the endpoint when the response head (or, for gRPC, the end
    /// of the body) arrives.
    ///
    /// Dropped unfinished at or after the attempt's deadline (the request
    /// context's [`AttemptDeadline`](mesh_core::context::AttemptDeadline)), the
    /// call counts as a timeout of the endpoint (Envoy's `LocalOriginTimeout`):
    /// a hanging endpoint is ejected like a failing one.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        record: Option<(Arc<Registration>, C)>,
        deadline: Option<Instant>,
    }

    impl<F, C> PinnedDrop for ResponseFuture<F, C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let (Some((registration, _)), Some(deadline)) = (this.record.take(), *this.deadline)
                && Instant::now() >= deadline
            {
                registration.record(Outcome::Failure(Failure::Timeout));
            }
        }
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(
        inner: F,
        registration: Arc<Registration>,
        classifier: C,
        deadline: Option<Instant>,
    ) -> Self {
        ResponseFuture {
            inner,
            record: Some((registration, classifier)),
            deadline,
        }
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    C: Classify,
{
    type Output = Result<Response<ReportBody<B, C::Eos>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx)).map_err(Into::into);
        let Some((registration, classifier)) = this.record.take() else {
            // Polled after completion: report nothing twice.
            return Poll::Ready(result.map(|res| res.map(ReportBody::decided)));
        };
        Poll::Ready(match result {
            Ok(res) => match classifier.classify_response(&res) {
                Classified::Ready(outcome) => {
                    registration.record(outcome);
                    Ok(res.map(ReportBody::decided))
                }
                Classified::RequiresEos(eos) => {
                    let recorder = Recorder::outlier(OutlierRecorder(registration));
                    Ok(res.map(|b| ReportBody::deferred(b, eos, recorder)))
                }
            },
            Err(err) => {
                registration.record(classifier.classify_error(&*err));
                Err(err)
            }
        })
    }
}

pin_project! {
    /// The response future of [`ClusterHealth`](super::ClusterHealth): the inner
    /// future, or an immediate 503 `UH`.
    pub struct ClusterFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        NoHealthy,
        Inner { #[pin] future: F },
    }
}

impl<F> ClusterFuture<F> {
    pub(crate) fn no_healthy() -> Self {
        ClusterFuture {
            kind: Kind::NoHealthy,
        }
    }

    pub(crate) fn inner(future: F) -> Self {
        ClusterFuture {
            kind: Kind::Inner { future },
        }
    }
}

impl<F, T, E> Future for ClusterFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::NoHealthy => Poll::Ready(Err(MeshError::NoHealthyEndpoint.into())),
            KindProj::Inner { future } => future.poll(cx).map_err(Into::into),
        }
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> std::fmt::Debug for ClusterFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterFuture").finish_non_exhaustive()
    }
}
