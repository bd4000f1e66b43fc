//! How the outbound listener picks a service: Host forms, absolute-form
//! requests (HTTP_PROXY), ports, unknown hosts and unmatched routes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Backend, Behavior, Client, ProxyProc, service, sidecar};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_ports_absolute_form_and_misses() {
    let web = Backend::start("web", Behavior::Ok).await;
    let yaml = format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - match: [{{uri: {{prefix: /api}}}}]\n    route: [{{destination: {{host: web}}}}]\n",
        sidecar(),
        service("web", &[(&web, "v1")])
    );
    let proxy = ProxyProc::start(&yaml);
    let client = Client::new();
    let out = proxy.outbound();

    // The full name, the short name, and host:port with the service port.
    for host in [
        "web.default.svc.cluster.local",
        "web",
        "web:80",
        "WEB.default.svc.cluster.local:80",
    ] {
        let (status, _, body) = client.get(out, host, "/api/x", &[]).await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "web"), "{host}");
    }
    // A port the service does not have, and a host no config names: 502 NR.
    for host in ["web:8080", "unknown.example.com"] {
        let (status, headers, _) = client.get(out, host, "/api/x", &[]).await;
        assert_eq!(status, 502, "{host}");
        assert_eq!(headers["x-mesh-response-flags"], "NR");
    }
    // The VirtualService has no route for this path: 404 NR.
    let (status, headers, _) = client.get(out, "web", "/other", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(headers["x-mesh-response-flags"], "NR");

    // Absolute-form, as clients using HTTP_PROXY send it.
    let res = raw(
        out,
        "GET http://web/api/proxied HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.ends_with("web"), "{res}");
    let hits_before = web.hits();
    let res = raw(out, "GET http://elsewhere.example/ HTTP/1.1\r\nhost: elsewhere.example\r\nconnection: close\r\n\r\n").await;
    assert!(
        res.starts_with("HTTP/1.1 502"),
        "never forwarded elsewhere: {res}"
    );
    assert_eq!(web.hits(), hits_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_header_limit_is_configurable() {
    let web = Backend::start("web", Behavior::Ok).await;
    let yaml = format!("{}{}", sidecar(), service("web", &[(&web, "v1")]));
    let proxy = ProxyProc::start_with(&yaml, &["--max-request-headers-kb", "8"]);
    let request = |kb: usize| {
        format!(
            "GET / HTTP/1.1\r\nhost: web\r\nx-big: {}\r\nconnection: close\r\n\r\n",
            "a".repeat(kb * 1024)
        )
    };
    let small = raw(proxy.outbound(), &request(4)).await;
    assert!(small.starts_with("HTTP/1.1 200"), "{small}");
    let big = raw(proxy.outbound(), &request(10)).await;
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
    assert_eq!(web.hits(), 1);
}
