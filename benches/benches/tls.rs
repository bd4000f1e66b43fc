//! mesh-tls: full mTLS handshakes (TCP loopback, ECDSA P-256, TLS 1.3,
//! client certificate verified, SPIFFE IDs checked both ways), and request
//! throughput over one mTLS connection beside one plaintext connection to the
//! same hyper server (the ratio is the cost of mTLS per request).
//!
//! Client and server share one current-thread runtime, so each figure is the
//! CPU of both ends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on its own setup

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mesh_tls::{CredentialStore, DevCa, MtlsAcceptor, MtlsConnector, PeerAuthMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tower::Service;

const API: &str = "spiffe://cluster.local/ns/default/sa/api";
const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";

fn stores() -> (CredentialStore, CredentialStore) {
    let ca = DevCa::new("cluster.local").unwrap();
    let ttl = mesh_tls::DEFAULT_WORKLOAD_TTL;
    let server = ca.issue(&API.parse().unwrap(), ttl).unwrap();
    let client = ca.issue(&WEB.parse().unwrap(), ttl).unwrap();
    (
        CredentialStore::new(server.credentials().unwrap()),
        CredentialStore::new(client.credentials().unwrap()),
    )
}

/// Accepts connections; after the handshake, writes one byte and holds the
/// connection until the client closes it.
async fn handshake_server(acceptor: MtlsAcceptor) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut conn) = acceptor.accept(tcp).await {
                    let _ = conn.stream.write_all(b"k").await;
                    let _ = conn.stream.flush().await;
                    let mut sink = [0u8; 1];
                    let _ = conn.stream.read(&mut sink).await;
                }
            });
        }
    });
    addr
}

/// Serves HTTP/1.1 `ok` behind `acceptor`.
async fn http_server(acceptor: MtlsAcceptor) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(conn) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(conn.stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn roundtrip(tx: &mut SendRequest<Empty<Bytes>>) {
    let req = Request::get("/")
        .header("host", "api")
        .body(Empty::new())
        .unwrap();
    let res = tx.send_request(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
}

fn handshakes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (server, client) = stores();
    let acceptor = MtlsAcceptor::new(&server, PeerAuthMode::Strict).unwrap();
    let addr = rt.block_on(handshake_server(acceptor));
    let mut connector = MtlsConnector::new(&client, [API]).unwrap();
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();

    let mut group = c.benchmark_group("tls/handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("mtls_full_handshake", |b| {
        b.iter(|| {
            rt.block_on(async {
                let stream = connector.call(uri.clone()).await.unwrap();
                // The server's byte arrives only after it verified our certificate.
                let mut io = TokioIo::new(stream);
                let mut byte = [0u8; 1];
                io.read_exact(&mut byte).await.unwrap();
                black_box(byte);
            })
        })
    });
    group.bench_function("tcp_connect_only", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(TcpStream::connect(addr).await.unwrap());
            })
        })
    });
    group.finish();
}

fn requests(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (server, client) = stores();
    let mtls_addr = rt.block_on(http_server(
        MtlsAcceptor::new(&server, PeerAuthMode::Strict).unwrap(),
    ));
    let plain_addr = rt.block_on(http_server(
        MtlsAcceptor::new(&server, PeerAuthMode::Disable).unwrap(),
    ));

    let mut plain_tx = connect_plain(&rt, plain_addr);
    let mut mtls_tx = connect_mtls(&rt, &client, mtls_addr);

    let mut group = c.benchmark_group("tls/request_one_connection");
    group.throughput(Throughput::Elements(1));
    group.bench_function("plaintext", |b| {
        b.iter(|| rt.block_on(roundtrip(&mut plain_tx)))
    });
    group.bench_function("mtls", |b| b.iter(|| rt.block_on(roundtrip(&mut mtls_tx))));
    group.finish();
}

fn connect_plain(rt: &Runtime, addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    rt.block_on(async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        tx
    })
}

fn connect_mtls(
    rt: &Runtime,
    client: &CredentialStore,
    addr: SocketAddr,
) -> SendRequest<Empty<Bytes>> {
    rt.block_on(async {
        let mut connector = MtlsConnector::new(client, [API]).unwrap();
        let stream = connector
            .call(format!("http://{addr}/").parse().unwrap())
            .await
            .unwrap();
        let (tx, conn) = hyper::client::conn::http1::handshake(stream).await.unwrap();
        tokio::spawn(conn);
        tx
    })
}

criterion_group!(benches, handshakes, requests);
criterion_main!(benches);
