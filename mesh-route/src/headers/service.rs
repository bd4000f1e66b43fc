use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::{HeaderOpsLayer, ResponseFuture, apply_to_request};
use crate::config::Headers;

/// Applies request header operations before calling the inner service and
/// response header operations to its response. See the
/// [module docs](crate::headers).
#[derive(Clone, Debug)]
pub struct HeaderOps<S> {
    pub(crate) inner: S,
    pub(crate) headers: Option<Arc<Headers>>,
}

impl<S> HeaderOps<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, headers: Headers) -> Self {
        tower::Layer::layer(&HeaderOpsLayer::new(headers), inner)
    }

    /// A layer applying `headers`.
    pub fn layer(headers: Headers) -> HeaderOpsLayer {
        HeaderOpsLayer::new(headers)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HeaderOps<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        if let Some(h) = &self.headers {
            apply_to_request(&h.request, &mut req);
        }
        let headers = self.headers.clone().filter(|h| !h.response.is_empty());
        ResponseFuture::new(self.inner.call(req), headers)
    }
}
