use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::LOCATION;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode};
use tower::Service;

use crate::config::{ConfigError, ConfigErrorKind, Redirect};
use crate::util::authority_of;

/// Answers every request with a redirect (Istio's `HTTPRedirect`); never
/// calls anything. See the [module docs](crate::rewrite).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use http::Request;
/// use mesh_route::Redirect;
/// use mesh_route::rewrite::RedirectService;
/// use tower::ServiceExt;
///
/// let svc = RedirectService::<String>::new(Redirect {
///     uri: Some("/v1/bookRatings".into()),
///     authority: Some("newratings.default.svc.cluster.local".into()),
///     ..Redirect::default()
/// })
/// .unwrap();
/// let req = Request::get("/v1/getProductRatings?id=1").header("host", "ratings").body(()).unwrap();
/// let res = svc.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), 301);
/// assert_eq!(
///     res.headers()["location"],
///     "http://newratings.default.svc.cluster.local/v1/bookRatings?id=1"
/// );
/// # }
/// ```
pub struct RedirectService<B> {
    config: Arc<Redirect>,
    _body: PhantomData<fn() -> B>,
}

impl<B> RedirectService<B> {
    /// The service answering `redirect`; checks that the code is a 3xx and
    /// that the parts fit in a URI.
    pub fn new(redirect: Redirect) -> Result<Self, ConfigError> {
        if !redirect.redirect_code.is_redirection() {
            return Err(ConfigErrorKind::RedirectCode(redirect.redirect_code).into());
        }
        let invalid = |field, value: &String| {
            ConfigError::from(ConfigErrorKind::InvalidUri {
                field,
                value: value.clone(),
            })
        };
        if let Some(uri) = &redirect.uri
            && PathAndQuery::try_from(uri.as_str()).is_err()
        {
            return Err(invalid("redirect.uri", uri));
        }
        if let Some(a) = &redirect.authority
            && Authority::try_from(a.as_str()).is_err()
        {
            return Err(invalid("redirect.authority", a));
        }
        if let Some(s) = &redirect.scheme
            && Scheme::try_from(s.as_str()).is_err()
        {
            return Err(invalid("redirect.scheme", s));
        }
        Ok(RedirectService {
            config: Arc::new(redirect),
            _body: PhantomData,
        })
    }

    /// The redirect answering `req`, in any body type.
    pub(crate) fn respond<ReqBody, ResBody: Default>(
        &self,
        req: &Request<ReqBody>,
    ) -> Response<ResBody> {
        let mut res = Response::new(ResBody::default());
        match HeaderValue::try_from(self.location(req)) {
            Ok(location) => {
                *res.status_mut() = self.config.redirect_code;
                res.headers_mut().insert(LOCATION, location);
            }
            // The request's own authority held bytes a Location cannot.
            Err(_) => *res.status_mut() = StatusCode::BAD_REQUEST,
        }
        res
    }

    /// Reuses the checked config for another body type.
    pub(crate) fn cast<C>(&self) -> RedirectService<C> {
        RedirectService {
            config: self.config.clone(),
            _body: PhantomData,
        }
    }

    /// The `Location` for `req`.
    fn location<ReqBody>(&self, req: &Request<ReqBody>) -> String {
        let c = &*self.config;
        let scheme = c
            .scheme
            .as_deref()
            .or(req.uri().scheme_str())
            .unwrap_or("http");
        let authority = c.authority.as_deref().or(authority_of(req)).unwrap_or("");
        let (path, own_query) = match &c.uri {
            Some(uri) => match uri.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (uri.as_str(), None),
            },
            None => (req.uri().path(), None),
        };
        let query = own_query.or(req.uri().query());
        let mut out = String::new();
        if !authority.is_empty() {
            out.push_str(scheme);
            out.push_str("://");
            match c.port {
                Some(port) => {
                    out.push_str(host_of(authority));
                    out.push(':');
                    out.push_str(&port.to_string());
                }
                None => out.push_str(authority),
            }
        }
        out.push_str(path);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// The host of an authority, without its port.
fn host_of(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => authority,
    }
}

impl<B> Clone for RedirectService<B> {
    fn clone(&self) -> Self {
        RedirectService {
            config: self.config.clone(),
            _body: PhantomData,
        }
    }
}

impl<B> fmt::Debug for RedirectService<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedirectService")
            .field("config", &self.config)
            .finish()
    }
}

impl<ReqBody, B: Default> Service<Request<ReqBody>> for RedirectService<B> {
    type Response = Response<B>;
    type Error = Infallible;
    type Future = Ready<Result<Response<B>, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        ready(Ok(self.respond(&req)))
    }
}
