//! `rewrite` and `redirect` of an Istio HTTP route.
//!
//! [`RewriteLayer`] changes the request before it goes on: `rewrite.uri`
//! replaces the **matched prefix** when the route matched by prefix
//! ([`RewriteLayer::matched_prefix`]; the [`Router`](crate::Router) sets it
//! per match block), otherwise the whole path; the query string is kept and
//! the original path is recorded in `x-envoy-original-path`, as Envoy does.
//! `rewrite.authority` replaces `Host` / `:authority`. Mind Envoy's
//! trailing-slash caveat: prefix `/a` rewritten to `/` turns `/a/b` into
//! `//b`; use two routes (`/a/` → `/` and `/a` → `/`).
//!
//! [`RedirectService`] answers a redirect instead of forwarding: `Location`
//! built from the request with `uri` (whole path; the request's query string
//! is kept unless `uri` has its own), `authority`, `scheme` and `port`
//! replaced; status `redirectCode` (301 by default).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use http::{Request, Response};
//! use mesh_route::Rewrite;
//! use mesh_route::rewrite::RewriteLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let rewrite = RewriteLayer::new(Rewrite { uri: Some("/v2/".into()), authority: None })
//!     .unwrap()
//!     .matched_prefix("/api/");
//! let svc = ServiceBuilder::new().layer(rewrite).service_fn(|req: Request<()>| async move {
//!     Ok::<_, std::convert::Infallible>(Response::new(req.uri().to_string()))
//! });
//! let res = svc.oneshot(Request::get("/api/users?id=7").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.body(), "/v2/users?id=7");
//! # }
//! ```

mod future;
mod layer;
mod redirect;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::RewriteLayer;
pub use self::redirect::RedirectService;
pub use self::service::{RewriteError, RewriteUri};

#[cfg(test)]
mod tests;
