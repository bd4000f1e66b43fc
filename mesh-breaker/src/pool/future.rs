//! The pool-limit response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use mesh_core::limit::Permit;
use mesh_core::{BoxError, MeshError, Overload};
use pin_project_lite::pin_project;

pin_project! {
    /// The response future of [`ConnectionPool`](super::ConnectionPool): the
    /// inner future holding its request slot until it completes, or an
    /// immediate 503 `UO`.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Overflow { why: Overload },
        Admitted { #[pin] future: F, permit: Option<Permit> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn overflow(why: Overload) -> Self {
        ResponseFuture {
            kind: Kind::Overflow { why },
        }
    }

    pub(crate) fn admitted(future: F, permit: Permit) -> Self {
        ResponseFuture {
            kind: Kind::Admitted {
                future,
                permit: Some(permit),
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Overflow { why } => Poll::Ready(Err(MeshError::Overloaded(*why).into())),
            KindProj::Admitted { future, permit } => {
                let out = ready!(future.poll(cx));
                // The request is answered: free its slot now.
                permit.take();
                Poll::Ready(out.map_err(Into::into))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
