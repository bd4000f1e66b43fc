//! The retry layer over real hyper servers on 127.0.0.1 and a real hyper
//! client: a retry storm with and without the budget, one bad upstream of two,
//! and a body over the replay cap.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic on their own setup

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::BoxError;
use mesh_core::context::{ChosenEndpoint, RequestContext};
use mesh_retry::budget::ConcurrencyBudget;
use mesh_retry::{Backoff, RetryBody, RetryLayer, RetryPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::{Layer, Service, ServiceExt};

/// What one server saw: the attempt count header and body of each request.
#[derive(Default)]
struct Log {
    requests: Mutex<Vec<(String, Bytes)>>,
}

impl Log {
    fn hits(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    fn attempts(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(a, _)| a.clone())
            .collect()
    }
}

/// Holds every first attempt until `n` first attempts (over all servers
/// sharing it) have arrived, so that `n` requests are in flight at once.
#[derive(Clone)]
struct Barrier {
    arrived: Arc<watch::Sender<usize>>,
    n: usize,
}

impl Barrier {
    fn new(n: usize) -> Self {
        Barrier {
            arrived: Arc::new(watch::channel(0).0),
            n,
        }
    }

    async fn wait(&self) {
        self.arrived.send_modify(|a| *a += 1);
        let mut rx = self.arrived.subscribe();
        let _ = rx.wait_for(|a| *a >= self.n).await;
    }
}

/// A hyper HTTP/1 server on 127.0.0.1:0 answering every request with `status`
/// after reading its whole body (and, with a barrier, after all first tries
/// arrived).
async fn server(status: u16) -> (SocketAddr, Arc<Log>) {
    server_with(status, None).await
}

async fn server_with(status: u16, barrier: Option<Barrier>) -> (SocketAddr, Arc<Log>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Log::default());
    let server_log = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = server_log.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    let barrier = barrier.clone();
                    async move {
                        let attempt = req
                            .headers()
                            .get("x-envoy-attempt-count")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = req.into_body().collect().await?.to_bytes();
                        let first = attempt == "1";
                        log.requests.lock().unwrap().push((attempt, body));
                        if let (Some(barrier), true) = (barrier, first) {
                            barrier.wait().await;
                        }
                        Ok::<_, hyper::Error>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"answer")))
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
    (addr, log)
}

/// A tiny two-endpoint balancer for the test (mesh-lb is a sibling crate):
/// round robin, skipping endpoints the request context names as tried, and reporting its
/// pick as [`ChosenEndpoint`] in the response, as the real balancer does.
struct TwoEndpoints<B> {
    client: Client<HttpConnector, RetryBody<B>>,
    endpoints: [SocketAddr; 2],
    next: Arc<AtomicUsize>,
}

impl<B> Clone for TwoEndpoints<B> {
    fn clone(&self) -> Self {
        TwoEndpoints {
            client: self.client.clone(),
            endpoints: self.endpoints,
            next: self.next.clone(),
        }
    }
}

impl<B> TwoEndpoints<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn new(endpoints: [SocketAddr; 2]) -> Self {
        TwoEndpoints {
            client: Client::builder(TokioExecutor::new()).build_http(),
            endpoints,
            next: Arc::default(),
        }
    }
}

impl<B> Service<Request<RetryBody<B>>> for TwoEndpoints<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Incoming>, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<RetryBody<B>>) -> Self::Future {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let tried = RequestContext::get(req.extensions()).map(|c| &c.tried);
        let pick = (0..2)
            .map(|i| self.endpoints[(start + i) % 2])
            .find(|a| tried.is_none_or(|t| !t.contains(a)))
            .unwrap_or(self.endpoints[start % 2]);
        *req.uri_mut() = format!("http://{pick}/").parse().unwrap();
        RequestContext::get_mut(req.extensions_mut()).endpoint = Some(ChosenEndpoint(pick));
        let client = self.client.clone();
        Box::pin(async move {
            let mut res = client.request(req).await?;
            res.extensions_mut().insert(ChosenEndpoint(pick));
            Ok(res)
        })
    }
}

fn fast_backoff() -> Backoff {
    Backoff::with_max(Duration::from_millis(5), Duration::from_millis(50)).unwrap()
}

/// `clients` concurrent clients each send `per_client` requests in turn;
/// returns how many succeeded.
async fn run_clients<S>(svc: S, clients: usize, per_client: usize) -> usize
where
    S: Service<Request<Full<Bytes>>, Response = Response<Incoming>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..per_client {
                let req = Request::post("/").body(Full::new(Bytes::from_static(b"ping")));
                let res = svc.clone().oneshot(req.unwrap()).await.unwrap();
                if res.status() == 200 {
                    ok += 1;
                }
                res.into_body().collect().await.unwrap();
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    ok
}

/// The storm: every upstream fails, N clients at once (the servers
/// hold each first try until all N are in flight), Istio's default attempts
/// and Envoy's backoff. With Envoy's default budget (20 %, min 3) the upstream
/// attempts stay within N × 1.2 + 3; without it every request tries three
/// times.
///
/// The budget caps retries *in flight*, not in total: in a closed loop of
/// clients it lets `min_retry_concurrency` retries through for ever, so the
/// total bound is a property of a burst, which is what this test makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_storm_is_bounded_by_the_budget() {
    const CLIENTS: usize = 50;
    let bound = CLIENTS as f64 * 1.2 + ConcurrencyBudget::DEFAULT_MIN_RETRY_CONCURRENCY as f64;
    let policy = RetryPolicy::new(2, "5xx".parse().unwrap());

    async fn storm(layer: RetryLayer) -> usize {
        let barrier = Barrier::new(CLIENTS);
        let (a, log_a) = server_with(503, Some(barrier.clone())).await;
        let (b, log_b) = server_with(503, Some(barrier)).await;
        let svc = layer.layer(TwoEndpoints::<Full<Bytes>>::new([a, b]));
        assert_eq!(
            run_clients(svc, CLIENTS, 1).await,
            0,
            "every upstream fails"
        );
        log_a.hits() + log_b.hits()
    }

    let budget = Arc::new(ConcurrencyBudget::default());
    let layer = RetryLayer::new(policy.clone()).budget(budget.clone());
    let attempts = storm(layer.clone()).await;
    assert!(
        attempts as f64 <= bound,
        "with the budget: {attempts} attempts for {CLIENTS} requests, bound {bound}"
    );
    assert!(
        attempts > CLIENTS,
        "the budget still let some retries through"
    );
    assert!(layer.stats().overflow() > 0, "the budget refused retries");
    assert_eq!(budget.active_requests(), 0);
    assert_eq!(budget.retries_in_flight(), 0);

    // Without it, the same storm triples the load.
    let attempts = storm(RetryLayer::new(policy)).await;
    assert_eq!(attempts, CLIENTS * 3);
    assert!(attempts as f64 > bound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_bad_upstream_of_two_every_request_succeeds_on_the_other() {
    let (bad, bad_log) = server(503).await;
    let (good, good_log) = server(200).await;
    let policy = RetryPolicy {
        backoff: fast_backoff(),
        ..RetryPolicy::new(3, "5xx".parse().unwrap())
    };
    let svc = RetryLayer::new(policy).layer(TwoEndpoints::<Full<Bytes>>::new([bad, good]));
    const REQUESTS: usize = 60;
    assert_eq!(run_clients(svc, 12, REQUESTS / 12).await, REQUESTS);

    let bad_attempts = bad_log.attempts();
    assert!(
        !bad_attempts.is_empty(),
        "the balancer sent first tries to the bad host"
    );
    assert!(
        bad_attempts.iter().all(|a| a == "1"),
        "no retry went back to the bad host: {bad_attempts:?}"
    );
    let good_attempts = good_log.attempts();
    assert_eq!(
        good_attempts.len(),
        REQUESTS,
        "each request ended on the good host once"
    );
    let retries = good_attempts.iter().filter(|a| *a == "2").count();
    assert_eq!(
        retries,
        bad_attempts.len(),
        "every failure was retried once, on the other host"
    );
    assert!(good_attempts.iter().all(|a| a == "1" || a == "2"));
    assert!(
        good_log
            .requests
            .lock()
            .unwrap()
            .iter()
            .all(|(_, b)| b == "ping")
    );
}

type Chunked =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_cap_reaches_the_server_once_and_intact() {
    let (a, log_a) = server(503).await;
    let (b, log_b) = server(503).await;
    let layer = RetryLayer::new(RetryPolicy {
        backoff: fast_backoff(),
        ..RetryPolicy::new(3, "5xx".parse().unwrap())
    });
    let svc = layer.layer(TwoEndpoints::<Chunked>::new([a, b]));

    let data: Bytes = (0..200 * 1024).map(|i| (i % 253) as u8).collect();
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = data
        .chunks(16 * 1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let res = svc
        .oneshot(Request::post("/").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "the one real answer");

    let mut seen = log_a.requests.lock().unwrap().clone();
    seen.extend(log_b.requests.lock().unwrap().iter().cloned());
    assert_eq!(seen.len(), 1, "sent once, not retried");
    assert_eq!(seen[0].1, data, "intact");
    assert_eq!(layer.stats().abandoned(), 1);
    assert_eq!(layer.stats().retries(), 0);
}
