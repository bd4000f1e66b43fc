//! Retries for the mesh, with Istio's `retries` semantics, as a tower layer.
//!
//! An Istio route's `retries` (`attempts`, `perTryTimeout`, `retryOn`,
//! `backoff`) and `timeout` become a [`RetryPolicy`]; [`RetryLayer`] applies it
//! above a balancer. Retry decisions read mesh-core's
//! [classification](mesh_core::classify); request bodies are replayed through
//! mesh-core's [`ReplayBody`](mesh_core::body::ReplayBody); retries are
//! bounded by a [budget] (Envoy's concurrency form or tower's rate
//! form) and by an optional [`SharedLimit`](mesh_core::limit::SharedLimit)
//! shared with the connection-pool limits; each retry prefers an endpoint not
//! yet tried. Per-try and overall timeouts, a caller's `grpc-timeout`, and
//! hedging are in the same layer, because they are all decisions about the
//! same attempts.
//!
//! | module | what |
//! |---|---|
//! | [`retry`] | [`RetryLayer`], [`Retry`], [`ResponseFuture`](retry::ResponseFuture) |
//! | [`RetryPolicy`], [`IstioRetries`] | the config, and Istio's fields mapped onto it |
//! | [`RetryOn`] | `retryOn` parsed, and the retry decision |
//! | [`Backoff`] | Envoy's fully jittered exponential backoff |
//! | [`budget`] | [`ConcurrencyBudget`](budget::ConcurrencyBudget) (Envoy), [`TpsBudget`](budget::TpsBudget) (tower) |
//! | [`deadline`] | reading a caller's deadline |
//! | [`RetryStats`] | Envoy's `upstream_rq_retry*` counters |
//! | [`timeout`] | [`TimeoutLayer`], [`Timeout`]: the route timeout alone, for a stack without retries |
//!
//! # Example
//!
//! An Istio route with `retries: {attempts: 3, retryOn: 5xx}` and `timeout: 2s`,
//! with Istio's default retry budget shared by the destination:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Empty;
//! use mesh_retry::budget::ConcurrencyBudget;
//! use mesh_retry::{IstioRetries, RetryBody, RetryLayer, RetryPolicy};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! let retries = IstioRetries { attempts: Some(3), retry_on: Some("5xx".into()), ..Default::default() };
//! let policy = RetryPolicy::from_istio(Some(&retries), Some(Duration::from_secs(2)))?;
//! let budget = Arc::new(ConcurrencyBudget::default()); // 20 %, min 3
//! let layer = RetryLayer::new(policy).budget(budget);
//! let stats = layer.stats();
//!
//! let upstream = service_fn(|req: Request<RetryBody<Empty<Bytes>>>| async move {
//!     let first = req.headers()["x-envoy-attempt-count"] == "1";
//!     let status = if first { StatusCode::BAD_GATEWAY } else { StatusCode::OK };
//!     Ok::<_, mesh_core::BoxError>(Response::builder().status(status).body(()).unwrap())
//! });
//! let svc = ServiceBuilder::new().layer(layer).service(upstream);
//!
//! let res = svc.oneshot(Request::new(Empty::new())).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(stats.retries(), 1);
//! # Ok(())
//! # }
//! ```

mod backoff;
mod body;
pub mod budget;
pub mod deadline;
mod error;
mod policy;
pub mod retry;
mod retry_on;
mod stats;
pub mod timeout;

pub use self::backoff::Backoff;
pub use self::body::RetryBody;
pub use self::error::ConfigError;
pub use self::policy::{IstioRetries, RetryPolicy};
pub use self::retry::{ATTEMPT_COUNT_HEADER, Retry, RetryLayer};
pub use self::retry_on::{RATELIMITED_HEADER, RetryCondition, RetryOn};
pub use self::stats::RetryStats;
pub use self::timeout::{Timeout, TimeoutLayer};
