//! The response body of the layers that learn from outcomes: it reports a
//! deferred outcome (gRPC's status in trailers) when the body ends.

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use mesh_core::classify::{ClassifyEos, Outcome};
use pin_project_lite::pin_project;

use crate::breaker::BreakerRecorder;
use crate::outlier::OutlierRecorder;

/// Where a deferred outcome goes: opaque, made by the layers of this crate.
#[derive(Debug)]
pub struct Recorder(RecorderKind);

#[derive(Debug)]
enum RecorderKind {
    Outlier(OutlierRecorder),
    Breaker(BreakerRecorder),
}

impl Recorder {
    pub(crate) fn outlier(r: OutlierRecorder) -> Self {
        Recorder(RecorderKind::Outlier(r))
    }

    pub(crate) fn breaker(r: BreakerRecorder) -> Self {
        Recorder(RecorderKind::Breaker(r))
    }

    fn record(self, outcome: Outcome) {
        match self.0 {
            RecorderKind::Outlier(r) => r.record(outcome),
            RecorderKind::Breaker(r) => r.record(outcome),
        }
    }
}

pin_project! {
    /// A response body that passes frames through unchanged and, when the
    /// outcome could not be decided from the response head (gRPC), decides it
    /// when the body ends: from the trailers, or from a body error.
    ///
    /// Unlike [`mesh_core::classify::ClassifyBody`], a body dropped before its
    /// end reports nothing: the client went away, which says nothing about the
    /// endpoint's health. When the head decided the outcome, it was recorded at
    /// the head already and this body is a plain pass-through.
    pub struct ReportBody<B, E> {
        #[pin]
        inner: B,
        pending: Option<(E, Recorder)>,
    }
}

impl<B, E> ReportBody<B, E> {
    /// A body whose outcome is already recorded.
    pub(crate) fn decided(inner: B) -> Self {
        ReportBody {
            inner,
            pending: None,
        }
    }

    /// A body whose outcome `eos` decides at its end.
    pub(crate) fn deferred(inner: B, eos: E, recorder: Recorder) -> Self {
        ReportBody {
            inner,
            pending: Some((eos, recorder)),
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Whether an outcome is still to be reported at the end of the body.
    pub fn is_deferred(&self) -> bool {
        self.pending.is_some()
    }
}

impl<B, E> Body for ReportBody<B, E>
where
    B: Body,
    B::Error: StdError + 'static,
    E: ClassifyEos,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if this.pending.is_some() {
            let decided = match &frame {
                None => Some(Decision::Trailers(None)),
                Some(Ok(f)) => match f.trailers_ref() {
                    Some(t) => Some(Decision::Trailers(Some(t))),
                    None if this.inner.is_end_stream() => Some(Decision::Trailers(None)),
                    None => None,
                },
                Some(Err(err)) => Some(Decision::Error(err)),
            };
            if let Some(decision) = decided
                && let Some((eos, recorder)) = this.pending.take()
            {
                let outcome = match decision {
                    Decision::Trailers(t) => eos.classify_eos(t),
                    Decision::Error(err) => eos.classify_error(err),
                };
                recorder.record(outcome);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

enum Decision<'a> {
    Trailers(Option<&'a HeaderMap>),
    Error(&'a (dyn StdError + 'static)),
}

impl<B: fmt::Debug, E> fmt::Debug for ReportBody<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportBody")
            .field("inner", &self.inner)
            .field("deferred", &self.pending.is_some())
            .finish()
    }
}
