//! Request framing at the outbound listener of the real `mesh-proxy` binary:
//! raw bytes over TCP (a client library would clean them up), a real hyper
//! backend behind the proxy counting what reaches it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{
    ProxyProc, Recorder, raw_exchange, read_until_closed, service_at, sidecar, statuses,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// One request as the backend read it, body included.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Received {
    method: String,
    path: String,
    body: String,
}

/// What reached `backend`, in order.
fn received(backend: &Recorder) -> Vec<Received> {
    backend
        .requests()
        .into_iter()
        .map(|s| Received {
            method: s.method,
            path: s.path,
            body: String::from_utf8_lossy(&s.body).into_owned(),
        })
        .collect()
}

/// A proxy with service `web` on a recording backend (which reads each
/// body to its end before it answers).
async fn setup() -> (Recorder, ProxyProc) {
    let backend = Recorder::start().await;
    let proxy = ProxyProc::start(&format!(
        "{}{}",
        sidecar(),
        service_at("web", &[(backend.addr, "v1")])
    ));
    (backend, proxy)
}

/// What the proxy answered to `request`, and whether it then closed the
/// connection (rather than leaving it open for 2 s).
async fn exchange(proxy: &ProxyProc, request: &[u8]) -> (String, bool) {
    raw_exchange(proxy.outbound(), request).await
}

/// Asserts that `request` is refused with `status`, the connection closed,
/// and nothing reached the backend; then that a good request on a new
/// connection does reach it (so the refusal was the check, not a dead path).
async fn assert_refused(request: &[u8], status: u16) {
    let (backend, proxy) = setup().await;
    let (raw, closed) = exchange(&proxy, request).await;
    assert_eq!(statuses(&raw), [status], "{raw}");
    assert!(closed, "the connection stays open after {status}");
    assert_eq!(backend.hits(), 0, "the refused request reached the backend");
    let (raw, _) = exchange(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert_eq!(backend.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_400_and_close_in_either_order() {
    // hyper alone drops the Content-Length, forwards the body as chunked.
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    )
    .await;
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_differing_content_lengths_are_400() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_a_header_value_is_400() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: web\r\nX-A: a\0b\r\n\r\n", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_cr_in_a_header_is_400() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: web\r\nX-A: a\rb\r\n\r\n", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_60_kib_are_431_and_just_under_pass() {
    let head = |kib: usize| {
        let mut h = b"GET / HTTP/1.1\r\nHost: web\r\n".to_vec();
        for i in 0..kib {
            // 1024 bytes per field line.
            h.extend_from_slice(format!("x-f{i:04}: {}\r\n", "a".repeat(1013)).as_bytes());
        }
        h.extend_from_slice(b"\r\n");
        h
    };
    // hyper alone (max_buf_size 60 KiB) forwards this when it arrives at once.
    assert_refused(&head(61), 431).await;

    let (backend, proxy) = setup().await;
    let (raw, _) = exchange(&proxy, &head(59)).await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert_eq!(backend.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_chunked_with_trailers_and_sized_requests_both_reach_the_backend() {
    let (backend, proxy) = setup().await;
    let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    tcp.write_all(
        b"POST /one HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-checksum: 1\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: web\r\nContent-Length: 4\r\n\r\nbody",
    )
    .await
    .unwrap();
    let (raw, closed) = read_until_closed(&mut tcp, Duration::from_secs(2)).await;
    assert_eq!(statuses(&raw), [200, 200], "{raw}");
    assert!(!closed, "a keep-alive connection was closed");
    // (The proxy does not forward request trailers upstream; that the
    // second request parsed proves they were followed to their end.)
    let post = |path: &str, body: &str| Received {
        method: "POST".into(),
        path: path.into(),
        body: body.into(),
    };
    assert_eq!(
        received(&backend),
        [post("/one", "hello world"), post("/two", "body")]
    );

    // The same connection still takes requests.
    tcp.write_all(b"GET /three HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let (raw, _) = read_until_closed(&mut tcp, Duration::from_secs(2)).await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert_eq!(backend.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_after_a_good_one_is_answered_in_order() {
    let (backend, proxy) = setup().await;
    let (raw, closed) = exchange(
        &proxy,
        b"GET /good HTTP/1.1\r\nHost: web\r\n\r\n\
          POST /bad HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
          GET /never HTTP/1.1\r\nHost: web\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [200, 400], "{raw}");
    assert!(closed);
    let paths: Vec<_> = received(&backend).into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/good"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_split_into_single_bytes_still_work() {
    let (backend, proxy) = setup().await;
    let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    for b in
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    {
        tcp.write_all(std::slice::from_ref(b)).await.unwrap();
        tcp.flush().await.unwrap();
    }
    let (raw, _) = read_until_closed(&mut tcp, Duration::from_secs(2)).await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert_eq!(received(&backend)[0].body, "abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_still_works() {
    let (backend, proxy) = setup().await;
    let tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..2 {
        let req = http::Request::builder()
            .uri("http://web/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = send.send_request(req).await.unwrap();
        assert_eq!(res.version(), http::Version::HTTP_2);
        assert_eq!(res.status(), 200);
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    }
    assert_eq!(backend.hits(), 2);
}
