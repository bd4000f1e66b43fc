//! The classic breaker on tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use mesh_core::{BoxError, MeshError, Overload};
use tokio::time::sleep;
use tower::{Layer, Service, ServiceExt};

use super::*;

#[derive(Clone)]
struct Upstream {
    status: Arc<AtomicU16>,
    calls: Arc<AtomicUsize>,
}

impl Upstream {
    fn new(status: u16) -> Self {
        Upstream {
            status: Arc::new(AtomicU16::new(status)),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn service(
        &self,
    ) -> impl Service<Request<()>, Response = Response<()>, Error = BoxError> + Clone {
        let this = self.clone();
        tower::service_fn(move |_: Request<()>| {
            this.calls.fetch_add(1, Ordering::Relaxed);
            let status = this.status.load(Ordering::Relaxed);
            async move {
                match status {
                    1 => Err::<Response<()>, BoxError>(
                        MeshError::Overloaded(Overload::MaxRequests).into(),
                    ),
                    s => Ok(Response::builder().status(s).body(()).unwrap()),
                }
            }
        })
    }
}

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        failure_ratio: 0.5,
        window: 10,
        min_requests: 4,
        open_for: Duration::from_secs(10),
        half_open_probes: 2,
    }
}

async fn send<S>(svc: &S) -> Result<u16, Option<Overload>>
where
    S: Service<
            Request<()>,
            Error = BoxError,
            Response = Response<crate::body::ReportBody<(), mesh_core::classify::NeverEos>>,
        > + Clone,
{
    match svc.clone().oneshot(Request::new(())).await {
        Ok(res) => Ok(res.status().as_u16()),
        Err(e) => Err(match MeshError::find(&*e) {
            Some(MeshError::Overloaded(o)) => Some(*o),
            _ => None,
        }),
    }
}

#[tokio::test(start_paused = true)]
async fn opens_on_the_failure_ratio_once_enough_requests_are_seen() {
    let layer = CircuitBreakerLayer::new(config());
    let up = Upstream::new(200);
    let svc = layer.layer(up.service());
    up.status.store(500, Ordering::Relaxed);
    for _ in 0..3 {
        assert_eq!(send(&svc).await, Ok(500));
    }
    assert_eq!(layer.state(), BreakerState::Closed, "3 < min_requests");
    up.status.store(200, Ordering::Relaxed);
    for _ in 0..4 {
        send(&svc).await.unwrap();
    }
    // 3 failures of 7: under 50 %.
    assert_eq!(layer.state(), BreakerState::Closed);
    up.status.store(503, Ordering::Relaxed);
    assert_eq!(send(&svc).await, Ok(503)); // 4 / 8 = 50 %
    assert_eq!(layer.state(), BreakerState::Open);
    let calls = up.calls.load(Ordering::Relaxed);
    assert_eq!(send(&svc).await, Err(Some(Overload::CircuitOpen)));
    assert_eq!(
        up.calls.load(Ordering::Relaxed),
        calls,
        "never reaches upstream"
    );
    let s = layer.stats();
    assert_eq!((s.opened_total, s.rejected_total), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_window_slides_old_failures_out() {
    let layer = CircuitBreakerLayer::new(CircuitBreakerConfig {
        window: 4,
        ..config()
    });
    let up = Upstream::new(500);
    let svc = layer.layer(up.service());
    send(&svc).await.unwrap();
    up.status.store(200, Ordering::Relaxed);
    for _ in 0..4 {
        send(&svc).await.unwrap();
    }
    assert_eq!(layer.stats().window_failures, 0, "the 500 slid out");
    assert_eq!(layer.stats().window_requests, 4);
}

#[tokio::test(start_paused = true)]
async fn a_full_healthy_window_still_slides_a_new_failure_out_after_window_requests() {
    // Successes on a full window without failures leave it untouched (the
    // read-only fast path); a failure after them must stay for exactly
    // `window` outcomes, as in any other position of the ring.
    let layer = CircuitBreakerLayer::new(CircuitBreakerConfig {
        window: 4,
        min_requests: 100,
        ..config()
    });
    let up = Upstream::new(200);
    let svc = layer.layer(up.service());
    for _ in 0..11 {
        send(&svc).await.unwrap();
    }
    assert_eq!(
        (layer.stats().window_requests, layer.stats().window_failures),
        (4, 0)
    );
    up.status.store(500, Ordering::Relaxed);
    send(&svc).await.unwrap();
    up.status.store(200, Ordering::Relaxed);
    for _ in 0..3 {
        send(&svc).await.unwrap();
        assert_eq!(layer.stats().window_failures, 1, "still in the window");
    }
    send(&svc).await.unwrap();
    assert_eq!(layer.stats().window_failures, 0, "slid out after 4");
    assert_eq!(layer.stats().window_requests, 4);
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_probes_through_and_closes_when_they_succeed() {
    let layer = CircuitBreakerLayer::new(config());
    let up = Upstream::new(500);
    let svc = layer.layer(up.service());
    for _ in 0..4 {
        send(&svc).await.unwrap();
    }
    assert_eq!(layer.state(), BreakerState::Open);
    sleep(Duration::from_millis(9_999)).await;
    assert_eq!(send(&svc).await, Err(Some(Overload::CircuitOpen)));
    sleep(Duration::from_millis(1)).await;

    // Two probes, held in flight: a third request is refused.
    up.status.store(200, Ordering::Relaxed);
    let mut p1 = svc.clone();
    let mut p2 = svc.clone();
    let f1 = p1.ready().await.unwrap().call(Request::new(()));
    assert_eq!(layer.state(), BreakerState::HalfOpen);
    let f2 = p2.ready().await.unwrap().call(Request::new(()));
    assert_eq!(send(&svc).await, Err(Some(Overload::CircuitOpen)));
    f1.await.unwrap();
    assert_eq!(layer.state(), BreakerState::HalfOpen, "one of two probes");
    f2.await.unwrap();
    assert_eq!(layer.state(), BreakerState::Closed);
    assert_eq!(layer.stats().window_requests, 0, "a fresh window");
    assert_eq!(send(&svc).await, Ok(200));
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_again_and_a_dropped_probe_is_given_back() {
    let layer = CircuitBreakerLayer::new(CircuitBreakerConfig {
        half_open_probes: 1,
        ..config()
    });
    let up = Upstream::new(500);
    let svc = layer.layer(up.service());
    for _ in 0..4 {
        send(&svc).await.unwrap();
    }
    sleep(Duration::from_secs(10)).await;
    // A probe admitted and dropped unanswered frees its slot.
    let mut p = svc.clone();
    let fut = p.ready().await.unwrap().call(Request::new(()));
    drop(fut);
    assert_eq!(layer.state(), BreakerState::HalfOpen);
    assert_eq!(
        send(&svc).await,
        Ok(500),
        "the slot came back; this probe fails"
    );
    assert_eq!(layer.state(), BreakerState::Open);
    assert_eq!(layer.stats().opened_total, 2);
}

#[tokio::test(start_paused = true)]
async fn the_mesh_own_refusals_do_not_count() {
    let layer = CircuitBreakerLayer::new(config());
    let up = Upstream::new(1);
    let svc = layer.layer(up.service());
    for _ in 0..20 {
        assert_eq!(send(&svc).await, Err(Some(Overload::MaxRequests)));
    }
    assert_eq!(layer.state(), BreakerState::Closed);
    assert_eq!(layer.stats().window_requests, 0);
}

#[tokio::test(start_paused = true)]
async fn an_outcome_from_an_earlier_state_is_ignored() {
    let layer = CircuitBreakerLayer::new(CircuitBreakerConfig {
        half_open_probes: 1,
        ..config()
    });
    let up = Upstream::new(500);
    let svc = layer.layer(up.service());
    // Admitted while closed, answered only once the breaker is half-open.
    let mut late = svc.clone();
    let late = late.ready().await.unwrap().call(Request::new(()));
    for _ in 0..4 {
        send(&svc).await.unwrap();
    }
    assert_eq!(layer.state(), BreakerState::Open);
    sleep(Duration::from_secs(10)).await;
    up.status.store(200, Ordering::Relaxed);
    let mut probe = svc.clone();
    let probe = probe.ready().await.unwrap().call(Request::new(()));
    assert_eq!(layer.state(), BreakerState::HalfOpen);
    probe.await.unwrap();
    assert_eq!(layer.state(), BreakerState::Closed);
    // Closed again, but in a later generation: the late 500 does not count.
    assert_eq!(late.await.unwrap().status(), 500);
    let s = layer.stats();
    assert_eq!((s.window_requests, s.window_failures), (0, 0));
    assert_eq!(s.opened_total, 1);
}
