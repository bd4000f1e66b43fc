//! The request body the inner service receives.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use mesh_core::BoxError;
use mesh_core::body::ReplayBody;
use pin_project_lite::pin_project;

pin_project! {
    /// The request body the retry layer sends to the inner service: the
    /// caller's body as is (when the request cannot be retried, or the body is
    /// empty), a [`ReplayBody`] clone (when it may be), or nothing (a retry of
    /// a request whose body was empty from the start).
    ///
    /// Only requests that may be retried pay for the replay buffer.
    pub struct RetryBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Original { #[pin] body: B },
        Replay { body: ReplayBody<B> },
        Empty,
    }
}

impl<B> RetryBody<B> {
    /// The caller's body, passed through.
    pub fn new(body: B) -> Self {
        RetryBody {
            kind: Kind::Original { body },
        }
    }

    pub(crate) fn replay(body: ReplayBody<B>) -> Self {
        RetryBody {
            kind: Kind::Replay { body },
        }
    }

    pub(crate) fn empty() -> Self {
        RetryBody { kind: Kind::Empty }
    }
}

impl<B> Body for RetryBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Original { body } => match body.poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(
                    frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
                ))),
            },
            KindProj::Replay { body } => Pin::new(body).poll_frame(cx),
            KindProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Original { body } => body.is_end_stream(),
            Kind::Replay { body } => body.is_end_stream(),
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Original { body } => body.size_hint(),
            Kind::Replay { body } => body.size_hint(),
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}

impl<B> fmt::Debug for RetryBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Original { .. } => f.pad("RetryBody::Original"),
            Kind::Replay { body } => f.debug_tuple("RetryBody::Replay").field(body).finish(),
            Kind::Empty => f.pad("RetryBody::Empty"),
        }
    }
}

/// Where the bodies of later attempts come from.
pub(crate) enum BodySource<B> {
    /// Every attempt gets a clone.
    Replay(ReplayBody<B>),
    /// The body was empty: retries send nothing.
    Empty,
    /// The body went out once, unbuffered (its size hint passed the cap).
    Gone,
}

impl<B: Body> BodySource<B> {
    /// Wraps the caller's body for a request that may be retried; returns the
    /// first attempt's body.
    pub(crate) fn new(body: B, cap: usize) -> (RetryBody<B>, Self) {
        if body.is_end_stream() {
            return (RetryBody::new(body), BodySource::Empty);
        }
        if body.size_hint().lower() > cap as u64 {
            return (RetryBody::new(body), BodySource::Gone);
        }
        let replay = ReplayBody::new(body, cap);
        match replay.try_clone() {
            Some(first) => (RetryBody::replay(first), BodySource::Replay(replay)),
            // A fresh body is never capped; keep the type total anyway.
            None => (RetryBody::replay(replay), BodySource::Gone),
        }
    }
}

impl<B> BodySource<B> {
    /// Whether another attempt can get the body.
    pub(crate) fn is_replayable(&self) -> bool {
        match self {
            BodySource::Replay(b) => !b.is_capped(),
            BodySource::Empty => true,
            BodySource::Gone => false,
        }
    }

    /// The body of the next attempt, or `None` if it can no longer be sent.
    pub(crate) fn next(&self) -> Option<RetryBody<B>> {
        match self {
            BodySource::Replay(b) => b.try_clone().map(RetryBody::replay),
            BodySource::Empty => Some(RetryBody::empty()),
            BodySource::Gone => None,
        }
    }
}

impl<B> fmt::Debug for BodySource<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodySource::Replay(b) => f.debug_tuple("Replay").field(b).finish(),
            BodySource::Empty => f.pad("Empty"),
            BodySource::Gone => f.pad("Gone"),
        }
    }
}
