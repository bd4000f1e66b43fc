//! A classic circuit breaker: closed → open → half-open, for library users who
//! want the textbook pattern beside Envoy's outlier detection.
//!
//! The breaker judges outcomes with [`mesh_core::classify`] over a count-based
//! sliding window of the last [`window`](CircuitBreakerConfig::window)
//! requests. With at least [`min_requests`](CircuitBreakerConfig::min_requests)
//! in the window and a failure ratio at or above
//! [`failure_ratio`](CircuitBreakerConfig::failure_ratio), it opens: calls fail
//! at once with [`MeshError::Overloaded`](mesh_core::MeshError::Overloaded)`(`[`CircuitOpen`](mesh_core::Overload::CircuitOpen)`)`,
//! 503 `UO`. After [`open_for`](CircuitBreakerConfig::open_for) it is half-open:
//! [`half_open_probes`](CircuitBreakerConfig::half_open_probes) requests pass;
//! if all succeed it closes with an empty window, if one fails it opens again.
//! The mesh's own refusals (overflow, no healthy upstream…) count neither way.
//!
//! The request path takes no lock and reads the clock only while open. While
//! closed, a request costs one load to be admitted and one `Arc` clone for its
//! response future; a success recorded while the full window holds no failure
//! is three loads and no write, so on the healthy path cores only share the
//! breaker's state, never contend for it.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! use std::time::Duration;
//! use http::{Request, Response};
//! use mesh_breaker::breaker::{BreakerState, CircuitBreakerConfig, CircuitBreakerLayer};
//! use mesh_core::{BoxError, MeshError, Overload};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let breaker = CircuitBreakerLayer::new(CircuitBreakerConfig {
//!     min_requests: 4,
//!     open_for: Duration::from_secs(5),
//!     ..CircuitBreakerConfig::default()
//! });
//! let svc = ServiceBuilder::new().layer(breaker.clone()).service_fn(|_: Request<()>| async {
//!     Ok::<_, BoxError>(Response::builder().status(500).body(()).unwrap())
//! });
//! for _ in 0..4 {
//!     let res = svc.clone().oneshot(Request::new(())).await.unwrap();
//!     assert_eq!(res.status(), 500);
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! let err = svc.clone().oneshot(Request::new(())).await.unwrap_err();
//! assert!(matches!(MeshError::find(&*err), Some(MeshError::Overloaded(Overload::CircuitOpen))));
//!
//! tokio::time::sleep(Duration::from_secs(5)).await;
//! // Half-open: one probe passes (and fails here, so the breaker opens again).
//! assert_eq!(svc.clone().oneshot(Request::new(())).await.unwrap().status(), 500);
//! assert_eq!(breaker.state(), BreakerState::Open);
//! # }
//! ```

mod config;
mod future;
mod layer;
mod service;
mod state;
#[cfg(test)]
mod tests;

pub(crate) use self::state::BreakerRecorder;

pub use self::config::CircuitBreakerConfig;
pub use self::future::ResponseFuture;
pub use self::layer::CircuitBreakerLayer;
pub use self::service::CircuitBreaker;
pub use self::state::{BreakerState, BreakerStats};
