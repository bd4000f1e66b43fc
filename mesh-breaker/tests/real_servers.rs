//! Outlier ejection over real hyper servers on 127.0.0.1: three endpoints, one
//! answering 503; no retries. After the first few failures the client sees no
//! more 503s while the ejection lasts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic on its own setup

use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_breaker::outlier::{EjectionKind, OutlierDetection, OutlierDetector};
use mesh_breaker::pool::{ConnectionPoolLayer, PoolLimits};
use mesh_core::{BoxError, MeshError};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Starts a server answering every request with `status` and its own name.
async fn server(name: &'static str, status: u16) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .header("x-server", name)
                            .body(Full::new(Bytes::from_static(b"hi")))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// The service of one endpoint: the shared client, pointed at `addr`.
fn endpoint(
    client: HttpClient,
    addr: SocketAddr,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Incoming>,
    Error = hyper_util::client::legacy::Error,
    Future: Send,
> + Clone {
    tower::service_fn(move |mut req: Request<Empty<Bytes>>| {
        let uri = format!("http://{addr}{}", req.uri().path());
        *req.uri_mut() = uri.parse().unwrap();
        client.request(req)
    })
}

/// A test-local round robin over ready endpoints: never calls an unready one;
/// pending when none is ready (the gates' wakers wake it).
struct RoundRobin<S> {
    endpoints: Vec<S>,
    next: usize,
    ready: Option<usize>,
}

impl<S, R> Service<R> for RoundRobin<S>
where
    S: Service<R, Error = BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let n = self.endpoints.len();
        for i in 0..n {
            let idx = (self.next + i) % n;
            if self.endpoints[idx].poll_ready(cx)?.is_ready() {
                self.ready = Some(idx);
                return Poll::Ready(Ok(()));
            }
        }
        Poll::Pending
    }

    fn call(&mut self, req: R) -> S::Future {
        let idx = self.ready.take().expect("poll_ready first");
        self.next = idx + 1;
        self.endpoints[idx].call(req)
    }
}

async fn setup(
    statuses: [u16; 3],
    config: OutlierDetection,
) -> (
    OutlierDetector,
    impl Service<Request<Empty<Bytes>>, Response = Response<impl http_body::Body>, Error = BoxError>,
) {
    let names = ["a", "b", "c"];
    let mut addrs = Vec::new();
    for (name, status) in names.into_iter().zip(statuses) {
        addrs.push(server(name, status).await);
    }
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let detector = OutlierDetector::new(config);
    let rr = RoundRobin {
        endpoints: addrs
            .iter()
            .map(|a| detector.gate(*a, endpoint(client.clone(), *a)))
            .collect(),
        next: 0,
        ready: None,
    };
    let svc = ServiceBuilder::new()
        .layer(ConnectionPoolLayer::new(PoolLimits::envoy()))
        .layer(detector.cluster_layer())
        .service(rr);
    (detector, svc)
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_and_the_client_sees_no_more_503s() {
    let (detector, mut svc) = setup(
        [200, 503, 200],
        OutlierDetection {
            max_ejection_percent: 50,
            ..OutlierDetection::default()
        },
    )
    .await;
    let mut statuses = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..60 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(Empty::new()))
            .await
            .unwrap();
        statuses.push(res.status());
        servers.push(res.headers()["x-server"].to_str().unwrap().to_owned());
        res.into_body().collect().await.ok();
    }
    let failures: Vec<usize> = statuses
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == StatusCode::SERVICE_UNAVAILABLE)
        .map(|(i, _)| i)
        .collect();
    // Round robin sends every third request to b: its 5th 503 is request 15.
    assert_eq!(failures, [1, 4, 7, 10, 13]);
    assert!(statuses[14..].iter().all(|s| *s == StatusCode::OK));
    assert!(
        !servers[14..].iter().any(|s| s == "b"),
        "b gets nothing while ejected"
    );
    let stats = detector.stats();
    assert_eq!(stats.ejections_active, 1);
    assert_eq!(stats.enforced(EjectionKind::Consecutive5xx), 1);
    let b = detector
        .endpoints()
        .into_iter()
        .find(|e| e.ejected)
        .unwrap();
    assert_eq!(b.ejection_time, Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn with_every_endpoint_ejected_istio_answers_503_uh_at_once() {
    let (detector, mut svc) = setup(
        [503, 503, 503],
        OutlierDetection {
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        },
    )
    .await;
    for _ in 0..15 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(Empty::new()))
            .await
            .unwrap();
        assert_eq!(res.status(), 503);
        res.into_body().collect().await.ok();
    }
    assert!(detector.none_healthy());
    let err = poll_fn(|cx| svc.poll_ready(cx))
        .await
        .map(|()| svc.call(Request::new(Empty::new())));
    let Ok(call) = err else { panic!("ready") };
    let Err(err) = call.await else {
        panic!("expected UH")
    };
    let mesh = MeshError::find(&*err).unwrap();
    assert!(matches!(mesh, MeshError::NoHealthyEndpoint));
    assert_eq!(mesh.flag().code(), "UH");
}
