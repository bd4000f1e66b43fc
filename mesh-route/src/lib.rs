//! Routing for the mesh, with Istio `VirtualService` semantics: request
//! matching, weighted destination splits, mirroring, fault injection and
//! header operations.
//!
//! Not built yet: this crate holds its place in the workspace.
