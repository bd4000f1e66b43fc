//! Two sidecars and an app over mutual TLS, with identities from
//! `mesh-proxy certs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::{Client, ProxyProc, sidecar};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";

/// The two identities, written by `mesh-proxy certs` (the support helper),
/// with the files `certs` promises.
fn identities(dir: &Path) {
    support::issue_identities(dir, &[(WEB, "web"), (REVIEWS, "reviews")]);
    let ca = dir.join("ca");
    assert!(ca.join("ca.pem").is_file() && ca.join("ca-key.pem").is_file());
    for name in ["web", "reviews"] {
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            assert!(dir.join(name).join(f).is_file(), "{name}/{f}");
        }
    }
}

/// An app that answers with the `x-forwarded-client-cert` it received.
async fn app() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let h = h.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let xfcc = req
                        .headers()
                        .get("x-forwarded-client-cert")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(xfcc)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

fn server_yaml(app: std::net::SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: reviews}}\nspec:\n  ingress:\n  - port: {{number: 0, name: http}}\n    defaultEndpoint: {app}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default}}\nspec: {{mtls: {{mode: STRICT}}}}\n"
    )
}

fn client_yaml(server: std::net::SocketAddr, sans: &str) -> String {
    format!(
        "{}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: reviews}}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n    ports: {{http: {}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews}}\nspec:\n  host: reviews\n  trafficPolicy:\n    tls:\n      mode: ISTIO_MUTUAL\n      subjectAltNames: [{sans}]\n",
        sidecar(),
        server.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_talk_mtls_and_the_app_sees_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    identities(dir.path());
    let (app_addr, hits) = app().await;
    let reviews_id = dir.path().join("reviews");
    let server = ProxyProc::start_with(
        &server_yaml(app_addr),
        &["--identity", reviews_id.to_str().unwrap()],
    );
    let web_id = dir.path().join("web");
    let client = ProxyProc::start_with(
        &client_yaml(server.inbound(), REVIEWS),
        &["--identity", web_id.to_str().unwrap()],
    );

    let http = Client::new();
    let (status, _, xfcc) = http
        .get(
            client.outbound(),
            "reviews",
            "/",
            &[("x-forwarded-client-cert", "By=forged;URI=spiffe://evil")],
        )
        .await;
    assert_eq!(status, 200, "{xfcc}");
    let parts: Vec<&str> = xfcc.split(';').collect();
    assert_eq!(parts[0], format!("By={REVIEWS}"), "{xfcc}");
    let hash = parts[1].strip_prefix("Hash=").unwrap();
    assert_eq!(hash.len(), 64);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        parts[2],
        format!("URI={WEB}"),
        "the forged header was replaced: {xfcc}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Both reporters say the traffic was mutual TLS.
    for proxy in [&server, &client] {
        // Counted when the response body ends, maybe after the client has it.
        assert_eq!(proxy.access_log_n(1).await.len(), 1);
        let metrics = proxy.admin_get("/stats/prometheus").await.1;
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("istio_requests_total{")
                    && l.contains("connection_security_policy=\"mutual_tls\"")),
            "{metrics}"
        );
    }

    // A plaintext client on the STRICT port gets nothing through.
    let mut tcp = tokio::net::TcpStream::connect(server.inbound())
        .await
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        buf.is_empty(),
        "no response to plaintext: {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1, "no request reached the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_outside_subject_alt_names_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    identities(dir.path());
    let (app_addr, hits) = app().await;
    let server = ProxyProc::start_with(
        &server_yaml(app_addr),
        &["--identity", dir.path().join("reviews").to_str().unwrap()],
    );
    let client = ProxyProc::start_with(
        &client_yaml(
            server.inbound(),
            "spiffe://cluster.local/ns/default/sa/ratings",
        ),
        &["--identity", dir.path().join("web").to_str().unwrap()],
    );
    let (status, headers, _) = Client::new()
        .get(client.outbound(), "reviews", "/", &[])
        .await;
    assert_eq!(status, 503);
    assert_eq!(headers["x-mesh-response-flags"], "UF");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[test]
fn a_config_needing_an_identity_without_one_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh.yaml");
    std::fs::write(&path, client_yaml("127.0.0.1:1".parse().unwrap(), REVIEWS)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mesh-proxy"))
        .args(["run", "--admin", "127.0.0.1:0", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ISTIO_MUTUAL needs the proxy's identity"),
        "{stderr}"
    );
    assert!(stderr.contains("--identity"), "{stderr}");
}
