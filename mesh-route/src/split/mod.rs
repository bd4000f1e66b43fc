//! Weighted traffic split (the `route` list of an Istio HTTP route, Envoy's
//! `WeightedCluster`).
//!
//! [`Split`] holds one service per destination with its relative weight:
//! each request goes to destination *i* with probability
//! `weight_i / sum(weights)` — one random draw per request, so retries below
//! the split stay on the destination picked. A lone destination takes every
//! request whatever its weight; among several, a weight of 0 gets nothing,
//! and all weights 0 is refused ("total destination weight = 0", as Istio's
//! validation). Per-destination header operations run only on the
//! destination picked.
//!
//! The split is a terminal service over many services (like
//! `tower::steer`), so it has no `Layer`: the services are its input.
//! Readiness: the destination is only known in `call`, so `poll_ready` is
//! always ready and `call` sends the request to a **clone** of the picked
//! service: called at once when the clone is ready at once (asked with a
//! no-op waker, there being no task at hand), otherwise driven to readiness
//! in the response future, as `oneshot` does. A slow or unready
//! destination then delays only the requests sent to it, instead of
//! blocking the whole split in `poll_ready` (which is what `tower::steer`
//! does, as it polls every service); the services are expected to be cheap
//! to clone (handles on shared balancers and pools, as the proxy's are).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use http::{Request, Response};
//! use mesh_route::Split;
//! use tower::ServiceExt;
//!
//! let v = |name: &'static str| tower::service_fn(move |_: Request<()>| async move {
//!     Ok::<_, std::convert::Infallible>(Response::new(name))
//! });
//! // virtual-service-reviews-80-20.yaml
//! let split = Split::new([(v("v1"), 80), (v("v2"), 20)]).unwrap();
//! let res = split.oneshot(Request::new(())).await.unwrap();
//! assert!(["v1", "v2"].contains(res.body()));
//! # }
//! ```

mod service;

pub use self::service::Split;

#[cfg(test)]
mod tests;
