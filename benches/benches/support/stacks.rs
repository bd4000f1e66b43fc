//! The stacks of the `stack` bench, shared with `icount` (instruction
//! counts): ours and tower's, the request, the routes, the driver.

#![allow(dead_code)] // each bench target uses part of it

use std::future::{Future, Ready, ready};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Request, Response};
use http_body_util::Empty;
use mesh_breaker::outlier::{OutlierDetection, OutlierDetector};
use mesh_breaker::pool::{ConnectionPoolLayer, PoolLimits};
use mesh_core::discover::{DiscoverExt, StaticEndpoints};
use mesh_core::{BoxError, Endpoint};
use mesh_lb::{Balance, LoadBalancer};
use mesh_retry::{IstioRetries, RetryLayer, RetryPolicy};
use mesh_route::{Destination, HttpMatch, RouteConfig, Router, StringMatch};
use tower::{Layer, Service, ServiceBuilder, service_fn};

/// The request and response body of every row.
pub(crate) type Body = Empty<Bytes>;

/// A `Clone` handle on one service, for tower's balancer under tower's retry
/// layer (uncontended, its lock is two atomic operations per `poll_ready` and
/// per `call`; tower's own way, `Buffer`, costs a task hop).
pub(crate) struct ArcMutex<S>(Arc<Mutex<S>>);

impl<S> ArcMutex<S> {
    fn new(inner: S) -> Self {
        ArcMutex(Arc::new(Mutex::new(inner)))
    }
}

impl<S> Clone for ArcMutex<S> {
    fn clone(&self) -> Self {
        ArcMutex(self.0.clone())
    }
}

impl<S: Service<R>, R> Service<R> for ArcMutex<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.lock().unwrap().poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.0.lock().unwrap().call(req)
    }
}

/// The no-op endpoint: answers 200 at once.
pub(crate) fn noop<R>(_: R) -> Ready<Result<Response<Body>, BoxError>> {
    ready(Ok(Response::new(Empty::new())))
}

/// Drops the outlier gate's reporting body (its outcome was decided at the
/// head), as mesh-proxy re-wraps endpoint bodies: the route layer's own
/// responses (fault aborts, redirects) need a body with a `Default`.
pub(crate) fn plain<RB>(res: Response<RB>) -> Response<Body> {
    res.map(|_| Empty::new())
}

pub(crate) fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8], 9080))
}

pub(crate) const ENDPOINTS: usize = 4;

/// The request of every row: the retry bench's GET to the default route.
pub(crate) fn request() -> Request<Body> {
    request_with(Empty::new())
}

/// [`request`] with another body (the retry bench's POST rows).
pub(crate) fn request_with<B>(body: B) -> Request<B> {
    Request::get("http://reviews.default.svc.cluster.local/v1/reviews/7")
        .header("host", "reviews.default.svc.cluster.local")
        .header("user-agent", "bench/1.0")
        .header("accept", "application/json")
        .header("x-request-id", "4f5e6a1c-0d2b-4b8e-9d6a-1f0e2c3b4a59")
        .body(body)
        .unwrap()
}

/// The retry bench's upstream: answers `200` with no body at once.
pub(crate) fn ok<Req>(_: Req) -> Ready<Result<Response<()>, std::convert::Infallible>> {
    ready(Ok(Response::new(())))
}

/// A retry policy doing only what tower's retry and timeout layers do: no
/// `x-envoy-attempt-count`, no caller's deadline read, no attempt deadline
/// passed down for outlier detection.
pub(crate) fn like_tower(p: RetryPolicy) -> RetryPolicy {
    RetryPolicy {
        attempt_count_header: false,
        attempt_deadline: false,
        attempt_endpoint: false,
        deadline_header: None,
        ..p
    }
}

/// A VirtualService's usual shape: `/login` exactly to v1, `/api` with an
/// `end-user: jason` header to v2, everything else to the service.
pub(crate) fn routes() -> Vec<RouteConfig> {
    vec![
        RouteConfig::to("login", Destination::new("reviews").with_subset("v1"))
            .with_match(HttpMatch::default().with_uri(StringMatch::exact("/login"))),
        RouteConfig::to("jason", Destination::new("reviews").with_subset("v2")).with_match(
            HttpMatch::default()
                .with_uri(StringMatch::prefix("/api"))
                .with_header(
                    HeaderName::from_static("end-user"),
                    StringMatch::exact("jason"),
                ),
        ),
        RouteConfig::to("default", Destination::new("reviews"))
            .with_match(HttpMatch::default().with_uri(StringMatch::prefix("/"))),
    ]
}

/// The same three routes, as tower's `Steer` picks: a closure.
pub(crate) fn steer_pick<B, S>(req: &Request<B>, _: &[S]) -> usize {
    let path = req.uri().path();
    if path == "/login" {
        0
    } else if path.starts_with("/api")
        && req.headers().get("end-user").is_some_and(|v| v == "jason")
    {
        1
    } else {
        2
    }
}

/// tower's retry policy for HTTP, as in the retry bench.
#[derive(Clone)]
pub(crate) struct Attempts(pub(crate) usize);

impl<B: Clone, RB, E> tower::retry::Policy<Request<B>, Response<RB>, E> for Attempts {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _: &mut Request<B>,
        result: &mut Result<Response<RB>, E>,
    ) -> Option<Self::Future> {
        match result {
            Ok(res) if !res.status().is_server_error() => None,
            _ if self.0 > 0 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        Some(req.clone())
    }
}

/// One request: `poll_ready`, `call`, one poll of the future in place.
pub(crate) fn drive<S, Req>(svc: &mut S, req: Req) -> S::Response
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("not ready"),
    }
    let mut future = pin!(svc.call(req));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(res) => res.unwrap(),
        Poll::Pending => panic!("not answered at once"),
    }
}

/// Our cluster: pool limits → cluster health → balancer (least request) →
/// outlier gate per endpoint → no-op endpoint; `pool` and `gates` leave out
/// those layers (for the per-layer breakdown of the instruction counts).
pub(crate) fn mesh_cluster<B>(
    pool: bool,
    gates: bool,
) -> impl Service<Request<B>, Response = Response<Body>, Error = BoxError, Future: Send> + Clone + Send
where
    B: Send + 'static,
{
    let detector = OutlierDetector::without_timer(OutlierDetection::default());
    let gate_detector = detector.clone();
    let discover = StaticEndpoints::new((0..ENDPOINTS).map(|i| Endpoint::new(addr(i))))
        .with_services(move |ep: &Endpoint| {
            let endpoint = service_fn(noop::<Request<B>>);
            if gates {
                let gate = gate_detector.gate(ep.addr(), endpoint);
                tower::util::Either::Left(tower::ServiceExt::map_response(gate, plain))
            } else {
                tower::util::Either::Right(endpoint)
            }
        });
    let balance = Balance::new(discover, LoadBalancer::least_request()).unwrap();
    let limits = pool.then(|| {
        tower::layer::layer_fn(|inner| {
            ServiceBuilder::new()
                .layer(ConnectionPoolLayer::new(PoolLimits::envoy()))
                .layer(detector.cluster_layer())
                .service(inner)
        })
    });
    ServiceBuilder::new()
        .option_layer(limits)
        .map_err(Into::<BoxError>::into)
        .service(mesh_lb::Shared::new(balance))
}

/// Our retry policy in the stack: Istio's `retries: {attempts: 2,
/// perTryTimeout: 5s, retryOn: 5xx}` and `timeout: 15s`; `like_tower` drops
/// what tower's layers do not do (`x-envoy-attempt-count`, reading
/// `grpc-timeout`, passing the attempt deadline down: in the stack that
/// row's outlier gates then do not count timed-out attempts, so it is a
/// like-for-like figure, not a configuration to run).
pub(crate) fn mesh_retry_policy(like_tower: bool) -> RetryLayer {
    let retries = IstioRetries {
        attempts: Some(2),
        per_try_timeout: Some(Duration::from_secs(5)),
        retry_on: Some("5xx".into()),
        ..Default::default()
    };
    let policy = RetryPolicy::from_istio(Some(&retries), Some(Duration::from_secs(15))).unwrap();
    RetryLayer::new(if like_tower {
        self::like_tower(policy)
    } else {
        policy
    })
}

/// [`mesh_retry_policy`] as mesh-proxy configures it.
pub(crate) fn mesh_retry() -> RetryLayer {
    mesh_retry_policy(false)
}

/// Our stack: route → retry (with timeouts) → pool limits → cluster health
/// → balancer → outlier gate → no-op endpoint.
pub(crate) fn mesh_stack()
-> impl Service<Request<Body>, Response = Response<Body>, Error = BoxError> {
    mesh_stack_with(mesh_retry())
}

/// [`mesh_stack`] with its retry layer configured as `retry`.
pub(crate) fn mesh_stack_with(
    retry: RetryLayer,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = BoxError> {
    // Built out here rather than by `mesh_cluster`, whose optional layers
    // would add their `Either`s to this row.
    let detector = OutlierDetector::without_timer(OutlierDetection::default());
    let gates = detector.clone();
    let discover = StaticEndpoints::new((0..ENDPOINTS).map(|i| Endpoint::new(addr(i))))
        .with_services(move |ep: &Endpoint| {
            tower::ServiceExt::map_response(gates.gate(ep.addr(), service_fn(noop)), plain)
        });
    let balance = Balance::new(discover, LoadBalancer::least_request()).unwrap();
    let cluster = ServiceBuilder::new()
        .layer(ConnectionPoolLayer::new(PoolLimits::envoy()))
        .layer(detector.cluster_layer())
        .service(mesh_lb::Shared::new(balance));
    // As mesh-proxy configures it: nothing below reads the route name.
    Router::builder(routes())
        .build(|_| Ok(retry.layer(cluster.clone())))
        .unwrap()
        .with_route_names(false)
}

/// tower's stack: steer → timeout → retry → timeout → concurrency limit →
/// p2c → no-op endpoint.
pub(crate) fn tower_stack()
-> impl Service<Request<Body>, Response = Response<Body>, Error = BoxError> {
    let endpoints: Vec<_> = (0..ENDPOINTS)
        .map(|_| {
            tower::load::PendingRequests::new(
                service_fn(noop::<Request<Body>>),
                tower::load::CompleteOnResponse::default(),
            )
        })
        .collect();
    let p2c = tower::balance::p2c::Balance::new(tower::discover::ServiceList::new(endpoints));
    let cluster = ServiceBuilder::new()
        .concurrency_limit(1024)
        .service(ArcMutex::new(p2c));
    let route = ServiceBuilder::new()
        .timeout(Duration::from_secs(15))
        .layer(tower::retry::RetryLayer::new(Attempts(2)))
        .timeout(Duration::from_secs(5))
        .service(cluster);
    tower::steer::Steer::new(vec![route.clone(), route.clone(), route], steer_pick)
}
