//! The sidecar end to end: the real `mesh-proxy` binary between a client and
//! real hyper backends on 127.0.0.1, configured with Istio YAML.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{Backend, Behavior, Client, ProxyProc, service, sidecar};

/// Istio's Bookinfo manifests (`../shared/istio-samples`).
fn samples_dir() -> PathBuf {
    let candidates = [
        std::env::var("MESH_ISTIO_SAMPLES")
            .map(PathBuf::from)
            .unwrap_or_default(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/istio-samples"),
        PathBuf::from("/work/shared/istio-samples"),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("README.md").is_file())
        .expect("the Istio samples: set MESH_ISTIO_SAMPLES to shared/istio-samples")
}

fn sample(name: &str) -> String {
    std::fs::read_to_string(samples_dir().join(name)).unwrap()
}

/// Sends `n` GETs and counts the bodies (backend names) that answered 200.
async fn spread(
    proxy: &ProxyProc,
    host: &str,
    n: usize,
    headers: &[(&str, &str)],
) -> HashMap<String, usize> {
    let client = Client::new();
    let mut seen = HashMap::new();
    for _ in 0..n {
        let (status, _, body) = client.get(proxy.outbound(), host, "/", headers).await;
        assert_eq!(status, 200, "{body}");
        *seen.entry(body).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly_over_three_endpoints() {
    let a = Backend::start("a", Behavior::Ok).await;
    let b = Backend::start("b", Behavior::Ok).await;
    let c = Backend::start("c", Behavior::Ok).await;
    let yaml = format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n",
        sidecar(),
        service("web", &[(&a, "v1"), (&b, "v1"), (&c, "v1")])
    );
    let proxy = ProxyProc::start(&yaml);
    let seen = spread(&proxy, "web", 30, &[]).await;
    assert_eq!(
        seen,
        HashMap::from([("a".into(), 10), ("b".into(), 10), ("c".into(), 10)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_80_20_split_and_jason_routing() {
    let v1 = Backend::start("v1", Behavior::Ok).await;
    let v2 = Backend::start("v2", Behavior::Ok).await;
    let v3 = Backend::start("v3", Behavior::Ok).await;
    let entries = format!(
        "{}{}",
        sidecar(),
        service("reviews", &[(&v1, "v1"), (&v2, "v2"), (&v3, "v3")])
    );
    let rules = sample("destination-rule-all.yaml");

    let split = ProxyProc::start(&format!(
        "{entries}---\n{}---\n{rules}",
        sample("virtual-service-reviews-80-20.yaml")
    ));
    let n = 1000;
    let seen = spread(&split, "reviews", n, &[]).await;
    let v2_share = *seen.get("v2").unwrap_or(&0);
    // Binomial(1000, 0.2): sd ≈ 12.6; 5 sd either side.
    assert!((137..=263).contains(&v2_share), "{seen:?}");
    assert_eq!(
        seen.get("v1").copied().unwrap_or(0) + v2_share,
        n,
        "nothing to v3: {seen:?}"
    );
    drop(split);

    let jason = ProxyProc::start(&format!(
        "{entries}---\n{}---\n{rules}",
        sample("virtual-service-reviews-jason-v2-v3.yaml")
    ));
    assert_eq!(
        spread(&jason, "reviews", 10, &[("end-user", "jason")]).await,
        HashMap::from([("v2".into(), 10)])
    );
    assert_eq!(
        spread(
            &jason,
            "reviews.default.svc.cluster.local",
            10,
            &[("end-user", "alice")]
        )
        .await,
        HashMap::from([("v3".into(), 10)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_prefix_exact_and_regex_routes() {
    let api = Backend::start("api", Behavior::Ok).await;
    let login = Backend::start("login", Behavior::Ok).await;
    let img = Backend::start("img", Behavior::Ok).await;
    let other = Backend::start("other", Behavior::Ok).await;
    let yaml = format!(
        r#"{}{}{}{}{}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: front}}
spec:
  hosts: [front]
  http:
  - match: [{{uri: {{exact: /login}}}}]
    route: [{{destination: {{host: login}}}}]
  - match: [{{uri: {{prefix: /api/}}}}]
    route: [{{destination: {{host: api}}}}]
  - match: [{{uri: {{regex: '/img/[0-9]+\.png'}}}}]
    route: [{{destination: {{host: img}}}}]
  - route: [{{destination: {{host: other}}}}]
"#,
        sidecar(),
        service("api", &[(&api, "v1")]),
        service("login", &[(&login, "v1")]),
        service("img", &[(&img, "v1")]),
        service("other", &[(&other, "v1")]),
    ) + &service("front", &[(&other, "v1")]);
    let proxy = ProxyProc::start(&yaml);
    let client = Client::new();
    let cases = [
        ("/login", "login"),
        ("/login/again", "other"),
        ("/api/v1/products", "api"),
        ("/apix", "other"),
        ("/img/42.png", "img"),
        ("/img/42.png.bak", "other"),
        // The proxy normalises the path before routing (as Istio does; see
        // mesh-proxy/src/normalize.rs): this is `/api/x`.
        ("/public/../api/x", "api"),
    ];
    for (path, want) in cases {
        let (status, _, body) = client.get(proxy.outbound(), "front", path, &[]).await;
        assert_eq!((status.as_u16(), body.as_str()), (200, want), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_hide_a_503_endpoint() {
    let good = Backend::start("good", Behavior::Ok).await;
    let bad = Backend::start("bad", Behavior::Status(503)).await;
    let yaml = format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n    retries: {{attempts: 3, retryOn: 5xx}}\n",
        sidecar(),
        service("web", &[(&good, "v1"), (&bad, "v1")])
    );
    let proxy = ProxyProc::start(&yaml);
    let seen = spread(&proxy, "web", 40, &[]).await;
    assert_eq!(seen, HashMap::from([("good".into(), 40)]));
    assert!(
        bad.hits() > 0,
        "the bad endpoint was tried and retried around"
    );
    let log = proxy.access_log_n(40).await;
    assert_eq!(log.len(), 40);
    let retried = log
        .iter()
        .filter(|l| l["attempts"].as_u64() > Some(1))
        .count();
    assert_eq!(retried, bad.hits(), "each 503 cost one retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_a_failing_endpoint() {
    let a = Backend::start("a", Behavior::Ok).await;
    let b = Backend::start("b", Behavior::Ok).await;
    let bad = Backend::start("bad", Behavior::Status(503)).await;
    let yaml = format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n    outlierDetection: {{consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n    retries: {{attempts: 0}}\n",
        sidecar(),
        service("web", &[(&a, "v1"), (&b, "v1"), (&bad, "v1")])
    );
    let proxy = ProxyProc::start(&yaml);
    let client = Client::new();
    let mut errors = 0;
    for _ in 0..60 {
        let (status, _, _) = client.get(proxy.outbound(), "web", "/", &[]).await;
        if status != 200 {
            errors += 1;
        }
    }
    assert_eq!(errors, 3, "ejected after three 5xx, no 503 afterwards");
    assert_eq!(bad.hits(), 3);
    let clusters = proxy.admin_json("/clusters").await;
    let eps = clusters["clusters"][0]["endpoints"]
        .as_array()
        .unwrap()
        .clone();
    let bad_addr = bad.addr.to_string();
    let bad_ep = eps
        .iter()
        .find(|e| e["address"] == bad_addr.as_str())
        .unwrap();
    assert_eq!(bad_ep["ejected"], true);
    assert_eq!(bad_ep["healthy"], false);
    assert!(eps.iter().filter(|e| e["ejected"] == false).count() == 2);
    let metrics = proxy.admin_get("/stats/prometheus").await.1;
    assert!(
        metrics.contains("mesh_outlier_ejections_active{"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_abort_never_reaches_upstream_and_delay_delays() {
    let v1 = Backend::start("ratings", Behavior::Ok).await;
    let entries = format!("{}{}", sidecar(), service("ratings", &[(&v1, "v1")]));
    let rules = sample("destination-rule-all.yaml");
    let abort = ProxyProc::start(&format!(
        "{entries}---\n{}---\n{rules}",
        sample("virtual-service-ratings-test-abort.yaml")
    ));
    let client = Client::new();
    for _ in 0..10 {
        let (status, headers, _) = client
            .get(abort.outbound(), "ratings", "/", &[("end-user", "jason")])
            .await;
        assert_eq!(status, 500);
        assert_eq!(headers["x-mesh-response-flags"], "FI");
    }
    assert_eq!(v1.hits(), 0, "a fault abort never touches the upstream");
    let (status, _, _) = client.get(abort.outbound(), "ratings", "/", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(v1.hits(), 1);
    let flagged: Vec<_> = abort
        .access_log_n(11)
        .await
        .into_iter()
        .filter(|l| l["response_flags"] == "FI")
        .collect();
    assert_eq!(flagged.len(), 10);
    drop(abort);

    let delay_yaml = format!(
        "{entries}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: ratings}}\nspec:\n  hosts: [ratings]\n  http:\n  - fault: {{delay: {{fixedDelay: 300ms, percentage: {{value: 100}}}}}}\n    route: [{{destination: {{host: ratings}}}}]\n"
    );
    let delay = ProxyProc::start(&delay_yaml);
    let start = Instant::now();
    let (status, headers, _) = client.get(delay.outbound(), "ratings", "/", &[]).await;
    assert_eq!(status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(headers["x-mesh-response-flags"], "DI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_is_504_ut() {
    let slow = Backend::start("slow", Behavior::Delay(Duration::from_secs(3))).await;
    let yaml = format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n    timeout: 200ms\n",
        sidecar(),
        service("web", &[(&slow, "v1")])
    );
    let proxy = ProxyProc::start(&yaml);
    let start = Instant::now();
    let (status, headers, body) = Client::new().get(proxy.outbound(), "web", "/", &[]).await;
    assert_eq!(status, 504);
    assert_eq!(headers["x-mesh-response-flags"], "UT");
    assert_eq!(body, "upstream request timeout");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirroring_sends_a_shadow_copy() {
    let primary = Backend::start("primary", Behavior::Ok).await;
    let shadow = Backend::start("shadow", Behavior::Status(500)).await;
    let yaml = format!(
        "{}{}{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n    mirror: {{host: mirror}}\n    mirrorPercentage: {{value: 100}}\n",
        sidecar(),
        service("web", &[(&primary, "v1")]),
        service("mirror", &[(&shadow, "v1")])
    );
    let proxy = ProxyProc::start(&yaml);
    let seen = spread(&proxy, "web", 5, &[]).await;
    assert_eq!(
        seen,
        HashMap::from([("primary".into(), 5)]),
        "the shadow's 500 changes nothing"
    );
    // Mirrors are fire-and-forget: wait for them to land.
    for _ in 0..100 {
        if shadow.hits() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(shadow.hits(), 5);
    assert!(
        shadow
            .hosts
            .lock()
            .unwrap()
            .iter()
            .all(|h| h == "web-shadow"),
        "{:?}",
        shadow.hosts.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_by_header_keeps_a_key_on_one_endpoint() {
    let a = Backend::start("a", Behavior::Ok).await;
    let b = Backend::start("b", Behavior::Ok).await;
    let c = Backend::start("c", Behavior::Ok).await;
    let yaml = format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {{httpHeaderName: x-user}}\n",
        sidecar(),
        service("web", &[(&a, "v1"), (&b, "v1"), (&c, "v1")])
    );
    let proxy = ProxyProc::start(&yaml);
    let mut homes = Vec::new();
    for user in [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ] {
        let seen = spread(&proxy, "web", 10, &[("x-user", user)]).await;
        assert_eq!(seen.len(), 1, "{user} stays on one endpoint: {seen:?}");
        homes.push(seen.into_keys().next().unwrap());
    }
    homes.sort();
    homes.dedup();
    assert!(homes.len() >= 2, "users spread over endpoints: {homes:?}");
}

/// `web` over three backends with this `loadBalancer`.
fn web_balanced(backends: [&Backend; 3], lb: &str) -> String {
    let [a, b, c] = backends;
    format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n    loadBalancer: {lb}\n",
        sidecar(),
        service("web", &[(a, "v1"), (b, "v1"), (c, "v1")])
    )
}

/// Rewrites the proxy's config, signals it, and waits until `version` is in
/// force.
async fn reload_to(proxy: &ProxyProc, yaml: &str, version: u64) {
    std::fs::write(&proxy.config_path, yaml).unwrap();
    proxy.signal_reload();
    proxy.wait_version(version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_on_the_source_ip_keeps_a_client_on_one_endpoint_across_reloads() {
    let a = Backend::start("a", Behavior::Ok).await;
    let b = Backend::start("b", Behavior::Ok).await;
    let c = Backend::start("c", Behavior::Ok).await;
    let by_source_ip = web_balanced([&a, &b, &c], "{consistentHash: {useSourceIp: true}}");
    let round_robin = web_balanced([&a, &b, &c], "{simple: ROUND_ROBIN}");
    // Requests carry the client's address only while a cluster reads it:
    // from the start, not after a reload away from it, again after one back.
    // Every request comes from 127.0.0.1, so with it they hash to one endpoint.
    let proxy = ProxyProc::start(&by_source_ip);
    let seen = spread(&proxy, "web", 12, &[]).await;
    assert_eq!(seen.len(), 1, "one client, one endpoint: {seen:?}");

    reload_to(&proxy, &round_robin, 2).await;
    assert_eq!(spread(&proxy, "web", 9, &[]).await.len(), 3);

    reload_to(&proxy, &by_source_ip, 3).await;
    let seen = spread(&proxy, "web", 12, &[]).await;
    assert_eq!(seen.len(), 1, "one client, one endpoint: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_overflow_is_503_uo() {
    let slow = Backend::start("slow", Behavior::Delay(Duration::from_millis(600))).await;
    let proxy = ProxyProc::start(&with_pool(
        &slow,
        "{http: {http2MaxRequests: 1, http1MaxPendingRequests: 1}}",
    ));
    let client = Client::new();
    let addr = proxy.outbound();
    let first = busy(&client, addr, &slow).await;
    let (status, headers, _) = client.get(addr, "web", "/", &[]).await;
    assert_eq!(status, 503);
    assert_eq!(headers["x-mesh-response-flags"], "UO");
    assert_eq!(headers["x-envoy-overloaded"], "true");
    assert_eq!(first.await.unwrap().0, 200);
    let (status, _, _) = client.get(addr, "web", "/", &[]).await;
    assert_eq!(status, 200, "accepted again once the first finished");
}

/// A single-endpoint `web` service with this `connectionPool`.
fn with_pool(backend: &Backend, pool: &str) -> String {
    format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n    connectionPool: {pool}\n",
        sidecar(),
        service("web", &[(backend, "v1")])
    )
}

/// Starts one request and returns once it is being served by `slow`.
async fn busy(
    client: &Client,
    addr: std::net::SocketAddr,
    slow: &Backend,
) -> tokio::task::JoinHandle<(http::StatusCode, http::HeaderMap, String)> {
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.get(addr, "web", "/", &[]).await }
    });
    support::wait_until("the first request reaches the backend", || slow.hits() == 1).await;
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_access_log_count_what_was_sent() {
    let ok = Backend::start("ok", Behavior::Ok).await;
    let yaml = format!("{}{}", sidecar(), service("web", &[(&ok, "v7")]));
    let proxy = ProxyProc::start(&yaml);
    let client = Client::new();
    for _ in 0..7 {
        assert_eq!(
            client.get(proxy.outbound(), "web", "/x?y=1", &[]).await.0,
            200
        );
    }
    for _ in 0..2 {
        let (status, headers, _) = client
            .get(proxy.outbound(), "nowhere.example", "/", &[])
            .await;
        assert_eq!(status, 502);
        assert_eq!(headers["x-mesh-response-flags"], "NR");
    }
    // Requests are counted when their response bodies end: wait for all nine.
    let log = proxy.access_log_n(9).await;
    let metrics = proxy.admin_get("/stats/prometheus").await.1;
    let line = |code: &str, flags: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("istio_requests_total{")
                    && l.contains(&format!("response_code=\"{code}\""))
                    && l.contains(&format!("response_flags=\"{flags}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    assert_eq!(line("200", "-").as_deref(), Some("7"), "{metrics}");
    assert_eq!(line("502", "NR").as_deref(), Some("2"), "{metrics}");
    assert!(metrics.contains("destination_version=\"v7\""));
    assert!(metrics.contains("istio_request_duration_milliseconds_bucket{"));
    assert_eq!(log.len(), 9, "one line per request");
    let ok_line = &log[0];
    assert_eq!(ok_line["path"], "/x?y=1");
    assert_eq!(ok_line["response_code"], 200);
    assert_eq!(ok_line["response_flags"], "-");
    assert_eq!(ok_line["upstream_host"], ok.addr.to_string());
    assert_eq!(ok_line["bytes_sent"], 2);
    assert_eq!(ok_line["request_id"].as_str().unwrap().len(), 36);
    assert_eq!(log[8]["response_flags"], "NR");
    let ready = proxy.admin_get("/ready").await;
    assert_eq!(ready.0, 200);
    let listeners = proxy.admin_json("/listeners").await;
    assert_eq!(
        listeners["listeners"][0]["address"],
        proxy.outbound().to_string()
    );
    let dump = proxy.admin_json("/config_dump").await;
    assert_eq!(dump["version"], 1);
}

#[test]
fn validate_accepts_the_istio_samples_and_rejects_broken_files() {
    let bin = env!("CARGO_BIN_EXE_mesh-proxy");
    let mut checked = 0;
    for entry in std::fs::read_dir(samples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = std::process::Command::new(bin)
                .arg("validate")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 12);
    let gateway = std::process::Command::new(bin)
        .arg("validate")
        .arg(samples_dir().join("bookinfo-gateway.yaml"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&gateway.stderr)
            .contains("warning: Gateway bookinfo-gateway: kind Gateway is not served")
    );

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: 50\n    retries: {attempts: 2, retryOn: \"5xx,teapot\"}\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .arg("validate")
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:10:37: VirtualService reviews: spec.http[0].retries.retryOn: ",
        broken.display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.contains("teapot"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_overflow_is_503_uo() {
    let slow = Backend::start("slow", Behavior::Delay(Duration::from_millis(800))).await;
    let proxy = ProxyProc::start(&with_pool(&slow, "{tcp: {maxConnections: 1}}"));
    let client = Client::new();
    let addr = proxy.outbound();
    // The first request holds the only connection.
    let first = busy(&client, addr, &slow).await;
    // The second needs a second upstream connection: refused at once, never
    // sent, not retried.
    let started = Instant::now();
    let (status, headers, _) = client.get(addr, "web", "/", &[]).await;
    assert_eq!(status, 503);
    assert_eq!(headers["x-mesh-response-flags"], "UO");
    assert_eq!(headers["x-envoy-overloaded"], "true");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused without waiting for the busy connection: {:?}",
        started.elapsed()
    );
    assert!(!first.is_finished());
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(
        slow.hits(),
        1,
        "the refused request never reached the backend"
    );
    // The first connection is idle in the pool now and is reused.
    let (status, _, body) = client.get(addr, "web", "/", &[]).await;
    assert_eq!((status, body.as_str()), (http::StatusCode::OK, "slow"));
    assert_eq!(slow.hits(), 2);
}
