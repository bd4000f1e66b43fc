//! A balanced hyper client over real hyper servers on 127.0.0.1: endpoints are
//! removed and added mid-run and no request fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::discover::{DiscoverExt, EndpointSet};
use mesh_core::{BoxError, Endpoint};
use mesh_lb::{Balance, LoadBalancer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::{Service, ServiceExt};

/// A hyper server answering every request with its own port; stops when the
/// returned sender is dropped.
async fn server() -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                conn = listener.accept() => conn.unwrap(),
                _ = &mut stopped => return,
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                        addr.port().to_string(),
                    ))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_change_mid_run_without_failed_requests() {
    let (a, stop_a) = server().await;
    let (b, _stop_b) = server().await;
    let (c, _stop_c) = server().await;
    let (d, _stop_d) = server().await;

    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let set = EndpointSet::from_endpoints([a, b, c].map(Endpoint::new));
    let discover = set.discover().with_services(move |ep: &Endpoint| {
        let client = client.clone();
        let authority = ep.addr().to_string();
        tower::service_fn(move |req: Request<Empty<Bytes>>| {
            let client = client.clone();
            let uri = Uri::builder()
                .scheme("http")
                .authority(authority.as_str())
                .path_and_query(req.uri().path_and_query().map_or("/", |p| p.as_str()))
                .build();
            async move {
                let (mut parts, body) = req.into_parts();
                parts.uri = uri?;
                let res = client.request(Request::from_parts(parts, body)).await?;
                Ok::<_, BoxError>(res)
            }
        })
    });
    let mut lb = Balance::new(discover, LoadBalancer::least_request()).unwrap();

    let mut in_flight = FuturesUnordered::new();
    let mut served_by = Vec::new();
    let mut stop_a = Some(stop_a);
    for i in 0..600 {
        if i == 200 {
            // Mid-run, with requests in flight: a goes, d comes.
            set.remove(a);
            set.insert(Endpoint::new(d));
        }
        let fut = lb.ready().await.unwrap().call(Request::new(Empty::new()));
        in_flight.push(async move {
            let res = fut.await.expect("no request fails");
            assert_eq!(res.status(), 200);
            let port: u16 =
                String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
                    .unwrap()
                    .parse()
                    .unwrap();
            (i, port)
        });
        if in_flight.len() >= 16 {
            served_by.push(in_flight.next().await.unwrap());
        }
        if i == 300 {
            // Every request sent before the change is done by now: stop a.
            drop(stop_a.take());
        }
    }
    while let Some(done) = in_flight.next().await {
        served_by.push(done);
    }

    assert_eq!(served_by.len(), 600);
    let after = |port: u16| {
        served_by
            .iter()
            .filter(|(i, p)| *i > 200 && *p == port)
            .count()
    };
    let before = |port: u16| {
        served_by
            .iter()
            .filter(|(i, p)| *i < 200 && *p == port)
            .count()
    };
    assert!(before(a.port()) > 0 && before(d.port()) == 0);
    assert_eq!(after(a.port()), 0, "nothing goes to a removed endpoint");
    assert!(after(d.port()) > 50, "the added endpoint takes its share");
    assert!(after(b.port()) > 50 && after(c.port()) > 50);
}
