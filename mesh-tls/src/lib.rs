//! Mutual TLS for the mesh, on rustls (ring provider only): SPIFFE workload
//! identities, an mTLS acceptor and a connector for hyper / hyper-util, Istio
//! `PeerAuthentication` modes, a development CA, certificate rotation, and
//! Istio `AuthorizationPolicy` as a tower layer.
//!
//! - [`SpiffeId`]: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`, parsed from a
//!   certificate's URI SAN.
//! - [`DevCa`]: a trust domain's CA issuing 24 h workload certificates, in
//!   memory or as `ca.pem` / `cert.pem` / `key.pem`.
//! - [`Credentials`] (from PEM or an [`IdentityFiles`] directory) in a
//!   [`CredentialStore`]; a [`Reloader`] swaps in changed files.
//! - [`MtlsAcceptor`]: inbound, per [`PeerAuthMode`] (STRICT, PERMISSIVE with
//!   first-byte detection, DISABLE); yields the stream and a [`PeerInfo`]
//!   that [`PeerInfoLayer`] puts into each request
//!   ([`PeerIdentity`](mesh_core::context::PeerIdentity),
//!   [`PeerCertificate`], [`ClientAddr`](mesh_core::context::ClientAddr)).
//! - [`MtlsConnector`]: outbound, a hyper-util `Connect` verifying the
//!   server's SPIFFE ID against DestinationRule `subjectAltNames`.
//! - [`authz`]: ALLOW / DENY policies on principals, paths and methods,
//!   answering `403 RBAC: access denied`.
//!
//! # Example
//!
//! Two workloads of one trust domain talk over mTLS; the server sees the
//! caller's SPIFFE ID.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty, Full};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::service::TowerToHyperService;
//! use mesh_core::context::PeerIdentity;
//! use mesh_tls::{CredentialStore, DevCa, MtlsAcceptor, MtlsConnector, PeerAuthMode, PeerInfoLayer};
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let ca = DevCa::new("cluster.local")?;
//! let ttl = mesh_tls::DEFAULT_WORKLOAD_TTL;
//! let server = ca.issue(&"spiffe://cluster.local/ns/default/sa/api".parse()?, ttl)?;
//! let client = ca.issue(&"spiffe://cluster.local/ns/default/sa/web".parse()?, ttl)?;
//!
//! // Server: accept mTLS, put the peer into each request, answer with its identity.
//! let acceptor = MtlsAcceptor::new(&CredentialStore::new(server.credentials()?), PeerAuthMode::Strict)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     let (tcp, _) = listener.accept().await?;
//!     let conn = acceptor.accept(tcp).await?;
//!     let svc = ServiceBuilder::new()
//!         .layer(PeerInfoLayer::new(conn.peer))
//!         .service_fn(|req: http::Request<hyper::body::Incoming>| async move {
//!             let who = req.extensions().get::<PeerIdentity>().map(|p| p.to_string());
//!             Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(who.unwrap_or_default()))))
//!         });
//!     hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
//!         .serve_connection(TokioIo::new(conn.stream), TowerToHyperService::new(svc))
//!         .await
//! });
//!
//! // Client: the pooled hyper-util client over the mTLS connector.
//! let connector = MtlsConnector::new(
//!     &CredentialStore::new(client.credentials()?),
//!     ["spiffe://cluster.local/ns/default/sa/api"],
//! )?;
//! let http = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
//! let res = http.get(format!("http://{addr}/").parse()?).await?;
//! assert_eq!(
//!     res.extensions().get::<PeerIdentity>().map(|p| p.as_str()),
//!     Some("spiffe://cluster.local/ns/default/sa/api"),
//! );
//! let body = res.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "spiffe://cluster.local/ns/default/sa/web");
//! # Ok(())
//! # }
//! ```

mod acceptor;
pub mod authz;
mod ca;
mod connector;
mod credentials;
pub mod detect;
mod identity;
mod mode;
mod peer;
mod rotation;
mod verify;

pub use self::acceptor::{
    ALPN_PROTOCOLS, AcceptError, Accepted, DEFAULT_DETECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
    InboundStream, MtlsAcceptor, server_config,
};
pub use self::ca::{CA_KEY_FILE, CaError, DEFAULT_CA_TTL, DEFAULT_WORKLOAD_TTL, DevCa, IssuedCert};
pub use self::connector::{ConnectError, MtlsConnector, MtlsStream, client_config};
pub use self::credentials::{
    CA_FILE, CERT_FILE, Credentials, CredentialsError, IdentityFiles, KEY_FILE,
};
pub use self::identity::{
    CertificateHash, DEFAULT_TRUST_DOMAIN, IdentityError, SPIFFE_SCHEME, SpiffeId,
};
pub use self::mode::{PeerAuthMode, UnknownMode};
pub use self::peer::{PeerCertificate, PeerInfo, PeerInfoLayer, WithPeerInfo};
pub use self::rotation::{CredentialStore, Reload, Reloader};
pub use self::verify::UnexpectedServerIdentity;
