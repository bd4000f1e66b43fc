//! mesh-route's per-request costs: matching a request against 10 and 100
//! routes (goal: 100 prefix/exact routes under 1 µs), a whole router call,
//! and the split and fault layers on the no-fault path beside a bare service.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on its own setup

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderName, Request, Response, StatusCode};
use mesh_route::fault::FaultLayer;
use mesh_route::{
    AbortFault, AbortStatus, DelayFault, Destination, FaultConfig, HttpMatch, RouteBody,
    RouteConfig, Router, Split, StringMatch,
};
use tower::{Service, ServiceBuilder, ServiceExt};

/// `n` routes alternating exact and prefix URIs; every fifth also requires a
/// header (which the benched request does not carry).
fn routes(n: usize) -> Vec<RouteConfig> {
    (0..n)
        .map(|i| {
            let uri = if i % 2 == 0 {
                StringMatch::exact(format!("/svc{i}/exact"))
            } else {
                StringMatch::prefix(format!("/svc{i}/"))
            };
            let mut m = HttpMatch::default().with_uri(uri);
            if i % 5 == 0 {
                m = m.with_header(
                    HeaderName::from_static("end-user"),
                    StringMatch::exact("jason"),
                );
            }
            RouteConfig::to(format!("r{i}"), Destination::new(format!("svc{i}"))).with_match(m)
        })
        .collect()
}

fn answer() -> impl Service<
    Request<RouteBody<String>>,
    Response = Response<String>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|_: Request<RouteBody<String>>| async { Ok(Response::new(String::new())) })
}

fn matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_match");
    for n in [10, 100] {
        let router = Router::builder(routes(n)).build(|_| Ok(answer())).unwrap();
        // The last route matches: every route is tried (the worst case).
        let last = Request::get(format!("/svc{}/items/42?x=1", n - 1))
            .header("host", "reviews:9080")
            .body(String::new())
            .unwrap();
        assert_eq!(router.route(&last).map(|(i, _)| i), Some(n - 1));
        g.bench_function(format!("{n}_routes_last"), |b| {
            b.iter(|| router.route(black_box(&last)).map(|(i, _)| i))
        });
        let miss = Request::get("/nothing/here").body(String::new()).unwrap();
        g.bench_function(format!("{n}_routes_miss"), |b| {
            b.iter(|| router.route(black_box(&miss)).is_none())
        });
        g.bench_function(format!("{n}_routes_full_call"), |b| {
            b.iter(|| {
                let req = Request::get(format!("/svc{}/items/42", n - 1))
                    .body(String::new())
                    .unwrap();
                router.clone().oneshot(req).now_or_never().unwrap().unwrap()
            })
        });
    }
    g.finish();
}

fn bare() -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    tower::service_fn(|_: Request<()>| async { Ok(Response::new(String::new())) })
}

fn layers(c: &mut Criterion) {
    // A delay (one in a million here) starts a tokio timer: give it a runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("route_layers");
    let mut svc = bare();
    g.bench_function("bare_service", |b| {
        b.iter(|| {
            svc.ready().now_or_never().unwrap().unwrap();
            svc.call(Request::new(())).now_or_never().unwrap().unwrap()
        })
    });
    let mut split = Split::new([(bare(), 80), (bare(), 20)]).unwrap();
    g.bench_function("split_80_20", |b| {
        b.iter(|| {
            split.ready().now_or_never().unwrap().unwrap();
            split
                .call(Request::new(()))
                .now_or_never()
                .unwrap()
                .unwrap()
        })
    });
    // Configured faults that (almost) never fire: two draws per request.
    let fault = FaultLayer::new(FaultConfig {
        delay: Some(DelayFault {
            fixed_delay: Duration::from_secs(1),
            percentage: 0.0001,
        }),
        abort: Some(AbortFault {
            status: AbortStatus::Http(StatusCode::SERVICE_UNAVAILABLE),
            percentage: 0.0001,
        }),
    })
    .unwrap();
    let mut faulty = ServiceBuilder::new().layer(fault).service(bare());
    g.bench_function("fault_no_fault_path", |b| {
        b.iter(|| {
            faulty.ready().now_or_never().unwrap().unwrap();
            match faulty.call(Request::new(())).now_or_never() {
                Some(res) => res.ok(),
                None => None, // the one-in-a-million delay
            }
        })
    });
    let mut none = ServiceBuilder::new()
        .layer(FaultLayer::none())
        .service(bare());
    g.bench_function("fault_unconfigured", |b| {
        b.iter(|| {
            none.ready().now_or_never().unwrap().unwrap();
            none.call(Request::new(())).now_or_never().unwrap().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, matching, layers);
criterion_main!(benches);
