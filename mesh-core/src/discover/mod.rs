//! Discovery: sources of endpoint changes over time, consumable as
//! [`tower::discover::Discover`].
//!
//! A source yields [`Change`]s keyed by endpoint address:
//! `Insert(addr, Endpoint)` when an endpoint appears or its metadata changes,
//! `Remove(addr)` when it goes. Sources here:
//!
//! - [`StaticEndpoints`]: a fixed list.
//! - [`EndpointSet`]: a set changed at run time through a cloneable handle
//!   (DNS re-resolution, file reload and tests drive it); each
//!   [`EndpointSet::discover`] stream sees every change.
//!
//! Adaptors from [`DiscoverExt`]: [`subset`](DiscoverExt::subset) keeps only
//! the endpoints a [`LabelSelector`] matches, and
//! [`with_services`](DiscoverExt::with_services) turns each endpoint into the
//! service that talks to it, an [`EndpointService`], which is what balancers
//! consume.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use futures_util::StreamExt;
//! use mesh_core::discover::{DiscoverExt, EndpointSet};
//! use mesh_core::{Endpoint, LabelSelector};
//! use tower::discover::Change;
//!
//! let set = EndpointSet::new();
//! let mut v2 = set.discover().subset(LabelSelector::new([("version", "v2")]));
//! set.insert(Endpoint::new("127.0.0.1:9001".parse().unwrap()).with_label("version", "v2"));
//! match v2.next().await {
//!     Some(Ok(Change::Insert(addr, ep))) => assert_eq!(addr.port(), 9001),
//!     other => panic!("{other:?}"),
//! }
//! # }
//! ```

mod dynamic;
mod fixed;
mod services;
mod subset;

use std::net::SocketAddr;

use futures_core::TryStream;
pub use tower::discover::{Change, Discover};

pub use self::dynamic::{DynamicEndpoints, EndpointSet};
pub use self::fixed::StaticEndpoints;
pub use self::services::{EndpointService, WithServices};
pub use self::subset::Subset;
use crate::endpoint::{Endpoint, LabelSelector};

/// A change to a set of endpoints.
pub type EndpointChange = Change<SocketAddr, Endpoint>;

/// Adaptors for streams of [`EndpointChange`]s.
pub trait DiscoverExt: TryStream<Ok = EndpointChange> + Sized {
    /// Keeps only the endpoints `selector` matches. An endpoint whose labels
    /// change so that it no longer matches is removed.
    fn subset(self, selector: LabelSelector) -> Subset<Self> {
        Subset::new(self, selector)
    }

    /// Makes a service for each endpoint with `make`, giving a
    /// [`Discover`] of [`EndpointService`]s.
    fn with_services<S, F>(self, make: F) -> WithServices<Self, F>
    where
        F: FnMut(&Endpoint) -> S,
    {
        WithServices::new(self, make)
    }
}

impl<D: TryStream<Ok = EndpointChange>> DiscoverExt for D {}
