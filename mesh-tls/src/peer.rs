//! What the acceptor learned about a connection's peer, and a small layer
//! that puts it into every request on that connection.

use std::net::SocketAddr;
use std::task::{Context, Poll};

use http::{Extensions, Request};
use mesh_core::context::{ClientAddr, PeerIdentity};
use tower::{Layer, Service};

use crate::identity::CertificateHash;

/// The peer of one inbound connection.
///
/// [`PeerInfo::insert_into`] (or [`PeerInfoLayer`]) puts into a request's
/// extensions: [`PeerIdentity`] (the caller's SPIFFE ID, mTLS only),
/// [`PeerCertificate`] (SHA-256 of the caller's certificate, for
/// `x-forwarded-client-cert: Hash=`), and [`ClientAddr`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The caller's SPIFFE ID; `None` on plaintext connections.
    pub identity: Option<PeerIdentity>,
    /// SHA-256 of the caller's DER leaf certificate; `None` on plaintext.
    pub certificate_hash: Option<CertificateHash>,
    /// The caller's address.
    pub addr: Option<SocketAddr>,
    /// The ALPN protocol negotiated (`h2`, `http/1.1`), if any.
    pub alpn: Option<Vec<u8>>,
}

impl PeerInfo {
    /// Whether the connection is mutual TLS.
    pub fn is_mtls(&self) -> bool {
        self.identity.is_some()
    }

    /// Inserts [`PeerIdentity`], [`PeerCertificate`] and [`ClientAddr`] (those
    /// known) into `ext`, replacing what was there: identity only ever comes
    /// from the handshake, never from the client.
    pub fn insert_into(&self, ext: &mut Extensions) {
        match &self.identity {
            Some(id) => {
                ext.insert(id.clone());
            }
            None => {
                ext.remove::<PeerIdentity>();
            }
        }
        match self.certificate_hash {
            Some(hash) => {
                ext.insert(PeerCertificate(hash));
            }
            None => {
                ext.remove::<PeerCertificate>();
            }
        }
        if let Some(addr) = self.addr {
            ext.insert(ClientAddr(addr));
        }
    }
}

/// Request extension: the SHA-256 of the caller's certificate.
///
/// ```
/// # use mesh_tls::{CertificateHash, PeerCertificate};
/// let hash = PeerCertificate(CertificateHash::of_der(b"der"));
/// let xfcc = format!("Hash={}", hash.0);
/// assert_eq!(xfcc.len(), 5 + 64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerCertificate(pub CertificateHash);

/// Puts a connection's [`PeerInfo`] into every request; build one per
/// accepted connection.
#[derive(Clone, Debug)]
pub struct PeerInfoLayer {
    peer: PeerInfo,
}

impl PeerInfoLayer {
    /// A layer inserting `peer`.
    pub fn new(peer: PeerInfo) -> PeerInfoLayer {
        PeerInfoLayer { peer }
    }
}

impl<S> Layer<S> for PeerInfoLayer {
    type Service = WithPeerInfo<S>;

    fn layer(&self, inner: S) -> WithPeerInfo<S> {
        WithPeerInfo {
            inner,
            peer: self.peer.clone(),
        }
    }
}

/// The service made by [`PeerInfoLayer`].
#[derive(Clone, Debug)]
pub struct WithPeerInfo<S> {
    inner: S,
    peer: PeerInfo,
}

impl<S, B> Service<Request<B>> for WithPeerInfo<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        self.peer.insert_into(req.extensions_mut());
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn plaintext_peer_clears_forged_identity() {
        let peer = PeerInfo {
            addr: Some("10.0.0.1:4000".parse().unwrap()),
            ..PeerInfo::default()
        };
        let svc =
            PeerInfoLayer::new(peer).layer(tower::service_fn(|req: Request<()>| async move {
                Ok::<_, std::convert::Infallible>((
                    req.extensions().get::<PeerIdentity>().cloned(),
                    req.extensions().get::<ClientAddr>().copied(),
                ))
            }));
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(PeerIdentity("spiffe://forged/ns/a/sa/b".into()));
        let (id, addr) = svc.oneshot(req).await.unwrap();
        assert_eq!(id, None);
        assert_eq!(addr.map(|a| a.0.port()), Some(4000));
    }
}
