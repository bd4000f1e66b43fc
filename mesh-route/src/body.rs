//! The request body destinations receive.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use mesh_core::BoxError;
use mesh_core::body::ReplayBody;
use pin_project_lite::pin_project;
use tokio::sync::watch;

pin_project! {
    /// The body of a request after the [mirror](crate::mirror) layer: the
    /// client's body as it came, or — when the request is being mirrored — a
    /// [`ReplayBody`] keeping a bounded copy for the shadows.
    ///
    /// Every route of a [`Router`](crate::Router) hands its destinations this
    /// type, whether or not it mirrors, so that all routes have one type.
    /// Data frames are [`Bytes`] (free for `Bytes`-backed bodies such as
    /// hyper's) and errors are boxed.
    pub struct RouteBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Direct { #[pin] body: B },
        Replay {
            #[pin]
            body: ReplayBody<B>,
            // Tells the shadows the primary read the whole body.
            done: Option<watch::Sender<bool>>,
        },
    }
}

impl<B> RouteBody<B> {
    /// The body as it came.
    pub fn new(body: B) -> Self {
        RouteBody {
            kind: Kind::Direct { body },
        }
    }

    /// The primary's clone of a mirrored body; `done` learns when it was read
    /// to its end.
    pub(crate) fn primary(body: ReplayBody<B>, done: Option<watch::Sender<bool>>) -> Self {
        RouteBody {
            kind: Kind::Replay { body, done },
        }
    }

    /// A shadow's clone of a mirrored body.
    pub(crate) fn shadow(body: ReplayBody<B>) -> Self {
        RouteBody {
            kind: Kind::Replay { body, done: None },
        }
    }
}

impl<B> Default for RouteBody<B>
where
    B: Default,
{
    fn default() -> Self {
        RouteBody::new(B::default())
    }
}

impl<B> Body for RouteBody<B>
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
            KindProj::Direct { body } => {
                let frame = ready!(body.poll_frame(cx));
                Poll::Ready(frame.map(|f| {
                    f.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                        .map_err(Into::into)
                }))
            }
            KindProj::Replay { mut body, done } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                if done.is_some() {
                    match &frame {
                        None => signal(done, true),
                        Some(Ok(f)) if f.is_trailers() || body.is_end_stream() => {
                            signal(done, true)
                        }
                        Some(Ok(_)) => {}
                        // An error: the shadows get nothing.
                        Some(Err(_)) => signal(done, false),
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Direct { body } => body.is_end_stream(),
            Kind::Replay { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Direct { body } => body.size_hint(),
            Kind::Replay { body, .. } => body.size_hint(),
        }
    }
}

/// Tells the waiting shadows whether the body was read whole (`true`), then
/// forgets the sender (dropping it without `true` means "not whole").
fn signal(done: &mut Option<watch::Sender<bool>>, whole: bool) {
    if let Some(tx) = done.take()
        && whole
    {
        let _ = tx.send(true);
    }
}

impl<B> fmt::Debug for RouteBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Direct { .. } => f.write_str("RouteBody::Direct"),
            Kind::Replay { body, .. } => f.debug_tuple("RouteBody::Replay").field(body).finish(),
        }
    }
}
