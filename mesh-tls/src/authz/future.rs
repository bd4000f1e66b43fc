use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http::response::Parts;

use super::body::ResponseBody;

pin_project_lite::pin_project! {
    /// Response future of [`Authorization`](super::Authorization): the inner
    /// service's future, or a ready denial.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Denied { parts: Option<Parts> },
        Inner { #[pin] future: F },
    }
}

impl<F> ResponseFuture<F> {
    /// A ready denial with these response head parts (status, headers).
    pub(crate) fn denied(parts: Parts) -> Self {
        ResponseFuture {
            kind: Kind::Denied { parts: Some(parts) },
        }
    }

    pub(crate) fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            // Polled again after completion: stay pending rather than panic.
            KindProj::Denied { parts } => match parts.take() {
                Some(parts) => Poll::Ready(Ok(Response::from_parts(
                    parts,
                    ResponseBody::denied(super::DENIED_BODY),
                ))),
                None => Poll::Pending,
            },
            KindProj::Inner { future } => {
                let res = ready!(future.poll(cx))?;
                Poll::Ready(Ok(res.map(ResponseBody::inner)))
            }
        }
    }
}
