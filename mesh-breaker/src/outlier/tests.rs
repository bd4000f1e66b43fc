//! Envoy's outlier detection, step by step on tokio's paused clock.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use mesh_core::classify::GrpcClassifier;
use mesh_core::{BoxError, MeshError, Overload};
use tokio::time::{Instant, sleep, sleep_until};
use tower::{Service, ServiceExt};

use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// An endpoint answering with whatever status its handle holds.
#[derive(Clone)]
struct Endpoint {
    status: Arc<AtomicU16>,
}

impl Endpoint {
    fn new(status: u16) -> Self {
        Endpoint {
            status: Arc::new(AtomicU16::new(status)),
        }
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    fn service(
        &self,
    ) -> impl Service<Request<()>, Response = Response<()>, Error = BoxError, Future: Send>
    + Clone
    + Send
    + 'static {
        let status = self.status.clone();
        tower::service_fn(move |_: Request<()>| {
            let status = status.load(Ordering::Relaxed);
            async move {
                match status {
                    // 0 stands for "connection refused".
                    0 => Err::<Response<()>, BoxError>(
                        std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
                    ),
                    1 => Err(MeshError::Overloaded(Overload::MaxRequests).into()),
                    s => Ok(Response::builder().status(s).body(()).unwrap()),
                }
            }
        })
    }
}

fn is_ready<S: Service<Request<()>>>(svc: &mut S) -> bool {
    poll_fn(|cx| svc.poll_ready(cx)).now_or_never().is_some()
}

async fn hit<S>(svc: &mut S, n: usize)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        let svc = svc.ready().await.unwrap();
        let _ = svc.call(Request::new(())).await;
    }
}

fn ejected(d: &OutlierDetector, a: SocketAddr) -> bool {
    d.endpoint(a).unwrap().ejected
}

fn all_in() -> OutlierDetection {
    OutlierDetection {
        max_ejection_percent: 100,
        ..OutlierDetection::default()
    }
}

#[tokio::test(start_paused = true)]
async fn five_5xx_eject_for_30s_then_60s_until_the_next_sweep() {
    let t0 = Instant::now();
    let d = OutlierDetector::new(all_in());
    let ep = Endpoint::new(503);
    let mut gate = d.gate(addr(1), ep.service());

    sleep(Duration::from_secs(5)).await;
    hit(&mut gate, 4).await;
    assert!(!ejected(&d, addr(1)), "4 errors do not eject");
    assert_eq!(d.endpoint(addr(1)).unwrap().consecutive_5xx, 4);
    hit(&mut gate, 1).await;
    let state = d.endpoint(addr(1)).unwrap();
    assert!(state.ejected, "the 5th 5xx ejects at once");
    assert_eq!(state.ejection_time, Some(Duration::from_secs(30)));
    assert_eq!(state.multiplier, 1);
    assert!(!is_ready(&mut gate), "an ejected endpoint is not ready");
    let s = d.stats();
    assert_eq!(s.enforced(EjectionKind::Consecutive5xx), 1);
    assert_eq!((s.ejections_active, s.ejections_total), (1, 1));

    // A task waiting on the gate is woken by the sweep that returns it.
    let mut waiter = gate.clone();
    let woke = tokio::spawn(async move {
        waiter.ready().await.unwrap();
        Instant::now()
    });

    // Time is up at 35 s, but only the sweep at 40 s returns the endpoint.
    sleep_until(t0 + Duration::from_millis(39_900)).await;
    assert!(ejected(&d, addr(1)), "still ejected until the sweep");
    assert!(!is_ready(&mut gate));
    sleep_until(t0 + Duration::from_millis(40_001)).await;
    assert!(!ejected(&d, addr(1)));
    assert!(is_ready(&mut gate));
    assert_eq!(woke.await.unwrap() - t0, Duration::from_secs(40));

    // Second ejection: 60 s, from 41 s to 101 s, returned at the 110 s sweep.
    sleep_until(t0 + Duration::from_secs(41)).await;
    hit(&mut gate, 5).await;
    let state = d.endpoint(addr(1)).unwrap();
    assert!(state.ejected);
    assert_eq!(state.multiplier, 2);
    assert_eq!(state.ejection_time, Some(Duration::from_secs(60)));
    sleep_until(t0 + Duration::from_millis(109_900)).await;
    assert!(ejected(&d, addr(1)));
    sleep_until(t0 + Duration::from_millis(110_001)).await;
    assert!(!ejected(&d, addr(1)));
    assert_eq!(d.endpoint(addr(1)).unwrap().ejections_total, 2);
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_count() {
    let d = OutlierDetector::new(all_in());
    let ep = Endpoint::new(500);
    let mut gate = d.gate(addr(1), ep.service());
    hit(&mut gate, 4).await;
    ep.set(200);
    hit(&mut gate, 1).await;
    assert_eq!(d.endpoint(addr(1)).unwrap().consecutive_5xx, 0);
    ep.set(500);
    hit(&mut gate, 4).await;
    assert!(!ejected(&d, addr(1)), "4 + success + 4 is no run of 5");
    hit(&mut gate, 1).await;
    assert!(ejected(&d, addr(1)));
}

#[tokio::test(start_paused = true)]
async fn max_ejection_percent_uses_envoys_current_rule() {
    // 3 endpoints at 10 %: (0 + 1) / 3 = 33 % > 10 %, nothing is ejected.
    let d = OutlierDetector::new(OutlierDetection::default());
    let bad = Endpoint::new(503);
    let good = Endpoint::new(200);
    let mut a = d.gate(addr(1), bad.service());
    let _b = d.gate(addr(2), good.service());
    let _c = d.gate(addr(3), good.service());
    hit(&mut a, 5).await;
    assert!(!ejected(&d, addr(1)));
    assert!(is_ready(&mut a));
    let s = d.stats();
    assert_eq!(s.detected(EjectionKind::Consecutive5xx), 1);
    assert_eq!((s.ejections_overflow, s.ejections_total), (1, 0));
    hit(&mut a, 5).await;
    assert_eq!(d.stats().ejections_overflow, 2, "the count starts again");

    // 10 endpoints at 10 %: one ejection fits exactly, a second does not.
    let d = OutlierDetector::new(OutlierDetection::default());
    let mut gates: Vec<_> = (1..=10).map(|p| d.gate(addr(p), bad.service())).collect();
    hit(&mut gates[0], 5).await;
    hit(&mut gates[1], 5).await;
    assert!(ejected(&d, addr(1)));
    assert!(!ejected(&d, addr(2)));
    assert_eq!(d.stats().ejections_active, 1);
    assert_eq!(d.stats().ejections_overflow, 1);
}

#[tokio::test(start_paused = true)]
async fn always_eject_one_host_allows_a_first_ejection_past_the_cap() {
    let d = OutlierDetector::new(OutlierDetection {
        always_eject_one_host: true,
        ..OutlierDetection::default()
    });
    let bad = Endpoint::new(503);
    let mut gates: Vec<_> = (1..=3).map(|p| d.gate(addr(p), bad.service())).collect();
    hit(&mut gates[0], 5).await;
    assert!(ejected(&d, addr(1)), "one ejection even at 33 % > 10 %");
    hit(&mut gates[1], 5).await;
    assert!(!ejected(&d, addr(2)), "but only one");
    assert_eq!(d.stats().ejections_overflow, 1);
}

#[tokio::test(start_paused = true)]
async fn the_multiplier_decays_by_one_per_healthy_sweep() {
    let t0 = Instant::now();
    let d = OutlierDetector::new(all_in());
    let ep = Endpoint::new(503);
    let mut gate = d.gate(addr(1), ep.service());
    let m = |d: &OutlierDetector| d.endpoint(addr(1)).unwrap().multiplier;

    sleep_until(t0 + Duration::from_secs(1)).await;
    hit(&mut gate, 5).await; // ejected 1 s → 31 s, back at the 40 s sweep
    sleep_until(t0 + Duration::from_secs(41)).await;
    assert_eq!(m(&d), 1, "the sweep that returns it does not decay it");
    hit(&mut gate, 5).await; // multiplier 2: 60 s, 41 s → 101 s, back at 110 s
    assert_eq!(m(&d), 2);
    sleep_until(t0 + Duration::from_millis(110_001)).await;
    assert!(!ejected(&d, addr(1)));
    assert_eq!(m(&d), 2);
    sleep_until(t0 + Duration::from_millis(120_001)).await;
    assert_eq!(m(&d), 1, "one healthy sweep");
    // Ejected now, it gets multiplier 2 again: 60 s.
    hit(&mut gate, 5).await;
    assert_eq!(
        d.endpoint(addr(1)).unwrap().ejection_time,
        Some(Duration::from_secs(60))
    );
    sleep_until(t0 + Duration::from_millis(190_001)).await;
    assert!(!ejected(&d, addr(1)), "120 s + 60 s, at the 190 s sweep");
    sleep_until(t0 + Duration::from_millis(210_001)).await;
    assert_eq!(m(&d), 0, "two healthy sweeps");
}

#[tokio::test(start_paused = true)]
async fn ejection_time_is_capped_at_max_ejection_time() {
    let d = OutlierDetector::new(OutlierDetection {
        max_ejection_percent: 100,
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(70),
        interval: Duration::from_secs(1),
        ..OutlierDetection::default()
    });
    let ep = Endpoint::new(503);
    let mut gate = d.gate(addr(1), ep.service());
    let mut times = Vec::new();
    for _ in 0..4 {
        hit(&mut gate, 5).await;
        let s = d.endpoint(addr(1)).unwrap();
        times.push(s.ejection_time.unwrap().as_secs());
        while ejected(&d, addr(1)) {
            sleep(Duration::from_millis(500)).await;
        }
    }
    assert_eq!(times, [30, 60, 70, 70]);
    assert_eq!(d.endpoint(addr(1)).unwrap().multiplier, 3);
}

#[tokio::test(start_paused = true)]
async fn gateway_errors_count_apart_and_a_500_breaks_their_run() {
    let d = OutlierDetector::new(OutlierDetection {
        consecutive_5xx: 0,
        consecutive_gateway_errors: 3,
        ..all_in()
    });
    let ep = Endpoint::new(502);
    let mut gate = d.gate(addr(1), ep.service());
    hit(&mut gate, 2).await;
    ep.set(500);
    hit(&mut gate, 1).await;
    ep.set(504);
    hit(&mut gate, 2).await;
    assert!(!ejected(&d, addr(1)), "502 502 500 504 504 has no run of 3");
    hit(&mut gate, 1).await;
    assert!(ejected(&d, addr(1)));
    assert_eq!(
        d.stats().enforced(EjectionKind::ConsecutiveGatewayFailure),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn local_origin_failures_count_as_5xx_unless_split() {
    let d = OutlierDetector::new(all_in());
    let ep = Endpoint::new(0); // connection refused
    let mut gate = d.gate(addr(1), ep.service());
    hit(&mut gate, 5).await;
    assert!(ejected(&d, addr(1)));
    assert_eq!(d.stats().enforced(EjectionKind::Consecutive5xx), 1);

    let d = OutlierDetector::new(OutlierDetection {
        split_external_local_origin_errors: true,
        consecutive_local_origin_failures: 2,
        ..all_in()
    });
    let mut gate = d.gate(addr(1), ep.service());
    hit(&mut gate, 1).await;
    let s = d.endpoint(addr(1)).unwrap();
    assert_eq!(
        (s.consecutive_5xx, s.consecutive_local_origin_failures),
        (0, 1)
    );
    hit(&mut gate, 1).await;
    assert!(ejected(&d, addr(1)));
    assert_eq!(
        d.stats()
            .enforced(EjectionKind::ConsecutiveLocalOriginFailure),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn the_mesh_own_refusals_are_not_the_endpoints_fault() {
    let d = OutlierDetector::new(all_in());
    let ep = Endpoint::new(1); // MeshError::Overloaded
    let mut gate = d.gate(addr(1), ep.service());
    hit(&mut gate, 20).await;
    assert!(!ejected(&d, addr(1)));
    assert_eq!(d.endpoint(addr(1)).unwrap().consecutive_5xx, 0);
}

#[tokio::test(start_paused = true)]
async fn istio_all_ejected_is_a_fast_503_uh() {
    let d = OutlierDetector::new(all_in());
    let ep = Endpoint::new(503);
    let mut a = d.gate(addr(1), ep.service());
    let mut b = d.gate(addr(2), ep.service());
    let mut guard = ClusterHealth::new(a.clone(), &d);
    hit(&mut a, 5).await;
    assert!(!d.none_healthy(), "one of two is still healthy");
    assert!(
        !is_ready(&mut guard),
        "pass-through: waits on the ejected gate"
    );
    hit(&mut b, 5).await;
    assert!(d.none_healthy());
    assert!(!d.in_panic());
    // The guard was waiting; it answers 503 UH without calling the balancer.
    let err = guard
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap_err();
    let mesh = MeshError::find(&*err).unwrap();
    assert!(matches!(mesh, MeshError::NoHealthyEndpoint));
    assert_eq!(mesh.to_response::<String>().status(), 503);
}

#[tokio::test(start_paused = true)]
async fn envoy_panic_mode_opens_every_gate() {
    let d = OutlierDetector::new(OutlierDetection {
        min_health_percent: 50,
        ..all_in()
    });
    let ep = Endpoint::new(503);
    let mut a = d.gate(addr(1), ep.service());
    let mut b = d.gate(addr(2), ep.service());
    let mut waiter = a.clone();
    hit(&mut a, 5).await;
    assert!(
        !is_ready(&mut a),
        "50 % healthy is not below 50 %: no panic"
    );
    let woke = tokio::spawn(async move { waiter.ready().await.is_ok() });
    tokio::task::yield_now().await;
    hit(&mut b, 5).await;
    assert_eq!(d.stats().ejections_active, 2);
    assert!(d.in_panic() && d.stats().panic);
    assert!(woke.await.unwrap(), "entering panic mode wakes the gates");
    assert!(is_ready(&mut a) && is_ready(&mut b));
    let mut guard = ClusterHealth::new(a.clone(), &d);
    assert!(!d.none_healthy());
    let res = guard.ready().await.unwrap().call(Request::new(())).await;
    assert_eq!(res.unwrap().status(), 503, "passed through to the endpoint");
}

#[tokio::test(start_paused = true)]
async fn endpoints_leave_with_their_last_gate_and_keep_state_while_one_lives() {
    let d = OutlierDetector::new(all_in());
    let ep = Endpoint::new(503);
    let mut a = d.gate(addr(1), ep.service());
    hit(&mut a, 3).await;
    let again = d.gate(addr(1), ep.service());
    assert_eq!(d.stats().hosts, 1);
    assert_eq!(
        d.endpoint(addr(1)).unwrap().consecutive_5xx,
        3,
        "state kept"
    );
    hit(&mut a, 2).await;
    assert_eq!(d.stats().ejections_active, 1);
    drop(a);
    assert_eq!(d.stats().hosts, 1);
    drop(again);
    let s = d.stats();
    assert_eq!((s.hosts, s.ejections_active), (0, 0));
    assert!(d.endpoint(addr(1)).is_none());
}

type GrpcBody = StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>,
>;

#[tokio::test(start_paused = true)]
async fn grpc_status_in_trailers_is_counted_at_the_end_of_the_body() {
    let d = OutlierDetector::new(all_in());
    let svc = tower::service_fn(|_: Request<()>| async {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().unwrap()); // UNAVAILABLE → 503
        let body: GrpcBody = StreamBody::new(futures_util::stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Ok(Frame::trailers(trailers)),
        ]));
        Ok::<_, BoxError>(
            Response::builder()
                .header("content-type", "application/grpc")
                .body(body)
                .unwrap(),
        )
    });
    let mut gate = d.gate_with(addr(1), svc, GrpcClassifier::new());
    for i in 0..5 {
        let res = gate
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert!(res.body().is_deferred());
        assert_eq!(d.endpoint(addr(1)).unwrap().consecutive_5xx, i, "not yet");
        let collected = res.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_some());
    }
    assert!(ejected(&d, addr(1)));
}

fn rates_config(sr: bool) -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: 0,
        max_ejection_percent: 20,
        success_rate: sr.then_some(SuccessRate {
            minimum_hosts: 5,
            request_volume: 10,
            stdev_factor: 1900,
        }),
        failure_percentage: (!sr).then_some(FailurePercentage {
            threshold: 85,
            minimum_hosts: 5,
            request_volume: 10,
        }),
        ..OutlierDetection::default()
    }
}

async fn run_rates(d: &OutlierDetector, failures: [usize; 5]) {
    for (i, fails) in failures.into_iter().enumerate() {
        let ep = Endpoint::new(500);
        let mut gate = d.gate(addr(i as u16 + 1), ep.service());
        hit(&mut gate, fails).await;
        ep.set(200);
        hit(&mut gate, 20 - fails).await;
        std::mem::forget(gate); // keep the endpoint registered
    }
}

#[tokio::test(start_paused = true)]
async fn success_rate_ejects_endpoints_far_below_the_mean() {
    let d = OutlierDetector::without_timer(rates_config(true));
    // Success rates 100, 100, 100, 100, 50: mean 90, stdev 20, threshold 52.
    run_rates(&d, [0, 0, 0, 0, 10]).await;
    d.sweep();
    assert!(ejected(&d, addr(5)));
    assert_eq!(d.stats().ejections_active, 1);
    assert_eq!(d.stats().enforced(EjectionKind::SuccessRate), 1);

    // Too few requests in the interval: nobody qualifies.
    let d = OutlierDetector::without_timer(OutlierDetection {
        success_rate: Some(SuccessRate {
            request_volume: 21,
            ..SuccessRate::default()
        }),
        ..rates_config(true)
    });
    run_rates(&d, [0, 0, 0, 0, 10]).await;
    d.sweep();
    assert_eq!(d.stats().ejections_active, 0);
}

#[tokio::test(start_paused = true)]
async fn failure_percentage_ejects_endpoints_past_the_threshold() {
    let d = OutlierDetector::without_timer(rates_config(false));
    run_rates(&d, [0, 2, 16, 0, 18]).await; // 0 %, 10 %, 80 %, 0 %, 90 %
    d.sweep();
    let ejected: Vec<_> = d.endpoints().into_iter().map(|e| e.ejected).collect();
    assert_eq!(ejected, [false, false, false, false, true]);
    assert_eq!(d.stats().enforced(EjectionKind::FailurePercentage), 1);
    // The counts restart each interval.
    d.sweep();
    assert_eq!(d.stats().detected(EjectionKind::FailurePercentage), 1);
}

#[tokio::test(start_paused = true)]
async fn zero_durations_are_raised_not_panicked_on() {
    let d = OutlierDetector::new(OutlierDetection {
        interval: Duration::ZERO,
        base_ejection_time: Duration::ZERO,
        ..all_in()
    });
    assert_eq!(d.config().interval, Duration::from_millis(1));
    let ep = Endpoint::new(503);
    let mut gate = d.gate(addr(1), ep.service());
    hit(&mut gate, 5).await;
    sleep(Duration::from_millis(3)).await;
    assert!(!ejected(&d, addr(1)));
    assert!(StatusCode::OK.is_success());
}

#[tokio::test(start_paused = true)]
async fn calls_dropped_at_their_attempt_deadline_are_timeouts_of_the_endpoint() {
    let d = OutlierDetector::new(all_in());
    // An endpoint that never answers.
    let hang = tower::service_fn(|_: Request<()>| {
        std::future::pending::<Result<Response<()>, BoxError>>()
    });
    let mut gate = d.gate(addr(1), hang);
    let deadline = |ms| {
        let mut ctx = mesh_core::context::RequestContext::default();
        ctx.deadline = Some(mesh_core::context::AttemptDeadline(
            Instant::now() + Duration::from_millis(ms),
        ));
        ctx
    };

    // Dropped before the deadline: the caller went away; nothing counts.
    for _ in 0..5 {
        let mut req = Request::new(());
        req.extensions_mut().insert(deadline(100));
        let call = gate.ready().await.unwrap().call(req);
        sleep(Duration::from_millis(10)).await;
        drop(call);
    }
    assert_eq!(d.endpoint(addr(1)).unwrap().consecutive_5xx, 0);

    // Dropped at the deadline (the per-try timeout fired): five timeouts eject.
    for _ in 0..5 {
        let mut req = Request::new(());
        req.extensions_mut().insert(deadline(100));
        let call = gate.ready().await.unwrap().call(req);
        let _ = tokio::time::timeout(Duration::from_millis(100), call).await;
    }
    assert!(
        ejected(&d, addr(1)),
        "a hanging endpoint is ejected like a failing one"
    );
}
