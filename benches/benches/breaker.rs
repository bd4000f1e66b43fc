//! mesh-breaker's per-request costs, each beside the bare service in the same
//! run: outlier accounting through an `OutlierGate` (success and 5xx paths),
//! the classic `CircuitBreaker`, the `ConnectionPool` limits beside tower's
//! `ConcurrencyLimit`, and the `ClusterHealth` guard.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on its own setup

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use mesh_breaker::breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use mesh_breaker::outlier::{OutlierDetection, OutlierDetector};
use mesh_breaker::pool::{ConnectionPoolLayer, PoolLimits};
use mesh_core::BoxError;
use tower::{Layer, Service};

/// The bare endpoint: answers at once with a fixed status.
#[derive(Clone)]
struct Bare(StatusCode);

impl Service<Request<()>> for Bare {
    type Response = Response<()>;
    type Error = BoxError;
    type Future = Ready<Result<Response<()>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        let mut res = Response::new(());
        *res.status_mut() = self.0;
        ready(Ok(res))
    }
}

/// One request: poll_ready, call, and one poll of the response future, all
/// ready at once. The future is polled where it was made (pinned on the
/// stack, as an executor polls a task in place), not moved into a helper by
/// value: what is measured is the layer, not copies the harness adds.
fn one<S>(svc: &mut S)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("not ready"),
    }
    let mut future = pin!(svc.call(black_box(Request::new(()))));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(res) => black_box(res.is_ok()),
        Poll::Pending => panic!("not answered at once"),
    };
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker");
    let addr = "127.0.0.1:8080".parse().unwrap();

    let mut bare = Bare(StatusCode::OK);
    g.bench_function("bare", |b| b.iter(|| one(&mut bare)));

    let detector = OutlierDetector::new(OutlierDetection::default());
    let mut gate = detector.gate(addr, Bare(StatusCode::OK));
    g.bench_function("outlier_gate_200", |b| b.iter(|| one(&mut gate)));

    // 5xx on a 1-endpoint cluster at 10 %: every 5th one is detected, and the
    // ejection refused by the cap (the failure path, lock on detection only).
    let mut bare_503 = Bare(StatusCode::SERVICE_UNAVAILABLE);
    g.bench_function("bare_503", |b| b.iter(|| one(&mut bare_503)));
    let mut gate_503 = detector.gate(
        "127.0.0.1:8081".parse().unwrap(),
        Bare(StatusCode::SERVICE_UNAVAILABLE),
    );
    g.bench_function("outlier_gate_503", |b| b.iter(|| one(&mut gate_503)));

    let mut guard = detector.cluster_layer().layer(Bare(StatusCode::OK));
    g.bench_function("cluster_health", |b| b.iter(|| one(&mut guard)));

    let mut breaker =
        CircuitBreakerLayer::new(CircuitBreakerConfig::default()).layer(Bare(StatusCode::OK));
    g.bench_function("circuit_breaker_200", |b| b.iter(|| one(&mut breaker)));

    let mut pool = ConnectionPoolLayer::new(PoolLimits::envoy()).layer(Bare(StatusCode::OK));
    g.bench_function("connection_pool", |b| b.iter(|| one(&mut pool)));

    let mut tower_limit =
        tower::limit::ConcurrencyLimitLayer::new(1024).layer(Bare(StatusCode::OK));
    g.bench_function("tower_concurrency_limit", |b| {
        b.iter(|| one(&mut tower_limit))
    });
    g.finish();
}

criterion_group!(benches, requests);
criterion_main!(benches);
