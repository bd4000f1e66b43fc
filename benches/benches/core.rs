//! mesh-core's per-request costs: classifying a response, and streaming a body
//! through a `ReplayBody` beside the bare body.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on its own setup

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full};
use mesh_core::body::{DEFAULT_REPLAY_CAP, ReplayBody};
use mesh_core::classify::{Classify, GrpcClassifier, HttpClassifier};

fn classify(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    let res = http::Response::builder().status(503).body(()).unwrap();
    g.bench_function("http_503", |b| {
        b.iter(|| HttpClassifier.classify_response(black_box(&res)))
    });
    let grpc = http::Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", "14")
        .body(())
        .unwrap();
    let c = GrpcClassifier::new();
    g.bench_function("grpc_trailers_only", |b| {
        b.iter(|| c.classify_response(black_box(&grpc)))
    });
    g.finish();
}

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("body_1KiB");
    let data = Bytes::from(vec![7u8; 1024]);
    g.bench_function("full_bare", |b| {
        b.iter(|| {
            let body = Full::new(data.clone());
            body.collect().now_or_never().unwrap().unwrap().to_bytes()
        })
    });
    g.bench_function("full_through_replay", |b| {
        b.iter(|| {
            let body = ReplayBody::new(Full::new(data.clone()), DEFAULT_REPLAY_CAP);
            body.collect().now_or_never().unwrap().unwrap().to_bytes()
        })
    });
    g.finish();
}

criterion_group!(benches, classify, replay);
criterion_main!(benches);
