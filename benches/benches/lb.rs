//! mesh-lb: one request through each balancer (poll_ready, pick, call) at 10,
//! 100 and 1,000 endpoints, and our least request beside tower's P2C balancer
//! over the same endpoints in the same run.
//!
//! Endpoint services answer at once, so what is measured is the balancer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on its own setup

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures_util::task::noop_waker;
use http::{HeaderValue, Request, Response};
use mesh_core::Endpoint;
use mesh_core::discover::{DiscoverExt, StaticEndpoints};
use mesh_lb::{Balance, HashKey, LoadBalancer};
use tower::Service;

type Endpt = tower::util::ServiceFn<fn(Request<()>) -> Ready<Result<Response<()>, Infallible>>>;

fn endpoint_service() -> Endpt {
    tower::service_fn(|_req| ready(Ok(Response::new(()))))
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8080))
}

/// One request through `svc`, driven by hand: the balancer is always ready
/// here, so no runtime is needed.
fn one<S: Service<Request<()>>>(svc: &mut S, cx: &mut Context<'_>, req: Request<()>) {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("balancer not ready"),
    }
    let fut = pin!(svc.call(req));
    match fut.poll(cx) {
        Poll::Ready(Ok(res)) => {
            black_box(res);
        }
        _ => panic!("endpoint did not answer"),
    }
}

fn algorithms() -> Vec<(&'static str, LoadBalancer)> {
    let key = || HashKey::header("x-user").unwrap();
    vec![
        ("round_robin", LoadBalancer::RoundRobin),
        ("random", LoadBalancer::Random),
        ("least_request", LoadBalancer::least_request()),
        ("peak_ewma", LoadBalancer::peak_ewma()),
        ("ring_hash", LoadBalancer::ring_hash(key())),
        ("maglev", LoadBalancer::maglev(key())),
    ]
}

fn picks(c: &mut Criterion) {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let users: Vec<HeaderValue> = (0..1024)
        .map(|u| HeaderValue::from_str(&format!("user-{u}")).unwrap())
        .collect();
    let mut g = c.benchmark_group("lb_call");
    // The floor: the same request built and sent to one endpoint, no balancer.
    let mut direct = endpoint_service();
    let mut u = 0usize;
    g.bench_function("direct_no_balancer", |b| {
        b.iter(|| {
            u = (u + 1) & 1023;
            let mut req = Request::new(());
            req.headers_mut().insert("x-user", users[u].clone());
            one(&mut direct, &mut cx, req)
        })
    });
    for n in [10usize, 100, 1000] {
        for (name, lb) in algorithms() {
            let discover = StaticEndpoints::new((0..n).map(|i| Endpoint::new(addr(i))))
                .with_services(|_: &Endpoint| endpoint_service());
            let mut balance = Balance::new(discover, lb).unwrap();
            // Load every endpoint before measuring.
            one(&mut balance, &mut cx, Request::new(()));
            let mut u = 0usize;
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    u = (u + 1) & 1023;
                    let mut req = Request::new(());
                    req.headers_mut().insert("x-user", users[u].clone());
                    one(&mut balance, &mut cx, req)
                })
            });
        }
    }
    g.finish();
}

fn p2c_vs_tower(c: &mut Criterion) {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut g = c.benchmark_group("p2c_vs_tower");
    for n in [10usize, 100, 1000] {
        let discover = StaticEndpoints::new((0..n).map(|i| Endpoint::new(addr(i))))
            .with_services(|_: &Endpoint| endpoint_service());
        let mut ours = Balance::new(discover, LoadBalancer::least_request()).unwrap();
        one(&mut ours, &mut cx, Request::new(()));
        g.bench_with_input(BenchmarkId::new("mesh_lb_least_request", n), &n, |b, _| {
            b.iter(|| one(&mut ours, &mut cx, Request::new(())))
        });

        let services: Vec<_> = (0..n)
            .map(|_| {
                tower::load::PendingRequests::new(
                    endpoint_service(),
                    tower::load::CompleteOnResponse::default(),
                )
            })
            .collect();
        let mut theirs =
            tower::balance::p2c::Balance::new(tower::discover::ServiceList::new(services));
        one(&mut theirs, &mut cx, Request::new(()));
        g.bench_with_input(
            BenchmarkId::new("tower_p2c_pending_requests", n),
            &n,
            |b, _| b.iter(|| one(&mut theirs, &mut cx, Request::new(()))),
        );
    }
    g.finish();
}

/// A balancer shared by many handles: ours (`Shared`, the caller's task takes
/// a lock) beside tower's `Buffer` (a worker task owns it). Each request is
/// one `block_on` of `ready` + `call` on a current-thread runtime (the worker
/// task runs inside it), the same for every row; `Balance` alone is the floor.
fn shared_vs_buffer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let balance = || {
        let discover = StaticEndpoints::new((0..10).map(|i| Endpoint::new(addr(i))))
            .with_services(|_: &Endpoint| endpoint_service());
        Balance::new(discover, LoadBalancer::least_request()).unwrap()
    };
    async fn send<S: Service<Request<()>>>(svc: &mut S)
    where
        S::Error: std::fmt::Debug,
    {
        let svc = tower::ServiceExt::ready(svc).await.unwrap();
        black_box(svc.call(Request::new(())).await.unwrap());
    }
    let mut g = c.benchmark_group("shared_vs_buffer");
    let mut bare = balance();
    g.bench_function("balance_alone", |b| b.iter(|| rt.block_on(send(&mut bare))));
    let mut shared = mesh_lb::Shared::new(balance());
    g.bench_function("mesh_shared", |b| b.iter(|| rt.block_on(send(&mut shared))));
    let mut buffer = rt.block_on(async { tower::buffer::Buffer::new(balance(), 1024) });
    g.bench_function("tower_buffer", |b| {
        b.iter(|| rt.block_on(send(&mut buffer)))
    });
    g.finish();
}

criterion_group!(benches, p2c_vs_tower, shared_vs_buffer, picks);
criterion_main!(benches);
