use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use mesh_core::BoxError;
use pin_project_lite::pin_project;
use tower::Service;

use crate::body::RouteBody;
use crate::fault::{self, Fault};
use crate::headers::HeaderOps;
use crate::mirror::Mirror;
use crate::rewrite::RewriteUri;

/// The service of one route as the builder makes it.
///
/// A route that configures fault injection, header operations, a rewrite or
/// mirrors gets those layers, outermost first: [`Fault`], [`HeaderOps`],
/// [`RewriteUri`], [`Mirror`], then `R` — the route's
/// [`Forward`](super::Forward) (split or redirect), possibly wrapped by the
/// caller's per-route policies. `D` is a destination's service (mirrors use
/// the same kind).
///
/// A route that configures none of them (the common case) calls `R`
/// directly, its request body wrapped in [`RouteBody`] as the mirror layer
/// would: the layers would only pass the request through, yet each would
/// move it and nest its future in the response future.
///
/// Readiness is `R`'s either way (every layer forwards it).
pub struct RouteStack<R, D> {
    kind: Kind<R, D>,
}

enum Kind<R, D> {
    Direct(R),
    Layered(Fault<HeaderOps<RewriteUri<Mirror<R, D>>>>),
}

impl<R, D> RouteStack<R, D> {
    /// Calls `forward` directly: the route configures no fault, header
    /// operation, rewrite or mirror.
    pub(crate) fn direct(forward: R) -> Self {
        RouteStack {
            kind: Kind::Direct(forward),
        }
    }

    /// Calls `layered`: the route configures at least one of its layers.
    pub(crate) fn layered(layered: Fault<HeaderOps<RewriteUri<Mirror<R, D>>>>) -> Self {
        RouteStack {
            kind: Kind::Layered(layered),
        }
    }

    /// Whether the route's service is called directly, with no layer around it.
    pub fn is_direct(&self) -> bool {
        matches!(self.kind, Kind::Direct(_))
    }
}

impl<R: Clone, D: Clone> Clone for RouteStack<R, D> {
    fn clone(&self) -> Self {
        RouteStack {
            kind: match &self.kind {
                Kind::Direct(r) => Kind::Direct(r.clone()),
                Kind::Layered(l) => Kind::Layered(l.clone()),
            },
        }
    }
}

impl<R: fmt::Debug, D: fmt::Debug> fmt::Debug for RouteStack<R, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Direct(r) => f.debug_tuple("RouteStack::Direct").field(r).finish(),
            Kind::Layered(l) => f.debug_tuple("RouteStack::Layered").field(l).finish(),
        }
    }
}

impl<R, D, B, ResBody> Service<Request<B>> for RouteStack<R, D>
where
    R: Service<Request<RouteBody<B>>, Response = Response<ResBody>> + Clone,
    R::Error: Into<BoxError>,
    D: Service<Request<RouteBody<B>>> + Clone + Send + 'static,
    D::Future: Send + 'static,
    B: Body + Send + 'static,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = RouteStackFuture<
        R::Future,
        fault::ResponseFuture<HeaderOps<RewriteUri<Mirror<R, D>>>, Request<B>>,
    >;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.kind {
            Kind::Direct(r) => r.poll_ready(cx).map_err(Into::into),
            Kind::Layered(l) => l.poll_ready(cx),
        }
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let kind = match &mut self.kind {
            Kind::Direct(r) => FutKind::Direct {
                future: r.call(req.map(RouteBody::new)),
            },
            Kind::Layered(l) => FutKind::Layered {
                future: l.call(req),
            },
        };
        RouteStackFuture { kind }
    }
}

pin_project! {
    /// The response future of [`RouteStack`]: the route's service's own
    /// (`F`), or its layers' (`L`).
    pub struct RouteStackFuture<F, L> {
        #[pin]
        kind: FutKind<F, L>,
    }
}

pin_project! {
    #[project = FutProj]
    enum FutKind<F, L> {
        Direct { #[pin] future: F },
        Layered { #[pin] future: L },
    }
}

impl<F, L, T, E> Future for RouteStackFuture<F, L>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    L: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutProj::Direct { future } => future.poll(cx).map_err(Into::into),
            FutProj::Layered { future } => future.poll(cx),
        }
    }
}

impl<F, L> fmt::Debug for RouteStackFuture<F, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteStackFuture").finish_non_exhaustive()
    }
}
