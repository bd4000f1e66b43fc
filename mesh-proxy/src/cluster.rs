//! Clusters: one per (service, subset, port). A cluster is the stack below a
//! route's retries: pool limits → "no healthy endpoint" guard → a
//! [`mesh_lb::Shared`] handle (the balancer is shared by every connection,
//! called in each request's own task: no buffer task) → the balancer → per
//! endpoint an outlier gate → its connection [`Pool`].
//!
//! The parts whose state must outlive a config reload (the endpoint set, the
//! outlier detector, the pool counters) are kept in the [`Cluster`] so a new
//! config version can reuse them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use mesh_breaker::outlier::{OutlierDetection, OutlierDetector};
use mesh_breaker::pool::{ConnectionLimit, ConnectionPoolLayer, PoolLimits};
use mesh_core::context::RequestContext;
use mesh_core::discover::{DiscoverExt, EndpointSet};
use mesh_core::{BoxError, Endpoint, LabelSelector};
use mesh_lb::Balance;
use serde::Serialize;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

use crate::body::{self, Body};
use crate::config::model::{self, Protocol, TrafficPolicy};
use crate::observe::DestinationService;
use crate::upstream::{Pool, PoolBody, PoolConfig};

/// The service type every cluster's stack is erased to. A boxed clone, not a
/// [`SharedService`](crate::shared_service::SharedService): the retry layer
/// above waits for its readiness (a pool slot, a ready endpoint) before it
/// starts an attempt's per-try timer, as Envoy starts it once the pool is
/// ready.
pub(crate) type HttpService = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// What names a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub(crate) struct ClusterKey {
    /// The service's first host.
    pub(crate) host: String,
    /// The subset, if any.
    pub(crate) subset: Option<String>,
    /// The service port.
    pub(crate) port: u16,
}

impl ClusterKey {
    /// Envoy's cluster name: `outbound|PORT|SUBSET|HOST`.
    pub(crate) fn name(&self) -> String {
        format!(
            "outbound|{}|{}|{}",
            self.port,
            self.subset.as_deref().unwrap_or(""),
            self.host
        )
    }
}

/// Which endpoint served a response and what it is, for metrics and logs.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) version: Arc<str>,
    pub(crate) cluster: Arc<str>,
    /// Whether the connection to it is mutual TLS.
    pub(crate) mtls: bool,
    /// The service the cluster serves, for metrics.
    pub(crate) destination: DestinationService,
}

/// Per-endpoint counters kept for `/clusters`.
#[derive(Debug, Default)]
pub(crate) struct EndpointCounters {
    pub(crate) active: AtomicU32,
    pub(crate) requests: AtomicU64,
}

/// One request in flight to an endpoint: counted in its [`EndpointCounters`]
/// until dropped, so a request whose caller gives up on it (a per-try or
/// route timeout drops the future mid-flight) leaves the active count too.
struct InFlight(Arc<EndpointCounters>);

impl InFlight {
    fn start(counters: Arc<EndpointCounters>) -> Self {
        counters.active.fetch_add(1, Ordering::Relaxed);
        counters.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(counters)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cluster and the state that outlives config versions.
pub(crate) struct Cluster {
    pub(crate) key: ClusterKey,
    /// The service it serves.
    pub(crate) destination: DestinationService,
    pub(crate) endpoints: EndpointSet,
    pub(crate) detector: Option<OutlierDetector>,
    pub(crate) pool: ConnectionPoolLayer,
    pub(crate) counters: Arc<Mutex<BTreeMap<SocketAddr, Arc<EndpointCounters>>>>,
    pub(crate) policy: TrafficPolicy,
    pub(crate) service: HttpService,
    /// For DNS resolution: the names resolved, and the watch that keeps the
    /// endpoint set up to date (dropping it stops the lookups).
    pub(crate) dns: Option<(Vec<crate::dns::DnsTarget>, crate::dns::WatchHandle)>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("key", &self.key).finish()
    }
}

/// The endpoints of a cluster, for `/clusters`.
#[derive(Debug, Serialize)]
pub(crate) struct EndpointView {
    pub(crate) address: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) weight: u32,
    pub(crate) healthy: bool,
    pub(crate) ejected: bool,
    pub(crate) ejections_total: u64,
    pub(crate) active_requests: u32,
    pub(crate) requests_total: u64,
}

impl Cluster {
    /// Builds a cluster for `key` over `endpoints` with `policy`.
    pub(crate) fn build(
        key: ClusterKey,
        destination: DestinationService,
        endpoints: Vec<Endpoint>,
        protocol: Protocol,
        policy: &TrafficPolicy,
        tls: Option<UpstreamTls>,
    ) -> Result<Cluster, BoxError> {
        let set = EndpointSet::from_endpoints(endpoints);
        let detector = policy
            .outlier_detection
            .as_ref()
            .map(|od| OutlierDetector::new(outlier_config(od)));
        let pool = ConnectionPoolLayer::new(pool_limits(policy));
        let counters: Arc<Mutex<BTreeMap<SocketAddr, Arc<EndpointCounters>>>> = Arc::default();
        let service = stack(
            &key,
            &destination,
            &set,
            protocol,
            policy,
            tls,
            Shared {
                detector: detector.clone(),
                pool: pool.clone(),
                counters: counters.clone(),
            },
        )?;
        Ok(Cluster {
            key,
            destination,
            endpoints: set,
            detector,
            pool,
            counters,
            policy: policy.clone(),
            service,
            dns: None,
        })
    }

    /// Whether its balancer reads the client's address
    /// ([`ClientAddr`](mesh_core::context::ClientAddr)): a consistent hash
    /// on the source IP.
    pub(crate) fn reads_client_addr(&self) -> bool {
        matches!(
            load_balancer(&self.policy).hash_key(),
            Some(mesh_lb::HashKey::SourceIp)
        )
    }

    /// The endpoints with their health and load.
    pub(crate) fn view(&self) -> Vec<EndpointView> {
        let states = self
            .detector
            .as_ref()
            .map(OutlierDetector::endpoints)
            .unwrap_or_default();
        let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        self.endpoints
            .snapshot()
            .into_iter()
            .map(|ep| {
                let state = states.iter().find(|s| s.addr == ep.addr());
                let ejected = state.is_some_and(|s| s.ejected);
                let c = counters.get(&ep.addr());
                EndpointView {
                    address: ep.addr().to_string(),
                    labels: ep.labels().clone(),
                    weight: ep.weight().get(),
                    healthy: !ejected,
                    ejected,
                    ejections_total: state.map_or(0, |s| s.ejections_total),
                    active_requests: c.map_or(0, |c| c.active.load(Ordering::Relaxed)),
                    requests_total: c.map_or(0, |c| c.requests.load(Ordering::Relaxed)),
                }
            })
            .collect()
    }
}

fn outlier_config(od: &model::OutlierDetection) -> OutlierDetection {
    let mut c = OutlierDetection::istio();
    if let Some(n) = od.consecutive_5xx {
        c.consecutive_5xx = n;
    }
    if let Some(n) = od.consecutive_gateway {
        c.consecutive_gateway_errors = n;
    }
    if let Some(n) = od.consecutive_local_origin {
        c.consecutive_local_origin_failures = n;
    }
    c.split_external_local_origin_errors = od.split_local_origin;
    if let Some(d) = od.interval {
        c.interval = d;
    }
    if let Some(d) = od.base_ejection_time {
        c.base_ejection_time = d;
    }
    if let Some(p) = od.max_ejection_percent {
        c.max_ejection_percent = p;
    }
    if let Some(p) = od.min_health_percent {
        c.min_health_percent = p;
    }
    c
}

fn pool_limits(policy: &TrafficPolicy) -> PoolLimits {
    let mut limits = PoolLimits::default();
    if let Some(cp) = &policy.connection_pool {
        let n = |v: Option<u32>, default: usize| v.map_or(default, |v| v as usize);
        limits.max_requests = n(cp.max_requests, limits.max_requests);
        limits.max_pending_requests = n(cp.max_pending_requests, limits.max_pending_requests);
        limits.max_retries = n(cp.max_retries, limits.max_retries);
        limits.max_connections = n(cp.max_connections, limits.max_connections);
    }
    limits
}

/// The load balancer the policy asks for (Istio's default: least request).
pub(crate) fn load_balancer(policy: &TrafficPolicy) -> mesh_lb::LoadBalancer {
    use model::{HashKey as K, LoadBalancer as L};
    let key = |k: &K| match k {
        K::Header(h) => mesh_lb::HashKey::header(h).unwrap_or(mesh_lb::HashKey::SourceIp),
        K::Cookie { name, path, ttl } => mesh_lb::HashKey::cookie(name.clone(), path.clone(), *ttl),
        K::SourceIp => mesh_lb::HashKey::SourceIp,
        K::QueryParameter(q) => mesh_lb::HashKey::query_parameter(q.clone()),
    };
    match &policy.load_balancer {
        None | Some(L::LeastRequest) => mesh_lb::LoadBalancer::least_request(),
        Some(L::RoundRobin) => mesh_lb::LoadBalancer::RoundRobin,
        Some(L::Random) => mesh_lb::LoadBalancer::Random,
        Some(L::RingHash {
            key: k,
            minimum_ring_size,
        }) => {
            let mut r = mesh_lb::RingHash::new(key(k));
            r.minimum_ring_size = *minimum_ring_size;
            mesh_lb::LoadBalancer::RingHash(r)
        }
        Some(L::Maglev { key: k, table_size }) => {
            let mut m = mesh_lb::Maglev::new(key(k));
            m.table_size = *table_size;
            mesh_lb::LoadBalancer::Maglev(m)
        }
    }
}

/// The per-cluster state the stack shares with the [`Cluster`].
struct Shared {
    detector: Option<OutlierDetector>,
    pool: ConnectionPoolLayer,
    counters: Arc<Mutex<BTreeMap<SocketAddr, Arc<EndpointCounters>>>>,
}

fn stack(
    key: &ClusterKey,
    destination: &DestinationService,
    set: &EndpointSet,
    protocol: Protocol,
    policy: &TrafficPolicy,
    tls: Option<UpstreamTls>,
    shared: Shared,
) -> Result<HttpService, BoxError> {
    let Shared {
        detector,
        pool,
        counters,
    } = shared;
    let connect_timeout = policy
        .connection_pool
        .as_ref()
        .and_then(|cp| cp.connect_timeout)
        .unwrap_or(Duration::from_secs(10));
    let idle = policy
        .connection_pool
        .as_ref()
        .and_then(|cp| cp.idle_timeout)
        .unwrap_or(Duration::from_secs(3600));
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    // mTLS clients always speak h2 or http/1.1 as ALPN agrees; plaintext
    // HTTP2/GRPC ports use HTTP/2 with prior knowledge.
    connector.enforce_http(tls.is_none());
    let config = PoolConfig {
        http2_only: matches!(protocol, Protocol::Http2 | Protocol::Grpc),
        idle_timeout: idle,
    };
    let cluster_name: Arc<str> = key.name().into();
    let destination = destination.clone();
    let mtls = tls.is_some();
    let tls_config = tls
        .map(|t| mesh_tls::client_config(&t.store, t.subject_alt_names))
        .transpose()?;
    // One pool per endpoint: requests keep the caller's authority, so a
    // shared pool's key could not tell the endpoints apart. Every endpoint's
    // connections take a slot of the cluster's `tcp.maxConnections`.
    let connections = pool.clone();
    let client_for = move |addr: SocketAddr| match &tls_config {
        None => UpstreamClient::Plain(Pool::new(
            ConnectionLimit::new(connector.clone(), &connections),
            "http",
            addr,
            config.clone(),
        )),
        Some(tls) => UpstreamClient::Mtls(Pool::new(
            ConnectionLimit::new(
                mesh_tls::MtlsConnector::with_connector(connector.clone(), tls.clone()),
                &connections,
            ),
            "https",
            addr,
            config.clone(),
        )),
    };

    let make_endpoint = move |ep: &Endpoint| {
        let addr = ep.addr();
        // Its pools are behind `Arc`s: a request clones pointers.
        let client = client_for(addr);
        let version: Arc<str> = ep
            .labels()
            .get("version")
            .map_or("unknown", String::as_str)
            .into();
        let upstream = Upstream {
            addr,
            version,
            cluster: cluster_name.clone(),
            mtls,
            destination: destination.clone(),
        };
        let c = counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(addr)
            .or_default()
            .clone();
        tower::service_fn(move |req: Request<Body>| {
            let client = client.clone();
            let upstream = upstream.clone();
            let c = c.clone();
            // Boxed: the send (with its connect path boxed apart) is still
            // about a kilobyte of state, which every layer above (gate,
            // balancer, shared handle, pool limits) would move again.
            Box::pin(async move {
                let active = InFlight::start(c);
                let attempt = RequestContext::attempt_of(req.extensions());
                let result = client.send(req).await;
                drop(active);
                let mut res = result?;
                res.extensions_mut().insert(upstream);
                // For the access log; none reads as the first attempt.
                if attempt.is_retry() {
                    res.extensions_mut().insert(attempt);
                }
                Ok::<_, BoxError>(res)
            })
        })
    };

    let lb = load_balancer(policy);
    let service = match detector {
        Some(detector) => {
            let gate_detector = detector.clone();
            let discover = set.discover().with_services(move |ep: &Endpoint| {
                gate_detector
                    .gate(ep.addr(), make_endpoint(ep))
                    .map_response(box_response)
            });
            let balance = Balance::new(discover, lb)?;
            let guarded = detector
                .cluster_layer()
                .layer(mesh_lb::Shared::new(balance));
            BoxCloneSyncService::new(pool.layer(guarded))
        }
        None => {
            let discover = set
                .discover()
                .with_services(move |ep: &Endpoint| make_endpoint(ep).map_response(box_response));
            let balance = Balance::new(discover, lb)?;
            BoxCloneSyncService::new(pool.layer(mesh_lb::Shared::new(balance)))
        }
    };
    Ok(service)
}

fn box_response<B>(res: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    res.map(body::boxed)
}

/// Where a cluster's mTLS credentials come from.
#[derive(Clone, Debug)]
pub(crate) struct UpstreamTls {
    /// The proxy's identity (ISTIO_MUTUAL) or the DestinationRule's files (MUTUAL).
    pub(crate) store: mesh_tls::CredentialStore,
    /// Accepted server identities (`subjectAltNames`); empty: any of the trust domain.
    pub(crate) subject_alt_names: Vec<String>,
}

/// A pooled client to one endpoint, plaintext or mTLS.
#[derive(Clone, Debug)]
enum UpstreamClient {
    Plain(Pool<ConnectionLimit<HttpConnector>>),
    Mtls(Pool<ConnectionLimit<mesh_tls::MtlsConnector<HttpConnector>>>),
}

impl UpstreamClient {
    /// Sends `req` to the client's endpoint with the request's authority
    /// (its URI's, else its `Host`, else the endpoint's address); transport
    /// errors become the mesh's connect-failure or reset errors, and a
    /// connection refused by `max_connections` the mesh's overload (503
    /// `UO`).
    async fn send(&self, mut req: Request<Body>) -> Result<Response<PoolBody>, BoxError> {
        // The upstream connection's protocol is the client's choice (ALPN,
        // the port's protocol), not the downstream request's; the pool puts
        // the request in that protocol's form, its authority kept.
        *req.version_mut() = http::Version::HTTP_11;
        match self {
            UpstreamClient::Plain(pool) => pool.send(req).await,
            UpstreamClient::Mtls(pool) => pool.send(req).await,
        }
    }
}

/// Forwards `req` over plain HTTP/1.1 to `pool`'s address whatever its URI
/// names (the local app inbound, a passthrough destination outbound),
/// keeping the request as written otherwise: hop-by-hop headers
/// stripped both ways, an ambiguously framed answer refused and its
/// connection closed, errors mapped to Envoy's flags.
pub(crate) async fn forward_plain(
    pool: &Pool<HttpConnector>,
    mut req: Request<Body>,
) -> Result<Response<Body>, BoxError> {
    crate::headers::strip_hop_by_hop(req.headers_mut());
    *req.version_mut() = http::Version::HTTP_11;
    let mut res = pool.send(req).await?.map(body::boxed);
    crate::headers::strip_hop_by_hop(res.headers_mut());
    Ok(res)
}

/// The endpoints of `service` for `port`, narrowed to `selector`'s labels.
pub(crate) fn endpoints_for(
    service: &model::Service,
    port: &model::ServicePort,
    selector: Option<&LabelSelector>,
) -> Vec<Endpoint> {
    service
        .endpoints
        .iter()
        .filter_map(|ep| {
            let ip = ep.address.parse::<std::net::IpAddr>().ok()?;
            let target = ep
                .ports
                .get(&port.name)
                .copied()
                .or(port.target_port)
                .unwrap_or(port.number);
            let endpoint = Endpoint::new(SocketAddr::new(ip, target))
                .with_labels(ep.labels.clone())
                .with_weight(ep.weight);
            selector
                .is_none_or(|s| s.matches(&endpoint))
                .then_some(endpoint)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A request dropped before its answer (as a per-try timeout drops it)
    /// no longer counts as active.
    #[tokio::test]
    async fn a_cancelled_request_leaves_the_active_count() {
        // An upstream that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                open.push(tcp);
            }
        });
        let key = ClusterKey {
            host: "web".into(),
            subset: None,
            port: 80,
        };
        let cluster = Cluster::build(
            key,
            DestinationService {
                host: "web".into(),
                name: "web".into(),
            },
            vec![Endpoint::new(addr)],
            Protocol::Http,
            &TrafficPolicy::default(),
            None,
        )
        .unwrap();
        let req = Request::builder()
            .uri("/")
            .header("host", "web")
            .body(body::full(""))
            .unwrap();
        let call = cluster.service.clone().oneshot(req);
        let timed_out = tokio::time::timeout(Duration::from_millis(100), call).await;
        assert!(timed_out.is_err(), "the upstream never answers");
        let view = cluster.view();
        assert_eq!(
            (view[0].requests_total, view[0].active_requests),
            (1, 0),
            "one request sent, none left in flight"
        );
        hold.abort();
    }
}
