//! `max_connections` over a real hyper server on 127.0.0.1: hyper-util's
//! legacy client with a [`ConnectionLimit`] around its `HttpConnector` opens
//! no connection past the limit, fails at once with a refusal `MeshError::find`
//! sees through the client's error, and gets the slot back only when a
//! connection is closed (an idle keep-alive connection keeps it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic on its own setup

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_breaker::pool::{ConnectionLimit, ConnectionPoolLayer, PoolLimits};
use mesh_core::{MeshError, Overload};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tower::ServiceExt;

/// A backend: `/slow` answers once the test adds a permit to `release` (and
/// says so on `entered` when it starts waiting); `/close` answers with
/// `connection: close`; anything else answers at once. `accepted` counts the
/// connections it accepted.
struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    release: Arc<Semaphore>,
    entered: mpsc::UnboundedReceiver<()>,
}

async fn backend() -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (tx, entered) = mpsc::unbounded_channel();
    let (count, gate) = (accepted.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (gate, tx) = (gate.clone(), tx.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (gate, tx) = (gate.clone(), tx.clone());
                    async move {
                        let mut res = Response::builder();
                        match req.uri().path() {
                            "/slow" => {
                                let _ = tx.send(());
                                gate.acquire().await.unwrap().forget();
                            }
                            "/close" => res = res.header(http::header::CONNECTION, "close"),
                            _ => {}
                        }
                        Ok::<_, Infallible>(res.body(Full::new(Bytes::from_static(b"ok"))).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Backend {
        addr,
        accepted,
        release,
        entered,
    }
}

type LimitedClient = Client<ConnectionLimit<HttpConnector>, Empty<Bytes>>;

fn client(pool: &ConnectionPoolLayer) -> LimitedClient {
    Client::builder(TokioExecutor::new()).build(ConnectionLimit::new(HttpConnector::new(), pool))
}

fn one_connection() -> ConnectionPoolLayer {
    ConnectionPoolLayer::new(PoolLimits {
        max_connections: 1,
        ..PoolLimits::default()
    })
}

/// Sends a GET for `path` and reads the whole answer.
async fn get(
    client: &LimitedClient,
    addr: SocketAddr,
    path: &str,
) -> Result<StatusCode, hyper_util::client::legacy::Error> {
    let uri = format!("http://{addr}{path}").parse::<http::Uri>().unwrap();
    let res = client.get(uri).await?;
    let status = res.status();
    res.into_body().collect().await.unwrap();
    Ok(status)
}

/// The client's error, if it is a `max_connections` refusal.
fn refused_for_max_connections(err: &hyper_util::client::legacy::Error) -> bool {
    matches!(
        MeshError::find(err),
        Some(MeshError::Overloaded(Overload::MaxConnections))
    )
}

/// Waits (up to 5 s) until `pool` counts `n` open connections.
async fn until_connections(pool: &ConnectionPoolLayer, n: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while pool.stats().connections_active != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("still {:?} after 5s, want {n} connections", pool.stats()));
}

#[tokio::test]
async fn a_busy_connection_refuses_the_second_at_once_and_an_idle_one_keeps_its_slot() {
    let mut backend = backend().await;
    let pool = one_connection();
    let first_client = client(&pool);

    // One request holds the only connection busy.
    let slow = tokio::spawn({
        let (c, addr) = (first_client.clone(), backend.addr);
        async move { get(&c, addr, "/slow").await }
    });
    backend.entered.recv().await.unwrap();
    assert_eq!(pool.stats().connections_active, 1);

    // A second concurrent request needs a second connection: refused at once
    // (well before the slow answer, which is still held back), never connected.
    let err = tokio::time::timeout(
        Duration::from_secs(2),
        get(&first_client, backend.addr, "/"),
    )
    .await
    .expect("the refusal does not wait for the busy connection")
    .unwrap_err();
    assert!(
        err.is_connect(),
        "hyper-util calls it a connect error: {err:?}"
    );
    assert!(
        refused_for_max_connections(&err),
        "found through the chain: {err:?}"
    );
    assert!(!slow.is_finished());
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.stats().connections_overflow, 1);

    // The first one finishes; its connection goes back to the client's pool,
    // idle, and keeps its slot (Envoy counts idle connections too).
    backend.release.add_permits(1);
    assert_eq!(slow.await.unwrap().unwrap(), StatusCode::OK);
    assert_eq!(pool.stats().connections_active, 1);
    // The same client reuses it…
    assert_eq!(
        get(&first_client, backend.addr, "/").await.unwrap(),
        StatusCode::OK
    );
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
    // …but another client of the same cluster may not open a second one.
    let other_client = client(&pool);
    let err = get(&other_client, backend.addr, "/").await.unwrap_err();
    assert!(refused_for_max_connections(&err), "{err:?}");
    assert_eq!(pool.stats().connections_overflow, 2);

    // Closing the idle connection (its client goes away) frees the slot.
    drop(first_client);
    until_connections(&pool, 0).await;
    assert_eq!(
        get(&other_client, backend.addr, "/").await.unwrap(),
        StatusCode::OK
    );
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(pool.stats().connections_active, 1);
    assert_eq!(pool.stats().connections_overflow, 2);
}

#[tokio::test]
async fn a_connection_the_server_closes_gives_its_slot_back() {
    let backend = backend().await;
    let pool = one_connection();
    let first_client = client(&pool);
    let other_client = client(&pool);

    assert_eq!(
        get(&first_client, backend.addr, "/close").await.unwrap(),
        StatusCode::OK
    );
    // The server said `connection: close`: the connection is not pooled, so
    // the slot comes back though `first_client` is still alive.
    until_connections(&pool, 0).await;
    assert_eq!(
        get(&other_client, backend.addr, "/").await.unwrap(),
        StatusCode::OK
    );
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(pool.stats().connections_overflow, 0);
}

#[tokio::test]
async fn a_failed_connect_gives_its_slot_back() {
    // A port nobody listens on: bind one, then close it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let pool = one_connection();
    let connector = ConnectionLimit::new(HttpConnector::new(), &pool);
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    for _ in 0..3 {
        let err = connector.clone().oneshot(uri.clone()).await.unwrap_err();
        assert!(
            MeshError::find(&*err).is_none(),
            "a real connect error: {err}"
        );
        assert_eq!(pool.stats().connections_active, 0);
    }
    assert_eq!(pool.stats().connections_overflow, 0);
}
