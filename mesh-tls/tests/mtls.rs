//! Real TLS handshakes on 127.0.0.1: who is refused, who gets through, and
//! what the app sees.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic on its own setup

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_core::BoxError;
use mesh_core::context::PeerIdentity;
use mesh_tls::{
    AcceptError, CertificateHash, CredentialStore, Credentials, DevCa, IssuedCert, MtlsAcceptor,
    MtlsConnector, PeerAuthMode, PeerCertificate, PeerInfo, PeerInfoLayer, SpiffeId,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::ServiceBuilder;

const API: &str = "spiffe://cluster.local/ns/default/sa/api";
const WEB: &str = "spiffe://cluster.local/ns/default/sa/web";
const DAY: Duration = Duration::from_secs(24 * 3600);

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn issue(ca: &DevCa, who: &str) -> IssuedCert {
    ca.issue(&id(who), mesh_tls::DEFAULT_WORKLOAD_TTL).unwrap()
}

fn store(cert: &IssuedCert) -> CredentialStore {
    CredentialStore::new(cert.credentials().unwrap())
}

struct Server {
    addr: SocketAddr,
    accepted: mpsc::UnboundedReceiver<Result<PeerInfo, AcceptError>>,
    hits: Arc<AtomicUsize>,
}

impl Server {
    async fn next_accept(&mut self) -> Result<PeerInfo, AcceptError> {
        tokio::time::timeout(Duration::from_secs(10), self.accepted.recv())
            .await
            .expect("accept outcome in time")
            .expect("server running")
    }
}

/// Serves HTTP behind `acceptor`; the app answers `<identity>|<cert hash>`.
async fn serve(acceptor: MtlsAcceptor) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, accepted) = mpsc::unbounded_channel();
    let hits = Arc::new(AtomicUsize::new(0));
    let app_hits = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let hits = app_hits.clone();
            tokio::spawn(async move {
                let conn = match acceptor.accept(tcp).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(conn.peer.clone()));
                let svc = ServiceBuilder::new()
                    .layer(PeerInfoLayer::new(conn.peer))
                    .service_fn(move |req: Request<Incoming>| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let who = req
                            .extensions()
                            .get::<PeerIdentity>()
                            .map_or("-".to_owned(), |p| p.to_string());
                        let hash = req
                            .extensions()
                            .get::<PeerCertificate>()
                            .map_or("-".to_owned(), |h| h.0.to_hex());
                        async move {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                                "{who}|{hash}"
                            )))))
                        }
                    });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(conn.stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    Server {
        addr,
        accepted,
        hits,
    }
}

async fn get_with(
    connector: MtlsConnector,
    addr: SocketAddr,
) -> Result<(Version, Option<PeerIdentity>, String), BoxError> {
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(format!("http://{addr}/hello").parse()?),
    )
    .await??;
    let version = res.version();
    let server = res.extensions().get::<PeerIdentity>().cloned();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((version, server, String::from_utf8(body.to_vec())?))
}

async fn get(
    client_store: &CredentialStore,
    sans: &[&str],
    addr: SocketAddr,
) -> Result<(Version, Option<PeerIdentity>, String), BoxError> {
    get_with(MtlsConnector::new(client_store, sans)?, addr).await
}

/// Plaintext HTTP/1.1 GET over a fresh TCP connection.
async fn plaintext_get(addr: SocketAddr) -> Result<String, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = Request::get("/hello")
        .header("host", "test")
        .body(Empty::<Bytes>::new())?;
    let res = tx.send_request(req).await?;
    let body = res.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec())?)
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

#[tokio::test]
async fn app_sees_the_callers_spiffe_id_and_certificate_hash() {
    let ca = DevCa::new("cluster.local").unwrap();
    let (server_cert, client_cert) = (issue(&ca, API), issue(&ca, WEB));
    let acceptor = MtlsAcceptor::new(&store(&server_cert), PeerAuthMode::Strict).unwrap();
    let mut server = serve(acceptor).await;

    let client = store(&client_cert);
    let (version, server_id, body) = get(&client, &[API], server.addr).await.unwrap();

    let peer = server.next_accept().await.unwrap();
    assert_eq!(peer.identity.as_ref().map(|p| p.as_str()), Some(WEB));
    assert_eq!(peer.alpn.as_deref(), Some(&b"h2"[..]));
    let expected_hash = CertificateHash::of_der(&client_cert.credentials().unwrap().chain()[0]);
    assert_eq!(body, format!("{WEB}|{}", expected_hash.to_hex()));
    assert_eq!(
        version,
        Version::HTTP_2,
        "ALPN h2 lets the pooled client use HTTP/2"
    );
    assert_eq!(server_id.as_ref().map(|p| p.as_str()), Some(API));
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn server_identity_not_in_subject_alt_names_is_refused_by_the_client() {
    let ca = DevCa::new("cluster.local").unwrap();
    let acceptor = MtlsAcceptor::new(&store(&issue(&ca, API)), PeerAuthMode::Strict).unwrap();
    let server = serve(acceptor).await;
    let client = store(&issue(&ca, WEB));

    let err = get(
        &client,
        &["spiffe://cluster.local/ns/default/sa/payments"],
        server.addr,
    )
    .await
    .unwrap_err();
    let chain = error_chain(&*err);
    assert!(chain.contains("not in subjectAltNames"), "{chain}");
    assert!(chain.contains("sa/payments"), "{chain}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);

    // The principal form (no scheme) is accepted as an expected SAN too.
    let (_, _, body) = get(&client, &["cluster.local/ns/default/sa/api"], server.addr)
        .await
        .unwrap();
    assert!(body.starts_with(WEB));
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let ca = DevCa::new("cluster.local").unwrap();
    let other = DevCa::new("cluster.local").unwrap();
    let acceptor = MtlsAcceptor::new(&store(&issue(&ca, API)), PeerAuthMode::Strict).unwrap();
    let mut server = serve(acceptor).await;

    // The client trusts the server's CA but holds a certificate from another CA.
    let foreign = issue(&other, WEB);
    let creds = Credentials::from_pem(
        ca.cert_pem().as_bytes(),
        foreign.cert_pem.as_bytes(),
        foreign.key_pem.as_bytes(),
    )
    .unwrap();
    let err = get(&CredentialStore::new(creds), &[], server.addr)
        .await
        .unwrap_err();

    let refused = server.next_accept().await.unwrap_err();
    assert!(matches!(refused, AcceptError::Handshake(_)), "{refused}");
    // Same subject name as our CA, other key: the signature does not verify.
    assert!(
        refused.to_string().contains("invalid peer certificate"),
        "{refused}"
    );
    assert!(!error_chain(&*err).is_empty());
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let ca = DevCa::new("cluster.local").unwrap();
    let acceptor = MtlsAcceptor::new(&store(&issue(&ca, API)), PeerAuthMode::Strict).unwrap();
    let mut server = serve(acceptor).await;

    let now = SystemTime::now();
    let expired = ca
        .issue_with_validity(&id(WEB), now - 2 * DAY, now - DAY)
        .unwrap();
    assert!(get(&store(&expired), &[], server.addr).await.is_err());

    let refused = server.next_accept().await.unwrap_err();
    assert!(matches!(refused, AcceptError::Handshake(_)), "{refused}");
    assert!(
        refused.to_string().contains("certificate expired"),
        "{refused}"
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn expired_server_certificate_is_refused_by_the_client() {
    let ca = DevCa::new("cluster.local").unwrap();
    let now = SystemTime::now();
    let expired = ca
        .issue_with_validity(&id(API), now - 2 * DAY, now - DAY)
        .unwrap();
    let acceptor = MtlsAcceptor::new(&store(&expired), PeerAuthMode::Strict).unwrap();
    let server = serve(acceptor).await;
    let err = get(&store(&issue(&ca, WEB)), &[API], server.addr)
        .await
        .unwrap_err();
    assert!(
        error_chain(&*err).contains("certificate expired"),
        "{}",
        error_chain(&*err)
    );
}

#[derive(Debug)]
struct TrustAnything;

impl ServerCertVerifier for TrustAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let ca = DevCa::new("cluster.local").unwrap();
    let acceptor = MtlsAcceptor::new(&store(&issue(&ca, API)), PeerAuthMode::Strict).unwrap();
    let mut server = serve(acceptor).await;

    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(TrustAnything))
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let result: Result<String, BoxError> = async {
        let tcp = TcpStream::connect(server.addr).await?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("api")?, tcp)
            .await?;
        // TLS 1.3: the refusal shows on the first request, not on connect.
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let res = tx
            .send_request(
                Request::get("/")
                    .header("host", "api")
                    .body(Empty::<Bytes>::new())?,
            )
            .await?;
        Ok(String::from_utf8(
            res.into_body().collect().await?.to_bytes().to_vec(),
        )?)
    }
    .await;
    assert!(
        result.is_err(),
        "request without client certificate got {result:?}"
    );

    let refused = server.next_accept().await.unwrap_err();
    assert!(refused.to_string().contains("no certificates"), "{refused}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn plaintext_on_strict_is_closed_before_reaching_the_app() {
    let ca = DevCa::new("cluster.local").unwrap();
    let acceptor = MtlsAcceptor::new(&store(&issue(&ca, API)), PeerAuthMode::Strict).unwrap();
    let mut server = serve(acceptor).await;

    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /hello HTTP/1.1\r\nhost: api\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf))
        .await
        .expect("server closes the connection");
    // Closed (EOF) or reset; never an HTTP answer.
    assert!(buf.is_empty(), "got {:?}", String::from_utf8_lossy(&buf));
    let _ = read;

    let refused = server.next_accept().await.unwrap_err();
    assert!(
        matches!(refused, AcceptError::PlaintextOnStrict),
        "{refused}"
    );
    assert!(refused.to_string().contains("STRICT"));
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn garbage_on_strict_closes_that_connection_only() {
    let ca = DevCa::new("cluster.local").unwrap();
    let acceptor = MtlsAcceptor::new(&store(&issue(&ca, API)), PeerAuthMode::Strict).unwrap();
    let mut server = serve(acceptor).await;

    // Looks like a TLS record, then is not.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0xfe, 0x00, 0x01, 0x02])
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf))
        .await
        .expect("server closes the connection");
    let refused = server.next_accept().await.unwrap_err();
    assert!(matches!(refused, AcceptError::Handshake(_)), "{refused}");

    // Random non-TLS bytes.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&[0x00, 0x9c, 0x42, 0xff]).await.unwrap();
    let refused = server.next_accept().await.unwrap_err();
    assert!(
        matches!(refused, AcceptError::PlaintextOnStrict),
        "{refused}"
    );

    // The listener still serves good clients.
    let (_, _, body) = get(&store(&issue(&ca, WEB)), &[API], server.addr)
        .await
        .unwrap();
    assert!(body.starts_with(WEB));
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn permissive_accepts_both_on_the_same_port() {
    let ca = DevCa::new("cluster.local").unwrap();
    let acceptor = MtlsAcceptor::new(&store(&issue(&ca, API)), PeerAuthMode::Permissive).unwrap();
    let mut server = serve(acceptor).await;

    let body = plaintext_get(server.addr).await.unwrap();
    assert_eq!(body, "-|-", "plaintext: no identity");
    let peer = server.next_accept().await.unwrap();
    assert!(!peer.is_mtls());

    let (_, _, body) = get(&store(&issue(&ca, WEB)), &[API], server.addr)
        .await
        .unwrap();
    assert!(body.starts_with(&format!("{WEB}|")), "{body}");
    assert!(server.next_accept().await.unwrap().is_mtls());
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn disable_serves_plaintext_only() {
    let ca = DevCa::new("cluster.local").unwrap();
    let acceptor = MtlsAcceptor::new(&store(&issue(&ca, API)), PeerAuthMode::Disable).unwrap();
    let server = serve(acceptor).await;

    assert_eq!(plaintext_get(server.addr).await.unwrap(), "-|-");
    let err = get(&store(&issue(&ca, WEB)), &[API], server.addr).await;
    assert!(err.is_err(), "TLS on a DISABLE port must fail");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn pooled_client_reuses_one_connection() {
    let ca = DevCa::new("cluster.local").unwrap();
    let acceptor = MtlsAcceptor::new(&store(&issue(&ca, API)), PeerAuthMode::Strict).unwrap();
    let mut server = serve(acceptor).await;

    let connector = MtlsConnector::new(&store(&issue(&ca, WEB)), [API]).unwrap();
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    for _ in 0..5 {
        let res = client
            .get(format!("http://{}/", server.addr).parse().unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
    }
    assert!(server.next_accept().await.is_ok());
    assert!(
        server.accepted.try_recv().is_err(),
        "five requests, one handshake"
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 5);
}
