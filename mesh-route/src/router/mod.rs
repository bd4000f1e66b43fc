//! The router: Istio `VirtualService` HTTP routes as one tower service.
//!
//! [`Router::builder`] takes the routes of a virtual service, in order, and
//! a way to get the service of each destination; for every route it stacks
//! (outermost first) [fault injection](crate::fault), the route's
//! [header operations](crate::headers), the [rewrite](crate::rewrite),
//! [mirroring](crate::mirror), then the route's [`Forward`]: a weighted
//! [`Split`](crate::Split) over the destinations' services, or a redirect
//! (a [`RouteStack`]; a route configuring none of the layers calls its
//! `Forward` directly).
//! The first route matching a request wins; its name goes into the request's
//! [`RequestContext`](mesh_core::context::RequestContext) as
//! [`RouteName`](mesh_core::context::RouteName); nothing matching fails
//! with [`MeshError::NoRoute`](mesh_core::MeshError::NoRoute) (404, `NR`).
//!
//! # Plugging in destinations and per-route policies
//!
//! - **Destinations.** The `make` closure receives a [`Target`] — the
//!   destination (`host`, `subset`, `port`), the route and the [`Role`] — and
//!   returns that destination's service, called with
//!   `Request<RouteBody<B>>`. The proxy returns a clone of its service for
//!   `(host, subset)` (balancer, pool limits, outlier ejection, client),
//!   wrapped in the route's retry policy for [`Role::Primary`]: retries sit
//!   below the split, so they stay on the destination picked, as in Envoy.
//! - **Per-route policies.** [`RouterBuilder::build_with`]'s `wrap` closure
//!   receives each route's [`Forward`] and returns it wrapped (e.g. in the
//!   route's `timeout`): the overall timeout sits below fault and mirror and
//!   above the split, as Envoy orders them. mesh-route knows nothing of those
//!   layers; `R` is whatever the closure returns (the same type for every
//!   route — use `BoxCloneSyncService` if routes need different stacks).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::convert::Infallible;
//! use http::{HeaderName, Request, Response};
//! use mesh_core::context::RequestContext;
//! use mesh_core::MeshError;
//! use mesh_route::{Destination, HttpMatch, RouteBody, RouteConfig, Router, StringMatch};
//! use tower::ServiceExt;
//!
//! // virtual-service-reviews-test-v2.yaml
//! let routes = vec![
//!     RouteConfig::to("jason", Destination::new("reviews").with_subset("v2")).with_match(
//!         HttpMatch::default()
//!             .with_header(HeaderName::from_static("end-user"), StringMatch::exact("jason")),
//!     ),
//!     RouteConfig::to("default", Destination::new("reviews").with_subset("v1")),
//! ];
//! let router = Router::builder(routes).build(|target| {
//!     let subset = target.destination.subset.clone().unwrap_or_default();
//!     Ok(tower::service_fn(move |req: Request<RouteBody<String>>| {
//!         let ctx = RequestContext::get(req.extensions()).unwrap();
//!         let route = ctx.route.as_ref().unwrap().to_string();
//!         let body = format!("{subset} via {route}");
//!         async move { Ok::<_, Infallible>(Response::new(body)) }
//!     }))
//! })
//! .unwrap();
//!
//! let req = Request::get("/reviews/0").header("end-user", "jason").body(String::new()).unwrap();
//! assert_eq!(router.clone().oneshot(req).await.unwrap().body(), "v2 via jason");
//! let req = Request::get("/reviews/0").body(String::new()).unwrap();
//! assert_eq!(router.oneshot(req).await.unwrap().body(), "v1 via default");
//! # }
//! ```
//!
//! A router whose routes all miss answers `NoRoute`:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mesh_core::BoxError> {
//! # use std::convert::Infallible;
//! # use http::{Request, Response};
//! # use mesh_core::MeshError;
//! # use mesh_route::{Destination, HttpMatch, RouteBody, RouteConfig, Router, StringMatch};
//! # use tower::ServiceExt;
//! let routes = vec![RouteConfig::to("api", Destination::new("api"))
//!     .with_match(HttpMatch::default().with_uri(StringMatch::prefix("/api")))];
//! let router = Router::builder(routes).build(|_| {
//!     Ok(tower::service_fn(|_: Request<RouteBody<String>>| async {
//!         Ok::<_, Infallible>(Response::new(String::new()))
//!     }))
//! })?;
//! let err = router.oneshot(Request::get("/web").body(String::new())?).await.unwrap_err();
//! let res = MeshError::find(&*err).unwrap().to_response::<String>();
//! assert_eq!(res.status(), 404);
//! assert_eq!(res.headers()["x-mesh-response-flags"], "NR");
//! # Ok(()) }
//! ```

mod builder;
mod forward;
mod future;
mod service;
mod stack;

pub use self::builder::{Role, RouterBuilder, Target};
pub use self::forward::{Forward, ForwardFuture};
pub use self::future::ResponseFuture;
pub use self::service::Router;
pub use self::stack::{RouteStack, RouteStackFuture};
use mesh_core::ReadyOneshot;

#[cfg(test)]
mod tests;
