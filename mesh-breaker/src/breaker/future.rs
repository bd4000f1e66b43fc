//! The breaker's response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use mesh_core::classify::{Classified, Classify};
use mesh_core::{BoxError, MeshError, Overload};
use pin_project_lite::pin_project;

use super::state::BreakerRecorder;
use crate::body::{Recorder, ReportBody};

pin_project! {
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker): the
    /// inner future, whose outcome goes to the breaker, or an immediate 503
    /// `UO` while the breaker is open.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Rejected,
        Inner { #[pin] future: F, recorder: Option<BreakerRecorder>, classifier: C },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn rejected() -> Self {
        ResponseFuture {
            kind: Kind::Rejected,
        }
    }

    pub(crate) fn new(future: F, recorder: BreakerRecorder, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Inner {
                future,
                recorder: Some(recorder),
                classifier,
            },
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (future, recorder, classifier) = match self.project().kind.project() {
            KindProj::Rejected => {
                return Poll::Ready(Err(MeshError::Overloaded(Overload::CircuitOpen).into()));
            }
            KindProj::Inner {
                future,
                recorder,
                classifier,
            } => (future, recorder, classifier),
        };
        let result = ready!(future.poll(cx)).map_err(Into::into);
        let Some(recorder) = recorder.take() else {
            return Poll::Ready(result.map(|res| res.map(ReportBody::decided)));
        };
        Poll::Ready(match result {
            Ok(res) => match classifier.classify_response(&res) {
                Classified::Ready(outcome) => {
                    recorder.record(outcome);
                    Ok(res.map(ReportBody::decided))
                }
                Classified::RequiresEos(eos) => {
                    let recorder = Recorder::breaker(recorder);
                    Ok(res.map(|b| ReportBody::deferred(b, eos, recorder)))
                }
            },
            Err(err) => {
                recorder.record(classifier.classify_error(&*err));
                Err(err)
            }
        })
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
