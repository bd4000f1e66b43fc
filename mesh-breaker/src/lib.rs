//! Outlier ejection and circuit breaking for the mesh, with Envoy's semantics.
//!
//! - [`outlier`]: per-endpoint outlier detection (consecutive 5xx, gateway
//!   errors, local-origin failures, success rate, failure percentage) driven by
//!   [`mesh_core::classify`]; an ejected endpoint is simply not ready to the
//!   balancer; `max_ejection_percent`, `always_eject_one_host` and the panic
//!   threshold are enforced per cluster.
//! - [`pool`]: connection-pool limits (Envoy's circuit-breaker thresholds):
//!   maximum requests, pending requests, retries and connections per cluster;
//!   overflow is refused at once with 503 `UO`.
//! - [`breaker`]: a classic closed / open / half-open circuit breaker over a
//!   sliding window of outcomes.
//!
//! Every layer reads [`mesh_core::classify`] and answers with
//! [`mesh_core::MeshError`]; every counter is readable for metrics and admin
//! pages (`stats()`), and state changes are `tracing` events.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use http::{Request, Response};
//! use mesh_breaker::outlier::{OutlierDetection, OutlierDetector};
//! use mesh_core::BoxError;
//! use tower::ServiceExt;
//!
//! let detector = OutlierDetector::new(OutlierDetection::default());
//! let endpoint = tower::service_fn(|_: Request<()>| async {
//!     Ok::<_, BoxError>(Response::new(()))
//! });
//! let gate = detector.gate("127.0.0.1:9080".parse().unwrap(), endpoint);
//! let res = gate.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(detector.stats().hosts, 0, "the gate is gone, so is the endpoint");
//! # }
//! ```

pub mod body;
pub mod breaker;
pub mod outlier;
pub mod pool;
