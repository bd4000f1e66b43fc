use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode};
use mesh_core::context::PeerIdentity;
use tower::Service;

use super::body::ResponseBody;
use super::future::ResponseFuture;
use super::{Authorizer, RequestAttributes};
use crate::identity::SPIFFE_SCHEME;

/// The body of a denial, as Envoy's RBAC filter writes it.
pub const DENIED_BODY: &str = "RBAC: access denied";

/// Middleware enforcing authorization policies; see the [module docs](super).
#[derive(Clone, Debug)]
pub struct Authorization<S> {
    inner: S,
    authorizer: Arc<Authorizer>,
}

impl<S> Authorization<S> {
    /// Wraps `inner` with `authorizer`.
    pub fn new(inner: S, authorizer: Arc<Authorizer>) -> Self {
        Authorization { inner, authorizer }
    }

    /// The policies enforced.
    pub fn authorizer(&self) -> &Arc<Authorizer> {
        &self.authorizer
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authorization<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let principal = req
            .extensions()
            .get::<PeerIdentity>()
            .map(|id| {
                id.as_str()
                    .strip_prefix(SPIFFE_SCHEME)
                    .unwrap_or(id.as_str())
            })
            .unwrap_or("");
        let path = without_path_params(req.uri().path());
        let attrs = RequestAttributes {
            principal,
            method: req.method().as_str(),
            path: &path,
        };
        let decision = self.authorizer.check(&attrs);
        if decision.is_allowed() {
            return ResponseFuture::inner(self.inner.call(req));
        }
        tracing::debug!(
            principal = attrs.principal,
            method = attrs.method,
            path = attrs.path,
            ?decision,
            "mesh-tls: request denied by authorization policy"
        );
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = StatusCode::FORBIDDEN;
        parts.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        parts.extensions.insert(decision);
        ResponseFuture::denied(parts)
    }
}

/// The path as policies see it: each segment without its `;parameters`.
/// Servlet containers (Tomcat, Jetty) and Spring read `/admin;x=1` as
/// `/admin`, so a DENY on `/admin` must too; an app that gives `;` no meaning
/// loses nothing, since the forwarded path keeps them.
fn without_path_params(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(';') {
        return std::borrow::Cow::Borrowed(path);
    }
    // A segment that is only parameters (`/;x/admin`) disappears, as an
    // empty segment would in a normalised path.
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').skip(1) {
        let segment = segment.split_once(';').map_or(segment, |(s, _)| s);
        if !segment.is_empty() {
            out.push('/');
            out.push_str(segment);
        }
    }
    if out.is_empty() || path.ends_with('/') {
        out.push('/');
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod path_param_tests {
    use super::without_path_params;

    #[test]
    fn parameters_are_dropped_from_every_segment() {
        assert_eq!(without_path_params("/admin;x=1"), "/admin");
        assert_eq!(without_path_params("/a;b/c;d=e;f/g"), "/a/c/g");
        assert_eq!(without_path_params("/;x/admin"), "/admin");
        assert_eq!(without_path_params("/admin/;x"), "/admin");
        assert_eq!(without_path_params("/admin;x/"), "/admin/");
        assert_eq!(without_path_params("/plain"), "/plain");
    }
}
