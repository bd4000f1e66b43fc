#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use super::*;
use crate::body::{self, Body};

const IDLE: Duration = Duration::from_secs(60);

fn config(http2_only: bool, idle_timeout: Duration) -> PoolConfig {
    PoolConfig {
        http2_only,
        idle_timeout,
    }
}

/// A hyper server answering `ok`, and how many connections it accepted.
async fn hyper_server(h2: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let io = TokioIo::new(tcp);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                }
            });
        }
    });
    (addr, accepted)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A raw HTTP/1.1 server answering its very first request with `first`, all
/// others with `ok`, keeping every connection open until its client closes
/// it; how many connections it accepted, and a message for each closed.
async fn raw_server(
    first: &'static [u8],
) -> (
    SocketAddr,
    Arc<AtomicUsize>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let served = Arc::new(AtomicUsize::new(0));
    let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let served = served.clone();
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let res = if served.fetch_add(1, Ordering::SeqCst) == 0 {
                            first
                        } else {
                            OK
                        };
                        if tcp.write_all(res).await.is_err() {
                            return;
                        }
                    }
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            let _ = closed_tx.send(());
                            return;
                        }
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, accepted, closed)
}

fn get(addr: SocketAddr) -> Request<Body> {
    Request::get(format!("http://{addr}/"))
        .body(body::full(""))
        .unwrap()
}

/// Sends a GET and reads the whole answer.
async fn fetch<C>(pool: &Pool<C>, addr: SocketAddr) -> Result<(StatusCode, Bytes), BoxError>
where
    C: tower::Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: Read + Write + Connection + Unpin + Send + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    let res = pool.send(get(addr)).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

#[tokio::test]
async fn an_idle_http1_connection_is_reused() {
    let (addr, accepted) = hyper_server(false).await;
    let pool = Pool::new(HttpConnector::new(), "http", addr, config(false, IDLE));
    for _ in 0..3 {
        let (status, body) = fetch(&pool, addr).await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one keep-alive connection"
    );
}

#[tokio::test]
async fn a_response_dropped_before_its_end_closes_its_connection() {
    let (addr, accepted) = hyper_server(false).await;
    let pool = Pool::new(HttpConnector::new(), "http", addr, config(false, IDLE));
    let res = pool.send(get(addr)).await.unwrap();
    assert!(!http_body::Body::is_end_stream(res.body()));
    drop(res);
    fetch(&pool, addr).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_http2_requests_share_one_connection() {
    let (addr, accepted) = hyper_server(true).await;
    let pool = Pool::new(HttpConnector::new(), "http", addr, config(true, IDLE));
    let sends = (0..4).map(|_| fetch(&pool, addr));
    for result in futures_util::future::join_all(sends).await {
        assert_eq!(result.unwrap().0, StatusCode::OK);
    }
    fetch(&pool, addr).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_is_not_reused_after_an_ambiguously_framed_response() {
    let (addr, accepted, _) = raw_server(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    let pool = Pool::new(HttpConnector::new(), "http", addr, config(false, IDLE));
    let err = fetch(&pool, addr).await.unwrap_err();
    assert!(
        matches!(MeshError::find(&*err), Some(MeshError::UpstreamProtocol(_))),
        "{err}"
    );
    let (status, body) = fetch(&pool, addr).await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "a new connection");
    fetch(&pool, addr).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the good one is reused");
}

/// A TCP connection as a connector makes it, for tests:
/// - it reads as closed by the peer (EOF) once `eof` is set: what a
///   connection task sees when the server closed an idle connection just as
///   a request was taking it (setting the flag wakes nothing, so the pool
///   still takes the connection as ready);
/// - with `h2`, it says ALPN chose HTTP/2, as an mTLS connection between
///   sidecars does.
struct TestIo {
    io: TokioIo<TcpStream>,
    eof: Arc<AtomicBool>,
    h2: bool,
}

impl Connection for TestIo {
    fn connected(&self) -> Connected {
        let connected = self.io.connected();
        if self.h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl Read for TestIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.eof.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for TestIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_request_on_an_idle_connection_closed_by_the_server_is_sent_on_a_new_one() {
    let (addr, accepted) = hyper_server(false).await;
    let flags: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
    let made = flags.clone();
    let connector = tower::service_fn(move |uri: Uri| {
        let made = made.clone();
        async move {
            let io = HttpConnector::new().oneshot(uri).await?;
            let eof = Arc::new(AtomicBool::new(false));
            made.lock().unwrap().push(eof.clone());
            Ok::<_, BoxError>(TestIo { io, eof, h2: false })
        }
    });
    let pool = Pool::new(connector, "http", addr, config(false, IDLE));
    fetch(&pool, addr).await.unwrap();
    flags.lock().unwrap()[0].store(true, Ordering::SeqCst);

    let (status, body) = fetch(&pool, addr).await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(flags.lock().unwrap().len(), 2, "sent on a new connection");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn idle_connections_expire() {
    let (addr, accepted) = hyper_server(false).await;
    let pool = Pool::new(
        HttpConnector::new(),
        "http",
        addr,
        config(false, Duration::from_secs(10)),
    );
    tokio::time::pause();
    fetch(&pool, addr).await.unwrap();
    tokio::time::advance(Duration::from_secs(9)).await;
    fetch(&pool, addr).await.unwrap();
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "reused within the timeout"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    fetch(&pool, addr).await.unwrap();
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "expired, a new connection"
    );
}

#[tokio::test]
async fn connect_failures_and_refused_slots_are_the_mesh_errors() {
    // A port nobody listens on.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pool = Pool::new(HttpConnector::new(), "http", addr, config(false, IDLE));
    let err = fetch(&pool, addr).await.unwrap_err();
    assert!(
        matches!(MeshError::find(&*err), Some(MeshError::ConnectFailure(_))),
        "{err}"
    );

    let limited = mesh_breaker::pool::ConnectionLimit::with_limit(
        HttpConnector::new(),
        mesh_core::limit::SharedLimit::new(0),
    );
    let pool = Pool::new(limited, "http", addr, config(false, IDLE));
    let err = fetch(&pool, addr).await.unwrap_err();
    assert!(
        matches!(MeshError::find(&*err), Some(MeshError::Overloaded(_))),
        "{err}"
    );
}

#[tokio::test]
async fn addr_pools_keep_one_pool_per_address() {
    let (addr, accepted) = hyper_server(false).await;
    let pools = AddrPools::new(HttpConnector::new(), IDLE);
    fetch(&pools.get(addr), addr).await.unwrap();
    fetch(&pools.get(addr), addr).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_expired_idle_connection_is_closed_without_another_request() {
    let (addr, _, mut closed) = raw_server(OK).await;
    let timeout = Duration::from_secs(10);
    let pool = Pool::new(HttpConnector::new(), "http", addr, config(false, timeout));
    tokio::time::pause();
    fetch(&pool, addr).await.unwrap();
    let idle_since = tokio::time::Instant::now();
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(closed.try_recv().is_err(), "kept within the timeout");
    assert!(pool.in_use(), "the pool keeps its connection");

    // Nothing else happens: the reaper closes it at its expiry.
    let wait = Duration::from_secs(60);
    tokio::time::timeout(wait, closed.recv()).await.unwrap();
    let after = tokio::time::Instant::now() - idle_since;
    assert!(
        after >= timeout && after < timeout + Duration::from_secs(1),
        "{after:?}"
    );
    assert!(
        !pool.in_use(),
        "an unused pool with no connection can be forgotten"
    );

    // A connection kept later starts the reaper again.
    fetch(&pool, addr).await.unwrap();
    tokio::time::timeout(wait, closed.recv()).await.unwrap();
    assert!(!pool.in_use());
}

#[tokio::test]
async fn an_expired_shared_http2_connection_is_dropped_without_another_request() {
    let (addr, accepted) = hyper_server(true).await;
    let timeout = Duration::from_secs(10);
    let pool = Pool::new(HttpConnector::new(), "http", addr, config(true, timeout));
    tokio::time::pause();
    fetch(&pool, addr).await.unwrap();
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(pool.in_use());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!pool.in_use(), "dropped at its expiry");
    fetch(&pool, addr).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "a new connection");
}

fn alpn_connector(
    h2: bool,
) -> impl tower::Service<
    Uri,
    Response = TestIo,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<TestIo, BoxError>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |uri: Uri| async move {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let io = http.oneshot(uri).await?;
        Ok::<_, BoxError>(TestIo {
            io,
            eof: Arc::default(),
            h2,
        })
    })
}

#[tokio::test(start_paused = true)]
async fn requests_waiting_for_a_tls_connection_that_fails_fail_with_it() {
    // A connect that takes a second and fails (a peer that never answers).
    let calls = Arc::new(AtomicUsize::new(0));
    let made = calls.clone();
    let connector = tower::service_fn(move |_: Uri| {
        made.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Err::<TestIo, BoxError>("no answer".into())
        }
    });
    let addr: SocketAddr = ([127, 0, 0, 1], 9).into();
    let pool = Pool::new(connector, "https", addr, config(false, IDLE));
    let start = tokio::time::Instant::now();
    let sends = (0..4).map(|_| fetch(&pool, addr));
    for result in futures_util::future::join_all(sends).await {
        let err = result.unwrap_err();
        assert!(
            matches!(MeshError::find(&*err), Some(MeshError::ConnectFailure(_))),
            "{err}"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one connect, not one each in turn"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test]
async fn a_burst_of_first_requests_shares_one_alpn_http2_connection() {
    let (addr, accepted) = hyper_server(true).await;
    let pool = Pool::new(alpn_connector(true), "https", addr, config(false, IDLE));
    let sends = (0..8).map(|_| fetch(&pool, addr));
    for result in futures_util::future::join_all(sends).await {
        assert_eq!(result.unwrap().0, StatusCode::OK);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one shared connection");

    // ALPN chose HTTP/1.1: each concurrent request has its own.
    let (addr, accepted) = hyper_server(false).await;
    let pool = Pool::new(alpn_connector(false), "https", addr, config(false, IDLE));
    let sends = (0..4).map(|_| fetch(&pool, addr));
    for result in futures_util::future::join_all(sends).await {
        assert_eq!(result.unwrap().0, StatusCode::OK);
    }
    fetch(&pool, addr).await.unwrap();
    assert!(accepted.load(Ordering::SeqCst) <= 4, "kept and reused");
}
