//! The reference sidecar proxy: it reads Istio's own YAML kinds
//! (`ServiceEntry`, `VirtualService`, `DestinationRule`, `Sidecar`,
//! `PeerAuthentication`, `AuthorizationPolicy`) and stacks the mesh layers —
//! routing (mesh-route), retries and timeouts (mesh-retry), connection-pool
//! limits and outlier ejection (mesh-breaker), balancing (mesh-lb) — in front
//! of hyper servers and clients.
//!
//! The binary is `mesh-proxy`; this library holds its parts so that tests and
//! other programs can load configs the way the proxy does.
//!
//! ```
//! use std::path::Path;
//!
//! let yaml = r#"
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: reviews}
//! spec:
//!   hosts: [reviews]
//!   http:
//!   - route:
//!     - destination: {host: reviews, subset: v1}
//!       weight: -5
//! "#;
//! let loaded = mesh_proxy::config::load_str(Path::new("vs.yaml"), yaml);
//! let error = loaded.errors().next().unwrap();
//! assert_eq!(error.to_string(), "vs.yaml:10:15: VirtualService reviews: spec.http[0].route[0].weight: must not be negative, got -5");
//! ```

mod access_log;
mod admin;
mod body;
mod capture;
mod cluster;
pub mod config;
mod demo;
pub mod dns;
mod framing;
mod graceful;
mod headers;
mod hyper_service;
pub mod iptables;
mod metrics;
mod normalize;
mod observe;
mod proxy;
mod run;
mod server;
mod shared_service;
mod tcp;
mod upstream;

pub use self::capture::OutboundPolicy;
pub use self::demo::demo;
#[doc(hidden)]
pub use self::framing::{fuzz_guard, fuzz_guard_bound};
#[doc(hidden)]
pub use self::normalize::fuzz_normalize;
pub use self::proxy::Proxy;
pub use self::run::{RunOptions, Running, StartOptions, load_identity, run, start};
pub use self::server::{HEADER_READ_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS, MAX_HEADER_BYTES};
