//! The retry layer's success path beside tower's: `mesh_retry::Retry` against
//! `tower::retry::Retry` (with a policy that clones the request, as an HTTP
//! user must), and the retry layer's overall timeout against
//! `tower::timeout::Timeout`, all over the same always-ready upstream.
//!
//! Each mesh case runs twice: `*_like_tower` with the policy doing only what
//! its tower counterpart does (no `x-envoy-attempt-count`, no caller deadline
//! read: like for like, the goal is a ratio <= 1.0), and the default policy,
//! whose extra work is Envoy's and tower's stack does not do it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on its own setup

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{Empty, Full};
use mesh_retry::budget::ConcurrencyBudget;
use mesh_retry::{RetryBody, RetryLayer, RetryPolicy};
use tower::{Layer, Service, service_fn};

/// tower's retry policy for HTTP: retry 5xx up to `0` more times, cloning the
/// whole request up front (tower calls `clone_request` before the first try).
#[derive(Clone)]
struct Attempts(usize);

impl<B: Clone, E> tower::retry::Policy<Request<B>, Response<()>, E> for Attempts {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _: &mut Request<B>,
        result: &mut Result<Response<()>, E>,
    ) -> Option<Self::Future> {
        match result {
            Ok(res) if !res.status().is_server_error() => None,
            _ if self.0 > 0 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        Some(req.clone())
    }
}

fn request<B>(body: B) -> Request<B> {
    Request::get("http://reviews.default.svc.cluster.local/v1/reviews/7")
        .header("host", "reviews.default.svc.cluster.local")
        .header("user-agent", "bench/1.0")
        .header("accept", "application/json")
        .header("x-request-id", "4f5e6a1c-0d2b-4b8e-9d6a-1f0e2c3b4a59")
        .body(body)
        .unwrap()
}

fn ok<Req>(_: Req) -> Ready<Result<Response<()>, Infallible>> {
    ready(Ok(Response::new(())))
}

/// One request through a ready service: `poll_ready`, `call`, and one poll
/// of the response future where it was made (pinned on the stack, as an
/// executor polls a task in place). Every row is driven the same way, so a
/// larger future pays for its size only where a real caller would.
fn drive<S, Req>(svc: &mut S, req: Req) -> S::Response
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("not ready"),
    }
    let mut future = pin!(svc.call(req));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(res) => res.unwrap(),
        Poll::Pending => panic!("not answered at once"),
    }
}

fn retry(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let policy = RetryPolicy::new(2, "5xx".parse().unwrap());
    // What tower's layers do, and no more: no attempt-count header, no
    // caller's deadline.
    let like_tower = |p: RetryPolicy| RetryPolicy {
        attempt_count_header: false,
        deadline_header: None,
        ..p
    };

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
