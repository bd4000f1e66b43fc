//! Request context: typed request extensions that layers pass down the stack.
//!
//! What the mesh layers learn about a request on its way down travels in one
//! extension, [`RequestContext`]: each layer reads or fills its field of the
//! one value instead of inserting an extension of its own, because every
//! extension costs `http::Extensions` an allocation (the first one three).
//! Who sets what:
//!
//! | field of [`RequestContext`] | set by | read by |
//! |---|---|---|
//! | [`route`](RequestContext::route) ([`RouteName`]) | the router | metrics, access logs |
//! | [`attempt`](RequestContext::attempt) ([`Attempt`]) | the retry layer, on retries (absent context: the first) | endpoint clients and access logs (mesh-proxy reports it per request) |
//! | [`tried`](RequestContext::tried) ([`TriedEndpoints`]) | the retry layer | the balancer (prefer an untried endpoint) |
//! | [`deadline`](RequestContext::deadline) ([`AttemptDeadline`]) | the retry layer (per-try or overall timeout) | outlier detection: an attempt dropped at its deadline timed out |
//! | [`slot`](RequestContext::slot) ([`EndpointSlot`]) | the retry layer (empty, when a per-try timeout may drop an attempt it can retry), filled by the balancer | the retry layer, when an attempt timed out |
//! | [`endpoint`](RequestContext::endpoint) ([`ChosenEndpoint`]) | the balancer, when the request has a context | endpoint clients that connect by it |
//!
//! What the connection knows is set once per request by the server, as
//! extensions of their own:
//!
//! | extension | set by | read by |
//! |---|---|---|
//! | [`ClientAddr`] | the server accepting the connection (mesh-proxy: only while a cluster hashes on the source IP) | source-IP hashing |
//! | [`PeerIdentity`] | the mTLS acceptor | authorization, `x-forwarded-client-cert` |
//! | [`ChosenEndpoint`] (in the response) | the balancer | the retry layer, access logs |
//!
//! An error has no extensions, so a balancer names the endpoint that failed
//! by wrapping the error in an [`EndpointError`]; classification and
//! `MeshError::find` see through it.
//!
//! ```
//! use mesh_core::context::{Attempt, RequestContext, RouteName};
//!
//! let mut req = http::Request::new(());
//! // No context yet: the first attempt of an unrouted request.
//! assert_eq!(RequestContext::attempt_of(req.extensions()), Attempt::FIRST);
//! RequestContext::get_mut(req.extensions_mut()).route = Some(RouteName("reviews-v2".into()));
//! let ctx = RequestContext::get(req.extensions()).unwrap();
//! assert_eq!(ctx.route.as_ref().unwrap().to_string(), "reviews-v2");
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};

use http::Extensions;

/// What the mesh layers know about one attempt of a request, in one request
/// extension (see the [module docs](self) for who sets each field).
///
/// Read it with [`RequestContext::get`]; fill a field with
/// [`RequestContext::get_mut`], which inserts an empty context on first use.
/// A request without one is the first attempt of an unrouted request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestContext {
    /// The route that matched.
    pub route: Option<RouteName>,
    /// Which attempt this request is.
    pub attempt: Attempt,
    /// Endpoints earlier attempts went to.
    pub tried: TriedEndpoints,
    /// When this attempt times out.
    pub deadline: Option<AttemptDeadline>,
    /// Where the balancer writes the endpoint it chose, for the retry layer.
    pub slot: Option<EndpointSlot>,
    /// The endpoint the balancer chose.
    pub endpoint: Option<ChosenEndpoint>,
}

impl RequestContext {
    /// The context of a request (`req.extensions()`), if a layer set one.
    #[inline]
    pub fn get(extensions: &Extensions) -> Option<&RequestContext> {
        extensions.get::<RequestContext>()
    }

    /// The context of a request (`req.extensions_mut()`), inserted empty if
    /// there is none yet.
    #[inline]
    pub fn get_mut(extensions: &mut Extensions) -> &mut RequestContext {
        extensions.get_or_insert_default::<RequestContext>()
    }

    /// Which attempt a request is ([`Attempt::FIRST`] without a context).
    #[inline]
    pub fn attempt_of(extensions: &Extensions) -> Attempt {
        Self::get(extensions).map_or(Attempt::FIRST, |c| c.attempt)
    }
}

/// The address of the client that opened the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

/// The authenticated identity of the peer (a SPIFFE ID such as
/// `spiffe://cluster.local/ns/default/sa/web`), set after an mTLS handshake.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerIdentity(pub Arc<str>);

impl PeerIdentity {
    /// The identity as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// The name of the route that matched the request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RouteName(pub Arc<str>);

impl fmt::Display for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Which attempt this request is: 1 for the first try, 2 for the first
/// retry, and so on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attempt(pub NonZeroU32);

impl Attempt {
    /// The first attempt.
    pub const FIRST: Attempt = Attempt(NonZeroU32::MIN);

    /// The attempt number, from 1.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The attempt after this one.
    #[must_use]
    pub fn next(self) -> Attempt {
        Attempt(self.0.saturating_add(1))
    }

    /// Whether this is a retry (any attempt after the first).
    pub fn is_retry(self) -> bool {
        self.0.get() > 1
    }
}

impl Default for Attempt {
    fn default() -> Self {
        Attempt::FIRST
    }
}

/// Endpoints earlier attempts of this request went to; a balancer prefers
/// others (Envoy's `previous_hosts` retry predicate).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TriedEndpoints(Vec<SocketAddr>);

impl TriedEndpoints {
    /// Records an endpoint as tried.
    pub fn push(&mut self, addr: SocketAddr) {
        if !self.0.contains(&addr) {
            self.0.push(addr);
        }
    }

    /// Whether `addr` was tried.
    pub fn contains(&self, addr: &SocketAddr) -> bool {
        self.0.contains(addr)
    }

    /// The tried endpoints, in order.
    pub fn as_slice(&self) -> &[SocketAddr] {
        &self.0
    }

    /// Whether nothing was tried yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The endpoint the balancer chose for this request: in the request's
/// [`RequestContext`] for the endpoint's client, and as an extension of the
/// response for the layers above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChosenEndpoint(pub SocketAddr);

/// When the current attempt times out (the earlier of its per-try timeout and
/// the request's overall timeout). An endpoint layer whose call is dropped at
/// or after this instant knows the endpoint timed out, as Envoy's outlier
/// detector counts it; dropped earlier, the caller just went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AttemptDeadline(pub tokio::time::Instant);

/// A place for the balancer to write the endpoint it chose, shared with
/// whoever put it in the request: an attempt dropped by a per-try timeout has
/// neither a response nor an error to carry [`ChosenEndpoint`], yet its retry
/// must avoid the endpoint that hung.
#[derive(Clone, Debug, Default)]
pub struct EndpointSlot(Arc<OnceLock<SocketAddr>>);

/// Two slots are equal when they are the same slot.
impl PartialEq for EndpointSlot {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for EndpointSlot {}

impl EndpointSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the chosen endpoint (the first write wins).
    pub fn set(&self, addr: SocketAddr) {
        let _ = self.0.set(addr);
    }

    /// The chosen endpoint, once a balancer wrote it.
    pub fn get(&self) -> Option<SocketAddr> {
        self.0.get().copied()
    }
}

/// An error from the endpoint a balancer chose, naming it (so a retry can
/// avoid it even when it answered with an error, not a response).
#[derive(Debug)]
pub struct EndpointError {
    addr: SocketAddr,
    source: crate::BoxError,
}

impl EndpointError {
    /// Wraps `source`, an error from the endpoint at `addr`.
    pub fn new(addr: SocketAddr, source: impl Into<crate::BoxError>) -> Self {
        EndpointError {
            addr,
            source: source.into(),
        }
    }

    /// The endpoint that failed.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Finds an `EndpointError` in an error or its chain of sources.
    pub fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a EndpointError> {
        let mut next = Some(err);
        while let Some(err) = next {
            if let Some(found) = err.downcast_ref::<EndpointError>() {
                return Some(found);
            }
            next = err.source();
        }
        None
    }
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "endpoint {}: {}", self.addr, self.source)
    }
}

impl StdError for EndpointError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_and_written_once() {
        let slot = EndpointSlot::new();
        let seen_by_balancer = slot.clone();
        assert_eq!(slot.get(), None);
        seen_by_balancer.set("10.0.0.1:80".parse().unwrap());
        seen_by_balancer.set("10.0.0.2:80".parse().unwrap());
        assert_eq!(slot.get(), Some("10.0.0.1:80".parse().unwrap()));
    }

    #[test]
    fn endpoint_errors_name_the_endpoint_and_keep_the_cause() {
        let cause = crate::MeshError::ConnectFailure(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
        );
        let err: crate::BoxError = EndpointError::new("10.0.0.1:80".parse().unwrap(), cause).into();
        assert_eq!(EndpointError::find(&*err).unwrap().addr().port(), 80);
        assert!(matches!(
            crate::MeshError::find(&*err),
            Some(crate::MeshError::ConnectFailure(_))
        ));
        assert_eq!(
            crate::classify::Failure::from_error(&*err),
            crate::classify::Failure::ConnectFailure
        );
        assert!(err.to_string().starts_with("endpoint 10.0.0.1:80: "));
    }

    #[test]
    fn attempts_count_from_one() {
        let a = Attempt::default();
        assert_eq!(a.get(), 1);
        assert!(!a.is_retry());
        assert_eq!(a.next().get(), 2);
        assert!(a.next().is_retry());
    }

    #[test]
    fn tried_endpoints_are_a_set_in_order() {
        let mut t = TriedEndpoints::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        t.push(a);
        t.push(b);
        t.push(a);
        assert_eq!(t.as_slice(), &[a, b]);
        assert!(t.contains(&b));
    }

    #[test]
    fn one_context_per_request_filled_in_place() {
        let mut req = http::Request::new(());
        assert!(RequestContext::get(req.extensions()).is_none());
        assert_eq!(RequestContext::attempt_of(req.extensions()), Attempt::FIRST);
        RequestContext::get_mut(req.extensions_mut()).route = Some(RouteName("r".into()));
        RequestContext::get_mut(req.extensions_mut()).attempt = Attempt::FIRST.next();
        let ctx = RequestContext::get(req.extensions()).unwrap();
        assert_eq!(ctx.route, Some(RouteName("r".into())));
        assert_eq!(RequestContext::attempt_of(req.extensions()).get(), 2);
        assert_eq!(req.extensions().len(), 1);
    }

    #[test]
    fn slots_are_equal_only_to_themselves() {
        let slot = EndpointSlot::new();
        assert_eq!(slot, slot.clone());
        assert_ne!(slot, EndpointSlot::new());
    }

    #[test]
    fn extensions_are_typed() {
        let mut req = http::Request::new(());
        req.extensions_mut()
            .insert(ClientAddr("10.0.0.1:5000".parse().unwrap()));
        req.extensions_mut()
            .insert(PeerIdentity("spiffe://cluster.local/ns/a/sa/b".into()));
        assert_eq!(req.extensions().get::<ClientAddr>().unwrap().0.port(), 5000);
        assert_eq!(
            req.extensions().get::<PeerIdentity>().unwrap().to_string(),
            "spiffe://cluster.local/ns/a/sa/b"
        );
    }
}
