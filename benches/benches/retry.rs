//! The retry layer's success path beside tower's: `mesh_retry::Retry` against
//! `tower::retry::Retry` (with a policy that clones the request, as an HTTP
//! user must), and the retry layer's overall timeout and the route timeout
//! alone (`mesh_retry::TimeoutLayer`) against `tower::timeout::Timeout`, all
//! over the same always-ready upstream.
//!
//! Each mesh case runs twice: `*_like_tower` with the policy doing only what
//! its tower counterpart does (no `x-envoy-attempt-count`, no caller deadline
//! read: like for like, the goal is a ratio <= 1.0), and the default policy,
//! whose extra work is Envoy's and tower's stack does not do it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on its own setup

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::{Empty, Full};
use mesh_retry::budget::ConcurrencyBudget;
use mesh_retry::{RetryBody, RetryLayer, RetryPolicy, TimeoutLayer};
use tower::{Layer, service_fn};

#[path = "support/stacks.rs"]
mod stacks;

use stacks::{Attempts, drive, like_tower, ok, request_with as request};

fn retry(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let policy = RetryPolicy::new(2, "5xx".parse().unwrap());

    let mut g = c.benchmark_group("retry_success_get");
    let mut bare = service_fn(ok::<Request<Empty<Bytes>>>);
    g.bench_function("bare", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut bare, r)),
            BatchSize::SmallInput,
        )
    });
    let mut tower_retry =
        tower::retry::RetryLayer::new(Attempts(2)).layer(service_fn(ok::<Request<Empty<Bytes>>>));
    g.bench_function("tower_retry", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut tower_retry, r)),
            BatchSize::SmallInput,
        )
    });
    let mut mesh =
        RetryLayer::new(policy.clone()).layer(service_fn(ok::<Request<RetryBody<Empty<Bytes>>>>));
    g.bench_function("mesh_retry", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut mesh, r)),
            BatchSize::SmallInput,
        )
    });
    let mut mesh = RetryLayer::new(like_tower(policy.clone()))
        .layer(service_fn(ok::<Request<RetryBody<Empty<Bytes>>>>));
    g.bench_function("mesh_retry_like_tower", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut mesh, r)),
            BatchSize::SmallInput,
        )
    });
    let mut mesh_budget = RetryLayer::new(policy.clone())
        .budget(Arc::new(ConcurrencyBudget::default()))
        .layer(service_fn(ok::<Request<RetryBody<Empty<Bytes>>>>));
    g.bench_function("mesh_retry_envoy_budget", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut mesh_budget, r)),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("retry_success_post_1KiB");
    let data = Bytes::from(vec![7u8; 1024]);
    let mut tower_retry =
        tower::retry::RetryLayer::new(Attempts(2)).layer(service_fn(ok::<Request<Full<Bytes>>>));
    g.bench_function("tower_retry", |b| {
        b.iter_batched(
            || request(Full::new(data.clone())),
            |r| black_box(drive(&mut tower_retry, r)),
            BatchSize::SmallInput,
        )
    });
    let mut mesh =
        RetryLayer::new(policy.clone()).layer(service_fn(ok::<Request<RetryBody<Full<Bytes>>>>));
    g.bench_function("mesh_retry", |b| {
        b.iter_batched(
            || request(Full::new(data.clone())),
            |r| black_box(drive(&mut mesh, r)),
            BatchSize::SmallInput,
        )
    });
    let mut mesh = RetryLayer::new(like_tower(policy.clone()))
        .layer(service_fn(ok::<Request<RetryBody<Full<Bytes>>>>));
    g.bench_function("mesh_retry_like_tower", |b| {
        b.iter_batched(
            || request(Full::new(data.clone())),
            |r| black_box(drive(&mut mesh, r)),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("timeout_success");
    // The upstream alone, so that each layer's own time is its row less this.
    g.bench_function("bare", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut bare, r)),
            BatchSize::SmallInput,
        )
    });
    let mut tower_timeout = tower::timeout::TimeoutLayer::new(Duration::from_secs(15))
        .layer(service_fn(ok::<Request<Empty<Bytes>>>));
    g.bench_function("tower_timeout", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut tower_timeout, r)),
            BatchSize::SmallInput,
        )
    });
    let mut mesh_timeout = RetryLayer::new(RetryPolicy {
        timeout: Some(Duration::from_secs(15)),
        ..RetryPolicy::disabled()
    })
    .layer(service_fn(ok::<Request<RetryBody<Empty<Bytes>>>>));
    g.bench_function("mesh_timeout", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut mesh_timeout, r)),
            BatchSize::SmallInput,
        )
    });
    let mut mesh_timeout = RetryLayer::new(like_tower(RetryPolicy {
        timeout: Some(Duration::from_secs(15)),
        ..RetryPolicy::disabled()
    }))
    .layer(service_fn(ok::<Request<RetryBody<Empty<Bytes>>>>));
    g.bench_function("mesh_timeout_like_tower", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut mesh_timeout, r)),
            BatchSize::SmallInput,
        )
    });
    // The route timeout alone: mesh-retry's `TimeoutLayer`.
    let mut mesh_timeout_layer =
        TimeoutLayer::new(Duration::from_secs(15)).layer(service_fn(ok::<Request<Empty<Bytes>>>));
    g.bench_function("mesh_timeout_layer", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut mesh_timeout_layer, r)),
            BatchSize::SmallInput,
        )
    });
    let mut mesh_timeout_layer = TimeoutLayer::new(Duration::from_secs(15))
        .deadline_header(None)
        .attempt_deadline(false)
        .layer(service_fn(ok::<Request<Empty<Bytes>>>));
    g.bench_function("mesh_timeout_layer_like_tower", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut mesh_timeout_layer, r)),
            BatchSize::SmallInput,
        )
    });
    // Retries, a per-try and an overall timeout, beside tower's nearest stack.
    let mut tower_both = tower::ServiceBuilder::new()
        .timeout(Duration::from_secs(15))
        .layer(tower::retry::RetryLayer::new(Attempts(2)))
        .timeout(Duration::from_secs(5))
        .service(service_fn(ok::<Request<Empty<Bytes>>>));
    g.bench_function("tower_timeout_retry_timeout", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut tower_both, r)),
            BatchSize::SmallInput,
        )
    });
    let with_timeouts = RetryPolicy {
        timeout: Some(Duration::from_secs(15)),
        per_try_timeout: Some(Duration::from_secs(5)),
        ..policy
    };
    let mut mesh_both = RetryLayer::new(like_tower(with_timeouts.clone()))
        .layer(service_fn(ok::<Request<RetryBody<Empty<Bytes>>>>));
    g.bench_function("mesh_retry_with_timeouts_like_tower", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut mesh_both, r)),
            BatchSize::SmallInput,
        )
    });
    let mut mesh_both =
        RetryLayer::new(with_timeouts).layer(service_fn(ok::<Request<RetryBody<Empty<Bytes>>>>));
    g.bench_function("mesh_retry_with_timeouts", |b| {
        b.iter_batched(
            || request(Empty::new()),
            |r| black_box(drive(&mut mesh_both, r)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, retry);
criterion_main!(benches);
