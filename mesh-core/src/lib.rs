//! The vocabulary every mesh crate speaks. It holds no feature logic; it names
//! the things the feature crates (balancing, outlier ejection, retries,
//! routing, mTLS) pass between each other:
//!
//! - [`classify`]: one judgement of each request — success, or a failure of an
//!   Envoy kind (5xx, gateway error, connect failure, reset, refused stream,
//!   timeout, gRPC status) — read by retry, outlier ejection and metrics.
//! - [`MeshError`] and [`ResponseFlags`]: what the mesh itself decides (timeout,
//!   overflow, no healthy endpoint…), the status a client sees and Envoy's
//!   response flag (`UT`, `UO`, `UH`…).
//! - [`Endpoint`] and [`discover`]: endpoints with labels, weight and locality;
//!   sources of endpoint changes usable as `tower::discover::Discover`; subsets.
//! - [`body::ReplayBody`]: a request body that can be sent again (retries,
//!   mirrors), with a bounded copy.
//! - [`context`]: typed request extensions (client address, peer identity,
//!   route name, attempt, tried and chosen endpoints).
//! - [`limit::SharedLimit`]: a counter with a maximum shared across layers
//!   (Envoy's circuit-breaker thresholds; retries in flight).
//!
//! # Example
//!
//! An error from deep in a stack becomes the response a client sees, and the
//! same error is classified the way retry and outlier detection will read it:
//!
//! ```
//! use mesh_core::classify::{Classify, Failure, HttpClassifier, Outcome};
//! use mesh_core::{BoxError, MeshError, ResponseFlag};
//!
//! let err: BoxError = MeshError::NoHealthyEndpoint.into();
//!
//! let mesh = MeshError::find(&*err).expect("a mesh error");
//! let res = mesh.to_response::<String>();
//! assert_eq!(res.status(), 503);
//! assert_eq!(res.headers()["x-mesh-response-flags"], "UH");
//!
//! let outcome = HttpClassifier.classify_error(&*err);
//! assert_eq!(outcome, Outcome::Failure(Failure::Mesh(ResponseFlag::NoHealthyUpstream)));
//! ```

pub mod body;
pub mod classify;
pub mod context;
pub mod discover;
mod endpoint;
mod error;
mod flags;
pub mod limit;
mod ready_oneshot;

pub use self::endpoint::{Endpoint, LabelSelector, Labels, Locality};
pub use self::error::{BoxError, MeshError, OVERLOADED_HEADER, Overload};
pub use self::flags::{RESPONSE_FLAGS_HEADER, ResponseFlag, ResponseFlags, UnknownFlag};
pub use self::ready_oneshot::ReadyOneshot;
