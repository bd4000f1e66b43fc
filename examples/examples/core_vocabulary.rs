//! A tour of mesh-core: discovery with subsets, a replayable body sent twice,
//! and how a mesh error is classified and shown to a client.
//!
//! Run with `cargo run -p examples --example core_vocabulary`.

use std::future::poll_fn;
use std::pin::pin;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use mesh_core::body::ReplayBody;
use mesh_core::classify::{Classify, GrpcClassifier};
use mesh_core::discover::{Change, Discover, DiscoverExt, EndpointSet};
use mesh_core::{BoxError, Endpoint, LabelSelector, MeshError};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Endpoints of `reviews`, two versions; a balancer for subset v2 sees only v2.
    let set = EndpointSet::new();
    for (port, version) in [(9081, "v1"), (9082, "v2"), (9083, "v2")] {
        set.insert(Endpoint::new(([127, 0, 0, 1], port).into()).with_label("version", version));
    }
    let mut v2 = pin!(
        set.discover()
            .subset(LabelSelector::new([("version", "v2")]))
    );
    for _ in 0..3 {
        match poll_fn(|cx| v2.as_mut().poll_discover(cx)).await {
            Some(Ok(Change::Insert(addr, ep))) => println!("v2 subset: + {addr} {:?}", ep.labels()),
            Some(Ok(Change::Remove(addr))) => println!("v2 subset: - {addr} (not in the subset)"),
            other => println!("discovery: {other:?}"),
        }
    }

    // A request body kept for a retry.
    let body = ReplayBody::new(Full::new(Bytes::from_static(b"{\"rating\": 5}")), 64 * 1024);
    for attempt in 1..=2 {
        let copy = body.try_clone().ok_or("body passed the replay cap")?;
        let bytes = copy.collect().await?.to_bytes();
        println!(
            "attempt {attempt} sends {} bytes: {}",
            bytes.len(),
            String::from_utf8_lossy(&bytes)
        );
    }

    // A gRPC response that failed in its trailers-only head.
    let res = http::Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", "14")
        .body(())?;
    println!(
        "grpc outcome: {:?}",
        GrpcClassifier::new().classify_response(&res)
    );

    // What a client sees when every endpoint is ejected.
    let res = MeshError::NoHealthyEndpoint.to_response::<Full<Bytes>>();
    println!(
        "no healthy endpoint -> {} flags={:?}",
        res.status(),
        res.headers().get(mesh_core::RESPONSE_FLAGS_HEADER)
    );
    Ok(())
}
