//! Instruction counts per request, for callgrind: runs one case of the retry
//! bench `N` times, with no criterion around it. Run it twice under
//! `valgrind --tool=callgrind` with two `N`s; the difference of the totals
//! over the difference of the `N`s is the cost of one request, with start-up
//! and set-up cancelled out (see README.md, "Instruction counts").
//!
//! ```sh
//! cargo bench -p benches --bench icount --no-run
//! valgrind --tool=callgrind target/release/deps/icount-* mesh_retry 20000
//! ```
//!
//! Cases: the rows of the retry bench (`bare`, `tower_retry`, `mesh_retry`,
//! `mesh_retry_like_tower`, `*_post*`, `tower_timeout`, `mesh_timeout*`
//! (`mesh_timeout_layer*` is [`TimeoutLayer`]),
//! `tower_timeout_retry_timeout`, `mesh_retry_with_timeouts*`) and of the
//! stack bench (`stack_mesh`, `stack_tower`, `router`, `steer`); `sizes`
//! prints the futures' sizes. With `ICOUNT_CLIENT_ADDR` set, each request
//! carries a `ClientAddr` extension, as mesh-proxy's do while a cluster
//! hashes on the source IP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on its own setup

use std::convert::Infallible;
use std::future::Ready;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Empty, Full};
use mesh_retry::{RetryBody, RetryLayer, RetryPolicy, TimeoutLayer};
use tower::{Layer, Service, service_fn};

fn run<S, B>(n: usize, mut svc: S, body: impl Fn() -> B)
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    let ext = std::env::var_os("ICOUNT_CLIENT_ADDR").is_some();
    for _ in 0..n {
        let mut req = request(body());
        if ext {
            // As the proxy's server puts the client's address in each request
            // while a cluster of its config hashes on the source IP.
            req.extensions_mut().insert(mesh_core::context::ClientAddr(
                ([10, 0, 0, 1], 40000).into(),
            ));
        }
        drop(black_box(drive(&mut svc, req)));
    }
}

#[path = "support/stacks.rs"]
mod stacks;

use stacks::{Attempts, drive, like_tower, ok, request_with as request};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let case = args.next().unwrap_or_else(|| "bare".into());
    let n: usize = args.next().map_or(10_000, |s| s.parse().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let policy = RetryPolicy::new(2, "5xx".parse().unwrap());
    let timeouts = RetryPolicy {
        timeout: Some(Duration::from_secs(15)),
        per_try_timeout: Some(Duration::from_secs(5)),
        ..policy.clone()
    };
    let timeout_only = RetryPolicy {
        timeout: Some(Duration::from_secs(15)),
        ..RetryPolicy::disabled()
    };
    let data = Bytes::from(vec![7u8; 1024]);
    let empty = Empty::<Bytes>::new;
    let full = || Full::new(data.clone());
    match case.as_str() {
        "sizes" => {
            type Inner = tower::util::ServiceFn<
                fn(Request<RetryBody<Empty<Bytes>>>) -> Ready<Result<Response<()>, Infallible>>,
            >;
            type TInner = tower::util::ServiceFn<
                fn(Request<Empty<Bytes>>) -> Ready<Result<Response<()>, Infallible>>,
            >;
            println!("sleep {}", std::mem::size_of::<tokio::time::Sleep>());
            println!("parts {}", std::mem::size_of::<http::request::Parts>());
            println!("request {}", std::mem::size_of::<Request<Empty<Bytes>>>());
            println!("response {}", std::mem::size_of::<Response<()>>());
            println!(
                "mesh fut {}",
                std::mem::size_of::<
                    <mesh_retry::Retry<Inner> as Service<Request<Empty<Bytes>>>>::Future,
                >()
            );
            println!("tower retry fut {}", std::mem::size_of::<<tower::retry::Retry<Attempts, TInner> as Service<Request<Empty<Bytes>>>>::Future>());
            fn fut<S: Service<R>, R>(_: &S) -> usize {
                std::mem::size_of::<S::Future>()
            }
            println!("mesh stack fut {}", fut(&stacks::mesh_stack()));
            println!("tower stack fut {}", fut(&stacks::tower_stack()));
            let router = mesh_route::Router::builder(stacks::routes())
                .build(|_| {
                    Ok(service_fn(
                        stacks::noop::<Request<mesh_route::RouteBody<Empty<Bytes>>>>,
                    ))
                })
                .unwrap();
            println!("router fut {}", fut::<_, Request<Empty<Bytes>>>(&router));
            let steer = tower::steer::Steer::new(
                vec![service_fn(stacks::noop::<Request<Empty<Bytes>>>)],
                stacks::steer_pick,
            );
            println!("steer fut {}", fut::<_, Request<Empty<Bytes>>>(&steer));
            println!(
                "tower timeout fut {}",
                std::mem::size_of::<
                    <tower::timeout::Timeout<TInner> as Service<Request<Empty<Bytes>>>>::Future,
                >()
            );
        }
        "bare" => run(n, service_fn(ok::<Request<Empty<Bytes>>>), empty),
        "tower_retry" => run(
            n,
            tower::retry::RetryLayer::new(Attempts(2)).layer(service_fn(ok)),
            empty,
        ),
        "mesh_retry" => run(
            n,
            RetryLayer::new(policy).layer(service_fn(ok::<Request<RetryBody<_>>>)),
            empty,
        ),
        "mesh_retry_istio_default" => run(
            n,
            RetryLayer::new(RetryPolicy::istio_default())
                .layer(service_fn(ok::<Request<RetryBody<_>>>)),
            empty,
        ),
        "mesh_retry_like_tower" => run(
            n,
            RetryLayer::new(like_tower(policy)).layer(service_fn(ok::<Request<RetryBody<_>>>)),
            empty,
        ),
        "tower_retry_post" => run(
            n,
            tower::retry::RetryLayer::new(Attempts(2)).layer(service_fn(ok)),
            full,
        ),
        "mesh_retry_post" => run(
            n,
            RetryLayer::new(policy).layer(service_fn(ok::<Request<RetryBody<_>>>)),
            full,
        ),
        "mesh_retry_post_like_tower" => run(
            n,
            RetryLayer::new(like_tower(policy)).layer(service_fn(ok::<Request<RetryBody<_>>>)),
            full,
        ),
        "tower_timeout" => run(
            n,
            tower::timeout::TimeoutLayer::new(Duration::from_secs(15)).layer(service_fn(ok)),
            empty,
        ),
        "mesh_timeout" => run(
            n,
            RetryLayer::new(timeout_only).layer(service_fn(ok::<Request<RetryBody<_>>>)),
            empty,
        ),
        "mesh_timeout_layer" => run(
            n,
            TimeoutLayer::new(Duration::from_secs(15)).layer(service_fn(ok)),
            empty,
        ),
        "mesh_timeout_layer_like_tower" => run(
            n,
            TimeoutLayer::new(Duration::from_secs(15))
                .deadline_header(None)
                .attempt_deadline(false)
                .layer(service_fn(ok)),
            empty,
        ),
        "mesh_timeout_like_tower" => run(
            n,
            RetryLayer::new(like_tower(timeout_only))
                .layer(service_fn(ok::<Request<RetryBody<_>>>)),
            empty,
        ),
        "tower_timeout_retry_timeout" => run(
            n,
            tower::ServiceBuilder::new()
                .timeout(Duration::from_secs(15))
                .layer(tower::retry::RetryLayer::new(Attempts(2)))
                .timeout(Duration::from_secs(5))
                .service(service_fn(ok)),
            empty,
        ),
        "mesh_retry_with_timeouts" => run(
            n,
            RetryLayer::new(timeouts).layer(service_fn(ok::<Request<RetryBody<_>>>)),
            empty,
        ),
        "mesh_retry_with_timeouts_like_tower" => run(
            n,
            RetryLayer::new(like_tower(timeouts)).layer(service_fn(ok::<Request<RetryBody<_>>>)),
            empty,
        ),
        // One layer over the no-op endpoint, for the per-layer table.
        "pool" => run(
            n,
            mesh_breaker::pool::ConnectionPoolLayer::new(mesh_breaker::pool::PoolLimits::envoy())
                .layer(service_fn(stacks::noop)),
            empty,
        ),
        "concurrency_limit" => run(
            n,
            tower::limit::ConcurrencyLimitLayer::new(1024).layer(service_fn(stacks::noop)),
            empty,
        ),
        "outlier_gate" => {
            let detector = mesh_breaker::outlier::OutlierDetector::without_timer(
                mesh_breaker::outlier::OutlierDetection::default(),
            );
            run(
                n,
                detector.gate(stacks::addr(0), service_fn(stacks::noop)),
                empty,
            )
        }
        "least_request" => {
            let discover = mesh_core::discover::StaticEndpoints::new(
                (0..10).map(|i| mesh_core::Endpoint::new(stacks::addr(i))),
            );
            let discover = mesh_core::discover::DiscoverExt::with_services(
                discover,
                |_: &mesh_core::Endpoint| service_fn(stacks::noop),
            );
            let lb =
                mesh_lb::Balance::new(discover, mesh_lb::LoadBalancer::least_request()).unwrap();
            run(n, lb, empty)
        }
        "p2c" => {
            let endpoints: Vec<_> = (0..10)
                .map(|_| {
                    tower::load::PendingRequests::new(
                        service_fn(stacks::noop::<Request<Empty<Bytes>>>),
                        tower::load::CompleteOnResponse::default(),
                    )
                })
                .collect();
            let p2c =
                tower::balance::p2c::Balance::new(tower::discover::ServiceList::new(endpoints));
            run(n, p2c, empty)
        }
        "stack_mesh" => run(n, stacks::mesh_stack(), empty),
        "stack_mesh_like_tower" => run(
            n,
            stacks::mesh_stack_with(stacks::mesh_retry_policy(true)),
            empty,
        ),
        "stack_tower" => run(n, stacks::tower_stack(), empty),
        // The stack less its top layers, for each layer's share of it.
        "stack_balance" => run(n, stacks::mesh_cluster(false, false), empty),
        "stack_balance_gates" => run(n, stacks::mesh_cluster(false, true), empty),
        "stack_cluster" => run(n, stacks::mesh_cluster(true, true), empty),
        "stack_retry_cluster" => run(
            n,
            stacks::mesh_retry().layer(stacks::mesh_cluster(true, true)),
            empty,
        ),
        "router" | "router_unnamed" => run(
            n,
            mesh_route::Router::builder(stacks::routes())
                .build(|_| Ok(service_fn(stacks::noop)))
                .unwrap()
                .with_route_names(case == "router"),
            empty,
        ),
        "steer" => {
            let endpoint = service_fn(stacks::noop::<Request<Empty<Bytes>>>);
            let steer =
                tower::steer::Steer::new(vec![endpoint, endpoint, endpoint], stacks::steer_pick);
            run(n, steer, empty)
        }
        other => panic!("unknown case {other}"),
    }
}
