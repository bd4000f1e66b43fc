//! A retry avoids the endpoint of a failed attempt even when that attempt
//! left no response: a refused connection (an error naming the endpoint) or
//! a per-try timeout (the endpoint the balancer wrote in the attempt's slot).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::Empty;
use mesh_core::context::{EndpointError, RequestContext};
use mesh_core::{BoxError, MeshError};
use mesh_retry::{RetryBody, RetryLayer, RetryPolicy};
use tower::{Layer, ServiceExt};

type Seen = Arc<Mutex<Vec<Vec<SocketAddr>>>>;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

/// A stand-in for a balancer in front of endpoints: attempt n goes to
/// endpoint n (recording the tried endpoints it was told to avoid); the first
/// attempt fails as `first` says.
fn upstream(
    seen: Seen,
    first: &'static str,
) -> impl tower::Service<
    Request<RetryBody<Empty<bytes::Bytes>>>,
    Response = Response<()>,
    Error = BoxError,
    Future: Send,
> + Clone {
    tower::service_fn(move |req: Request<RetryBody<Empty<bytes::Bytes>>>| {
        let seen = seen.clone();
        async move {
            let ctx = RequestContext::get(req.extensions());
            let tried = ctx.map(|c| c.tried.as_slice().to_vec()).unwrap_or_default();
            let n = {
                let mut s = seen.lock().unwrap();
                s.push(tried);
                s.len() as u16
            };
            let chosen = addr(n);
            if let Some(slot) = ctx.and_then(|c| c.slot.as_ref()) {
                slot.set(chosen);
            }
            if n == 1 {
                match first {
                    "refused" => {
                        let err = MeshError::ConnectFailure(
                            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
                        );
                        return Err(EndpointError::new(chosen, err).into());
                    }
                    _ => std::future::pending::<()>().await,
                }
            }
            Ok::<_, BoxError>(Response::new(()))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_not_retried_on_the_same_endpoint() {
    let seen = Seen::default();
    let policy = RetryPolicy::new(2, "connect-failure".parse().unwrap());
    let svc = RetryLayer::new(policy).layer(upstream(seen.clone(), "refused"));
    let res = svc.oneshot(Request::new(Empty::new())).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(*seen.lock().unwrap(), vec![vec![], vec![addr(1)]]);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_not_retried_on_the_same_endpoint() {
    let seen = Seen::default();
    let mut policy = RetryPolicy::new(2, "5xx".parse().unwrap());
    policy.per_try_timeout = Some(Duration::from_millis(100));
    let svc = RetryLayer::new(policy).layer(upstream(seen.clone(), "hang"));
    let res = svc.oneshot(Request::new(Empty::new())).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![vec![], vec![addr(1)]],
        "the hung endpoint is avoided"
    );
}

#[tokio::test(start_paused = true)]
async fn without_attempt_endpoints_a_timed_out_endpoint_is_unknown_to_the_retry() {
    let seen = Seen::default();
    let mut policy = RetryPolicy::new(2, "5xx".parse().unwrap());
    policy.per_try_timeout = Some(Duration::from_millis(100));
    policy.attempt_endpoint = false;
    let svc = RetryLayer::new(policy).layer(upstream(seen.clone(), "hang"));
    let res = svc.oneshot(Request::new(Empty::new())).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![vec![], vec![]],
        "no slot: nothing tells the retry which endpoint hung"
    );
}

/// The deadlines the attempts of one request carried: the first hangs past
/// its 100 ms per-try timeout, the retry answers.
async fn attempt_deadlines(attempt_deadline: bool) -> Vec<Option<tokio::time::Instant>> {
    let deadlines = Arc::new(Mutex::new(Vec::new()));
    let d = deadlines.clone();
    let svc = tower::service_fn(move |req: Request<RetryBody<Empty<bytes::Bytes>>>| {
        let d = d.clone();
        async move {
            let deadline = RequestContext::get(req.extensions())
                .and_then(|c| c.deadline)
                .map(|x| x.0);
            let n = {
                let mut d = d.lock().unwrap();
                d.push(deadline);
                d.len()
            };
            if n == 1 {
                std::future::pending::<()>().await;
            }
            Ok::<_, BoxError>(Response::new(()))
        }
    });
    let mut policy = RetryPolicy::new(1, "5xx".parse().unwrap());
    policy.per_try_timeout = Some(Duration::from_millis(100));
    policy.timeout = Some(Duration::from_secs(10));
    policy.attempt_deadline = attempt_deadline;
    let res = RetryLayer::new(policy)
        .layer(svc)
        .oneshot(Request::new(Empty::new()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    deadlines.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn each_attempt_carries_its_deadline() {
    let start = tokio::time::Instant::now();
    let d = attempt_deadlines(true).await;
    assert_eq!(d.len(), 2);
    // The first attempt's deadline is its per-try timeout; the retry's is
    // its own per-try timeout, after the first timed out and a backoff.
    assert_eq!(d[0], Some(start + Duration::from_millis(100)));
    assert!(d[1].unwrap() >= start + Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn attempt_deadlines_can_be_kept_out_of_the_context() {
    assert_eq!(attempt_deadlines(false).await, vec![None, None]);
}
