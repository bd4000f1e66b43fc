//! Load balancing for the mesh: Envoy's balancers as tower `Service`s over the
//! endpoint services a [`mesh_core::discover`] source yields.
//!
//! | Istio `loadBalancer` | here | pick cost |
//! |---|---|---|
//! | `simple: ROUND_ROBIN` | [`LoadBalancer::RoundRobin`]: strict rotation; weighted endpoints interleaved earliest-deadline-first | O(1); weighted O(log n) |
//! | `simple: RANDOM` | [`LoadBalancer::Random`]: (weighted) random | O(1); weighted O(log n) |
//! | `simple: LEAST_REQUEST` (Istio's default) | [`LoadBalancer::LeastRequest`]: fewest in flight of two random choices; Envoy's `weight / (active + 1)^bias` schedule when weights differ | O(1); weighted O(log n) |
//! | — (tower, Linkerd) | [`LoadBalancer::PeakEwma`]: peak EWMA latency × in flight, two choices | O(1) |
//! | `consistentHash.ringHash` | [`LoadBalancer::RingHash`]: Envoy's ketama ring, `minimumRingSize` | O(log n) |
//! | `consistentHash.maglev` | [`LoadBalancer::Maglev`]: Maglev table, `tableSize` | O(1) |
//!
//! Hash keys ([`HashKey`]): a header, a cookie (generated and set on the
//! response when absent and a TTL is given), the source IP, a query parameter;
//! a request without its key goes to a random endpoint.
//!
//! A balancer never calls an endpoint that has not returned `Ready`, applies
//! endpoint changes while requests are in flight, and fails fast with
//! [`mesh_core::MeshError::NoHealthyEndpoint`] (503, `UH`) when it has no
//! endpoint. Subsets (DestinationRule `subsets`) are a discovery filter:
//! [`DiscoverExt::subset`](mesh_core::discover::DiscoverExt::subset).
//!
//! # Example
//!
//! Least request over a changing set of endpoints:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mesh_core::BoxError> {
//! use mesh_core::discover::{DiscoverExt, EndpointSet};
//! use mesh_core::Endpoint;
//! use mesh_lb::{Balance, LoadBalancer};
//! use tower::{service_fn, Service, ServiceExt};
//!
//! let set = EndpointSet::from_endpoints([Endpoint::new("127.0.0.1:8001".parse()?)]);
//! let discover = set.discover().with_services(|ep: &Endpoint| {
//!     let addr = ep.addr();
//!     service_fn(move |_req: http::Request<()>| async move {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(addr))
//!     })
//! });
//! let mut lb = Balance::new(discover, LoadBalancer::least_request())?;
//! let res = lb.ready().await?.call(http::Request::new(())).await?;
//! assert_eq!(res.body().port(), 8001);
//!
//! // Swap the endpoint while the balancer runs.
//! set.replace([Endpoint::new("127.0.0.1:8002".parse()?)]);
//! let res = lb.ready().await?.call(http::Request::new(())).await?;
//! assert_eq!(res.body().port(), 8002);
//! # Ok(()) }
//! ```

mod balance;
mod config;
mod hash_key;
mod pick;
mod ready_set;
mod rng;
pub mod shared;
mod stats;

pub use self::balance::{Balance, BalanceLayer, ResponseFuture};
pub use self::config::{
    ConfigError, LeastRequest, LoadBalancer, MAX_MAGLEV_TABLE, MAX_RING_SIZE, Maglev, PeakEwma,
    RingHash,
};
pub use self::hash_key::{CookieKey, HashKey};
pub use self::shared::{Shared, SharedLayer};
