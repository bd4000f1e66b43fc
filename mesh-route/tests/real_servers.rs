//! The router over real hyper servers on 127.0.0.1: a 100 % abort never
//! reaches the upstream; a mirror copy reaches the shadow with `-shadow` in
//! its Host; a shadow that hangs or answers 500 changes nothing for the
//! client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic on its own setup

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::{BoxError, MeshError, RESPONSE_FLAGS_HEADER};
use mesh_route::mirror::MirrorStats;
use mesh_route::{
    AbortFault, AbortStatus, Destination, FaultConfig, HttpMatch, MirrorPolicy, RouteBody,
    RouteConfig, Router, StringMatch,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// What a server saw: Host and body.
type Seen = (String, Bytes);

/// How a test server answers.
#[derive(Clone)]
enum Behaviour {
    /// 200 with this body.
    Ok(&'static str),
    /// 500.
    Fail,
    /// Reports the request, then answers only when the test says so.
    Hold(Arc<tokio::sync::Mutex<Option<oneshot::Receiver<()>>>>),
}

/// Starts a server on 127.0.0.1:0 that counts requests and reports each one.
async fn server(
    behaviour: Behaviour,
) -> (SocketAddr, Arc<AtomicUsize>, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (c, tx, behaviour) = (c.clone(), tx.clone(), behaviour.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (c, tx, behaviour) = (c.clone(), tx.clone(), behaviour.clone());
                    async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        let host = req
                            .headers()
                            .get("host")
                            .map(|h| h.to_str().unwrap().to_owned());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let _ = tx.send((host.unwrap_or_default(), body));
                        let text = match behaviour {
                            Behaviour::Ok(t) => t,
                            _ => "shadow",
                        };
                        let status = match behaviour {
                            Behaviour::Ok(_) => 200,
                            Behaviour::Fail => 500,
                            Behaviour::Hold(gate) => {
                                if let Some(rx) = gate.lock().await.take() {
                                    let _ = rx.await;
                                }
                                200
                            }
                        };
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(text)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, count, rx)
}

type ReqBody = RouteBody<Full<Bytes>>;
type Dest = BoxCloneSyncService<Request<ReqBody>, Response<Bytes>, BoxError>;

/// A destination: the shared hyper client pointed at `addr`; the response
/// body is collected.
fn endpoint(client: Client<HttpConnector, ReqBody>, addr: SocketAddr) -> Dest {
    BoxCloneSyncService::new(tower::service_fn(move |mut req: Request<ReqBody>| {
        let client = client.clone();
        async move {
            let pq = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            *req.uri_mut() = format!("http://{addr}{pq}").parse()?;
            let res = client.request(req).await?;
            let (parts, body) = res.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, BoxError>(Response::from_parts(parts, body))
        }
    }))
}

fn client() -> Client<HttpConnector, ReqBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/reviews/1")
        .header("host", "reviews:9080")
        .header("end-user", "jason")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn full_abort_never_reaches_the_upstream() {
    let (addr, count, _seen) = server(Behaviour::Ok("ratings")).await;
    let client = client();
    // virtual-service-ratings-test-abort.yaml
    let routes = vec![
        RouteConfig::to("jason", Destination::new("ratings").with_subset("v1"))
            .with_match(HttpMatch::default().with_header(
                HeaderName::from_static("end-user"),
                StringMatch::exact("jason"),
            ))
            .with_fault(FaultConfig {
                delay: None,
                abort: Some(AbortFault {
                    status: AbortStatus::Http(StatusCode::INTERNAL_SERVER_ERROR),
                    percentage: 100.0,
                }),
            }),
        RouteConfig::to("rest", Destination::new("ratings").with_subset("v1")),
    ];
    let router = Router::builder(routes)
        .build(|_| Ok(endpoint(client.clone(), addr)))
        .unwrap();
    for _ in 0..200 {
        let err = router.clone().oneshot(post("x")).await.unwrap_err();
        let res = MeshError::find(&*err).unwrap().to_response::<String>();
        assert_eq!(res.status(), 500);
        assert_eq!(res.headers()[RESPONSE_FLAGS_HEADER], "FI");
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "no aborted request reached the server"
    );
    // The same upstream is reachable for everyone else: the count works.
    let mut other = post("y");
    other.headers_mut().remove("end-user");
    let res = router.oneshot(other).await.unwrap();
    assert_eq!(res.body(), "ratings");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// A router: everything to `primary`, mirrored 100 % to `shadow`.
fn mirrored(
    primary: SocketAddr,
    shadow: SocketAddr,
    stats: &MirrorStats,
) -> Router<
    impl Clone + tower::Service<Request<Full<Bytes>>, Response = Response<Bytes>, Error = BoxError>,
> {
    let client = client();
    let routes = vec![
        RouteConfig::to("reviews", Destination::new("reviews").with_subset("v1")).with_mirror(
            MirrorPolicy::new(Destination::new("reviews").with_subset("v2"), None),
        ),
    ];
    Router::builder(routes)
        .mirror_stats(stats.clone())
        .build(move |t| {
            let addr = if t.destination.subset.as_deref() == Some("v2") {
                shadow
            } else {
                primary
            };
            Ok(endpoint(client.clone(), addr))
        })
        .unwrap()
}

#[tokio::test]
async fn shadow_receives_the_copy_with_a_shadow_host() {
    let (primary, primary_count, mut primary_seen) = server(Behaviour::Ok("primary")).await;
    let (shadow, _, mut shadow_seen) = server(Behaviour::Ok("shadow")).await;
    let stats = MirrorStats::new();
    let router = mirrored(primary, shadow, &stats);
    let res = router.oneshot(post("the body")).await.unwrap();
    assert_eq!(
        (res.status(), res.body().as_ref()),
        (StatusCode::OK, &b"primary"[..])
    );
    assert_eq!(
        primary_seen.recv().await.unwrap(),
        ("reviews:9080".into(), Bytes::from("the body"))
    );
    let (host, body) = shadow_seen.recv().await.unwrap();
    assert_eq!(host, "reviews-shadow:9080");
    assert_eq!(body, "the body");
    assert_eq!(primary_count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failing_shadow_changes_nothing_for_the_client() {
    let (primary, _, _) = server(Behaviour::Ok("primary")).await;
    let (shadow, shadow_count, _) = server(Behaviour::Fail).await;
    let stats = MirrorStats::new();
    let router = mirrored(primary, shadow, &stats);
    for _ in 0..20 {
        let res = router.clone().oneshot(post("b")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.body(), "primary");
        assert!(res.headers().get(RESPONSE_FLAGS_HEADER).is_none());
    }
    // The shadow did get (and fail) the copies.
    tokio::time::timeout(Duration::from_secs(10), async {
        while stats.completed() < 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(shadow_count.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn hanging_shadow_does_not_delay_the_client() {
    // The shadow holds its answer until the test releases it, after the
    // client's response has arrived. Were the primary waiting on the shadow,
    // it could never complete: the order of events proves the point without
    // any timing threshold (the 10 s timeout only turns a hang into a failure).
    let (release, gate) = oneshot::channel();
    let (primary, _, _) = server(Behaviour::Ok("primary")).await;
    let (shadow, _, mut shadow_seen) = server(Behaviour::Hold(Arc::new(tokio::sync::Mutex::new(
        Some(gate),
    ))))
    .await;
    let stats = MirrorStats::new();
    let router = mirrored(primary, shadow, &stats);
    let res = tokio::time::timeout(Duration::from_secs(10), router.oneshot(post("b")))
        .await
        .expect("the client is not held by the shadow")
        .unwrap();
    assert_eq!(
        (res.status(), res.body().as_ref()),
        (StatusCode::OK, &b"primary"[..])
    );
    // The shadow has the copy and is still holding it: it was hanging while
    // the client got its answer.
    let (host, _) = tokio::time::timeout(Duration::from_secs(10), shadow_seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(host, "reviews-shadow:9080");
    assert_eq!(stats.completed(), 0, "the shadow has not answered yet");
    release.send(()).unwrap();
}
