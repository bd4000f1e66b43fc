//! A sidecar per pod, for real: pods in network namespaces, their traffic
//! captured by `mesh-proxy iptables`, apps that know nothing of the mesh.
//!
//! Needs root (namespaces, iptables); skipped with a printed reason
//! otherwise. `.ci/run` runs as root and installs iptables and curl.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netns;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper_util::rt::TokioExecutor;
use netns::workloads::{App, capture_sidecar, serve_app, serve_echo, start_sidecar};
use netns::{Mesh, Pod};
use support::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REVIEWS_VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 200);
const ECHO_VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 201);
const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/client";

/// Whether to skip: not root or no `ip`/`iptables`. Where CI requires the
/// pod tests (`MESH_REQUIRE_NETNS=1`, set by `.ci/run`), that is a failure
/// instead, so the tests cannot pass by not running.
fn skip() -> bool {
    match netns::unavailable() {
        Some(why) if std::env::var_os("MESH_REQUIRE_NETNS").is_some() => {
            panic!("the pod tests are required here but cannot run: {why}")
        }
        Some(why) => {
            eprintln!("skipping the pod tests: {why}");
            true
        }
        None => false,
    }
}

/// The mesh config every sidecar gets: capture listeners, STRICT mTLS, the
/// services by their virtual IPs, and the policies.
fn mesh_config(v1: Ipv4Addr, v2: Ipv4Addr) -> String {
    format!(
        r#"{head}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  addresses: [{REVIEWS_VIP}]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: {v1}, labels: {{version: v1}}}}
  - {{address: {v2}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo}}
spec:
  hosts: [echo]
  addresses: [{ECHO_VIP}]
  ports: [{{number: 7000, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints:
  - {{address: {v1}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  trafficPolicy:
    tls: {{mode: ISTIO_MUTUAL}}
    outlierDetection:
      consecutive5xxErrors: 2
      interval: 1s
      baseEjectionTime: 30s
      maxEjectionPercent: 50
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo}}
spec:
  host: echo
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - match: [{{headers: {{x-split: {{exact: "yes"}}}}}}]
    route:
    - {{destination: {{host: reviews, subset: v1}}, weight: 80}}
    - {{destination: {{host: reviews, subset: v2}}, weight: 20}}
  - route:
    - destination: {{host: reviews}}
    retries: {{attempts: 3, retryOn: 5xx}}
"#,
        head = capture_sidecar(false),
    )
}

/// GETs `http://reviews:9080/` the way an app that resolved the name would:
/// to the VIP, with that Host.
async fn get_reviews(
    headers: &[(&str, &str)],
) -> Result<(StatusCode, http::HeaderMap, String), String> {
    let vip = SocketAddr::from((REVIEWS_VIP, 9080));
    let mut req = Request::builder()
        .uri(format!("http://{vip}/"))
        .header("host", "reviews:9080");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, http_body_util::Empty<Bytes>>(connector);
    let res = client
        .request(req.body(http_body_util::Empty::new()).unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let (parts, body) = res.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

fn metrics(mesh: &Mesh, pod: &Pod) -> String {
    mesh.block_in(pod, async {
        let admin = SocketAddr::from(([127, 0, 0, 1], 15000));
        Client::new()
            .try_get(admin, "admin", "/stats/prometheus")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    })
}

/// The sum of a metric family's samples whose line contains `filter`.
fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn pods_talk_through_captured_sidecars() {
    if skip() {
        return;
    }
    let started = Instant::now();
    let host_links_before = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap()
        .stdout;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Path::new(env!("CARGO_BIN_EXE_mesh-proxy"));
    let ca = mesh_tls::DevCa::new("cluster.local").unwrap();
    let prefix;
    {
        let mut mesh = Mesh::new().unwrap();
        prefix = mesh.prefix().to_owned();
        let v1_ip = Ipv4Addr::new(10, 99, 0, 11);
        let v2_ip = Ipv4Addr::new(10, 99, 0, 12);
        let hosts = [("reviews", REVIEWS_VIP), ("echo", ECHO_VIP)];
        let client_pod = mesh.add_pod("client", 10, &hosts).unwrap();
        let v1_pod = mesh.add_pod("reviews-v1", 11, &hosts).unwrap();
        let v2_pod = mesh.add_pod("reviews-v2", 12, &hosts).unwrap();
        let stranger = mesh.add_pod("stranger", 13, &hosts).unwrap();
        let locked = mesh.add_pod("locked", 14, &hosts).unwrap();
        let guarded = mesh.add_pod("guarded", 15, &hosts).unwrap();

        let (v1, v2) = (App::default(), App::default());
        let a = v1.clone();
        mesh.serve_in(&v1_pod, move || serve_app("reviews-v1", a, 9080));
        let a = v2.clone();
        mesh.serve_in(&v2_pod, move || serve_app("reviews-v2", a, 9080));
        mesh.serve_in(&v1_pod, || serve_echo(7000));
        // Outside the mesh: no sidecar, no ServiceEntry.
        let outsider = App::default();
        let a = outsider.clone();
        mesh.serve_in(&stranger, move || serve_app("outsider", a, 8080));
        mesh.serve_in(&stranger, || serve_echo(7001));

        let config = mesh_config(v1_ip, v2_ip);
        let client_sidecar = start_sidecar(
            &mesh,
            &client_pod,
            proxy,
            dir.path(),
            &ca,
            "client",
            &config,
            &[],
        );
        let v1_sidecar = start_sidecar(
            &mesh,
            &v1_pod,
            proxy,
            dir.path(),
            &ca,
            "reviews",
            &config,
            &[],
        );
        let v2_sidecar = start_sidecar(
            &mesh,
            &v2_pod,
            proxy,
            dir.path(),
            &ca,
            "reviews",
            &config,
            &[],
        );

        // 1. An unmodified client (curl, resolving `reviews` through the pod's
        //    /etc/hosts) reaches a reviews pod through both sidecars, over
        //    mTLS: the app sees the caller's SPIFFE ID.
        let out = mesh
            .exec(
                &client_pod,
                &[
                    "curl",
                    "-sS",
                    "-i",
                    "--max-time",
                    "5",
                    "-H",
                    "x-request-id: pods-curl-1",
                    "-H",
                    "x-split: yes",
                    "http://reviews:9080/",
                ],
            )
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(
            out.status.success() && text.starts_with("http/1.1 200"),
            "curl: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(&format!("uri={CLIENT_ID}")),
            "the app did not see the caller's identity: {text}"
        );
        assert!(
            client_sidecar.logged("pods-curl-1"),
            "not in the client sidecar's log"
        );
        assert!(
            text.contains("reviews-v1") || text.contains("reviews-v2"),
            "{text}"
        );
        let served_by = if text.contains("reviews-v1") {
            &v1_sidecar
        } else {
            &v2_sidecar
        };
        assert!(
            served_by.logged("pods-curl-1"),
            "not in the server sidecar's log"
        );
        // One request, one line: the client sidecar's own upstream
        // connection was not captured again.
        assert_eq!(client_sidecar.lines_of("pods-curl-1"), 1);

        // 2. The 80/20 split across the two reviews pods.
        let (ones, twos) = mesh.block_in(&client_pod, async {
            let (mut ones, mut twos) = (0, 0);
            for _ in 0..200 {
                let (status, _, body) = get_reviews(&[("x-split", "yes")]).await.unwrap();
                assert_eq!(status, StatusCode::OK);
                match body.as_str() {
                    "reviews-v1" => ones += 1,
                    "reviews-v2" => twos += 1,
                    other => panic!("unexpected body {other:?}"),
                }
            }
            (ones, twos)
        });
        eprintln!("split: {ones} to reviews-v1, {twos} to reviews-v2");
        assert!(
            (140..=180).contains(&ones),
            "80/20 split gave {ones} to v1 and {twos} to v2"
        );

        // 3. reviews-v2's app starts failing: retries hide it and outlier
        //    detection stops sending to it.
        v2.failing.store(true, Ordering::SeqCst);
        let before = v2.hits.load(Ordering::SeqCst);
        let failures = mesh.block_in(&client_pod, async {
            let mut failures = 0;
            for _ in 0..100 {
                match get_reviews(&[]).await {
                    Ok((StatusCode::OK, _, body)) => assert_eq!(body, "reviews-v1"),
                    _ => failures += 1,
                }
            }
            failures
        });
        let v2_hits = v2.hits.load(Ordering::SeqCst) - before;
        eprintln!("failing pod: {v2_hits} of 100 requests reached it, {failures} failed");
        assert_eq!(failures, 0, "retries should hide the failing pod");
        assert!(
            v2_hits <= 6,
            "the failing pod got {v2_hits} of 100 requests: not ejected"
        );
        // 1 + 200 + 100 requests, counted under the service they went to.
        let text = metrics(&mesh, &client_pod);
        assert!(
            metric_sum(
                &text,
                "istio_requests_total",
                "destination_service=\"reviews\""
            ) >= 301.0,
            "{text}"
        );

        // 4. Plain TCP through capture: an echo over the VIP, counted.
        let echoed = mesh.block_in(&client_pod, async {
            let mut tcp = TcpStream::connect((ECHO_VIP, 7000)).await.unwrap();
            tcp.write_all(b"hello through the mesh").await.unwrap();
            let mut buf = vec![0u8; 22];
            tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut buf))
                .await
                .expect("echo timed out")
                .unwrap();
            buf
        });
        assert_eq!(echoed, b"hello through the mesh");
        // Both sidecars log the TCP connection once it closes.
        let line = client_sidecar
            .find_line(|l| l["protocol"] == "TCP" && l["upstream_cluster"] == "outbound|7000||echo")
            .expect("no TCP line in the client sidecar's log");
        assert_eq!(line["upstream_host"], format!("{v1_ip}:7000"));
        assert_eq!(
            (line["bytes_received"].as_u64(), line["bytes_sent"].as_u64()),
            (Some(22), Some(22))
        );
        assert_eq!(line["response_flags"], "-");
        let line = v1_sidecar
            .find_line(|l| l["protocol"] == "TCP" && l["upstream_cluster"] == "inbound|7000||")
            .expect("no TCP line in the server sidecar's log");
        assert_eq!(line["upstream_host"], "127.0.0.1:7000");
        let client_metrics = metrics(&mesh, &client_pod);
        assert!(
            metric_sum(
                &client_metrics,
                "istio_tcp_received_bytes_total",
                "destination_service=\"echo\""
            ) >= 22.0,
            "{client_metrics}"
        );
        assert!(
            metric_sum(
                &client_metrics,
                "istio_tcp_sent_bytes_total",
                "destination_service=\"echo\""
            ) >= 22.0
        );
        // Nothing of the proxy's own traffic came back as passthrough (a
        // capture loop would show up there).
        assert_eq!(
            metric_sum(
                &client_metrics,
                "istio_tcp_connections_opened_total",
                "PassthroughCluster"
            ),
            0.0
        );

        // 5. A pod without a sidecar is refused under STRICT, and the app
        //    never sees its request.
        let v1_hits = v1.hits.load(Ordering::SeqCst);
        let refused = mesh.block_in(&stranger, async move {
            Client::new()
                .try_get(SocketAddr::from((v1_ip, 9080)), "reviews:9080", "/")
                .await
        });
        assert!(
            refused.is_err(),
            "plaintext reached a STRICT pod: {refused:?}"
        );
        assert_eq!(v1.hits.load(Ordering::SeqCst), v1_hits);

        // 6. Destinations no service claims: passed through untouched under
        //    allow-any (HTTP and TCP), refused under registry-only.
        let outside = SocketAddr::from((stranger.ip, 8080));
        let outside_echo = SocketAddr::from((stranger.ip, 7001));
        let (http, echo) = mesh.block_in(&client_pod, async move {
            let http = Client::new().try_get(outside, "outsider:8080", "/").await;
            let echo = echo_once(outside_echo).await;
            (http, echo)
        });
        assert_eq!(http, Ok((StatusCode::OK, "outsider".to_owned())));
        assert_eq!(echo.as_deref(), Some(&b"ping"[..]));
        assert_eq!(outsider.hits.load(Ordering::SeqCst), 1);
        let client_metrics = metrics(&mesh, &client_pod);
        assert!(
            metric_sum(
                &client_metrics,
                "istio_tcp_connections_opened_total",
                "PassthroughCluster"
            ) >= 1.0
        );

        let locked_sidecar = start_sidecar(
            &mesh,
            &locked,
            proxy,
            dir.path(),
            &ca,
            "locked",
            &config,
            &["--outbound-policy", "registry-only"],
        );
        let (http, echo) = mesh.block_in(&locked, async move {
            let http = Client::new().try_get(outside, "outsider:8080", "/").await;
            let echo = echo_once(outside_echo).await;
            (http, echo)
        });
        let (status, body) = http.unwrap();
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(echo, None, "registry-only let TCP through");
        assert_eq!(outsider.hits.load(Ordering::SeqCst), 1);
        let flags: Vec<_> = locked_sidecar
            .access_log_n(1)
            .iter()
            .map(|l| l["response_flags"].clone())
            .collect();
        assert_eq!(flags, vec![serde_json::json!("NR")]);

        // 6b. HTTP behind a leading blank line (which servers skip) is
        //     sniffed as HTTP, not passed to the app as opaque bytes around
        //     the HTTP path: the policy applies (403), and an allowed request
        //     is forwarded as HTTP (the echo app's echo of it is no HTTP
        //     answer: 502), never echoed back raw. PERMISSIVE, so a pod
        //     without a sidecar can try.
        mesh.serve_in(&guarded, || serve_echo(7002));
        let guarded_config = format!(
            "{}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: deny-admin}}\nspec:\n  action: DENY\n  rules:\n  - to: [{{operation: {{paths: [/admin]}}}}]\n",
            config.replace("mode: STRICT", "mode: PERMISSIVE")
        );
        let _guarded_sidecar = start_sidecar(
            &mesh,
            &guarded,
            proxy,
            dir.path(),
            &ca,
            "guarded",
            &guarded_config,
            &[],
        );
        let guarded_echo = SocketAddr::from((guarded.ip, 7002));
        let disguised = |path: &'static str| {
            mesh.block_in(&stranger, async move {
                let mut tcp = TcpStream::connect(guarded_echo).await.unwrap();
                let request = format!(
                    "\r\nGET {path} HTTP/1.1\r\nHost: guarded\r\n\
                     x-forwarded-client-cert: By=spiffe://forged\r\nConnection: close\r\n\r\n"
                );
                let _ = tcp.write_all(request.as_bytes()).await;
                let mut buf = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let denied = disguised("/admin");
        assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
        let allowed = disguised("/");
        assert!(allowed.starts_with("HTTP/1.1 502"), "{allowed}");

        // 7. A connection made to the capture port itself (not redirected:
        //    no original destination) is closed unanswered, not served in a
        //    loop back into the proxy.
        let direct = mesh.block_in(&client_pod, async {
            let mut tcp = TcpStream::connect(("127.0.0.1", 15001)).await.unwrap();
            let _ = tcp
                .write_all(b"GET / HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
                .await
                .map(|_| buf)
        });
        assert_eq!(
            direct.as_deref(),
            Ok(&b""[..]),
            "served a direct connection"
        );
    }
    // Everything the harness made is gone, and the machine's own links are
    // as they were.
    let left = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap()
        .stdout;
    let me = format!("{prefix}-");
    assert!(
        !String::from_utf8_lossy(&left).contains(&me),
        "namespaces left: {}",
        String::from_utf8_lossy(&left)
    );
    assert_eq!(
        Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
        host_links_before
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}

/// Sends `ping` over TCP and reads the echo (`None`: closed or timed out).
async fn echo_once(addr: SocketAddr) -> Option<Vec<u8>> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    tcp.write_all(b"ping").await.ok()?;
    let mut buf = vec![0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf)
}

/// `iptables-save -t nat` without its comments and counters.
fn nat_table(mesh: &Mesh, pod: &Pod) -> String {
    let out = mesh.exec(pod, &["iptables-save", "-t", "nat"]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l).to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn iptables_install_is_idempotent_and_cleanup_restores_the_nat_table() {
    if skip() {
        return;
    }
    let mut mesh = Mesh::new().unwrap();
    let pod = mesh.add_pod("rules", 20, &[]).unwrap();
    // Something of the pod's own, which cleanup must leave alone.
    let own = mesh
        .exec(
            &pod,
            &[
                "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "25", "-j",
                "RETURN",
            ],
        )
        .unwrap();
    assert!(own.status.success());
    let before = nat_table(&mesh, &pod);
    let proxy = env!("CARGO_BIN_EXE_mesh-proxy");

    let dry = mesh.exec(&pod, &[proxy, "iptables", "--dry-run"]).unwrap();
    assert!(String::from_utf8_lossy(&dry.stdout).contains("--to-ports 15001"));
    assert_eq!(
        nat_table(&mesh, &pod),
        before,
        "--dry-run changed the table"
    );

    for _ in 0..2 {
        let out = mesh
            .exec(
                &pod,
                &[
                    proxy,
                    "iptables",
                    "--exclude-inbound-ports",
                    "22,8443",
                    "--exclude-outbound-ports",
                    "5432",
                ],
            )
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let installed = nat_table(&mesh, &pod);
    assert_eq!(
        installed.matches("-A OUTPUT -p tcp -j MESH_OUTPUT").count(),
        1,
        "installing twice must not add the jump twice:\n{installed}"
    );
    assert!(installed.contains("-A MESH_INBOUND -p tcp -m tcp --dport 8443 -j RETURN"));
    assert!(installed.contains("--uid-owner 1337"));

    let out = mesh.exec(&pod, &[proxy, "iptables", "--cleanup"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(nat_table(&mesh, &pod), before);
    // Cleaning up what is not there is harmless too.
    let out = mesh.exec(&pod, &[proxy, "iptables", "--cleanup"]).unwrap();
    assert!(out.status.success());
    assert_eq!(nat_table(&mesh, &pod), before);
}

/// Capture over IPv6 too: `iptables --ipv6` rules, an outbound capture
/// listener on `[::1]`, and an inbound one on `[::]` that also takes IPv4
/// (its v4-mapped connections find their original destination).
#[test]
fn ipv6_and_dual_stack_capture() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let proxy = Path::new(env!("CARGO_BIN_EXE_mesh-proxy"));
    let ca = mesh_tls::DevCa::new("cluster.local").unwrap();
    let mut mesh = Mesh::new().unwrap();
    let client = mesh.add_pod("client6", 30, &[]).unwrap();
    let server = mesh.add_pod("server6", 31, &[]).unwrap();
    let web = App::default();
    let a = web.clone();
    mesh.serve_in(&server, move || serve_app("web", a, 9080));
    mesh.serve_in(&server, || serve_echo(7000));
    let config = format!(
        r#"{head}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web]
  addresses: ["fd99::200", 10.99.0.202]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: "{v6}"}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web4}}
spec:
  hosts: [web4]
  addresses: [10.99.0.203]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {v4}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo6}}
spec:
  hosts: [echo6]
  addresses: ["fd99::201"]
  ports: [{{number: 7000, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: "{v6}"}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: all}}
spec: {{host: web, trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web4}}
spec: {{host: web4, trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo6}}
spec: {{host: echo6, trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}}}
"#,
        head = capture_sidecar(true),
        v6 = server.ip6,
        v4 = server.ip,
    );
    let client_sidecar = start_sidecar(
        &mesh,
        &client,
        proxy,
        dir.path(),
        &ca,
        "client",
        &config,
        &[],
    );
    let server_sidecar = start_sidecar(&mesh, &server, proxy, dir.path(), &ca, "web", &config, &[]);

    let (over_v6, over_v4, echo) = mesh.block_in(&client, async {
        let c = Client::new();
        let v6 = c
            .try_get("[fd99::200]:9080".parse().unwrap(), "web:9080", "/")
            .await;
        let v4 = c
            .try_get("10.99.0.203:9080".parse().unwrap(), "web4:9080", "/")
            .await;
        let echo = echo_once("[fd99::201]:7000".parse().unwrap()).await;
        (v6, v4, echo)
    });
    let stderr = format!(
        "client sidecar:\n{}\nserver sidecar:\n{}",
        std::fs::read_to_string(&client_sidecar.stderr).unwrap_or_default(),
        std::fs::read_to_string(&server_sidecar.stderr).unwrap_or_default()
    );
    assert_eq!(over_v6, Ok((StatusCode::OK, "web".to_owned())), "{stderr}");
    // IPv4 to the dual-stack inbound listener.
    assert_eq!(over_v4, Ok((StatusCode::OK, "web".to_owned())), "{stderr}");
    assert_eq!(echo.as_deref(), Some(&b"ping"[..]));
    assert_eq!(web.hits.load(Ordering::SeqCst), 2);
}
