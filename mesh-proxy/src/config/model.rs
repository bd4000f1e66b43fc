//! The validated config: what the Istio objects mean, in plain Rust, ready to
//! be turned into layer stacks. It is serialised as-is by `/config_dump`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

/// A whole config: every file of a `run` or `validate`, merged.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Config {
    /// Services, from `ServiceEntry`s.
    pub services: Vec<Service>,
    /// Routes, from `VirtualService`s.
    pub virtual_services: Vec<VirtualService>,
    /// Traffic policies, from `DestinationRule`s.
    pub destination_rules: Vec<DestinationRule>,
    /// Listeners, from `Sidecar`s.
    pub listeners: Vec<Listener>,
    /// Inbound mTLS mode, from `PeerAuthentication` (`None`: Istio's default,
    /// PERMISSIVE).
    pub peer_authentication: Option<MtlsMode>,
    /// Inbound authorization, from `AuthorizationPolicy`s.
    pub authorization: Vec<AuthorizationPolicy>,
}

/// A service: hosts, ports and endpoints.
#[derive(Clone, Debug, Serialize)]
pub struct Service {
    /// The `ServiceEntry`'s name.
    pub name: String,
    /// Its namespace (`default` when not given).
    pub namespace: String,
    /// The hosts it answers to.
    pub hosts: Vec<String>,
    /// Its virtual IPs (`addresses`): a captured connection to one of them,
    /// on one of the ports, is this service's.
    pub addresses: Vec<AddressBlock>,
    /// Its ports.
    pub ports: Vec<ServicePort>,
    /// How endpoint addresses are found.
    pub resolution: Resolution,
    /// Its endpoints.
    pub endpoints: Vec<EndpointSpec>,
}

/// An address or a CIDR block of a `ServiceEntry`'s `addresses`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AddressBlock {
    /// The address (host bits cleared).
    pub ip: std::net::IpAddr,
    /// The prefix length (32 or 128 for a single address).
    pub prefix: u8,
}

impl AddressBlock {
    /// Parses `10.0.0.1` or `240.240.0.0/16`.
    pub fn parse(s: &str) -> Option<AddressBlock> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let ip: std::net::IpAddr = ip.parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        Some(AddressBlock {
            ip: mask(ip, prefix),
            prefix,
        })
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        ip.is_ipv4() == self.ip.is_ipv4() && mask(ip, self.prefix) == self.ip
    }
}

fn mask(ip: std::net::IpAddr, prefix: u8) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            std::net::IpAddr::V4(bits.into())
        }
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            std::net::IpAddr::V6(bits.into())
        }
    }
}

/// A service port.
#[derive(Clone, Debug, Serialize)]
pub struct ServicePort {
    /// The port number clients use.
    pub number: u16,
    /// Its name (endpoint `ports` maps refer to it).
    pub name: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The endpoint port, when it differs from `number`.
    pub target_port: Option<u16>,
}

/// The protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// HTTP/1.1 upstream.
    Http,
    /// HTTP/2 (cleartext, prior knowledge) upstream.
    Http2,
    /// gRPC: HTTP/2 upstream.
    Grpc,
    /// Opaque TCP or TLS (not served by the HTTP listeners).
    Tcp,
}

/// `resolution`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Resolution {
    /// Endpoint addresses are IPs.
    Static,
    /// Endpoint addresses (or the hosts) are DNS names.
    Dns,
    /// No resolution: the proxy cannot balance (accepted with a warning).
    None,
}

/// An endpoint of a service.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointSpec {
    /// An IP or (for DNS resolution) a name.
    pub address: String,
    /// Port name → target port.
    pub ports: BTreeMap<String, u16>,
    /// Labels (`version: v1`).
    pub labels: BTreeMap<String, String>,
    /// Balancing weight (0: unset).
    pub weight: u32,
    /// `region/zone/subzone`.
    pub locality: Option<String>,
}

/// A `VirtualService`.
#[derive(Clone, Debug, Serialize)]
pub struct VirtualService {
    /// Its name.
    pub name: String,
    /// The hosts whose traffic it routes.
    pub hosts: Vec<String>,
    /// Its HTTP routes, in order.
    pub http: Vec<HttpRoute>,
}

/// One HTTP route.
#[derive(Clone, Debug, Serialize)]
pub struct HttpRoute {
    /// The route's name (`<vs>.<index>` when not given).
    pub name: String,
    /// Match blocks, ORed; empty matches everything.
    pub matches: Vec<MatchRequest>,
    /// Weighted destinations.
    pub route: Vec<WeightedDestination>,
    /// A redirect instead of routing.
    pub redirect: Option<Redirect>,
    /// Rewrites before forwarding.
    pub rewrite: Option<Rewrite>,
    /// The overall timeout (`None`: Istio's default, disabled).
    pub timeout: Option<Duration>,
    /// The retry policy (`None`: Istio's default policy).
    pub retries: Option<Retries>,
    /// Fault injection.
    pub fault: Option<Fault>,
    /// Mirrors, each with its percentage.
    pub mirrors: Vec<Mirror>,
    /// Header operations for every destination.
    pub headers: HeaderOps,
}

/// A string condition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum StringMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Matches the whole string (RE2 syntax).
    Regex(String),
}

/// One match block: every condition must hold.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MatchRequest {
    /// The block's name.
    pub name: Option<String>,
    /// Path condition.
    pub uri: Option<StringMatch>,
    /// Scheme condition.
    pub scheme: Option<StringMatch>,
    /// Method condition.
    pub method: Option<StringMatch>,
    /// Authority condition.
    pub authority: Option<StringMatch>,
    /// Header conditions (names lowercase).
    pub headers: BTreeMap<String, StringMatch>,
    /// Query parameter conditions.
    pub query_params: BTreeMap<String, StringMatch>,
    /// Headers that must be absent (or not match).
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Compare the path case-insensitively.
    pub ignore_uri_case: bool,
    /// The listener port the request came on.
    pub port: Option<u16>,
}

/// A destination with its weight.
#[derive(Clone, Debug, Serialize)]
pub struct WeightedDestination {
    /// Where.
    pub destination: Destination,
    /// Relative weight.
    pub weight: u32,
    /// Header operations for this destination.
    pub headers: HeaderOps,
}

/// A service (host), subset and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Destination {
    /// The service host.
    pub host: String,
    /// The subset of its endpoints.
    pub subset: Option<String>,
    /// The service port.
    pub port: Option<u16>,
}

/// A redirect.
#[derive(Clone, Debug, Serialize)]
pub struct Redirect {
    /// Replace the path.
    pub uri: Option<String>,
    /// Replace the authority.
    pub authority: Option<String>,
    /// The status (301 when not given).
    pub code: u16,
}

/// A rewrite.
#[derive(Clone, Debug, Serialize)]
pub struct Rewrite {
    /// Replaces the matched prefix (or the path).
    pub uri: Option<String>,
    /// Replaces the authority.
    pub authority: Option<String>,
}

/// A retry policy.
#[derive(Clone, Debug, Serialize)]
pub struct Retries {
    /// Retries (not counting the first try).
    pub attempts: u32,
    /// The timeout of each try.
    pub per_try_timeout: Option<Duration>,
    /// `retryOn` as written (validated).
    pub retry_on: Option<String>,
    /// Envoy's backoff base interval.
    pub backoff: Option<Duration>,
    /// Whether retries prefer other endpoints (default true).
    pub ignore_previous_hosts: Option<bool>,
}

/// Fault injection.
#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    /// A delay and the percentage of requests delayed.
    pub delay: Option<(Duration, f64)>,
    /// An abort and the percentage of requests aborted.
    pub abort: Option<(Abort, f64)>,
}

/// What an abort answers.
#[derive(Clone, Debug, Serialize)]
pub enum Abort {
    /// An HTTP status.
    Http(u16),
    /// A gRPC status name (`UNAVAILABLE`) or number.
    Grpc(String),
}

/// A mirror.
#[derive(Clone, Debug, Serialize)]
pub struct Mirror {
    /// Where copies go.
    pub destination: Destination,
    /// The percentage of requests copied.
    pub percentage: f64,
}

/// Header operations on requests and responses.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HeaderOps {
    /// On requests.
    pub request: HeaderOperations,
    /// On responses.
    pub response: HeaderOperations,
}

/// `set`, `add`, `remove`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HeaderOperations {
    /// Replace these headers.
    pub set: BTreeMap<String, String>,
    /// Append these headers.
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    pub remove: Vec<String>,
}

/// A `DestinationRule`.
#[derive(Clone, Debug, Serialize)]
pub struct DestinationRule {
    /// Its name.
    pub name: String,
    /// The service host it applies to.
    pub host: String,
    /// The policy of the whole service.
    pub traffic_policy: TrafficPolicy,
    /// Subsets, each with its labels and policy (the subset's own fields
    /// override the service's, as in Istio).
    pub subsets: Vec<Subset>,
}

/// A subset.
#[derive(Clone, Debug, Serialize)]
pub struct Subset {
    /// Its name.
    pub name: String,
    /// The labels its endpoints carry.
    pub labels: BTreeMap<String, String>,
    /// Its own policy, merged over the service's.
    pub traffic_policy: TrafficPolicy,
}

/// A traffic policy; every part optional (unset: inherit or default).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TrafficPolicy {
    /// Balancing.
    pub load_balancer: Option<LoadBalancer>,
    /// Connection-pool limits.
    pub connection_pool: Option<ConnectionPool>,
    /// Outlier detection.
    pub outlier_detection: Option<OutlierDetection>,
    /// Upstream TLS.
    pub tls: Option<ClientTls>,
    /// Retry budget.
    pub retry_budget: Option<RetryBudget>,
}

impl TrafficPolicy {
    /// This policy with `over`'s set parts replacing its own.
    pub fn merged(&self, over: &TrafficPolicy) -> TrafficPolicy {
        TrafficPolicy {
            load_balancer: over
                .load_balancer
                .clone()
                .or_else(|| self.load_balancer.clone()),
            connection_pool: over
                .connection_pool
                .clone()
                .or_else(|| self.connection_pool.clone()),
            outlier_detection: over
                .outlier_detection
                .clone()
                .or_else(|| self.outlier_detection.clone()),
            tls: over.tls.clone().or_else(|| self.tls.clone()),
            retry_budget: over
                .retry_budget
                .clone()
                .or_else(|| self.retry_budget.clone()),
        }
    }
}

/// The balancing algorithm.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum LoadBalancer {
    /// `ROUND_ROBIN`.
    RoundRobin,
    /// `RANDOM`.
    Random,
    /// `LEAST_REQUEST` (and `LEAST_CONN`, its deprecated name; and unset).
    LeastRequest,
    /// `consistentHash` with a ring.
    RingHash {
        /// What to hash.
        key: HashKey,
        /// `minimumRingSize`.
        minimum_ring_size: u64,
    },
    /// `consistentHash` with Maglev.
    Maglev {
        /// What to hash.
        key: HashKey,
        /// `tableSize`.
        table_size: u64,
    },
}

/// A consistent-hash key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum HashKey {
    /// `httpHeaderName`.
    Header(String),
    /// `httpCookie`.
    Cookie {
        /// Name.
        name: String,
        /// Path.
        path: Option<String>,
        /// TTL.
        ttl: Option<Duration>,
    },
    /// `useSourceIp`.
    SourceIp,
    /// `httpQueryParameterName`.
    QueryParameter(String),
}

/// `connectionPool`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ConnectionPool {
    /// `tcp.maxConnections`.
    pub max_connections: Option<u32>,
    /// `tcp.connectTimeout`.
    pub connect_timeout: Option<Duration>,
    /// `http.http1MaxPendingRequests`.
    pub max_pending_requests: Option<u32>,
    /// `http.http2MaxRequests`.
    pub max_requests: Option<u32>,
    /// `http.maxRetries`.
    pub max_retries: Option<u32>,
    /// `http.idleTimeout`.
    pub idle_timeout: Option<Duration>,
}

/// `outlierDetection`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OutlierDetection {
    /// `consecutive5xxErrors` (default 5; 0 disables).
    pub consecutive_5xx: Option<u32>,
    /// `consecutiveGatewayErrors` (off unless set).
    pub consecutive_gateway: Option<u32>,
    /// `consecutiveLocalOriginFailures`.
    pub consecutive_local_origin: Option<u32>,
    /// `splitExternalLocalOriginErrors`.
    pub split_local_origin: bool,
    /// `interval` (default 10 s).
    pub interval: Option<Duration>,
    /// `baseEjectionTime` (default 30 s).
    pub base_ejection_time: Option<Duration>,
    /// `maxEjectionPercent` (default 10).
    pub max_ejection_percent: Option<u32>,
    /// `minHealthPercent` (default 0).
    pub min_health_percent: Option<u32>,
}

/// `tls`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClientTls {
    /// The mode.
    pub mode: TlsMode,
    /// `clientCertificate` (MUTUAL).
    pub client_certificate: Option<String>,
    /// `privateKey` (MUTUAL).
    pub private_key: Option<String>,
    /// `caCertificates` (MUTUAL, SIMPLE).
    pub ca_certificates: Option<String>,
    /// `subjectAltNames`: accepted server identities.
    pub subject_alt_names: Vec<String>,
    /// `sni`.
    pub sni: Option<String>,
}

/// `tls.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TlsMode {
    /// Plaintext.
    Disable,
    /// TLS without a client certificate.
    Simple,
    /// mTLS with the given files.
    Mutual,
    /// mTLS with the proxy's identity.
    IstioMutual,
}

/// `retryBudget`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetryBudget {
    /// Retries in flight as a percentage of active requests (default 20).
    pub percent: f64,
    /// Retries always allowed (default 3).
    pub min_retry_concurrency: u32,
}

/// A listener.
#[derive(Clone, Debug, Serialize)]
pub struct Listener {
    /// `inbound|PORT` or `outbound|PORT` style name.
    pub name: String,
    /// Inbound (to the local app) or outbound.
    pub direction: Direction,
    /// The address to bind.
    pub bind: SocketAddr,
    /// For inbound: the local app.
    pub default_endpoint: Option<SocketAddr>,
    /// `captureMode: IPTABLES`: the listener receives connections redirected
    /// by `mesh-proxy iptables` and serves each by its original destination.
    pub capture: bool,
}

/// A listener's direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Direction {
    /// From remote callers to the local app.
    Inbound,
    /// From the local app to services.
    Outbound,
}

/// `PeerAuthentication` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MtlsMode {
    /// mTLS required.
    Strict,
    /// mTLS or plaintext.
    Permissive,
    /// Plaintext.
    Disable,
}

/// An `AuthorizationPolicy`.
#[derive(Clone, Debug, Serialize)]
pub struct AuthorizationPolicy {
    /// Its name.
    pub name: String,
    /// ALLOW or DENY.
    pub action: AuthzAction,
    /// Rules, ORed.
    pub rules: Vec<AuthzRule>,
}

/// ALLOW or DENY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AuthzAction {
    /// Allow what matches.
    Allow,
    /// Deny what matches.
    Deny,
}

/// A rule: any `from` and any `to` must match (empty: anything).
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuthzRule {
    /// Sources, ORed.
    pub from: Vec<AuthzSource>,
    /// Operations, ORed.
    pub to: Vec<AuthzOperation>,
}

/// `from.source`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuthzSource {
    /// Principals any of which must match (empty: anyone).
    pub principals: Vec<String>,
}

/// `to.operation`: paths and methods must both match.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuthzOperation {
    /// Paths (empty: any).
    pub paths: Vec<String>,
    /// Methods (empty: any).
    pub methods: Vec<String>,
}
