//! The whole in-process stack, one request end to end, beside a stack of
//! tower's own layers in the same run; and the route layer beside tower's
//! `Steer`.
//!
//! Ours, as mesh-proxy stacks a route (minus the hyper server and client):
//! `Router` (3 routes, the last matches) → `Retry` (2 retries on 5xx, 5 s
//! per-try and 15 s overall timeouts) → `ConnectionPool` (Envoy's limits) →
//! `ClusterHealth` → `Balance` (least request over 4 endpoints) →
//! `OutlierGate` per endpoint → a no-op endpoint.
//!
//! tower's: `Steer` (the same 3 routes as a closure) → `Timeout` (15 s) →
//! `Retry` (2 retries on 5xx, a policy cloning the request) → `Timeout` (5 s)
//! → `ConcurrencyLimit` (1024) → `p2c::Balance` over `PendingRequests`
//! endpoints → the same no-op endpoint.
//!
//! Neither balancer is `Clone`, and both retry layers need a `Clone` inner
//! service: ours is behind `mesh_lb::Shared`, as in mesh-proxy; tower's
//! behind a bare `Arc<Mutex<_>>` handle (lighter than `mesh_lb::Shared`, and
//! far lighter than `tower::buffer::Buffer`, tower's own way, whose task hop
//! this in-process figure could not show; see the `lb` bench's
//! `shared_vs_buffer`). Both are driven alike: `poll_ready`, `call`, one
//! poll of the response future pinned where it was made.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on its own setup

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, StatusCode};
use mesh_route::Router;
use tower::service_fn;

#[path = "support/stacks.rs"]
mod stacks;

use stacks::{
    Body, drive, mesh_retry_policy, mesh_stack, mesh_stack_with, noop, request, routes, steer_pick,
    tower_stack,
};

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();

    let mut g = c.benchmark_group("stack");
    let mut bare = service_fn(noop::<Request<Body>>);
    g.bench_function("bare_endpoint", |b| {
        b.iter_batched(
            request,
            |r| black_box(drive(&mut bare, r)),
            BatchSize::SmallInput,
        )
    });
    let mut ours = mesh_stack();
    assert_eq!(drive(&mut ours, request()).status(), StatusCode::OK);
    g.bench_function("mesh", |b| {
        b.iter_batched(
            request,
            |r| black_box(drive(&mut ours, r)),
            BatchSize::SmallInput,
        )
    });
    // The retry layer configured like tower's (no `x-envoy-attempt-count`, no
    // `grpc-timeout` read).
    let mut ours_like_tower = mesh_stack_with(mesh_retry_policy(true));
    g.bench_function("mesh_like_tower", |b| {
        b.iter_batched(
            request,
            |r| black_box(drive(&mut ours_like_tower, r)),
            BatchSize::SmallInput,
        )
    });
    let mut theirs = tower_stack();
    assert_eq!(drive(&mut theirs, request()).status(), StatusCode::OK);
    g.bench_function("tower", |b| {
        b.iter_batched(
            request,
            |r| black_box(drive(&mut theirs, r)),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // The route layer alone, over the no-op endpoint.
    let mut g = c.benchmark_group("route_vs_steer");
    let mut router = Router::builder(routes())
        .build(|_| Ok(service_fn(noop)))
        .unwrap();
    g.bench_function("mesh_router", |b| {
        b.iter_batched(
            request,
            |r| black_box(drive(&mut router, r)),
            BatchSize::SmallInput,
        )
    });
    // As mesh-proxy runs it, and as `Steer` does: no route name put in the
    // request.
    let mut router = Router::builder(routes())
        .build(|_| Ok(service_fn(noop)))
        .unwrap()
        .with_route_names(false);
    g.bench_function("mesh_router_unnamed", |b| {
        b.iter_batched(
            request,
            |r| black_box(drive(&mut router, r)),
            BatchSize::SmallInput,
        )
    });
    let endpoint = service_fn(noop::<Request<Body>>);
    let mut steer = tower::steer::Steer::new(vec![endpoint, endpoint, endpoint], steer_pick);
    g.bench_function("tower_steer", |b| {
        b.iter_batched(
            request,
            |r| black_box(drive(&mut steer, r)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, stack);
criterion_main!(benches);
