//! The route timeout alone: Istio's `timeout` for a route without retries,
//! as a tower layer, [`TimeoutLayer`] / [`Timeout`].
//!
//! [`RetryLayer`](crate::RetryLayer) already bounds all of a request's
//! attempts by the route timeout; this layer is for a stack that makes one
//! attempt. Beside `tower::timeout`, it:
//!
//! - fails with [`MeshError::RequestTimeout`](mesh_core::MeshError::RequestTimeout)
//!   (504, flag `UT`), the error the retry layer gives;
//! - honours the caller's deadline (`grpc-timeout` by default): it shortens
//!   the timeout, never lengthens it, and alone it is the timeout;
//! - tells the layers below the request's deadline in its
//!   [`RequestContext`](mesh_core::context::RequestContext), so that outlier
//!   detection counts a request dropped at it as a timeout of its endpoint
//!   (on by default);
//! - makes its timer only when the response is not at hand on the first
//!   poll, so an answer that is ready at once never touches the timer wheel.
//!
//! Where it differs from Envoy's route timeout (as the retry layer's does):
//! it bounds the wait for the response head, as `tower::timeout` does
//! (Envoy's runs until the response is complete); a caller's deadline of
//! zero is a timeout at once (Envoy reads `x-envoy-upstream-rq-timeout-ms: 0`
//! as none); and a header's deadline never lengthens the route's (Envoy's
//! `x-envoy-upstream-rq-timeout-ms` replaces it).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use http::{Request, Response};
//! use mesh_core::MeshError;
//! use mesh_retry::timeout::TimeoutLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! let slow = service_fn(|_req: Request<()>| async {
//!     tokio::time::sleep(Duration::from_secs(10)).await;
//!     Ok::<_, mesh_core::BoxError>(Response::new(()))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_secs(2)))
//!     .service(slow);
//!
//! let err = svc.clone().oneshot(Request::new(())).await.unwrap_err();
//! assert!(matches!(MeshError::find(&*err), Some(MeshError::RequestTimeout(_))));
//!
//! // A caller's shorter deadline wins.
//! let req = Request::builder().header("grpc-timeout", "100m").body(()).unwrap();
//! let started = tokio::time::Instant::now();
//! svc.oneshot(req).await.unwrap_err();
//! assert_eq!(started.elapsed(), Duration::from_millis(100));
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::TimeoutLayer;
pub use self::service::Timeout;
