//! The inbound side: accepts TCP connections as mTLS, plaintext or either,
//! per [`PeerAuthMode`], and reports the peer's identity.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::NoServerSessionStorage;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::credentials::provider;
use crate::detect::{self, DetectError, Protocol};
use crate::identity::{CertificateHash, IdentityError, SpiffeId};
use crate::mode::PeerAuthMode;
use crate::peer::PeerInfo;
use crate::rotation::CredentialStore;
use crate::verify::{SpiffeClientVerifier, StoreResolver, describe_handshake_error};

/// ALPN protocols offered and accepted: `h2`, then `http/1.1`.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Default time a client has to send its first byte.
pub const DEFAULT_DETECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time a client has to complete the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The rustls server configuration of a mesh workload: ring provider, TLS 1.2
/// and 1.3, a client certificate required and verified against the store's
/// roots (one SPIFFE ID of our trust domain), the store's certificate
/// presented, ALPN `h2` and `http/1.1`.
///
/// Session resumption is off: every handshake verifies the client's current
/// certificate, so rotation and revocation of a CA take effect at once.
pub fn server_config(store: &CredentialStore) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(SpiffeClientVerifier(store.clone())))
        .with_cert_resolver(Arc::new(StoreResolver(store.clone())));
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Accepts inbound connections per [`PeerAuthMode`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use mesh_tls::{CredentialStore, IdentityFiles, MtlsAcceptor, PeerAuthMode};
///
/// let store = CredentialStore::load(&IdentityFiles::in_dir("/etc/mesh/identity"))?;
/// let acceptor = MtlsAcceptor::new(&store, PeerAuthMode::Strict)?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:15006").await?;
/// loop {
///     let (tcp, _) = listener.accept().await?;
///     let acceptor = acceptor.clone();
///     tokio::spawn(async move {
///         match acceptor.accept(tcp).await {
///             // serve `TokioIo::new(conn.stream)` with hyper, wrapping the
///             // service in `PeerInfoLayer::new(conn.peer)`
///             Ok(conn) => drop(conn),
///             Err(e) => tracing::debug!("refused: {e}"),
///         }
///     });
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct MtlsAcceptor {
    tls: TlsAcceptor,
    mode: PeerAuthMode,
    detect_timeout: Duration,
    handshake_timeout: Duration,
}

impl MtlsAcceptor {
    /// An acceptor in `mode` presenting and verifying with `store`'s
    /// credentials (read at each handshake, so rotation applies).
    pub fn new(store: &CredentialStore, mode: PeerAuthMode) -> Result<MtlsAcceptor, rustls::Error> {
        Ok(MtlsAcceptor::from_config(server_config(store)?, mode))
    }

    /// An acceptor over a rustls configuration of your own.
    pub fn from_config(config: Arc<ServerConfig>, mode: PeerAuthMode) -> MtlsAcceptor {
        MtlsAcceptor {
            tls: TlsAcceptor::from(config),
            mode,
            detect_timeout: DEFAULT_DETECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Sets how long a client has to send its first byte (STRICT, PERMISSIVE).
    #[must_use]
    pub fn detect_timeout(mut self, timeout: Duration) -> Self {
        self.detect_timeout = timeout;
        self
    }

    /// Sets how long a client has to complete the TLS handshake.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The mode.
    pub fn mode(&self) -> PeerAuthMode {
        self.mode
    }

    /// Accepts one connection: detects TLS (STRICT, PERMISSIVE), completes the
    /// handshake and reads the caller's identity. On error the connection is
    /// dropped (closed); nothing else is affected.
    pub async fn accept(&self, tcp: TcpStream) -> Result<Accepted, AcceptError> {
        let addr = tcp.peer_addr().ok();
        let plain = |tcp| {
            Ok(Accepted {
                stream: InboundStream::Plain(tcp),
                peer: PeerInfo {
                    addr,
                    ..PeerInfo::default()
                },
            })
        };
        if self.mode == PeerAuthMode::Disable {
            return plain(tcp);
        }
        match detect::detect(&tcp, self.detect_timeout).await {
            Ok(Protocol::Tls) => {}
            Ok(Protocol::Plaintext) if self.mode == PeerAuthMode::Permissive => return plain(tcp),
            Ok(Protocol::Plaintext) => return Err(AcceptError::PlaintextOnStrict),
            Err(e) => return Err(AcceptError::Detect(e)),
        }
        let tls = tokio::time::timeout(self.handshake_timeout, self.tls.accept(tcp))
            .await
            .map_err(|_| AcceptError::HandshakeTimeout(self.handshake_timeout))?
            .map_err(AcceptError::Handshake)?;
        let conn = tls.get_ref().1;
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or(AcceptError::NoPeerCertificate)?;
        let id = SpiffeId::from_certificate(leaf).map_err(AcceptError::Identity)?;
        let peer = PeerInfo {
            identity: Some(id.to_peer_identity()),
            certificate_hash: Some(CertificateHash::of_der(leaf)),
            addr,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        };
        Ok(Accepted {
            stream: InboundStream::Tls(Box::new(tls)),
            peer,
        })
    }
}

impl fmt::Debug for MtlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsAcceptor")
            .field("mode", &self.mode)
            .field("detect_timeout", &self.detect_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// An accepted connection and what is known of its peer.
#[derive(Debug)]
pub struct Accepted {
    /// The byte stream to serve (wrap in `hyper_util::rt::TokioIo`).
    pub stream: InboundStream,
    /// The peer: identity and certificate hash (mTLS), address, ALPN.
    pub peer: PeerInfo,
}

/// An inbound byte stream: mTLS or plaintext.
#[derive(Debug)]
pub enum InboundStream {
    /// Plaintext (DISABLE, or PERMISSIVE without TLS).
    Plain(TcpStream),
    /// Mutual TLS.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for InboundStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InboundStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            InboundStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for InboundStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            InboundStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            InboundStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InboundStream::Plain(s) => Pin::new(s).poll_flush(cx),
            InboundStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InboundStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            InboundStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            InboundStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            InboundStream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            InboundStream::Plain(s) => s.is_write_vectored(),
            InboundStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Why an inbound connection was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum AcceptError {
    /// A plaintext client on a STRICT port.
    PlaintextOnStrict,
    /// The first bytes never came (closed, timeout, I/O error).
    Detect(DetectError),
    /// The TLS handshake failed: no client certificate, unknown CA, expired,
    /// wrong trust domain, garbage bytes…
    Handshake(io::Error),
    /// The handshake did not finish in time.
    HandshakeTimeout(Duration),
    /// The handshake finished without a client certificate (not reachable
    /// with this crate's verifier; kept for custom configurations).
    NoPeerCertificate,
    /// The client certificate's SPIFFE ID is missing or invalid.
    Identity(IdentityError),
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::PlaintextOnStrict => {
                f.write_str("plaintext connection refused: mTLS mode is STRICT")
            }
            AcceptError::Detect(e) => write!(f, "{e}"),
            AcceptError::Handshake(e) => {
                write!(f, "TLS handshake failed: {}", describe_handshake_error(e))
            }
            AcceptError::HandshakeTimeout(d) => write!(f, "TLS handshake not done within {d:?}"),
            AcceptError::NoPeerCertificate => f.write_str("peer presented no certificate"),
            AcceptError::Identity(e) => write!(f, "peer identity refused: {e}"),
        }
    }
}

impl std::error::Error for AcceptError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AcceptError::Detect(e) => Some(e),
            AcceptError::Handshake(e) => Some(e),
            AcceptError::Identity(e) => Some(e),
            _ => None,
        }
    }
}
