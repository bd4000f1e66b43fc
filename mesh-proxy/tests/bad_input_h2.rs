//! HTTP/2 floods at the real binary's outbound listener (the bad-input
//! catalog, perf-reliability.md §5.3): frames written by hand (the h2
//! crate's client refuses to send most of them) over a prior-knowledge
//! connection. Each flood is bounded in the proxy's CPU time and memory,
//! ends with GOAWAY or a close where the protocol calls for it, and an
//! innocent client is served afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{
    ProxyProc, Recorder, cpu_time, raw_exchange, rss_kib, service_at, sidecar, statuses,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET http://web/`: `:method GET`, `:scheme http`, `:path /`
/// from the static table, `:authority web` as a literal.
const GET_BLOCK: &[u8] = &[0x82, 0x86, 0x84, 0x41, 0x03, b'w', b'e', b'b'];

/// The preface and an empty SETTINGS frame.
fn start() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// What the server sent: each frame's type, flags, stream and payload,
/// read until it closes or goes quiet for `quiet`.
async fn frames(tcp: &mut TcpStream, quiet: Duration) -> (Vec<(u8, u8, u32, Vec<u8>)>, bool) {
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let closed = loop {
        match tokio::time::timeout(quiet, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let mut out = Vec::new();
    let mut at = 0;
    while raw.len() >= at + 9 {
        let len = u32::from_be_bytes([0, raw[at], raw[at + 1], raw[at + 2]]) as usize;
        if raw.len() < at + 9 + len {
            break;
        }
        let stream = u32::from_be_bytes(raw[at + 5..at + 9].try_into().unwrap()) & 0x7fff_ffff;
        out.push((
            raw[at + 3],
            raw[at + 4],
            stream,
            raw[at + 9..at + 9 + len].to_vec(),
        ));
        at += 9 + len;
    }
    (out, closed)
}

/// The error code of the first GOAWAY among `frames`.
fn goaway(frames: &[(u8, u8, u32, Vec<u8>)]) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.0 == GOAWAY)
        .map(|f| u32::from_be_bytes(f.3[4..8].try_into().unwrap()))
}

async fn setup() -> (Recorder, ProxyProc) {
    let backend = Recorder::start().await;
    let proxy = ProxyProc::start(&format!(
        "{}{}",
        sidecar(),
        service_at("web", &[(backend.addr, "v1")])
    ));
    (backend, proxy)
}

/// Writes `bytes` (the server may stop reading and close first).
async fn send(tcp: &mut TcpStream, bytes: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(bytes)).await;
}

/// The proxy used at most `budget` of CPU since `before`, kept its memory
/// within `rss_budget_kib` of `rss_before`, and serves an innocent client.
async fn bounded_and_alive(
    proxy: &ProxyProc,
    backend: &Recorder,
    cpu_before: Duration,
    budget: Duration,
    rss_before: u64,
) {
    let used = cpu_time(proxy.pid()) - cpu_before;
    assert!(used < budget, "the proxy used {used:?} of CPU");
    let grown = rss_kib(proxy.pid()).saturating_sub(rss_before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
    let hits = backend.hits();
    let (raw, _) = raw_exchange(
        proxy.outbound(),
        b"GET /innocent HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert_eq!(backend.hits(), hits + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway_enhance_your_calm() {
    let (backend, proxy) = setup().await;
    let (cpu, rss) = (cpu_time(proxy.pid()), rss_kib(proxy.pid()));
    let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    let mut burst = start();
    // 10,000 streams opened and cancelled at once (CVE-2023-44487).
    for i in 0..10_000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, GET_BLOCK));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    send(&mut tcp, &burst).await;
    let (got, closed) = frames(&mut tcp, Duration::from_secs(3)).await;
    assert_eq!(goaway(&got), Some(ENHANCE_YOUR_CALM), "{:?}", got.len());
    assert!(closed, "the connection stays open after GOAWAY");
    // Most streams never reached the backend.
    assert!(
        backend.hits() < 1_000,
        "{} reached the backend",
        backend.hits()
    );
    bounded_and_alive(&proxy, &backend, cpu, Duration::from_secs(2), rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off() {
    let (backend, proxy) = setup().await;
    let (cpu, rss) = (cpu_time(proxy.pid()), rss_kib(proxy.pid()));
    // A small send buffer: `sent` then counts what the proxy took in, not
    // what the client's kernel queued (its buffer grows up to 4 MiB on its
    // own, which on a loaded machine made `sent` pass the bound below).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    let mut tcp = socket.connect(proxy.outbound()).await.unwrap();
    let mut burst = start();
    burst.extend(frame(HEADERS, 0, 1, GET_BLOCK));
    // Endless CONTINUATION frames of literal headers (RUSTSEC-2024-0332):
    // 16 MiB in all, never END_HEADERS.
    let mut block = Vec::new();
    while block.len() < 16_000 {
        // Literal without indexing, new name `x-f`, 100-byte value.
        block.extend_from_slice(&[0x00, 0x03, b'x', b'-', b'f', 100]);
        block.extend_from_slice(&[b'a'; 100]);
    }
    let cont = frame(CONTINUATION, 0, 1, &block);
    let started = Instant::now();
    send(&mut tcp, &burst).await;
    let mut sent = 0usize;
    let mut cut = false;
    while sent < 16 << 20 {
        match tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&cont)).await {
            Ok(Ok(())) => sent += cont.len(),
            _ => {
                cut = true;
                break;
            }
        }
    }
    let (got, closed) = frames(&mut tcp, Duration::from_secs(2)).await;
    assert!(
        cut || closed || goaway(&got).is_some(),
        "16 MiB of header block accepted"
    );
    assert!(
        sent < 4 << 20,
        "the proxy read {sent} bytes of one header block"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(backend.hits(), 0);
    bounded_and_alive(&proxy, &backend, cpu, Duration::from_secs(2), rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_settings_floods_stay_bounded() {
    let (backend, proxy) = setup().await;
    let (cpu, rss) = (cpu_time(proxy.pid()), rss_kib(proxy.pid()));
    let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    let mut burst = start();
    for i in 0..50_000u64 {
        burst.extend(frame(PING, 0, 0, &i.to_be_bytes()));
        burst.extend(frame(SETTINGS, 0, 0, &[0x00, 0x04, 0x00, 0x01, 0x00, 0x00]));
    }
    // Never reading the answers: the proxy must not buffer them unboundedly.
    send(&mut tcp, &burst).await;
    bounded_and_alive(&proxy, &backend, cpu, Duration::from_secs(3), rss).await;
    // The connection still answers a request, or was closed; never a hang.
    send(
        &mut tcp,
        &frame(HEADERS, END_HEADERS | END_STREAM, 1, GET_BLOCK),
    )
    .await;
    let (got, closed) = frames(&mut tcp, Duration::from_secs(2)).await;
    let answered = got.iter().any(|f| f.0 == HEADERS && f.2 == 1);
    assert!(
        answered || closed || goaway(&got).is_some(),
        "{}",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_data_frames_and_too_many_streams_stay_bounded() {
    let (backend, proxy) = setup().await;
    let (cpu, rss) = (cpu_time(proxy.pid()), rss_kib(proxy.pid()));
    let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    let mut burst = start();
    // 300 streams left open (max_concurrent_streams is 100), then 100,000
    // empty DATA frames on the first.
    for i in 0..300u32 {
        burst.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, GET_BLOCK));
    }
    for _ in 0..100_000 {
        burst.extend(frame(DATA, 0, 1, &[]));
    }
    send(&mut tcp, &burst).await;
    let (got, _) = frames(&mut tcp, Duration::from_secs(2)).await;
    // Streams past the limit are refused (RST_STREAM REFUSED_STREAM) or the
    // connection is closed; at most 100 were ever forwarded at once.
    let refused = got
        .iter()
        .filter(|f| f.0 == RST_STREAM && u32::from_be_bytes(f.3[..4].try_into().unwrap()) == 7)
        .count();
    assert!(
        refused >= 200 || goaway(&got).is_some(),
        "refused {refused} of 300 streams"
    );
    drop(tcp);
    bounded_and_alive(&proxy, &backend, cpu, Duration::from_secs(3), rss).await;
}

/// A literal header field without indexing, with a new name.
fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    assert!(name.len() < 127 && value.len() < 127);
    let mut out = vec![0x00, name.len() as u8];
    out.extend_from_slice(name);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpack_bomb_is_refused_without_decoding_it_all() {
    let (backend, proxy) = setup().await;
    let (cpu, rss) = (cpu_time(proxy.pid()), rss_kib(proxy.pid()));
    let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    // One 4,000-byte entry put in the dynamic table, then referenced 4,000
    // times: 16 KB on the wire, 16 MB decoded (CVE-2016-6581).
    let mut block = GET_BLOCK.to_vec();
    block.extend_from_slice(&[0x40, 0x03, b'x', b'-', b'b', 0x7f, 0xa1, 0x1e]);
    block.extend(std::iter::repeat_n(b'a', 4000));
    block.extend(std::iter::repeat_n(0xbe, 4000));
    let mut burst = start();
    burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
    send(&mut tcp, &burst).await;
    let (got, closed) = frames(&mut tcp, Duration::from_secs(2)).await;
    let refused = got.iter().any(|f| f.0 == RST_STREAM && f.2 == 1)
        || got
            .iter()
            // Any answer but 200 (`0x88` is HPACK's indexed `:status: 200`).
            .any(|f| f.0 == HEADERS && f.2 == 1 && f.3.first() != Some(&0x88))
        || goaway(&got).is_some()
        || closed;
    assert!(refused, "{got:?}");
    assert_eq!(backend.hits(), 0);
    bounded_and_alive(&proxy, &backend, cpu, Duration::from_secs(2), rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_h2_requests_never_reach_the_backend() {
    let (backend, proxy) = setup().await;
    let with = |extra: &[u8]| {
        let mut b = GET_BLOCK.to_vec();
        b.extend_from_slice(extra);
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("connection header", with(&literal(b"connection", b"close"))),
        (
            "transfer-encoding",
            with(&literal(b"transfer-encoding", b"chunked")),
        ),
        ("upper-case name", with(&literal(b"X-A", b"1"))),
        ("te: gzip", with(&literal(b"te", b"gzip"))),
        ("CR LF in a value", with(&literal(b"x-a", b"a\r\nx-b: 1"))),
        ("pseudo-header after a field", {
            let mut b = literal(b"x-a", b"1");
            b.extend_from_slice(GET_BLOCK);
            b
        }),
        ("no :path", vec![0x82, 0x86, 0x41, 0x03, b'w', b'e', b'b']),
        ("two :method", with(&[0x83])),
    ];
    // One connection per case, all at once: a case that ends its
    // connection must not spare the others from being examined.
    let outbound = proxy.outbound();
    let answers = cases.iter().map(|(what, block)| async move {
        let mut burst = start();
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, block));
        let mut tcp = TcpStream::connect(outbound).await.unwrap();
        send(&mut tcp, &burst).await;
        let (got, closed) = frames(&mut tcp, Duration::from_secs(2)).await;
        (*what, got, closed)
    });
    for (what, got, closed) in futures_util::future::join_all(answers).await {
        // 0x88 is `:status 200` from the static table.
        let answered_ok = got
            .iter()
            .any(|f| f.0 == HEADERS && f.2 == 1 && f.3.first() == Some(&0x88));
        assert!(!answered_ok, "{what} was answered 200");
        let refused = closed
            || got.iter().any(|f| {
                (f.0 == RST_STREAM && f.2 == 1) || f.0 == GOAWAY || (f.0 == HEADERS && f.2 == 1)
            });
        assert!(refused, "{what}: neither refused nor answered: {got:?}");
    }
    assert_eq!(backend.hits(), 0, "{:?}", backend.paths());

    // `:authority` wins over a `host` field, for routing and the backend.
    let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    let mut burst = start();
    burst.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &with(&literal(b"host", b"elsewhere")),
    ));
    send(&mut tcp, &burst).await;
    let (got, _) = frames(&mut tcp, Duration::from_secs(1)).await;
    // 0x88 is `:status 200` from the static table.
    assert!(
        got.iter()
            .any(|f| f.0 == HEADERS && f.2 == 1 && f.3.first() == Some(&0x88)),
        "{got:?}"
    );
    assert_eq!(backend.requests()[0].headers["host"], "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_preface_is_closed() {
    let (backend, proxy) = setup().await;
    for preface in [
        &b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"[..],
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff"[..],
    ] {
        let (raw, closed) = raw_exchange(proxy.outbound(), preface).await;
        assert!(closed, "{raw}");
    }
    assert_eq!(backend.hits(), 0);
    bounded_and_alive(
        &proxy,
        &backend,
        cpu_time(proxy.pid()),
        Duration::from_secs(1),
        rss_kib(proxy.pid()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_you_reset_gets_goaway() {
    // CVE-2025-8671: frames that make the *server* reset streams — here a
    // WINDOW_UPDATE of 0 on each new stream — 3,000 times: never more than
    // the local-error reset limit (1024) before the connection ends.
    const WINDOW_UPDATE: u8 = 0x8;
    let (backend, proxy) = setup().await;
    let (cpu, rss) = (cpu_time(proxy.pid()), rss_kib(proxy.pid()));
    let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    let mut burst = start();
    for i in 0..3_000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, GET_BLOCK));
        burst.extend(frame(WINDOW_UPDATE, 0, id, &0u32.to_be_bytes()));
    }
    send(&mut tcp, &burst).await;
    let (got, closed) = frames(&mut tcp, Duration::from_secs(3)).await;
    let resets = got.iter().filter(|f| f.0 == RST_STREAM).count();
    // h2 answers the first zero increment with a connection error
    // (PROTOCOL_ERROR); the reset limit (ENHANCE_YOUR_CALM) is the backstop.
    assert!(
        matches!(goaway(&got), Some(0x1 | ENHANCE_YOUR_CALM)),
        "{:?}: {resets} resets, closed {closed}",
        goaway(&got)
    );
    assert!(closed);
    assert!(resets <= 1024 + 100, "{resets} resets before GOAWAY");
    bounded_and_alive(&proxy, &backend, cpu, Duration::from_secs(3), rss).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_that_the_data_does_not_match_is_never_forwarded_whole() {
    // H2.CL desync: `content-length: 10` with 3 bytes of DATA, and with 20.
    let (backend, proxy) = setup().await;
    let post = |len: &[u8]| {
        let mut b = vec![0x83, 0x86, 0x84, 0x41, 0x03, b'w', b'e', b'b'];
        b.extend(literal(b"content-length", len));
        b
    };
    let mut burst = start();
    burst.extend(frame(HEADERS, END_HEADERS, 1, &post(b"10")));
    burst.extend(frame(DATA, END_STREAM, 1, b"abc"));
    burst.extend(frame(HEADERS, END_HEADERS, 3, &post(b"10")));
    burst.extend(frame(DATA, END_STREAM, 3, &[b'x'; 20]));
    let mut tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    send(&mut tcp, &burst).await;
    let (got, _) = frames(&mut tcp, Duration::from_secs(2)).await;
    for id in [1, 3] {
        assert!(
            !got.iter()
                .any(|f| f.0 == HEADERS && f.2 == id && f.3.first() == Some(&0x88)),
            "stream {id} answered 200"
        );
    }
    // The backend got no request with a whole body of either length.
    assert_eq!(backend.hits(), 0, "{:?}", backend.requests());
}
