use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use mesh_core::classify::GrpcCode;
use mesh_core::{MeshError, RESPONSE_FLAGS_HEADER, ResponseFlag, ResponseFlags};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

use super::FaultLayer;
use crate::config::{AbortFault, AbortStatus, ConfigErrorKind, DelayFault, FaultConfig};

fn delay(ms: u64, percentage: f64) -> Option<DelayFault> {
    Some(DelayFault {
        fixed_delay: Duration::from_millis(ms),
        percentage,
    })
}

fn abort(status: u16, percentage: f64) -> Option<AbortFault> {
    Some(AbortFault {
        status: AbortStatus::Http(StatusCode::from_u16(status).unwrap()),
        percentage,
    })
}

/// A service counting its calls; answers 200 "upstream".
fn upstream(
    calls: &Arc<AtomicUsize>,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send> + Clone
{
    let calls = calls.clone();
    tower::service_fn(move |_: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok(Response::new("upstream".to_owned())) }
    })
}

#[tokio::test(start_paused = true)]
async fn delay_waits_the_fixed_delay_then_flags_di() {
    // virtual-service-ratings-test-delay.yaml: 7s for all of jason's requests.
    let calls = Arc::new(AtomicUsize::new(0));
    let fault = FaultLayer::new(FaultConfig {
        delay: delay(7_000, 100.0),
        abort: None,
    })
    .unwrap();
    let svc = ServiceBuilder::new().layer(fault).service(upstream(&calls));
    let start = Instant::now();
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(res.body(), "upstream");
    assert_eq!(res.headers()[RESPONSE_FLAGS_HEADER], "DI");
    let flags = res.extensions().get::<ResponseFlags>().unwrap();
    assert!(flags.contains(ResponseFlag::DelayInjected));
}

#[tokio::test(start_paused = true)]
async fn unset_percentage_injects_nothing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let fault = FaultLayer::new(FaultConfig {
        delay: delay(5_000, 0.0),
        abort: abort(503, 0.0),
    })
    .unwrap();
    let mut svc = ServiceBuilder::new().layer(fault).service(upstream(&calls));
    let start = Instant::now();
    for _ in 0..100 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert!(res.headers().get(RESPONSE_FLAGS_HEADER).is_none());
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 100);
}

#[tokio::test]
async fn full_abort_never_calls_the_inner_service() {
    // fault-injection-details-v1.yaml: httpStatus 555 at 100 %.
    let calls = Arc::new(AtomicUsize::new(0));
    let fault = FaultLayer::new(FaultConfig {
        delay: None,
        abort: abort(555, 100.0),
    })
    .unwrap();
    let mut svc = ServiceBuilder::new().layer(fault).service(upstream(&calls));
    for _ in 0..100 {
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap_err();
        let mesh = MeshError::find(&*err).unwrap();
        assert!(matches!(mesh, MeshError::FaultAbort(s) if s.as_u16() == 555));
        let res = mesh.to_response::<String>();
        assert_eq!(res.status().as_u16(), 555);
        assert_eq!(res.headers()[RESPONSE_FLAGS_HEADER], "FI");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn grpc_abort_answers_200_with_grpc_status() {
    let calls = Arc::new(AtomicUsize::new(0));
    let fault = FaultLayer::new(FaultConfig {
        delay: None,
        abort: Some(AbortFault {
            status: AbortStatus::Grpc(GrpcCode::Unavailable),
            percentage: 100.0,
        }),
    })
    .unwrap();
    let svc = ServiceBuilder::new().layer(fault).service(upstream(&calls));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(res.headers()["content-type"], "application/grpc");
    assert_eq!(res.headers()[RESPONSE_FLAGS_HEADER], "FI");
    assert_eq!(res.body(), "", "no upstream body");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn delay_comes_before_the_abort() {
    let calls = Arc::new(AtomicUsize::new(0));
    let fault = FaultLayer::new(FaultConfig {
        delay: delay(250, 100.0),
        abort: abort(503, 100.0),
    })
    .unwrap();
    let svc = ServiceBuilder::new().layer(fault).service(upstream(&calls));
    let start = Instant::now();
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!(MeshError::find(&*err).unwrap().status(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn partial_abort_hits_its_share() {
    // Binomial(10000, 0.3): sd ≈ 45.8; ±300 is 6.5 sd.
    let calls = Arc::new(AtomicUsize::new(0));
    let fault = FaultLayer::new(FaultConfig {
        delay: None,
        abort: abort(500, 30.0),
    })
    .unwrap();
    let mut svc = ServiceBuilder::new().layer(fault).service(upstream(&calls));
    let mut aborted = 0i64;
    for _ in 0..10_000 {
        if svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .is_err()
        {
            aborted += 1;
        }
    }
    assert!((aborted - 3000).abs() < 300, "{aborted}");
    assert_eq!(calls.load(Ordering::SeqCst) as i64, 10_000 - aborted);
}

#[test]
fn invalid_faults_are_refused() {
    let bad = [
        (
            FaultConfig {
                delay: None,
                abort: abort(500, 150.0),
            },
            "percentage",
        ),
        (
            FaultConfig {
                delay: delay(0, 10.0),
                abort: None,
            },
            "shorter than 1ms",
        ),
        (
            FaultConfig {
                delay: None,
                abort: abort(999, 10.0),
            },
            "200-599",
        ),
        (
            FaultConfig {
                delay: delay(10, f64::NAN),
                abort: None,
            },
            "percentage",
        ),
    ];
    for (config, says) in bad {
        let err = FaultLayer::new(config).unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
    assert!(matches!(
        FaultLayer::new(FaultConfig {
            delay: None,
            abort: abort(100, 1.0)
        })
        .unwrap_err()
        .kind(),
        ConfigErrorKind::AbortStatus(_)
    ));
}
