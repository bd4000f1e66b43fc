//! Connection-pool limits: Istio's `connectionPool`, Envoy's circuit-breaker
//! thresholds.
//!
//! One [`ConnectionPoolLayer`] per cluster (destination service or subset),
//! above the balancer; every [`ConnectionPool`] it makes, and every clone of
//! one, shares the same counters ([`mesh_core::limit::SharedLimit`]):
//!
//! | limit | Istio field | on overflow |
//! |---|---|---|
//! | [`max_requests`](PoolLimits::max_requests) | `http.http2MaxRequests` | refused at once: [`MeshError::Overloaded`](mesh_core::MeshError::Overloaded)`(MaxRequests)`, 503 `UO` |
//! | [`max_pending_requests`](PoolLimits::max_pending_requests) | `http.http1MaxPendingRequests` | refused at once: `Overloaded(MaxPendingRequests)`, 503 `UO` |
//! | [`max_retries`](PoolLimits::max_retries) | `http.maxRetries` | the retry layer does not retry ([`ConnectionPoolLayer::try_acquire_retry`]) |
//! | [`max_connections`](PoolLimits::max_connections) | `tcp.maxConnections` | the connector opens no new connection and fails at once ([`ConnectionLimit`]): `Overloaded(MaxConnections)`, 503 `UO` |
//!
//! A request is *active* from the moment `poll_ready` admits it until its
//! response head arrives (or it fails); it is *pending* while the balancer
//! below is not ready for it. Overflow is never queued and never retried, as
//! in Envoy. Unlike `tower::limit::ConcurrencyLimit`, which waits for a slot,
//! these limits refuse at once.
//!
//! Connections are counted by the connector below the clients, not by the
//! layer: wrap each endpoint's connector in a [`ConnectionLimit`] over the
//! cluster's layer, and every connection holds a slot from the moment it is
//! started until it is closed (an idle keep-alive connection included). Where
//! Envoy would queue an HTTP/1 request that needs a new connection at the
//! limit as pending, the client here fails it at once.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use http::{Request, Response};
//! use mesh_breaker::pool::{ConnectionPoolLayer, PoolLimits};
//! use mesh_core::{BoxError, MeshError, Overload};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! let pool = ConnectionPoolLayer::new(PoolLimits { max_requests: 1, ..PoolLimits::default() });
//! let (tx, rx) = tokio::sync::oneshot::channel::<()>();
//! let rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(rx)));
//! let svc = ServiceBuilder::new().layer(pool.clone()).service_fn(move |_: Request<()>| {
//!     let rx = rx.clone();
//!     async move {
//!         if let Some(rx) = rx.lock().await.take() { let _ = rx.await; }
//!         Ok::<_, BoxError>(Response::new(()))
//!     }
//! });
//!
//! let first = tokio::spawn(svc.clone().oneshot(Request::new(())));
//! tokio::task::yield_now().await;
//! assert_eq!(pool.stats().requests_active, 1);
//! // The second concurrent request is refused at once: 503 UO.
//! let err = svc.clone().oneshot(Request::new(())).await.unwrap_err();
//! assert!(matches!(MeshError::find(&*err), Some(MeshError::Overloaded(Overload::MaxRequests))));
//! tx.send(()).unwrap();
//! first.await.unwrap().unwrap();
//! // With the first one done, there is room again.
//! svc.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(pool.stats().requests_overflow, 1);
//! # }
//! ```

mod connect;
mod future;
mod layer;
mod service;
#[cfg(test)]
mod tests;

pub use self::connect::{ConnectFuture, ConnectionLimit, LimitedConnection};
pub use self::future::ResponseFuture;
pub use self::layer::{ConnectionPoolLayer, PoolLimits, PoolStats};
pub use self::service::ConnectionPool;
