//! The retry middleware: Istio's `retries` and route `timeout` as one tower
//! layer, [`RetryLayer`] / [`Retry`].
//!
//! # What it does, in Envoy's terms
//!
//! - **Attempts**: up to `1 + attempts` tries. Each carries
//!   `x-envoy-attempt-count` (1 on the first try), and each retry its
//!   [`Attempt`](mesh_core::context::Attempt) in the request's
//!   [`RequestContext`](mesh_core::context::RequestContext). The first try
//!   gets a context only when it has something to say (a deadline, a slot for
//!   the endpoint), sparing http's extensions map; no context reads as the
//!   first attempt ([`RequestContext::attempt_of`](mesh_core::context::RequestContext::attempt_of)),
//!   as mesh-proxy's readers do.
//! - **Decision**: after each attempt, [`RetryOn`](crate::RetryOn) reads the
//!   classifier's outcome (mesh-core's [`Classify`](mesh_core::classify::Classify)).
//!   Pool overflow and other mesh decisions, and the route timeout, are never
//!   retried.
//! - **Backoff**: Envoy's fully jittered exponential [`Backoff`](crate::Backoff)
//!   before each retry.
//! - **Another endpoint**: the endpoint a failed attempt went to (the
//!   balancer's [`ChosenEndpoint`](mesh_core::context::ChosenEndpoint) in the
//!   response extensions) is added to
//!   [`TriedEndpoints`](mesh_core::context::TriedEndpoints) in the next
//!   attempt's request context; the balancer prefers others.
//! - **Bodies**: a request that may be retried has its body wrapped in
//!   mesh-core's [`ReplayBody`](mesh_core::body::ReplayBody); past the cap the
//!   body streams on once and the request is not retried.
//! - **Budget and limit**: before each retry, the optional
//!   [`SharedLimit`](mesh_core::limit::SharedLimit) (Envoy's `max_retries`) and
//!   [`RetryBudget`](crate::budget::RetryBudget) must grant a slot. Refused,
//!   the last response is returned as is (retry overflow); when the attempts
//!   run out, the last response is returned with the `URX` flag.
//! - **Timeouts**: the per-try timeout bounds each attempt until its response
//!   headers; the overall timeout bounds everything (504 `UT`, error
//!   [`MeshError::RequestTimeout`](mesh_core::MeshError::RequestTimeout)); a
//!   caller's `grpc-timeout` shortens it.
//! - **Hedging**: optionally a second attempt after a delay; the first
//!   acceptable answer wins and the other is dropped (cancelled).
//! - **Readiness**: each retry waits until the inner service is ready; it
//!   never calls an unready service.
//!
//! # How it differs from `tower::retry`
//!
//! tower's `Retry` needs a cloneable request (an HTTP body is not), decides
//! with a hand-written `Policy`, and calls the inner clone without waiting for
//! readiness. This one replays bodies, decides from Istio's `retryOn` over the
//! shared classification, and keeps the per-request state in the future (no
//! lock on the success path; the retry state is one box when the policy can
//! retry).
//!
//! # Example
//!
//! A service that fails twice with 503, then answers 200:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), mesh_core::BoxError> {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use mesh_retry::{RetryBody, RetryLayer, RetryPolicy};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! let calls = Arc::new(AtomicUsize::new(0));
//! let upstream = {
//!     let calls = calls.clone();
//!     service_fn(move |req: Request<RetryBody<Full<Bytes>>>| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         assert_eq!(req.headers()["x-envoy-attempt-count"], (n + 1).to_string().as_str());
//!         async move {
//!             let status = if n < 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!             Ok::<_, mesh_core::BoxError>(Response::builder().status(status).body(()).unwrap())
//!         }
//!     })
//! };
//!
//! let policy = RetryPolicy::new(3, "5xx".parse()?);
//! let svc = ServiceBuilder::new().layer(RetryLayer::new(policy)).service(upstream);
//! let res = svc.oneshot(Request::new(Full::new(Bytes::from("hello")))).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # Ok(())
//! # }
//! ```

mod attempt;
mod future;
mod head;
mod layer;
mod service;
mod shared;

pub use self::future::{ATTEMPT_COUNT_HEADER, ResponseFuture};
pub use self::layer::RetryLayer;
pub use self::service::Retry;
