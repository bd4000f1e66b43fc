//! From the Istio serde models to the validated [`model`](super::model),
//! reporting every bad value with its position and every ignored Istio field
//! as a warning.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_saphyr::Location;

use super::diag::Diagnostics;
use super::istio::common::{Metadata, Percent, S, StringMatch as IStringMatch, Unsupported};
use super::istio::destination_rule as dr;
use super::istio::security as sec;
use super::istio::service_entry as se;
use super::istio::sidecar as sc;
use super::istio::virtual_service as vs;
use super::model::*;

/// Where diagnostics of one object go, and how they are worded.
pub(crate) struct Ctx<'a> {
    pub(crate) diags: &'a mut Diagnostics,
    pub(crate) kind: &'static str,
    pub(crate) name: String,
    pub(crate) line_offset: u64,
    pub(crate) errors: usize,
}

impl Ctx<'_> {
    fn pos(&self, loc: &Location) -> (u64, u64) {
        (loc.line() + self.line_offset, loc.column())
    }

    fn error_at(&mut self, loc: &Location, field: &str, msg: impl Display) {
        let (line, col) = self.pos(loc);
        self.errors += 1;
        let text = format!("{} {}: {field}: {msg}", self.kind, self.name);
        self.diags.error(line, col, text);
    }

    fn error<T>(&mut self, at: &S<T>, field: &str, msg: impl Display) {
        let loc = at.referenced;
        self.error_at(&loc, field, msg);
    }

    fn warn<T>(&mut self, at: &S<T>, field: &str, msg: impl Display) {
        let (line, col) = self.pos(&at.referenced);
        let text = format!("{} {}: {field}: {msg}", self.kind, self.name);
        self.diags.warning(line, col, text);
    }

    fn unsupported(&mut self, field: &Unsupported, path: &str) {
        if let Some(at) = field {
            self.warn(at, path, "not implemented by mesh-proxy; ignored");
        }
    }

    fn duration(&mut self, at: &S<String>, field: &str) -> Option<Duration> {
        match humantime::parse_duration(at.value.trim()) {
            Ok(d) if d > MAX_DURATION => {
                self.error(
                    at,
                    field,
                    format_args!(
                        "duration {:?} is longer than the maximum of {}s",
                        at.value,
                        MAX_DURATION.as_secs()
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    at,
                    field,
                    format_args!("invalid duration {:?}: {e}", at.value),
                );
                None
            }
        }
    }

    fn count(&mut self, at: &S<i64>, field: &str) -> Option<u32> {
        match u32::try_from(at.value) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(
                    at,
                    field,
                    format_args!("must be between 0 and {}, got {}", u32::MAX, at.value),
                );
                None
            }
        }
    }

    fn percent(&mut self, at: &S<f64>, field: &str) -> Option<f64> {
        if (0.0..=100.0).contains(&at.value) {
            Some(at.value)
        } else {
            self.error(
                at,
                field,
                format_args!("must be between 0 and 100, got {}", at.value),
            );
            None
        }
    }

    fn port(&mut self, at: &S<u32>, field: &str) -> Option<u16> {
        match u16::try_from(at.value) {
            Ok(p) => Some(p),
            Err(_) => {
                self.error(at, field, format_args!("not a port number: {}", at.value));
                None
            }
        }
    }

    fn string_match(&mut self, m: &IStringMatch, field: &str) -> Option<StringMatch> {
        let set: Vec<(&S<String>, &str)> = [
            (&m.exact, "exact"),
            (&m.prefix, "prefix"),
            (&m.regex, "regex"),
        ]
        .into_iter()
        .filter_map(|(v, n)| v.as_ref().map(|v| (v, n)))
        .collect();
        match set.as_slice() {
            [(v, "exact")] => Some(StringMatch::Exact(v.value.clone())),
            [(v, "prefix")] => Some(StringMatch::Prefix(v.value.clone())),
            [(v, _)] => match regex_syntax_ok(&v.value) {
                Ok(()) => Some(StringMatch::Regex(v.value.clone())),
                Err(e) => {
                    self.error(
                        v,
                        &format!("{field}.regex"),
                        format_args!("invalid regex: {e}"),
                    );
                    None
                }
            },
            [] => None,
            [(v, _), ..] => {
                self.error(v, field, "set only one of exact, prefix, regex");
                None
            }
        }
    }

    fn name_of(&self, meta: &Metadata) -> String {
        meta.name.value.clone()
    }
}

/// The compiled size cap of a regex, as `mesh-route` compiles it: a pattern
/// accepted here must compile there.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Whether `re` compiles as `mesh-route` compiles it: on its own (which
/// proves its groups balance: `a)|(b` must not wrap into `^(?:a)|(b)$`),
/// then anchored, each within [`REGEX_SIZE_LIMIT`]. The `regex` crate is
/// linear-time, so no pattern is catastrophic at match time; the cap bounds
/// compile time and memory.
fn regex_syntax_ok(re: &str) -> Result<(), String> {
    let build = |p: &str| {
        regex::bytes::RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    build(re)?;
    build(&format!("^(?:{re})$"))
}

/// The longest duration accepted: protobuf's `Duration` maximum, as Istio
/// (10,000 years). Beyond it, deadline arithmetic (`Instant + Duration`)
/// could overflow and panic.
const MAX_DURATION: Duration = Duration::from_secs(315_576_000_000);

// ===== ServiceEntry =====

pub(crate) fn service_entry(
    ctx: &mut Ctx<'_>,
    meta: &Metadata,
    spec: &se::ServiceEntrySpec,
) -> Option<Service> {
    let mut addresses = Vec::new();
    for (i, a) in spec.addresses.iter().enumerate() {
        match AddressBlock::parse(&a.value) {
            Some(block) => addresses.push(block),
            None => ctx.error(
                a,
                &format!("spec.addresses[{i}]"),
                format_args!("not an IP address or CIDR block: {:?}", a.value),
            ),
        }
    }
    ctx.unsupported(&spec.export_to, "spec.exportTo");
    ctx.unsupported(&spec.subject_alt_names, "spec.subjectAltNames");
    ctx.unsupported(&spec.workload_selector, "spec.workloadSelector");
    if let Some(loc) = &spec.location
        && !matches!(loc.value.as_str(), "MESH_EXTERNAL" | "MESH_INTERNAL")
    {
        ctx.error(
            loc,
            "spec.location",
            format_args!(
                "unknown location {:?} (MESH_EXTERNAL or MESH_INTERNAL)",
                loc.value
            ),
        );
    }
    if spec.hosts.is_empty() {
        let at = &meta.name;
        ctx.error(at, "spec.hosts", "at least one host is required");
    }
    let resolution = match spec.resolution.as_ref().map(|r| (r, r.value.as_str())) {
        None | Some((_, "NONE")) => Resolution::None,
        Some((_, "STATIC")) => Resolution::Static,
        Some((_, "DNS" | "DNS_ROUND_ROBIN")) => Resolution::Dns,
        Some((r, other)) => {
            ctx.error(
                r,
                "spec.resolution",
                format_args!("unknown resolution {other:?} (NONE, STATIC, DNS or DNS_ROUND_ROBIN)"),
            );
            Resolution::None
        }
    };
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let Some(number) = ctx.port(&p.number, &format!("{field}.number")) else {
            continue;
        };
        let protocol = match &p.protocol {
            None => Protocol::Http,
            Some(proto) => match proto.value.to_ascii_uppercase().as_str() {
                "HTTP" | "HTTP_PROXY" => Protocol::Http,
                "HTTP2" => Protocol::Http2,
                "GRPC" | "GRPC-WEB" => Protocol::Grpc,
                "TCP" | "TLS" | "HTTPS" | "MONGO" | "MYSQL" | "REDIS" => {
                    ctx.warn(
                        proto,
                        &format!("{field}.protocol"),
                        format_args!(
                            "{} is served as opaque TCP, by capture listeners only",
                            proto.value
                        ),
                    );
                    Protocol::Tcp
                }
                _ => {
                    ctx.error(
                        proto,
                        &format!("{field}.protocol"),
                        format_args!("unknown protocol {:?}", proto.value),
                    );
                    continue;
                }
            },
        };
        let target_port = p
            .target_port
            .as_ref()
            .and_then(|t| ctx.port(t, &format!("{field}.targetPort")));
        ports.push(ServicePort {
            number,
            name: p
                .name
                .as_ref()
                .map_or_else(|| number.to_string(), |n| n.value.clone()),
            protocol,
            target_port,
        });
    }
    if ports.is_empty() && spec.ports.is_empty() {
        ctx.error(&meta.name, "spec.ports", "at least one port is required");
    }
    let mut endpoints = Vec::new();
    for (i, ep) in spec.endpoints.iter().enumerate() {
        let field = format!("spec.endpoints[{i}]");
        ctx.unsupported(&ep.network, &format!("{field}.network"));
        ctx.unsupported(&ep.service_account, &format!("{field}.serviceAccount"));
        if resolution == Resolution::Static && ep.address.value.parse::<IpAddr>().is_err() {
            ctx.error(
                &ep.address,
                &format!("{field}.address"),
                format_args!(
                    "{:?} is not an IP address (resolution STATIC)",
                    ep.address.value
                ),
            );
            continue;
        }
        let mut ep_ports = BTreeMap::new();
        for (name, port) in &ep.ports {
            if let Some(p) = ctx.port(port, &format!("{field}.ports.{name}")) {
                if !spec
                    .ports
                    .iter()
                    .any(|sp| sp.name.as_ref().is_some_and(|n| &n.value == name))
                {
                    ctx.error(
                        port,
                        &format!("{field}.ports.{name}"),
                        format_args!("no service port is named {name:?}"),
                    );
                }
                ep_ports.insert(name.clone(), p);
            }
        }
        let weight = match &ep.weight {
            None => 0,
            Some(w) => ctx.count(w, &format!("{field}.weight")).unwrap_or(0),
        };
        endpoints.push(EndpointSpec {
            address: ep.address.value.clone(),
            ports: ep_ports,
            labels: ep.labels.clone(),
            weight,
            locality: ep.locality.as_ref().map(|l| l.value.clone()),
        });
    }
    Some(Service {
        name: ctx.name_of(meta),
        namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
        hosts: spec.hosts.iter().map(|h| h.value.clone()).collect(),
        addresses,
        ports,
        resolution,
        endpoints,
    })
}

// ===== VirtualService =====

fn percentage(
    ctx: &mut Ctx<'_>,
    new: &Option<Percent>,
    old: &Option<S<u32>>,
    field: &str,
) -> Option<f64> {
    match (new, old) {
        (Some(p), _) => ctx.percent(&p.value, &format!("{field}.percentage.value")),
        (None, Some(old)) => {
            if old.value > 100 {
                ctx.error(
                    old,
                    &format!("{field}.percent"),
                    format_args!("must be between 0 and 100, got {}", old.value),
                );
                None
            } else {
                Some(f64::from(old.value))
            }
        }
        (None, None) => None,
    }
}

fn destination(ctx: &mut Ctx<'_>, d: &vs::Destination, field: &str) -> Destination {
    if d.host.value.trim().is_empty() {
        ctx.error(&d.host, &format!("{field}.host"), "must not be empty");
    }
    Destination {
        host: d.host.value.clone(),
        subset: d.subset.as_ref().map(|s| s.value.clone()),
        port: d
            .port
            .as_ref()
            .and_then(|p| ctx.port(&p.number, &format!("{field}.port.number"))),
    }
}

fn header_ops(ctx: &mut Ctx<'_>, h: &Option<vs::Headers>, _field: &str) -> HeaderOps {
    let _ = ctx;
    let ops = |o: &Option<vs::HeaderOperations>| {
        o.as_ref()
            .map_or_else(HeaderOperations::default, |o| HeaderOperations {
                set: o
                    .set
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect(),
                add: o
                    .add
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect(),
                remove: o.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
            })
    };
    match h {
        None => HeaderOps::default(),
        Some(h) => HeaderOps {
            request: ops(&h.request),
            response: ops(&h.response),
        },
    }
}

fn match_request(ctx: &mut Ctx<'_>, m: &vs::MatchRequest, field: &str) -> MatchRequest {
    ctx.unsupported(&m.source_labels, &format!("{field}.sourceLabels"));
    ctx.unsupported(&m.gateways, &format!("{field}.gateways"));
    ctx.unsupported(&m.source_namespace, &format!("{field}.sourceNamespace"));
    ctx.unsupported(&m.stat_prefix, &format!("{field}.statPrefix"));
    let map = |ctx: &mut Ctx<'_>, src: &BTreeMap<String, IStringMatch>, what: &str, lower: bool| {
        src.iter()
            .map(|(k, v)| {
                let key = if lower {
                    k.to_ascii_lowercase()
                } else {
                    k.clone()
                };
                // An empty match (`{}`) on withoutHeaders means "header absent".
                let m = ctx
                    .string_match(v, &format!("{field}.{what}.{k}"))
                    .unwrap_or(StringMatch::Prefix(String::new()));
                (key, m)
            })
            .collect()
    };
    let headers = map(ctx, &m.headers, "headers", true);
    let query_params = map(ctx, &m.query_params, "queryParams", false);
    let without_headers = map(ctx, &m.without_headers, "withoutHeaders", true);
    MatchRequest {
        name: m.name.as_ref().map(|n| n.value.clone()),
        uri: m
            .uri
            .as_ref()
            .and_then(|u| ctx.string_match(u, &format!("{field}.uri"))),
        scheme: m
            .scheme
            .as_ref()
            .and_then(|u| ctx.string_match(u, &format!("{field}.scheme"))),
        method: m
            .method
            .as_ref()
            .and_then(|u| ctx.string_match(u, &format!("{field}.method"))),
        authority: m
            .authority
            .as_ref()
            .and_then(|u| ctx.string_match(u, &format!("{field}.authority"))),
        headers,
        query_params,
        without_headers,
        ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
        port: m
            .port
            .as_ref()
            .and_then(|p| ctx.port(p, &format!("{field}.port"))),
    }
}

fn http_route(ctx: &mut Ctx<'_>, vs_name: &str, index: usize, r: &vs::HttpRoute) -> HttpRoute {
    let field = format!("spec.http[{index}]");
    ctx.unsupported(&r.direct_response, &format!("{field}.directResponse"));
    ctx.unsupported(&r.delegate, &format!("{field}.delegate"));
    ctx.unsupported(&r.cors_policy, &format!("{field}.corsPolicy"));
    let name = r
        .name
        .as_ref()
        .map_or_else(|| format!("{vs_name}.{index}"), |n| n.value.clone());
    let matches = r
        .matches
        .iter()
        .enumerate()
        .map(|(i, m)| match_request(ctx, m, &format!("{field}.match[{i}]")))
        .collect();
    let mut route = Vec::new();
    for (i, d) in r.route.iter().enumerate() {
        let f = format!("{field}.route[{i}]");
        let weight = match &d.weight {
            None => None,
            Some(w) if w.value < 0 => {
                ctx.error(
                    w,
                    &format!("{f}.weight"),
                    format_args!("must not be negative, got {}", w.value),
                );
                Some(0)
            }
            Some(w) => ctx.count(w, &format!("{f}.weight")),
        };
        route.push(WeightedDestination {
            destination: destination(ctx, &d.destination, &format!("{f}.destination")),
            // A single destination without a weight takes everything; several
            // without weights share equally (Istio fills them in).
            weight: weight.unwrap_or(if r.route.len() == 1 { 100 } else { 0 }),
            headers: header_ops(ctx, &d.headers, &format!("{f}.headers")),
        });
    }
    if route.len() > 1
        && route.iter().all(|d| d.weight == 0)
        && r.route.iter().all(|d| d.weight.is_some())
    {
        let at = r.route[0]
            .weight
            .as_ref()
            .map_or(&r.route[0].destination.host, |_| {
                &r.route[0].destination.host
            });
        ctx.error(
            at,
            &format!("{field}.route"),
            format_args!("route {name}: all weights are zero"),
        );
    }
    if route.len() > 1 && r.route.iter().all(|d| d.weight.is_none()) {
        for d in &mut route {
            d.weight = 1;
        }
    }
    if route.is_empty()
        && r.redirect.is_none()
        && r.direct_response.is_none()
        && r.delegate.is_none()
    {
        ctx.error(
            &r.name
                .clone()
                .unwrap_or_else(|| S::new(String::new(), Location::UNKNOWN, Location::UNKNOWN)),
            &field,
            format_args!("route {name} has neither route nor redirect"),
        );
    }
    let redirect = r.redirect.as_ref().map(|red| {
        ctx.unsupported(&red.port, &format!("{field}.redirect.port"));
        ctx.unsupported(&red.derive_port, &format!("{field}.redirect.derivePort"));
        ctx.unsupported(&red.scheme, &format!("{field}.redirect.scheme"));
        let code = match &red.redirect_code {
            None => 301,
            Some(c) if (300..400).contains(&c.value) => c.value,
            Some(c) => {
                ctx.error(
                    c,
                    &format!("{field}.redirect.redirectCode"),
                    format_args!("not a redirect status: {}", c.value),
                );
                301
            }
        };
        Redirect {
            uri: red.uri.as_ref().map(|u| u.value.clone()),
            authority: red.authority.as_ref().map(|u| u.value.clone()),
            code,
        }
    });
    let rewrite = r.rewrite.as_ref().map(|rw| {
        ctx.unsupported(
            &rw.uri_regex_rewrite,
            &format!("{field}.rewrite.uriRegexRewrite"),
        );
        Rewrite {
            uri: rw.uri.as_ref().map(|u| u.value.clone()),
            authority: rw.authority.as_ref().map(|u| u.value.clone()),
        }
    });
    let timeout = r
        .timeout
        .as_ref()
        .and_then(|t| ctx.duration(t, &format!("{field}.timeout")))
        .filter(|d| !d.is_zero());
    let retries = r.retries.as_ref().map(|rt| retries(ctx, rt, &field));
    let fault = r.fault.as_ref().map(|f| fault(ctx, f, &field));
    let mut mirrors = Vec::new();
    if let Some(m) = &r.mirror {
        let pct = percentage(
            ctx,
            &r.mirror_percentage,
            &r.mirror_percent,
            &format!("{field}.mirror"),
        )
        .unwrap_or(100.0);
        mirrors.push(Mirror {
            destination: destination(ctx, m, &format!("{field}.mirror")),
            percentage: pct,
        });
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        let f = format!("{field}.mirrors[{i}]");
        let pct = percentage(ctx, &m.percentage, &None, &f).unwrap_or(100.0);
        mirrors.push(Mirror {
            destination: destination(ctx, &m.destination, &format!("{f}.destination")),
            percentage: pct,
        });
    }
    HttpRoute {
        name,
        matches,
        route,
        redirect,
        rewrite,
        timeout,
        retries: retries.flatten(),
        fault,
        mirrors,
        headers: header_ops(ctx, &r.headers, &format!("{field}.headers")),
    }
}

fn retries(ctx: &mut Ctx<'_>, r: &vs::Retries, field: &str) -> Option<Retries> {
    let f = format!("{field}.retries");
    ctx.unsupported(
        &r.retry_remote_localities,
        &format!("{f}.retryRemoteLocalities"),
    );
    let per_try_timeout = r
        .per_try_timeout
        .as_ref()
        .and_then(|t| ctx.duration(t, &format!("{f}.perTryTimeout")));
    let backoff = r
        .backoff
        .as_ref()
        .and_then(|t| ctx.duration(t, &format!("{f}.backoff")));
    let istio = mesh_retry::IstioRetries {
        attempts: r.attempts.as_ref().map(|a| a.value),
        per_try_timeout,
        retry_on: r.retry_on.as_ref().map(|s| s.value.clone()),
        backoff,
    };
    match istio.to_policy() {
        Ok(_) => {}
        Err(e) => {
            // Point at the field the error is about.
            let at = match (&r.retry_on, &r.attempts, &r.per_try_timeout) {
                (Some(on), _, _) if on.value.parse::<mesh_retry::RetryOn>().is_err() => {
                    Some(("retryOn", on.referenced))
                }
                (_, Some(a), _) => Some(("attempts", a.referenced)),
                (_, _, Some(t)) => Some(("perTryTimeout", t.referenced)),
                _ => r.retry_on.as_ref().map(|on| ("retryOn", on.referenced)),
            };
            if let Some((name, loc)) = at {
                ctx.error_at(&loc, &format!("{f}.{name}"), e);
            }
            return None;
        }
    }
    Some(Retries {
        attempts: istio.attempts.map_or(2, |a| u32::try_from(a).unwrap_or(0)),
        per_try_timeout,
        retry_on: istio.retry_on,
        backoff,
        ignore_previous_hosts: r.retry_ignore_previous_hosts,
    })
}

fn fault(ctx: &mut Ctx<'_>, f: &vs::Fault, field: &str) -> Fault {
    let delay = f.delay.as_ref().and_then(|d| {
        let fd = format!("{field}.fault.delay");
        ctx.unsupported(&d.exponential_delay, &format!("{fd}.exponentialDelay"));
        let fixed = d
            .fixed_delay
            .as_ref()
            .and_then(|t| ctx.duration(t, &format!("{fd}.fixedDelay")))?;
        // Istio: no percentage means no request is delayed.
        let pct = percentage(ctx, &d.percentage, &d.percent, &fd).unwrap_or(0.0);
        Some((fixed, pct))
    });
    let abort = f.abort.as_ref().and_then(|a| {
        let fa = format!("{field}.fault.abort");
        ctx.unsupported(&a.http2_error, &format!("{fa}.http2Error"));
        let what = match (&a.http_status, &a.grpc_status) {
            (Some(s), None) if (200..=599).contains(&s.value) => Abort::Http(s.value as u16),
            (Some(s), None) => {
                ctx.error(
                    s,
                    &format!("{fa}.httpStatus"),
                    format_args!("must be between 200 and 599, got {}", s.value),
                );
                return None;
            }
            (None, Some(g)) => Abort::Grpc(g.value.clone()),
            (Some(s), Some(_)) => {
                ctx.error(s, &fa, "set only one of httpStatus and grpcStatus");
                return None;
            }
            (None, None) => return None,
        };
        let pct = percentage(ctx, &a.percentage, &a.percent, &fa).unwrap_or(0.0);
        Some((what, pct))
    });
    Fault { delay, abort }
}

pub(crate) fn virtual_service(
    ctx: &mut Ctx<'_>,
    meta: &Metadata,
    spec: &vs::VirtualServiceSpec,
) -> Option<VirtualService> {
    ctx.unsupported(&spec.gateways, "spec.gateways");
    ctx.unsupported(&spec.export_to, "spec.exportTo");
    ctx.unsupported(&spec.tcp, "spec.tcp");
    ctx.unsupported(&spec.tls, "spec.tls");
    let name = ctx.name_of(meta);
    if spec.hosts.is_empty() {
        ctx.error(&meta.name, "spec.hosts", "at least one host is required");
    }
    let http = spec
        .http
        .iter()
        .enumerate()
        .map(|(i, r)| http_route(ctx, &name, i, r))
        .collect();
    Some(VirtualService {
        name,
        hosts: spec.hosts.iter().map(|h| h.value.clone()).collect(),
        http,
    })
}

// ===== DestinationRule =====

fn traffic_policy(ctx: &mut Ctx<'_>, tp: &Option<dr::TrafficPolicy>, field: &str) -> TrafficPolicy {
    let Some(tp) = tp else {
        return TrafficPolicy::default();
    };
    ctx.unsupported(
        &tp.port_level_settings,
        &format!("{field}.portLevelSettings"),
    );
    ctx.unsupported(&tp.tunnel, &format!("{field}.tunnel"));
    ctx.unsupported(&tp.proxy_protocol, &format!("{field}.proxyProtocol"));
    TrafficPolicy {
        load_balancer: tp
            .load_balancer
            .as_ref()
            .and_then(|lb| load_balancer(ctx, lb, &format!("{field}.loadBalancer"))),
        connection_pool: tp
            .connection_pool
            .as_ref()
            .map(|cp| connection_pool(ctx, cp, &format!("{field}.connectionPool"))),
        outlier_detection: tp
            .outlier_detection
            .as_ref()
            .map(|od| outlier(ctx, od, &format!("{field}.outlierDetection"))),
        tls: tp
            .tls
            .as_ref()
            .and_then(|t| client_tls(ctx, t, &format!("{field}.tls"))),
        retry_budget: tp.retry_budget.as_ref().map(|b| RetryBudget {
            percent: b
                .percent
                .as_ref()
                .and_then(|p| ctx.percent(p, &format!("{field}.retryBudget.percent")))
                .unwrap_or(20.0),
            min_retry_concurrency: b
                .min_retry_concurrency
                .as_ref()
                .and_then(|m| ctx.count(m, &format!("{field}.retryBudget.minRetryConcurrency")))
                .unwrap_or(3),
        }),
    }
}

fn load_balancer(
    ctx: &mut Ctx<'_>,
    lb: &dr::LoadBalancerSettings,
    field: &str,
) -> Option<LoadBalancer> {
    ctx.unsupported(
        &lb.locality_lb_setting,
        &format!("{field}.localityLbSetting"),
    );
    ctx.unsupported(
        &lb.warmup_duration_secs,
        &format!("{field}.warmupDurationSecs"),
    );
    ctx.unsupported(&lb.warmup, &format!("{field}.warmup"));
    if let Some(ch) = &lb.consistent_hash {
        let f = format!("{field}.consistentHash");
        ctx.unsupported(
            &ch.http_header_regex_rewrite,
            &format!("{f}.httpHeaderRegexRewrite"),
        );
        let key = if let Some(h) = &ch.http_header_name {
            if http::HeaderName::try_from(h.value.as_str()).is_err() {
                ctx.error(
                    h,
                    &format!("{f}.httpHeaderName"),
                    format_args!("not a header name: {:?}", h.value),
                );
                return None;
            }
            HashKey::Header(h.value.to_ascii_lowercase())
        } else if let Some(c) = &ch.http_cookie {
            ctx.unsupported(&c.attributes, &format!("{f}.httpCookie.attributes"));
            HashKey::Cookie {
                name: c.name.value.clone(),
                path: c.path.clone(),
                ttl: c
                    .ttl
                    .as_ref()
                    .and_then(|t| ctx.duration(t, &format!("{f}.httpCookie.ttl"))),
            }
        } else if ch.use_source_ip == Some(true) {
            HashKey::SourceIp
        } else if let Some(q) = &ch.http_query_parameter_name {
            HashKey::QueryParameter(q.value.clone())
        } else {
            ctx.diags.error(1, 1, format!("{} {}: {f}: a hash key is required (httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName)", ctx.kind, ctx.name));
            ctx.errors += 1;
            return None;
        };
        if let Some(m) = &ch.maglev {
            let size = m.table_size.as_ref().map_or(65537, |s| s.value);
            let cfg = mesh_lb::LoadBalancer::maglev(mesh_lb::HashKey::SourceIp);
            if let mesh_lb::LoadBalancer::Maglev(mut mg) = cfg {
                mg.table_size = size;
                if let Err(e) = mesh_lb::LoadBalancer::Maglev(mg).validate()
                    && let Some(at) = &m.table_size
                {
                    ctx.error(at, &format!("{f}.maglev.tableSize"), e);
                    return None;
                }
            }
            return Some(LoadBalancer::Maglev {
                key,
                table_size: size,
            });
        }
        let size_at = ch
            .ring_hash
            .as_ref()
            .and_then(|r| r.minimum_ring_size.as_ref())
            .or(ch.minimum_ring_size.as_ref());
        let size = size_at.map_or(1024, |s| s.value);
        if let Some(at) = size_at
            && (size == 0 || size > mesh_lb::MAX_RING_SIZE)
        {
            ctx.error(
                at,
                &format!("{f}.ringHash.minimumRingSize"),
                format_args!("must be between 1 and {}", mesh_lb::MAX_RING_SIZE),
            );
            return None;
        }
        return Some(LoadBalancer::RingHash {
            key,
            minimum_ring_size: size,
        });
    }
    match lb.simple.as_ref().map(|s| (s, s.value.as_str())) {
        None | Some((_, "UNSPECIFIED" | "LEAST_REQUEST" | "LEAST_CONN")) => {
            Some(LoadBalancer::LeastRequest)
        }
        Some((_, "ROUND_ROBIN")) => Some(LoadBalancer::RoundRobin),
        Some((_, "RANDOM")) => Some(LoadBalancer::Random),
        Some((s, "PASSTHROUGH")) => {
            ctx.warn(
                s,
                &format!("{field}.simple"),
                "PASSTHROUGH is not implemented; LEAST_REQUEST is used",
            );
            Some(LoadBalancer::LeastRequest)
        }
        Some((s, other)) => {
            ctx.error(s, &format!("{field}.simple"), format_args!("unknown load balancer {other:?} (ROUND_ROBIN, LEAST_REQUEST, RANDOM, PASSTHROUGH)"));
            None
        }
    }
}

fn connection_pool(ctx: &mut Ctx<'_>, cp: &dr::ConnectionPool, field: &str) -> ConnectionPool {
    let mut out = ConnectionPool::default();
    if let Some(tcp) = &cp.tcp {
        let f = format!("{field}.tcp");
        ctx.unsupported(&tcp.tcp_keepalive, &format!("{f}.tcpKeepalive"));
        ctx.unsupported(
            &tcp.max_connection_duration,
            &format!("{f}.maxConnectionDuration"),
        );
        ctx.unsupported(&tcp.idle_timeout, &format!("{f}.idleTimeout"));
        out.max_connections = tcp
            .max_connections
            .as_ref()
            .and_then(|v| ctx.count(v, &format!("{f}.maxConnections")));
        out.connect_timeout = tcp.connect_timeout.as_ref().and_then(|v| {
            let field = format!("{f}.connectTimeout");
            let d = ctx.duration(v, &field)?;
            if d < Duration::from_millis(1) {
                // As Istio's validation: 0 would fail every connect at once.
                ctx.error(v, &field, "must be at least 1ms");
                return None;
            }
            Some(d)
        });
    }
    if let Some(h) = &cp.http {
        let f = format!("{field}.http");
        ctx.unsupported(
            &h.max_requests_per_connection,
            &format!("{f}.maxRequestsPerConnection"),
        );
        ctx.unsupported(&h.h2_upgrade_policy, &format!("{f}.h2UpgradePolicy"));
        ctx.unsupported(&h.use_client_protocol, &format!("{f}.useClientProtocol"));
        ctx.unsupported(
            &h.max_concurrent_streams,
            &format!("{f}.maxConcurrentStreams"),
        );
        out.max_pending_requests = h
            .http1_max_pending_requests
            .as_ref()
            .and_then(|v| ctx.count(v, &format!("{f}.http1MaxPendingRequests")));
        out.max_requests = h
            .http2_max_requests
            .as_ref()
            .and_then(|v| ctx.count(v, &format!("{f}.http2MaxRequests")));
        out.max_retries = h
            .max_retries
            .as_ref()
            .and_then(|v| ctx.count(v, &format!("{f}.maxRetries")));
        out.idle_timeout = h
            .idle_timeout
            .as_ref()
            .and_then(|v| ctx.duration(v, &format!("{f}.idleTimeout")));
    }
    out
}

fn outlier(ctx: &mut Ctx<'_>, od: &dr::OutlierDetection, field: &str) -> OutlierDetection {
    let count = |ctx: &mut Ctx<'_>, v: &Option<S<i64>>, name: &str| {
        v.as_ref()
            .and_then(|v| ctx.count(v, &format!("{field}.{name}")))
    };
    let pct = |ctx: &mut Ctx<'_>, v: &Option<S<i64>>, name: &str| {
        v.as_ref().and_then(|v| match u32::try_from(v.value) {
            Ok(p) if p <= 100 => Some(p),
            _ => {
                ctx.error(
                    v,
                    &format!("{field}.{name}"),
                    format_args!("must be between 0 and 100, got {}", v.value),
                );
                None
            }
        })
    };
    let consecutive_5xx = count(ctx, &od.consecutive_5xx_errors, "consecutive5xxErrors")
        .or_else(|| count(ctx, &od.consecutive_errors, "consecutiveErrors"));
    OutlierDetection {
        consecutive_5xx,
        consecutive_gateway: count(
            ctx,
            &od.consecutive_gateway_errors,
            "consecutiveGatewayErrors",
        ),
        consecutive_local_origin: count(
            ctx,
            &od.consecutive_local_origin_failures,
            "consecutiveLocalOriginFailures",
        ),
        split_local_origin: od.split_external_local_origin_errors.unwrap_or(false),
        interval: od
            .interval
            .as_ref()
            .and_then(|v| ctx.duration(v, &format!("{field}.interval"))),
        base_ejection_time: od
            .base_ejection_time
            .as_ref()
            .and_then(|v| ctx.duration(v, &format!("{field}.baseEjectionTime"))),
        max_ejection_percent: pct(ctx, &od.max_ejection_percent, "maxEjectionPercent"),
        min_health_percent: pct(ctx, &od.min_health_percent, "minHealthPercent"),
    }
}

fn client_tls(ctx: &mut Ctx<'_>, t: &dr::ClientTls, field: &str) -> Option<ClientTls> {
    ctx.unsupported(&t.credential_name, &format!("{field}.credentialName"));
    ctx.unsupported(
        &t.insecure_skip_verify,
        &format!("{field}.insecureSkipVerify"),
    );
    ctx.unsupported(&t.ca_crl, &format!("{field}.caCrl"));
    let mode = match t.mode.as_ref().map(|m| (m, m.value.as_str())) {
        None | Some((_, "DISABLE")) => TlsMode::Disable,
        Some((_, "SIMPLE")) => TlsMode::Simple,
        Some((_, "MUTUAL")) => TlsMode::Mutual,
        Some((_, "ISTIO_MUTUAL")) => TlsMode::IstioMutual,
        Some((m, other)) => {
            ctx.error(
                m,
                &format!("{field}.mode"),
                format_args!("unknown TLS mode {other:?} (DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL)"),
            );
            return None;
        }
    };
    if mode == TlsMode::Mutual {
        for (v, name) in [
            (&t.client_certificate, "clientCertificate"),
            (&t.private_key, "privateKey"),
        ] {
            if v.is_none()
                && let Some(m) = &t.mode
            {
                ctx.error(m, &format!("{field}.{name}"), "required with mode MUTUAL");
            }
        }
    }
    Some(ClientTls {
        mode,
        client_certificate: t.client_certificate.as_ref().map(|v| v.value.clone()),
        private_key: t.private_key.as_ref().map(|v| v.value.clone()),
        ca_certificates: t.ca_certificates.as_ref().map(|v| v.value.clone()),
        subject_alt_names: t
            .subject_alt_names
            .iter()
            .map(|v| v.value.clone())
            .collect(),
        sni: t.sni.as_ref().map(|v| v.value.clone()),
    })
}

pub(crate) fn destination_rule(
    ctx: &mut Ctx<'_>,
    meta: &Metadata,
    spec: &dr::DestinationRuleSpec,
) -> Option<DestinationRule> {
    ctx.unsupported(&spec.export_to, "spec.exportTo");
    ctx.unsupported(&spec.workload_selector, "spec.workloadSelector");
    let traffic_policy = traffic_policy(ctx, &spec.traffic_policy, "spec.trafficPolicy");
    let mut subsets: Vec<Subset> = Vec::new();
    for (i, s) in spec.subsets.iter().enumerate() {
        let f = format!("spec.subsets[{i}]");
        if subsets.iter().any(|o| o.name == s.name.value) {
            ctx.error(
                &s.name,
                &format!("{f}.name"),
                format_args!("duplicate subset {:?}", s.name.value),
            );
            continue;
        }
        let own = traffic_policy_inner(ctx, &s.traffic_policy, &format!("{f}.trafficPolicy"));
        subsets.push(Subset {
            name: s.name.value.clone(),
            labels: s.labels.clone(),
            traffic_policy: traffic_policy.merged(&own),
        });
    }
    Some(DestinationRule {
        name: ctx.name_of(meta),
        host: spec.host.value.clone(),
        traffic_policy,
        subsets,
    })
}

fn traffic_policy_inner(
    ctx: &mut Ctx<'_>,
    tp: &Option<dr::TrafficPolicy>,
    field: &str,
) -> TrafficPolicy {
    traffic_policy(ctx, tp, field)
}

// ===== Sidecar =====

fn socket(
    ctx: &mut Ctx<'_>,
    bind: &Option<S<String>>,
    default: Option<IpAddr>,
    port: u16,
    field: &str,
) -> Option<SocketAddr> {
    let ip = match bind {
        None => default.unwrap_or(IpAddr::from([127, 0, 0, 1])),
        Some(b) => match b.value.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                ctx.error(
                    b,
                    &format!("{field}.bind"),
                    format_args!("not an IP address: {:?}", b.value),
                );
                return None;
            }
        },
    };
    Some(SocketAddr::new(ip, port))
}

pub(crate) fn sidecar(
    ctx: &mut Ctx<'_>,
    _meta: &Metadata,
    spec: &sc::SidecarSpec,
) -> Vec<Listener> {
    ctx.unsupported(&spec.workload_selector, "spec.workloadSelector");
    ctx.unsupported(&spec.outbound_traffic_policy, "spec.outboundTrafficPolicy");
    ctx.unsupported(&spec.inbound_connection_pool, "spec.inboundConnectionPool");
    let mut out = Vec::new();
    for (dir, list, what) in [
        (Direction::Inbound, &spec.ingress, "ingress"),
        (Direction::Outbound, &spec.egress, "egress"),
    ] {
        for (i, l) in list.iter().enumerate() {
            let f = format!("spec.{what}[{i}]");
            let capture = match l.capture_mode.as_ref().map(|c| (c, c.value.as_str())) {
                None | Some((_, "DEFAULT" | "NONE")) => false,
                Some((_, "IPTABLES")) => true,
                Some((c, other)) => {
                    ctx.error(
                        c,
                        &format!("{f}.captureMode"),
                        format_args!("unknown capture mode {other:?} (DEFAULT, IPTABLES or NONE)"),
                    );
                    false
                }
            };
            ctx.unsupported(&l.tls, &format!("{f}.tls"));
            ctx.unsupported(&l.connection_pool, &format!("{f}.connectionPool"));
            if let Some(h) = l.hosts.first()
                && dir == Direction::Outbound
            {
                ctx.warn(
                    h,
                    &format!("{f}.hosts"),
                    "host scoping is not implemented; every service is reachable",
                );
            }
            let Some(port) = &l.port else {
                ctx.diags.error(
                    1 + ctx.line_offset,
                    1,
                    format!("{} {}: {f}.port: required", ctx.kind, ctx.name),
                );
                ctx.errors += 1;
                continue;
            };
            if let Some(p) = &port.protocol
                && !matches!(
                    p.value.to_ascii_uppercase().as_str(),
                    "HTTP" | "HTTP2" | "GRPC"
                )
            {
                ctx.error(
                    p,
                    &format!("{f}.port.protocol"),
                    format_args!("listeners serve HTTP, HTTP2 or GRPC, not {}", p.value),
                );
            }
            ctx.unsupported(&port.target_port, &format!("{f}.port.targetPort"));
            let Some(number) = ctx.port(&port.number, &format!("{f}.port.number")) else {
                continue;
            };
            // Inbound capture (PREROUTING's REDIRECT) rewrites the destination
            // to the pod's own address, so that listener listens on all of them.
            let any = (capture && dir == Direction::Inbound).then_some(IpAddr::from([0, 0, 0, 0]));
            let Some(bind) = socket(ctx, &l.bind, any, number, &f) else {
                continue;
            };
            let default_endpoint = match (&l.default_endpoint, dir) {
                (Some(e), Direction::Inbound) if capture => {
                    ctx.warn(
                        e,
                        &format!("{f}.defaultEndpoint"),
                        "ignored: a captured connection goes to the app on 127.0.0.1 at its original port",
                    );
                    None
                }
                (None, Direction::Inbound) if capture => None,
                (Some(e), Direction::Inbound) => match e.value.parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        ctx.error(
                            e,
                            &format!("{f}.defaultEndpoint"),
                            format_args!(
                                "expected IP:PORT such as 127.0.0.1:8080, got {:?}",
                                e.value
                            ),
                        );
                        continue;
                    }
                },
                (None, Direction::Inbound) => {
                    ctx.error(
                        &port.number,
                        &format!("{f}.defaultEndpoint"),
                        "required for an ingress listener",
                    );
                    continue;
                }
                (Some(e), Direction::Outbound) => {
                    ctx.warn(
                        e,
                        &format!("{f}.defaultEndpoint"),
                        "ignored on egress listeners",
                    );
                    None
                }
                (None, Direction::Outbound) => None,
            };
            let prefix = if dir == Direction::Inbound {
                "inbound"
            } else {
                "outbound"
            };
            out.push(Listener {
                name: format!(
                    "{prefix}|{}",
                    port.name
                        .as_ref()
                        .map_or_else(|| number.to_string(), |n| n.value.clone())
                ),
                direction: dir,
                bind,
                default_endpoint,
                capture,
            });
        }
    }
    out
}

// ===== Security =====

pub(crate) fn peer_authentication(
    ctx: &mut Ctx<'_>,
    _meta: &Metadata,
    spec: &sec::PeerAuthenticationSpec,
) -> Option<MtlsMode> {
    ctx.unsupported(&spec.selector, "spec.selector");
    ctx.unsupported(&spec.port_level_mtls, "spec.portLevelMtls");
    match spec
        .mtls
        .as_ref()
        .and_then(|m| m.mode.as_ref())
        .map(|m| (m, m.value.as_str()))
    {
        None | Some((_, "UNSET" | "PERMISSIVE")) => Some(MtlsMode::Permissive),
        Some((_, "STRICT")) => Some(MtlsMode::Strict),
        Some((_, "DISABLE")) => Some(MtlsMode::Disable),
        Some((m, other)) => {
            ctx.error(
                m,
                "spec.mtls.mode",
                format_args!("unknown mode {other:?} (STRICT, PERMISSIVE, DISABLE, UNSET)"),
            );
            None
        }
    }
}

pub(crate) fn authorization_policy(
    ctx: &mut Ctx<'_>,
    meta: &Metadata,
    spec: &sec::AuthorizationPolicySpec,
) -> Option<AuthorizationPolicy> {
    ctx.unsupported(&spec.selector, "spec.selector");
    ctx.unsupported(&spec.target_ref, "spec.targetRef");
    ctx.unsupported(&spec.target_refs, "spec.targetRefs");
    ctx.unsupported(&spec.provider, "spec.provider");
    let action = match spec.action.as_ref().map(|a| (a, a.value.as_str())) {
        None | Some((_, "ALLOW")) => AuthzAction::Allow,
        Some((_, "DENY")) => AuthzAction::Deny,
        Some((a, other @ ("AUDIT" | "CUSTOM"))) => {
            ctx.warn(
                a,
                "spec.action",
                format_args!("{other} is not implemented; the policy is ignored"),
            );
            return None;
        }
        Some((a, other)) => {
            ctx.error(
                a,
                "spec.action",
                format_args!("unknown action {other:?} (ALLOW, DENY, AUDIT, CUSTOM)"),
            );
            return None;
        }
    };
    let mut rules = Vec::new();
    for (i, r) in spec.rules.iter().enumerate() {
        let f = format!("spec.rules[{i}]");
        ctx.unsupported(&r.when, &format!("{f}.when"));
        let mut rule = AuthzRule::default();
        for (j, from) in r.from.iter().enumerate() {
            let s = &from.source;
            let fs = format!("{f}.from[{j}].source");
            for (u, n) in [
                (&s.not_principals, "notPrincipals"),
                (&s.request_principals, "requestPrincipals"),
                (&s.not_request_principals, "notRequestPrincipals"),
                (&s.namespaces, "namespaces"),
                (&s.not_namespaces, "notNamespaces"),
                (&s.ip_blocks, "ipBlocks"),
                (&s.not_ip_blocks, "notIpBlocks"),
                (&s.remote_ip_blocks, "remoteIpBlocks"),
                (&s.not_remote_ip_blocks, "notRemoteIpBlocks"),
            ] {
                ctx.unsupported(u, &format!("{fs}.{n}"));
            }
            rule.from.push(AuthzSource {
                principals: s.principals.iter().map(|p| p.value.clone()).collect(),
            });
        }
        for (j, to) in r.to.iter().enumerate() {
            let o = &to.operation;
            let fo = format!("{f}.to[{j}].operation");
            for (u, n) in [
                (&o.hosts, "hosts"),
                (&o.not_hosts, "notHosts"),
                (&o.ports, "ports"),
                (&o.not_ports, "notPorts"),
                (&o.not_paths, "notPaths"),
                (&o.not_methods, "notMethods"),
            ] {
                ctx.unsupported(u, &format!("{fo}.{n}"));
            }
            rule.to.push(AuthzOperation {
                paths: o.paths.iter().map(|p| p.value.clone()).collect(),
                methods: o.methods.iter().map(|p| p.value.clone()).collect(),
            });
        }
        rules.push(rule);
    }
    Some(AuthorizationPolicy {
        name: ctx.name_of(meta),
        action,
        rules,
    })
}
