//! Serde models of the Istio kinds the proxy reads, field for field as Istio
//! writes them. Fields Istio has that the proxy ignores are typed
//! [`Unsupported`](common::Unsupported) and reported as warnings.

pub(crate) mod common;
pub(crate) mod destination_rule;
pub(crate) mod security;
pub(crate) mod service_entry;
pub(crate) mod sidecar;
pub(crate) mod virtual_service;
