//! Every mesh-lb balancer over three local hyper servers, printing how the
//! requests spread. The third server is slow, so the load-aware balancers
//! (least request, peak EWMA) send it less; the hash balancers keep each user
//! on one server.
//!
//! Run with `cargo run -p examples --example balancers`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::discover::{DiscoverExt, EndpointSet};
use mesh_core::{BoxError, Endpoint};
use mesh_lb::{Balance, HashKey, LoadBalancer};
use tower::{Service, ServiceExt};

/// A server that answers with its name after `delay`.
async fn server(name: &'static str, delay: Duration) -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        name.as_bytes(),
                    ))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let servers = [
        server("fast-a", Duration::from_millis(1)).await?,
        server("fast-b", Duration::from_millis(1)).await?,
        server("slow-c", Duration::from_millis(20)).await?,
    ];
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let user = || HashKey::header("x-user").map_err(BoxError::from);
    let algorithms = [
        LoadBalancer::RoundRobin,
        LoadBalancer::Random,
        LoadBalancer::least_request(),
        LoadBalancer::peak_ewma(),
        LoadBalancer::ring_hash(user()?),
        LoadBalancer::maglev(user()?),
    ];
    for lb in algorithms {
        let name = lb.name();
        let set = EndpointSet::from_endpoints(servers.map(Endpoint::new));
        let client = client.clone();
        let discover = set.discover().with_services(move |ep: &Endpoint| {
            let client = client.clone();
            let authority = ep.addr().to_string();
            tower::service_fn(move |req: Request<Empty<Bytes>>| {
                let client = client.clone();
                let uri = Uri::builder()
                    .scheme("http")
                    .authority(authority.as_str())
                    .path_and_query("/")
                    .build();
                async move {
                    let (mut parts, body) = req.into_parts();
                    parts.uri = uri?;
                    Ok::<_, BoxError>(client.request(Request::from_parts(parts, body)).await?)
                }
            })
        });
        let mut balance = Balance::new(discover, lb)?;
        let mut spread: BTreeMap<String, usize> = BTreeMap::new();
        let mut per_user: BTreeMap<usize, BTreeMap<String, usize>> = BTreeMap::new();
        let mut in_flight = FuturesUnordered::new();
        for i in 0..300 {
            let user = i % 5;
            let req = Request::builder()
                .header("x-user", format!("user-{user}"))
                .body(Empty::new())?;
            let fut = balance.ready().await?.call(req);
            in_flight.push(async move {
                let body = fut.await?.into_body().collect().await?.to_bytes();
                Ok::<_, BoxError>((user, String::from_utf8_lossy(&body).into_owned()))
            });
            // Ten requests in flight, so load-aware balancers see load.
            if in_flight.len() >= 10
                && let Some(done) = in_flight.next().await
            {
                let (user, server) = done?;
                *spread.entry(server.clone()).or_default() += 1;
                *per_user.entry(user).or_default().entry(server).or_default() += 1;
            }
        }
        while let Some(done) = in_flight.next().await {
            let (user, server) = done?;
            *spread.entry(server.clone()).or_default() += 1;
            *per_user.entry(user).or_default().entry(server).or_default() += 1;
        }
        println!("{name:<14} {spread:?}");
        if matches!(name, "RING_HASH" | "MAGLEV") {
            for (user, servers) in per_user {
                println!("{:<14}   user-{user} -> {servers:?}", "");
            }
        }
    }
    Ok(())
}
