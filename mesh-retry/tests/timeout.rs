//! The route timeout alone ([`TimeoutLayer`]): on tokio's paused clock over
//! scripted services, and over a real hyper server on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic on their own setup

use std::convert::Infallible;
use std::future::{Future, pending};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::context::{AttemptDeadline, RequestContext};
use mesh_core::{BoxError, MeshError};
use mesh_retry::{Timeout, TimeoutLayer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

/// A service answering 200 after `delay` (or never, for `None`), reporting the
/// deadline the request context carried.
fn upstream(
    delay: Option<Duration>,
) -> impl Service<Request<()>, Response = Response<Option<Instant>>, Error = Infallible, Future: Send>
+ Clone {
    service_fn(move |req: Request<()>| async move {
        let deadline = RequestContext::get(req.extensions())
            .and_then(|c| c.deadline)
            .map(|d| d.0);
        match delay {
            Some(d) => tokio::time::sleep(d).await,
            None => pending().await,
        }
        Ok(Response::new(deadline))
    })
}

fn timeout_of(err: &BoxError) -> Duration {
    match MeshError::find(&**err) {
        Some(MeshError::RequestTimeout(d)) => *d,
        other => panic!("not a request timeout: {other:?} ({err})"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_times_out_at_its_deadline() {
    let svc = TimeoutLayer::new(Duration::from_secs(2)).layer(upstream(None));
    let started = Instant::now();
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(timeout_of(&err), Duration::from_secs(2));
    let mesh = MeshError::find(&*err).unwrap();
    assert_eq!(mesh.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(mesh.flag().to_string(), "UT");
}

#[tokio::test(start_paused = true)]
async fn an_answer_before_the_deadline_passes_through() {
    let svc = TimeoutLayer::new(Duration::from_secs(2))
        .layer(upstream(Some(Duration::from_millis(1999))));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn the_inner_error_is_returned_as_is() {
    let failing =
        service_fn(|_: Request<()>| async { Err::<Response<()>, _>(BoxError::from("refused")) });
    let err = Timeout::new(failing, Duration::from_secs(1))
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "refused");
}

#[tokio::test(start_paused = true)]
async fn a_caller_deadline_shortens_the_timeout_never_lengthens_it() {
    let svc = TimeoutLayer::new(Duration::from_secs(2)).layer(upstream(None));
    let with = |v: &str| {
        Request::builder()
            .header("grpc-timeout", v)
            .body(())
            .unwrap()
    };

    let started = Instant::now();
    let err = svc.clone().oneshot(with("300m")).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(timeout_of(&err), Duration::from_millis(300));

    let started = Instant::now();
    svc.clone().oneshot(with("10S")).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2), "not lengthened");

    let started = Instant::now();
    svc.oneshot(with("soon")).await.unwrap_err();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "a malformed deadline is ignored"
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_route_timeout_the_callers_deadline_is_the_timeout() {
    let svc = TimeoutLayer::new(Duration::ZERO).layer(upstream(Some(Duration::from_secs(3600))));
    let req = Request::builder()
        .header("grpc-timeout", "5S")
        .body(())
        .unwrap();
    let started = Instant::now();
    svc.clone().oneshot(req).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(5));

    // No timeout at all: the hour-long answer arrives.
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_named_deadline_header_replaces_grpc_timeout() {
    let name = HeaderName::from_static("x-envoy-upstream-rq-timeout-ms");
    let svc = TimeoutLayer::new(Duration::from_secs(2))
        .deadline_header(Some(name.clone()))
        .layer(upstream(None));
    let req = Request::builder()
        .header("grpc-timeout", "100m")
        .header(&name, "700")
        .body(())
        .unwrap();
    let started = Instant::now();
    svc.oneshot(req).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(700));

    let deaf = TimeoutLayer::new(Duration::from_secs(2))
        .deadline_header(None)
        .layer(upstream(None));
    let req = Request::builder()
        .header("grpc-timeout", "100m")
        .body(())
        .unwrap();
    let started = Instant::now();
    deaf.oneshot(req).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_goes_into_the_request_context_unless_turned_off() {
    let svc = TimeoutLayer::new(Duration::from_secs(2)).layer(upstream(Some(Duration::ZERO)));
    let started = Instant::now();
    let res = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(*res.body(), Some(started + Duration::from_secs(2)));

    // An outer layer's earlier deadline stands; a later one is replaced.
    let mut req = Request::new(());
    let earlier = started + Duration::from_secs(1);
    RequestContext::get_mut(req.extensions_mut()).deadline = Some(AttemptDeadline(earlier));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(*res.body(), Some(earlier));
    let mut req = Request::new(());
    RequestContext::get_mut(req.extensions_mut()).deadline =
        Some(AttemptDeadline(started + Duration::from_secs(9)));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(*res.body(), Some(started + Duration::from_secs(2)));

    let off = TimeoutLayer::new(Duration::from_secs(2))
        .attempt_deadline(false)
        .layer(upstream(Some(Duration::ZERO)));
    assert_eq!(*off.oneshot(Request::new(())).await.unwrap().body(), None);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_too_long_for_the_clock_is_no_timeout() {
    let svc = TimeoutLayer::new(Duration::MAX).layer(upstream(Some(Duration::from_secs(3600))));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_counts_from_the_call_not_the_first_poll() {
    let mut svc = TimeoutLayer::new(Duration::from_secs(2)).layer(upstream(None));
    let started = Instant::now();
    let fut = svc.ready().await.unwrap().call(Request::new(()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let err = fut.await.unwrap_err();
    assert_eq!(timeout_of(&err), Duration::from_secs(2));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

/// A service that is ready only once `open` is set.
#[derive(Clone)]
struct Gate {
    open: Arc<AtomicBool>,
}

impl Service<Request<()>> for Gate {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.open.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(())))
    }
}

#[test]
fn readiness_is_the_inner_services() {
    let open = Arc::new(AtomicBool::new(false));
    let mut svc = TimeoutLayer::new(Duration::from_secs(1)).layer(Gate { open: open.clone() });
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_pending());
    open.store(true, Ordering::SeqCst);
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
}

#[test]
fn an_answer_at_hand_needs_no_runtime() {
    // The timer is made only when the request waits: a ready answer is
    // returned outside any runtime, where making a `Sleep` would panic.
    let mut svc = TimeoutLayer::new(Duration::from_secs(1))
        .attempt_deadline(false)
        .layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = pin!(svc.call(Request::new(())));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(res)) => assert_eq!(res.status(), StatusCode::OK),
        other => panic!("not answered at once: {:?}", other.map(|r| r.map(|_| ()))),
    }
}

/// A hyper server on 127.0.0.1:0: `/slow` never answers, and reports its
/// connection closed; anything else answers `body` at once.
async fn server(closed: Arc<tokio::sync::Notify>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    if req.uri().path() == "/slow" {
                        pending::<()>().await;
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"answer"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                closed.notify_one();
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_real_server_a_timeout_cancels_the_upstream_request() {
    let closed = Arc::new(tokio::sync::Notify::new());
    let addr = server(closed.clone()).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let svc = TimeoutLayer::new(Duration::from_millis(200)).layer(client);

    let res = svc
        .clone()
        .oneshot(
            Request::get(format!("http://{addr}/fast"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "answer"
    );

    let started = std::time::Instant::now();
    let slow = svc.oneshot(
        Request::get(format!("http://{addr}/slow"))
            .body(Empty::new())
            .unwrap(),
    );
    let err = tokio::time::timeout(Duration::from_secs(30), slow)
        .await
        .expect("the layer did not time the request out")
        .unwrap_err();
    assert_eq!(timeout_of(&err), Duration::from_millis(200));
    assert!(started.elapsed() >= Duration::from_millis(200));
    // Dropping the attempt closed its connection: the server sees it go.
    tokio::time::timeout(Duration::from_secs(30), closed.notified())
        .await
        .expect("the server's connection was not closed");
}
