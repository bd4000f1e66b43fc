//! The outbound side: an mTLS connector for hyper-util's pooled client.
//!
//! [`MtlsConnector`] is a `tower::Service<Uri>` (hyper-util's `Connect`): it
//! opens TCP with an inner connector (hyper-util's `HttpConnector` by default),
//! then TLS with this workload's certificate, verifying the server against the
//! trust domain's CA and, when configured, that its SPIFFE ID is one of the
//! expected `subjectAltNames`. The connection reports `h2` when ALPN chose it,
//! so the pooled client multiplexes over HTTP/2; the server's identity is in
//! every response's extensions as [`PeerIdentity`].
//!
//! Every URI is connected over mTLS whatever its scheme: in a mesh the app
//! says `http://` and the sidecar upgrades.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use mesh_core::BoxError;
use mesh_core::context::PeerIdentity;
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tower::Service;

use crate::acceptor::ALPN_PROTOCOLS;
use crate::credentials::provider;
use crate::identity::SpiffeId;
use crate::rotation::CredentialStore;
use crate::verify::{SpiffeServerVerifier, StoreResolver, describe_handshake_error, normalise_san};

/// The rustls client configuration of a mesh workload: ring provider, the
/// store's certificate as client certificate, the server verified against the
/// store's roots and its SPIFFE ID against `expected_sans` (entries with or
/// without `spiffe://`; empty = any identity of our trust domain), ALPN `h2`
/// and `http/1.1`, no session resumption (identity checked on every handshake).
pub fn client_config<I, S>(
    store: &CredentialStore,
    expected_sans: I,
) -> Result<Arc<ClientConfig>, rustls::Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let expected: Arc<[String]> = expected_sans
        .into_iter()
        .map(|s| normalise_san(s.as_ref()))
        .collect();
    let verifier = SpiffeServerVerifier {
        store: store.clone(),
        expected,
    };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(StoreResolver(store.clone())));
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// An mTLS connector for `hyper_util::client::legacy::Client`.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use http_body_util::Empty;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use mesh_tls::{CredentialStore, IdentityFiles, MtlsConnector};
///
/// let store = CredentialStore::load(&IdentityFiles::in_dir("/etc/mesh/identity"))?;
/// let connector = MtlsConnector::new(&store, ["spiffe://cluster.local/ns/default/sa/api"])?;
/// let client = Client::builder(TokioExecutor::new()).build::<_, Empty<bytes::Bytes>>(connector);
/// let res = client.get("http://10.0.0.7:8080/".parse()?).await?;
/// println!("{:?}", res.extensions().get::<mesh_core::context::PeerIdentity>());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MtlsConnector<C = HttpConnector> {
    inner: C,
    tls: TlsConnector,
}

impl MtlsConnector<HttpConnector> {
    /// A connector over a plain `HttpConnector` (any scheme, `TCP_NODELAY`)
    /// with [`client_config`]`(store, expected_sans)`.
    pub fn new<I, S>(store: &CredentialStore, expected_sans: I) -> Result<Self, rustls::Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        Ok(MtlsConnector::with_connector(
            http,
            client_config(store, expected_sans)?,
        ))
    }
}

impl<C> MtlsConnector<C> {
    /// A connector over any TCP connector and rustls configuration.
    pub fn with_connector(inner: C, config: Arc<ClientConfig>) -> Self {
        MtlsConnector {
            inner,
            tls: TlsConnector::from(config),
        }
    }
}

impl<C> fmt::Debug for MtlsConnector<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsConnector").finish_non_exhaustive()
    }
}

impl<C> Service<Uri> for MtlsConnector<C>
where
    C: Service<Uri>,
    C::Response: Read + Write + Connection + Unpin + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = MtlsStream<C::Response>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| ConnectError::Connect(e.into()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let server_name = server_name(&uri);
        let connecting = self.inner.call(uri);
        let tls = self.tls.clone();
        Box::pin(async move {
            let server_name = server_name?;
            let tcp = connecting
                .await
                .map_err(|e| ConnectError::Connect(e.into()))?;
            let stream = tls
                .connect(server_name, TokioIo::new(tcp))
                .await
                .map_err(ConnectError::Handshake)?;
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| SpiffeId::from_certificate(c).ok())
                .map(|id| id.to_peer_identity());
            Ok(MtlsStream {
                io: TokioIo::new(stream),
                peer,
            })
        })
    }
}

/// The SNI name for a URI's host (IP literals are not sent as SNI).
fn server_name(uri: &Uri) -> Result<ServerName<'static>, ConnectError> {
    let host = uri.host().ok_or(ConnectError::MissingHost)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|_| ConnectError::InvalidHost(host.to_owned()))
}

pin_project_lite::pin_project! {
    /// An mTLS connection made by [`MtlsConnector`].
    pub struct MtlsStream<T> {
        #[pin]
        io: TokioIo<TlsStream<TokioIo<T>>>,
        peer: Option<PeerIdentity>,
    }
}

impl<T> MtlsStream<T> {
    /// The server's SPIFFE ID, as verified during the handshake.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }

    /// The ALPN protocol negotiated.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.io.inner().get_ref().1.alpn_protocol()
    }

    /// The TLS stream.
    pub fn get_ref(&self) -> &TlsStream<TokioIo<T>> {
        self.io.inner()
    }
}

impl<T> fmt::Debug for MtlsStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsStream")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<T: Connection> Connection for MtlsStream<T> {
    fn connected(&self) -> Connected {
        let (tcp, tls) = self.io.inner().get_ref();
        let mut connected = tcp.inner().connected();
        if let Some(peer) = &self.peer {
            connected = connected.extra(peer.clone());
        }
        if tls.alpn_protocol() == Some(b"h2") {
            connected = connected.negotiated_h2();
        }
        connected
    }
}

impl<T: Read + Write + Unpin> Read for MtlsStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<T: Read + Write + Unpin> Write for MtlsStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
}

/// Why an outbound mTLS connection failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URI has no host.
    MissingHost,
    /// The URI's host is not a valid DNS name or IP address.
    InvalidHost(String),
    /// The TCP connection failed.
    Connect(BoxError),
    /// The TLS handshake failed (server identity not expected, unknown CA,
    /// expired certificate…).
    Handshake(io::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::MissingHost => f.write_str("URI has no host"),
            ConnectError::InvalidHost(h) => write!(f, "invalid host {h:?}"),
            ConnectError::Connect(e) => write!(f, "connect failed: {e}"),
            ConnectError::Handshake(e) => {
                write!(f, "mTLS handshake failed: {}", describe_handshake_error(e))
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Connect(e) => Some(&**e),
            ConnectError::Handshake(e) => Some(e),
            _ => None,
        }
    }
}
