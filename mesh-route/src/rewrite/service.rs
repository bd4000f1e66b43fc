use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::{PathAndQuery, Uri};
use http::{HeaderName, HeaderValue, Request};
use mesh_core::BoxError;
use tower::Service;

use super::ResponseFuture;
use super::layer::Compiled;
use crate::util::set_authority;

/// `x-envoy-original-path`: the path before `rewrite.uri`.
pub(crate) const ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");

/// Rewrites the request's path and authority before calling the inner
/// service. See the [module docs](crate::rewrite).
#[derive(Clone, Debug)]
pub struct RewriteUri<S> {
    pub(crate) inner: S,
    pub(crate) config: Option<Arc<Compiled>>,
}

impl<S> RewriteUri<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// A rewrite produced a URI that is not valid (the request is not sent).
#[derive(Debug)]
pub struct RewriteError(());

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rewrite produced an invalid URI")
    }
}

impl std::error::Error for RewriteError {}

fn rewrite<B>(c: &Compiled, req: &mut Request<B>) -> Result<(), RewriteError> {
    if let Some(new) = &c.uri {
        let path = req.uri().path();
        let rest = c
            .prefix
            .as_deref()
            .and_then(|p| path.get(p.len()..))
            .unwrap_or("");
        let mut pq = String::with_capacity(
            new.len() + rest.len() + 1 + req.uri().query().map_or(0, str::len),
        );
        pq.push_str(new);
        pq.push_str(rest);
        if let Some(q) = req.uri().query() {
            pq.push('?');
            pq.push_str(q);
        }
        let original = HeaderValue::from_str(path).map_err(|_| RewriteError(()))?;
        let pq = PathAndQuery::try_from(pq).map_err(|_| RewriteError(()))?;
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.path_and_query = Some(pq);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| RewriteError(()))?;
        req.headers_mut().insert(ORIGINAL_PATH, original);
    }
    if let Some(authority) = &c.authority
        && !set_authority(req, authority)
    {
        return Err(RewriteError(()));
    }
    Ok(())
}

impl<S, B> Service<Request<B>> for RewriteUri<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(c) = &self.config
            && let Err(e) = rewrite(c, &mut req)
        {
            return ResponseFuture::error(e);
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}
