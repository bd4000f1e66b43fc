//! The proxy's state: the config version in force as an immutable
//! [`Snapshot`] swapped atomically, and the outbound request path over it.
//!
//! A snapshot holds, per service port, the router built from the service's
//! VirtualService (or Istio's default route), and the clusters the routes
//! reach. Requests take the snapshot they start with and keep it, so a reload
//! never changes a request mid-flight; clusters whose policy did not change
//! are carried into the next snapshot with their endpoint, outlier and load
//! state.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use futures_util::TryFutureExt;
use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use mesh_core::classify::GrpcCode;
use mesh_core::{BoxError, LabelSelector, RESPONSE_FLAGS_HEADER, ResponseFlag, ResponseFlags};
use mesh_retry::budget::{ConcurrencyBudget, RetryBudget};
use mesh_retry::{IstioRetries, RetryLayer, RetryPolicy, RetryStats};
use mesh_route::{Role, Router, Target};
use mesh_tls::{CredentialStore, IdentityFiles};
use tower::{Service, ServiceBuilder};

use crate::body::{self, Body};
use crate::capture::{OriginalDst, OutboundPolicy};
use crate::cluster::{Cluster, ClusterKey, UpstreamTls, endpoints_for};
use crate::config::model::AddressBlock;
use crate::config::model::{self, Config, Protocol};
use crate::dns::{self, DnsTarget, Resolver};
use crate::headers;
use crate::metrics::Metrics;
use crate::observe::DestinationService;
use crate::server::ClientAddrs;
use crate::shared_service::SharedService;
use crate::tcp::TcpRoute;
use crate::upstream::AddrPools;
use hyper_util::client::legacy::connect::HttpConnector;

/// The running proxy: the config in force and what outlives it.
#[derive(Debug)]
pub struct Proxy {
    current: ArcSwap<Snapshot>,
    env: Env,
    metrics: Arc<Metrics>,
    ready: AtomicBool,
    listeners: Mutex<Vec<(String, SocketAddr)>>,
    versions: AtomicU64,
    /// Held through a reload: two at once could interleave their versions
    /// and the flag below.
    reloading: Mutex<()>,
    /// Whether a cluster of the config in force reads the client's address:
    /// outbound requests carry it only then (see [`ClientAddrs`]).
    client_addr: Arc<AtomicBool>,
}

/// One config version, ready to serve.
pub(crate) struct Snapshot {
    pub(crate) version: u64,
    pub(crate) config: Arc<Config>,
    pub(crate) clusters: BTreeMap<ClusterKey, Arc<Cluster>>,
    hosts: HashMap<String, usize>,
    services: Vec<ServiceRoutes>,
    retry_stats: Vec<(ClusterKey, RetryStats)>,
    /// Virtual IPs: (block, port) → service index and what serves it.
    vips: Vec<Vip>,
}

/// A service's virtual IP block and port.
struct Vip {
    block: AddressBlock,
    port: u16,
    service: usize,
    target: VipTarget,
}

/// What serves a connection to a service's virtual IP and port.
#[derive(Clone, Debug)]
pub(crate) enum VipTarget {
    /// The service port's HTTP routes.
    Http,
    /// Opaque TCP to the service's endpoints.
    Tcp(Arc<TcpRoute>),
}

impl Snapshot {
    /// Whether a cluster's balancer reads the client's address.
    fn reads_client_addr(&self) -> bool {
        self.clusters.values().any(|c| c.reads_client_addr())
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .finish()
    }
}

struct ServiceRoutes {
    ports: Vec<(u16, Arc<dyn PortRouter>)>,
}

/// A service port's router, called through the snapshot's shared reference
/// (see [`Router::route_request`]): no boxed clone of the router and no
/// `oneshot` per request, one box for the response future.
trait PortRouter: Send + Sync {
    /// Routes `req`; the response's hop-by-hop headers are stripped.
    fn route(&self, req: Request<Body>) -> ResponseFuture;
}

impl<S> PortRouter for Router<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError> + Send,
    S::Future: Send + 'static,
{
    fn route(&self, req: Request<Body>) -> ResponseFuture {
        Box::pin(self.route_request(req).map_ok(|mut res| {
            headers::strip_hop_by_hop(res.headers_mut());
            res
        }))
    }
}

impl Snapshot {
    /// What serves a captured connection to `dst`, when `dst` is a service's
    /// virtual IP and port.
    pub(crate) fn vip(&self, dst: SocketAddr) -> Option<VipTarget> {
        self.find_vip(dst).map(|v| v.target.clone())
    }

    fn find_vip(&self, dst: SocketAddr) -> Option<&Vip> {
        self.vips
            .iter()
            .find(|v| v.port == dst.port() && v.block.contains(dst.ip()))
    }

    /// Retries sent to a cluster, over all routes.
    pub(crate) fn retries_for(&self, key: &ClusterKey) -> u64 {
        self.retry_stats
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, s)| s.retries())
            .sum()
    }
}

impl Proxy {
    /// A proxy serving `config` as version 1, with this workload identity
    /// (for ISTIO_MUTUAL upstreams) and resolver (for DNS services).
    pub fn new(
        config: Config,
        identity: Option<CredentialStore>,
        resolver: Resolver,
    ) -> Result<Arc<Proxy>, BoxError> {
        let env = Env { identity, resolver };
        let snapshot = build(config, 1, None, &env)?;
        Ok(Arc::new(Proxy {
            client_addr: Arc::new(AtomicBool::new(snapshot.reads_client_addr())),
            current: ArcSwap::from_pointee(snapshot),
            env,
            metrics: Arc::new(Metrics::new()),
            ready: AtomicBool::new(false),
            listeners: Mutex::default(),
            reloading: Mutex::default(),
            versions: AtomicU64::new(1),
        }))
    }

    /// Swaps in a new config; returns its version. On error the old config
    /// stays in force. Reloads run one at a time.
    pub fn reload(&self, config: Config) -> Result<u64, BoxError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = self.current.load_full();
        let version = self.versions.load(Ordering::Acquire) + 1;
        let snapshot = build(config, version, Some(&previous), &self.env)?;
        self.versions.store(version, Ordering::Release);
        // Turned on before the swap and off after it, so that a request the
        // new config routes carries the address when the config reads it
        // (one it does not read is only unused). A request that read the flag
        // just before it was turned on, and is routed by the new config, goes
        // without: its source-IP hash picks at random, once.
        let wanted = snapshot.reads_client_addr();
        if wanted {
            self.client_addr.store(true, Ordering::Release);
        }
        self.current.store(Arc::new(snapshot));
        if !wanted {
            self.client_addr.store(false, Ordering::Release);
        }
        Ok(version)
    }

    /// The config version in force.
    pub fn version(&self) -> u64 {
        self.current.load().version
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The config in force, borrowed for the length of a call (no reference
    /// count taken: for the request path, which clones what it keeps).
    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Which outbound requests carry the client's address: while a cluster
    /// of the config in force reads it.
    pub(crate) fn client_addrs(&self) -> ClientAddrs {
        ClientAddrs::while_set(self.client_addr.clone())
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn metrics_handle(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Whether the proxy is serving (not starting, not draining).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub(crate) fn add_listener(&self, name: String, addr: SocketAddr) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, addr));
    }

    pub(crate) fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The short name of a host: `reviews` for `reviews.default.svc.cluster.local`.
fn short_name(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

/// What a destination's host names: the service index.
fn find_service(hosts: &HashMap<String, usize>, host: &str) -> Option<usize> {
    hosts.get(&host.to_ascii_lowercase()).copied()
}

fn host_table(config: &Config) -> HashMap<String, usize> {
    let mut hosts = HashMap::new();
    // Full hosts win over short names; a short name shared by two services is
    // ambiguous and left out.
    let mut short: HashMap<String, Option<usize>> = HashMap::new();
    for (i, s) in config.services.iter().enumerate() {
        for h in &s.hosts {
            hosts.insert(h.to_ascii_lowercase(), i);
            let entry = short
                .entry(short_name(h).to_ascii_lowercase())
                .or_insert(Some(i));
            if *entry != Some(i) {
                *entry = None;
            }
        }
    }
    for (name, i) in short {
        if let Some(i) = i {
            hosts.entry(name).or_insert(i);
        }
    }
    hosts
}

fn build(
    config: Config,
    version: u64,
    previous: Option<&Snapshot>,
    env: &Env,
) -> Result<Snapshot, BoxError> {
    let config = Arc::new(config);
    let hosts = host_table(&config);
    let mut clusters: BTreeMap<ClusterKey, Arc<Cluster>> = BTreeMap::new();
    let mut budgets: HashMap<ClusterKey, Arc<dyn RetryBudget>> = HashMap::new();
    let mut retry_stats = Vec::new();
    let mut services = Vec::new();
    let mut vips = Vec::new();

    for (si, service) in config.services.iter().enumerate() {
        let mut ports = Vec::new();
        for port in &service.ports {
            if port.protocol == Protocol::Tcp {
                if !service.addresses.is_empty() {
                    let route = Arc::new(tcp_route(&config, service, port, env)?);
                    vips.extend(service.addresses.iter().map(|&block| Vip {
                        block,
                        port: port.number,
                        service: si,
                        target: VipTarget::Tcp(route.clone()),
                    }));
                }
                continue;
            }
            vips.extend(service.addresses.iter().map(|&block| Vip {
                block,
                port: port.number,
                service: si,
                target: VipTarget::Http,
            }));
            let routes = routes_for(&config, service, port.number);
            let vs_routes: BTreeMap<String, &model::HttpRoute> = routes
                .iter()
                .filter_map(|(r, m)| Some((r.name.clone(), (*m)?)))
                .collect();
            let route_configs: Vec<mesh_route::RouteConfig> =
                routes.iter().map(|(r, _)| r.clone()).collect();
            let router = Router::builder(route_configs).build(|target: Target<'_>| {
                destination_service(
                    &config,
                    &hosts,
                    service,
                    port.number,
                    target,
                    vs_routes.get(&target.route.name).copied(),
                    previous,
                    env,
                    &mut clusters,
                    &mut budgets,
                    &mut retry_stats,
                )
            })?;
            // Nothing in the proxy reads the route name from the request.
            let router: Arc<dyn PortRouter> = Arc::new(router.with_route_names(false));
            ports.push((port.number, router));
        }
        services.push(ServiceRoutes { ports });
    }
    Ok(Snapshot {
        version,
        config,
        clusters,
        hosts,
        services,
        retry_stats,
        vips,
    })
}

/// The DestinationRule whose host names one of `service`'s hosts.
fn rule_for<'a>(
    config: &'a Config,
    service: &model::Service,
) -> Option<&'a model::DestinationRule> {
    config.destination_rules.iter().find(|dr| {
        service.hosts.iter().any(|h| {
            h.eq_ignore_ascii_case(&dr.host) || short_name(h).eq_ignore_ascii_case(&dr.host)
        })
    })
}

/// The route of a TCP service port: its static endpoints, over mTLS when its
/// DestinationRule says so.
fn tcp_route(
    config: &Config,
    service: &model::Service,
    port: &model::ServicePort,
    env: &Env,
) -> Result<TcpRoute, BoxError> {
    let rule = rule_for(config, service);
    let policy = rule.map(|r| r.traffic_policy.clone()).unwrap_or_default();
    let tls = upstream_tls(
        rule.map_or("", |r| r.name.as_str()),
        &policy,
        env.identity.as_ref(),
    )?
    .map(|t| mesh_tls::client_config(&t.store, t.subject_alt_names))
    .transpose()?;
    let endpoints = endpoints_for(service, port, None)
        .iter()
        .map(mesh_core::Endpoint::addr)
        .collect();
    let host = service.hosts.first().cloned().unwrap_or_default();
    let cluster = ClusterKey {
        host: host.clone(),
        subset: None,
        port: port.number,
    }
    .name();
    let connect_timeout = policy
        .connection_pool
        .as_ref()
        .and_then(|cp| cp.connect_timeout)
        .unwrap_or(crate::tcp::CONNECT_TIMEOUT);
    Ok(TcpRoute::new(
        host.into(),
        service.name.clone().into(),
        cluster.into(),
        endpoints,
        tls,
        connect_timeout,
    ))
}

/// The routes of a service port: its VirtualService's, or Istio's default
/// route to the service itself. Each carries the model route it came from
/// (for retries and timeout), `None` for the default route.
fn routes_for<'a>(
    config: &'a Config,
    service: &model::Service,
    port: u16,
) -> Vec<(mesh_route::RouteConfig, Option<&'a model::HttpRoute>)> {
    let names: Vec<String> = service
        .hosts
        .iter()
        .flat_map(|h| [h.to_ascii_lowercase(), short_name(h).to_ascii_lowercase()])
        .collect();
    let vs = config.virtual_services.iter().find(|vs| {
        vs.hosts
            .iter()
            .any(|h| h == "*" || names.contains(&h.to_ascii_lowercase()))
    });
    match vs {
        Some(vs) => vs
            .http
            .iter()
            .filter_map(|r| route_config(r, port).map(|rc| (rc, Some(r))))
            .collect(),
        None => {
            let host = service.hosts.first().cloned().unwrap_or_default();
            let dest = mesh_route::Destination::new(host).with_port(port);
            vec![(mesh_route::RouteConfig::to("default", dest), None)]
        }
    }
}

fn string_match(m: &model::StringMatch) -> mesh_route::StringMatch {
    match m {
        model::StringMatch::Exact(s) => mesh_route::StringMatch::exact(s),
        model::StringMatch::Prefix(s) => mesh_route::StringMatch::prefix(s),
        model::StringMatch::Regex(s) => mesh_route::StringMatch::regex(s),
    }
}

fn header_ops(ops: &model::HeaderOperations) -> mesh_route::HeaderOperations {
    let pair = |(k, v): (&String, &String)| {
        Some((
            http::HeaderName::try_from(k.as_str()).ok()?,
            HeaderValue::try_from(v.as_str()).ok()?,
        ))
    };
    mesh_route::HeaderOperations {
        set: ops.set.iter().filter_map(pair).collect(),
        add: ops.add.iter().filter_map(pair).collect(),
        remove: ops
            .remove
            .iter()
            .filter_map(|k| http::HeaderName::try_from(k.as_str()).ok())
            .collect(),
    }
}

fn headers(h: &model::HeaderOps) -> mesh_route::Headers {
    mesh_route::Headers {
        request: header_ops(&h.request),
        response: header_ops(&h.response),
    }
}

fn destination(d: &model::Destination) -> mesh_route::Destination {
    mesh_route::Destination {
        host: d.host.clone(),
        subset: d.subset.clone(),
        port: d.port,
    }
}

fn grpc_code(name: &str) -> GrpcCode {
    if let Ok(n) = name.trim().parse::<i32>() {
        return GrpcCode::from_i32(n);
    }
    let wanted = name.trim().to_ascii_lowercase().replace('_', "-");
    (0..=16)
        .map(GrpcCode::from_i32)
        .find(|c| c.name() == wanted)
        .unwrap_or(GrpcCode::Unknown)
}

/// The mesh-route form of a model route, for one service port (match blocks
/// for another port are left out; a route left with none is skipped).
fn route_config(r: &model::HttpRoute, port: u16) -> Option<mesh_route::RouteConfig> {
    let mut matches = Vec::new();
    for m in &r.matches {
        if m.port.is_some_and(|p| p != port) {
            continue;
        }
        let mut hm = mesh_route::HttpMatch::default().ignore_uri_case(m.ignore_uri_case);
        if let Some(n) = &m.name {
            hm = hm.named(n);
        }
        if let Some(u) = &m.uri {
            hm = hm.with_uri(string_match(u));
        }
        if let Some(u) = &m.scheme {
            hm = hm.with_scheme(string_match(u));
        }
        if let Some(u) = &m.method {
            hm = hm.with_method(string_match(u));
        }
        if let Some(u) = &m.authority {
            hm = hm.with_authority(string_match(u));
        }
        for (name, v) in &m.headers {
            if let Ok(name) = http::HeaderName::try_from(name.as_str()) {
                hm = match v {
                    model::StringMatch::Prefix(p) if p.is_empty() => hm.with_header_present(name),
                    v => hm.with_header(name, string_match(v)),
                };
            }
        }
        for (name, v) in &m.without_headers {
            if let Ok(name) = http::HeaderName::try_from(name.as_str()) {
                let value = match v {
                    model::StringMatch::Prefix(p) if p.is_empty() => None,
                    v => Some(string_match(v)),
                };
                hm = hm.without_header(name, value);
            }
        }
        for (name, v) in &m.query_params {
            hm = hm.with_query_param(name, string_match(v));
        }
        matches.push(hm);
    }
    if !r.matches.is_empty() && matches.is_empty() {
        return None;
    }
    let mut rc = match &r.redirect {
        Some(red) => mesh_route::RouteConfig::redirect(
            &r.name,
            mesh_route::Redirect {
                uri: red.uri.clone(),
                authority: red.authority.clone(),
                redirect_code: StatusCode::from_u16(red.code)
                    .unwrap_or(StatusCode::MOVED_PERMANENTLY),
                ..Default::default()
            },
        ),
        None => mesh_route::RouteConfig::forward(
            &r.name,
            r.route
                .iter()
                .map(|d| {
                    mesh_route::WeightedDestination::new(destination(&d.destination), d.weight)
                        .with_headers(headers(&d.headers))
                })
                .collect(),
        ),
    };
    for m in matches {
        rc = rc.with_match(m);
    }
    if let Some(f) = &r.fault {
        rc = rc.with_fault(mesh_route::FaultConfig {
            delay: f.delay.map(|(d, p)| mesh_route::DelayFault {
                fixed_delay: d,
                percentage: p,
            }),
            abort: f.abort.as_ref().map(|(a, p)| mesh_route::AbortFault {
                status: match a {
                    model::Abort::Http(code) => mesh_route::AbortStatus::Http(
                        StatusCode::from_u16(*code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    ),
                    model::Abort::Grpc(name) => mesh_route::AbortStatus::Grpc(grpc_code(name)),
                },
                percentage: *p,
            }),
        });
    }
    for m in &r.mirrors {
        rc = rc.with_mirror(mesh_route::MirrorPolicy::new(
            destination(&m.destination),
            Some(m.percentage),
        ));
    }
    rc = rc.with_headers(headers(&r.headers));
    if let Some(rw) = &r.rewrite {
        rc = rc.with_rewrite(mesh_route::Rewrite {
            uri: rw.uri.clone(),
            authority: rw.authority.clone(),
        });
    }
    Some(rc)
}

type DestinationSvc = SharedService<Request<mesh_route::RouteBody<Body>>, Response<Body>>;

#[allow(clippy::too_many_arguments)] // one call site: the snapshot builder's pieces
fn destination_service(
    config: &Config,
    hosts: &HashMap<String, usize>,
    from_service: &model::Service,
    from_port: u16,
    target: Target<'_>,
    route: Option<&model::HttpRoute>,
    previous: Option<&Snapshot>,
    env: &Env,
    clusters: &mut BTreeMap<ClusterKey, Arc<Cluster>>,
    budgets: &mut HashMap<ClusterKey, Arc<dyn RetryBudget>>,
    retry_stats: &mut Vec<(ClusterKey, RetryStats)>,
) -> Result<DestinationSvc, BoxError> {
    let dest = target.destination;
    let Some(si) = find_service(hosts, &dest.host) else {
        return Err(format!("no ServiceEntry has host {:?}", dest.host).into());
    };
    let service = &config.services[si];
    let same = std::ptr::eq(service, from_service);
    let port = match dest.port {
        Some(p) => service.ports.iter().find(|sp| sp.number == p),
        None if same => service.ports.iter().find(|sp| sp.number == from_port),
        None => service.ports.first(),
    }
    .ok_or_else(|| format!("service {} has no port {:?}", service.name, dest.port))?;
    let canonical = service.hosts.first().cloned().unwrap_or_default();
    let key = ClusterKey {
        host: canonical.clone(),
        subset: dest.subset.clone(),
        port: port.number,
    };
    let rule = rule_for(config, service);
    let (policy, selector) = match (&dest.subset, rule) {
        (None, Some(dr)) => (dr.traffic_policy.clone(), None),
        (None, None) => (model::TrafficPolicy::default(), None),
        (Some(subset), Some(dr)) => match dr.subsets.iter().find(|s| &s.name == subset) {
            Some(s) => (
                s.traffic_policy.clone(),
                Some(LabelSelector::from(s.labels.clone())),
            ),
            None => {
                return Err(format!("DestinationRule {} has no subset {subset:?}", dr.name).into());
            }
        },
        (Some(subset), None) => {
            return Err(
                format!("no DestinationRule defines subset {subset:?} of {canonical}").into(),
            );
        }
    };
    let dns_targets = (service.resolution == model::Resolution::Dns)
        .then(|| dns_targets(service, port, selector.as_ref()));
    let endpoints = if dns_targets.is_some() {
        Vec::new()
    } else {
        endpoints_for(service, port, selector.as_ref())
    };
    let destination = DestinationService {
        host: canonical.as_str().into(),
        name: service.name.as_str().into(),
    };
    let cluster = match clusters.get(&key) {
        Some(c) => c.clone(),
        None => {
            let reused = previous
                .and_then(|p| p.clusters.get(&key))
                .filter(|c| {
                    c.policy == policy
                        && c.destination == destination
                        && c.dns.as_ref().map(|(t, _)| t) == dns_targets.as_ref()
                })
                .cloned();
            let c = match reused {
                Some(c) => {
                    if c.dns.is_none() {
                        c.endpoints.replace(endpoints);
                    }
                    c
                }
                None => {
                    let tls = upstream_tls(
                        rule.map_or("", |r| r.name.as_str()),
                        &policy,
                        env.identity.as_ref(),
                    )?;
                    let mut c = Cluster::build(
                        key.clone(),
                        destination,
                        endpoints,
                        port.protocol,
                        &policy,
                        tls,
                    )?;
                    if let Some(targets) = dns_targets {
                        let handle = dns::watch(
                            targets.clone(),
                            c.endpoints.clone(),
                            env.resolver.clone(),
                            dns::DEFAULT_REFRESH,
                        );
                        c.dns = Some((targets, handle));
                    }
                    Arc::new(c)
                }
            };
            clusters.insert(key.clone(), c.clone());
            c
        }
    };
    let base = cluster.service.clone();
    if target.role == Role::Mirror {
        return Ok(SharedService::new(
            ServiceBuilder::new()
                .map_request(|req: Request<mesh_route::RouteBody<Body>>| req.map(body::boxed))
                .service(base),
        ));
    }
    let istio = route
        .and_then(|r| r.retries.as_ref())
        .map(|r| IstioRetries {
            attempts: Some(i64::from(r.attempts)),
            per_try_timeout: r.per_try_timeout,
            retry_on: r.retry_on.clone(),
            backoff: r.backoff,
        });
    let timeout = route.and_then(|r| r.timeout);
    let policy_r: RetryPolicy = RetryPolicy::from_istio(istio.as_ref(), timeout)?;
    let mut layer = RetryLayer::new(policy_r).limit(cluster.pool.retry_limit());
    if let Some(b) = &policy.retry_budget {
        let budget = match budgets.get(&key) {
            Some(b) => b.clone(),
            None => {
                let b: Arc<dyn RetryBudget> =
                    Arc::new(ConcurrencyBudget::new(b.percent, b.min_retry_concurrency)?);
                budgets.insert(key.clone(), b.clone());
                b
            }
        };
        layer = layer.budget(budget);
    }
    retry_stats.push((key, layer.stats()));
    Ok(SharedService::new(
        ServiceBuilder::new()
            .layer(layer)
            .map_request(
                |req: Request<mesh_retry::RetryBody<mesh_route::RouteBody<Body>>>| {
                    req.map(body::boxed)
                },
            )
            .service(base),
    ))
}

/// What outlives config versions and is needed to build clusters.
#[derive(Debug)]
struct Env {
    identity: Option<CredentialStore>,
    resolver: Resolver,
}

/// The names to resolve for a DNS service port: each endpoint's address, or
/// with no endpoints the service's hosts; narrowed to the subset's labels.
fn dns_targets(
    service: &model::Service,
    port: &model::ServicePort,
    selector: Option<&LabelSelector>,
) -> Vec<DnsTarget> {
    let target_port = |ep: Option<&model::EndpointSpec>| {
        ep.and_then(|e| e.ports.get(&port.name).copied())
            .or(port.target_port)
            .unwrap_or(port.number)
    };
    if service.endpoints.is_empty() {
        return service
            .hosts
            .iter()
            .filter(|h| !h.starts_with('*'))
            .map(|h| DnsTarget::new(h.clone(), target_port(None)))
            .collect();
    }
    service
        .endpoints
        .iter()
        .filter(|ep| {
            selector.is_none_or(|s| s.labels().iter().all(|(k, v)| ep.labels.get(k) == Some(v)))
        })
        .map(|ep| {
            let mut t = DnsTarget::new(ep.address.clone(), target_port(Some(ep)));
            t.labels = ep.labels.clone();
            t.weight = ep.weight;
            if let Some(l) = &ep.locality {
                t.locality = mesh_core::Locality::parse(l);
            }
            t
        })
        .collect()
}

/// The mTLS settings of a cluster from its DestinationRule `tls`.
fn upstream_tls(
    rule: &str,
    policy: &model::TrafficPolicy,
    identity: Option<&CredentialStore>,
) -> Result<Option<UpstreamTls>, BoxError> {
    let Some(tls) = &policy.tls else {
        return Ok(None);
    };
    let sans = tls.subject_alt_names.clone();
    match tls.mode {
        model::TlsMode::Disable => Ok(None),
        model::TlsMode::IstioMutual => match identity {
            Some(store) => Ok(Some(UpstreamTls {
                store: store.clone(),
                subject_alt_names: sans,
            })),
            None => Err(format!(
                "DestinationRule {rule}: tls.mode ISTIO_MUTUAL needs the proxy's identity: start it with --identity DIR (ca.pem, cert.pem, key.pem)"
            )
            .into()),
        },
        model::TlsMode::Mutual => {
            let (Some(cert), Some(key)) = (&tls.client_certificate, &tls.private_key) else {
                return Err(format!("DestinationRule {rule}: tls.mode MUTUAL needs clientCertificate and privateKey").into());
            };
            let files = IdentityFiles {
                ca: tls.ca_certificates.clone().unwrap_or_default().into(),
                cert: cert.into(),
                key: key.into(),
            };
            let store = CredentialStore::load(&files).map_err(|e| format!("DestinationRule {rule}: tls: {e}"))?;
            Ok(Some(UpstreamTls {
                store,
                subject_alt_names: sans,
            }))
        }
        model::TlsMode::Simple => Err(format!("DestinationRule {rule}: tls.mode SIMPLE is not implemented").into()),
    }
}

/// The outbound request path: the service's virtual IP (for a captured
/// connection) or the Host/`:authority` picks the service and port, the
/// port's router does the rest. What no service claims gets 502 `NR`
/// (Istio's REGISTRY_ONLY), or on a captured connection under `allow-any` is
/// passed through to its original destination.
#[derive(Clone, Debug)]
pub(crate) struct Outbound {
    proxy: Arc<Proxy>,
    policy: OutboundPolicy,
    passthrough: AddrPools,
}

impl Outbound {
    pub(crate) fn new(proxy: Arc<Proxy>, policy: OutboundPolicy) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(crate::tcp::CONNECT_TIMEOUT));
        let passthrough = AddrPools::new(connector, crate::capture::PASSTHROUGH_IDLE);
        Outbound {
            proxy,
            policy,
            passthrough,
        }
    }

    /// A request no service claims; `dst` is where its connection was going,
    /// when captured.
    fn unclaimed(&self, req: Request<Body>, dst: Option<SocketAddr>, host: &str) -> ResponseFuture {
        let (Some(dst), OutboundPolicy::AllowAny) = (dst, self.policy) else {
            return Box::pin(std::future::ready(Ok(unknown_host(host))));
        };
        // Envoy's PassthroughCluster: to where the app was connecting, with
        // the request as the app wrote it.
        let pool = self.passthrough.get(dst);
        Box::pin(async move { crate::cluster::forward_plain(&pool, req).await })
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

fn unknown_host(host: &str) -> Response<Body> {
    let mut res = Response::new(body::full(format!("no service for host {host:?}\n")));
    *res.status_mut() = StatusCode::BAD_GATEWAY;
    res.headers_mut()
        .insert(RESPONSE_FLAGS_HEADER, HeaderValue::from_static("NR"));
    res.extensions_mut()
        .insert(ResponseFlags::from(ResponseFlag::NoRouteFound));
    res
}

/// The host (lower case) and port a request names (absolute-form URI first,
/// then `Host`). Borrowed when the name is already lower case, as it almost
/// always is: no copy per request.
fn target_of<B>(req: &Request<B>) -> Option<(Cow<'_, str>, Option<u16>)> {
    let (host, port) = match req.uri().authority() {
        Some(a) => (a.host(), a.port_u16()),
        None => split_host_port(req.headers().get(http::header::HOST)?.to_str().ok()?)?,
    };
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    Some((host, port))
}

/// A `Host` value's host and port, split as `http::uri::Authority` splits
/// them (`host()`, `port_u16()`): an IPv6 literal keeps its brackets, a port
/// that is not a number is none. The value was checked by request
/// normalisation before routing.
fn split_host_port(value: &str) -> Option<(&str, Option<u16>)> {
    let host = if value.starts_with('[') {
        &value[..=value.find(']')?]
    } else {
        value.split(':').next().unwrap_or(value)
    };
    let port = value
        .rsplit_once(':')
        .filter(|(before, _)| before.len() >= host.len())
        .and_then(|(_, port)| port.parse().ok());
    Some((host, port))
}

impl Service<Request<Body>> for Outbound {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let snapshot = self.proxy.current();
        headers::strip_hop_by_hop(req.headers_mut());
        // Taken out: nothing below reads it, and a request whose extensions
        // are left empty spares the retry layer a copy of them.
        let dst = req.extensions_mut().remove::<OriginalDst>().map(|d| d.0);
        let vip = dst
            .and_then(|d| snapshot.find_vip(d))
            .filter(|v| matches!(v.target, VipTarget::Http))
            .map(|v| (v.service, Some(v.port)));
        let (si, port) = match vip {
            Some(found) => found,
            None => {
                let Some((host, port)) = target_of(&req) else {
                    return self.unclaimed(req, dst, "");
                };
                let Some(&si) = snapshot.hosts.get(&*host) else {
                    let host = host.into_owned();
                    return self.unclaimed(req, dst, &host);
                };
                // A captured request without a port in its Host went to the
                // port it was connecting to.
                (si, port.or(dst.map(|d| d.port())))
            }
        };
        let routes = &snapshot.services[si].ports;
        let svc = match port {
            Some(p) => routes.iter().find(|(n, _)| *n == p),
            None => routes.first(),
        };
        let Some((_, svc)) = svc else {
            let host = target_of(&req)
                .map(|(h, _)| h.into_owned())
                .unwrap_or_default();
            return self.unclaimed(req, dst, &host);
        };
        svc.route(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `target_of` did before: parse the `Host` as an `Authority`;
    /// `None` for what request normalisation refuses before routing.
    fn by_authority(value: &str) -> Option<(String, Option<u16>)> {
        let a: http::uri::Authority = value.parse().ok()?;
        crate::normalize::check_authority(&a).ok()?;
        Some((a.host().to_ascii_lowercase(), a.port_u16()))
    }

    fn with_host(value: &str) -> Request<()> {
        let mut req = Request::new(());
        if let Ok(v) = http::HeaderValue::from_str(value) {
            req.headers_mut().insert(http::header::HOST, v);
        }
        req
    }

    #[test]
    fn hosts_split_as_an_authority_would() {
        for value in [
            "backend",
            "Backend.Default.svc:9080",
            "10.0.0.1:80",
            "[::1]",
            "[fd99::2]:9080",
        ] {
            let got = target_of(&with_host(value)).map(|(h, p)| (h.into_owned(), p));
            assert_eq!(got, by_authority(value), "{value}");
        }
        assert!(matches!(
            target_of(&with_host("reviews")),
            Some((Cow::Borrowed("reviews"), None))
        ));
    }

    proptest! {
        /// Every Host an `Authority` accepts (normalisation refuses the
        /// rest with 400 before routing) splits the same way.
        #[test]
        fn same_split_as_authority(value in "[a-zA-Z0-9.\\-\\[\\]:]{1,24}") {
            if let Some(expected) = by_authority(&value) {
                let got = target_of(&with_host(&value)).map(|(h, p)| (h.into_owned(), p));
                prop_assert_eq!(got, Some(expected));
            }
        }
    }
}
