use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use mesh_core::BoxError;
use mesh_core::context::{RequestContext, RouteName};
use tower::Service;

use super::{ReadyOneshot, ResponseFuture};
use crate::matching::{RouteMatcher, View};

/// One route (one match block of one Istio route, as Envoy has one route
/// per match): when it applies, its name and its service.
struct Entry<S> {
    matcher: RouteMatcher,
    name: RouteName,
    service: S,
}

/// Sends each request to the service of the first route that matches it, with
/// the route's name in the request's [`RequestContext`] as [`RouteName`]; no
/// match fails with
/// [`MeshError::NoRoute`](mesh_core::MeshError::NoRoute) (404, `NR`). See the
/// [module docs](crate::router).
///
/// Readiness: the route is known only in `call`, so `poll_ready` is always
/// ready and `call` sends the request to a clone of the route's service:
/// `call` asks the clone's `poll_ready` once (with a no-op waker: there is no
/// task at hand) and calls it at once if it is ready — always, for the
/// builder's routes, whose [`Forward`](super::Forward) is always ready;
/// otherwise the response future drives it to readiness as `oneshot` does,
/// asking again with the task's waker before it waits. It never calls an
/// unready service and never lets one busy route hold back the others.
/// Clones are cheap (one `Arc`).
pub struct Router<S> {
    entries: Arc<[Entry<S>]>,
    /// Whether the matched route's name goes into the request context.
    name_requests: bool,
}

impl<S> Router<S> {
    /// A router over `(name, matcher, service)` routes, tried in order.
    ///
    /// This is the bare form for any services; [`Router::builder`] builds the
    /// services of Istio routes (fault, mirror, rewrite, header operations,
    /// split) from [`RouteConfig`](crate::RouteConfig)s.
    pub fn new(routes: impl IntoIterator<Item = (String, RouteMatcher, S)>) -> Self {
        let entries: Vec<Entry<S>> = routes
            .into_iter()
            .map(|(name, matcher, service)| Entry {
                matcher,
                name: RouteName(name.into()),
                service,
            })
            .collect();
        Router {
            entries: entries.into(),
            name_requests: true,
        }
    }

    /// Whether the matched route's name goes into the request's
    /// [`RequestContext`] (on by default). Off, for a stack in which nothing
    /// reads it, spares a request that carries no other extension http's
    /// extensions map (three allocations), and every copy a retry layer
    /// below makes of it.
    #[must_use]
    pub fn with_route_names(mut self, on: bool) -> Self {
        self.name_requests = on;
        self
    }

    /// The route the request would take: its index and name.
    #[inline]
    pub fn route<B>(&self, req: &Request<B>) -> Option<(usize, &RouteName)> {
        let view = View::new(req);
        self.entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.matcher.matches_view(&view))
            .map(|(i, e)| (i, &e.name))
    }

    /// The service of route `i`.
    #[cfg(test)]
    pub(crate) fn service(&self, i: usize) -> &S {
        &self.entries[i].service
    }

    /// The routes' names, in order.
    pub fn route_names(&self) -> impl Iterator<Item = &RouteName> {
        self.entries.iter().map(|e| &e.name)
    }

    /// How many routes there are (one per match block).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no route (every request gets 404 `NR`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<S> Clone for Router<S> {
    fn clone(&self) -> Self {
        Router {
            entries: self.entries.clone(),
            name_requests: self.name_requests,
        }
    }
}

impl<S> fmt::Debug for Router<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field(
                "routes",
                &self.entries.iter().map(|e| &e.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<S, B> Service<Request<B>> for Router<S>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request<B>>;

    /// Always ready (see the type's docs).
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.route_request(req)
    }
}

impl<S> Router<S> {
    /// Routes `req` as [`call`](Service::call) does, through a shared
    /// reference: the router is always ready and sends each request to a
    /// clone of its route's service, so it needs neither `&mut` nor a clone
    /// of itself per request (e.g. behind an `Arc` shared by connections).
    pub fn route_request<B>(&self, mut req: Request<B>) -> ResponseFuture<S, Request<B>>
    where
        S: Service<Request<B>> + Clone,
    {
        let view = View::new(&req);
        let found = self.entries.iter().find(|e| e.matcher.matches_view(&view));
        match found {
            Some(entry) => {
                if self.name_requests {
                    RequestContext::get_mut(req.extensions_mut()).route = Some(entry.name.clone());
                }
                ResponseFuture::routed(ReadyOneshot::new(entry.service.clone(), req))
            }
            None => ResponseFuture::no_route(),
        }
    }
}
