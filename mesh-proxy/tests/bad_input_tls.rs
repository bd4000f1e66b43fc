//! Bad input on a STRICT mTLS port of the real binary (the bad-input
//! catalog, perf-reliability.md §5.5 T-07 and §5.2 S-05): plaintext, garbage,
//! an oversized ClientHello record and a stalled handshake each lose only
//! their own connection, promptly; an innocent mTLS client (a client sidecar)
//! is served before and after.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{Client, ProxyProc, Recorder, issue_identities, read_until_closed, sidecar};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";

fn server_yaml(app: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: reviews}}\nspec:\n  ingress:\n  - port: {{number: 0, name: http}}\n    defaultEndpoint: {app}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default}}\nspec: {{mtls: {{mode: STRICT}}}}\n"
    )
}

fn client_yaml(server: SocketAddr) -> String {
    format!(
        "{}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: reviews}}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n    ports: {{http: {}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews}}\nspec:\n  host: reviews\n  trafficPolicy:\n    tls: {{mode: ISTIO_MUTUAL, subjectAltNames: [{REVIEWS}]}}\n",
        sidecar(),
        server.port()
    )
}

/// A TLS handshake record header claiming `len` bytes.
fn handshake_record(len: u16) -> Vec<u8> {
    let mut r = vec![0x16, 0x03, 0x01];
    r.extend_from_slice(&len.to_be_bytes());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_an_mtls_port_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    issue_identities(dir.path(), &[(WEB, "web"), (REVIEWS, "reviews")]);
    let app = Recorder::start().await;
    let server = ProxyProc::start_with(
        &server_yaml(app.addr),
        &[
            "--identity",
            dir.path().join("reviews").to_str().unwrap(),
            "--header-read-timeout",
            "1s",
        ],
    );
    let client = ProxyProc::start_with(
        &client_yaml(server.inbound()),
        &["--identity", dir.path().join("web").to_str().unwrap()],
    );
    let innocent = || async {
        let (status, _, body) = Client::new()
            .get(client.outbound(), "reviews", "/innocent", &[])
            .await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    };
    innocent().await;

    let mut oversized = handshake_record(0xffff);
    oversized.extend(std::iter::repeat_n(0x41, 0xffff));
    let mut junk_hello = handshake_record(200);
    // A ClientHello handshake header, then junk.
    junk_hello.extend_from_slice(&[0x01, 0x00, 0x00, 0xc4, 0x03, 0x03]);
    junk_hello.extend(std::iter::repeat_n(0xff, 194));
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let cases: [(&str, Vec<u8>); 5] = [
        (
            "plaintext HTTP",
            b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n".to_vec(),
        ),
        ("4 KiB of garbage", garbage),
        ("a 64 KiB handshake record", oversized),
        ("a ClientHello full of junk", junk_hello),
        // An SSLv2-style hello: rustls speaks TLS 1.2 and 1.3 only.
        (
            "an SSLv2 hello",
            vec![
                0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
            ],
        ),
    ];
    for (what, bytes) in &cases {
        let started = Instant::now();
        let mut tcp = TcpStream::connect(server.inbound()).await.unwrap();
        let _ = tcp.write_all(bytes).await;
        let (got, closed) = read_until_closed(&mut tcp, Duration::from_secs(3)).await;
        assert!(closed, "{what}: the connection stays open");
        assert!(!got.contains("HTTP/1.1"), "{what}: an HTTP answer: {got}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            started.elapsed()
        );
    }

    // A handshake that starts and stalls, and one that trickles a byte
    // every 300 ms: both closed by the handshake timeout (1 s here).
    let started = Instant::now();
    let mut stalled = TcpStream::connect(server.inbound()).await.unwrap();
    stalled.write_all(&handshake_record(512)).await.unwrap();
    let trickle = {
        let addr = server.inbound();
        tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let mut hello = handshake_record(300);
            hello.extend(std::iter::repeat_n(0x01, 300));
            for b in hello {
                if tcp.write_all(&[b]).await.is_err() {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            panic!("a trickled handshake was allowed to go on for 90 s");
        })
    };
    innocent().await;
    let (_, closed) = read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(closed, "a stalled handshake stays open");
    assert!(started.elapsed() < Duration::from_secs(3));
    let closed_at = tokio::time::timeout(Duration::from_secs(5), trickle)
        .await
        .expect("a trickled handshake stays open")
        .unwrap();
    assert!(closed_at - started < Duration::from_secs(4));

    innocent().await;
    assert_eq!(
        app.paths(),
        ["/innocent"; 3],
        "only innocent requests reached the app"
    );
}
