//! Retries for the mesh, with Istio's `retries` semantics: `retryOn`
//! conditions read from [`mesh_core::classify`], a retry budget, exponential
//! backoff with jitter, per-try and overall timeouts, and hedging. Request
//! bodies are replayed through [`mesh_core::body::ReplayBody`].
//!
//! Not built yet: this crate holds its place in the workspace.
