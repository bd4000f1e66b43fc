//! Request mirroring (Istio's `mirror` + `mirrorPercentage`, and `mirrors`)
//! as a tower layer.
//!
//! For each mirror target a draw decides whether this request is copied
//! there (an absent percentage is 100 %). A copy goes to the target's
//! service with `-shadow` appended to its `Host`/`:authority` (`reviews:9080`
//! → `reviews-shadow:9080`, Envoy's behaviour; Istio 1.28+ turns the suffix
//! off, see [`MirrorLayer::shadow_host_suffix`]). It is fire-and-forget: sent
//! from a spawned task, its response dropped; it never delays, fails or
//! changes the primary request.
//!
//! - **Bodies.** A mirrored request's body is wrapped in mesh-core's
//!   [`ReplayBody`](mesh_core::body::ReplayBody): the primary streams it
//!   as usual while a copy of up to the cap (64 KiB by default) is kept. The
//!   copy is sent only after the primary has read the whole body — the shadow
//!   never reads the client's body itself, so a stalled shadow cannot stall
//!   the primary. A body over the cap is not mirrored (counted in
//!   [`MirrorStats::too_large`]), as Envoy abandons such shadows.
//! - **Bound.** Copies in flight are bounded by a
//!   [`SharedLimit`](mesh_core::limit::SharedLimit) (1024 by default); a copy
//!   over the bound is dropped and counted in [`MirrorStats::overflow`]. Each
//!   copy also has a deadline (15 s by default) so that a hanging shadow frees
//!   its slot.
//! - **Runtime.** Copies are spawned on the current tokio runtime; outside one
//!   nothing is mirrored (counted, never a panic).
//!
//! The inner service receives [`RouteBody`](crate::RouteBody): the original
//! body, or the primary's clone of the replayable one.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use http_body_util::Empty;
//! use mesh_route::mirror::MirrorLayer;
//! use mesh_route::RouteBody;
//! use tokio::sync::mpsc;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! type Body = RouteBody<Empty<bytes::Bytes>>;
//! let (tx, mut rx) = mpsc::unbounded_channel();
//! let shadow = tower::service_fn(move |req: Request<Body>| {
//!     tx.send(req.headers()["host"].clone()).unwrap();
//!     async { Ok::<_, Infallible>(Response::new(())) }
//! });
//! let mirror = MirrorLayer::new().with_target(shadow, Some(100.0));
//! let svc = ServiceBuilder::new()
//!     .layer(mirror)
//!     .service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new("primary")) });
//! let req = Request::get("/").header("host", "reviews:9080").body(Empty::new()).unwrap();
//! assert_eq!(*svc.oneshot(req).await.unwrap().body(), "primary");
//! assert_eq!(rx.recv().await.unwrap(), "reviews-shadow:9080");
//! # }
//! ```

pub(crate) mod layer;
mod service;
mod stats;

pub use self::layer::MirrorLayer;
pub use self::service::Mirror;
pub use self::stats::MirrorStats;

#[cfg(test)]
mod tests;
