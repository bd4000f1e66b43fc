//! [`Shared`]: one service (a [`Balance`](crate::Balance), which is not
//! `Clone`) used through many cheap handles, without a task.
//!
//! tower's answer to sharing a service that is not `Clone` is
//! `tower::buffer::Buffer`: a worker task owns the service and each request
//! goes to it over a channel and comes back over another. That is a task
//! switch, a channel send, a oneshot and a boxed acquire future per handle
//! clone, on every request. [`Shared`] instead keeps the service behind a
//! lock that each handle takes for `poll_ready` and `call`, in the caller's
//! own task:
//!
//! - **Readiness** is the inner service's. The inner service is always polled
//!   with one waker of the shared state, which wakes every handle waiting for
//!   readiness: the inner service keeps only the last waker it was given, so
//!   handing it each caller's own would lose the wake-ups of all but one.
//! - **Between a handle's `poll_ready` and its `call`** another handle may
//!   have used up the readiness with a call, or found the service no longer
//!   ready with a poll (a balancer's discovery can remove its last ready
//!   endpoint): only with several threads. An epoch that moves at every call
//!   and every unready poll tells: if it moved, `call` polls the inner
//!   service again, and if it is no longer ready, the response future waits
//!   for readiness before calling, so an unready service is never called.
//! - Every waiting handle is woken when the service may be ready, and all but
//!   one may find it taken and wait again: cheap while the service is rarely
//!   unready, as a balancer with healthy endpoints is.
//! - The lock is held only for a `poll_ready` or a `call` (the balancer's
//!   pick), never across an await; with one thread it is never contended.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mesh_core::BoxError> {
//! use mesh_core::discover::{DiscoverExt, EndpointSet};
//! use mesh_core::Endpoint;
//! use mesh_lb::{Balance, LoadBalancer, Shared};
//! use tower::{service_fn, ServiceExt};
//!
//! let set = EndpointSet::from_endpoints([Endpoint::new("127.0.0.1:8001".parse()?)]);
//! let discover = set.discover().with_services(|ep: &Endpoint| {
//!     let addr = ep.addr();
//!     service_fn(move |_req: http::Request<()>| async move {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(addr))
//!     })
//! });
//! // One balancer, any number of handles (one per route, per request...).
//! let lb = Shared::new(Balance::new(discover, LoadBalancer::least_request())?);
//! let res = lb.clone().oneshot(http::Request::new(())).await?;
//! assert_eq!(res.body().port(), 8001);
//! # Ok(()) }
//! ```

mod future;
mod service;
mod wake;

pub use self::future::ResponseFuture;
pub use self::service::{Shared, SharedLayer};

#[cfg(test)]
mod tests;
