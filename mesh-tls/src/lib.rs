//! Mutual TLS for the mesh on rustls: SPIFFE workload identities, an mTLS
//! acceptor and connector for hyper, Istio's PeerAuthentication modes, a
//! development CA, certificate rotation and authorization.
//!
//! Not built yet: this crate holds its place in the workspace.
