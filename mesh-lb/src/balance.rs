//! The balancer service and its layer.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::{HeaderValue, SET_COOKIE};
use http::{Request, Response};
use mesh_core::context::{ChosenEndpoint, EndpointError, RequestContext};
use mesh_core::discover::{Change, Discover, EndpointService};
use mesh_core::{BoxError, MeshError};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::config::{ConfigError, LoadBalancer};
use crate::hash_key::{HashKey, KeyHash};
use crate::pick::{PickInput, Picker};
use crate::ready_set::ReadySet;
use crate::rng::FastRng;
use crate::stats::{EndpointStats, Epoch};

/// A load balancer: a tower `Service` over the endpoint services a discovery
/// source yields.
///
/// It follows tower's contract to the letter: an endpoint is called only after
/// it returned `Ready`, and after each call it is polled again before its next
/// use. `poll_ready` applies discovery changes (requests in flight to a removed
/// endpoint finish normally), polls the endpoints that need it, and is ready
/// when at least one endpoint is. When every endpoint is busy it returns
/// `Pending` (backpressure); when the source has no endpoint at all it is ready
/// and the call fails at once with [`MeshError::NoHealthyEndpoint`] (503,
/// `UH`).
///
/// Discovery keys must be the endpoints' addresses (the sources in
/// [`mesh_core::discover`] guarantee it). For a subset, narrow the source with
/// [`DiscoverExt::subset`](mesh_core::discover::DiscoverExt::subset).
///
/// The chosen endpoint goes into the response's extensions as
/// [`ChosenEndpoint`], and into the request's [`RequestContext`] when the
/// request carries one (an endpoint's error is wrapped
/// in an [`EndpointError`] naming it); endpoints named in the request
/// context's [`tried`](RequestContext::tried) (set by the retry layer) are
/// avoided while another is ready,
/// except by the hash balancers, whose point is to stay put.
///
/// `Balance` is not `Clone`; share one with [`Shared`](crate::Shared) (or
/// `tower::buffer::Buffer`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mesh_core::BoxError> {
/// use mesh_core::discover::{DiscoverExt, StaticEndpoints};
/// use mesh_core::Endpoint;
/// use mesh_lb::{Balance, LoadBalancer};
/// use tower::{service_fn, Service, ServiceExt};
///
/// let endpoints = StaticEndpoints::new((1..=3).map(|p| Endpoint::new(([127, 0, 0, 1], p).into())));
/// // Each endpoint's service; a real one would be a hyper client bound to `ep.addr()`.
/// let discover = endpoints.with_services(|ep: &Endpoint| {
///     let port = ep.addr().port();
///     service_fn(move |_req: http::Request<()>| async move {
///         Ok::<_, std::convert::Infallible>(http::Response::new(port))
///     })
/// });
/// let mut lb = Balance::new(discover, LoadBalancer::RoundRobin)?;
/// let mut ports = Vec::new();
/// for _ in 0..6 {
///     ports.push(*lb.ready().await?.call(http::Request::new(())).await?.body());
/// }
/// assert_eq!(ports, [1, 2, 3, 1, 2, 3]);
/// # Ok(()) }
/// ```
pub struct Balance<D, S> {
    discover: D,
    discover_done: bool,
    set: ReadySet<S>,
    picker: Picker,
    hash_key: Option<HashKey>,
    rng: FastRng,
    epoch: Epoch,
    /// Set by `poll_ready` when there is no endpoint: `call` fails fast.
    empty: bool,
}

impl<D, S> Balance<D, S>
where
    D: Discover<Key = SocketAddr, Service = EndpointService<S>> + Unpin,
    D::Error: Into<BoxError>,
{
    /// A balancer running `lb` over the endpoints of `discover`.
    pub fn new(discover: D, lb: LoadBalancer) -> Result<Self, ConfigError> {
        lb.validate()?;
        Ok(Self::with_valid(discover, &lb))
    }

    /// How many endpoints the balancer knows.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether the balancer knows no endpoint.
    pub fn is_empty(&self) -> bool {
        self.set.len() == 0
    }

    /// How many endpoints are ready now.
    pub fn ready_len(&self) -> usize {
        self.set.ready_len()
    }

    /// The requests in flight to the endpoint at `addr`, if it is known.
    pub fn in_flight(&self, addr: &SocketAddr) -> Option<u32> {
        self.set
            .index_of(addr)
            .map(|i| self.set.slot(i).stats.active())
    }

    /// Applies every change the source has ready; returns whether membership
    /// changed.
    fn poll_discover(&mut self, cx: &mut Context<'_>) -> Result<bool, BoxError> {
        let mut changed = false;
        while !self.discover_done {
            match Pin::new(&mut self.discover).poll_discover(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => self.discover_done = true,
                Poll::Ready(Some(Err(err))) => return Err(err.into()),
                Poll::Ready(Some(Ok(Change::Insert(_, svc)))) => {
                    let endpoint = svc.endpoint().clone();
                    tracing::debug!(endpoint = %endpoint.addr(), weight = endpoint.weight(), "endpoint added");
                    self.set.insert(endpoint, svc.into_inner());
                    changed = true;
                }
                Poll::Ready(Some(Ok(Change::Remove(addr)))) => {
                    if self.set.remove(&addr) {
                        tracing::debug!(endpoint = %addr, "endpoint removed");
                        changed = true;
                    }
                }
            }
        }
        Ok(changed)
    }
}

impl<D, S, B, RB> Service<Request<B>> for Balance<D, S>
where
    D: Discover<Key = SocketAddr, Service = EndpointService<S>> + Unpin,
    D::Error: Into<BoxError>,
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let mut changed = self.poll_discover(cx)?;
        changed |= self.set.poll_unready::<Request<B>>(cx);
        if changed {
            // Only when membership changed; hash tables build off this path.
            self.picker.rebuild(&self.set);
        }
        self.picker.poll_pending(cx);
        self.empty = self.set.len() == 0;
        if self.set.ready_len() > 0 || self.empty {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let mut set_cookie = None;
        let hash = match &self.hash_key {
            None => None,
            Some(key) => match key.hash(&req, &mut self.rng) {
                KeyHash::Hash(h) => Some(h),
                KeyHash::Generated {
                    hash,
                    set_cookie: c,
                } => {
                    set_cookie = Some(c);
                    Some(hash)
                }
                KeyHash::None => None,
            },
        };
        let now_ns = if self.picker.needs_rtt() {
            self.epoch.now_ns()
        } else {
            0
        };
        let picked = {
            let input = PickInput {
                hash,
                tried: RequestContext::get(req.extensions())
                    .map(|c| &c.tried)
                    .filter(|t| !t.is_empty()),
                now_ns,
            };
            self.picker.pick(&self.set, &input, &mut self.rng)
        };
        let Some(i) = picked else {
            // No endpoint at all, or `call` without a ready `poll_ready`.
            return ResponseFuture::failed(MeshError::NoHealthyEndpoint);
        };
        self.set.set_unready(i);
        let rtt = self.picker.ewma().map(|c| (now_ns, self.epoch, c.decay));
        let slot = self.set.slot_mut(i);
        let addr = slot.endpoint.addr();
        // Only a context the request already has: making one here would cost
        // every request http's extensions map for a field few read.
        if let Some(ctx) = req.extensions_mut().get_mut::<RequestContext>() {
            if let Some(slot) = &ctx.slot {
                slot.set(addr);
            }
            ctx.endpoint = Some(ChosenEndpoint(addr));
        }
        slot.stats.start();
        let in_flight = InFlight {
            stats: slot.stats.clone(),
            rtt,
            done: false,
        };
        ResponseFuture {
            kind: Kind::Called {
                fut: slot.svc.call(req),
                in_flight,
                addr,
                set_cookie,
            },
        }
    }
}

impl<D, S> Balance<D, S> {
    fn with_valid(discover: D, lb: &LoadBalancer) -> Self {
        let default_rtt = match lb {
            LoadBalancer::PeakEwma(c) => c.default_rtt,
            _ => Duration::ZERO,
        };
        Balance {
            discover,
            discover_done: false,
            set: ReadySet::new(default_rtt),
            picker: Picker::new(lb),
            hash_key: lb.hash_key().cloned(),
            rng: FastRng::new(),
            epoch: Epoch::new(),
            empty: false,
        }
    }
}

impl<D, S> fmt::Debug for Balance<D, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("endpoints", &self.set.len())
            .field("ready", &self.set.ready_len())
            .field("picker", &self.picker)
            .finish()
    }
}

/// Counts a request in flight until its response head arrives (or it is
/// dropped), and times it for the latency-aware picker.
struct InFlight {
    stats: Arc<EndpointStats>,
    rtt: Option<(u64, Epoch, Duration)>,
    done: bool,
}

impl InFlight {
    fn complete(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some((start, epoch, decay)) = self.rtt {
            let now = epoch.now_ns();
            self.stats
                .observe_rtt(Duration::from_nanos(now.saturating_sub(start)), now, decay);
        }
        self.stats.finish();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.stats.finish();
        }
    }
}

pin_project! {
    /// The response future of [`Balance`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Failed { error: Option<MeshError> },
        Called {
            #[pin]
            fut: F,
            in_flight: InFlight,
            addr: SocketAddr,
            set_cookie: Option<HeaderValue>,
        },
    }
}

impl<F> ResponseFuture<F> {
    fn failed(error: MeshError) -> Self {
        ResponseFuture {
            kind: Kind::Failed { error: Some(error) },
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Failed { error } => Poll::Ready(Err(error.take().map_or_else(
                || "balancer future polled after completion".into(),
                Into::into,
            ))),
            KindProj::Called {
                fut,
                in_flight,
                addr,
                set_cookie,
            } => {
                let result = ready!(fut.poll(cx));
                in_flight.complete();
                Poll::Ready(match result {
                    Ok(mut res) => {
                        res.extensions_mut().insert(ChosenEndpoint(*addr));
                        if let Some(cookie) = set_cookie.take() {
                            res.headers_mut().append(SET_COOKIE, cookie);
                        }
                        Ok(res)
                    }
                    // Name the endpoint: errors carry no extensions.
                    Err(err) => Err(EndpointError::new(*addr, err).into()),
                })
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("ResponseFuture")
    }
}

/// Makes a [`Balance`] from a discovery source: `BalanceLayer::new(lb)?.layer(discover)`.
///
/// ```
/// use mesh_core::discover::{DiscoverExt, EndpointSet};
/// use mesh_lb::{BalanceLayer, LoadBalancer};
/// use tower::Layer;
///
/// let set = EndpointSet::new();
/// let layer = BalanceLayer::new(LoadBalancer::least_request()).unwrap();
/// let lb = layer.layer(set.discover().with_services(|_ep: &mesh_core::Endpoint| {
///     tower::service_fn(|_req: http::Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(())) })
/// }));
/// assert!(lb.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct BalanceLayer {
    lb: LoadBalancer,
}

impl BalanceLayer {
    /// A layer that balances with `lb`.
    pub fn new(lb: LoadBalancer) -> Result<Self, ConfigError> {
        lb.validate()?;
        Ok(BalanceLayer { lb })
    }
}

impl<D, S> Layer<D> for BalanceLayer
where
    D: Discover<Key = SocketAddr, Service = EndpointService<S>> + Unpin,
    D::Error: Into<BoxError>,
{
    type Service = Balance<D, S>;

    fn layer(&self, discover: D) -> Balance<D, S> {
        Balance::with_valid(discover, &self.lb)
    }
}
