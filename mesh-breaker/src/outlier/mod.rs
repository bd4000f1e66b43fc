//! Outlier detection: Envoy's passive health checking, Istio's
//! `outlierDetection`.
//!
//! Each endpoint's responses are classified with [`mesh_core::classify`] and
//! counted per endpoint (atomics only on the request path). An endpoint that
//! returns `consecutive_5xx` 5xx in a row (or `consecutive_gateway_errors`
//! 502/503/504, or, in split mode, `consecutive_local_origin_failures` connect
//! failures, resets and timeouts) is **ejected**: its [`OutlierGate`] is not
//! ready, so a balancer skips it. An ejection lasts `base_ejection_time` ×
//! the number of times the endpoint has been ejected, capped at
//! `max_ejection_time`, and ends at the first sweep (every `interval`) after
//! that time is up; each sweep during which an endpoint stays healthy takes one
//! off its multiplier. Sweeps also run Envoy's success-rate and
//! failure-percentage ejection.
//!
//! The cluster's [`OutlierDetector`] knows all its endpoints and enforces:
//!
//! - **`max_ejection_percent`** with Envoy's current rule: eject only if
//!   `(ejected + 1) / hosts ≤ max%` — at the default 10 % a cluster of fewer
//!   than 10 endpoints ejects nothing — unless `always_eject_one_host` allows
//!   a first ejection anyway.
//! - **Panic mode** (`min_health_percent`, Envoy's `healthy_panic_threshold`):
//!   when fewer endpoints than that percentage are healthy, the gates open and
//!   the balancer spreads over all. With 0 (Istio's setting) there is no panic
//!   mode, and when every endpoint is ejected the [`ClusterHealth`] guard above
//!   the balancer answers at once with
//!   [`MeshError::NoHealthyEndpoint`](mesh_core::MeshError::NoHealthyEndpoint),
//!   503 `UH`.
//!
//! # Stacking
//!
//! ```text
//! ClusterHealth (detector.cluster_layer())      503 UH when all are ejected
//!   └ balancer over Discover<EndpointService<…>>
//!       └ OutlierGate (detector.gate(addr, svc))  not ready while ejected
//!           └ the endpoint's client
//! ```
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use mesh_breaker::outlier::{OutlierDetection, OutlierDetector};
//! use mesh_core::{BoxError, MeshError};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let detector = OutlierDetector::new(OutlierDetection {
//!     max_ejection_percent: 100,
//!     ..OutlierDetection::default()
//! });
//! let addr = "127.0.0.1:8080".parse().unwrap();
//! let broken = tower::service_fn(|_: Request<()>| async {
//!     Ok::<_, BoxError>(Response::builder().status(503).body(()).unwrap())
//! });
//! // A one-endpoint "balancer", guarded.
//! let mut svc = ServiceBuilder::new()
//!     .layer(detector.cluster_layer())
//!     .service(detector.gate(addr, broken));
//!
//! for _ in 0..5 {
//!     let res = svc.ready().await.unwrap().call(Request::new(())).await.unwrap();
//!     assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! }
//! assert!(detector.endpoint(addr).unwrap().ejected);
//! // Every endpoint is ejected: 503 UH at once, without calling the endpoint.
//! let err = svc.ready().await.unwrap().call(Request::new(())).await.unwrap_err();
//! assert!(matches!(MeshError::find(&*err), Some(MeshError::NoHealthyEndpoint)));
//!
//! // 30 s later, at the next 10 s sweep, it is back.
//! tokio::time::sleep(Duration::from_secs(31)).await;
//! assert!(!detector.endpoint(addr).unwrap().ejected);
//! # }
//! ```

mod config;
mod detector;
mod future;
mod layer;
mod service;
#[cfg(test)]
mod tests;

pub(crate) use self::future::OutlierRecorder;

pub use self::config::{FailurePercentage, OutlierDetection, SuccessRate};
pub use self::detector::{EjectionKind, EndpointOutlierState, OutlierDetector, OutlierStats};
pub use self::future::{ClusterFuture, ResponseFuture};
pub use self::layer::{ClusterHealthLayer, OutlierGateLayer};
pub use self::service::{ClusterHealth, OutlierGate};
