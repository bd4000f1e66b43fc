//! Istio-style routing in a Rust client, no sidecar: the bookinfo `reviews`
//! rules as a mesh-route `Router` in front of real hyper servers.
//!
//! - `end-user: jason` goes to `v2`, with a 50 % fault abort (503);
//! - everyone else is split 80/20 between `v1` and `v2`;
//! - every request is mirrored to `v3` (its `Host` gets `-shadow`);
//! - anything outside `/reviews` gets 404 `NR`.
//!
//! Run with `cargo run -p examples --example routing`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // an example may panic on its own setup

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::{BoxError, MeshError};
use mesh_route::mirror::MirrorStats;
use mesh_route::{
    AbortFault, AbortStatus, Destination, FaultConfig, HttpMatch, MirrorPolicy, RouteBody,
    RouteConfig, Router, StringMatch, WeightedDestination,
};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// A server answering with its name and the Host it saw.
async fn server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    let host = req.headers().get("host").cloned();
                    if name == "reviews-v3" {
                        println!("  (shadow got a copy for Host {host:?})");
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

type Body = RouteBody<Full<Bytes>>;
type Dest = BoxCloneSyncService<Request<Body>, Response<Bytes>, BoxError>;

/// The service of one destination: a hyper client aimed at `addr`.
fn endpoint(client: Client<HttpConnector, Body>, addr: SocketAddr) -> Dest {
    BoxCloneSyncService::new(tower::service_fn(move |mut req: Request<Body>| {
        let client = client.clone();
        async move {
            let pq = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            *req.uri_mut() = format!("http://{addr}{pq}").parse()?;
            let (parts, body) = client.request(req).await?.into_parts();
            Ok::<_, BoxError>(Response::from_parts(
                parts,
                body.collect().await?.to_bytes(),
            ))
        }
    }))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut servers = BTreeMap::new();
    for subset in ["v1", "v2", "v3"] {
        servers.insert(
            subset,
            server(match subset {
                "v1" => "reviews-v1",
                "v2" => "reviews-v2",
                _ => "reviews-v3",
            })
            .await,
        );
    }

    let reviews = |s: &str| Destination::new("reviews").with_subset(s);
    let under_reviews = HttpMatch::default().with_uri(StringMatch::prefix("/reviews"));
    let routes = vec![
        RouteConfig::to("jason", reviews("v2"))
            .with_match(under_reviews.clone().with_header(
                HeaderName::from_static("end-user"),
                StringMatch::exact("jason"),
            ))
            .with_fault(FaultConfig {
                delay: None,
                abort: Some(AbortFault {
                    status: AbortStatus::Http(StatusCode::SERVICE_UNAVAILABLE),
                    percentage: 50.0,
                }),
            }),
        RouteConfig::forward(
            "split",
            vec![
                WeightedDestination::new(reviews("v1"), 80),
                WeightedDestination::new(reviews("v2"), 20),
            ],
        )
        .with_match(under_reviews)
        .with_mirror(MirrorPolicy::new(reviews("v3"), Some(1.0))),
    ];

    // One service per (host, subset): the proxy would hand its cluster stacks.
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
    let stats = MirrorStats::new();
    let router = Router::builder(routes)
        .mirror_stats(stats.clone())
        .build(|target| {
            let subset = target.destination.subset.as_deref().unwrap_or("v1");
            let addr = servers.get(subset).copied().ok_or("unknown subset")?;
            Ok(endpoint(client.clone(), addr))
        })?;

    let send = |path: &str, user: Option<&str>| {
        let mut req = Request::get(path).header("host", "reviews:9080");
        if let Some(u) = user {
            req = req.header("end-user", u);
        }
        let req = req.body(Full::new(Bytes::new())).unwrap();
        let router = router.clone();
        async move {
            match router.oneshot(req).await {
                Ok(res) => String::from_utf8_lossy(res.body()).into_owned(),
                Err(e) => match MeshError::find(&*e) {
                    Some(m) => format!("{} {}", m.status().as_u16(), m.flag()),
                    None => format!("error: {e}"),
                },
            }
        }
    };

    let mut tally = BTreeMap::<String, u32>::new();
    for _ in 0..1000 {
        *tally.entry(send("/reviews/1", None).await).or_default() += 1;
    }
    println!("anonymous users, 80/20 split over 1000 requests: {tally:?}");

    let mut tally = BTreeMap::<String, u32>::new();
    for _ in 0..200 {
        *tally
            .entry(send("/reviews/1", Some("jason")).await)
            .or_default() += 1;
    }
    println!("jason, v2 with a 50 % abort over 200 requests: {tally:?}");

    println!("/ratings/1: {}", send("/ratings/1", None).await);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    println!("mirror copies (1 % of the split route): {stats:?}");
    Ok(())
}
