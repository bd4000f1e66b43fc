//! Plain config structs: Istio's `VirtualService` HTTP routes as Rust values.
//!
//! These hold no YAML and no behaviour; `mesh-proxy` maps Istio manifests onto
//! them and [`Router::builder`](crate::Router::builder) compiles them into a
//! stack of layers, checking them once (regexes compile, percentages lie in
//! 0–100, weights are not all zero…) and naming the route in any
//! [`ConfigError`]. Field names follow Istio's (`ignoreUriCase` →
//! [`ignore_uri_case`](HttpMatch::ignore_uri_case)).

use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use mesh_core::BoxError;
use mesh_core::classify::GrpcCode;

/// Istio's `StringMatch`: one of `exact`, `prefix` or `regex`.
///
/// Matching is case-sensitive. A regex uses RE2 syntax (Rust's `regex` crate
/// accepts RE2's syntax and, like RE2, runs in linear time) and must match the
/// **whole** value, as Envoy's `safe_regex` does: `\d+` matches `123` but not
/// `a123`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StringMatch {
    /// The value equals this string.
    Exact(String),
    /// The value starts with this string.
    Prefix(String),
    /// The whole value matches this RE2 regular expression.
    Regex(String),
}

impl StringMatch {
    /// `exact: s`.
    pub fn exact(s: impl Into<String>) -> Self {
        StringMatch::Exact(s.into())
    }

    /// `prefix: s`.
    pub fn prefix(s: impl Into<String>) -> Self {
        StringMatch::Prefix(s.into())
    }

    /// `regex: s`.
    pub fn regex(s: impl Into<String>) -> Self {
        StringMatch::Regex(s.into())
    }
}

/// One entry of `headers` or `withoutHeaders`: a header name and what its
/// value must match. `value: None` is Istio's `{}`: the header must be present
/// (with any value, even empty).
///
/// When a request carries the header several times, the values are joined with
/// `,` before matching, as Envoy does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    /// The header name (lowercase, as Istio requires).
    pub name: HeaderName,
    /// What the value must match; `None`: presence only.
    pub value: Option<StringMatch>,
}

/// One entry of `queryParams`: the first value of the query parameter `name`
/// must match. `?key` with no `=` has the value `""` (so `exact: ""` matches
/// it). Names and values are compared as received, without percent-decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryParamMatch {
    /// The parameter name.
    pub name: String,
    /// What its value must match.
    pub value: StringMatch,
}

/// Istio's `HTTPMatchRequest`: every condition set here must hold (AND).
///
/// The request path is compared **as received**: no percent-decoding, no
/// `..`/`.` resolution, no slash merging. `/public/../admin` is a path under
/// `/public`, and it is forwarded as it came. If the upstream normalises
/// paths, normalise them before routing (Envoy's `normalize_path` at the
/// listener), so that the route and the upstream see the same path.
///
/// ```
/// use mesh_route::{HttpMatch, StringMatch};
///
/// let jason = HttpMatch::default()
///     .with_uri(StringMatch::prefix("/reviews"))
///     .with_header(http::HeaderName::from_static("end-user"), StringMatch::exact("jason"));
/// assert!(jason.headers.len() == 1 && !jason.ignore_uri_case);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpMatch {
    /// The match block's `name`, appended to the route's name (`route.match`)
    /// in [`RouteName`](mesh_core::context::RouteName).
    pub name: String,
    /// `uri`: the path without its query string.
    pub uri: Option<StringMatch>,
    /// `scheme`: the request URI's scheme, `http` when the URI has none
    /// (origin-form HTTP/1.1; a server terminating TLS sets the URI scheme).
    pub scheme: Option<StringMatch>,
    /// `method`, e.g. `exact: GET`.
    pub method: Option<StringMatch>,
    /// `authority`: the URI's authority (HTTP/2 `:authority`), else `Host`,
    /// as received (with a port if the client sent one).
    pub authority: Option<StringMatch>,
    /// `headers`: each must match. Istio ignores the keys `uri`, `scheme`,
    /// `method` and `authority` here, and so does this crate.
    pub headers: Vec<HeaderMatch>,
    /// `withoutHeaders`: the block does not match if any of these matches.
    pub without_headers: Vec<HeaderMatch>,
    /// `queryParams`: each must match.
    pub query_params: Vec<QueryParamMatch>,
    /// `ignoreUriCase`: `exact` and `prefix` URI matches ignore ASCII case
    /// (a `regex` is not affected, as in Istio).
    pub ignore_uri_case: bool,
}

impl HttpMatch {
    /// Sets `uri`.
    #[must_use]
    pub fn with_uri(mut self, m: StringMatch) -> Self {
        self.uri = Some(m);
        self
    }

    /// Sets `scheme`.
    #[must_use]
    pub fn with_scheme(mut self, m: StringMatch) -> Self {
        self.scheme = Some(m);
        self
    }

    /// Sets `method`.
    #[must_use]
    pub fn with_method(mut self, m: StringMatch) -> Self {
        self.method = Some(m);
        self
    }

    /// Sets `authority`.
    #[must_use]
    pub fn with_authority(mut self, m: StringMatch) -> Self {
        self.authority = Some(m);
        self
    }

    /// Adds a `headers` entry whose value must match `m`.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, m: StringMatch) -> Self {
        self.headers.push(HeaderMatch {
            name,
            value: Some(m),
        });
        self
    }

    /// Adds a `headers` entry that only requires the header to be present.
    #[must_use]
    pub fn with_header_present(mut self, name: HeaderName) -> Self {
        self.headers.push(HeaderMatch { name, value: None });
        self
    }

    /// Adds a `withoutHeaders` entry (`None`: the header must be absent).
    #[must_use]
    pub fn without_header(mut self, name: HeaderName, m: Option<StringMatch>) -> Self {
        self.without_headers.push(HeaderMatch { name, value: m });
        self
    }

    /// Adds a `queryParams` entry.
    #[must_use]
    pub fn with_query_param(mut self, name: impl Into<String>, m: StringMatch) -> Self {
        self.query_params.push(QueryParamMatch {
            name: name.into(),
            value: m,
        });
        self
    }

    /// Sets `ignoreUriCase`.
    #[must_use]
    pub fn ignore_uri_case(mut self, yes: bool) -> Self {
        self.ignore_uri_case = yes;
        self
    }

    /// Sets the match block's `name`.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// Istio's `Destination`: a service host, optionally a subset of it (from a
/// `DestinationRule`) and a port. The proxy plugs in one service per
/// destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    /// `host`, e.g. `reviews` or `reviews.default.svc.cluster.local`.
    pub host: String,
    /// `subset`, e.g. `v2`.
    pub subset: Option<String>,
    /// `port.number`, needed when the service has several ports.
    pub port: Option<u16>,
}

impl Destination {
    /// A destination of `host`, no subset, no port.
    pub fn new(host: impl Into<String>) -> Self {
        Destination {
            host: host.into(),
            subset: None,
            port: None,
        }
    }

    /// Sets the subset.
    #[must_use]
    pub fn with_subset(mut self, subset: impl Into<String>) -> Self {
        self.subset = Some(subset.into());
        self
    }

    /// Sets the port.
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if let Some(subset) = &self.subset {
            write!(f, " (subset {subset})")?;
        }
        Ok(())
    }
}

/// Istio's `HTTPRouteDestination`: a destination, its relative weight and the
/// header operations applied only when it is picked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedDestination {
    /// Where to send.
    pub destination: Destination,
    /// Relative weight: this destination gets `weight / sum(weights)` of the
    /// requests. A lone destination gets everything whatever its weight.
    pub weight: u32,
    /// Header operations for requests sent to (and responses from) this
    /// destination; applied before the route's own.
    pub headers: Headers,
}

impl WeightedDestination {
    /// `destination` with `weight`, no header operations.
    pub fn new(destination: Destination, weight: u32) -> Self {
        WeightedDestination {
            destination,
            weight,
            headers: Headers::default(),
        }
    }

    /// Sets the per-destination header operations.
    #[must_use]
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }
}

/// `set`, `add` and `remove` header operations (Istio's `HeaderOperations`).
///
/// Applied in Envoy's order: `remove` first, then `set` (overwrites or adds),
/// then `add` (appends another value). Setting `host` also sets the URI's
/// authority when the request has one (HTTP/2 `:authority`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderOperations {
    /// Headers to overwrite (or add when absent).
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Headers to append a value to.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Headers to remove.
    pub remove: Vec<HeaderName>,
}

impl HeaderOperations {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Istio's `Headers`: operations on the request (before forwarding) and on the
/// response (before returning it to the caller).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    /// Operations on the request.
    pub request: HeaderOperations,
    /// Operations on the response.
    pub response: HeaderOperations,
}

impl Headers {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

/// The `delay` of Istio's `HTTPFaultInjection`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DelayFault {
    /// `fixedDelay` (at least 1 ms).
    pub fixed_delay: Duration,
    /// The share of requests delayed, 0.0–100.0. Istio's `percentage: {value}`
    /// and the older `percent` both map here; unset in the YAML means 0.
    pub percentage: f64,
}

/// What an injected abort answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortStatus {
    /// `httpStatus` (200–599): the request fails with
    /// [`MeshError::FaultAbort`](mesh_core::MeshError::FaultAbort).
    Http(StatusCode),
    /// `grpcStatus`: an HTTP 200 response with `grpc-status` set (and
    /// `content-type: application/grpc`), as Envoy answers.
    Grpc(GrpcCode),
}

/// The `abort` of Istio's `HTTPFaultInjection`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AbortFault {
    /// The status to answer with.
    pub status: AbortStatus,
    /// The share of requests aborted, 0.0–100.0; unset in the YAML means 0.
    pub percentage: f64,
}

/// Istio's `HTTPFaultInjection`: delay and abort are drawn independently; the
/// delay comes first, then the abort.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// `delay`.
    pub delay: Option<DelayFault>,
    /// `abort`.
    pub abort: Option<AbortFault>,
}

/// One mirror target: `mirror` + `mirrorPercentage`, or one entry of
/// `mirrors`.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorPolicy {
    /// Where copies go.
    pub destination: Destination,
    /// The share of requests copied, 0.0–100.0. `None` (absent) is 100 %, as
    /// in Istio; an explicit 0 mirrors nothing.
    pub percentage: Option<f64>,
}

impl MirrorPolicy {
    /// Mirrors `percentage` % of requests (`None`: all) to `destination`.
    pub fn new(destination: Destination, percentage: Option<f64>) -> Self {
        MirrorPolicy {
            destination,
            percentage,
        }
    }
}

/// Istio's `HTTPRewrite`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// `uri`: replaces the matched prefix when the route matched by `prefix`,
    /// otherwise the whole path (the query string is kept).
    pub uri: Option<String>,
    /// `authority`: replaces `Host` / `:authority`.
    pub authority: Option<String>,
}

/// Istio's `HTTPRedirect`: answer with a redirect instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// `uri`: replaces the whole path. The request's query string is kept
    /// unless this value has its own (Envoy's `path_redirect`).
    pub uri: Option<String>,
    /// `authority`: replaces the host (and port).
    pub authority: Option<String>,
    /// `scheme`: `http` or `https`; default the request's.
    pub scheme: Option<String>,
    /// `port`: replaces the port.
    pub port: Option<u16>,
    /// `redirectCode`: a 3xx, default 301.
    pub redirect_code: StatusCode,
}

impl Default for Redirect {
    fn default() -> Self {
        Redirect {
            uri: None,
            authority: None,
            scheme: None,
            port: None,
            redirect_code: StatusCode::MOVED_PERMANENTLY,
        }
    }
}

/// What a route does with a request it matched.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteAction {
    /// `route`: forward to one of these destinations, by weight.
    Forward(Vec<WeightedDestination>),
    /// `redirect`: answer with a redirect.
    Redirect(Redirect),
}

/// Istio's `HTTPRoute`: when it applies (`match`) and what it does.
///
/// ```
/// use mesh_route::{Destination, HttpMatch, RouteConfig, StringMatch, WeightedDestination};
///
/// // virtual-service-reviews-80-20.yaml
/// let route = RouteConfig::forward("reviews", vec![
///     WeightedDestination::new(Destination::new("reviews").with_subset("v1"), 80),
///     WeightedDestination::new(Destination::new("reviews").with_subset("v2"), 20),
/// ]);
/// assert!(route.matches.is_empty(), "no match: matches every request");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    /// The route's `name`; unnamed routes are called `route-<index>`.
    pub name: String,
    /// `match`: the route applies when any block matches (OR); an empty list
    /// matches every request.
    pub matches: Vec<HttpMatch>,
    /// `route` or `redirect`.
    pub action: RouteAction,
    /// `fault`.
    pub fault: Option<FaultConfig>,
    /// `mirror`/`mirrorPercentage` (one entry) or `mirrors`.
    pub mirrors: Vec<MirrorPolicy>,
    /// `headers`.
    pub headers: Headers,
    /// `rewrite` (not allowed with a redirect).
    pub rewrite: Option<Rewrite>,
}

impl RouteConfig {
    /// A route forwarding to `destinations`, matching every request until
    /// [`with_match`](Self::with_match) adds a condition.
    pub fn forward(name: impl Into<String>, destinations: Vec<WeightedDestination>) -> Self {
        RouteConfig {
            name: name.into(),
            matches: Vec::new(),
            action: RouteAction::Forward(destinations),
            fault: None,
            mirrors: Vec::new(),
            headers: Headers::default(),
            rewrite: None,
        }
    }

    /// A route forwarding everything to one destination.
    pub fn to(name: impl Into<String>, destination: Destination) -> Self {
        Self::forward(name, vec![WeightedDestination::new(destination, 100)])
    }

    /// A route answering with `redirect`.
    pub fn redirect(name: impl Into<String>, redirect: Redirect) -> Self {
        RouteConfig {
            action: RouteAction::Redirect(redirect),
            ..Self::forward(name, Vec::new())
        }
    }

    /// Adds a match block (ORed with the others).
    #[must_use]
    pub fn with_match(mut self, m: HttpMatch) -> Self {
        self.matches.push(m);
        self
    }

    /// Sets `fault`.
    #[must_use]
    pub fn with_fault(mut self, fault: FaultConfig) -> Self {
        self.fault = Some(fault);
        self
    }

    /// Adds a mirror target.
    #[must_use]
    pub fn with_mirror(mut self, mirror: MirrorPolicy) -> Self {
        self.mirrors.push(mirror);
        self
    }

    /// Sets `headers`.
    #[must_use]
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// Sets `rewrite`.
    #[must_use]
    pub fn with_rewrite(mut self, rewrite: Rewrite) -> Self {
        self.rewrite = Some(rewrite);
        self
    }
}

/// A route configuration the router refuses, with the route it concerns.
#[derive(Debug)]
pub struct ConfigError {
    route: Option<String>,
    kind: ConfigErrorKind,
}

/// Why a configuration is refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A forwarding route has no destination.
    NoDestination,
    /// Several destinations and every weight is 0 ("total destination weight = 0").
    ZeroWeights,
    /// A regex does not compile (or is too big).
    Regex {
        /// The pattern as configured.
        pattern: String,
        /// The compiler's complaint.
        source: regex::Error,
    },
    /// A percentage is not within 0–100.
    Percentage {
        /// Which field (`fault.delay`, `fault.abort`, `mirror`).
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// A fault delay under 1 ms.
    DelayTooShort(Duration),
    /// An abort status outside 200–599.
    AbortStatus(StatusCode),
    /// A redirect code that is not 3xx.
    RedirectCode(StatusCode),
    /// `rewrite` together with `redirect`.
    RewriteWithRedirect,
    /// A rewrite or redirect value that cannot be put in a URI.
    InvalidUri {
        /// Which field (`rewrite.uri`, `redirect.authority`…).
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// A query parameter name that is empty.
    EmptyQueryParam,
    /// The destination could not be made into a service.
    Destination {
        /// The destination.
        destination: Destination,
        /// Why.
        source: BoxError,
    },
}

impl ConfigError {
    /// An error about no particular route (a layer built on its own).
    pub fn new(kind: ConfigErrorKind) -> Self {
        ConfigError { route: None, kind }
    }

    pub(crate) fn in_route(mut self, route: &str) -> Self {
        self.route = Some(route.to_owned());
        self
    }

    /// The route concerned, when known.
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// What is wrong.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }
}

impl From<ConfigErrorKind> for ConfigError {
    fn from(kind: ConfigErrorKind) -> Self {
        ConfigError::new(kind)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(route) = &self.route {
            write!(f, "route `{route}`: ")?;
        }
        match &self.kind {
            ConfigErrorKind::NoDestination => f.write_str("no destination to forward to"),
            ConfigErrorKind::ZeroWeights => f.write_str("total destination weight = 0"),
            ConfigErrorKind::Regex { pattern, source } => {
                write!(f, "invalid regex `{pattern}`: {source}")
            }
            ConfigErrorKind::Percentage { field, value } => {
                write!(f, "{field} percentage {value} is not within 0-100")
            }
            ConfigErrorKind::DelayTooShort(d) => {
                write!(f, "fault delay {d:?} is shorter than 1ms")
            }
            ConfigErrorKind::AbortStatus(s) => {
                write!(f, "fault abort status {} is not within 200-599", s.as_u16())
            }
            ConfigErrorKind::RedirectCode(s) => {
                write!(f, "redirect code {} is not a 3xx", s.as_u16())
            }
            ConfigErrorKind::RewriteWithRedirect => {
                f.write_str("rewrite cannot be combined with redirect")
            }
            ConfigErrorKind::InvalidUri { field, value } => {
                write!(f, "{field} `{value}` is not valid in a URI")
            }
            ConfigErrorKind::EmptyQueryParam => f.write_str("empty query parameter name"),
            ConfigErrorKind::Destination {
                destination,
                source,
            } => write!(f, "destination {destination}: {source}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ConfigErrorKind::Regex { source, .. } => Some(source),
            ConfigErrorKind::Destination { source, .. } => Some(&**source),
            _ => None,
        }
    }
}
