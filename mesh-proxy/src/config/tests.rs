//! Loading: positions, messages, and what each Istio field becomes.

use std::path::Path;
use std::time::Duration;

use super::model::*;
use super::*;

fn errors(yaml: &str) -> Vec<String> {
    load_str(Path::new("f.yaml"), yaml)
        .errors()
        .map(ToString::to_string)
        .collect()
}

fn ok(yaml: &str) -> Config {
    let loaded = load_str(Path::new("f.yaml"), yaml);
    let errs: Vec<String> = loaded.errors().map(ToString::to_string).collect();
    assert!(errs.is_empty(), "{errs:?}");
    loaded.config.unwrap()
}

const VS_HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n";

#[test]
fn unknown_fields_are_errors_at_their_line() {
    let yaml = format!(
        "{VS_HEAD}  http:\n  - route:\n    - destination: {{host: reviews}}\n      wieght: 3\n"
    );
    assert_eq!(
        errors(&yaml),
        [
            "f.yaml:10:7: VirtualService reviews: unknown field `wieght`, expected one of destination, weight, headers"
        ]
    );
}

#[test]
fn wrong_types_name_the_field() {
    let yaml = format!(
        "{VS_HEAD}  http:\n  - route:\n    - destination: {{host: reviews}}\n      weight: lots\n"
    );
    let errs = errors(&yaml);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("f.yaml:10:15: VirtualService reviews: weight: "),
        "{errs:?}"
    );
}

#[test]
fn values_are_checked_with_positions_across_documents() {
    let yaml = format!(
        "---\n{VS_HEAD}  http:\n  - timeout: 3 parsecs\n    retries:\n      attempts: 2\n      retryOn: 5xx,sometimes\n    route:\n    - destination: {{host: reviews}}\n---\n{VS_HEAD}  http:\n  - fault:\n      abort:\n        httpStatus: 999\n        percent: 50\n    route:\n    - destination: {{host: reviews}}\n"
    );
    let errs = errors(&yaml);
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "f.yaml:9:14: VirtualService reviews: spec.http[0].timeout: invalid duration"
        ),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("f.yaml:12:16: VirtualService reviews: spec.http[0].retries.retryOn: "),
        "{errs:?}"
    );
    assert!(
        errs[1].contains("sometimes"),
        "the unknown token is named: {errs:?}"
    );
    assert!(errs[2].starts_with("f.yaml:25:21: VirtualService reviews: spec.http[0].fault.abort.httpStatus: must be between 200 and 599"), "{errs:?}");
}

#[test]
fn all_zero_weights_name_the_route() {
    let yaml = format!(
        "{VS_HEAD}  http:\n  - name: canary\n    route:\n    - destination: {{host: reviews, subset: v1}}\n      weight: 0\n    - destination: {{host: reviews, subset: v2}}\n      weight: 0\n"
    );
    let errs = errors(&yaml);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("route canary: all weights are zero"),
        "{errs:?}"
    );
}

#[test]
fn syntax_errors_and_bad_api_versions() {
    let errs =
        errors("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("f.yaml:3:"), "{errs:?}");
    let errs = errors(
        "apiVersion: networking.istio.io/v2\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {hosts: [x]}\n",
    );
    assert_eq!(
        errs,
        [
            "f.yaml:2:7: ServiceEntry x: apiVersion \"networking.istio.io/v2\" is not supported for this kind (use one of networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3)"
        ]
    );
}

#[test]
fn unsupported_istio_fields_and_kinds_are_warnings() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  exportTo: [\".\"]\n  http:\n  - corsPolicy: {allowOrigins: []}\n    route:\n    - destination: {host: r}\n";
    let loaded = load_str(Path::new("f.yaml"), yaml);
    assert!(loaded.config.is_some());
    let warnings: Vec<String> = loaded.warnings().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[0].contains("kind Gateway is not served"));
    assert!(warnings[1].contains("spec.exportTo: not implemented"));
    assert!(warnings[2].contains("spec.http[0].corsPolicy: not implemented"));
}

#[test]
fn a_full_virtual_service_maps_field_for_field() {
    let yaml = format!(
        "{VS_HEAD}  http:\n  - name: jason\n    match:\n    - headers:\n        end-user: {{exact: jason}}\n      uri: {{prefix: /api}}\n      ignoreUriCase: true\n    route:\n    - destination: {{host: reviews, subset: v2, port: {{number: 9080}}}}\n    timeout: 1.5s\n    retries: {{attempts: 3, perTryTimeout: 500ms, retryOn: \"5xx,reset\"}}\n    fault:\n      delay: {{fixedDelay: 7s, percentage: {{value: 12.5}}}}\n    mirror: {{host: reviews, subset: v3}}\n    mirrorPercentage: {{value: 10}}\n  - route:\n    - destination: {{host: reviews, subset: v1}}\n      weight: 80\n    - destination: {{host: reviews, subset: v3}}\n      weight: 20\n"
    );
    let config = ok(&yaml);
    let vs = &config.virtual_services[0];
    let jason = &vs.http[0];
    assert_eq!(jason.name, "jason");
    assert_eq!(
        jason.matches[0].headers["end-user"],
        StringMatch::Exact("jason".into())
    );
    assert_eq!(
        jason.matches[0].uri,
        Some(StringMatch::Prefix("/api".into()))
    );
    assert!(jason.matches[0].ignore_uri_case);
    assert_eq!(
        jason.route[0].destination,
        Destination {
            host: "reviews".into(),
            subset: Some("v2".into()),
            port: Some(9080)
        }
    );
    assert_eq!(jason.route[0].weight, 100);
    assert_eq!(jason.timeout, Some(Duration::from_millis(1500)));
    let retries = jason.retries.as_ref().unwrap();
    assert_eq!(
        (retries.attempts, retries.per_try_timeout),
        (3, Some(Duration::from_millis(500)))
    );
    assert_eq!(
        jason.fault.as_ref().unwrap().delay,
        Some((Duration::from_secs(7), 12.5))
    );
    assert_eq!(jason.mirrors[0].percentage, 10.0);
    assert_eq!(vs.http[1].name, "reviews.1");
    assert_eq!(
        vs.http[1]
            .route
            .iter()
            .map(|d| d.weight)
            .collect::<Vec<_>>(),
        [80, 20]
    );
}

#[test]
fn service_entries_destination_rules_and_sidecars() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: http}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {http: 8001}
    labels: {version: v1}
  - address: 127.0.0.2
    weight: 3
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50}
    connectionPool: {http: {http2MaxRequests: 10, http1MaxPendingRequests: 1}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 1009}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Sidecar
metadata: {name: default}
spec:
  egress:
  - port: {number: 0}
    bind: 127.0.0.1
  ingress:
  - port: {number: 15006, protocol: HTTP}
    defaultEndpoint: 127.0.0.1:8080
"#;
    let c = ok(yaml);
    let s = &c.services[0];
    assert_eq!(s.ports[0].protocol, Protocol::Http);
    assert_eq!(s.endpoints[0].ports["http"], 8001);
    assert_eq!(s.endpoints[1].weight, 3);
    let dr = &c.destination_rules[0];
    assert_eq!(
        dr.traffic_policy.load_balancer,
        Some(LoadBalancer::RoundRobin)
    );
    let v1 = &dr.subsets[0].traffic_policy;
    assert_eq!(
        v1.load_balancer,
        Some(LoadBalancer::Maglev {
            key: HashKey::Header("x-user".into()),
            table_size: 1009
        })
    );
    assert_eq!(
        v1.outlier_detection.as_ref().unwrap().consecutive_5xx,
        Some(3),
        "subset inherits the service policy"
    );
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[0].direction, Direction::Inbound);
    assert_eq!(
        c.listeners[0].default_endpoint,
        Some("127.0.0.1:8080".parse().unwrap())
    );
    assert_eq!(c.listeners[1].bind.port(), 0);
}

#[test]
fn bad_destination_rule_values() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: d\n  trafficPolicy:\n    loadBalancer: {simple: FASTEST}\n    outlierDetection:\n      maxEjectionPercent: 150\n      interval: soon\n    tls: {mode: MUTUAL}\n";
    let errs = errors(yaml);
    assert_eq!(errs.len(), 5, "{errs:?}");
    assert!(errs[0].starts_with("f.yaml:7:28: DestinationRule d: spec.trafficPolicy.loadBalancer.simple: unknown load balancer \"FASTEST\""), "{errs:?}");
    assert!(
        errs.iter().any(|e| e.starts_with("f.yaml:9:27:")
            && e.contains("maxEjectionPercent: must be between 0 and 100")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("f.yaml:10:17:") && e.contains("interval: invalid duration")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("clientCertificate: required with mode MUTUAL")),
        "{errs:?}"
    );
}

#[test]
fn security_kinds() {
    let yaml = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {mtls: {mode: STRICT}}\n---\napiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: deny-admin}\nspec:\n  action: DENY\n  rules:\n  - from: [{source: {principals: [\"cluster.local/ns/default/sa/*\"]}}]\n    to: [{operation: {paths: [\"/admin*\"], methods: [POST]}}]\n";
    let c = ok(yaml);
    assert_eq!(c.peer_authentication, Some(MtlsMode::Strict));
    let p = &c.authorization[0];
    assert_eq!(p.action, AuthzAction::Deny);
    assert_eq!(
        p.rules[0].from[0].principals,
        ["cluster.local/ns/default/sa/*"]
    );
    assert_eq!(p.rules[0].to[0].methods, ["POST"]);
    assert_eq!(p.rules[0].to[0].paths, ["/admin*"]);
    let errs = errors(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: d}\nspec: {mtls: {mode: SOMETIMES}}\n",
    );
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("f.yaml:4:21: PeerAuthentication d: spec.mtls.mode: unknown mode"),
        "{errs:?}"
    );
}
