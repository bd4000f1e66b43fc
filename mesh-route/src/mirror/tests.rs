use std::convert::Infallible;
use std::future::pending;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use mesh_core::limit::SharedLimit;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};

use super::{MirrorLayer, MirrorStats};
use crate::body::RouteBody;

type Body = RouteBody<Full<Bytes>>;
type Shadow = BoxCloneSyncService<Request<Body>, Response<()>, Infallible>;

/// What a shadow saw: its Host and its body.
type Seen = (String, Bytes);

/// A shadow that reports what it received and answers 500.
fn recording(tx: mpsc::UnboundedSender<Seen>) -> Shadow {
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<Body>| {
        let tx = tx.clone();
        async move {
            let host = req.headers()["host"].to_str().unwrap().to_owned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let _ = tx.send((host, body));
            Ok(Response::builder().status(500).body(()).unwrap())
        }
    }))
}

/// A shadow that never answers.
fn hanging() -> Shadow {
    BoxCloneSyncService::new(tower::service_fn(|_: Request<Body>| async {
        pending::<()>().await;
        Ok(Response::new(()))
    }))
}

/// The primary: reads the whole body and echoes it.
fn echo() -> impl Service<Request<Body>, Response = Response<Bytes>, Error = Infallible> + Clone {
    tower::service_fn(|req: Request<Body>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Ok(Response::new(body))
    })
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/reviews")
        .header("host", "reviews:9080")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// Lets spawned shadow tasks run until they are all done.
async fn settle(stats: &MirrorStats) {
    for _ in 0..10_000 {
        if stats.completed() + stats.failed() + stats.too_large() + stats.incomplete()
            >= stats.spawned()
        {
            return;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn copy_carries_the_body_and_a_shadow_host() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let layer = MirrorLayer::new().with_target(recording(tx), None);
    let stats = layer.get_stats().clone();
    let svc = ServiceBuilder::new().layer(layer).service(echo());
    let res = svc.oneshot(post("hello")).await.unwrap();
    assert_eq!(res.body(), "hello", "the primary got the body whole");
    let (host, body) = rx.recv().await.unwrap();
    assert_eq!(host, "reviews-shadow:9080");
    assert_eq!(body, "hello");
    settle(&stats).await;
    assert_eq!((stats.spawned(), stats.completed()), (1, 1));
}

#[tokio::test]
async fn ten_percent_mirrors_ten_percent() {
    // Binomial(10000, 0.1): sd = 30; ±150 is 5 sd (a correct layer fails this
    // about once in 1.7 million runs; 9 % or 11 % fail it nearly always).
    let (tx, mut rx) = mpsc::unbounded_channel();
    let layer = MirrorLayer::new().with_target(recording(tx), Some(10.0));
    let stats = layer.get_stats().clone();
    let mut svc = ServiceBuilder::new().layer(layer).service(echo());
    for _ in 0..10_000 {
        svc.ready().await.unwrap().call(post("x")).await.unwrap();
    }
    settle(&stats).await;
    let mut copies = 0i64;
    while rx.try_recv().is_ok() {
        copies += 1;
    }
    assert!((copies - 1000).abs() < 150, "{copies}");
    assert_eq!(stats.spawned() as i64, copies);
}

#[tokio::test]
async fn zero_percent_mirrors_nothing() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let layer = MirrorLayer::new().with_target(recording(tx), Some(0.0));
    let mut svc = ServiceBuilder::new().layer(layer).service(echo());
    for _ in 0..200 {
        svc.ready().await.unwrap().call(post("x")).await.unwrap();
    }
    tokio::task::yield_now().await;
    assert!(rx.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn hanging_shadows_are_bounded_and_never_delay_the_primary() {
    let limit = SharedLimit::new(2);
    let layer = MirrorLayer::new()
        .with_target(hanging(), None)
        .in_flight_limit(limit.clone())
        .timeout(Some(Duration::from_secs(15)));
    let stats = layer.get_stats().clone();
    let mut svc = ServiceBuilder::new().layer(layer).service(echo());
    let start = Instant::now();
    for _ in 0..5 {
        let res = svc.ready().await.unwrap().call(post("body")).await.unwrap();
        assert_eq!(res.body(), "body");
    }
    // With the clock paused, any wait of the primary on a shadow would show.
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(stats.spawned(), 2);
    assert_eq!(stats.overflow(), 3, "excess copies dropped and counted");
    tokio::task::yield_now().await;
    assert_eq!(limit.in_flight(), 2);
    // The deadline frees the slots.
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert_eq!(limit.in_flight(), 0);
    assert_eq!(stats.failed(), 2);
}

#[tokio::test]
async fn bodies_over_the_cap_are_not_mirrored() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let layer = MirrorLayer::new()
        .with_target(recording(tx), None)
        .body_cap(4);
    let stats = layer.get_stats().clone();
    let svc = ServiceBuilder::new().layer(layer).service(echo());
    let res = svc.oneshot(post("longer than four")).await.unwrap();
    assert_eq!(res.body(), "longer than four", "the primary is intact");
    settle(&stats).await;
    assert_eq!(stats.too_large(), 1);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn suffix_can_be_turned_off() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let layer = MirrorLayer::new()
        .with_target(recording(tx), None)
        .shadow_host_suffix(false);
    let svc = ServiceBuilder::new().layer(layer).service(echo());
    svc.oneshot(post("x")).await.unwrap();
    assert_eq!(rx.recv().await.unwrap().0, "reviews:9080");
}

#[tokio::test]
async fn several_mirrors_each_get_a_copy() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let layer = MirrorLayer::new()
        .with_target(recording(tx.clone()), None)
        .with_target(recording(tx), Some(100.0));
    let svc = ServiceBuilder::new().layer(layer).service(echo());
    svc.oneshot(post("twice")).await.unwrap();
    assert_eq!(rx.recv().await.unwrap().1, "twice");
    assert_eq!(rx.recv().await.unwrap().1, "twice");
}

#[tokio::test]
async fn primary_failing_before_reading_the_body_sends_no_copy() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let layer = MirrorLayer::new().with_target(recording(tx), None);
    let stats = layer.get_stats().clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|req: Request<Body>| async move {
            drop(req);
            Err::<Response<()>, _>("refused")
        });
    assert!(svc.oneshot(post("unread")).await.is_err());
    settle(&stats).await;
    assert_eq!(stats.incomplete(), 1);
    assert!(rx.try_recv().is_err());
}

#[test]
fn outside_a_runtime_nothing_is_mirrored_and_nothing_panics() {
    let layer = MirrorLayer::new().with_target(hanging(), None);
    let stats = layer.get_stats().clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new("ok")) });
    let res = svc.oneshot(post("x")).now_or_never().unwrap().unwrap();
    assert_eq!(*res.body(), "ok");
    assert_eq!(stats.no_runtime(), 1);
}
