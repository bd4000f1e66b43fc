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

// ===== Config as untrusted input (issue 11; catalog row R-13) =====
//
// Each hostile input is refused with an error at a position naming the limit,
// quickly (the bounds are generous for a debug build on a loaded 2-core
// machine; typical times are in the comments), never a hang, a panic or a
// stack overflow (the deep inputs run on the test thread's 2 MiB stack).

use std::time::Instant;

/// Loads `text`, asserting it took less than `bound`; the diagnostics as text.
fn load_within(text: &str, bound: Duration) -> (Option<Config>, Vec<String>) {
    let start = Instant::now();
    let loaded = load_str(Path::new("f.yaml"), text);
    let took = start.elapsed();
    assert!(took < bound, "took {took:?}");
    let diags = loaded.diagnostics.iter().map(ToString::to_string).collect();
    (loaded.config, diags)
}

/// The single error of a refused `text`, loaded within `bound`.
fn refused(text: &str, bound: Duration) -> String {
    let (config, diags) = load_within(text, bound);
    assert!(config.is_none(), "accepted: {diags:?}");
    assert_eq!(diags.len(), 1, "{diags:?}");
    diags.into_iter().next().unwrap_or_default()
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_billion_laughs_alias_bomb_is_refused() {
    // Nine levels of nine aliases each: 9^9 (387 million) nodes expanded.
    let mut yaml = format!("{VS_HEAD}  x0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..10 {
        let p = i - 1;
        yaml.push_str(&format!(
            "  x{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    // ≈ 0.2 s.
    let err = refused(&yaml, 3 * SECOND);
    assert!(err.starts_with("f.yaml:12:"), "{err}");
    assert!(err.contains("alias-bomb limit"), "{err}");
    // Aliases in a small, ordinary config are fine.
    let yaml = format!(
        "{VS_HEAD}  http:\n  - route:\n    - destination: &d {{host: reviews, subset: v1}}\n  - route:\n    - destination: *d\n"
    );
    assert_eq!(ok(&yaml).virtual_services[0].http.len(), 2);
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let levels = 100_000;
    let cases = [
        format!(
            "{VS_HEAD}  http: {}{}\n",
            "[".repeat(levels),
            "]".repeat(levels)
        ),
        format!(
            "{VS_HEAD}  http: {}x{}\n",
            "{a: ".repeat(levels),
            "}".repeat(levels)
        ),
        format!("{VS_HEAD}  http:\n  {}x\n", "- ".repeat(levels)),
        format!("{}x\n", "- ".repeat(levels)),
        format!("{}x\n", "[".repeat(levels)),
        // Block mappings: indentation makes the file quadratic; 1,000 levels.
        format!(
            "{VS_HEAD}  http:\n{}",
            (0..1000)
                .map(|i| format!("{}a:\n", " ".repeat(i + 3)))
                .collect::<String>()
        ),
    ];
    for yaml in cases {
        // Each ≈ 10 ms.
        let err = refused(&yaml, 2 * SECOND);
        let head: String = yaml.chars().take(40).collect();
        assert!(err.starts_with("f.yaml:"), "{head}: {err}");
        if yaml.starts_with("apiVersion") {
            assert!(
                err.contains("nested deeper than 64 levels (limit"),
                "{head}: {err}"
            );
        }
    }
    // 64 levels are within the limit: refused for what they are, not depth.
    let yaml = format!("{VS_HEAD}  x: {}{}\n", "[".repeat(60), "]".repeat(60));
    let err = refused(&yaml, SECOND);
    assert!(err.contains("unknown field `x`"), "{err}");
}

#[test]
fn millions_of_tiny_items_are_refused() {
    let yaml = format!("{VS_HEAD}  x: [{}1]\n", "1,".repeat(2_000_000));
    // ≈ 1 s.
    let err = refused(&yaml, 5 * SECOND);
    assert!(
        err.starts_with("f.yaml:7:") && err.contains("more than 250000 YAML nodes in one document"),
        "{err}"
    );
}

#[test]
fn very_long_keys_and_scalars_are_refused() {
    let yaml = format!("{VS_HEAD}  {}: 1\n", "k".repeat(1_000_000));
    let err = refused(&yaml, 2 * SECOND);
    assert!(
        err.starts_with("f.yaml:7:3: ") && err.contains("1024 characters"),
        "{err}"
    );
    assert!(err.len() < 1000, "the message does not quote the key whole");
    let yaml = format!(
        "{VS_HEAD}  http:\n  - name: {}\n    route:\n    - destination: {{host: r}}\n",
        "n".repeat(5 * 1024 * 1024)
    );
    // ≈ 0.5 s.
    let err = refused(&yaml, 5 * SECOND);
    assert!(
        err.starts_with("f.yaml:8:11: ") && err.contains("more than 4194304 bytes of strings"),
        "{err}"
    );
}

#[test]
fn files_over_16_mib_are_refused_at_1_1_even_when_the_size_lies() {
    let big = format!("{VS_HEAD}# {}\n", "x".repeat(MAX_FILE_BYTES));
    let err = refused(&big, SECOND);
    assert_eq!(
        err,
        "f.yaml:1:1: the config is larger than 16777216 bytes (limit of the config loader)"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.yaml");
    std::fs::write(&file, &big).unwrap();
    // A device whose length says 0 and that never ends is read no further
    // than the limit.
    for path in [file, std::path::PathBuf::from("/dev/zero")] {
        let start = Instant::now();
        let loaded = load(std::slice::from_ref(&path));
        assert!(start.elapsed() < 3 * SECOND, "{:?}", start.elapsed());
        assert!(loaded.config.is_none());
        let errs: Vec<String> = loaded.errors().map(ToString::to_string).collect();
        assert_eq!(
            errs,
            [format!(
                "{}:1:1: the config is larger than 16777216 bytes (limit of the config loader)",
                path.display()
            )]
        );
    }
}

#[test]
fn more_documents_errors_and_warnings_than_the_limits() {
    // 20,001 documents of an unserved kind: the 20,001st is refused, and
    // only 100 warnings are listed (plus a count of the others).
    let yaml = "---\nkind: A\n".repeat(MAX_DOCUMENTS + 1);
    // ≈ 0.1 s.
    let (config, diags) = load_within(&yaml, 3 * SECOND);
    assert!(config.is_none());
    assert_eq!(diags.len(), 102, "{:?}", &diags[..3]);
    assert_eq!(
        diags[100],
        "f.yaml:40001:1: more than 20000 YAML documents in one file (limit of the config loader); the rest of the file was not read"
    );
    assert_eq!(
        diags[101],
        "f.yaml:1:1: warning: 19900 more warnings not shown (at most 100 are listed)"
    );
    // 150 bad documents: 100 errors, then reading stops.
    let yaml = "---\nkind: [\n".repeat(150);
    let (config, diags) = load_within(&yaml, SECOND);
    assert!(config.is_none());
    assert_eq!(diags.len(), 101);
    assert_eq!(
        diags[100],
        "f.yaml:201:1: too many errors (at most 100 are reported); the rest of the file was not read"
    );
}

#[test]
fn garbage_bytes_nul_and_tabs_are_errors_at_their_position() {
    let junk: String = String::from_utf8_lossy(
        &(0..4096u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .into_owned();
    let (config, diags) = load_within(&junk, SECOND);
    assert!(config.is_none());
    assert!(!diags.is_empty() && diags.len() <= 101, "{}", diags.len());
    assert_eq!(
        errors(&format!("{VS_HEAD}  http: []\0\n")),
        ["f.yaml:7:11: unexpected character: `\\u{0}'"]
    );
    let errs = errors(&format!("{VS_HEAD}  http:\n\t- route: []\n"));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("f.yaml:8:2: ") && errs[0].contains("tabs"),
        "{errs:?}"
    );
}

#[test]
fn invalid_utf8_is_reported_at_the_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latin1.yaml");
    std::fs::write(
        &file,
        b"kind: VirtualService\r\nmetadata: {name: caf\xe9}\n",
    )
    .unwrap();
    let loaded = load(std::slice::from_ref(&file));
    let errs: Vec<String> = loaded.errors().map(ToString::to_string).collect();
    assert_eq!(
        errs,
        [format!(
            "{}:2:21: not valid UTF-8 (byte 0xe9); config files must be UTF-8",
            file.display()
        )]
    );
}

#[test]
fn a_bom_and_crlf_line_ends_are_valid_yaml_with_right_positions() {
    let good = format!(
        "{VS_HEAD}  http:\n  - route:\n    - destination: {{host: reviews}}\n---\n{VS_HEAD}"
    );
    for text in [
        format!("\u{feff}{good}"),
        good.replace('\n', "\r\n"),
        format!("\u{feff}{}", good.replace('\n', "\r\n")),
        good.replace('\n', "\r"),
    ] {
        assert_eq!(ok(&text).virtual_services.len(), 2, "{text:?}");
    }
    let bad = format!(
        "kind: VirtualService\napiVersion: v9\n---\n{VS_HEAD}  http:\n  - route:\n    - destination: {{host: reviews}}\n      weight: x\n"
    );
    for text in [
        format!("\u{feff}{bad}"),
        bad.replace('\n', "\r\n"),
        format!("\u{feff}{}", bad.replace('\n', "\r\n")),
        bad.replace('\n', "\r"),
    ] {
        let errs = errors(&text);
        assert_eq!(errs.len(), 2, "{text:?}: {errs:?}");
        assert!(
            errs[0].starts_with("f.yaml:1:7: VirtualService"),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("f.yaml:13:15: VirtualService reviews: weight: "),
            "{errs:?}"
        );
    }
}

#[test]
fn out_of_range_numbers_and_durations_are_errors() {
    let route = |extra: &str, dest: &str| {
        format!(
            "{VS_HEAD}  http:\n  - route:\n    - destination: {{host: reviews}}\n      {dest}\n{extra}"
        )
    };
    let cases = [
        (route("", "weight: 9223372036854775808"), "f.yaml:10:15: VirtualService reviews: weight: "),
        (route("", "weight: 4294967296"), "f.yaml:10:15: VirtualService reviews: spec.http[0].route[0].weight: must be between 0 and 4294967295"),
        (route("", "weight: -1"), "f.yaml:10:15: VirtualService reviews: spec.http[0].route[0].weight: must not be negative, got -1"),
        (route("    timeout: 1e309s\n", ""), "f.yaml:11:14: VirtualService reviews: spec.http[0].timeout: invalid duration \"1e309s\""),
        (route("    timeout: 99999999999h\n", ""), "f.yaml:11:14: VirtualService reviews: spec.http[0].timeout: duration \"99999999999h\" is longer than the maximum of 315576000000s"),
        (route("    timeout: 18446744073709551616s\n", ""), "f.yaml:11:14: VirtualService reviews: spec.http[0].timeout: invalid duration"),
        (route("    fault: {delay: {fixedDelay: 1s, percentage: {value: -5}}}\n", ""), "f.yaml:11:57: VirtualService reviews: spec.http[0].fault.delay.percentage.value: must be between 0 and 100, got -5"),
        (route("    fault: {delay: {fixedDelay: 1s, percentage: {value: .nan}}}\n", ""), "f.yaml:11:57: non-finite float"),
        (route("    mirror: {host: m}\n    mirrorPercent: -5\n", ""), "f.yaml:12:20: VirtualService reviews: mirrorPercent: "),
        (route("", "destination: {host: reviews, port: {number: 70000}}"), "f.yaml:10:"),
        ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec:\n  hosts: [s]\n  ports: [{number: 70000, name: http}]\n".to_string(), "f.yaml:6:20: ServiceEntry s: spec.ports[0].number: not a port number: 70000"),
        ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: d\n  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 0s}}}\n".to_string(), "f.yaml:6:58: DestinationRule d: spec.trafficPolicy.connectionPool.tcp.connectTimeout: must be at least 1ms"),
    ];
    for (yaml, want) in cases {
        // The destination helper above leaves a blank destination line when
        // `dest` is empty; the route is still one destination.
        let errs = errors(&yaml);
        assert_eq!(errs.len(), 1, "{yaml}: {errs:?}");
        assert!(errs[0].starts_with(want), "{errs:?}\nwant {want}");
    }
}

#[test]
fn regexes_are_bounded_and_compile_as_the_router_compiles_them() {
    let with_regex = |re: &str| {
        format!(
            "{VS_HEAD}  http:\n  - match:\n    - uri: {{regex: '{re}'}}\n    route:\n    - destination: {{host: reviews}}\n"
        )
    };
    // Over the 1 MiB compiled-size cap (as mesh-route's): an error, quickly.
    let huge = [
        "(((a{100}){100}){100})",
        "\\w{1000}\\w{1000}",
        &"[a-z]+".repeat(50_000),
    ];
    for re in huge {
        let err = refused(&with_regex(re), 3 * SECOND);
        assert!(
            err.starts_with("f.yaml:9:20: VirtualService reviews: spec.http[0].match[0].uri.regex: invalid regex: ")
                && (err.contains("size limit of 1048576") || err.contains("exceeds")),
            "{err}"
        );
    }
    // Unbalanced groups that would balance once wrapped in `^(?:…)$`.
    let err = refused(&with_regex("a)|(b"), SECOND);
    assert!(err.contains("invalid regex"), "{err}");
    // Backtracking-catastrophic patterns are fine: the engine is linear-time.
    for re in [
        "(a*)*b",
        "(x+x+)+y",
        "(a|aa)+$",
        "^(([a-z])+.)+[A-Z]([a-z])+$",
    ] {
        ok(&with_regex(re));
    }
}

#[test]
fn duplicate_keys_are_errors() {
    let cases = [
        (
            format!("{VS_HEAD}  hosts: [other]\n"),
            "f.yaml:7:3: duplicate key `hosts`",
        ),
        (
            format!("{VS_HEAD}  http:\n  - route:\n    - destination: {{host: a, host: b}}\n"),
            "f.yaml:9:30: duplicate key `host`",
        ),
        (
            format!("kind: VirtualService\n{VS_HEAD}"),
            "f.yaml:3:1: duplicate key `kind`",
        ),
    ];
    for (yaml, want) in cases {
        let errs = errors(&yaml);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with(want), "{errs:?}\nwant {want}");
    }
}

#[test]
fn ten_thousand_routes_load_in_bounded_time() {
    let n = 10_000;
    let mut one = String::from(VS_HEAD);
    one.push_str("  http:\n");
    for i in 0..n {
        one.push_str(&format!(
            "  - match: [{{uri: {{prefix: /p{i}}}}}]\n    route: [{{destination: {{host: h{i}}}}}]\n"
        ));
    }
    // ≈ 1.6 s in a debug build (dependencies unoptimised; each document is
    // parsed twice: its header, then its schema).
    let (config, diags) = load_within(&one, 8 * SECOND);
    assert!(diags.is_empty(), "{:?}", &diags[..1]);
    assert_eq!(config.map(|c| c.virtual_services[0].http.len()), Some(n));
}

mod never_panics {
    use proptest::prelude::*;

    use super::*;

    const VALID: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - match:\n    - uri: {prefix: /api}\n      headers: {x-user: {regex: 'a+b'}}\n    timeout: 1.5s\n    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: 5xx}\n    fault: {delay: {fixedDelay: 1s, percentage: {value: 10}}}\n    route:\n    - destination: {host: reviews, subset: v1, port: {number: 9080}}\n      weight: 90\n    - destination: {host: reviews, subset: v2}\n      weight: 10\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s}\n  subsets:\n  - {name: v1, labels: {version: v1}}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  ports: [{number: 9080, name: http}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1, weight: 2}]\n";

    /// Either a config, or at least one error, each at a position.
    fn check(text: &str) {
        let loaded = load_str(Path::new("f.yaml"), text);
        let errors = loaded.errors().count();
        assert_eq!(loaded.config.is_some(), errors == 0);
        for d in &loaded.diagnostics {
            assert!(d.position.line >= 1 && d.position.column >= 1, "{d}");
            assert!(d.to_string().starts_with("f.yaml:"), "{d}");
        }
    }

    /// An edit of `VALID`: at a fraction of its length, delete, insert or
    /// replace with one of the characters YAML cares about.
    #[derive(Clone, Debug)]
    enum Edit {
        Delete(f64, usize),
        Insert(f64, String),
        DuplicateLine(f64),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let piece = prop_oneof![
            Just(":".to_string()),
            Just("- ".to_string()),
            Just("\n".to_string()),
            Just("\n---\n".to_string()),
            Just("  ".to_string()),
            Just("\t".to_string()),
            Just("&a ".to_string()),
            Just("*a".to_string()),
            Just("[".to_string()),
            Just("{".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just("\0".to_string()),
            Just("-1".to_string()),
            Just("99999999999999999999".to_string()),
            Just("\u{feff}".to_string()),
            "[ -~]{0,8}",
            any::<String>(),
        ];
        prop_oneof![
            (0.0..1.0f64, 1..20usize).prop_map(|(at, n)| Edit::Delete(at, n)),
            (0.0..1.0f64, piece).prop_map(|(at, s)| Edit::Insert(at, s)),
            (0.0..1.0f64).prop_map(Edit::DuplicateLine),
        ]
    }

    fn apply(text: &str, e: &Edit) -> String {
        let at = |f: f64| {
            let i = (text.len() as f64 * f) as usize;
            (0..=i)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0)
        };
        match e {
            Edit::Delete(f, n) => {
                let i = at(*f);
                let j = (i + n..=text.len())
                    .find(|&j| text.is_char_boundary(j))
                    .unwrap_or(text.len());
                format!("{}{}", &text[..i], &text[j..])
            }
            Edit::Insert(f, s) => {
                let i = at(*f);
                format!("{}{s}{}", &text[..i], &text[i..])
            }
            Edit::DuplicateLine(f) => {
                let i = at(*f);
                let start = text[..i].rfind('\n').map_or(0, |p| p + 1);
                let end = text[i..].find('\n').map_or(text.len(), |p| i + p + 1);
                format!("{}{}", &text[..end], &text[start..end])
            }
        }
    }

    #[test]
    fn the_valid_config_loads() {
        check(VALID);
        assert!(load_str(Path::new("f.yaml"), VALID).config.is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            check(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "(?s).{0,500}") {
            check(&text);
        }

        #[test]
        fn mutations_of_a_valid_config_never_panic(edits in proptest::collection::vec(edit(), 1..6)) {
            let mut text = VALID.to_string();
            for e in &edits {
                text = apply(&text, e);
            }
            check(&text);
        }
    }
}

const SIDECAR_HEAD: &str =
    "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec:\n";

#[test]
fn capture_listeners_bind_where_iptables_sends_and_need_no_endpoint() {
    let config = ok(&format!(
        "{SIDECAR_HEAD}  egress:\n  - port: {{number: 15001, name: capture}}\n    captureMode: IPTABLES\n  ingress:\n  - port: {{number: 15006, name: capture}}\n    captureMode: IPTABLES\n  - port: {{number: 9080}}\n    captureMode: NONE\n    defaultEndpoint: 127.0.0.1:8080\n"
    ));
    let by_name = |n: &str| config.listeners.iter().find(|l| l.name == n).unwrap();
    let out = by_name("outbound|capture");
    assert!(out.capture);
    // OUTPUT's REDIRECT goes to loopback; PREROUTING's to the pod's address.
    assert_eq!(out.bind, "127.0.0.1:15001".parse().unwrap());
    let inb = by_name("inbound|capture");
    assert!(inb.capture);
    assert_eq!(inb.bind, "0.0.0.0:15006".parse().unwrap());
    assert_eq!(inb.default_endpoint, None);
    assert!(!by_name("inbound|9080").capture);
}

#[test]
fn unknown_capture_modes_are_errors() {
    let errs = errors(&format!(
        "{SIDECAR_HEAD}  egress:\n  - port: {{number: 15001}}\n    captureMode: TPROXY\n"
    ));
    assert_eq!(
        errs,
        [
            "f.yaml:7:18: Sidecar default: spec.egress[0].captureMode: unknown capture mode \"TPROXY\" (DEFAULT, IPTABLES or NONE)"
        ]
    );
}

#[test]
fn service_entry_addresses_are_ips_or_cidr_blocks() {
    let head = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db}\nspec:\n  hosts: [db]\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n";
    let config = ok(&format!(
        "{head}  addresses: [10.99.0.200, 240.240.7.0/24, \"fd00::1\"]\n"
    ));
    let blocks = &config.services[0].addresses;
    assert_eq!(blocks.len(), 3);
    assert!(blocks[0].contains("10.99.0.200".parse().unwrap()));
    assert!(!blocks[0].contains("10.99.0.201".parse().unwrap()));
    assert!(blocks[1].contains("240.240.7.99".parse().unwrap()));
    assert!(!blocks[1].contains("240.240.8.1".parse().unwrap()));
    assert!(blocks[2].contains("fd00::1".parse().unwrap()));
    assert!(!blocks[2].contains("10.99.0.200".parse().unwrap()));
    let errs = errors(&format!("{head}  addresses: [10.0.0.0/33, reviews]\n"));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].contains("spec.addresses[0]: not an IP address or CIDR block: \"10.0.0.0/33\"")
    );
}
