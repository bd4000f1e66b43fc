//! Load balancing for the mesh: Envoy's balancers (round robin, random, least
//! request, ring hash, Maglev) as tower `Service`s over the endpoint services a
//! [`mesh_core::discover`] source yields.
//!
//! Not built yet: this crate holds its place in the workspace until the
//! balancers land.
