//! The reference sidecar proxy: it reads Istio's own YAML kinds
//! (`ServiceEntry`, `VirtualService`, `DestinationRule`, `Sidecar`,
//! `PeerAuthentication`, `AuthorizationPolicy`) and stacks the mesh layers in
//! front of hyper servers and clients.
//!
//! Not built yet: this crate holds its place in the workspace.
