//! Certificates replaced on disk: open connections keep working, new ones
//! present the new certificate, broken files are refused and the old kept.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic on its own setup

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mesh_tls::{
    CredentialStore, DevCa, IdentityFiles, IssuedCert, MtlsAcceptor, MtlsConnector, MtlsStream,
    PeerAuthMode, Reload,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tower::Service;

const API: &str = "spiffe://cluster.local/ns/default/sa/api";
const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mesh-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn issue(ca: &DevCa, who: &str) -> IssuedCert {
    ca.issue(&who.parse().unwrap(), mesh_tls::DEFAULT_WORKLOAD_TTL)
        .unwrap()
}

fn leaf_der(cert: &IssuedCert) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()
}

fn server_leaf(stream: &MtlsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>) -> Vec<u8> {
    stream.get_ref().get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

async fn request(
    tx: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
) -> Result<Bytes, mesh_core::BoxError> {
    let req = Request::get("/").header("host", "api").body(Empty::new())?;
    let res = tx.send_request(req).await?;
    Ok(res.into_body().collect().await?.to_bytes())
}

#[tokio::test]
async fn new_handshakes_use_new_files_and_open_connections_stay() {
    let dir = temp_dir("rotation");
    let ca = DevCa::new("cluster.local").unwrap();
    let first = issue(&ca, API);
    first.write(&dir).unwrap();

    let (server_store, mut reloader) = CredentialStore::watch(IdentityFiles::in_dir(&dir)).unwrap();
    let acceptor = MtlsAcceptor::new(&server_store, PeerAuthMode::Strict).unwrap();
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
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(conn.stream), svc)
                    .await;
            });
        }
    });

    let client_store = CredentialStore::new(issue(&ca, WEB).credentials().unwrap());
    let mut connector = MtlsConnector::new(&client_store, [API]).unwrap();
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();

    // An open connection, HTTP/1.1 over the connector's stream.
    let old = connector.call(uri.clone()).await.unwrap();
    assert_eq!(server_leaf(&old), leaf_der(&first).to_vec());
    let (mut old_tx, conn) = hyper::client::conn::http1::handshake(old).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(request(&mut old_tx).await.unwrap(), "ok");

    // Nothing changed yet.
    assert!(matches!(reloader.check(), Reload::Unchanged));

    // Replace the files on disk.
    let second = issue(&ca, API);
    assert_ne!(leaf_der(&first), leaf_der(&second));
    second.write(&dir).unwrap();
    assert!(matches!(reloader.check(), Reload::Reloaded(id) if id.as_str() == API));

    // The open connection keeps working.
    assert_eq!(request(&mut old_tx).await.unwrap(), "ok");
    // A new connection presents the new certificate.
    let new = connector.call(uri.clone()).await.unwrap();
    assert_eq!(server_leaf(&new), leaf_der(&second).to_vec());

    // A broken key file is refused; the current certificate stays in use.
    std::fs::write(dir.join("key.pem"), "-----BEGIN PRIVATE KEY-----\nnope\n").unwrap();
    assert!(matches!(reloader.check(), Reload::Failed(_)));
    // A key that does not match the certificate is refused too.
    let third = issue(&ca, API);
    std::fs::write(dir.join("key.pem"), &third.key_pem).unwrap();
    assert!(matches!(reloader.check(), Reload::Failed(_)));
    let after = connector.call(uri.clone()).await.unwrap();
    assert_eq!(server_leaf(&after), leaf_der(&second).to_vec());
    let (mut tx, conn) = hyper::client::conn::http1::handshake(after).await.unwrap();
    tokio::spawn(conn);
    assert_eq!(request(&mut tx).await.unwrap(), "ok");
    assert_eq!(request(&mut old_tx).await.unwrap(), "ok");

    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn spawned_reloader_polls_at_its_interval() {
    let dir = temp_dir("poll");
    let ca = DevCa::new("cluster.local").unwrap();
    let first = issue(&ca, API);
    first.write(&dir).unwrap();
    let (store, reloader) = CredentialStore::watch(IdentityFiles::in_dir(&dir)).unwrap();
    let task = reloader.spawn(Duration::from_secs(5));
    // Let the first (immediate) tick run.
    tokio::time::sleep(Duration::from_millis(1)).await;

    let second = issue(&ca, WEB);
    second.write(&dir).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        store.current().id().as_str(),
        API,
        "not before the interval"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        store.current().id().as_str(),
        WEB,
        "picked up at the next poll"
    );
    assert_eq!(store.current().chain()[0], leaf_der(&second));

    task.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}
