//! Outlier ejection and circuit breaking for the mesh, with Envoy's semantics:
//! per-endpoint outlier detection driven by [`mesh_core::classify`], and
//! connection-pool limits that refuse overflow with 503 `UO`.
//!
//! Not built yet: this crate holds its place in the workspace.
