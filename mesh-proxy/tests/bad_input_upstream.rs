//! Untrusted upstream responses (the bad-input catalog, perf-reliability.md
//! §5.6): a raw upstream answers with broken framing; the client gets a clean
//! error (or, once headers are out, a visibly cut response) and the upstream
//! connection is never used again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{ProxyProc, RawBackend, Reply, raw_exchange, service_at, sidecar, statuses};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A proxy in front of `backend` with no retries (each case is one attempt).
fn proxy_for(backend: &RawBackend) -> ProxyProc {
    ProxyProc::start(&format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n    retries: {{attempts: 0}}\n    timeout: 2s\n",
        sidecar(),
        service_at("web", &[(backend.addr, "v1")])
    ))
}

/// One GET through the proxy: the raw response and whether it was closed.
async fn get(proxy: &ProxyProc) -> (String, bool) {
    raw_exchange(
        proxy.outbound(),
        b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    )
    .await
}

/// `bad` is answered with `status` and `flag`; the next request is served on
/// a new upstream connection.
async fn refused_and_not_reused(bad: &'static [u8], status: u16, flag: &str) {
    let backend = RawBackend::start(vec![Reply::Send(bad)], Reply::Send(OK)).await;
    let proxy = proxy_for(&backend);
    let started = Instant::now();
    let (raw, _) = get(&proxy).await;
    assert_eq!(statuses(&raw), [status], "{bad:?}: {raw}");
    assert!(
        raw.contains(&format!("x-mesh-response-flags: {flag}")),
        "{raw}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let (raw, _) = get(&proxy).await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert!(raw.ends_with("ok"), "{raw}");
    assert_eq!(backend.heads(), 2);
    assert_eq!(
        backend.connections(),
        2,
        "the connection of a bad response was reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_from_upstream_is_502() {
    refused_and_not_reused(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        502,
        "UPE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_content_lengths_from_upstream_are_502() {
    refused_and_not_reused(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
        502,
        "UPE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_status_lines_and_huge_headers_from_upstream_are_502() {
    refused_and_not_reused(b"HTTP/1.1 999999 Whatever\r\n\r\n", 502, "UPE").await;
    refused_and_not_reused(b"NOT HTTP AT ALL\r\n\r\n", 502, "UPE").await;
    static HUGE: std::sync::LazyLock<&'static [u8]> = std::sync::LazyLock::new(|| {
        let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
        r.extend_from_slice(format!("X-Big: {}\r\n", "a".repeat(1 << 20)).as_bytes());
        r.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        Box::leak(r.into_boxed_slice())
    });
    refused_and_not_reused(&HUGE, 502, "UPE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_closing_before_answering_is_503_uc() {
    let backend = RawBackend::start(vec![Reply::Close], Reply::Send(OK)).await;
    let proxy = proxy_for(&backend);
    let (raw, _) = get(&proxy).await;
    assert_eq!(statuses(&raw), [503], "{raw}");
    assert!(raw.contains("x-mesh-response-flags: UC"), "{raw}");
    let (raw, _) = get(&proxy).await;
    assert_eq!(statuses(&raw), [200], "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_body_is_cut_for_the_client_and_the_connection_dropped() {
    // Headers promise 100 bytes; 5 come, then the upstream closes.
    let backend = RawBackend::start(
        vec![Reply::SendAndClose(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello",
        )],
        Reply::Send(OK),
    )
    .await;
    let proxy = proxy_for(&backend);
    let (raw, closed) = raw_exchange(
        proxy.outbound(),
        // Keep-alive: the proxy must close it to show the body was cut.
        b"GET / HTTP/1.1\r\nHost: web\r\n\r\n",
    )
    .await;
    // The head is forwarded, then the body is cut. When the cut arrives with
    // the first bytes, hyper drops the connection before flushing the head:
    // the client then sees nothing at all, which is as safe.
    let codes = statuses(&raw);
    assert!(codes.is_empty() || codes == [200], "{raw}");
    if let Some((_, body)) = raw.split_once("\r\n\r\n") {
        assert!(body.len() < 100, "a complete-looking body: {raw}");
    }
    assert!(closed, "the client connection stays open after a cut body");

    // Extra bytes after a body: the connection is not reused either.
    let backend = RawBackend::start(
        vec![Reply::Send(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
        )],
        Reply::Send(OK),
    )
    .await;
    let proxy = proxy_for(&backend);
    for _ in 0..3 {
        let (raw, _) = get(&proxy).await;
        assert_eq!(statuses(&raw), [200], "{raw}");
        assert!(raw.ends_with("\r\n\r\nok"), "{raw}");
        assert!(!raw.contains("forged"), "{raw}");
    }
    assert!(
        backend.connections() >= 2,
        "the connection with extra bytes was reused"
    );
}
