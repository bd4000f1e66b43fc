use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::apply_to_headers;
use crate::config::Headers;

pin_project! {
    /// The response future of [`HeaderOps`](super::HeaderOps) and
    /// [`Split`](crate::Split): the inner future, then the response header
    /// operations.
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        headers: Option<Arc<Headers>>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, headers: Option<Arc<Headers>>) -> Self {
        ResponseFuture { future, headers }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.future.poll(cx))?;
        if let Some(h) = this.headers.take() {
            apply_to_headers(&h.response, res.headers_mut());
        }
        Poll::Ready(Ok(res))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
