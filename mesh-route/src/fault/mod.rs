//! Fault injection (Istio's `fault`, Envoy's fault filter) as a tower layer.
//!
//! For each request the delay and the abort are drawn independently, each
//! with its own percentage (an unset percentage is 0 %: nothing injected).
//! A delayed request waits `fixedDelay` before anything else happens, and its
//! response carries the `DI` flag. An aborted request never reaches the inner
//! service — no upstream is touched: an HTTP abort fails with
//! [`MeshError::FaultAbort`](mesh_core::MeshError::FaultAbort) (the
//! configured status, flag `FI`), a gRPC abort answers HTTP 200 with
//! `grpc-status` and flags `FI` (and `DI` when also delayed). When both are
//! drawn, the delay runs first, then the abort, as in Envoy.
//!
//! Delays use `tokio::time::sleep`: a delay fault needs a tokio runtime with
//! its time driver (as any timeout does).
//!
//! The layer sits before retries and timeouts: injected aborts are not
//! retried and the injected delay does not count against the route timeout
//! (the same caveat as Istio's).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use http::{Request, Response, StatusCode};
//! use mesh_core::MeshError;
//! use mesh_route::fault::FaultLayer;
//! use mesh_route::{AbortFault, AbortStatus, FaultConfig};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! // virtual-service-ratings-test-abort.yaml: `abort: {percent: 100, httpStatus: 500}`
//! let fault = FaultLayer::new(FaultConfig {
//!     delay: None,
//!     abort: Some(AbortFault {
//!         status: AbortStatus::Http(StatusCode::INTERNAL_SERVER_ERROR),
//!         percentage: 100.0,
//!     }),
//! })
//! .unwrap();
//! let svc = ServiceBuilder::new().layer(fault).service_fn(|_: Request<()>| async {
//!     unreachable!("an abort never reaches the upstream");
//!     #[allow(unreachable_code)]
//!     Ok::<Response<String>, std::convert::Infallible>(Response::default())
//! });
//! let err = svc.oneshot(Request::new(())).await.unwrap_err();
//! let mesh = MeshError::find(&*err).unwrap();
//! assert_eq!(mesh.to_response::<String>().status(), 500);
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::FaultLayer;
pub use self::service::Fault;

#[cfg(test)]
mod tests;
