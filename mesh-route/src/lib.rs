//! Routing for the mesh with Istio `VirtualService` semantics, as tower
//! layers: request matching, weighted destination splits, mirroring, fault
//! injection, header operations, rewrites and redirects.
//!
//! Each feature is a tower `Layer` + `Service` usable on its own
//! (proxyless, in any Rust service) — [`fault`], [`mirror`], [`headers`],
//! [`rewrite`] — or a service over several services — [`Split`] and
//! [`Router`]. The [`Router`] stacks them per route from plain config
//! structs ([`RouteConfig`] and friends, the shapes of Istio's `HTTPRoute`);
//! `mesh-proxy` maps Istio YAML onto those structs. What the mesh decides is
//! said in mesh-core's vocabulary: no route is
//! [`MeshError::NoRoute`](mesh_core::MeshError::NoRoute) (404 `NR`), an
//! injected abort is [`MeshError::FaultAbort`](mesh_core::MeshError::FaultAbort)
//! (`FI`), an injected delay puts `DI` in the response's
//! [`ResponseFlags`](mesh_core::ResponseFlags), the matched route's name goes
//! into the request's [`RequestContext`](mesh_core::context::RequestContext) as
//! [`RouteName`](mesh_core::context::RouteName).
//!
//! Semantics follow Istio/Envoy: routes in order, first match wins; match
//! blocks ORed, conditions ANDed; regexes (RE2 syntax) match the whole value;
//! paths are compared **as received**, never normalised (see [`matching`]);
//! weights are relative; mirror copies get `-shadow` in their authority and
//! never affect the primary; fault percentages unset mean 0 %.
//!
//! # Example
//!
//! The bookinfo `reviews` service split 80/20 between `v1` and `v2`, with
//! user `jason` always sent to `v2`, and a 404 `NR` for what no route takes:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mesh_core::BoxError> {
//! use std::convert::Infallible;
//! use http::{HeaderName, Request, Response};
//! use mesh_core::MeshError;
//! use mesh_route::{
//!     Destination, HttpMatch, RouteBody, RouteConfig, Router, StringMatch, WeightedDestination,
//! };
//! use tower::ServiceExt;
//!
//! let reviews = |subset: &str| Destination::new("reviews").with_subset(subset);
//! let routes = vec![
//!     RouteConfig::to("jason", reviews("v2")).with_match(
//!         HttpMatch::default()
//!             .with_uri(StringMatch::prefix("/reviews"))
//!             .with_header(HeaderName::from_static("end-user"), StringMatch::exact("jason")),
//!     ),
//!     RouteConfig::forward("split", vec![
//!         WeightedDestination::new(reviews("v1"), 80),
//!         WeightedDestination::new(reviews("v2"), 20),
//!     ])
//!     .with_match(HttpMatch::default().with_uri(StringMatch::prefix("/reviews"))),
//! ];
//!
//! // One service per (host, subset); here each answers with its subset.
//! let router = Router::builder(routes).build(|target| {
//!     let subset = target.destination.subset.clone().unwrap_or_default();
//!     Ok(tower::service_fn(move |_: Request<RouteBody<String>>| {
//!         let subset = subset.clone();
//!         async move { Ok::<_, Infallible>(Response::new(subset)) }
//!     }))
//! })?;
//!
//! let jason = Request::get("/reviews/1").header("end-user", "jason").body(String::new())?;
//! assert_eq!(router.clone().oneshot(jason).await?.body(), "v2");
//!
//! let anyone = Request::get("/reviews/1").body(String::new())?;
//! assert!(["v1", "v2"].contains(&router.clone().oneshot(anyone).await?.body().as_str()));
//!
//! let elsewhere = Request::get("/ratings/1").body(String::new())?;
//! let err = router.oneshot(elsewhere).await.unwrap_err();
//! assert_eq!(MeshError::find(&*err).unwrap().status(), 404);
//! # Ok(()) }
//! ```

mod body;
mod config;
pub mod fault;
pub mod headers;
pub mod matching;
pub mod mirror;
pub mod rewrite;
pub mod router;
pub mod split;
mod util;

pub use self::body::RouteBody;
pub use self::config::{
    AbortFault, AbortStatus, ConfigError, ConfigErrorKind, DelayFault, Destination, FaultConfig,
    HeaderMatch, HeaderOperations, Headers, HttpMatch, MirrorPolicy, QueryParamMatch, Redirect,
    Rewrite, RouteAction, RouteConfig, StringMatch, WeightedDestination,
};
pub use self::matching::RouteMatcher;
pub use self::router::{Forward, Role, RouteStack, Router, RouterBuilder, Target};
pub use self::split::Split;
