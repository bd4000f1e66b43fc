//! Two services talking over mutual TLS with identities from the dev CA.
//!
//! `api` (service account `api`) serves HTTP behind an mTLS acceptor in
//! STRICT mode and an authorization policy that lets only `web` call
//! `GET /items*`. `web` calls it through hyper-util's pooled client with the
//! mTLS connector, expecting the server to be `api`. A third workload,
//! `batch`, gets `403 RBAC: access denied`; a client expecting another
//! identity refuses `api`; a plaintext client never reaches the app.
//!
//! Run with `cargo run -p examples --example mtls`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // an example may panic on its own setup

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_core::context::PeerIdentity;
use mesh_tls::authz::{Action, AuthorizationLayer, AuthorizationPolicy, Operation, Rule, Source};
use mesh_tls::{
    CredentialStore, DevCa, IdentityFiles, MtlsAcceptor, MtlsConnector, PeerAuthMode,
    PeerCertificate, PeerInfoLayer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::ServiceBuilder;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // What `mesh-proxy certs ca` and `certs issue` do: a CA directory, then
    // one identity directory (ca.pem, cert.pem, key.pem) per workload.
    let root = std::env::temp_dir().join(format!("mesh-tls-example-{}", std::process::id()));
    let ca = DevCa::new("cluster.local")?;
    ca.write(root.join("ca"))?;
    let ca = DevCa::load(root.join("ca"))?;
    for sa in ["api", "web", "batch"] {
        let id = format!("spiffe://cluster.local/ns/shop/sa/{sa}").parse()?;
        ca.issue(&id, mesh_tls::DEFAULT_WORKLOAD_TTL)?
            .write(root.join(sa))?;
    }

    // --- api: STRICT mTLS, authorization, the app -------------------------
    let (api_store, reloader) = CredentialStore::watch(IdentityFiles::in_dir(root.join("api")))?;
    let _watch = reloader.spawn(Duration::from_secs(5)); // rotation: re-read files every 5 s
    let acceptor = MtlsAcceptor::new(&api_store, PeerAuthMode::Strict)?;
    let authz = AuthorizationLayer::new([AuthorizationPolicy {
        name: "web-reads-items".into(),
        action: Action::Allow,
        rules: vec![Rule {
            from: vec![Source {
                principals: vec!["cluster.local/ns/shop/sa/web".into()],
                ..Default::default()
            }],
            to: vec![Operation {
                methods: vec!["GET".into()],
                paths: vec!["/items*".into()],
                ..Default::default()
            }],
        }],
    }]);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, authz) = (acceptor.clone(), authz.clone());
            tokio::spawn(async move {
                let conn = match acceptor.accept(tcp).await {
                    Ok(conn) => conn,
                    Err(e) => return println!("api: refused a connection: {e}"),
                };
                let svc = ServiceBuilder::new()
                    .layer(PeerInfoLayer::new(conn.peer))
                    .layer(authz)
                    .service_fn(|req: Request<Incoming>| async move {
                        let caller = req.extensions().get::<PeerIdentity>().cloned();
                        let hash = req.extensions().get::<PeerCertificate>().copied();
                        let text = format!(
                            "items for {} (x-forwarded-client-cert: Hash={})",
                            caller.map(|c| c.to_string()).unwrap_or_default(),
                            hash.map(|h| h.0.to_hex()).unwrap_or_default(),
                        );
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(conn.stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    let url = format!("http://{addr}/items/42");

    // --- web: pooled client over mTLS, expecting the server to be `api` ----
    let web = CredentialStore::load(&IdentityFiles::in_dir(root.join("web")))?;
    let connector = MtlsConnector::new(&web, ["spiffe://cluster.local/ns/shop/sa/api"])?;
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let res = client.get(url.parse()?).await?;
    let server = res.extensions().get::<PeerIdentity>().cloned();
    println!(
        "web -> api: {} {:?}, server is {}",
        res.status(),
        res.version(),
        server.map(|s| s.to_string()).unwrap_or_default()
    );
    println!(
        "  {}",
        String::from_utf8_lossy(&res.into_body().collect().await?.to_bytes())
    );

    // --- batch: a valid mesh identity, but not allowed by the policy -------
    let batch = CredentialStore::load(&IdentityFiles::in_dir(root.join("batch")))?;
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(
        MtlsConnector::new(&batch, ["cluster.local/ns/shop/sa/api"])?,
    );
    let res = client.get(url.parse()?).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    println!("batch -> api: {status} {}", String::from_utf8_lossy(&body));

    // --- web expecting another server identity: the client refuses ---------
    let wrong = MtlsConnector::new(&web, ["spiffe://cluster.local/ns/shop/sa/payments"])?;
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(wrong);
    match client.get(url.parse()?).await {
        Ok(res) => println!("unexpected: {}", res.status()),
        Err(e) => println!(
            "web -> api expecting sa/payments: refused ({})",
            std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default()
        ),
    }

    // --- plaintext on a STRICT port: closed, the app never sees it ---------
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(b"GET /items HTTP/1.1\r\nhost: api\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf).await;
    println!(
        "plaintext -> api: {} bytes back (connection closed)",
        buf.len()
    );

    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
