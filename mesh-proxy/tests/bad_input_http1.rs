//! Bad HTTP/1.1 input at the real binary's listeners (the bad-input catalog,
//! perf-reliability.md §5.1, §5.2 and §5.4 rows not in framing.rs): raw bytes
//! over TCP, a recording backend behind the proxy asserting what reached it,
//! and an innocent client afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{
    ProxyProc, Recorder, raw_exchange, read_until_closed, rss_kib, service_at, sidecar, statuses,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GOOD: &[u8] = b"GET /innocent HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n";

/// A proxy with service `web` on a recording backend.
async fn setup(extra: &[&str], route_extra: &str) -> (Recorder, ProxyProc) {
    let backend = Recorder::start().await;
    let yaml = format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n{route_extra}",
        sidecar(),
        service_at("web", &[(backend.addr, "v1")])
    );
    let proxy = ProxyProc::start_with(&yaml, extra);
    (backend, proxy)
}

/// The innocent client still gets through, and is the only new request.
async fn innocent_ok(proxy: &ProxyProc, backend: &Recorder) {
    let before = backend.hits();
    let (raw, _) = raw_exchange(proxy.outbound(), GOOD).await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert_eq!(backend.hits(), before + 1);
    assert_eq!(backend.paths().last().unwrap(), "/innocent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_transfer_encodings_are_400_and_never_forwarded() {
    let (backend, proxy) = setup(&[], "").await;
    for te in [
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding : chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        "Transfer-Encoding:\r\n",
    ] {
        let req = format!("POST / HTTP/1.1\r\nHost: web\r\n{te}\r\n5\r\nhello\r\n0\r\n\r\n");
        let (raw, closed) = raw_exchange(proxy.outbound(), req.as_bytes()).await;
        assert_eq!(statuses(&raw), [400], "{te:?}: {raw}");
        assert!(closed, "{te:?}");
    }
    // HTTP/1.0 has no chunked coding (RFC 9112 §6.1).
    let (raw, closed) = raw_exchange(
        proxy.outbound(),
        b"POST / HTTP/1.0\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        statuses(&raw).is_empty() || raw.starts_with("HTTP/1.1 400"),
        "{raw}"
    );
    assert!(raw.contains(" 400 "), "{raw}");
    assert!(closed);
    assert_eq!(backend.hits(), 0, "{:?}", backend.paths());
    innocent_ok(&proxy, &backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunk_sizes_never_reach_the_backend_as_a_request() {
    let (backend, proxy) = setup(&[], "").await;
    let huge_ext = format!("5;a={}\r\nhello\r\n0\r\n\r\n", "x".repeat(1 << 20));
    for body in [
        "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "5\nhello\n0\n\n",
        huge_ext.as_str(),
    ] {
        let started = Instant::now();
        let req = format!(
            "POST /chunked HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let (raw, closed) = raw_exchange(proxy.outbound(), req.as_bytes()).await;
        assert!(closed, "{body:.40?}: the connection stays open: {raw}");
        assert!(started.elapsed() < Duration::from_secs(2), "{body:.40?}");
        // Either refused before the backend answered, or the request was
        // aborted: never a complete request with this body.
        assert!(
            statuses(&raw).iter().all(|s| *s >= 400),
            "{body:.40?}: {raw}"
        );
        assert!(statuses(&raw).len() <= 1, "{body:.40?}: {raw}");
    }
    assert_eq!(backend.hits(), 0, "{:?}", backend.paths());
    innocent_ok(&proxy, &backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_lines_and_headers_are_refused_quickly_in_bounded_memory() {
    let (backend, proxy) = setup(&[], "").await;
    let many = |n: usize, field: &str| {
        let mut h = b"GET / HTTP/1.1\r\nHost: web\r\n".to_vec();
        for i in 0..n {
            h.extend_from_slice(format!("{field}{i}: a\r\n").as_bytes());
        }
        h.extend_from_slice(b"\r\n");
        h
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "64 KiB request target",
            format!(
                "GET /{} HTTP/1.1\r\nHost: web\r\n\r\n",
                "a".repeat(64 << 10)
            )
            .into_bytes(),
        ),
        (
            "1 MiB request target",
            format!("GET /{} HTTP/1.1\r\nHost: web\r\n\r\n", "a".repeat(1 << 20)).into_bytes(),
        ),
        (
            "one 64 KiB header",
            format!(
                "GET / HTTP/1.1\r\nHost: web\r\nX-Big: {}\r\n\r\n",
                "a".repeat(64 << 10)
            )
            .into_bytes(),
        ),
        ("101 headers", many(101, "x-h")),
        ("10,000 headers", many(10_000, "x")),
        (
            "1 MiB method",
            format!("{} / HTTP/1.1\r\nHost: web\r\n\r\n", "G".repeat(1 << 20)).into_bytes(),
        ),
    ];
    for (what, req) in &cases {
        let started = Instant::now();
        let (raw, closed) = raw_exchange(proxy.outbound(), req).await;
        let s = statuses(&raw);
        assert!(s == [431] || s == [400] || s == [414], "{what}: {raw:.200}");
        assert!(closed, "{what}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(backend.hits(), 0);

    // 32 clients at once, each sending 1 MiB of head: the proxy holds at
    // most its 60 KiB limit per connection, so its memory grows by far less
    // than what was sent (32 MiB).
    let before = rss_kib(proxy.pid());
    let big = std::sync::Arc::new(cases[1].1.clone());
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let big = big.clone();
            let addr = proxy.outbound();
            tokio::spawn(async move { raw_exchange(addr, &big).await })
        })
        .collect();
    for c in clients {
        let (raw, _) = c.await.unwrap();
        assert!(
            statuses(&raw) == [431] || statuses(&raw) == [400],
            "{raw:.100}"
        );
    }
    let grown = rss_kib(proxy.pid()).saturating_sub(before);
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB");
    innocent_ok(&proxy, &backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_connection_named_headers_are_not_forwarded() {
    let (backend, proxy) = setup(&[], "").await;
    let (raw, _) = raw_exchange(
        proxy.outbound(),
        b"GET /hop HTTP/1.1\r\nHost: web\r\n\
          Connection: keep-alive, X-Secret, x-request-id, x-forwarded-client-cert\r\n\
          Connection: X-Other\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers, gzip\r\n\
          Upgrade: foo/1\r\nProxy-Authorization: Basic eDp5\r\nTrailer: x-t\r\n\
          X-Secret: 1\r\nX-Other: 2\r\nX-Kept: 3\r\n\r\n\
          GET /innocent HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [200, 200], "{raw}");
    let seen = backend.requests();
    assert_eq!(seen.len(), 2);
    let h = &seen[0].headers;
    for gone in [
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "proxy-authorization",
        "trailer",
        "x-secret",
        "x-other",
    ] {
        assert!(h.get(gone).is_none(), "{gone} was forwarded: {h:?}");
    }
    assert_eq!(h["te"], "trailers");
    assert_eq!(h["x-kept"], "3");
    // The proxy's own header is added whatever the client's Connection says.
    assert!(h.get("x-request-id").is_some(), "{h:?}");
    assert!(
        h.get_all("connection").iter().all(|v| !v
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("x-secret")),
        "{h:?}"
    );
    assert_eq!(seen[1].path, "/innocent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_heads_are_closed_by_the_header_read_timeout() {
    let (backend, proxy) = setup(&["--header-read-timeout", "1s"], "").await;
    let started = Instant::now();
    // Twenty connections, each trickling a head one byte every 200 ms (it
    // would take ~6 s to finish), and one that sends nothing at all.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let addr = proxy.outbound();
        slow.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            for b in b"GET /slow HTTP/1.1\r\nHost: web\r\nX-Slow: aaaaaaa\r\n\r\n" {
                if tcp.write_all(std::slice::from_ref(b)).await.is_err() {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!("a slow head was allowed to finish");
        }));
    }
    let silent = {
        let addr = proxy.outbound();
        tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let (_, closed) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
            assert!(closed, "a silent connection stays open");
            Instant::now()
        })
    };
    // Meanwhile an innocent client is served.
    innocent_ok(&proxy, &backend).await;
    for s in slow {
        let closed_at = tokio::time::timeout(Duration::from_secs(10), s)
            .await
            .expect("slowloris connection still open")
            .unwrap();
        let after = closed_at - started;
        assert!(after < Duration::from_secs(4), "closed after {after:?}");
    }
    let after = silent.await.unwrap() - started;
    assert!(
        after < Duration::from_secs(4),
        "silent closed after {after:?}"
    );
    assert_eq!(backend.paths(), ["/innocent"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_is_kept_and_a_later_head_is_timed_from_its_first_byte() {
    let (backend, proxy) = setup(&["--header-read-timeout", "1s"], "").await;
    let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    let mut exchange = async |path: &str| {
        let head = format!("GET {path} HTTP/1.1\r\nHost: web\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        let (raw, closed) = read_until_closed(&mut tcp, Duration::from_millis(300)).await;
        assert_eq!(statuses(&raw), [200], "{raw}");
        assert!(!closed, "closed after answering {path}");
    };
    exchange("/one").await;
    // Idle for longer than the head timeout: a keep-alive connection between
    // requests is not a slow head (hyper's own timer closed it here).
    tokio::time::sleep(Duration::from_millis(1600)).await;
    exchange("/two").await;
    // A third head trickles in: timed from its first byte.
    let started = Instant::now();
    let trickled = async {
        for b in b"GET /slow HTTP/1.1\r\nHost: web\r\nX-Slow: aaaaaaa\r\n\r\n" {
            if tcp.write_all(std::slice::from_ref(b)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("a slow head was allowed to finish");
    };
    tokio::time::timeout(Duration::from_secs(8), trickled)
        .await
        .expect("the slow head's connection still open");
    let after = started.elapsed();
    assert!(after < Duration::from_secs(4), "closed after {after:?}");
    assert_eq!(backend.paths(), ["/one", "/two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_cut_by_the_route_timeout_and_the_slot_released() {
    let (backend, proxy) = setup(&[], "    timeout: 1s\n    retries: {attempts: 0}\n").await;
    let started = Instant::now();
    let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    tcp.write_all(b"POST /slow-body HTTP/1.1\r\nHost: web\r\nContent-Length: 1000000\r\n\r\n")
        .await
        .unwrap();
    // One byte every 100 ms (R.U.D.Y.), for 1.5 s.
    let trickle = async {
        while tcp.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), trickle).await;
    let (raw, _) = read_until_closed(&mut tcp, Duration::from_millis(500)).await;
    assert_eq!(statuses(&raw), [504], "{raw}");
    assert!(raw.contains("x-mesh-response-flags: UT"), "{raw}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The backend never got a whole request, and its side was aborted.
    assert_eq!(backend.hits(), 0);
    support::wait_until("the backend saw the body abort", || {
        backend.aborted.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    innocent_ok(&proxy, &backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_xfcc_and_mesh_control_headers_are_stripped_at_inbound() {
    let app = Recorder::start().await;
    let proxy = ProxyProc::start(&format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: app}}\nspec:\n  ingress:\n  - port: {{number: 0, name: http}}\n    defaultEndpoint: {}\n",
        app.addr
    ));
    let (raw, _) = raw_exchange(
        proxy.inbound(),
        b"GET /in HTTP/1.1\r\nHost: app\r\n\
          X-Forwarded-Client-Cert: By=spiffe://cluster.local/ns/default/sa/app;URI=spiffe://cluster.local/ns/kube-system/sa/admin\r\n\
          X-Envoy-Retry-On: 5xx\r\nX-Envoy-Max-Retries: 100\r\nx-envoy-upstream-rq-timeout-ms: 1\r\n\
          X-Mesh-Response-Flags: UH\r\nx-mesh-anything: 1\r\n\
          Connection: close\r\nX-Kept: 1\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    let seen = app.requests();
    let h = &seen[0].headers;
    assert!(h.get("x-forwarded-client-cert").is_none(), "{h:?}");
    assert!(
        !h.keys()
            .any(|k| k.as_str().starts_with("x-envoy-") || k.as_str().starts_with("x-mesh-")),
        "{h:?}"
    );
    assert_eq!(h["x-kept"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_hosts_lowercase_methods_and_unknown_expectations_are_refused() {
    let (backend, proxy) = setup(&[], "").await;
    for (head, status) in [
        ("get / HTTP/1.1\r\nHost: web\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: web\r\nHost: other\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a@web\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: web:99999\r\n", 400),
        ("GET http://a@web/ HTTP/1.1\r\nHost: web\r\n", 400),
        ("GET / HTTP/1.1\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: web\r\nExpect: foo\r\n", 417),
        // Refused by the framing guard or hyper's parser.
        ("GET / HTTP/1.1\r\nHost: web\r\nX A: 1\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: web\r\nX\u{e9}: 1\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: web\r\n: 1\r\n", 400),
        ("GET /a b HTTP/1.1\r\nHost: web\r\n", 400),
        ("GET /a\0b HTTP/1.1\r\nHost: web\r\n", 400),
        ("GET / HTTP/1.2\r\nHost: web\r\n", 400),
        ("GET / HTTP/2.0\r\nHost: web\r\n", 400),
        ("GET /\r\n", 400),
    ] {
        let (raw, _) = raw_exchange(
            proxy.outbound(),
            format!("{head}Connection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(statuses(&raw), [status], "{head:?}: {raw}");
    }
    assert_eq!(backend.hits(), 0, "{:?}", backend.paths());

    // An absolute-form target's authority replaces Host, for routing and
    // for the backend alike.
    let (raw, _) = raw_exchange(
        proxy.outbound(),
        b"GET http://web/abs HTTP/1.1\r\nHost: elsewhere\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert_eq!(backend.requests()[0].headers["host"], "web");

    // Host names match case-insensitively; an unknown one is 502 `NR`.
    let (raw, _) = raw_exchange(
        proxy.outbound(),
        b"GET /upper HTTP/1.1\r\nHost: WEB\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    let (raw, _) = raw_exchange(
        proxy.outbound(),
        b"GET / HTTP/1.1\r\nHost: nowhere\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [502], "{raw}");
    assert!(raw.contains("x-mesh-response-flags: NR"), "{raw}");

    // An h2c upgrade is not forwarded: the request is served over HTTP/1.1.
    let (raw, _) = raw_exchange(
        proxy.outbound(),
        b"GET /h2c HTTP/1.1\r\nHost: web\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    let requests = backend.requests();
    let h2c = requests.last().unwrap();
    assert_eq!(h2c.path, "/h2c");
    let h = &h2c.headers;
    assert!(
        h.get("upgrade").is_none() && h.get("http2-settings").is_none(),
        "{h:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pipelined_requests_are_answered_in_order() {
    let (backend, proxy) = setup(&[], "").await;
    let mut burst = Vec::new();
    for i in 0..1000 {
        burst.extend_from_slice(format!("GET /p{i} HTTP/1.1\r\nHost: web\r\n\r\n").as_bytes());
    }
    burst.extend_from_slice(GOOD);
    let started = Instant::now();
    let (raw, closed) = raw_exchange(proxy.outbound(), &burst).await;
    assert!(closed);
    assert_eq!(statuses(&raw).len(), 1001, "{:.300}", raw);
    assert!(statuses(&raw).iter().all(|&s| s == 200), "{:.300}", raw);
    assert!(started.elapsed() < Duration::from_secs(5));
    let paths = backend.paths();
    let want: Vec<String> = (0..1000)
        .map(|i| format!("/p{i}"))
        .chain(["/innocent".to_owned()])
        .collect();
    assert_eq!(paths, want, "in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_a_body_is_its_own_request() {
    // H1-08: what follows a Content-Length body is the next request, and
    // goes through routing and the rest on its own; it never rides inside
    // the first upstream request.
    let (backend, proxy) = setup(&[], "").await;
    let (raw, _) = raw_exchange(
        proxy.outbound(),
        b"POST /first HTTP/1.1\r\nHost: web\r\nContent-Length: 2\r\n\r\nhi\
          GET /second HTTP/1.1\r\nHost: nowhere\r\nConnection: close\r\n\r\n",
    )
    .await;
    // The second names an unknown host: its own 502 `NR`.
    assert_eq!(statuses(&raw), [200, 502], "{raw}");
    let seen = backend.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].path.as_str(), &seen[0].body[..]),
        ("/first", &b"hi"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // Not after the head timeout (1 s here): an idle connection between
    // requests is not a slow head.
    let (backend, proxy) =
        setup(&["--header-read-timeout", "1s", "--idle-timeout", "3s"], "").await;
    let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    tcp.write_all(b"GET /first HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (raw, closed) = read_until_closed(&mut tcp, Duration::from_secs(6)).await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert!(closed, "an idle connection stays open");
    let idle = started.elapsed();
    assert!(
        idle > Duration::from_millis(2800) && idle < Duration::from_millis(5000),
        "closed after {idle:?}"
    );
    assert_eq!(backend.paths(), ["/first"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_listener_limit_are_closed_at_once() {
    let (backend, proxy) = setup(&["--max-connections", "20"], "").await;
    let rss_before = rss_kib(proxy.pid());
    // Twenty idle connections hold every slot (each is served: a request
    // and its answer show the proxy has it).
    let mut idle = Vec::new();
    for i in 0..20 {
        let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
        tcp.write_all(format!("GET /idle{i} HTTP/1.1\r\nHost: web\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 1024];
        while !raw.ends_with(b"\r\n\r\nok") {
            let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&buf[..n]);
        }
        idle.push(tcp);
    }
    // One more is closed without an answer.
    let started = Instant::now();
    let (raw, closed) = raw_exchange(proxy.outbound(), GOOD).await;
    assert!(closed && raw.is_empty(), "{raw}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        rss_kib(proxy.pid()).saturating_sub(rss_before) < 8 * 1024,
        "20 idle connections cost more than 8 MiB"
    );
    // A slot freed is a slot taken.
    drop(idle.pop());
    support::wait_until_async("a freed slot serves again", || async {
        let (raw, _) = raw_exchange(proxy.outbound(), GOOD).await;
        statuses(&raw) == [200]
    })
    .await;
    assert_eq!(backend.paths().last().unwrap(), "/innocent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_make_the_proxy_buffer() {
    // S-03: a 64 MiB response to a client that reads nothing. The proxy
    // reads from the upstream only as fast as the client takes it, so its
    // memory stays flat and the upstream is back-pressured.
    static BIG: std::sync::LazyLock<&'static [u8]> = std::sync::LazyLock::new(|| {
        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 64 << 20).into_bytes();
        r.resize(r.len() + (64 << 20), b'x');
        Box::leak(r.into_boxed_slice())
    });
    let upstream = support::RawBackend::start(vec![], support::Reply::Send(&BIG)).await;
    let proxy = ProxyProc::start(&format!(
        "{}{}",
        sidecar(),
        service_at("web", &[(upstream.addr, "v1")])
    ));
    let rss_before = rss_kib(proxy.pid());
    let mut stuck = Vec::new();
    for _ in 0..4 {
        let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
        tcp.write_all(b"GET /big HTTP/1.1\r\nHost: web\r\n\r\n")
            .await
            .unwrap();
        stuck.push(tcp);
    }
    support::wait_until("the upstream got the four requests", || {
        upstream.heads() == 4
    })
    .await;
    // Give the proxy time to read all it would (it would take 256 MiB).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let grown = rss_kib(proxy.pid()).saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "RSS grew by {grown} KiB for 4 stuck clients"
    );
    // Another client is served meanwhile by the same listener (a small
    // answer from the same upstream would be 64 MiB too: an unknown host
    // gets the proxy's own answer at once).
    let (raw, _) = raw_exchange(
        proxy.outbound(),
        b"GET / HTTP/1.1\r\nHost: nowhere\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [502], "{raw}");
    drop(stuck);
}
