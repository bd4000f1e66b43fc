use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use mesh_core::{BoxError, MeshError};
use pin_project_lite::pin_project;
use tower::Service;

use super::ReadyOneshot;

pin_project! {
    /// The response future of [`Router`](super::Router): the matched route's
    /// service, or `NoRoute` at once.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req>
    where
        S: Service<Req>,
    {
        Routed { #[pin] future: ReadyOneshot<S, Req> },
        NoRoute,
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(crate) fn routed(future: ReadyOneshot<S, Req>) -> Self {
        ResponseFuture {
            kind: Kind::Routed { future },
        }
    }

    pub(crate) fn no_route() -> Self {
        ResponseFuture {
            kind: Kind::NoRoute,
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Routed { future } => future.poll(cx).map_err(Into::into),
            KindProj::NoRoute => Poll::Ready(Err(MeshError::NoRoute.into())),
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
