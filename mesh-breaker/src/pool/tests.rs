//! Pool limits: refusal at once with 503 UO, and room again after.

use std::future::poll_fn;
use std::sync::Arc;

use futures_util::FutureExt;
use http::{Request, Response};
use mesh_core::{BoxError, MeshError, OVERLOADED_HEADER, Overload, RESPONSE_FLAGS_HEADER};
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};

use super::*;

/// An endpoint that answers once the test releases a permit.
fn held(
    release: Arc<Semaphore>,
) -> impl Service<Request<()>, Response = Response<()>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(move |_: Request<()>| {
        let release = release.clone();
        async move {
            release.acquire().await?.forget();
            Ok::<_, BoxError>(Response::new(()))
        }
    })
}

fn overload(err: &BoxError) -> Option<Overload> {
    match MeshError::find(&**err) {
        Some(MeshError::Overloaded(why)) => Some(*why),
        _ => None,
    }
}

#[tokio::test]
async fn the_n_plus_first_concurrent_request_is_refused_until_one_finishes() {
    let layer = ConnectionPoolLayer::new(PoolLimits {
        max_requests: 3,
        ..PoolLimits::default()
    });
    let release = Arc::new(Semaphore::new(0));
    let svc = layer.layer(held(release.clone()));

    let mut in_flight: Vec<_> = (0..3)
        .map(|_| tokio::spawn(svc.clone().oneshot(Request::new(()))))
        .collect();
    while layer.stats().requests_active < 3 {
        tokio::task::yield_now().await;
    }
    let err = svc.clone().oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(overload(&err), Some(Overload::MaxRequests));
    let res = MeshError::find(&*err).unwrap().to_response::<String>();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()[RESPONSE_FLAGS_HEADER], "UO");
    assert_eq!(res.headers()[OVERLOADED_HEADER], "true");
    assert_eq!(layer.stats().requests_overflow, 1);

    release.add_permits(1);
    let done = futures_util::future::select_all(in_flight.iter_mut()).await;
    assert!(done.0.unwrap().is_ok());
    assert_eq!(layer.stats().requests_active, 2);
    // Room again: the next one is admitted (and held).
    let mut next = svc.clone();
    poll_fn(|cx| next.poll_ready(cx)).await.unwrap();
    let admitted = tokio::spawn(next.call(Request::new(())));
    assert_eq!(layer.stats().requests_active, 3);
    release.add_permits(3);
    admitted.await.unwrap().unwrap();
    for h in in_flight.into_iter().filter(|h| !h.is_finished()) {
        h.await.unwrap().unwrap();
    }
    let s = layer.stats();
    assert_eq!((s.requests_active, s.requests_overflow), (0, 1));
}

#[tokio::test]
async fn requests_waiting_for_the_balancer_are_pending_and_capped() {
    let layer = ConnectionPoolLayer::new(PoolLimits {
        max_pending_requests: 1,
        ..PoolLimits::default()
    });
    let (mock, mut handle) = tower_test::mock::pair::<Request<()>, Response<()>>();
    handle.allow(0);
    let mut a = layer.layer(mock);
    let mut b = a.clone();
    assert!(poll_fn(|cx| a.poll_ready(cx)).now_or_never().is_none());
    assert_eq!(layer.stats().pending_active, 1);
    // b cannot wait too: ready at once, and its call is refused.
    let err = b
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(overload(&err), Some(Overload::MaxPendingRequests));
    assert_eq!(layer.stats().pending_overflow, 1);
    assert_eq!(layer.stats().requests_active, 1, "only a is admitted");

    handle.allow(1);
    poll_fn(|cx| a.poll_ready(cx)).await.unwrap();
    assert_eq!(layer.stats().pending_active, 0);
    let call = a.call(Request::new(()));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(()));
    call.await.unwrap();
    assert_eq!(layer.stats().requests_active, 0);
}

#[tokio::test]
async fn dropping_an_admitted_service_frees_its_slot() {
    let layer = ConnectionPoolLayer::new(PoolLimits {
        max_requests: 1,
        ..PoolLimits::default()
    });
    let release = Arc::new(Semaphore::new(0));
    let mut a = layer.layer(held(release));
    poll_fn(|cx| a.poll_ready(cx)).await.unwrap();
    assert_eq!(layer.stats().requests_active, 1);
    drop(a);
    assert_eq!(layer.stats().requests_active, 0);
}

#[test]
fn retries_and_connections_share_counters_with_other_layers() {
    let retries = mesh_core::limit::SharedLimit::unlimited();
    let layer = ConnectionPoolLayer::with_retry_limit(
        PoolLimits {
            max_retries: 2,
            max_connections: 1,
            ..PoolLimits::default()
        },
        retries.clone(),
    );
    let r1 = retries.try_acquire().unwrap(); // taken by "mesh-retry"
    let _r2 = layer.try_acquire_retry().unwrap();
    assert!(matches!(
        layer.try_acquire_retry(),
        Err(MeshError::Overloaded(Overload::MaxRetries))
    ));
    drop(r1);
    assert!(layer.try_acquire_retry().is_ok());
    let _c = layer.try_acquire_connection().unwrap();
    assert!(layer.try_acquire_connection().is_err());
    let s = layer.stats();
    assert_eq!(
        (
            s.retries_overflow,
            s.connections_overflow,
            s.connections_active
        ),
        (1, 1, 1)
    );
    layer.set_limits(&PoolLimits {
        max_connections: 2,
        ..PoolLimits::envoy()
    });
    assert!(layer.try_acquire_connection().is_ok());
    assert_eq!(layer.retry_limit().max(), 3);
}
